//! The control socket's audit entries, written by a thread of their own so that an append (an
//! fsync or two, milliseconds) never stalls the event loop. The queue is bounded: an audited command
//! is executed only when its entry has room ([`AuditQueue::has_room`]); otherwise it is refused,
//! unexecuted, and such refusals are counted and written as one entry once there is room again.
//! Nothing audited is executed without its entry queued.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use crossbeam_channel::{Sender, TrySendError};
use qilin_audit::{AuditLog, Entry};
use serde_json::json;

/// Entries waiting for the audit thread.
const QUEUE: usize = 256;

/// The sending end, on the control thread.
#[derive(Debug)]
pub(super) struct AuditQueue {
    tx: Option<Sender<Entry>>,
    /// Entries queued and not yet written (shared with [`super::ExitGate`]).
    unwritten: Arc<AtomicUsize>,
    /// Commands refused, unexecuted, because the queue was full; written as one entry later.
    refused_behind: u64,
}

impl AuditQueue {
    /// Starts the audit thread for `log` (none: nothing is audited, every command has room).
    pub(super) fn start(log: Option<AuditLog>, unwritten: Arc<AtomicUsize>) -> AuditQueue {
        let tx = log.and_then(|log| {
            let (tx, rx) = crossbeam_channel::bounded::<Entry>(QUEUE);
            let counter = Arc::clone(&unwritten);
            let spawned = std::thread::Builder::new().name("qilin-control-audit".into()).spawn(move || {
                for entry in rx {
                    if let Err(e) = log.append(&entry) {
                        tracing::error!(error = %e, command = %entry.command, "could not write the audit log");
                    }
                    counter.fetch_sub(1, Ordering::AcqRel);
                }
            });
            match spawned {
                Ok(_) => Some(tx),
                Err(e) => {
                    tracing::error!(error = %e, "could not start the control socket's audit thread; not auditing");
                    None
                }
            }
        });
        AuditQueue { tx, unwritten, refused_behind: 0 }
    }

    /// Whether `reserved` more entries (this command's and those of requests still pending) fit.
    pub(super) fn has_room(&self, reserved: usize) -> bool {
        self.tx.as_ref().is_none_or(|tx| tx.len() + reserved < QUEUE)
    }

    /// Counts a command refused because the queue was full.
    pub(super) fn refused_behind(&mut self) {
        self.refused_behind += 1;
        if self.refused_behind.is_power_of_two() {
            tracing::warn!(refused = self.refused_behind, "control command refused: the audit log is behind");
        }
    }

    /// Queues `entry` (the caller checked [`AuditQueue::has_room`]; if it was wrong, the entry is
    /// logged as lost), after the count of refusals while behind, if any.
    pub(super) fn submit(&mut self, entry: Entry) {
        if self.tx.is_none() {
            return;
        }
        if self.refused_behind > 0 && self.has_room(2) {
            let refused = std::mem::take(&mut self.refused_behind);
            self.send(Entry {
                command: "refused while the audit log was behind".into(),
                args: Vec::new(),
                exit_code: 1,
                actions: vec![json!({"refused_commands": refused, "outcome": "not executed"})],
            });
        }
        self.send(entry);
    }

    fn send(&self, entry: Entry) {
        let Some(tx) = &self.tx else { return };
        self.unwritten.fetch_add(1, Ordering::AcqRel);
        if let Err(e) = tx.try_send(entry) {
            self.unwritten.fetch_sub(1, Ordering::AcqRel);
            let entry = match e {
                TrySendError::Full(entry) | TrySendError::Disconnected(entry) => entry,
            };
            tracing::error!(command = %entry.command, "audit entry lost: the audit queue is full or its thread stopped");
        }
    }
}

/// Waits (at most `timeout`) until every queued entry is written.
pub(super) fn drain(unwritten: &AtomicUsize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while unwritten.load(Ordering::Acquire) > 0 {
        if Instant::now() >= deadline {
            tracing::error!(
                unwritten = unwritten.load(Ordering::Acquire),
                "exiting with control audit entries not yet written"
            );
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
