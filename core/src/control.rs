//! The control socket: a Unix stream socket (mode 0660) served by its own thread, never the hot one.
//! Each connection's peer uid is checked with SO_PEERCRED against the allowed list. One command per
//! line, one JSON reply per line:
//!
//! ```text
//! status                 → {"ok":true,"epoch":…,"write_cursor":…,"heartbeat_age_ms":…,"counters":{…}}
//! subscribe rb2505       → {"ok":true,"instrument":"rb2505","index":3}
//! unsubscribe rb2505     → {"ok":true,"instrument":"rb2505"}
//! shutdown               → {"ok":true}
//! ```
//!
//! Commands reach the hot thread through a bounded crossbeam channel (`try_send`: a full channel is
//! an error reply and a counted drop, never a wait); their effect is read back from the segment.

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::{
        fs::PermissionsExt,
        net::{UnixListener, UnixStream},
    },
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use anyhow::Context;
use nix::sys::socket::{getsockopt, sockopt};
use qilin_shm::{Counter, Reader};
use serde_json::{Value, json};

use crate::engine::{Command, id_key};

/// A bound control socket.
#[derive(Debug)]
pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
    allowed_uids: Vec<u32>,
    segment: PathBuf,
    commands: crossbeam_channel::Sender<Command>,
    /// Commands refused because the channel was full; the hot thread copies it into the header.
    dropped: Arc<AtomicUsize>,
}

impl ControlServer {
    /// Binds `path` (replacing a stale socket file) with mode 0660.
    pub fn bind(
        path: &Path,
        allowed_uids: &[u32],
        segment: &Path,
        commands: crossbeam_channel::Sender<Command>,
    ) -> anyhow::Result<ControlServer> {
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                anyhow::bail!("control socket {} is in use by another process", path.display());
            }
            std::fs::remove_file(path).with_context(|| format!("removing stale control socket {}", path.display()))?;
        }
        let listener =
            UnixListener::bind(path).with_context(|| format!("binding control socket {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
            .with_context(|| format!("setting mode 0660 on {}", path.display()))?;
        let allowed_uids =
            if allowed_uids.is_empty() { vec![nix::unistd::geteuid().as_raw()] } else { allowed_uids.to_vec() };
        Ok(ControlServer {
            listener,
            path: path.to_owned(),
            allowed_uids,
            segment: segment.to_owned(),
            commands,
            dropped: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// The count of commands refused because the queue was full (give it to
    /// `Engine::count_command_drops`, which publishes it as `command_queue_full`).
    pub fn dropped_commands(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.dropped)
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves connections one at a time until the process exits.
    pub fn serve(self) {
        for stream in self.listener.incoming() {
            match stream {
                Ok(stream) => {
                    if let Err(e) = self.handle(stream) {
                        tracing::warn!(error = %e, "control connection ended with an error");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "control socket accept failed"),
            }
        }
    }

    fn handle(&self, stream: UnixStream) -> anyhow::Result<()> {
        let uid = getsockopt(&stream, sockopt::PeerCredentials).context("reading SO_PEERCRED")?.uid();
        let mut writer = stream.try_clone()?;
        if !self.allowed_uids.contains(&uid) {
            tracing::warn!(uid, "control connection refused: uid not allowed");
            writeln!(
                writer,
                "{}",
                json!({"ok": false, "error": format!("uid {uid} is not allowed to control this core")})
            )?;
            return Ok(());
        }
        for line in BufReader::new(stream).lines() {
            let reply = self.execute(line?.trim());
            writeln!(writer, "{reply}")?;
        }
        Ok(())
    }

    fn execute(&self, line: &str) -> Value {
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("status"), None, _) => self.status(),
            (Some("shutdown"), None, _) => self.send(Command::Shutdown, json!({"ok": true})),
            (Some(verb @ ("subscribe" | "unsubscribe")), Some(id), None) => {
                let Some(key) = id_key(id) else {
                    return json!({"ok": false, "error": format!("{id:?} is not an InstrumentID (1-31 ASCII characters)")});
                };
                if verb == "unsubscribe" {
                    return self.send(Command::Unsubscribe(key), json!({"ok": true, "instrument": id}));
                }
                let queued = self.send(Command::Subscribe(key), json!({"ok": true}));
                if queued["ok"] != json!(true) {
                    return queued;
                }
                self.await_directory(id)
            }
            _ => {
                json!({"ok": false, "error": format!("unknown command {line:?}; try: status | subscribe ID | unsubscribe ID | shutdown")})
            }
        }
    }

    fn send(&self, command: Command, ok: Value) -> Value {
        match self.commands.try_send(command) {
            Ok(()) => ok,
            Err(_) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                json!({"ok": false, "error": "command queue full; the core is busy, retry"})
            }
        }
    }

    /// Subscribing shows up in the directory within a housekeeping period or two.
    fn await_directory(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(reader) = Reader::open(&self.segment)
                && let Some(index) = reader.find_instrument(id)
            {
                return json!({"ok": true, "instrument": id, "index": index});
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        json!({"ok": false, "instrument": id, "error": "not admitted: unknown product or directory full (see the core's log)"})
    }

    fn status(&self) -> Value {
        match Reader::open(&self.segment) {
            Ok(reader) => status_json(&reader),
            Err(e) => json!({"ok": false, "error": e.to_string()}),
        }
    }
}

/// The status of a segment as JSON (shared by the control socket and `qilinctl status --json`).
pub fn status_json(reader: &Reader) -> Value {
    let now = qilin_shm::now_ns();
    let counters: serde_json::Map<String, Value> =
        Counter::ALL.iter().map(|c| (c.name().to_string(), json!(reader.counter(*c)))).collect();
    json!({
        "ok": true,
        "feed": reader.feed_name(),
        "epoch": reader.current_epoch(),
        "writer_pid": reader.writer_pid(),
        "run_state": reader.run_state().map(|state| format!("{state:?}")),
        "write_cursor": reader.write_cursor(),
        "heartbeat_age_ms": (now - reader.heartbeat_ns()) as f64 / 1e6,
        "instruments": reader.directory_len(),
        "counters": counters,
    })
}
