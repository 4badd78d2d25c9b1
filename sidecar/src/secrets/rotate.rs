//! Holding the credentials, handing them to the core, and rotating them: the operators' runbook
//! (rotation = fail over to the backup account, replace the primary's credentials, fail back),
//! driven by a change of the watched secret file or directory.
//!
//! On every change of the source ([`Holder::poll`] loads it every interval and compares the values):
//!
//! 1. **validate** the new set with the same checks as `qilinctl validate-env`; a set with problems
//!    is refused (audited with the key names and reasons) and the running credentials stay;
//! 2. if the backup account changed: hand the new backup credentials over and **relogin** the
//!    backup session while it is the standby (failing back first if the backup is active);
//! 3. if the primary account changed: **failover** to the backup, hand the new primary
//!    credentials over, **relogin** the primary (if its login is refused, the old credentials are
//!    handed back and the primary logs in with them again: rolled back), **failback**;
//! 4. **verify** health from the segment: the heartbeat is live and ticks from the primary session
//!    are published again within `health_within`.
//!
//! Every step is an audit entry (`secrets rotate`, with the rotation's id, the step, the outcome
//! and the core's reply), never a value. Other keys (NATS, rate-limit tokens) are taken as they
//! come: the sidecars that use them read their own secret files.
//!
//! The holder also re-hands credentials to a core that asks for them (a session in
//! `waiting_credentials`: the core restarted), checked every few seconds.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use qilin_audit::{AuditLog, Entry};
use qilin_shm::{Next, Reader, Source as TickSource, Start, TickRecord};
use serde_json::{Value, json};

use qilin_market::control::{Reply, Request, SessionsReply, Which};

use super::{
    Loaded, Profile, Source,
    handoff::{ACCOUNTS, CoreLink, LinkError, account_changed, changed_keys, credentials_line},
};

/// Settings of the holder.
#[derive(Clone, Debug)]
pub struct HolderConfig {
    /// The watched source.
    pub source: Source,
    /// The profile new sets are validated for.
    pub profile: Profile,
    /// The segment read to verify health after a rotation.
    pub segment: PathBuf,
    /// How long the primary has to publish ticks again after a failback.
    pub health_within: Duration,
    /// Whether to watch the source for changes.
    pub watch: bool,
}

/// The credentials held and the link to the core.
#[derive(Debug)]
pub struct Holder {
    config: HolderConfig,
    link: Option<CoreLink>,
    audit: AuditLog,
    current: Loaded,
    /// The last set refused, so an unchanged bad file is not refused (and audited) again and again.
    refused: Option<Loaded>,
    rotations: u64,
    next_core_check: Instant,
    retry_after: Option<Instant>,
    core_unreachable_logged: bool,
}

/// What one rotation did, in the end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The new set runs and health was verified.
    Rotated,
    /// Only keys the core does not use changed; the new set is held.
    Updated,
    /// The new set failed validation; the old one runs.
    Refused,
    /// A step failed; what runs is described in the message.
    Failed(String),
}

impl Holder {
    /// A holder of `current` (already validated), handing over through `link` if given.
    pub fn new(config: HolderConfig, link: Option<CoreLink>, audit: AuditLog, current: Loaded) -> Holder {
        Holder {
            config,
            link,
            audit,
            current,
            refused: None,
            rotations: 0,
            next_core_check: Instant::now(),
            retry_after: None,
            core_unreachable_logged: false,
        }
    }

    /// The set held now.
    pub fn current(&self) -> &Loaded {
        &self.current
    }

    fn audit(&self, command: &str, exit_code: i32, action: Value) {
        let entry = Entry { command: command.into(), args: Vec::new(), exit_code, actions: vec![action] };
        if let Err(e) = self.audit.append(&entry) {
            tracing::error!(error = %e, "could not write the audit log");
        }
    }

    /// Hands both accounts' credentials to the core (at start, and when the core asks again).
    /// Returns how many sessions took them. An unreachable core is `Err(Unreachable)` (retried by
    /// [`poll`]); a refusal by the core is `Err(Refused)` after both accounts were tried.
    ///
    /// [`poll`]: Holder::poll
    pub fn hand_over_all(&mut self, why: &str) -> Result<usize, LinkError> {
        let Some(link) = self.link.clone() else { return Ok(0) };
        let mut taken = 0;
        let mut refused = None;
        for (session, _) in ACCOUNTS {
            let reply = match link.hand_over(&self.current, session) {
                Ok(None) => continue,
                Ok(Some(reply)) => reply,
                Err(e @ LinkError::Unreachable { .. }) => return Err(e),
                Err(e) => {
                    self.audit(
                        "secrets handoff",
                        1,
                        json!({"session": session, "why": why, "socket": link.path().display().to_string(), "outcome": e.to_string()}),
                    );
                    return Err(e);
                }
            };
            let ok = reply.is_ok();
            if let Some(reason) = reply.error() {
                tracing::error!(session, error = %reason, "the core refused the credentials");
                refused.get_or_insert(LinkError::Refused { session: session.to_string(), reason: reason.to_owned() });
            } else {
                taken += 1;
                tracing::info!(session, "credentials handed to the core");
            }
            let reply = reply.to_value();
            self.audit(
                "secrets handoff",
                i32::from(!ok),
                json!({"session": session, "why": why, "socket": link.path().display().to_string(),
                       "outcome": if ok { "accepted" } else { "refused" }, "reply": reply}),
            );
        }
        self.core_unreachable_logged = false;
        match refused {
            Some(e) => Err(e),
            None => Ok(taken),
        }
    }

