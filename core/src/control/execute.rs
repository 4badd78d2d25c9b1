//! What each command does, without ever blocking the loop: a command is answered at once, or it
//! becomes a [`Pending`] request the loop polls ([`Ctx::poll`]) until its answer or its timeout.
//! State-changing commands are audited here, with the peer and the outcome.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError};
use qilin_audit::Entry;
use qilin_market::control::{Request, RequestError};
use qilin_shm::Reader;
use serde_json::{Value, json};

use super::{ControlServer, audit::AuditQueue, conn::Peer, listed::Verdict};
use crate::{
    engine::{Command, id_key},
    session::{
        Credentials,
        manager::{Msg, Request as ManagerRequest},
    },
};

/// How long a `subscribe` waits for the directory to show the instrument (the hot thread applies it
/// at its next housekeeping, about a millisecond later).
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The result of one command.
#[derive(Debug)]
pub(super) enum Outcome {
    /// Answered.
    Reply(Value),
    /// Waiting for another thread; the connection reads no further line meanwhile.
    Pending(Pending),
}

/// A request waiting for its answer.
#[derive(Debug)]
pub(super) enum Pending {
    /// The session manager's answer; `audit` holds the request line of a command audited once
    /// answered (`relogin`, `inject`).
    Manager { answer: Receiver<Value>, due: Instant, audit: Option<String> },
    /// The instrument showing up in the directory.
    Subscribe { id: String, option: bool, due: Instant },
}

/// Counts shown in the `status` reply's `"control"` object.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Stats {
    /// Connections open now.
    pub connections: usize,
    /// The most served at once ([`super::MAX_CONNECTIONS`], or fewer under a low descriptor limit).
    pub max_connections: usize,
    /// Connections closed because the client missed a deadline.
    pub closed_by_deadline: u64,
    /// Connections refused because `max_connections` were open.
    pub refused_over_cap: u64,
}

/// The server and what the loop's commands share.
#[derive(Debug)]
pub(super) struct Ctx {
    pub server: ControlServer,
    pub stats: Stats,
    /// The segment, opened on first use.
    reader: Option<Reader>,
    audit: AuditQueue,
    /// Options of listed futures added to the directory over the socket in this run.
    options_added: usize,
    /// Requests waiting for an answer that will need an audit entry (`subscribe` waiting for the
    /// directory, `relogin` and `inject` waiting for the session manager).
    pending_audits: usize,
}

impl Ctx {
    pub(super) fn new(server: ControlServer, audit: AuditQueue, max_connections: usize) -> Ctx {
        let stats = Stats { max_connections, ..Stats::default() };
        Ctx { server, stats, reader: None, audit, options_added: 0, pending_audits: 0 }
    }

    /// Executes one line from `peer`.
    pub(super) fn execute(&mut self, line: &str, peer: Peer, now: Instant) -> Outcome {
        let request = match Request::parse(line) {
            Ok(request) => request,
            Err(e) => return Outcome::Reply(refusal(e)),
        };
        // Every command that changes something is audited here, whoever sent it. Failover and
        // failback are audited by the session manager as switches (refusals included), credentials
        // by qilin-secrets (refusals here); status and sessions change nothing.
        let audited = matches!(
            request,
            Request::Shutdown
                | Request::Subscribe(_)
                | Request::Unsubscribe(_)
                | Request::Relogin(_)
                | Request::Inject(..)
        );
        if audited && !self.audit.has_room(self.pending_audits + 1) {
            self.audit.refused_behind();
            let error = format!("{request}: the audit log is behind; nothing done, retry");
            return Outcome::Reply(json!({"ok": false, "error": error}));
        }
        match request {
            Request::Credentials(json_text) => self.credentials(json_text, peer, now),
            Request::Sessions => self.ask(ManagerRequest::Sessions, now, None),
            Request::Failover => self.ask(ManagerRequest::Failover, now, None),
            Request::Failback => self.ask(ManagerRequest::Failback, now, None),
            Request::Relogin(which) => self.ask_audited(ManagerRequest::Relogin(which), &request, peer, now),
            Request::Inject(which, fault) => {
                self.ask_audited(ManagerRequest::Inject(which, fault), &request, peer, now)
            }
            Request::Status => Outcome::Reply(self.status()),
            Request::Shutdown => {
                // Said in the log, so a test (or an operator) can tell a commanded stop from a signal.
                tracing::info!(uid = peer.uid, pid = peer.pid, "shutdown requested over the control socket");
                let reply = self.send(Command::Shutdown, json!({"ok": true}));
                self.audit(&request, peer, &reply);
                Outcome::Reply(reply)
            }
            Request::Unsubscribe(id) => {
                let reply = match id_key(id) {
                    Some(key) => self.send(Command::Unsubscribe(key), json!({"ok": true, "instrument": id})),
                    None => refusal(RequestError::Instrument(id.to_owned())),
                };
                if reply["ok"] == json!(true) {
                    self.tell_fronts(id, false);
                }
                self.audit(&request, peer, &reply);
                Outcome::Reply(reply)
            }
            Request::Subscribe(id) => match self.subscribe(id, now) {
                Outcome::Reply(reply) => {
                    self.audit(&request, peer, &reply);
                    Outcome::Reply(reply)
                }
                pending => pending,
            },
        }
    }

