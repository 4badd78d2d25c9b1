//! The recorder as the witness of audit logs (`[[audit_anchor]]`): a thread of its own looks at
//! every configured log each `audit_anchor_interval_ms` and appends its head to the log's anchor
//! file when it changed (`qilin_audit::Witness`: the log is opened read-only, the anchor is the
//! recorder's own file). It runs from the recorder's start, before the segment exists, and is
//! independent of journaling: a log that cannot be read, or an anchor that cannot be written, is
//! logged (once per distinct error, and again on recovery) and counted, and never stops the
//! recorder. The state is shared with the status file (`audit_anchor`, counters
//! `audit_anchors`, `audit_anchor_read_errors`, `audit_anchor_write_errors`,
//! `audit_anchor_regressions`, exported as `qilin_sidecar_counts`).

use std::{
    path::PathBuf,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use qilin_audit::Witness;
use qilin_market::secrets::managed::load_key_file;
use secrecy::zeroize::Zeroizing;
use serde::Serialize;

use super::config::{AuditAnchor, ms};

/// One witnessed log, as the status file shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AnchoredLog {
    /// The audit log.
    pub log: PathBuf,
    /// Its anchor file.
    pub anchor: PathBuf,
    /// The last anchored `seq` (written or read back from the anchor file), 0 before any.
    pub seq: u64,
    /// When it was anchored, UTC ns (0 before any).
    pub anchored_ns: i64,
    /// The last round's failure, `None` once a round works again.
    pub last_error: Option<String>,
    /// With a `key_file`: the `audit-signing` version keying its anchors now.
    pub key_version: Option<u32>,
}

/// Every witnessed log and the counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AnchorStats {
    pub logs: Vec<AnchoredLog>,
    /// Anchor lines written.
    pub anchors: u64,
    /// Rounds in which a log could not be read (missing, permissions, locked too long).
    pub read_errors: u64,
    /// Rounds in which an anchor file could not be read or written.
    pub write_errors: u64,
    /// Times a log was seen going back below what was anchored (cut off or rewritten).
    pub regressions: u64,
    /// Rounds in which a key file could not be read.
    pub key_errors: u64,
}

/// The witness thread's state, shared with the recorder's status.
pub type SharedAnchors = Arc<Mutex<AnchorStats>>;

/// The running witness thread.
#[derive(Debug)]
pub struct AuditAnchors {
    shared: SharedAnchors,
    thread: Option<JoinHandle<()>>,
}

impl AuditAnchors {
    /// Starts the thread for `logs` (none: no thread), looking every `interval_ms`, until `stop`.
    pub fn start(logs: &[AuditAnchor], interval_ms: u64, stop: Arc<AtomicBool>) -> std::io::Result<AuditAnchors> {
        let stats = AnchorStats {
            logs: logs
                .iter()
                .map(|a| AnchoredLog { log: a.log.clone(), anchor: a.anchor.clone(), ..AnchoredLog::default() })
                .collect(),
            ..AnchorStats::default()
        };
        let shared = Arc::new(Mutex::new(stats));
        if logs.is_empty() {
            return Ok(AuditAnchors { shared, thread: None });
        }
        let witnesses: Vec<(Witness, Option<Signing>)> = logs
            .iter()
            .map(|a| {
                let signing = a.key_file.clone().map(|path| Signing { path, key: None, last_error: None });
                (Witness::new(&a.log, &a.anchor), signing)
            })
            .collect();
        for (w, _) in &witnesses {
            tracing::info!(
                "anchoring audit log {} in {} every {interval_ms} ms",
                w.log().display(),
                w.anchor().display()
            );
        }
        let state = shared.clone();
        let thread = std::thread::Builder::new()
            .name("audit-anchor".into())
            .spawn(move || run(witnesses, ms(interval_ms), &state, &stop))?;
        Ok(AuditAnchors { shared, thread: Some(thread) })
    }

    /// The shared state (for the status file).
    pub fn stats(&self) -> SharedAnchors {
        self.shared.clone()
    }

    /// Waits for the thread to end (after `stop` was set).
    pub fn join(mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A `key_file` and the last key read from it.
struct Signing {
    path: PathBuf,
    key: Option<(u32, Zeroizing<Vec<u8>>)>,
    last_error: Option<String>,
}

impl Signing {
    /// Reads the key file again; on failure keeps the last good key (an unkeyed anchor after keyed
    /// ones would read as forged) and says so once per distinct error.
    fn refresh(&mut self, shared: &SharedAnchors) {
        match load_key_file(&self.path) {
            Ok((version, key)) => {
                if self.key.as_ref().map(|(v, _)| *v) != Some(version) {
                    tracing::info!(
                        "audit anchors keyed with audit-signing version {version} ({})",
                        self.path.display()
                    );
                }
                self.key = Some((version, key));
                self.last_error = None;
            }
            Err(e) => {
                shared.lock().unwrap_or_else(PoisonError::into_inner).key_errors += 1;
                if self.last_error.as_deref() != Some(e.as_str()) {
                    match &self.key {
                        Some((v, _)) => tracing::error!("{e}; anchoring goes on with version {v}"),
                        None => tracing::error!("{e}; nothing is anchored until the key can be read"),
                    }
                    self.last_error = Some(e);
                }
            }
        }
    }
}

fn run(mut witnesses: Vec<(Witness, Option<Signing>)>, interval: Duration, shared: &SharedAnchors, stop: &AtomicBool) {
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= next {
            for (i, (witness, signing)) in witnesses.iter_mut().enumerate() {
                let key = match signing {
                    Some(signing) => {
                        signing.refresh(shared);
                        match &signing.key {
                            Some((version, key)) => Some((*version, key.as_slice())),
                            None => continue,
                        }
                    }
                    None => None,
                };
                round(witness, key, i, shared);
            }
            next = now + interval;
        }
        std::thread::sleep(next.saturating_duration_since(Instant::now()).min(Duration::from_millis(50)));
    }
}

fn round(witness: &mut Witness, key: Option<(u32, &[u8])>, i: usize, shared: &SharedAnchors) {
    let result = witness.observe_keyed(key);
    let mut stats = shared.lock().unwrap_or_else(PoisonError::into_inner);
    let had_error = stats.logs[i].last_error.is_some();
    match result {
        Ok(seen) => {
            for warning in &seen.warnings {
                tracing::error!("{warning}");
            }
            stats.regressions += u64::from(seen.went_back);
            if let Some(anchor) = &seen.anchored {
                tracing::info!("anchored audit log {} at seq {}", witness.log().display(), anchor.seq);
                stats.anchors += 1;
            }
            if had_error {
                tracing::info!("audit log {} is anchored again", witness.log().display());
            }
            let entry = &mut stats.logs[i];
            entry.last_error = None;
            if let Some(last) = witness.last() {
                entry.seq = last.seq;
                entry.anchored_ns = last.ts_ns;
                entry.key_version = last.key_version;
            }
        }
        Err(e) => {
            let message = e.to_string();
            if stats.logs[i].last_error.as_deref() != Some(message.as_str()) {
                tracing::error!("{message}; the recorder goes on and retries every round");
            }
            if e.is_anchor_error() {
                stats.write_errors += 1;
            } else {
                stats.read_errors += 1;
            }
            stats.logs[i].last_error = Some(message);
        }
    }
}