    /// One round: re-hand credentials to a core that waits for them, and look for a changed source.
    pub fn poll(&mut self) -> Option<Outcome> {
        let now = Instant::now();
        if self.link.is_some() && now >= self.next_core_check {
            self.next_core_check = now + Duration::from_secs(2);
            self.serve_waiting_core();
        }
        if !self.config.watch || self.retry_after.is_some_and(|t| now < t) {
            return None;
        }
        let new = match super::load(&self.config.source) {
            Ok(new) => new,
            Err(e) => {
                // Between Vault's write and rename, or while an operator edits: next round.
                tracing::debug!(error = %e, "watched source not readable this round");
                return None;
            }
        };
        let changed = changed_keys(&self.current, &new);
        if changed.is_empty() && new.problems.is_empty() {
            return None;
        }
        if self.refused.as_ref().is_some_and(|r| changed_keys(r, &new).is_empty()) {
            return None;
        }
        Some(self.rotate(new, changed))
    }

    fn serve_waiting_core(&mut self) {
        let Some(link) = &self.link else { return };
        match link.request(&Request::Sessions) {
            Ok(reply) => {
                self.core_unreachable_logged = false;
                let sessions = match &reply {
                    Reply::Ok(value) => SessionsReply::from_value(value).ok(),
                    Reply::Refused(_) => None,
                };
                let waiting = ACCOUNTS.iter().any(|(session, prefix)| {
                    let state = Which::parse(session)
                        .and_then(|which| sessions.as_ref().and_then(|s| s.sessions.get(&which)))
                        .map(|s| s.state.as_str());
                    state == Some("waiting_credentials") && self.current.get(&format!("{prefix}USER_ID")).is_some()
                });
                if waiting
                    && let Err(e) = self.hand_over_all("the core is waiting for credentials (started or restarted)")
                {
                    tracing::warn!(error = %e, "hand-off failed; retried");
                }
            }
            Err(e) => {
                if !self.core_unreachable_logged {
                    tracing::warn!(error = %e, "the core is not reachable; credentials are handed over when it is");
                    self.core_unreachable_logged = true;
                }
            }
        }
    }

    /// Validates `new` and runs the runbook for what changed.
    pub fn rotate(&mut self, new: Loaded, changed: Vec<String>) -> Outcome {
        self.rotations += 1;
        let id = format!("{}-{}", std::process::id(), self.rotations);
        let mut problems = new.problems.clone();
        problems.extend(super::validate(&new, self.config.profile));
        problems.dedup();
        if !problems.is_empty() {
            for p in &problems {
                tracing::error!(key = %p.key, "new secrets refused: {}", p.reason);
            }
            self.audit(
                "secrets rotate",
                1,
                json!({"rotation": id, "step": "validate", "changed": changed, "outcome": "refused: the running credentials stay", "problems": problems}),
            );
            self.refused = Some(new);
            return Outcome::Refused;
        }
        self.audit(
            "secrets rotate",
            0,
            json!({"rotation": id, "step": "validate", "changed": changed, "outcome": "valid"}),
        );
        let primary = account_changed(&self.current, &new, "primary");
        let backup = account_changed(&self.current, &new, "backup");
        if self.link.is_none() || (!primary && !backup) {
            tracing::info!(?changed, "new secrets held");
            self.audit(
                "secrets rotate",
                0,
                json!({"rotation": id, "step": "done", "outcome": "updated (no CTP account changed)"}),
            );
            self.current = new;
            self.refused = None;
            return Outcome::Updated;
        }
        let mut run = Run { holder: self, id: &id, failed: None };
        if backup {
            run.rotate_backup(&new);
        }
        if primary && run.failed.is_none() {
            run.rotate_primary(&new);
        }
        let failed = run.failed.take();
        match failed {
            None => {
                self.audit("secrets rotate", 0, json!({"rotation": id, "step": "done", "outcome": "rotated"}));
                self.current = new;
                self.refused = None;
                self.retry_after = None;
                Outcome::Rotated
            }
            Some(Failure { message, retry }) => {
                tracing::error!(rotation = %id, "rotation failed: {message}");
                self.audit(
                    "secrets rotate",
                    1,
                    json!({"rotation": id, "step": "done", "outcome": format!("failed: {message}")}),
                );
                if retry {
                    // The core was not there or not ready: try the same set again a little later.
                    self.retry_after = Some(Instant::now() + Duration::from_secs(10));
                } else {
                    self.refused = Some(new);
                }
                Outcome::Failed(message)
            }
        }
    }
}

