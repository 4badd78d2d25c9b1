//! The control thread's event loop: one `mio::Poll` over the listener and every connection
//! (edge-triggered, non-blocking). Each turn it accepts, drives the connections that have events
//! (write what is queued, handle complete lines, read more), then polls the pending requests and
//! closes the connections past a deadline. It sleeps in `poll` until the next event or deadline
//! (every 2 ms while a request is pending).

use std::{
    io::ErrorKind,
    sync::{Arc, PoisonError},
    time::{Duration, Instant},
};

use mio::{Events, Interest, Poll, Token, net::UnixListener};
use nix::sys::socket::{getsockopt, sockopt};
use serde_json::json;

use super::{
    CLIENT_DEADLINE, ControlServer, MAX_CONNECTIONS,
    audit::AuditQueue,
    conn::{Conn, OUTPUT_HIGH_WATER, Peer, Received},
    execute::{Ctx, Outcome},
    lines::Line,
};

const LISTENER: Token = Token(usize::MAX);
/// How often pending requests are polled for their answer.
const PENDING_POLL: Duration = Duration::from_millis(2);
/// Lines handled per connection before the others get a turn.
const LINES_PER_TURN: usize = 64;
/// After running out of file descriptors, accepting is tried again this much later.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Why a connection was closed by the core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Close {
    /// Done, or gone: nothing to say.
    Quiet,
    /// No complete line within the deadline.
    NoLine,
    /// Its replies were not read within the deadline.
    Unread,
}

/// Runs the loop until the process exits (or, after an error of `poll` itself, logs and returns).
pub(super) fn run(mut server: ControlServer) {
    let max_connections = connection_cap();
    let audit = AuditQueue::start(server.audit.take(), Arc::clone(&server.unwritten));
    let mut event_loop = match EventLoop::new(server, audit, max_connections) {
        Ok(event_loop) => event_loop,
        Err(e) => {
            tracing::error!(error = %e, "the control socket's event loop could not start; no control commands");
            return;
        }
    };
    if let Err(e) = event_loop.run() {
        tracing::error!(error = %e, "the control socket's event loop stopped; no more control commands");
    }
}

/// [`MAX_CONNECTIONS`], or half the descriptor limit if that is lower: the rest of the process
/// (the SDK's sockets, the segment, the audit log) must still get descriptors when the control
/// socket is full. The limit is not raised: a vendor library may use `select`, which cannot take
/// descriptors past 1024.
fn connection_cap() -> usize {
    use nix::sys::resource::{Resource, getrlimit};
    let soft = getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft);
    let cap = MAX_CONNECTIONS.min(usize::try_from(soft / 2).unwrap_or(usize::MAX)).max(1);
    if cap < MAX_CONNECTIONS {
        tracing::info!(cap, nofile = soft, "control connections limited to half the descriptor limit");
    }
    cap
}

struct EventLoop {
    ctx: Ctx,
    poll: Poll,
    listener: UnixListener,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    /// Connections with lines left over from their last turn.
    ready: Vec<usize>,
    accept_retry: Option<Instant>,
}

impl EventLoop {
    fn new(server: ControlServer, audit: AuditQueue, max_connections: usize) -> std::io::Result<EventLoop> {
        let listener = server.listener.try_clone()?;
        listener.set_nonblocking(true)?;
        let mut listener = UnixListener::from_std(listener);
        let poll = Poll::new()?;
        poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(EventLoop {
            ctx: Ctx::new(server, audit, max_connections),
            poll,
            listener,
            conns: Vec::new(),
            free: Vec::new(),
            ready: Vec::new(),
            accept_retry: None,
        })
    }

