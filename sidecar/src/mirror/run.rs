//! The mirror's life: connect (retrying), open or create the segment, then follow the stream with
//! an ordered consumer from the segment's position; after any NATS failure, back off and resume
//! from the segment again. Refused input stops the process with the reason.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail};
use async_nats::{
    Client,
    jetstream::{self, consumer::DeliverPolicy, consumer::pull::OrderedConfig},
};
use futures::StreamExt;
use qilin_shm::{RunState, now_ns};

use super::{
    Config, Mirror, State,
    start::{self, StartError},
    status::Report,
};
use crate::nats::{connect_options, is_fatal, tls_error};

/// Runs until `stop` is set (SIGTERM) or a fatal error. `Err` carries the reason; a
/// [`super::Refused`] in its chain means the stream's input was refused.
pub async fn run(config: Config, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let mut report = Report::new(&config);
    report.write(&config, None);
    let result = follow(&config, &stop, &mut report).await;
    if let Err(e) = &result {
        report.state = State::Failed;
        report.last_error = Some(format!("{e:#}"));
        report.write(&config, None);
    }
    result
}

async fn follow(config: &Config, stop: &AtomicBool, report: &mut Report) -> anyhow::Result<()> {
    let connected = Arc::new(AtomicBool::new(false));
    let client = connect(config, &connected, stop, report).await?;
    let js = jetstream::ContextBuilder::new()
        .timeout(Duration::from_millis(config.nats.request_timeout_ms))
        .build(client.clone());
    let max_delay = Duration::from_millis(config.nats.reconnect_max_delay_ms);
    let mut backoff = Duration::from_millis(50);
    let (mut mirror, mut from) = loop {
        if stop.load(Ordering::Relaxed) {
            bail!("stopped before the segment was opened");
        }
        report.state = State::Resuming;
        report.write(config, None);
        match start::open(config, &js, connected.clone()).await {
            Ok(Some(opened)) => break opened,
            Ok(None) => {
                report.state = State::WaitingForStream;
                report.last_error = Some(format!("stream {} does not exist or is empty", config.stream_name()));
            }
            Err(StartError::Fatal(e)) => return Err(e),
            Err(StartError::Retry(e)) => {
                tracing::warn!("{e:#}; retrying");
                report.errors += 1;
                report.last_error = Some(format!("{e:#}"));
            }
        }
        report.write(config, None);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(max_delay);
    };
    report.last_error = None;
    mirror.writer.set_run_state(RunState::Running);
    let filter = format!("{}.>", config.subject_prefix());
    let status_every = Duration::from_millis(config.status_interval_ms);
    let stall_check = Duration::from_millis(config.stall_check_ms);
    let mut ticker = tokio::time::interval(Duration::from_millis(config.heartbeat_interval_ms));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_status = Instant::now();
    'resync: loop {
        report.state = State::Resuming;
        mirror.status(report, &mut last_status, Duration::ZERO);
        let consumer = async {
            let mut stream = start::stream(&js, &config.stream_name())
                .await?
                .ok_or_else(|| StartError::Retry(anyhow!("stream {} does not exist", config.stream_name())))?;
            let start_sequence = match from.take() {
                Some(s) => s,
                None => start::find_start(&mut stream, &filter, mirror.writer.next_sequence()).await?,
            };
            tracing::info!(
                "following from stream sequence {start_sequence} (sequence {})",
                mirror.writer.next_sequence()
            );
            let consumer = stream
                .create_consumer(OrderedConfig {
                    filter_subject: filter.clone(),
                    deliver_policy: DeliverPolicy::ByStartSequence { start_sequence },
                    ..Default::default()
                })
                .await
                .map_err(|e| StartError::Retry(anyhow!(e).context("creating the consumer")))?;
            let messages =
                consumer.messages().await.map_err(|e| StartError::Retry(anyhow!(e).context("consumer messages")))?;
            Ok((stream, messages, start_sequence.saturating_sub(1)))
        };
        let failure = match consumer.await {
            Err(StartError::Fatal(e)) => return Err(e),
            Err(StartError::Retry(e)) => e,
            Ok((mut stream, mut messages, mut delivered)) => {
                report.state = State::Following;
                let mut quiet_since = Instant::now();
                loop {
                    tokio::select! {
                        m = messages.next() => match m {
                            Some(Ok(m)) => {
                                mirror.apply(m.headers.as_ref(), &m.payload)?;
                                if let Ok(info) = m.info() {
                                    let newest = mirror.position() + info.pending;
                                    mirror.feed_newest = newest;
                                    delivered = info.stream_sequence;
                                }
                                quiet_since = Instant::now();
                                backoff = Duration::from_millis(50);
                            }
                            Some(Err(e)) => break anyhow!(e).context("consumer"),
                            None => break anyhow!("the consumer ended"),
                        },
                        _ = ticker.tick() => {
                            mirror.writer.heartbeat(now_ns());
                            mirror.status(report, &mut last_status, status_every);
                            if stop.load(Ordering::Relaxed) {
                                break 'resync;
                            }
                            // A consumer whose server stalled (SIGSTOP, a paused VM) delivers
                            // nothing and, its R1 state being on that server, may never recover
                            // by itself: quiet for `stall_check_ms` while the stream (answered by
                            // its leader) holds more than was delivered → resync.
                            if quiet_since.elapsed() >= stall_check {
                                quiet_since = Instant::now();
                                match stream.info().await {
                                    Ok(info) if info.state.last_sequence > delivered => {
                                        break anyhow!(
                                            "the consumer delivered nothing for {stall_check:?} while the stream \
                                             holds up to stream sequence {} (delivered {delivered})",
                                            info.state.last_sequence
                                        );
                                    }
                                    Ok(_) => {}
                                    // The server does not answer either: resync (reconnecting
                                    // to another node once the client's pings give up on it).
                                    Err(e) => break anyhow!(e).context("stream info while the consumer is quiet"),
                                }
                            }
                        }
                    }
                }
            }
        };
        tracing::warn!("{failure:#}; resuming from sequence {} in {backoff:?}", mirror.writer.next_sequence());
        mirror.counters.errors += 1;
        mirror.last_error = Some(format!("{failure:#}"));
        report.state = State::Retrying;
        let until = Instant::now() + backoff;
        while Instant::now() < until {
            ticker.tick().await;
            mirror.writer.heartbeat(now_ns());
            mirror.status(report, &mut last_status, status_every);
            if stop.load(Ordering::Relaxed) {
                break 'resync;
            }
        }
        backoff = (backoff * 2).min(max_delay);
    }
    report.state = State::Stopped;
    mirror.writer.set_run_state(RunState::Stopped);
    mirror.status(report, &mut last_status, Duration::ZERO);
    tracing::info!("stopped at sequence {}", mirror.position());
    Ok(())
}