    /// The answer to `pending`, once there is one (`peer` for the audit entry).
    pub(super) fn poll(&mut self, pending: &Pending, peer: Peer, now: Instant) -> Option<Value> {
        match pending {
            Pending::Manager { answer, due, audit } => {
                let reply = match answer.try_recv() {
                    Ok(reply) => reply,
                    Err(TryRecvError::Empty) if now < *due => return None,
                    Err(TryRecvError::Empty) => {
                        json!({"ok": false, "error": "the session manager did not answer in time"})
                    }
                    Err(TryRecvError::Disconnected) => {
                        json!({"ok": false, "error": "the session manager has stopped"})
                    }
                };
                if let Some(line) = audit {
                    self.pending_audits -= 1;
                    match Request::parse(line) {
                        Ok(request) => self.audit(&request, peer, &reply),
                        Err(_) => unreachable!("the line was parsed when it came"),
                    }
                }
                Some(reply)
            }
            Pending::Subscribe { id, option, due } => {
                let reply = match self.reader().ok().and_then(|r| r.find_instrument(id)) {
                    Some(index) => {
                        self.options_added += usize::from(*option);
                        self.tell_fronts(id, true);
                        json!({"ok": true, "instrument": id, "index": index})
                    }
                    None if now < *due => return None,
                    None => json!({"ok": false, "instrument": id,
                        "error": "not admitted: unknown product or directory full (see the core's log)"}),
                };
                self.pending_audits -= 1;
                self.audit(&Request::Subscribe(id), peer, &reply);
                Some(reply)
            }
        }
    }

    fn subscribe(&mut self, id: &str, now: Instant) -> Outcome {
        let Some(key) = id_key(id) else {
            return Outcome::Reply(refusal(RequestError::Instrument(id.to_owned())));
        };
        let present = match self.reader() {
            Ok(reader) => reader.find_instrument(id),
            Err(error) => return Outcome::Reply(json!({"ok": false, "error": error})),
        };
        if let Some(index) = present {
            // Already in the directory (its place is permanent): only its subscription changes.
            let reply = self.send(Command::Subscribe(key), json!({"ok": true, "instrument": id, "index": index}));
            if reply["ok"] == json!(true) {
                self.tell_fronts(id, true);
            }
            return Outcome::Reply(reply);
        }
        let option = match self.server.listed.judge(id) {
            Verdict::Listed => false,
            Verdict::OptionOfListed if self.options_added < self.server.listed.option_budget() => true,
            Verdict::OptionOfListed => {
                let error = format!(
                    "{id} is not listed: {} options of listed futures were already added over the control socket \
                     since the core started (its limit, a quarter of the directory); list it in core.subscribe",
                    self.options_added
                );
                return Outcome::Reply(json!({"ok": false, "instrument": id, "error": error}));
            }
            Verdict::Refused(error) => return Outcome::Reply(json!({"ok": false, "instrument": id, "error": error})),
        };
        let queued = self.send(Command::Subscribe(key), json!({"ok": true}));
        if queued["ok"] != json!(true) {
            return Outcome::Reply(queued);
        }
        self.pending_audits += 1;
        Outcome::Pending(Pending::Subscribe { id: id.to_owned(), option, due: now + SUBSCRIBE_TIMEOUT })
    }

    fn credentials(&mut self, json_text: &str, peer: Peer, now: Instant) -> Outcome {
        let Some(sessions) = &self.server.sessions else {
            return Outcome::Reply(no_sessions()); // refused before the line is parsed
        };
        if peer.uid != sessions.secrets_uid {
            let reason = format!(
                "uid {} may not hand over credentials (only the secrets uid {})",
                peer.uid, sessions.secrets_uid
            );
            tracing::warn!(uid = peer.uid, pid = peer.pid, "credentials refused: not the secrets uid");
            self.audit_refusal(peer.uid, "credentials", &reason);
            return Outcome::Reply(json!({"ok": false, "error": reason}));
        }
        match Credentials::parse(json_text) {
            Ok(creds) => self.ask(ManagerRequest::Credentials(Box::new(creds)), now, None),
            Err(e) => {
                tracing::warn!(uid = peer.uid, error = %e, "credentials refused: malformed");
                Outcome::Reply(json!({"ok": false, "error": e}))
            }
        }
    }

