//! Opening the local segment (existing: resume after its write cursor; fresh: create it at the
//! stream's last message and fill the last values) and finding in the stream the first message
//! at or after a feed sequence.

use std::{
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use anyhow::{Context as _, anyhow};
use async_nats::jetstream::{
    self,
    consumer::{AckPolicy, DeliverPolicy, pull},
    stream::Stream,
};
use futures::StreamExt;
use qilin_market::products::Instruments;
use qilin_shm::{MirrorStart, TickRecord, Writer};
use zerocopy::FromBytes;

use super::{Config, Counters, Mirror, Refused, StartAt};
use crate::nats::{EPOCH_HEADER, GAP_FIRST_HEADER, LAYOUT_HEADER, SEQ_HEADER};

/// A failure while starting: retried (NATS) or not (the segment, refused input).
#[derive(Debug)]
pub(super) enum StartError {
    /// Worth retrying after a backoff.
    Retry(anyhow::Error),
    /// Not: the process stops.
    Fatal(anyhow::Error),
}

impl From<async_nats::Error> for StartError {
    fn from(e: async_nats::Error) -> Self {
        StartError::Retry(anyhow!(e))
    }
}

fn retry<E: std::error::Error + Send + Sync + 'static>(what: &'static str) -> impl FnOnce(E) -> StartError {
    move |e| StartError::Retry(anyhow!(e).context(what))
}

fn header_u64(headers: Option<&async_nats::HeaderMap>, name: &str) -> Option<u64> {
    headers.and_then(|h| h.get(name)).and_then(|v| v.as_str().parse().ok())
}

/// The stream, or `None` while it does not exist.
pub(super) async fn stream(js: &jetstream::Context, name: &str) -> Result<Option<Stream>, StartError> {
    match js.get_stream(name).await {
        Ok(s) => Ok(Some(s)),
        Err(e)
            if matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(j)
                if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
        {
            Ok(None)
        }
        Err(e) => Err(StartError::Retry(anyhow!(e).context(format!("looking up stream {name}")))),
    }
}

/// Opens the segment. Existing: resumes after its cursor (`None` start: find it in the stream).
/// Fresh: needs a stream message (`Ok(None)` while there is none), then creates and fills it and
/// returns the stream sequence to follow from.
pub(super) async fn open(
    config: &Config,
    js: &jetstream::Context,
    connected: Arc<AtomicBool>,
) -> Result<Option<(Mirror, Option<u64>)>, StartError> {
    let existing = match crate::open_segment(&config.segment) {
        Ok(Ok(reader)) => Some(reader),
        Ok(Err(_)) => None,
        Err(e) => return Err(StartError::Fatal(anyhow!(e))),
    };
    let instruments =
        match Instruments::find(Some(config.instruments_file.as_path()).filter(|p| !p.as_os_str().is_empty())) {
            Ok(i) => i,
            Err(e) => return Err(StartError::Fatal(anyhow!(e).context("instruments_file"))),
        };
    if let Some(reader) = existing {
        if reader.feed_name() != config.feed {
            return Err(StartError::Fatal(anyhow!(
                "segment {} holds feed {:?}, the config mirrors {:?}: point segment elsewhere",
                config.segment.display(),
                reader.feed_name(),
                config.feed
            )));
        }
        drop(reader);
        let writer = open_writer(config, MirrorStart { epoch: 0, next_sequence: 1 })?;
        tracing::info!(
            "resuming segment {} after sequence {} (epoch {})",
            config.segment.display(),
            writer.next_sequence() - 1,
            writer.epoch()
        );
        return Ok(Some((Mirror::new(config, writer, instruments, connected), None)));
    }
    let Some(mut stream) = stream(js, &config.stream_name()).await? else { return Ok(None) };
    let state = stream.info().await.map_err(retry("stream info"))?.state.clone();
    if state.messages == 0 {
        return Ok(None);
    }
    let filter = format!("{}.>", config.subject_prefix());
    let last = match config.start {
        StartAt::Last => stream.get_raw_message(state.last_sequence).await,
        StartAt::First => stream.get_first_raw_message_by_subject(&filter, state.first_sequence).await,
    }
    .map_err(retry("reading the stream's first or last message"))?;
    let headers = Some(&last.headers);
    let (Some(seq), Some(epoch)) = (header_u64(headers, SEQ_HEADER), header_u64(headers, EPOCH_HEADER)) else {
        return Err(StartError::Fatal(anyhow!(
            "message {} of stream {} has no Qilin-Seq/Qilin-Epoch: not a qilin-nats stream",
            last.sequence,
            config.stream_name(),
        )));
    };
    let expected = qilin_shm::layout::fingerprint_text(qilin_shm::FINGERPRINT);
    if header_u64(headers, GAP_FIRST_HEADER).is_none() {
        let found = last.headers.get(LAYOUT_HEADER).map(|v| v.as_str().to_owned());
        if found.as_deref() != Some(expected.as_str()) {
            let found = found.unwrap_or_else(|| "none".into());
            return Err(StartError::Fatal(anyhow!(Refused::Layout { found, expected })));
        }
    }
    if config.start == StartAt::First {
        // Everything before the first message is a hole the first message's jump marks lost.
        let writer = open_writer(config, MirrorStart { epoch, next_sequence: 1 })?;
        tracing::info!(
            "created segment {} to replay stream {} from its first message",
            config.segment.display(),
            config.stream_name()
        );
        return Ok(Some((Mirror::new(config, writer, instruments, connected), Some(last.sequence))));
    }
    let writer = open_writer(config, MirrorStart { epoch, next_sequence: seq + 1 })?;
    tracing::info!(
        "created segment {} at sequence {} (epoch {epoch}) from stream {} (stream sequence {})",
        config.segment.display(),
        seq + 1,
        config.stream_name(),
        last.sequence
    );
    let mut mirror = Mirror::new(config, writer, instruments, connected);
    mirror.fill(&stream, last.sequence, seq).await?;
    Ok(Some((mirror, Some(last.sequence + 1))))
}

