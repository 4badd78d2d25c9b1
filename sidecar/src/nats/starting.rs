//! The status file from the first moment: before the [`Sidecar`](super::Sidecar) exists (the
//! segment not there yet, NATS unreachable), a task of its own rewrites
//! `<segment>.sidecars/<name>.json` every `status_interval_ms` with the state, `connected: false`
//! and the last error, so `qilinctl status` lists a sidecar that is waiting, and a process
//! restarted during an outage replaces the killed one's file at once.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, Ordering},
};

use qilin_market::status::StatusFile;
use qilin_shm::{Reader, now_ns};
use serde_json::json;

use super::{Config, Counters, Mode, State, config};
use crate::cursor::CursorFile;

/// The start-up status (cheap to clone: every clone is the same status).
#[derive(Clone, Debug)]
pub struct Starting {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    /// `None` while the status directory cannot be created (retried at every write).
    file: Option<StatusFile>,
    config: Config,
    state: State,
    feed: Option<String>,
    /// The durable cursor, once the segment (and so the feed) is known.
    position: Option<u64>,
    write_cursor: Option<u64>,
    connected: Option<Arc<AtomicBool>>,
    counters: Counters,
    last_error: Option<String>,
    /// The sidecar took over: this writer writes no more.
    done: bool,
}

impl Inner {
    fn write(&mut self) {
        if self.file.is_none() {
            match StatusFile::new(&self.config.segment, &self.config.name) {
                Ok(file) => self.file = Some(file),
                Err(e) => {
                    tracing::error!("status directory beside {}: {e}", self.config.segment.display());
                    return;
                }
            }
        }
        let lag = match (self.write_cursor, self.position) {
            (Some(w), Some(p)) => Some(w.saturating_sub(p)),
            _ => None,
        };
        let value = json!({
            "sidecar": "qilin-nats",
            "name": self.config.name,
            "pid": std::process::id(),
            "feed": self.feed,
            "state": self.state.name(),
            "mode": match self.config.nats.mode { Mode::Core => "core", Mode::Jetstream => "jetstream" },
            "updated_ns": now_ns(),
            "connected": self.connected.as_ref().is_some_and(|c| c.load(Ordering::Relaxed)),
            "position": self.position,
            "write_cursor": self.write_cursor,
            "lag_sequences": lag,
            "in_flight": 0,
            "counters": self.counters,
            "last_error": self.last_error,
        });
        let file = self.file.as_ref().expect("created above");
        if let Err(e) = file.write(&value) {
            tracing::error!("status file {}: {e}", file.path().display());
        }
    }
}

impl Starting {
    /// Writes the status at once (state `waiting-for-segment`) and then every
    /// `status_interval_ms` from a task on the current tokio runtime, until `finish`.
    pub fn begin(config: &Config) -> Starting {
        let inner = Inner {
            file: None,
            config: config.clone(),
            state: State::WaitingForSegment,
            feed: None,
            position: None,
            write_cursor: None,
            connected: None,
            counters: Counters::default(),
            last_error: None,
            done: false,
        };
        let starting = Starting { inner: Arc::new(Mutex::new(inner)) };
        starting.with(Inner::write);
        let weak = Arc::downgrade(&starting.inner);
        let interval = config::ms(config.status_interval_ms);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(inner) = weak.upgrade() else { return };
                let mut inner = inner.lock().unwrap_or_else(|p| p.into_inner());
                if inner.done {
                    return;
                }
                inner.write();
            }
        });
        starting
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Still waiting for the segment, because of `reason` (shown as `last_error`).
    pub fn waiting_for_segment(&self, reason: &str) {
        self.with(|i| i.last_error = Some(reason.to_owned()));
    }

    /// The segment is open: its feed, write cursor and the saved cursor are known; NATS is next.
    pub fn segment_opened(&self, reader: &Reader) {
        self.with(|i| {
            let feed = reader.feed_name();
            i.position = CursorFile::new(i.config.cursor_path()).load(&feed).ok().flatten().map(|c| c.sequence);
            i.feed = Some(feed);
            i.write_cursor = Some(reader.write_cursor());
            i.state = State::Connecting;
            i.last_error = None;
            i.write();
        });
    }

    /// A connection attempt failed (counted in `errors`, shown as `last_error`).
    pub(super) fn connect_failed(&self, error: String) {
        self.with(|i| {
            i.counters.errors += 1;
            i.last_error = Some(error);
        });
    }

    /// Connected: the stream and the position come next.
    pub(super) fn connected(&self, connected: Arc<AtomicBool>) {
        self.with(|i| {
            i.connected = Some(connected);
            i.state = State::Resuming;
            i.write();
        });
    }

    /// The sidecar takes over its status file: no more writes from here. Returns the counters and
    /// last error so far, for the sidecar to carry on.
    pub(super) fn finish(&self) -> (Counters, Option<String>) {
        self.with(|i| {
            i.done = true;
            (i.counters.clone(), i.last_error.take())
        })
    }

    /// Starting failed for good (`error`, not retried): the last status says so, then the
    /// process exits and the file ages.
    pub fn failed(&self, error: &str) {
        self.with(|i| {
            i.done = true;
            i.state = State::Failed;
            i.counters.errors += 1;
            i.last_error = Some(error.to_owned());
            i.write();
        });
    }
}
