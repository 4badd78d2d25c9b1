//! One rotation's steps against the core, each audited, and the recovery that puts the feed back
//! on the primary with the credentials the holder still holds (the previous ones) after a failure.

use std::time::{Duration, Instant};

use qilin_market::control::{Reply, Request, Which};
use qilin_shm::{Next, Reader, Source as TickSource, Start, TickRecord};
use serde_json::{Value, json};

use super::{
    super::{
        Loaded,
        handoff::{CoreLink, LinkError, credentials_line},
    },
    Holder,
};

/// Why a rotation failed.
pub(super) struct Failure {
    /// `step: reason`.
    pub message: String,
    /// Worth trying the same set again later: the core was unreachable or silent, or the backup
    /// was not logged in.
    pub retry: bool,
}

/// What the last request got.
enum Last {
    /// Not sent: nothing listens at the socket.
    NotSent,
    /// Sent, but no answer (timed out, or the connection closed): the core may have done it.
    NoReply,
    /// The core's reply.
    Replied(Value),
}

/// One rotation's steps.
pub(super) struct Run<'a> {
    holder: &'a mut Holder,
    id: &'a str,
    pub failed: Option<Failure>,
    /// Whether the core may have left the state the rotation found: the failover was sent and not
    /// plainly refused. Then a failure needs a recovery.
    pub touched: bool,
    /// The core's credentials version of the new primary credentials, once handed over.
    pub new_primary_version: Option<u64>,
    last: Last,
}