fn open_writer(config: &Config, start: MirrorStart) -> Result<Writer, StartError> {
    Writer::open_mirror(&config.segment, &config.segment_options(), start)
        .with_context(|| format!("opening segment {}", config.segment.display()))
        .map_err(StartError::Fatal)
}

/// The stream sequence of the first message (of `filter`) whose `Qilin-Seq` is at least `want`,
/// or the one after the stream's last: a binary search, the stream being in feed-sequence order.
pub(super) async fn find_start(stream: &mut Stream, filter: &str, want: u64) -> Result<u64, StartError> {
    let state = stream.info().await.map_err(retry("stream info"))?.state.clone();
    let (mut lo, mut hi) = (state.first_sequence.max(1), state.last_sequence + 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match stream.get_first_raw_message_by_subject(filter, mid).await {
            Ok(m) if m.sequence < hi => {
                if header_u64(Some(&m.headers), SEQ_HEADER).unwrap_or(0) >= want {
                    hi = mid;
                } else {
                    lo = m.sequence + 1;
                }
            }
            Ok(_) => hi = mid,
            Err(e) if matches!(e.kind(), async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound) => {
                hi = mid
            }
            Err(e) => return Err(StartError::Retry(anyhow!(e).context("searching the stream"))),
        }
    }
    Ok(lo)
}

impl Mirror {
    pub(super) fn new(
        config: &Config,
        writer: Writer,
        instruments: Option<Instruments>,
        connected: Arc<AtomicBool>,
    ) -> Mirror {
        let directory = (0..writer.directory_len())
            .filter_map(|i| writer.directory_entry(i).map(|e| (e.instrument_id, i)))
            .collect();
        Mirror {
            capacity: config.instrument_capacity,
            directory,
            config: config.clone(),
            writer,
            instruments,
            layout_text: qilin_shm::layout::fingerprint_text(qilin_shm::FINGERPRINT),
            counters: Counters::default(),
            last_publish_ns: 0,
            last_latency_ns: 0,
            last_error: None,
            feed_newest: 0,
            connected,
        }
    }

    /// A fresh mirror's last values: the stream's last tick of each instrument subject, up to
    /// stream sequence `upto` (feed sequence `as_of`); each written with its directory entry.
    async fn fill(&mut self, stream: &Stream, upto: u64, as_of: u64) -> Result<(), StartError> {
        let prefix = self.config.subject_prefix();
        let consumer = stream
            .create_consumer(pull::Config {
                deliver_policy: DeliverPolicy::LastPerSubject,
                filter_subject: format!("{prefix}.*.*"),
                ack_policy: AckPolicy::None,
                inactive_threshold: Duration::from_secs(30),
                ..Default::default()
            })
            .await
            .map_err(retry("creating the last-value consumer"))?;
        let mut records: Vec<TickRecord> = Vec::new();
        if consumer.cached_info().num_pending > 0 {
            let mut messages = consumer.messages().await.map_err(retry("last-value consumer"))?;
            loop {
                let m =
                    tokio::time::timeout(Duration::from_millis(self.config.nats.request_timeout_ms), messages.next())
                        .await
                        .map_err(|_| StartError::Retry(anyhow!("the last-value consumer went quiet")))?
                        .ok_or_else(|| StartError::Retry(anyhow!("the last-value consumer ended")))?
                        .map_err(retry("last-value consumer"))?;
                let info = m.info().map_err(|e| StartError::Retry(anyhow!("{e}")))?;
                let (stream_seq, pending) = (info.stream_sequence, info.pending);
                let headers = m.headers.as_ref();
                if stream_seq <= upto && header_u64(headers, SEQ_HEADER).is_some_and(|s| s <= as_of) {
                    let layout = headers.and_then(|h| h.get(LAYOUT_HEADER)).map(|v| v.as_str());
                    if layout != Some(self.layout_text.as_str()) {
                        let found = layout.unwrap_or("none").to_owned();
                        let expected = self.layout_text.clone();
                        return Err(StartError::Fatal(anyhow!(Refused::Layout { found, expected })));
                    }
                    match TickRecord::read_from_bytes(&m.payload) {
                        Ok(r) if r.instrument_id_str().is_some_and(|id| !id.is_empty()) => records.push(r),
                        _ => self.counters.undecodable += 1,
                    }
                }
                if pending == 0 {
                    break;
                }
            }
        }
        let _ = stream.delete_consumer(&consumer.cached_info().name).await;
        // In the feed's index order, so a mirror filled at once has the feed's indexes.
        records.sort_by_key(|r| r.instrument_index);
        for r in &mut records {
            let Some(index) = self.local_index(r) else {
                self.counters.directory_full += 1;
                continue;
            };
            r.instrument_index = index;
            self.writer.set_last_value(r).expect("the instrument was just added");
            self.counters.filled += 1;
        }
        tracing::info!("filled {} last values as of sequence {as_of}", records.len());
        Ok(())
    }
}