    fn run(&mut self) -> std::io::Result<()> {
        let mut events = Events::with_capacity(256);
        loop {
            let timeout = self.timeout(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let now = Instant::now();
            for event in &events {
                match event.token() {
                    LISTENER => self.accept(now),
                    Token(i) => self.drive(i),
                }
            }
            for i in std::mem::take(&mut self.ready) {
                self.drive(i);
            }
            if self.accept_retry.is_some_and(|at| at <= now) {
                self.accept(now);
            }
            self.sweep(now);
        }
    }

    /// Until the next thing to do without an event: a deadline, a pending poll, an accept retry.
    fn timeout(&self, now: Instant) -> Option<Duration> {
        if !self.ready.is_empty() {
            return Some(Duration::ZERO);
        }
        let mut next = self.accept_retry;
        let mut sooner = |at: Instant| next = Some(next.map_or(at, |n| n.min(at)));
        for conn in self.conns.iter().flatten() {
            if conn.pending.is_some() {
                sooner(now + PENDING_POLL);
            } else if conn.unsent() == 0 {
                sooner(conn.line_due);
            }
            if let Some(due) = conn.write_due {
                sooner(due);
            }
        }
        next.map(|at| at.saturating_duration_since(now))
    }

    fn accept(&mut self, now: Instant) {
        self.accept_retry = None;
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => self.admit(stream, now),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    tracing::warn!(error = %e, "control socket: out of file descriptors; accepting again shortly");
                    self.accept_retry = Some(now + ACCEPT_RETRY);
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "control socket accept failed");
                    return;
                }
            }
        }
    }

    fn admit(&mut self, mut stream: mio::net::UnixStream, now: Instant) {
        let stats = &mut self.ctx.stats;
        if stats.connections >= stats.max_connections {
            stats.refused_over_cap += 1;
            if stats.refused_over_cap.is_power_of_two() {
                tracing::warn!(
                    open = stats.connections,
                    refused = stats.refused_over_cap,
                    "control connection refused: too many open"
                );
            }
            let line = format!("{}\n", json!({"ok": false, "error": "too many control connections; retry"}));
            let _ = std::io::Write::write(&mut stream, line.as_bytes());
            return;
        }
        let peer = match getsockopt(&stream, sockopt::PeerCredentials) {
            Ok(creds) => Peer { uid: creds.uid(), pid: creds.pid() },
            Err(e) => {
                tracing::warn!(error = %e, "control connection dropped: SO_PEERCRED failed");
                return;
            }
        };
        let mut conn = Conn::new(stream, peer, now);
        if !self.ctx.server.allowed_uids.contains(&peer.uid) {
            tracing::warn!(uid = peer.uid, pid = peer.pid, "control connection refused: uid not allowed");
            self.ctx.audit_refusal(peer.uid, "connect", "uid not allowed to control this core");
            let error = format!("uid {} is not allowed to control this core", peer.uid);
            conn.reply(&json!({"ok": false, "error": error}), now);
            conn.close_after_flush = true;
        }
        let i = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        if let Err(e) =
            self.poll.registry().register(&mut conn.stream, Token(i), Interest::READABLE | Interest::WRITABLE)
        {
            tracing::warn!(error = %e, "control connection dropped: could not register it");
            self.free.push(i);
            return;
        }
        self.conns[i] = Some(conn);
        self.ctx.stats.connections += 1;
        self.drive(i);
    }

    /// Writes what is queued, handles complete lines, reads more, until the socket would block, a
    /// request is pending, too much output waits, or the connection has had its turn.
    fn drive(&mut self, i: usize) {
        let EventLoop { ctx, conns, ready, .. } = self;
        let Some(conn) = conns.get_mut(i).and_then(Option::as_mut) else { return };
        let gate = Arc::clone(&ctx.server.in_command);
        let mut budget = LINES_PER_TURN;
        let keep = loop {
            // Read each time round, so a long turn does not age the deadlines it sets.
            let now = Instant::now();
            if conn.flush(now).is_err() {
                // Gone; a pending request still gets its answer (and audit entry) first.
                break conn.pending.is_some();
            }
            if conn.close_after_flush {
                if conn.unsent() > 0 {
                    break true;
                }
                // The refusal is out. Closing now would make a client that writes its command
                // before reading (qilinctl does) fail with EPIPE instead of reading why: shut down
                // our side only, and drop what it sends until it hangs up (or its line deadline).
                let _ = conn.stream.shutdown(std::net::Shutdown::Write);
                match conn.discard_some() {
                    Ok(Received::Bytes) => continue,
                    Ok(Received::WouldBlock) => break true,
                    Ok(Received::Eof) | Err(_) => break false,
                }
            }
            if conn.pending.is_some() || conn.unsent() > OUTPUT_HIGH_WATER {
                break true;
            }
            if budget == 0 {
                ready.push(i);
                break true;
            }
            let peer = conn.peer;
            if let Some(line) = conn.input.next_line() {
                budget -= 1;
                // Held while the command runs and its reply is written: see `ControlServer::exit_gate`.
                let _held = gate.lock().unwrap_or_else(PoisonError::into_inner);
                let outcome = match &line {
                    Line::Command(text) => ctx.execute(text.trim(), peer, now),
                    other => Outcome::Reply(json!({"ok": false, "error": other.error()})),
                };
                conn.input.wipe();
                match outcome {
                    Outcome::Reply(reply) => conn.reply(&reply, now),
                    Outcome::Pending(pending) => conn.pending = Some(pending),
                }
                if conn.flush(now).is_err() {
                    break conn.pending.is_some();
                }
                continue;
            }
            if conn.eof {
                break conn.unsent() > 0;
            }
            match conn.read_some() {
                Ok(Received::Bytes) => {}
                Ok(Received::Eof) => conn.eof = true,
                Ok(Received::WouldBlock) => break true,
                Err(_) => break false,
            }
        };
        if !keep {
            self.close(i, Close::Quiet);
        }
    }

    /// Answers the pending requests that have an answer (or timed out) and closes the connections
    /// past a deadline.
    fn sweep(&mut self, now: Instant) {
        for i in 0..self.conns.len() {
            let Some(conn) = self.conns[i].as_mut() else { continue };
            if let Some(pending) = &conn.pending {
                let gate = Arc::clone(&self.ctx.server.in_command);
                let _held = gate.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(reply) = self.ctx.poll(pending, conn.peer, now) {
                    conn.pending = None;
                    conn.reply(&reply, now);
                    drop(_held);
                    self.drive(i);
                }
                continue;
            }
            let close = match conn.write_due {
                Some(due) if due <= now => Close::Unread,
                None if conn.unsent() == 0 && conn.line_due <= now => Close::NoLine,
                _ => continue,
            };
            self.close(i, close);
        }
    }

    fn close(&mut self, i: usize, why: Close) {
        let Some(mut conn) = self.conns[i].take() else { return };
        let stats = &mut self.ctx.stats;
        let deadline_s = CLIENT_DEADLINE.as_secs();
        match why {
            Close::Quiet => {}
            Close::NoLine => {
                stats.closed_by_deadline += 1;
                tracing::warn!(
                    uid = conn.peer.uid,
                    pid = conn.peer.pid,
                    partial = conn.input.has_partial(),
                    closed_by_deadline = stats.closed_by_deadline,
                    "control connection closed: no complete command line within {deadline_s} s"
                );
                let error = format!("closed: no complete command line within {deadline_s} s");
                conn.reply(&json!({"ok": false, "error": error}), Instant::now());
                let _ = conn.flush(Instant::now());
            }
            Close::Unread => {
                stats.closed_by_deadline += 1;
                tracing::warn!(
                    uid = conn.peer.uid,
                    pid = conn.peer.pid,
                    unsent = conn.unsent(),
                    closed_by_deadline = stats.closed_by_deadline,
                    "control connection closed: its replies were not read within {deadline_s} s"
                );
            }
        }
        let _ = self.poll.registry().deregister(&mut conn.stream);
        self.free.push(i);
        stats.connections -= 1;
    }
}
