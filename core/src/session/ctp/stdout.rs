//! The SDK prints its own diagnostics (`CThostFtdcUserApiImplBase::OnSessionDisconnected[…]`) on
//! stdout. With `source.ctp.sdk_stdout = "log"` the process's stdout becomes a pipe whose lines a
//! thread writes into the core's log (target `ctp_sdk`), so they are kept, timestamped and never
//! mixed into another program's output.

use std::io::{BufRead, BufReader, Write};

/// Points fd 1 at a pipe read by a logging thread.
pub fn capture_into_log() -> std::io::Result<()> {
    let (reader, writer) = std::io::pipe()?;
    let _ = std::io::stdout().flush();
    nix::unistd::dup2_stdout(&writer).map_err(std::io::Error::from)?;
    drop(writer);
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
