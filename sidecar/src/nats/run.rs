//! The publish loop: ring → NATS in batches, settling acks between them, resynchronising after a
//! failure, with the cursor and status file kept up to date; and the stop.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use qilin_shm::Next;

use super::{Sidecar, State, Stopped, config};

impl Sidecar {
    /// Publishes until `stop` is set (or, with `until`, until every sequence up to it is
    /// confirmed). Failures are retried forever; the only errors returned are ones retrying
    /// cannot fix.
    pub async fn run(&mut self, stop: &AtomicBool, until: Option<u64>) -> anyhow::Result<Stopped> {
        const BATCH: usize = 256;
        let idle = Duration::from_millis(1);
        self.state = State::Publishing;
        loop {
            if stop.load(Ordering::Relaxed) {
                self.finish().await;
                return Ok(Stopped::Requested);
            }
            if until.is_some_and(|u| self.confirmed >= u) {
                self.finish().await;
                return Ok(Stopped::Reached);
            }
            if self.held.is_some() {
                self.maintain();
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            let mut moved = 0;
            let mut result = Ok(());
            while moved < BATCH && result.is_ok() {
                result = match self.reader.try_next(&mut self.tick) {
                    Next::Tick => self.send_tick().await,
                    Next::Gap { first, last } => self.recover(first, last).await,
                    Next::NewEpoch { previous, current } => {
                        self.counters.epochs += 1;
                        tracing::info!("the core restarted (epoch {previous} → {current}); sequences continue");
                        Ok(())
                    }
                    Next::Empty => break,
                };
                moved += 1;
                if result.is_ok() {
                    result = self.bound_window().await;
                }
            }
            if result.is_ok() {
                result = self.settle(moved == 0).await;
            }
            if result.is_ok() && moved == 0 {
                result = self.check_segment().await;
            }
            if let Err(e) = result {
                self.failed(format!("{e:#}"));
                self.sleep_backoff().await;
                self.resync(stop).await;
                continue;
            }
            self.maintain();
            if moved == 0 {
                tokio::time::sleep(idle).await;
            }
        }
    }

    /// Confirms what is in flight (bounded by the request timeout), saves the cursor and status.
    async fn finish(&mut self) {
        if let Err(e) = self.settle(true).await {
            tracing::warn!("stopping with unconfirmed messages after sequence {}: {e:#}", self.confirmed);
        }
        self.save_cursor_now().await;
        self.state = State::Stopped;
        self.write_status();
    }

    /// Saves the cursor and rewrites the status file when they are due.
    pub(super) fn maintain(&mut self) {
        if self.confirmed != self.saved && self.last_save.elapsed() >= config::ms(self.config.cursor_interval_ms) {
            self.save_cursor();
        }
        if self.last_status.elapsed() >= config::ms(self.config.status_interval_ms) {
            self.write_status();
        }
    }
}
