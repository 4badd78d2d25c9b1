//! The session manager thread: credentials, logins, automatic and commanded switches, the header's
//! status line and the audit entries of every switch. Never the hot thread; it may block briefly
//! (the audit log's fsync, waiting for the hot thread to apply a switch).

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use qilin_audit::{AuditLog, Entry};
use qilin_shm::{Counter, LinkState, Reader, layout::StatusRecord};
use serde_json::{Value, json};

use super::{Credentials, Fault, Fronts, Links, SessionEvent, Which, disconnect_reason};
use crate::{config::FailoverConfig, engine::Command};

/// What reaches the manager: events from the fronts and requests from the control thread.
#[derive(Debug)]
pub enum Msg {
    /// A session's event.
    Event(Which, SessionEvent),
    /// An operator or sidecar request; the JSON reply goes back on the channel.
    Request(Request, Sender<Value>),
    /// An instrument subscribed (`true`) or unsubscribed over the control socket, for the fronts.
    Subscription(String, bool),
}

/// Requests the control thread forwards (after checking the peer's uid).
#[derive(Debug)]
pub enum Request {
    /// New credentials for a session (from the secrets uid only; checked by the control thread).
    Credentials(Box<Credentials>),
    /// Switch to the backup session.
    Failover,
    /// Switch to the primary session.
    Failback,
    /// Close a standby session and log it in again with its current credentials.
    Relogin(Which),
    /// Inject a fault into a simulated session.
    Inject(Which, Fault),
    /// Both sessions' state as JSON.
    Sessions,
}

/// A session's state as the manager sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// No credentials yet: nothing to log in with.
    WaitingCredentials,
    /// Connecting to a front.
    Connecting,
    /// A front is connected; not logged in.
    Connected,
    /// Login sent, no answer yet.
    LoggingIn,
    /// Logged in; ticks flow.
    LoggedIn,
    /// The last login was refused; retried after `login_retry_ms`.
    LoginFailed,
    /// The front connection dropped; the SDK reconnects by itself.
    Disconnected,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::WaitingCredentials => "waiting_credentials",
            State::Connecting => "connecting",
            State::Connected => "connected",
            State::LoggingIn => "logging_in",
            State::LoggedIn => "logged_in",
            State::LoginFailed => "login_failed",
            State::Disconnected => "disconnected",
        }
    }
}

struct Session {
    state: State,
    creds: Option<Credentials>,
    /// Credentials handed over so far (a number, never a digest of them).
    creds_version: u64,
    front: String,
    trading_day: u32,
    logins: u64,
    login_failures: u64,
    disconnects: u64,
    /// Disconnects per reason, in words (`0x1001 network read failed`).
    disconnect_reasons: std::collections::BTreeMap<String, u64>,
    /// Error answers (`OnRspError`, refused subscriptions).
    rsp_errors: u64,
    /// Instruments the front refused to subscribe at this login, with the error in words.
    refused: std::collections::BTreeMap<String, String>,
    last_error: Option<String>,
    up_since: Option<Instant>,
    retry_at: Option<Instant>,
    relogin_waiter: Option<(Sender<Value>, Instant)>,
}

impl Session {
    fn new() -> Session {
        Session {
            state: State::WaitingCredentials,
            creds: None,
            creds_version: 0,
            front: String::new(),
            trading_day: 0,
            logins: 0,
            login_failures: 0,
            disconnects: 0,
            disconnect_reasons: Default::default(),
            rsp_errors: 0,
            refused: Default::default(),
            last_error: None,
            up_since: None,
            retry_at: None,
            relogin_waiter: None,
        }
    }

    fn json(&self, now: Instant) -> Value {
        json!({
            "state": self.state.name(),
            "front": self.front,
            "user_id": self.creds.as_ref().map(|c| c.user_id.as_str()),
            "broker_id": self.creds.as_ref().map(|c| c.broker_id.as_str()),
            "credentials_version": self.creds_version,
            "trading_day": self.trading_day,
            "logins": self.logins,
            "login_failures": self.login_failures,
            "disconnects": self.disconnects,
            "disconnect_reasons": self.disconnect_reasons,
            "rsp_errors": self.rsp_errors,
            "refused_instruments": self.refused,
            "up_for_ms": self.up_since.map(|t| now.duration_since(t).as_millis() as u64),
            "last_error": self.last_error,
        })
    }
}

