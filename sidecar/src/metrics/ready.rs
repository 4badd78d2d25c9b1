//! `/readyz`: is this feed fit to trade on? Every check is evaluated (not just up to the first
//! failure) so the 503 body names everything that is wrong:
//!
//! - `segment`: the segment can be opened and has the layout this build reads;
//! - `heartbeat`: the core's heartbeat is younger than `heartbeat_stale_ms` (a stopped core fails);
//! - `ticks`: inside a trading session of an exchange the feed carries, open for at least
//!   `ticks_stale_ms`, the newest tick in the ring was published less than `ticks_stale_ms` ago;
//! - `journal` (when the exporter has one): the journal is writable, its disk not full, and (for a
//!   source refreshed periodically) its last report younger than `sidecar_stale_ms`.

use std::fmt;

use qilin_shm::{Liveness, now_ns};

use super::collect::Sources;

/// The outcome of the readiness checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    /// `(check, reason)` of every failing check; empty when ready.
    pub failing: Vec<(&'static str, String)>,
}

impl Readiness {
    /// No check failed.
    pub fn is_ready(&self) -> bool {
        self.failing.is_empty()
    }
}

impl fmt::Display for Readiness {
    /// `ready`, or one `check: reason` line per failing check.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_ready() {
            return writeln!(f, "ready");
        }
        for (check, reason) in &self.failing {
            writeln!(f, "{check}: {reason}")?;
        }
        Ok(())
    }
}

fn seconds(ns: i64) -> String {
    format!("{:.1} s", ns as f64 / 1e9)
}

impl Sources {
    /// Runs every check at `now` (UTC ns).
    pub fn readiness_at(&self, now: i64) -> Readiness {
        let mut failing = Vec::new();
        match self.core_view() {
            Err(e) => {
                failing.push(("segment", e.to_string()));
                failing.push(("heartbeat", "no segment, no heartbeat".to_string()));
            }
            Ok(view) => {
                match view.reader.liveness(now, self.heartbeat_stale_ns) {
                    Liveness::Live { .. } => {}
                    Liveness::Stale { age_ns } => failing.push((
                        "heartbeat",
                        format!(
                            "the core's heartbeat is {} old (limit {}): the core is dead or stalled",
                            seconds(age_ns),
                            seconds(self.heartbeat_stale_ns)
                        ),
                    )),
                    Liveness::Stopped { at_ns } => {
                        failing.push(("heartbeat", format!("the core stopped {} ago", seconds(now - at_ns))))
                    }
                }
                if let Some(open_ns) = self.session_open_since(&view, now)
                    && open_ns >= self.ticks_stale_ns
                {
                    let quiet_ns = view.newest.map(|t| now - t.publish_ns);
                    match quiet_ns {
                        Some(q) if q <= self.ticks_stale_ns => {}
                        Some(q) => failing.push((
                            "ticks",
                            format!(
                                "no tick published for {} in a trading session open for {} (limit {})",
                                seconds(q),
                                seconds(open_ns),
                                seconds(self.ticks_stale_ns)
                            ),
                        )),
                        None => failing.push((
                            "ticks",
                            format!("no tick published yet in a trading session open for {}", seconds(open_ns)),
                        )),
                    }
                }
            }
        }
        if let Some(journal) = &self.journal {
            journal.read(&mut |r| {
                let why = r.last_error.map(|e| format!(" ({e})")).unwrap_or_default();
                if r.disk_full {
                    failing.push(("journal", format!("the journal's disk is full: recording is paused{why}")));
                } else if !r.writable {
                    failing
                        .push(("journal", format!("the journal is not writable (not open yet, or writes fail){why}")));
                } else if let Some(updated) = r.updated_ns
                    && now - updated > self.sidecar_stale_ns
                {
                    failing.push((
                        "journal",
                        format!("the recorder last reported {} ago: its loop is stuck", seconds(now - updated)),
                    ));
                }
            });
        }
        Readiness { failing }
    }

    /// Runs every check now.
    pub fn readiness(&self) -> Readiness {
        self.readiness_at(now_ns())
    }
}
