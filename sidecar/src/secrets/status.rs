//! What qilin-secrets tells the operator about rotations: its status file
//! (`<segment>.sidecars/secrets.json`, the format every sidecar shares, docs/SIDECARS.md) with the
//! rotation's state, the last outcome and counters. `qilinctl status` lists it, and the recorder
//! exports its counters as `qilin_sidecar_counts{sidecar="secrets",counter=…}`, which is what an
//! alert on failed rotations watches. Key names and outcomes only, never a value.

use std::time::Instant;

use qilin_market::status::StatusFile;
use serde_json::{Value, json};

/// Where the rotation machinery is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Nothing to do: the held set runs (or a refused set waits for a new file).
    Idle,
    /// A changed source was seen; it is taken once it has stayed the same for the settle time.
    Settling,
    /// A rotation runs (the file is rewritten after each step).
    Rotating,
    /// A rotation failed in a way worth trying again (backup not logged in, core unreachable): it
    /// is retried with a growing delay.
    Retrying,
    /// A rotation failed after the failover and the feed is not yet back on the primary with its
    /// previous credentials: retried with a growing delay.
    Recovering,
}

impl State {
    /// The name in the status file.
    pub fn name(self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Settling => "settling",
            State::Rotating => "rotating",
            State::Retrying => "retrying",
            State::Recovering => "recovering",
        }
    }
}

/// Counters of the status file (monotonic while the process runs).
#[derive(Clone, Debug, Default)]
pub struct Counters {
    /// Rounds of the watch loop done (each looks at the source once): proof of life, and what
    /// shows that an unchanged file was looked at again and left alone.
    pub watch_rounds: u64,
    /// Rotations that ended `rotated` (or `updated`).
    pub rotations_ok: u64,
    /// New sets refused by validation.
    pub rotations_refused: u64,
    /// Rotations that ended `failed: …` (each attempt of a retried set counts).
    pub rotations_failed: u64,
    /// Failed rotations after which the feed was put back on the primary with its previous
    /// credentials (at once or by a later recovery attempt).
    pub rotations_rolled_back: u64,
    /// Recovery attempts that did not finish (the core unreachable, a login refused again).
    pub recovery_attempts_failed: u64,
}

/// The status as the holder keeps it.
#[derive(Debug)]
pub struct Status {
    file: Option<StatusFile>,
    logged_write_error: bool,
    /// The counters.
    pub counters: Counters,
    /// The last rotation's id and outcome.
    pub last: Option<(String, String)>,
    /// The last failure, cleared by a rotation that succeeds.
    pub last_error: Option<String>,
}

impl Status {
    /// A status written to `file` (nothing is written without one).
    pub fn new(file: Option<StatusFile>) -> Status {
        Status { file, logged_write_error: false, counters: Counters::default(), last: None, last_error: None }
    }

    /// Rewrites the status file: `state`, and when the next attempt is due (if one is).
    pub fn write(&mut self, state: State, next_attempt: Option<Instant>, extra: Value) {
        let Some(file) = &self.file else { return };
        let c = &self.counters;
        let next_in_ms = next_attempt.map(|t| t.saturating_duration_since(Instant::now()).as_millis() as u64);
        let mut value = json!({
            "sidecar": "qilin-secrets",
            "name": "secrets",
            "pid": std::process::id(),
            "updated_ns": qilin_shm::now_ns(),
            "rotation": {
                "state": state.name(),
                "last_rotation": self.last.as_ref().map(|(id, _)| id),
                "last_outcome": self.last.as_ref().map(|(_, outcome)| outcome),
                "next_attempt_in_ms": next_in_ms,
            },
            "counters": {
                "watch_rounds": c.watch_rounds,
                "rotations_ok": c.rotations_ok,
                "rotations_refused": c.rotations_refused,
                "rotations_failed": c.rotations_failed,
                "rotations_rolled_back": c.rotations_rolled_back,
                "recovery_attempts_failed": c.recovery_attempts_failed,
            },
            "last_error": self.last_error,
        });
        if let (Value::Object(map), Value::Object(more)) = (&mut value, extra) {
            map.extend(more);
        }
        match file.write(&value) {
            Ok(()) => self.logged_write_error = false,
            Err(e) if !self.logged_write_error => {
                tracing::warn!(path = %file.path().display(), error = %e, "cannot write the status file");
                self.logged_write_error = true;
            }
            Err(_) => {}
        }
    }
}