impl<'a> Run<'a> {
    pub fn new(holder: &'a mut Holder, id: &'a str) -> Run<'a> {
        Run { holder, id, failed: None, touched: false, new_primary_version: None, last: Last::NotSent }
    }

    fn link(&self) -> CoreLink {
        self.holder.link.clone().expect("a rotation of CTP accounts runs only with a core link")
    }

    /// Sends `request`, audits the step with the reply; `Err` (and records the failure) unless the
    /// reply is ok.
    fn step(&mut self, step: &str, request: Request<'_>) -> Result<Value, ()> {
        let result = self.link().request(&request);
        self.record(step, result)
    }

    fn record(&mut self, step: &str, result: Result<Reply, LinkError>) -> Result<Value, ()> {
        let recorded = self.record_step(step, result);
        // A step can take seconds (a relogin waits for the broker): keep the status file fresh.
        self.holder.write_status();
        recorded
    }

    fn record_step(&mut self, step: &str, result: Result<Reply, LinkError>) -> Result<Value, ()> {
        match result {
            Ok(Reply::Ok(reply)) => {
                tracing::info!(rotation = %self.id, step, "done");
                self.holder.audit(
                    "secrets rotate",
                    0,
                    json!({"rotation": self.id, "step": step, "outcome": "ok", "reply": reply}),
                );
                self.last = Last::Replied(reply.clone());
                Ok(reply)
            }
            Ok(refused @ Reply::Refused(_)) => {
                let error = refused.error().unwrap_or("refused").to_owned();
                let reply = refused.to_value();
                tracing::warn!(rotation = %self.id, step, "refused: {error}");
                self.holder.audit(
                    "secrets rotate",
                    1,
                    json!({"rotation": self.id, "step": step, "outcome": format!("failed: {error}"), "reply": reply}),
                );
                self.last = Last::Replied(reply);
                self.failed = Some(Failure { message: format!("{step}: {error}"), retry: step == "failover" });
                Err(())
            }
            Err(e) => {
                tracing::warn!(rotation = %self.id, step, "failed: {e}");
                self.holder.audit(
                    "secrets rotate",
                    1,
                    json!({"rotation": self.id, "step": step, "outcome": format!("failed: {e}")}),
                );
                let retry = matches!(e, LinkError::Unreachable { .. } | LinkError::Io { .. });
                self.last = if matches!(e, LinkError::Unreachable { .. }) { Last::NotSent } else { Last::NoReply };
                self.failed = Some(Failure { message: format!("{step}: {e}"), retry });
                Err(())
            }
        }
    }

    /// Hands `session`'s credentials from `set` over (the line is built first, so `set` may be
    /// the holder's own; `None` is the holder's).
    fn hand(&mut self, step: &str, set: Option<&Loaded>, session: &str) -> Result<Value, ()> {
        let line = credentials_line(set.unwrap_or(&self.holder.current), session);
        let result = match line {
            Some(line) => self.link().send_credentials(&line),
            None => Ok(Reply::refused("no user id for this account")),
        };
        self.record(step, result)
    }

    fn sessions(&self) -> Result<Value, String> {
        match self.link().request(&Request::Sessions) {
            Ok(Reply::Ok(value)) => Ok(value),
            Ok(refused) => Err(format!("sessions: {}", refused.error().unwrap_or("refused"))),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The message of the failure just recorded.
    fn failure(&mut self) -> String {
        self.failed.take().map(|f| f.message).unwrap_or_default()
    }

    /// The backup changed: rotate it while it is the standby.
    pub fn rotate_backup(&mut self, new: &Loaded) {
        let active = self.sessions().ok().and_then(|s| s["active"].as_str().map(str::to_owned));
        if active.as_deref() == Some("backup") && self.step("failback (backup is active)", Request::Failback).is_err() {
            return;
        }
        if self.hand("hand over backup", Some(new), "backup").is_err() {
            return;
        }
        if self.step("relogin backup", Request::Relogin(Which::Backup)).is_err() {
            // Refused by the broker: put the old credentials back.
            let failed = self.failed.take();
            let _ = self.hand("roll back backup", None, "backup");
            let _ = self.step("relogin backup (previous credentials)", Request::Relogin(Which::Backup));
            self.failed = failed;
            if let Some(f) = &mut self.failed {
                f.message.push_str("; the backup runs on its previous credentials");
                f.retry = false;
            }
        }
    }

    /// The primary changed: failover → new credentials → relogin → failback → verify. A failure is
    /// left in `failed` for the holder, which then calls [`recover`](Run::recover) if `touched`.
    pub fn rotate_primary(&mut self, new: &Loaded) {
        if self.step("failover", Request::Failover).is_err() {
            // A refusal says which session is active: nothing switched unless it says the backup.
            // Without an answer the core may still do it.
            self.touched = match &self.last {
                Last::NotSent => false,
                Last::NoReply => true,
                Last::Replied(reply) => reply["active"] == "backup",
            };
            return;
        }
        self.touched = true;
        let Ok(reply) = self.hand("hand over primary", Some(new), "primary") else { return };
        self.new_primary_version = reply["credentials_version"].as_u64();
        if self.step("relogin primary", Request::Relogin(Which::Primary)).is_err() {
            return;
        }
        let failback_ns = qilin_shm::now_ns();
        if self.step("failback", Request::Failback).is_err() {
            return;
        }
        let verdict = verify_health(&self.holder.config.segment, failback_ns, self.holder.config.health_within);
        let (code, outcome) = match &verdict {
            Ok(seen) => (0, format!("ok: {seen}")),
            Err(e) => (1, format!("failed: {e}")),
        };
        self.holder.audit(
            "secrets rotate",
            code,
            json!({"rotation": self.id, "step": "verify health", "outcome": outcome}),
        );
        if let Err(e) = verdict {
            self.failed = Some(Failure { message: format!("verify health: {e}"), retry: false });
        }
    }

    /// Puts the feed back on the primary with the holder's (previous) credentials: hands them over
    /// again to a restarted core; if the core's primary holds other credentials (its version is not
    /// the one the core gave the held ones), fails over if the primary is active, hands the held
    /// ones back and relogs the primary in; relogs it in if it is down; fails back. `Err` says why
    /// it could not finish (each failed step is audited; an unreachable core as step `recover`).
    /// The rotation's own failure, if any, is kept.
    pub fn recover(&mut self) -> Result<(), String> {
        let failed = self.failed.take();
        let result = self.recover_steps();
        self.failed = failed;
        result
    }

    /// The state of the sessions, for the recovery; a failure is audited as step `recover`.
    fn recovery_sessions(&mut self) -> Result<Value, String> {
        self.sessions().inspect_err(|why| {
            self.holder.audit(
                "secrets rotate",
                1,
                json!({"rotation": self.id, "step": "recover", "outcome": format!("failed: {why}")}),
            );
        })
    }

    fn recover_steps(&mut self) -> Result<(), String> {
        let mut sessions = self.recovery_sessions()?;
        if self.holder.core_waits(&Reply::Ok(sessions.clone())) {
            // Audited as `secrets handoff`, as at start.
            self.holder
                .hand_over_all("recovery: the core is waiting for credentials (restarted)")
                .map_err(|e| e.to_string())?;
            sessions = self.recovery_sessions()?;
        }
        let primary = &sessions["sessions"]["primary"];
        let dirty = primary["credentials_version"].as_u64() != self.holder.primary_version;
        let logged_in = primary["state"] == "logged_in";
        let active_primary = sessions["active"] == "primary";
        let mut fail_back = !active_primary;
        if dirty {
            if active_primary && logged_in {
                // Its relogin would lose ticks while it is active.
                self.step("failover", Request::Failover).map_err(|()| self.failure())?;
                fail_back = true;
            }
            let reply = self.hand("roll back primary", None, "primary").map_err(|()| self.failure())?;
            self.holder.primary_version = reply["credentials_version"].as_u64();
        }
        if dirty || !logged_in {
            self.step("relogin primary (previous credentials)", Request::Relogin(Which::Primary))
                .map_err(|()| self.failure())?;
        }
        if fail_back {
            self.step("failback", Request::Failback).map_err(|()| self.failure())?;
        }
        Ok(())
    }
}

/// Whether the segment shows a tick of the primary session published after `since_ns`, within
/// `within`. `Ok` says what was seen (with the heartbeat's age).
pub fn verify_health(segment: &std::path::Path, since_ns: i64, within: Duration) -> Result<String, String> {
    let mut reader = Reader::open(segment).map_err(|e| format!("opening {}: {e}", segment.display()))?;
    reader.seek(Start::Newest);
    let deadline = Instant::now() + within;
    let mut tick = TickRecord::ZERO;
    let mut other = 0u64;
    while Instant::now() < deadline {
        match reader.try_next(&mut tick) {
            Next::Tick if tick.source == TickSource::Primary as u8 && tick.publish_ns >= since_ns => {
                let age_ms = (qilin_shm::now_ns() - reader.heartbeat_ns()) as f64 / 1e6;
                return Ok(format!(
                    "primary tick sequence {} published; heartbeat {age_ms:.1} ms old; {other} other ticks before it",
                    tick.sequence
                ));
            }
            Next::Tick => other += 1,
            Next::Empty => std::thread::sleep(Duration::from_millis(1)),
            _ => {}
        }
    }
    Err(format!(
        "no tick from the primary session within {} ms of the failback ({other} other ticks)",
        within.as_millis()
    ))
}
