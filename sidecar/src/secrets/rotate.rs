//! Holding the credentials, handing them to the core, and rotating them: the operators' runbook
//! (rotation = fail over to the backup account, replace the primary's credentials, fail back),
//! driven by a change of the watched secret file or directory.
//!
//! [`Holder::poll`] loads the source every interval and compares the values with the set it holds.
//! A changed set is taken only once it has loaded the same for `settle` (a file written in place,
//! not renamed, can be read half-written; a directory of secret files changes one file at a time).
//! Then the `runbook` runs:
//!
//! 1. **validate** the new set with the same checks as `qilinctl validate-env`; a set with problems
//!    is refused (audited with the key names and reasons) and the running credentials stay;
//! 2. if the backup account changed: hand the new backup credentials over and **relogin** the
//!    backup session while it is the standby (failing back first if the backup is active);
//! 3. if the primary account changed: **failover** to the backup, hand the new primary
//!    credentials over, **relogin** the primary, **failback**;
//! 4. **verify** health from the segment: a tick from the primary session is published again
//!    within `health_within`.
//!
//! Any failure once the failover may have happened **recovers**: the primary gets its previous
//! credentials back (failing over first if it is active, so its relogin loses no tick), logs in
//! with them, and the feed fails back. A recovery that cannot finish (the core unreachable, the
//! login refused again) is retried with a growing delay (`retry_initial` doubling up to
//! `retry_max`) until it does; no new rotation starts meanwhile. A rotation that failed for a reason
//! that may pass (the backup not logged in, the core unreachable or silent) is tried again with the
//! same growing delay; one the core or the broker refused is not, until the source changes.
//!
//! Every step is an audit entry (`secrets rotate`, with the rotation's id, the step, the outcome
//! and the core's reply), never a value; the state, the last outcome and counters go to the status
//! file ([`super::status`]). Other keys (NATS, rate-limit tokens) are taken as they come: the
//! sidecars that use them read their own secret files.
//!
//! The holder also re-hands credentials to a core that asks for them (a session in
//! `waiting_credentials`: the core restarted), checked every few seconds.

mod runbook;

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use qilin_audit::{AuditLog, Entry};
use qilin_market::control::{Reply, Request, SessionsReply, Which};
use serde_json::{Value, json};

use self::runbook::Run;
pub use self::runbook::verify_health;
use super::{
    Loaded, Profile, Source,
    handoff::{ACCOUNTS, CoreLink, LinkError, account_changed, changed_keys},
    status::{State, Status},
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
    /// How long a changed source must load the same before it is taken.
    pub settle: Duration,
    /// The first delay before a failed rotation or recovery is tried again; doubled each time.
    pub retry_initial: Duration,
    /// The longest delay between attempts.
    pub retry_max: Duration,
}

/// When the next attempt is due, and the delay after it.
#[derive(Clone, Copy, Debug)]
struct Backoff {
    at: Instant,
    delay: Duration,
}

impl Backoff {
    /// The delay announced for this attempt, and the one after it (doubled, capped).
    fn schedule(previous: Option<Backoff>, initial: Duration, max: Duration) -> Backoff {
        let delay = previous.map_or(initial, |b| (b.delay * 2).min(max)).max(Duration::from_millis(1));
        Backoff { at: Instant::now() + delay, delay }
    }
}

/// A recovery still to finish: the feed back on the primary with the held credentials.
#[derive(Debug)]
struct Recovery {
    /// The rotation that failed.
    id: String,
    backoff: Backoff,
    /// Whether the rotation's set is tried again once recovered.
    retry_set: bool,
}

/// A changed set seen in the source, not taken until it stays the same for `settle`.
#[derive(Debug)]
struct Pending {
    set: Loaded,
    since: Instant,
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
    pending: Option<Pending>,
    /// A failed rotation of the pending set, to be tried again.
    retry: Option<Backoff>,
    recovery: Option<Recovery>,
    /// The core's `credentials_version` of the primary credentials held (from its hand-over
    /// replies): a different version in `sessions` means the core's primary holds others.
    primary_version: Option<u64>,
    status: Status,
    /// The id of the rotation running now.
    rotating: Option<String>,
    rotations: u64,
    next_core_check: Instant,
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
    /// A step failed; what runs (or what is being recovered) is described in the message.
    Failed(String),
}

/// Whether two loads hold the same values and the same problems.
fn same(a: &Loaded, b: &Loaded) -> bool {
    a.problems == b.problems && changed_keys(a, b).is_empty()
}