struct Failure {
    message: String,
    /// Worth retrying the same set later (the core was unreachable or a session not ready).
    retry: bool,
}

/// One rotation's steps.
struct Run<'a> {
    holder: &'a mut Holder,
    id: &'a str,
    failed: Option<Failure>,
}

impl Run<'_> {
    fn link(&self) -> CoreLink {
        self.holder.link.clone().expect("a rotation of CTP accounts runs only with a core link")
    }

    /// Sends `line`, audits the step with the reply; `Err` (and records the failure) unless the
    /// reply is ok.
    fn step(&mut self, step: &str, request: Request<'_>) -> Result<Value, ()> {
        let result = self.link().request(&request);
        self.record(step, result)
    }

    fn record(&mut self, step: &str, result: Result<Reply, LinkError>) -> Result<Value, ()> {
        match result {
            Ok(Reply::Ok(reply)) => {
                tracing::info!(rotation = %self.id, step, "done");
                self.holder.audit(
                    "secrets rotate",
                    0,
                    json!({"rotation": self.id, "step": step, "outcome": "ok", "reply": reply}),
                );
                Ok(reply)
            }
            Ok(refused @ Reply::Refused(_)) => {
                let error = refused.error().unwrap_or("refused").to_owned();
                let reply = refused.to_value();
                self.holder.audit(
                    "secrets rotate",
                    1,
                    json!({"rotation": self.id, "step": step, "outcome": format!("failed: {error}"), "reply": reply}),
                );
                self.failed = Some(Failure { message: format!("{step}: {error}"), retry: step == "failover" });
                Err(())
            }
            Err(e) => {
                self.holder.audit(
                    "secrets rotate",
                    1,
                    json!({"rotation": self.id, "step": step, "outcome": format!("failed: {e}")}),
                );
                let retry = matches!(e, LinkError::Unreachable { .. });
                self.failed = Some(Failure { message: format!("{step}: {e}"), retry });
                Err(())
            }
        }
    }

    /// Hands `session`'s credentials from `set` over (the line is built first, so `set` may be
    /// the holder's own).
    fn hand(&mut self, step: &str, set: Option<&Loaded>, session: &str) -> Result<Value, ()> {
        let line = credentials_line(set.unwrap_or(&self.holder.current), session);
        let result = match line {
            Some(line) => self.link().send_credentials(&line),
            None => Ok(Reply::refused("no user id for this account")),
        };
        self.record(step, result)
    }

    fn active(&self) -> Option<String> {
        match self.link().request(&Request::Sessions) {
            Ok(Reply::Ok(value)) => SessionsReply::from_value(&value).ok()?.active.map(|which| which.name().to_owned()),
            _ => None,
        }
    }

    /// The backup changed: rotate it while it is the standby.
    fn rotate_backup(&mut self, new: &Loaded) {
        if self.active().as_deref() == Some("backup")
            && self.step("failback (backup is active)", Request::Failback).is_err()
        {
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

    /// The primary changed: failover → new credentials → relogin → failback → verify.
    fn rotate_primary(&mut self, new: &Loaded) {
        if self.step("failover", Request::Failover).is_err() {
            return;
        }
        if self.hand("hand over primary", Some(new), "primary").is_err() {
            return;
        }
        if self.step("relogin primary", Request::Relogin(Which::Primary)).is_err() {
            let message = self.failed.take().map(|f| f.message).unwrap_or_default();
            let rolled_back = self.hand("roll back primary", None, "primary").is_ok()
                && self.step("relogin primary (previous credentials)", Request::Relogin(Which::Primary)).is_ok()
                && self.step("failback", Request::Failback).is_ok();
            let state = if rolled_back {
                "rolled back: the primary runs on its previous credentials"
            } else {
                "the feed runs on the backup session"
            };
            self.failed = Some(Failure { message: format!("{message}; {state}"), retry: false });
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
}

/// Whether the segment shows the primary session publishing after `since_ns` within `within`, with
/// a live heartbeat. `Ok` says what was seen.
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
