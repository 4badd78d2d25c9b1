//! Moving `confirmed` forward: JetStream acks awaited in a bounded window, and in core mode a
//! round trip to the server ([`Prober`]) after the publishes it confirms.

use std::{
    future::Future,
    pin::Pin,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow};
use async_nats::{Client, Subject, jetstream};
use bytes::Bytes;
use futures::FutureExt;

use super::{Sidecar, config};

pub(super) type AckFuture =
    Pin<Box<dyn Future<Output = Result<jetstream::publish::PublishAck, jetstream::context::PublishError>> + Send>>;
pub(super) type ConfirmFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// A publish awaiting its ack.
pub(super) struct Pending {
    pub sequence: u64,
    pub publish_ns: i64,
    pub ack: AckFuture,
}

/// A true round trip to the server. `Client::flush` only writes the client's buffer to the
/// socket; this publishes a token to the sidecar's own inbox and waits to receive it back, which
/// the server does only after processing everything the client sent before.
pub struct Prober {
    client: Client,
    inbox: Subject,
    sub: tokio::sync::Mutex<async_nats::Subscriber>,
    next: std::sync::atomic::AtomicUsize,
}

impl Prober {
    /// Subscribes the inbox.
    pub async fn new(client: Client) -> anyhow::Result<Prober> {
        let inbox = Subject::from(client.new_inbox());
        let sub = client.subscribe(inbox.clone()).await.context("subscribing the confirmation inbox")?;
        Ok(Prober { client, inbox, sub: tokio::sync::Mutex::new(sub), next: std::sync::atomic::AtomicUsize::new(0) })
    }

    /// Returns once the server has processed everything published before the call.
    pub async fn round_trip(&self, timeout: Duration) -> Result<(), String> {
        use futures::StreamExt;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut sub = self.sub.lock().await;
        let token = self.next.fetch_add(1, Ordering::Relaxed).to_string();
        let publish = self.client.publish(self.inbox.clone(), Bytes::from(token.clone()));
        tokio::time::timeout_at(deadline, publish)
            .await
            .map_err(|_| format!("round trip timed out after {timeout:?}"))?
            .map_err(|e| e.to_string())?;
        loop {
            match tokio::time::timeout_at(deadline, sub.next()).await {
                Ok(Some(m)) if m.payload == token.as_bytes() => return Ok(()),
                Ok(Some(_)) => {} // the answer to an earlier, abandoned round trip
                Ok(None) => return Err("the confirmation subscription closed".into()),
                Err(_) => return Err(format!("round trip timed out after {timeout:?}")),
            }
        }
    }
}

impl Sidecar {
    /// Keeps the ack window bounded before the next publish: every pending ack holds a permit of
    /// the context, and a publish waiting for a permit nobody returns would wait forever.
    pub(super) async fn bound_window(&mut self) -> anyhow::Result<()> {
        if self.pending.len() >= self.config.jetstream.ack_window { self.settle(false).await } else { Ok(()) }
    }

    /// Moves `confirmed` forward over settled acks or a finished round trip. With `wait`, waits for
    /// everything in flight (used when the ring has nothing new and before stopping).
    pub(super) async fn settle(&mut self, wait: bool) -> anyhow::Result<()> {
        let window = self.config.jetstream.ack_window;
        loop {
            let must_wait = wait || self.pending.len() >= window;
            let Some(front) = self.pending.front_mut() else { break };
            let (done, result) = if must_wait {
                let mut done = self.pending.pop_front().expect("front exists");
                let result = self.keeping_status(&mut done.ack).await;
                (done, result)
            } else {
                match (&mut front.ack).now_or_never() {
                    Some(result) => (self.pending.pop_front().expect("front exists"), result),
                    None => break,
                }
            };
            let ack = result.with_context(|| format!("ack of sequence {}", done.sequence))?;
            if ack.duplicate {
                self.counters.duplicates += 1;
            }
            self.counters.acked += 1;
            self.confirm(done.sequence, done.publish_ns);
        }
        if self.js.is_none() {
            if let Some((sequence, publish_ns, mut round_trip)) = self.confirming.take() {
                let result = if wait {
                    Some(self.keeping_status(&mut round_trip).await)
                } else {
                    (&mut round_trip).now_or_never()
                };
                match result {
                    Some(result) => {
                        result.map_err(|e| anyhow!("confirming with the server: {e}"))?;
                        self.counters.acked += sequence - self.confirmed;
                        self.confirm(sequence, publish_ns);
                    }
                    None => self.confirming = Some((sequence, publish_ns, round_trip)),
                }
            }
            let due = self.last_confirm.elapsed() >= config::ms(self.config.nats.flush_interval_ms);
            if self.confirming.is_none() && self.published_seq > self.confirmed && (wait || due) {
                let prober = self.prober.clone();
                let timeout = config::ms(self.config.nats.request_timeout_ms);
                let round_trip: ConfirmFuture = Box::pin(async move { prober.round_trip(timeout).await });
                self.confirming = Some((self.published_seq, self.published_ns, round_trip));
                self.last_confirm = Instant::now();
                if wait {
                    return Box::pin(self.settle(true)).await;
                }
            }
        }
        Ok(())
    }

    fn confirm(&mut self, sequence: u64, publish_ns: i64) {
        if sequence > self.confirmed {
            self.confirmed = sequence;
            self.confirmed_ns = publish_ns;
        }
        self.count_confirmed_gaps();
        self.backoff = Duration::from_millis(50);
        self.last_error = None;
    }

    pub(super) fn count_confirmed_gaps(&mut self) {
        while let Some(&(first, last)) = self.unconfirmed_gaps.front() {
            if last > self.confirmed {
                break;
            }
            self.unconfirmed_gaps.pop_front();
            self.counters.gaps += 1;
            self.counters.gap_sequences += last - first + 1;
        }
    }
}
