//! The SDK prints its own diagnostics (`CThostFtdcUserApiImplBase::OnSessionDisconnected[…]`) on
//! stdout. With `source.ctp.sdk_stdout = "log"` the process's stdout becomes a pseudo-terminal
//! whose lines a thread writes into the core's log (target `ctp_sdk`), so they are kept, timestamped
//! and never mixed into another program's output. A terminal rather than a pipe: the C library
//! buffers stdout in 4 KiB blocks when it is a pipe (the lines would appear minutes late, or at
//! exit), and line by line when it is a terminal.

use std::io::{BufRead, BufReader, Write};

/// Points fd 1 at a pseudo-terminal read by a logging thread.
pub fn capture_into_log() -> std::io::Result<()> {
    let pty = nix::pty::openpty(None, None).map_err(std::io::Error::from)?;
    let _ = std::io::stdout().flush();
    nix::unistd::dup2_stdout(&pty.slave).map_err(std::io::Error::from)?;
    drop(pty.slave); // fd 1 keeps the terminal open for the life of the process
    let reader = std::fs::File::from(pty.master);
    std::thread::Builder::new().name("qilin-sdk-stdout".into()).spawn(move || {
        let mut lines = BufReader::new(reader);
        let mut line = Vec::with_capacity(512);
        // Never stops before the process: a reader that went away would block the SDK's writes.
        while lines.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end();
            if !text.is_empty() {
                tracing::info!(target: "ctp_sdk", "{text}");
            }
            line.clear();
        }
    })?;
    Ok(())
}