    /// Forwards a request to the session manager; its answer is polled (and audited with `audit`,
    /// the request line, once it comes).
    fn ask(&self, request: ManagerRequest, now: Instant, audit: Option<String>) -> Outcome {
        let Some(sessions) = &self.server.sessions else {
            return Outcome::Reply(no_sessions());
        };
        let (tx, rx) = crossbeam_channel::bounded(1);
        if sessions.manager.send(Msg::Request(request, tx)).is_err() {
            return Outcome::Reply(json!({"ok": false, "error": "the session manager has stopped"}));
        }
        let due = now + sessions.timeout + Duration::from_secs(1);
        Outcome::Pending(Pending::Manager { answer: rx, due, audit })
    }

    /// [`Ctx::ask`] for a command audited with its answer: at once if refused here, else when
    /// the manager answers.
    fn ask_audited(&mut self, manager: ManagerRequest, request: &Request<'_>, peer: Peer, now: Instant) -> Outcome {
        match self.ask(manager, now, Some(request.line())) {
            Outcome::Reply(reply) => {
                self.audit(request, peer, &reply);
                Outcome::Reply(reply)
            }
            pending => {
                self.pending_audits += 1;
                pending
            }
        }
    }

    /// Tells the sessions' fronts (through the session manager, never the hot thread) that an
    /// instrument was subscribed or unsubscribed, so the CTP SDK subscribes it too.
    fn tell_fronts(&self, id: &str, subscribed: bool) {
        if let Some(sessions) = &self.server.sessions {
            let _ = sessions.manager.send(Msg::Subscription(id.to_string(), subscribed));
        }
    }

    fn send(&self, command: Command, ok: Value) -> Value {
        match self.server.commands.try_send(command) {
            Ok(()) => ok,
            Err(_) => {
                self.server.count_drop();
                json!({"ok": false, "error": "command queue full; the core is busy, retry"})
            }
        }
    }

    fn reader(&mut self) -> Result<&Reader, String> {
        if self.reader.is_none() {
            self.reader = Some(Reader::open(&self.server.segment).map_err(|e| e.to_string())?);
        }
        Ok(self.reader.as_ref().expect("opened above"))
    }

    fn status(&mut self) -> Value {
        let stats = self.stats;
        let mut value = match self.reader() {
            Ok(reader) => super::status_json(reader),
            Err(error) => return json!({"ok": false, "error": error}),
        };
        value["control"] = json!({
            "connections": stats.connections,
            "max_connections": stats.max_connections,
            "closed_by_deadline": stats.closed_by_deadline,
            "refused_over_cap": stats.refused_over_cap,
            "client_deadline_ms": super::CLIENT_DEADLINE.as_millis() as u64,
        });
        value
    }

    /// The audit entry of a refused connection or credential hand-over (refused either way: when the
    /// queue is full it is only counted).
    pub(super) fn audit_refusal(&mut self, uid: u32, command: &str, reason: &str) {
        if !self.audit.has_room(self.pending_audits + 1) {
            self.audit.refused_behind();
            return;
        }
        let socket = self.server.path.display().to_string();
        self.audit.submit(Entry {
            command: format!("refused {command}"),
            args: Vec::new(),
            exit_code: 1,
            actions: vec![json!({"peer_uid": uid, "socket": socket, "reason": reason})],
        });
    }

    /// The audit entry of a state-changing command: who, what and the outcome.
    fn audit(&mut self, request: &Request<'_>, peer: Peer, reply: &Value) {
        let args = match request {
            Request::Subscribe(id) | Request::Unsubscribe(id) => vec![(*id).to_owned()],
            Request::Relogin(_) | Request::Inject(..) => request.line().split(' ').skip(1).map(String::from).collect(),
            _ => Vec::new(),
        };
        let socket = self.server.path.display().to_string();
        self.audit.submit(Entry {
            command: request.verb().to_owned(),
            args,
            exit_code: i32::from(reply["ok"] != json!(true)),
            actions: vec![json!({
                "peer_uid": peer.uid,
                "peer_pid": peer.pid,
                "socket": socket,
                "request": request.line(),
                "reply": reply,
            })],
        });
    }
}

fn refusal(error: RequestError) -> Value {
    json!({"ok": false, "error": error.to_string()})
}

/// The reply to a session command on a core whose source has no primary/backup sessions.
fn no_sessions() -> Value {
    json!({"ok": false, "error": "this source has no primary/backup sessions (sim with [source.sim.sessions] enabled, or ctp)"})
}