impl Holder {
    /// A holder of `current` (already validated), handing over through `link` if given, reporting
    /// in `status`.
    pub fn new(
        config: HolderConfig,
        link: Option<CoreLink>,
        audit: AuditLog,
        current: Loaded,
        status: Status,
    ) -> Holder {
        Holder {
            config,
            link,
            audit,
            current,
            refused: None,
            pending: None,
            retry: None,
            recovery: None,
            primary_version: None,
            status,
            rotating: None,
            rotations: 0,
            next_core_check: Instant::now(),
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

    /// Where the rotation machinery is, for the status file.
    fn state(&self) -> (State, Option<Instant>) {
        if self.rotating.is_some() {
            (State::Rotating, None)
        } else if let Some(r) = &self.recovery {
            (State::Recovering, Some(r.backoff.at))
        } else if let Some(r) = &self.retry {
            (State::Retrying, Some(r.at))
        } else if self.pending.is_some() {
            (State::Settling, self.pending.as_ref().map(|p| p.since + self.config.settle))
        } else {
            (State::Idle, None)
        }
    }

    /// Rewrites the status file.
    pub fn write_status(&mut self) {
        let (state, next) = self.state();
        let extra = json!({"source": self.config.source.to_string(), "profile": self.config.profile.as_str()});
        self.status.write(state, next, extra);
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
            if ok && session == "primary" {
                self.primary_version = reply["credentials_version"].as_u64();
            }
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

    /// One round: re-hand credentials to a core that waits for them, go on with a recovery that
    /// is due, and look for a changed source. Rewrites the status file.
    pub fn poll(&mut self) -> Option<Outcome> {
        let outcome = self.poll_once();
        self.status.counters.watch_rounds += 1;
        self.write_status();
        outcome
    }

    fn poll_once(&mut self) -> Option<Outcome> {
        let now = Instant::now();
        if self.link.is_some() && now >= self.next_core_check {
            self.next_core_check = now + Duration::from_secs(2);
            self.serve_waiting_core();
        }
        if let Some(recovery) = &self.recovery {
            if now >= recovery.backoff.at {
                self.recover_again();
            }
            if self.recovery.is_some() {
                return None;
            }
        }
        if !self.config.watch {
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
        if same(&self.current, &new) {
            // Back to the set that runs: nothing pending, nothing to retry.
            self.pending = None;
            self.retry = None;
            return None;
        }
        if self.refused.as_ref().is_some_and(|r| same(r, &new)) {
            return None;
        }
        match &self.pending {
            Some(p) if same(&p.set, &new) => {}
            _ => {
                tracing::info!(
                    changed = ?changed_keys(&self.current, &new),
                    settle_ms = self.config.settle.as_millis() as u64,
                    "the watched source changed; waiting until it is unchanged for the settle time"
                );
                self.pending = Some(Pending { set: new, since: now });
                self.retry = None;
                return None;
            }
        }
        if self.pending.as_ref().is_some_and(|p| now < p.since + self.config.settle)
            || self.retry.is_some_and(|r| now < r.at)
        {
            return None;
        }
        let changed = changed_keys(&self.current, &new);
        Some(self.rotate(new, changed))
    }

    fn serve_waiting_core(&mut self) {
        let Some(link) = &self.link else { return };
        match link.request(&Request::Sessions) {
            Ok(reply) => {
                self.core_unreachable_logged = false;
                if self.core_waits(&reply)
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

    /// Whether a `sessions` reply shows a session waiting for credentials this holder has.
    fn core_waits(&self, reply: &Reply) -> bool {
        let sessions = match reply {
            Reply::Ok(value) => SessionsReply::from_value(value).ok(),
            Reply::Refused(_) => None,
        };
        ACCOUNTS.iter().any(|(session, prefix)| {
            let state = Which::parse(session)
                .and_then(|which| sessions.as_ref().and_then(|s| s.sessions.get(&which)))
                .map(|s| s.state.as_str());
            state == Some("waiting_credentials") && self.current.get(&format!("{prefix}USER_ID")).is_some()
        })
    }

    /// Validates `new` and runs the runbook for what changed.
    pub fn rotate(&mut self, new: Loaded, changed: Vec<String>) -> Outcome {
        self.rotations += 1;
        let id = format!("{}-{}", std::process::id(), self.rotations);
        self.rotating = Some(id.clone());
        let outcome = self.run_rotation(id, new, changed);
        self.rotating = None;
        outcome
    }

    fn run_rotation(&mut self, id: String, new: Loaded, changed: Vec<String>) -> Outcome {
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
            self.status.counters.rotations_refused += 1;
            self.status.last = Some((id, "refused".into()));
            self.status.last_error = Some(format!("new secrets refused: {} problem(s)", problems.len()));
            self.finish_pending(Some(new), None);
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
            self.succeeded(id, "updated (no CTP account changed)", new, self.primary_version);
            return Outcome::Updated;
        }
        let mut run = Run::new(self, &id);
        if backup {
            run.rotate_backup(&new);
        }
        if primary && run.failed.is_none() {
            run.rotate_primary(&new);
        }
        let Some(failure) = run.failed.take() else {
            let version = if primary { run.new_primary_version } else { self.primary_version };
            self.succeeded(id, "rotated", new, version);
            return Outcome::Rotated;
        };
        let touched = run.touched;
        let recovered = if touched { Some(run.recover()) } else { None };
        let message = failure.message;
        self.status.counters.rotations_failed += 1;
        self.status.last_error = Some(message.clone());
        let (state, refused) = match recovered {
            None if failure.retry => {
                let backoff = Backoff::schedule(self.retry, self.config.retry_initial, self.config.retry_max);
                self.retry = Some(backoff);
                (
                    format!(
                        "the feed stays on the primary with its previous credentials; retrying in {} ms",
                        backoff.delay.as_millis()
                    ),
                    None,
                )
            }
            None => ("the feed stays on the primary with its previous credentials".to_string(), Some(new)),
            Some(Ok(())) => {
                self.status.counters.rotations_rolled_back += 1;
                let mut state = "rolled back: the feed is on the primary with its previous credentials".to_string();
                let refused = if failure.retry {
                    let backoff = Backoff::schedule(self.retry, self.config.retry_initial, self.config.retry_max);
                    self.retry = Some(backoff);
                    state.push_str(&format!("; retrying in {} ms", backoff.delay.as_millis()));
                    None
                } else {
                    Some(new)
                };
                (state, refused)
            }
            Some(Err(why)) => {
                self.status.counters.recovery_attempts_failed += 1;
                let backoff = Backoff::schedule(None, self.config.retry_initial, self.config.retry_max);
                self.recovery = Some(Recovery { id: id.clone(), backoff, retry_set: failure.retry });
                self.retry = None;
                let state = format!(
                    "recovering: the feed is not yet back on the primary with its previous credentials ({why}); \
                     retrying in {} ms",
                    backoff.delay.as_millis()
                );
                (state, if failure.retry { None } else { Some(new) })
            }
        };
        let outcome = format!("failed: {message}; {state}");
        tracing::error!(rotation = %id, "rotation failed: {message}; {state}");
        self.audit("secrets rotate", 1, json!({"rotation": id, "step": "done", "outcome": outcome}));
        self.status.last = Some((id, outcome.clone()));
        if let Some(new) = refused {
            self.finish_pending(Some(new), None);
        }
        Outcome::Failed(outcome)
    }

    /// A rotation that needs nothing more: `new` is held from now on.
    fn succeeded(&mut self, id: String, outcome: &str, new: Loaded, primary_version: Option<u64>) {
        self.audit("secrets rotate", 0, json!({"rotation": id, "step": "done", "outcome": outcome}));
        self.status.counters.rotations_ok += 1;
        self.status.last = Some((id, outcome.to_owned()));
        self.status.last_error = None;
        self.current = new;
        self.primary_version = primary_version;
        self.finish_pending(None, None);
    }

    /// The pending set is settled: refused (`refused`), or taken.
    fn finish_pending(&mut self, refused: Option<Loaded>, retry: Option<Backoff>) {
        self.pending = None;
        self.retry = retry;
        self.refused = refused;
    }

    /// A recovery attempt that is due. The recovery stays in place while it runs, so the status
    /// file says `recovering` after each step.
    fn recover_again(&mut self) {
        let Some(recovery) = &self.recovery else { return };
        let (id, backoff, retry_set) = (recovery.id.clone(), recovery.backoff, recovery.retry_set);
        let result = Run::new(self, &id).recover();
        match result {
            Ok(()) => {
                let outcome = "the feed is on the primary with its previous credentials";
                tracing::info!(rotation = %id, "recovered: {outcome}");
                self.audit("secrets rotate", 0, json!({"rotation": id, "step": "recovered", "outcome": outcome}));
                self.status.counters.rotations_rolled_back += 1;
                self.status.last = Some((id, format!("recovered: {outcome}")));
                self.recovery = None;
                if retry_set {
                    self.retry = Some(Backoff::schedule(None, self.config.retry_initial, self.config.retry_max));
                }
            }
            Err(why) => {
                self.status.counters.recovery_attempts_failed += 1;
                let backoff = Backoff::schedule(Some(backoff), self.config.retry_initial, self.config.retry_max);
                tracing::warn!(rotation = %id, "recovery not finished ({why}); retrying in {} ms", backoff.delay.as_millis());
                self.status.last_error = Some(why);
                self.recovery = Some(Recovery { id, backoff, retry_set });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_doubles_up_to_the_cap() {
        let (initial, max) = (Duration::from_millis(1000), Duration::from_millis(5000));
        let mut delays = Vec::new();
        let mut backoff = None;
        for _ in 0..5 {
            let next = Backoff::schedule(backoff, initial, max);
            delays.push(next.delay.as_millis());
            backoff = Some(next);
        }
        assert_eq!(delays, [1000, 2000, 4000, 5000, 5000]);
        assert_eq!(Backoff::schedule(None, Duration::ZERO, Duration::ZERO).delay, Duration::from_millis(1), "never 0");
    }
}