impl Mirror {
    fn status(&self, report: &Report, last: &mut Instant, every: Duration) {
        if last.elapsed() >= every {
            report.write(&self.config, Some(self));
            *last = Instant::now();
        }
    }
}

/// Connects with qilin-nats's options (TLS, authentication, backoff), retrying while the server
/// is unreachable; TLS and authentication failures are not retried.
async fn connect(
    config: &Config,
    connected: &Arc<AtomicBool>,
    stop: &AtomicBool,
    report: &mut Report,
) -> anyhow::Result<Client> {
    let nats = config.as_nats();
    let urls = config.nats.urls.join(", ");
    let mut delay = Duration::from_millis(100);
    loop {
        // A server that stalls (SIGSTOP, a paused VM) keeps its TCP connection open: without a
        // short ping interval the client would notice only after minutes (async-nats' default
        // 60 s × 2 pings out). With `stall_check_ms` it reconnects to another node in 2-3 of them.
        let options = connect_options(&nats, connected.clone())?
            .name(format!("qilin-mirror/{}", config.name))
            .ping_interval(Duration::from_millis(config.stall_check_ms));
        match options.connect(config.nats.urls.as_slice()).await {
            Ok(client) => {
                connected.store(true, Ordering::Relaxed);
                return Ok(client);
            }
            Err(e) if tls_error(&e).is_some() => {
                bail!(
                    "cannot connect to NATS at {urls} (not retried): TLS handshake failed: {}",
                    tls_error(&e).unwrap()
                )
            }
            Err(e) if is_fatal(e.kind()) => bail!("cannot connect to NATS at {urls} (not retried): {e}"),
            Err(e) => {
                tracing::warn!("cannot connect to NATS at {urls}: {e}; retrying in {delay:?}");
                report.errors += 1;
                report.last_error = Some(format!("cannot connect to NATS at {urls}: {e}"));
                report.write(config, None);
                if stop.load(Ordering::Relaxed) {
                    bail!("stopped before NATS could be reached");
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_millis(config.nats.reconnect_max_delay_ms));
            }
        }
    }
}