/// The manager. Build it on the main thread, [`run`](Manager::run) it on its own.
pub struct Manager {
    config: FailoverConfig,
    fronts: Box<dyn Fronts>,
    sessions: [Session; 2],
    active: Option<Which>,
    /// The current backup activation was automatic (so automatic failback may undo it).
    auto_failed_over: bool,
    failovers: u32,
    commands: Sender<Command>,
    links: Links,
    audit: Option<AuditLog>,
    segment: PathBuf,
    rx: Receiver<Msg>,
    status: Option<StatusRecord>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager").field("active", &self.active).field("failovers", &self.failovers).finish()
    }
}

impl Manager {
    /// A manager driving `fronts`, telling the hot thread through `commands`, auditing to `audit`.
    pub fn new(
        config: FailoverConfig,
        fronts: Box<dyn Fronts>,
        links: Links,
        commands: Sender<Command>,
        audit: Option<AuditLog>,
        segment: PathBuf,
        rx: Receiver<Msg>,
    ) -> Manager {
        Manager {
            config,
            fronts,
            sessions: [Session::new(), Session::new()],
            active: None,
            auto_failed_over: false,
            failovers: 0,
            commands,
            links,
            audit,
            segment,
            rx,
            status: None,
        }
    }

    /// Serves events and requests until every sender is gone.
    pub fn run(mut self) {
        self.publish_status();
        loop {
            match self.rx.recv_timeout(Duration::from_millis(20)) {
                Ok(Msg::Event(which, event)) => self.on_event(which, event),
                Ok(Msg::Request(request, reply)) => self.on_request(request, reply),
                Ok(Msg::Subscription(instrument, subscribed)) => self.fronts.subscription(&instrument, subscribed),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            self.tick(Instant::now());
        }
    }

    fn session(&mut self, which: Which) -> &mut Session {
        &mut self.sessions[which.index()]
    }

    fn on_event(&mut self, which: Which, event: SessionEvent) {
        let now = Instant::now();
        match event {
            SessionEvent::Connected { front } => {
                tracing::info!(session = which.name(), %front, "front connected");
                let s = self.session(which);
                s.front = front;
                s.state = State::Connected;
                self.login(which);
            }
            SessionEvent::LoggedIn { trading_day } => {
                tracing::info!(session = which.name(), trading_day, "logged in");
                self.links.set(which, true);
                let s = self.session(which);
                s.state = State::LoggedIn;
                s.logins += 1;
                s.trading_day = trading_day;
                s.up_since = Some(now);
                s.retry_at = None;
                s.refused.clear(); // this login subscribes everything again
                if let Some((reply, _)) = s.relogin_waiter.take() {
                    let _ = reply.send(json!({"ok": true, "session": which.name(), "state": "logged_in"}));
                }
                // The active session is down and this one just came up: take over.
                if let Some(active) = self.active
                    && active != which
                    && self.sessions[active.index()].state != State::LoggedIn
                    && self.config.auto
                {
                    let reason = format!("{} is down and {} logged in", active.name(), which.name());
                    self.switch_logged(which, "auto", &reason);
                }
            }
            SessionEvent::LoginFailed { error_id, message } => {
                tracing::warn!(session = which.name(), error_id, %message, "login failed");
                self.links.set(which, false);
                let retry = Duration::from_millis(self.config.login_retry_ms);
                let s = self.session(which);
                s.state = State::LoginFailed;
                s.login_failures += 1;
                s.up_since = None;
                s.retry_at = Some(now + retry);
                let error = format!("login failed: ErrorID {error_id}: {message}");
                s.last_error = Some(error.clone());
                if let Some((reply, _)) = s.relogin_waiter.take() {
                    let _ = reply
                        .send(json!({"ok": false, "session": which.name(), "state": "login_failed", "error": error}));
                }
                self.fail_active(which, &error);
            }
            SessionEvent::Disconnected { reason } => {
                let words = format!("front disconnected: {reason:#x} {}", disconnect_reason(reason));
                tracing::warn!(session = which.name(), reason, "{words}");
                self.links.set(which, false);
                let s = self.session(which);
                s.state = State::Disconnected;
                s.disconnects += 1;
                *s.disconnect_reasons.entry(format!("{reason:#x} {}", disconnect_reason(reason))).or_default() += 1;
                s.up_since = None;
                s.last_error = Some(words.clone());
                self.send(Command::Count(Counter::FrontDisconnects, 1));
                self.fail_active(which, &words);
            }
            SessionEvent::RspError { request, error_id, message } => {
                tracing::warn!(session = which.name(), request, error_id, %message, "error answer from the front");
                let s = self.session(which);
                s.rsp_errors += 1;
                s.last_error = Some(format!("{request}: ErrorID {error_id}: {message}"));
            }
            SessionEvent::SubscriptionRefused { instrument, error_id, message } => {
                tracing::warn!(session = which.name(), %instrument, error_id, %message, "the front refused to subscribe this instrument");
                let s = self.session(which);
                s.rsp_errors += 1;
                let error = format!("ErrorID {error_id}: {message}");
                s.last_error = Some(format!("SubscribeMarketData {instrument}: {error}"));
                s.refused.insert(instrument, error);
            }
            SessionEvent::HeartbeatWarning { seconds } => {
                let words = format!("heartbeat warning: no data for {seconds} s");
                tracing::warn!(session = which.name(), seconds, "heartbeat warning");
                let threshold = self.config.heartbeat_warning_s as i32;
                let s = self.session(which);
                s.last_error = Some(words.clone());
                if seconds >= threshold {
                    // Still logged in, but not healthy: the failback clock starts again.
                    if s.state == State::LoggedIn {
                        s.up_since = Some(now);
                    }
                    self.fail_active(which, &words);
                }
            }
        }
        self.publish_status();
    }

    /// The session `which` failed; if it is the active one, switch to the other when allowed.
    fn fail_active(&mut self, which: Which, reason: &str) {
        if self.active != Some(which) || !self.config.auto {
            return;
        }
        let other = which.other();
        if self.sessions[other.index()].state == State::LoggedIn {
            self.switch_logged(other, "auto", &format!("{}: {reason}", which.name()));
        } else {
            tracing::error!(
                session = which.name(),
                other = other.name(),
                other_state = self.sessions[other.index()].state.name(),
                "the active session failed and the other one is not logged in: no ticks until one is"
            );
        }
    }

    /// Starts a login on a connected session if it has credentials.
    fn login(&mut self, which: Which) {
        let s = &mut self.sessions[which.index()];
        if let Some(creds) = &s.creds {
            s.state = State::LoggingIn;
            self.fronts.login(which, creds);
        }
    }

    /// (Re)creates a session's connection with its current credentials.
    fn connect(&mut self, which: Which) {
        self.links.set(which, false);
        let s = &mut self.sessions[which.index()];
        if let Some(creds) = &s.creds {
            s.state = State::Connecting;
            s.up_since = None;
            self.fronts.connect(which, creds);
        }
    }

    fn on_request(&mut self, request: Request, reply: Sender<Value>) {
        let answer = match request {
            Request::Credentials(creds) => Some(self.credentials(*creds)),
            Request::Failover => Some(self.switch_command(Which::Backup)),
            Request::Failback => Some(self.switch_command(Which::Primary)),
            Request::Relogin(which) => self.relogin(which, reply.clone()),
            Request::Inject(which, fault) => Some(match self.fronts.inject(which, fault) {
                Ok(()) => json!({"ok": true, "session": which.name(), "injected": format!("{fault:?}")}),
                Err(e) => json!({"ok": false, "error": e}),
            }),
            Request::Sessions => Some(self.sessions_json()),
        };
        if let Some(answer) = answer {
            let _ = reply.send(answer);
        }
        self.publish_status();
    }

    fn credentials(&mut self, creds: Credentials) -> Value {
        let which = creds.session;
        let s = &mut self.sessions[which.index()];
        s.creds = Some(creds);
        s.creds_version += 1;
        let version = s.creds_version;
        tracing::info!(session = which.name(), credentials_version = version, "credentials received");
        let applied = match s.state {
            State::WaitingCredentials | State::LoginFailed | State::Disconnected => {
                self.connect(which);
                "connecting and logging in with them"
            }
            State::Connected => {
                self.login(which);
                "logging in with them"
            }
            State::Connecting | State::LoggingIn | State::LoggedIn => {
                "stored; the session keeps running and uses them at its next login (relogin applies them now)"
            }
        };
        json!({"ok": true, "session": which.name(), "credentials_version": version, "applied": applied})
    }

    fn relogin(&mut self, which: Which, reply: Sender<Value>) -> Option<Value> {
        if self.active == Some(which) && self.sessions[which.index()].state == State::LoggedIn {
            return Some(json!({"ok": false, "session": which.name(), "error": format!(
                "{} is the active session: fail over first (a relogin of the active session would lose ticks)",
                which.name()
            )}));
        }
        if self.sessions[which.index()].creds.is_none() {
            return Some(json!({"ok": false, "session": which.name(), "error": "no credentials for this session yet"}));
        }
        tracing::info!(session = which.name(), "relogin: closing the session and logging in again");
        self.fronts.release(which);
        self.connect(which);
        let deadline = Instant::now() + Duration::from_millis(self.config.command_timeout_ms);
        let s = self.session(which);
        if let Some((old, _)) = s.relogin_waiter.replace((reply, deadline)) {
            let _ = old.send(json!({"ok": false, "error": "superseded by another relogin"}));
        }
        None
    }

    fn switch_command(&mut self, to: Which) -> Value {
        if self.active == Some(to) {
            return json!({"ok": true, "active": to.name(), "switched": false, "note": format!("{} is already active", to.name())});
        }
        let state = self.sessions[to.index()].state;
        if state != State::LoggedIn {
            let error = format!("the {} session is not logged in ({}); nothing switched", to.name(), state.name());
            self.audit_switch(self.active, to, "command", "operator request", Some(&error));
            return json!({"ok": false, "active": self.active.map(Which::name), "error": error});
        }
        let from = self.active;
        self.switch_logged(to, "command", "operator request");
        match self.await_active(to) {
            Ok(()) => json!({"ok": true, "active": to.name(), "from": from.map(Which::name), "switched": true}),
            Err(e) => json!({"ok": false, "active": to.name(), "error": e}),
        }
    }

    /// Makes `to` active: tells the hot thread (with an overlap during which both sessions' ticks
    /// are taken and deduplicated), counts, updates the status line, logs and audits.
    fn switch_logged(&mut self, to: Which, trigger: &str, reason: &str) {
        let from = self.active;
        self.active = Some(to);
        self.auto_failed_over = trigger != "command" && to == Which::Backup;
        let overlap_until_ns = crate::engine::mono_ns() + (self.config.overlap_ms as i64) * 1_000_000;
        self.send(Command::Switch { active: to.source(), overlap_until_ns });
        if from.is_some() {
            self.failovers += 1;
            self.send(Command::Count(Counter::Failovers, 1));
        }
        self.publish_status();
        tracing::warn!(from = from.map(Which::name), to = to.name(), trigger, reason, "session switch");
        self.audit_switch(from, to, trigger, reason, None);
    }

    fn audit_switch(&self, from: Option<Which>, to: Which, trigger: &str, reason: &str, error: Option<&str>) {
        let Some(audit) = &self.audit else { return };
        let command = match (from, to) {
            (None, _) if error.is_none() => "activate",
            (_, Which::Backup) => "failover",
            (_, Which::Primary) => "failback",
        };
        let entry = Entry {
            command: command.into(),
            args: Vec::new(),
            exit_code: i32::from(error.is_some()),
            actions: vec![json!({
                "from": from.map(Which::name),
                "to": to.name(),
                "trigger": trigger,
                "reason": reason,
                "overlap_ms": self.config.overlap_ms,
                "outcome": error.map_or_else(|| "switched".to_string(), |e| format!("refused: {e}")),
                "failovers": self.failovers,
            })],
        };
        if let Err(e) = audit.append(&entry) {
            tracing::error!(error = %e, "could not write the audit log");
        }
    }

    /// Waits (bounded) until the segment's status line shows `to` active.
    fn await_active(&self, to: Which) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_millis(self.config.command_timeout_ms.min(2000));
        while Instant::now() < deadline {
            // Only the status line: no pre-fault of the whole ring for it (every millisecond).
            if let Ok(reader) = Reader::open_unpopulated(&self.segment)
                && let Ok(status) = reader.status()
                && status.active_source == to.source() as u32
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Err("the switch was sent but the segment does not show it yet (is the hot thread running?)".into())
    }

    fn tick(&mut self, now: Instant) {
        for which in Which::BOTH {
            let s = &mut self.sessions[which.index()];
            if s.state == State::LoginFailed && s.retry_at.is_some_and(|t| t <= now) {
                s.retry_at = None;
                // CTP keeps the connection after a refused login: log in again on it.
                self.login(which);
            }
            let s = &mut self.sessions[which.index()];
            if s.relogin_waiter.as_ref().is_some_and(|(_, deadline)| *deadline <= now)
                && let Some((reply, _)) = s.relogin_waiter.take()
            {
                let _ = reply.send(json!({"ok": false, "session": which.name(), "state": s.state.name(),
                    "error": format!("not logged in within {} ms", self.config.command_timeout_ms)}));
            }
        }
        let [primary, backup] = [&self.sessions[0], &self.sessions[1]];
        match self.active {
            None if primary.state == State::LoggedIn => {
                self.switch_logged(Which::Primary, "start", "primary logged in")
            }
            None if backup.state == State::LoggedIn
                && (primary.creds.is_none()
                    || matches!(primary.state, State::LoginFailed | State::Disconnected)
                    || backup.up_since.is_some_and(|t| now.duration_since(t) >= Duration::from_secs(1))) =>
            {
                self.switch_logged(Which::Backup, "start", "backup logged in; primary is not");
            }
            Some(Which::Backup)
                if self.auto_failed_over
                    && self.config.failback_after_ms > 0
                    && primary.state == State::LoggedIn
                    && primary.up_since.is_some_and(|t| {
                        now.duration_since(t) >= Duration::from_millis(self.config.failback_after_ms)
                    }) =>
            {
                let reason = format!("primary logged in for {} ms", self.config.failback_after_ms);
                self.switch_logged(Which::Primary, "auto", &reason);
            }
            _ => {}
        }
        self.publish_status();
    }

    fn sessions_json(&self) -> Value {
        let now = Instant::now();
        json!({
            "ok": true,
            "active": self.active.map(Which::name),
            "failovers": self.failovers,
            "auto_failback": self.auto_failed_over && self.config.failback_after_ms > 0,
            "api_version": self.fronts.api_version(),
            "sessions": {
                "primary": self.sessions[0].json(now),
                "backup": self.sessions[1].json(now),
            },
        })
    }

    fn publish_status(&mut self) {
        let link_state = match self.active {
            // No session active yet: the furthest any session got. A front that answered counts as
            // connected while the login is sent or after it was refused, as for the active session.
            None if self
                .sessions
                .iter()
                .any(|s| matches!(s.state, State::Connected | State::LoggingIn | State::LoginFailed)) =>
            {
                LinkState::Connected
            }
            None if self.sessions.iter().any(|s| s.state == State::Connecting) => LinkState::Connecting,
            None if self.sessions.iter().any(|s| s.state == State::Disconnected) => LinkState::Disconnected,
            None => LinkState::Idle,
            Some(w) => match self.sessions[w.index()].state {
                State::LoggedIn if w == Which::Backup => LinkState::FailedOver,
                State::LoggedIn => LinkState::LoggedIn,
                State::Connected | State::LoggingIn | State::LoginFailed => LinkState::Connected,
                State::Connecting => LinkState::Connecting,
                State::Disconnected | State::WaitingCredentials => LinkState::Disconnected,
            },
        };
        let shown = self.active.map(|w| &self.sessions[w.index()]);
        let status = StatusRecord {
            link_state: link_state as u32,
            active_source: self.active.map_or(0, |w| w.source() as u32),
            trading_day: shown.map_or(0, |s| s.trading_day),
            failovers: self.failovers,
            api_version: fixed_text(self.fronts.api_version()),
            front: fixed_text(shown.map_or("", |s| s.front.as_str())),
        };
        if self.status != Some(status) {
            self.status = Some(status);
            self.send(Command::Status(status));
        }
    }

    fn send(&self, command: Command) {
        if self.commands.send_timeout(command, Duration::from_secs(1)).is_err() {
            tracing::error!(?command, "the hot thread did not take a session command within 1 s");
        }
    }
}

/// ASCII text cut to fit a NUL-padded field (non-ASCII bytes become `?`).
fn fixed_text<const N: usize>(text: &str) -> [u8; N] {
    let mut out = [0u8; N];
    for (o, b) in out.iter_mut().take(N - 1).zip(text.bytes()) {
        *o = if b.is_ascii() && b != 0 { b } else { b'?' };
    }
    out
}
