//! The control socket: a Unix stream socket (mode 0660) served by its own thread, never the hot one.
//! Each connection's peer uid is checked with SO_PEERCRED against the allowed list. One command per
//! line, one JSON reply per line: the protocol and its typed requests are
//! `qilin_market::control` (shared with qilinctl and qilin-secrets).
//!
//! Commands reach the hot thread through a bounded crossbeam channel (`try_send`: a full channel is
//! an error reply and a counted drop, never a wait); their effect is read back from the segment.
//! Session commands go to the session manager thread ([`crate::session::manager`]).
//!
//! `credentials` is accepted only from the configured secrets uid (`core.secrets_uid`); from any
//! other allowed uid it is refused, logged and audited, and the line is never parsed. Every
//! connection is served by its own thread (a slow client cannot hold the socket), and the bytes of
//! each line are zeroed once handled, so a password does not linger in the control thread's buffers.

use std::{
    io::Write,
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
use qilin_audit::{AuditLog, Entry};
use qilin_market::control::{MAX_LINE, Request, RequestError};
use qilin_shm::Reader;
use secrecy::zeroize::Zeroize;
use serde_json::{Value, json};

use crate::{
    engine::{Command, id_key},
    session::{
        Credentials,
        manager::{Msg, Request as ManagerRequest},
    },
};

/// Connections served at once.
const MAX_CONNECTIONS: usize = 16;

/// Where session commands go and who may hand over credentials.
#[derive(Debug)]
pub struct SessionControl {
    /// The session manager's channel.
    pub manager: crossbeam_channel::Sender<Msg>,
    /// The only uid whose `credentials` are accepted.
    pub secrets_uid: u32,
    /// How long to wait for the manager's answer.
    pub timeout: Duration,
}

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
    sessions: Option<SessionControl>,
    audit: Option<AuditLog>,
    connections: AtomicUsize,
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
            sessions: None,
            audit: None,
            connections: AtomicUsize::new(0),
        })
    }

    /// Serves the session commands through `sessions` (sources with primary/backup sessions).
    pub fn with_sessions(mut self, sessions: SessionControl) -> ControlServer {
        self.sessions = Some(sessions);
        self
    }

    /// Audits refused credentials to `audit`.
    pub fn with_audit(mut self, audit: AuditLog) -> ControlServer {
        self.audit = Some(audit);
        self
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

    /// Serves connections, each on its own thread (at most [`MAX_CONNECTIONS`] at once), until the
    /// process exits.
    pub fn serve(self) {
        let server = Arc::new(self);
        for stream in server.listener.incoming() {
            let stream = match stream {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "control socket accept failed");
                    continue;
                }
            };
            if server.connections.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
                server.connections.fetch_sub(1, Ordering::AcqRel);
                let _ = writeln!(&stream, "{}", json!({"ok": false, "error": "too many control connections; retry"}));
                continue;
            }
            let me = Arc::clone(&server);
            let spawned = std::thread::Builder::new().name("qilin-control-conn".into()).spawn(move || {
                if let Err(e) = me.handle(stream) {
                    tracing::warn!(error = %e, "control connection ended with an error");
                }
                me.connections.fetch_sub(1, Ordering::AcqRel);
            });
            if let Err(e) = spawned {
                server.connections.fetch_sub(1, Ordering::AcqRel);
                tracing::warn!(error = %e, "could not start a control connection thread");
            }
        }
    }

    fn handle(&self, stream: UnixStream) -> anyhow::Result<()> {
        let uid = getsockopt(&stream, sockopt::PeerCredentials).context("reading SO_PEERCRED")?.uid();
        let mut writer = stream.try_clone()?;
        if !self.allowed_uids.contains(&uid) {
            tracing::warn!(uid, "control connection refused: uid not allowed");
            self.audit_refusal(uid, "connect", "uid not allowed to control this core");
            writeln!(
                writer,
                "{}",
                json!({"ok": false, "error": format!("uid {uid} is not allowed to control this core")})
            )?;
            return Ok(());
        }
        let mut lines = ZeroingLines::new(stream);
        loop {
            let reply = match lines.next_line() {
                Ok(Some(line)) => self.execute(line.trim(), uid),
                Ok(None) => return Ok(()),
                Err(e) => json!({"ok": false, "error": e.to_string()}),
            };
            lines.wipe();
            writeln!(writer, "{reply}")?;
        }
    }

    fn audit_refusal(&self, uid: u32, command: &str, reason: &str) {
        let Some(audit) = &self.audit else { return };
        let entry = Entry {
            command: format!("refused {command}"),
            args: Vec::new(),
            exit_code: 1,
            actions: vec![json!({"peer_uid": uid, "socket": self.path.display().to_string(), "reason": reason})],
        };
        if let Err(e) = audit.append(&entry) {
            tracing::error!(error = %e, "could not write the audit log");
        }
    }

    /// Tells the sessions' fronts (through the session manager, never the hot thread) that an
    /// instrument was subscribed or unsubscribed, so the CTP SDK subscribes it too.
    fn tell_fronts(&self, id: &str, subscribed: bool) {
        if let Some(sessions) = &self.sessions {
            let _ = sessions.manager.send(Msg::Subscription(id.to_string(), subscribed));
        }
    }

    /// Forwards a request to the session manager and waits for its answer.
    fn ask(&self, request: ManagerRequest) -> Value {
        let Some(sessions) = &self.sessions else {
            return no_sessions();
        };
        let (tx, rx) = crossbeam_channel::bounded(1);
        if sessions.manager.send(Msg::Request(request, tx)).is_err() {
            return json!({"ok": false, "error": "the session manager has stopped"});
        }
        rx.recv_timeout(sessions.timeout + Duration::from_secs(1))
            .unwrap_or_else(|_| json!({"ok": false, "error": "the session manager did not answer in time"}))
    }

    fn credentials(&self, json_text: &str, uid: u32) -> Value {
        let Some(sessions) = &self.sessions else {
            return no_sessions(); // refused before the line is parsed
        };
        if uid != sessions.secrets_uid {
            let reason =
                format!("uid {uid} may not hand over credentials (only the secrets uid {})", sessions.secrets_uid);
            tracing::warn!(uid, "credentials refused: not the secrets uid");
            self.audit_refusal(uid, "credentials", &reason);
            return json!({"ok": false, "error": reason});
        }
        match Credentials::parse(json_text) {
            Ok(creds) => self.ask(ManagerRequest::Credentials(Box::new(creds))),
            Err(e) => {
                tracing::warn!(uid, error = %e, "credentials refused: malformed");
                json!({"ok": false, "error": e})
            }
        }
    }

    fn execute(&self, line: &str, uid: u32) -> Value {
        let request = match Request::parse(line) {
            Ok(request) => request,
            Err(e) => return json!({"ok": false, "error": e.to_string()}),
        };
        match request {
            Request::Credentials(json_text) => self.credentials(json_text, uid),
            Request::Sessions => self.ask(ManagerRequest::Sessions),
            Request::Failover => self.ask(ManagerRequest::Failover),
            Request::Failback => self.ask(ManagerRequest::Failback),
            Request::Relogin(which) => self.ask(ManagerRequest::Relogin(which)),
            Request::Inject(which, fault) => self.ask(ManagerRequest::Inject(which, fault)),
            Request::Status => self.status(),
            Request::Shutdown => {
                // Said in the log, so a test (or an operator) can tell a commanded stop from a signal.
                tracing::info!(uid, "shutdown requested over the control socket");
                self.send(Command::Shutdown, json!({"ok": true}))
            }
            Request::Subscribe(id) | Request::Unsubscribe(id) => {
                let Some(key) = id_key(id) else {
                    return json!({"ok": false, "error": RequestError::Instrument(id.to_owned()).to_string()});
                };
                if matches!(request, Request::Unsubscribe(_)) {
                    let answer = self.send(Command::Unsubscribe(key), json!({"ok": true, "instrument": id}));
                    self.tell_fronts(id, false);
                    return answer;
                }
                let queued = self.send(Command::Subscribe(key), json!({"ok": true}));
                if queued["ok"] != json!(true) {
                    return queued;
                }
                let answer = self.await_directory(id);
                if answer["ok"] == json!(true) {
                    self.tell_fronts(id, true);
                }
                answer
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

/// The status of a segment as the control socket's reply: `qilinctl status --json`'s object
/// (`qilin_market::names::status_json`) with `"ok": true`.
pub fn status_json(reader: &Reader) -> Value {
    let mut value = qilin_market::names::status_json(reader, qilin_shm::now_ns(), STALE_AFTER_NS);
    value["ok"] = json!(true);
    value
}

/// A heartbeat older than this reads as stale in the `status` reply (the core beats every ~1 ms).
const STALE_AFTER_NS: i64 = 2_000_000_000;

/// The reply to a session command on a core whose source has no primary/backup sessions.
fn no_sessions() -> Value {
    json!({"ok": false, "error": "this source has no primary/backup sessions (sim with [source.sim.sessions] enabled, or ctp)"})
}

/// Reads newline-terminated lines into one buffer that is zeroed after each line is handled (and
/// when dropped), so credentials do not stay in memory after their line.
struct ZeroingLines {
    stream: UnixStream,
    buf: Vec<u8>,
    /// Bytes of `buf` that belong to the line handed out last.
    line_len: usize,
}

impl ZeroingLines {
    fn new(stream: UnixStream) -> ZeroingLines {
        ZeroingLines { stream, buf: Vec::with_capacity(4096), line_len: 0 }
    }

    /// The next line (without its newline), or `None` at end of stream.
    fn next_line(&mut self) -> std::io::Result<Option<&str>> {
        use std::io::Read;
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = self.buf.iter().position(|b| *b == b'\n') {
                self.line_len = end + 1;
                let line = std::str::from_utf8(&self.buf[..end])
                    .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "a command line is not UTF-8"))?;
                return Ok(Some(line));
            }
            if self.buf.len() > MAX_LINE {
                self.line_len = self.buf.len();
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("a command line is longer than {MAX_LINE} bytes"),
                ));
            }
            let n = match self.stream.read(&mut chunk) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    chunk.zeroize();
                    return Err(e);
                }
            };
            if n == 0 {
                chunk.zeroize();
                return Ok(None);
            }
            if self.buf.len() + n > self.buf.capacity() {
                // Grow by hand so the old allocation is zeroed, not just freed.
                let mut bigger = Vec::with_capacity((self.buf.len() + n).next_power_of_two());
                bigger.extend_from_slice(&self.buf);
                self.buf.zeroize();
                self.buf = bigger;
            }
            self.buf.extend_from_slice(&chunk[..n]);
            chunk[..n].zeroize();
        }
    }

    /// Zeroes and forgets the line handed out last.
    fn wipe(&mut self) {
        let n = self.line_len.min(self.buf.len());
        self.buf[..n].zeroize();
        self.buf.drain(..n);
        // `drain` moved the rest forward; zero the bytes it left behind past the new end.
        for byte in self.buf.spare_capacity_mut() {
            byte.write(0);
        }
        self.line_len = 0;
    }
}

impl Drop for ZeroingLines {
    fn drop(&mut self) {
        self.buf.zeroize();
    }
}
