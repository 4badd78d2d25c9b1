//! Publishing one message: the subject of a tick, the headers every message carries, the body
//! (raw record or JSON), gap events, and handing the message to the client (JetStream publish
//! with its ack future, or a core publish with a bounded wait).

use std::future::IntoFuture;

use anyhow::anyhow;
use async_nats::{
    HeaderMap, HeaderName, Subject,
    header::{NATS_EXPECTED_LAST_SEQUENCE, NATS_MESSAGE_ID},
    jetstream::context::PublishAckFuture,
};
use bytes::Bytes;
use qilin_shm::{TickRecord, now_ns};
use serde_json::json;

use super::{Payload, Sidecar, config, confirm::Pending};

/// Header with the tick's sequence (also on gap events: the last lost sequence).
pub const SEQ_HEADER: &str = "Qilin-Seq";
/// Header with the segment epoch the tick was read in.
pub const EPOCH_HEADER: &str = "Qilin-Epoch";
/// Header with the tick's source (primary, backup, sim, replay, udp).
pub const SOURCE_HEADER: &str = "Qilin-Source";
/// Header of raw bodies: the layout fingerprint of the record, written as
/// [`qilin_shm::layout::fingerprint_text`] writes it (`0x` and 16 lowercase hex digits), exactly the
/// `fingerprint` of `qilinctl layout --json`. A consumer decodes the body only if they are equal.
pub const LAYOUT_HEADER: &str = "Qilin-Layout";
/// Headers of gap events: the lost range, inclusive.
pub const GAP_FIRST_HEADER: &str = "Qilin-Gap-First";
/// See [`GAP_FIRST_HEADER`].
pub const GAP_LAST_HEADER: &str = "Qilin-Gap-Last";

const SEQ_NAME: HeaderName = HeaderName::from_static(SEQ_HEADER);
const EPOCH_NAME: HeaderName = HeaderName::from_static(EPOCH_HEADER);
const SOURCE_NAME: HeaderName = HeaderName::from_static(SOURCE_HEADER);
const LAYOUT_NAME: HeaderName = HeaderName::from_static(LAYOUT_HEADER);
const GAP_FIRST_NAME: HeaderName = HeaderName::from_static(GAP_FIRST_HEADER);
const GAP_LAST_NAME: HeaderName = HeaderName::from_static(GAP_LAST_HEADER);

