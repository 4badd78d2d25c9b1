//! The control socket: a Unix stream socket (mode 0660) served by one thread, never the hot one,
//! running one `mio` event loop over every connection (`control::serve`). Each connection's peer
//! uid is checked with SO_PEERCRED against the allowed list. One command per line, one JSON reply
//! per line: the protocol and its typed requests are `qilin_market::control` (shared with qilinctl
//! and qilin-secrets).
//!
//! **Connections.** Up to [`MAX_CONNECTIONS`] at once (more are told so and closed, and counted).
//! Nothing a client does can block the loop: sockets are non-blocking, replies wait in a
//! per-connection output buffer, and every connection has deadlines ([`CLIENT_DEADLINE`]): a client
//! that does not finish a line within it (from its connection, or from its last reply), or does not
//! read its replies for that long, is closed, counted (`"control"` in the `status` reply) and
//! logged. A client that is waiting for an answer of the core is not on a deadline: the request is.
//!
//! **Lines** (`control::lines`). At most `qilin_market::control::MAX_LINE` bytes: a longer line
//! gets one error and is discarded through its newline (its tail is never read as a command). The
//! bytes of each line are zeroed once handled, so a password does not linger in the control
//! thread's buffers.
//!
//! **Commands** (`control::execute`). Commands reach the hot thread through a bounded crossbeam
//! channel (`try_send`: a full channel is an error reply and a counted drop, never a wait); their effect is
//! read back from the segment without blocking (a `subscribe` answers once the directory shows the
//! instrument, checked every few milliseconds, at most 2 s). Session commands go to the session
//! manager thread ([`crate::session::manager`]); its answer is awaited the same way (at most its
//! `command_timeout_ms` plus 1 s), so a slow manager delays only the client that asked.
//! `subscribe` admits only listed instruments ([`listed`]). `credentials` is accepted only from the
//! configured secrets uid (`core.secrets_uid`); from any other allowed uid it is refused, logged
//! and audited, and the line is never parsed.
//!
//! **Who audits what.** The core audits, in its own log (`core.audit_log`), what reaches it: every
//! `subscribe`, `unsubscribe`, `shutdown`, `relogin` and `inject` with the peer's uid and pid
//! (SO_PEERCRED), the request and the reply (the session manager's, for the last two), refusals
//! included; refused connections and refused credential hand-overs; and,
//! from the session manager, every session switch (`activate`, `failover`, `failback`, with its
//! trigger). qilinctl audits, in the operator's log, what the operator asked for: its command line,
//! the operator (and sudo user) and each reply. The two are different records of one operation
//! (the client's intent and the server's execution), kept in different logs by different uids; a
//! raw client that bypasses qilinctl still leaves the core's entry. `status` and `sessions` change
//! nothing and are not audited; an accepted credential hand-over is audited by qilin-secrets
//! (`secrets handoff`), and the switches it leads to by the manager; `failover` and `failback` are
//! audited by the manager as switches, refused ones included.
//! The core's entries are written by a thread of their own (`control::audit`) through a bounded
//! queue, so an fsync never stalls the loop; while that queue is full, audited commands are refused
//! unexecuted (and counted in one entry later). The process exits only after the queued entries are
//! written ([`ExitGate`]).

mod audit;
mod conn;
mod execute;
mod lines;
pub mod listed;
mod serve;

use std::{
    os::unix::{
        fs::PermissionsExt,
        net::{UnixListener, UnixStream},
    },
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use anyhow::Context;
use qilin_audit::AuditLog;
use qilin_shm::Reader;
use serde_json::{Value, json};

pub use self::listed::Listed;
use crate::{engine::Command, session::manager::Msg};

/// Connections served at once; more are refused with a reply saying so.
pub const MAX_CONNECTIONS: usize = 1024;

/// How long a client may take to send a complete line (from its connection, or from the reply to
/// its previous one) and to read its replies. Clients (qilinctl, qilin-secrets) connect, send and
/// read at once; an operator typing into `socat` has this long per command.
pub const CLIENT_DEADLINE: Duration = Duration::from_secs(5);

/// Where session commands go and who may hand over credentials.
#[derive(Debug)]
pub struct SessionControl {
    /// The session manager's channel.
    pub manager: crossbeam_channel::Sender<Msg>,
    /// The only uid whose `credentials` are accepted.
    pub secrets_uid: u32,
    /// How long to wait for the manager's answer (plus 1 s).
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
    listed: Listed,
    /// Held by the control thread while it executes a command and queues its audit entry and reply;
    /// the process takes it before exiting ([`ControlServer::exit_gate`]).
    in_command: Arc<Mutex<()>>,
    /// Audit entries queued and not yet written.
    unwritten: Arc<AtomicUsize>,
}

/// What the process waits for before it exits: the command the control thread is executing (a
/// `shutdown`), its reply, and every audit entry queued ([`ControlServer::exit_gate`]).
#[derive(Clone, Debug)]
pub struct ExitGate {
    in_command: Arc<Mutex<()>>,
    unwritten: Arc<AtomicUsize>,
}

impl ExitGate {
    /// Waits for the command in progress, then (at most `timeout`) for the queued audit entries to
    /// be written. Hold the guard until the process exits: no other command starts meanwhile.
    pub fn close(&self, timeout: Duration) -> MutexGuard<'_, ()> {
        let guard = self.in_command.lock().unwrap_or_else(PoisonError::into_inner);
        audit::drain(&self.unwritten, timeout);
        guard
    }
}

impl ControlServer {
    /// Binds `path` (replacing a stale socket file) with mode 0660. No instrument is listed for
    /// `subscribe` until [`ControlServer::with_listed`].
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
            listed: Listed::none(),
            in_command: Arc::new(Mutex::new(())),
            unwritten: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Serves the session commands through `sessions` (sources with primary/backup sessions).
    pub fn with_sessions(mut self, sessions: SessionControl) -> ControlServer {
        self.sessions = Some(sessions);
        self
    }

    /// Audits state-changing commands and refusals to `audit`.
    pub fn with_audit(mut self, audit: AuditLog) -> ControlServer {
        self.audit = Some(audit);
        self
    }

    /// The instruments `subscribe` may add to the directory.
    pub fn with_listed(mut self, listed: Listed) -> ControlServer {
        self.listed = listed;
        self
    }

    /// The count of commands refused because the queue was full (give it to
    /// `Engine::count_command_drops`, which publishes it as `command_queue_full`).
    pub fn dropped_commands(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.dropped)
    }

    /// What to wait for before the process exits: close it once the hot thread has stopped, so a
    /// `shutdown`'s reply and every audit entry are written in full.
    pub fn exit_gate(&self) -> ExitGate {
        ExitGate { in_command: Arc::clone(&self.in_command), unwritten: Arc::clone(&self.unwritten) }
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves connections on this thread until the process exits (see the module doc).
    pub fn serve(self) {
        serve::run(self);
    }

    fn count_drop(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
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
