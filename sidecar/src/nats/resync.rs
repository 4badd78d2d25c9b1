//! Failure and resynchronisation: drop what is in flight, back off, find the position again (the
//! stream's last message in JetStream mode, the confirmed position in core mode) and read the ring
//! again from there.

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::anyhow;
use qilin_shm::Start;

use super::{SEQ_HEADER, Sidecar, State, config};

impl Sidecar {
    /// Reads the stream's last message and moves the position after it (JetStream), or back to
    /// the confirmed position (core). Retries with backoff until it succeeds or `stop` is set.
    pub(super) async fn resync(&mut self, stop: &AtomicBool) {
        self.pending.clear();
        self.confirming = None;
        loop {
            match self.try_resync().await {
                Ok(()) => break,
                Err(e) => {
                    self.failed(format!("{e:#}"));
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    self.sleep_backoff().await;
                }
            }
        }
        // A gap event the stream holds although its ack was lost counts; the rest is read again.
        self.count_confirmed_gaps();
        self.unconfirmed_gaps.clear();
        self.counters.retried += self.published_seq.saturating_sub(self.confirmed);
        self.published_seq = self.confirmed;
        self.reader.seek(Start::Sequence(self.confirmed + 1));
        if self.state == State::Retrying {
            self.state = State::Publishing;
        }
    }

    async fn try_resync(&mut self) -> anyhow::Result<()> {
        let timeout = config::ms(self.config.nats.request_timeout_ms);
        // Whatever the client still buffers reaches the server before the stream is read. While
        // NATS is down this is where the sidecar waits: the status stays fresh meanwhile.
        let prober = self.prober.clone();
        self.keeping_status(prober.round_trip(timeout))
            .await
            .map_err(|e| anyhow!("confirming with the server: {e}"))?;
        let Some(js) = &self.js else { return Ok(()) };
        let stream = match js.get_stream(&self.stream_name).await {
            Ok(s) => s,
            Err(e) => {
                // A memory stream is gone after a server restart: create it again.
                self.ensure_stream().await.map_err(|e2| anyhow!("{e}; {e2:#}"))?;
                self.js.as_ref().expect("jetstream").get_stream(&self.stream_name).await?
            }
        };
        let last = stream.cached_info().state.last_sequence;
        self.expected_last = last;
        if last == 0 {
            return Ok(());
        }
        match stream.get_raw_message(last).await {
            Ok(message) => {
                let seq =
                    message.headers.get(SEQ_HEADER).and_then(|v| v.as_str().parse::<u64>().ok()).ok_or_else(|| {
                        anyhow!(
                            "the last message of stream {} (stream sequence {last}, subject {}) has no {SEQ_HEADER} \
                             header: the stream holds messages of another publisher",
                            self.stream_name,
                            message.subject
                        )
                    })?;
                if seq != self.confirmed {
                    tracing::info!("stream {} ends at feed sequence {seq}; continuing after it", self.stream_name);
                }
                self.confirmed = seq;
            }
            // The last message expired or was deleted: keep the cursor.
            Err(e) => tracing::warn!(
                "stream {} last message {last} not readable ({e}); continuing after sequence {}",
                self.stream_name,
                self.confirmed
            ),
        }
        Ok(())
    }

    pub(super) fn failed(&mut self, error: String) {
        self.counters.errors += 1;
        if self.last_error.as_deref() != Some(error.as_str()) {
            tracing::warn!("{error}; retrying from sequence {}", self.confirmed + 1);
        }
        self.last_error = Some(error);
        if self.state == State::Publishing {
            self.state = State::Retrying;
        }
        self.maintain();
    }

    pub(super) async fn sleep_backoff(&mut self) {
        self.keeping_status(tokio::time::sleep(self.backoff)).await;
        self.backoff = (self.backoff * 2).min(config::ms(self.config.nats.reconnect_max_delay_ms));
    }
}