/// An instrument or exchange id as one subject token: ASCII letters, digits, `-` and `_` are kept,
/// every other character (`.`, `*`, `>`, spaces, non-ASCII) becomes `_`; an empty id becomes `_`.
pub fn subject_token(id: &str) -> String {
    if id.is_empty() {
        return "_".into();
    }
    id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

impl Sidecar {
    fn subject(&mut self, tick: &TickRecord) -> Subject {
        let index = tick.instrument_index as usize;
        if let Some(Some((exchange, id, subject))) = self.subjects.get(index)
            && *exchange == tick.exchange
            && *id == tick.instrument_id
        {
            return subject.clone();
        }
        let exchange = qilin_market::names::exchange_name(tick.exchange);
        let id = tick.instrument_id_str().unwrap_or("");
        let subject = Subject::from(format!("{}.{}.{}", self.prefix, subject_token(exchange), subject_token(id)));
        // Indexes are bounded by the segment's instrument capacity; a bogus one is not cached.
        if index < 1 << 20 {
            if self.subjects.len() <= index {
                self.subjects.resize(index + 1, None);
            }
            self.subjects[index] = Some((tick.exchange, tick.instrument_id, subject.clone()));
        }
        subject
    }

    /// Headers every message carries. Names are constants and values owned strings: a `&str`
    /// name or value costs a validation and a copy per message.
    fn headers(&mut self, sequence: u64, msg_id: String) -> HeaderMap {
        let epoch = self.reader.epoch();
        if self.epoch_text.0 != epoch {
            self.epoch_text = (epoch, epoch.to_string());
        }
        let mut headers = HeaderMap::new();
        headers.insert(NATS_MESSAGE_ID, msg_id);
        headers.insert(SEQ_NAME, sequence.to_string());
        headers.insert(EPOCH_NAME, self.epoch_text.1.clone());
        if self.js.is_some() {
            headers.insert(NATS_EXPECTED_LAST_SEQUENCE, self.expected_last.to_string());
            self.expected_last += 1;
        }
        headers
    }

    async fn send(
        &mut self,
        subject: Subject,
        headers: HeaderMap,
        body: Bytes,
        sequence: u64,
        publish_ns: i64,
    ) -> anyhow::Result<()> {
        let len = body.len() as u64;
        // A publish that has to wait (for an ack permit, for room in the client's queue) keeps
        // the status fresh meanwhile; the first poll nearly always finishes, at no timer's cost.
        if let Some(js) = self.js.clone() {
            let ack: PublishAckFuture = self.keeping_status(js.publish_with_headers(subject, headers, body)).await?;
            self.pending.push_back(Pending { sequence, publish_ns, ack: ack.into_future() });
        } else {
            // The client's queue is bounded (`client_capacity`); while NATS is away a full queue
            // would wait for the reconnect, so bound the wait and let the failure path take over.
            // Only a publish that has to wait pays for the timer.
            let timeout = config::ms(self.config.nats.request_timeout_ms);
            let client = self.client.clone();
            let mut publish = std::pin::pin!(client.publish_with_headers(subject, headers, body));
            match futures::poll!(publish.as_mut()) {
                std::task::Poll::Ready(result) => result?,
                std::task::Poll::Pending => self
                    .keeping_status(tokio::time::timeout(timeout, publish))
                    .await
                    .map_err(|_| anyhow!("publish timed out after {timeout:?} (client queue full)"))??,
            }
        }
        self.published_seq = sequence;
        self.published_ns = publish_ns;
        self.counters.published += 1;
        self.counters.bytes += len;
        Ok(())
    }

    pub(super) async fn send_tick(&mut self) -> anyhow::Result<()> {
        let tick = self.tick;
        let subject = self.subject(&tick);
        let mut headers = self.headers(tick.sequence, format!("{}-{}", self.feed, tick.sequence));
        headers.insert(SOURCE_NAME, qilin_market::names::source_name(tick.source));
        let body = match self.config.nats.payload {
            Payload::Raw => {
                headers.insert(LAYOUT_NAME, self.layout_text.clone());
                Bytes::copy_from_slice(zerocopy::IntoBytes::as_bytes(&tick))
            }
            Payload::Json => {
                // Sized from the previous bodies: allocated once, not regrown while written.
                let mut body = Vec::with_capacity(self.json_capacity);
                qilin_market::names::write_tick_json(&tick, &mut body);
                self.json_capacity = self.json_capacity.max(body.len() + 128);
                Bytes::from(body)
            }
        };
        self.send(subject, headers, body, tick.sequence, tick.publish_ns).await
    }

    pub(super) async fn send_gap(&mut self, first: u64, last: u64) -> anyhow::Result<()> {
        let count = last - first + 1;
        tracing::warn!("sequences {first}..={last} ({count}) are gone from the ring; publishing a gap event");
        let mut headers = self.headers(last, format!("{}-gap-{first}-{last}", self.feed));
        headers.insert(GAP_FIRST_NAME, first.to_string());
        headers.insert(GAP_LAST_NAME, last.to_string());
        let body = serde_json::to_vec(&json!({
            "feed": self.feed, "first": first, "last": last, "count": count, "reason": "lapped",
            "detected_ns": now_ns(),
        }))?;
        let subject = self.gap_subject.clone();
        self.send(subject, headers, Bytes::from(body), last, now_ns()).await?;
        self.unconfirmed_gaps.push_back((first, last));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_tokens_keep_ctp_ids_and_replace_what_nats_reserves() {
        assert_eq!(subject_token("rb2605"), "rb2605");
        assert_eq!(subject_token("m2609-C-3000"), "m2609-C-3000");
        assert_eq!(subject_token("SR605C5000"), "SR605C5000");
        assert_eq!(subject_token("IF2612.X"), "IF2612_X");
        assert_eq!(subject_token("a*b>c d\te"), "a_b_c_d_e");
        assert_eq!(subject_token("豆粕"), "__");
        assert_eq!(subject_token(""), "_");
    }
}
