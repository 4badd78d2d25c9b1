//! `qilin-nats`: every tick of the segment to NATS.
//!
//! One message per tick on `<prefix>.<EXCHANGE>.<instrument>` (tokens sanitised by
//! [`subject_token`]), body the raw 376-byte record or JSON, headers `Nats-Msg-Id: <feed>-<seq>`,
//! `Qilin-Seq`, `Qilin-Epoch`, `Qilin-Source` (and `Qilin-Layout` for raw bodies). Ticks the ring
//! no longer holds become one gap event on `<prefix>._gap`.
//!
//! **Position.** `confirmed` is the last sequence the server confirmed: a JetStream ack, or in core
//! mode a round trip to the server ([`Prober`]) issued after the publish. It is saved to the
//! cursor file and is where a restart resumes. In JetStream mode the stream itself is the truth: at
//! start and after any failure the sidecar makes a round trip (so what the client still buffered
//! has arrived), reads the stream's last message and continues after the sequence in its
//! `Qilin-Seq` header. Every message carries
//! `Nats-Expected-Last-Sequence` (the stream sequence it must follow), so a message that the
//! server receives out of order (the tail of a dropped connection, a stale retransmission) is
//! refused rather than stored; the refusal triggers the same resynchronisation. Together this gives
//! every sequence once and in order in the stream, without relying on the duplicate window for
//! resuming (the window still drops the client's own retransmissions of a message id).
//!
//! **Failure.** On any publish, ack or round-trip failure the sidecar drops what is in flight, waits
//! (doubling backoff up to `reconnect_max_delay_ms`), resynchronises and republishes from the
//! position, reading the ring again: the ring is the buffer, so nothing is lost while NATS is down
//! unless the core laps the sidecar, which then publishes the exact lost range as a gap event.

pub mod config;

use std::{
    collections::VecDeque,
    future::{Future, IntoFuture},
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail};
use async_nats::{
    Client, ConnectErrorKind, ConnectOptions, HeaderMap, HeaderName, Subject,
    header::{NATS_EXPECTED_LAST_SEQUENCE, NATS_MESSAGE_ID},
    jetstream::{self, context::PublishAckFuture, stream},
};
use bytes::Bytes;
use futures::FutureExt;
use qilin_shm::{Next, Reader, Start, TickRecord, now_ns};
use secrecy::ExposeSecret;
use serde_json::json;

pub use self::config::{Config, ConfigError, Mode, Payload, StartAt};
use crate::{
    cursor::{Cursor, CursorFile},
    secret,
    status::StatusFile,
};

/// Header with the tick's sequence (also on gap events: the last lost sequence).
pub const SEQ_HEADER: &str = "Qilin-Seq";
/// Header with the segment epoch the tick was read in.
pub const EPOCH_HEADER: &str = "Qilin-Epoch";
/// Header with the tick's source (primary, backup, sim, replay, udp).
pub const SOURCE_HEADER: &str = "Qilin-Source";
/// Header of raw bodies: `<layout version>-<fingerprint as 16 hex digits>`.
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

/// The sidecar's counters (also in its status file).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Counters {
    /// Messages handed to the client (ticks and gap events, retransmissions included).
    pub published: u64,
    /// Messages confirmed by the server (acks, or round trips in core mode).
    pub acked: u64,
    /// Messages published again after a failure.
    pub retried: u64,
    /// Gap events confirmed by the server.
    pub gaps: u64,
    /// Sequences covered by confirmed gap events.
    pub gap_sequences: u64,
    /// Body bytes handed to the client.
    pub bytes: u64,
    /// Publish, ack, round-trip and connection failures.
    pub errors: u64,
    /// Acks that said the server had the message already.
    pub duplicates: u64,
    /// Core restarts seen (new segment epochs).
    pub epochs: u64,
    /// Ticks the ring had lost that were published from the recorder's journal.
    pub backfilled: u64,
}

type AckFuture =
    Pin<Box<dyn Future<Output = Result<jetstream::publish::PublishAck, jetstream::context::PublishError>> + Send>>;
type ConfirmFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// A publish awaiting its ack.
struct Pending {
    sequence: u64,
    publish_ns: i64,
    ack: AckFuture,
}

/// The sidecar: a reader on the segment and a NATS connection.
pub struct Sidecar {
    config: Config,
    reader: Reader,
    feed: String,
    prefix: String,
    client: Client,
    prober: Arc<Prober>,
    js: Option<jetstream::Context>,
    connected: Arc<AtomicBool>,
    stream_name: String,
    /// Subjects by instrument index (checked against the tick's exchange and id).
    subjects: Vec<Option<(u8, [u8; 32], Subject)>>,
    /// The epoch as header text, rebuilt when the epoch changes.
    epoch_text: (u64, String),
    /// `Qilin-Layout` value.
    layout_text: String,
    gap_subject: Subject,
    pending: VecDeque<Pending>,
    /// Core mode: the round trip in flight, with the sequence and publish time it confirms.
    confirming: Option<(u64, i64, ConfirmFuture)>,
    last_confirm: Instant,
    /// Next stream sequence the next message must follow (JetStream).
    expected_last: u64,
    published_seq: u64,
    published_ns: i64,
    confirmed: u64,
    confirmed_ns: i64,
    counters: Counters,
    /// Gap events published but not yet confirmed: counted when confirmed, forgotten (and read
    /// again from the ring) after a failure.
    unconfirmed_gaps: VecDeque<(u64, u64)>,
    last_error: Option<String>,
    cursor_file: CursorFile,
    saved: u64,
    /// The cursor save in flight on the blocking pool, returning the sequence it saved.
    saving: Option<tokio::task::JoinHandle<Result<u64, crate::cursor::CursorError>>>,
    last_save: Instant,
    status: StatusFile,
    last_status: Instant,
    backoff: Duration,
    tick: TickRecord,
}

impl std::fmt::Debug for Sidecar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sidecar").field("feed", &self.feed).field("confirmed", &self.confirmed).finish_non_exhaustive()
    }
}

/// Why the sidecar stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Asked to stop (signal).
    Requested,
    /// The reader reached `until` (benchmarks and tests).
    Reached,
}

/// Builds the connect options from the config plus secrets from the environment or secret files.
pub fn connect_options(config: &Config, connected: Arc<AtomicBool>) -> anyhow::Result<ConnectOptions> {
    let n = &config.nats;
    let max_delay = config::ms(n.reconnect_max_delay_ms);
    let mut options = ConnectOptions::new()
        .name(format!("qilin-nats/{}", config.name))
        .connection_timeout(config::ms(n.connect_timeout_ms))
        .request_timeout(Some(config::ms(n.request_timeout_ms)))
        .client_capacity(n.client_capacity)
        .reconnect_delay_callback(move |attempts| {
            (Duration::from_millis(50) * 2u32.saturating_pow(attempts.min(16) as u32)).min(max_delay)
        })
        .event_callback(move |event| {
            let connected = connected.clone();
            async move {
                match &event {
                    async_nats::Event::Connected => {
                        connected.store(true, Ordering::Relaxed);
                        tracing::info!("NATS connected");
                    }
                    async_nats::Event::Disconnected => {
                        connected.store(false, Ordering::Relaxed);
                        tracing::warn!("NATS disconnected; reconnecting");
                    }
                    other => tracing::warn!("NATS: {other}"),
                }
            }
        });
    let user = if n.user.is_empty() { std::env::var("NATS_USER").unwrap_or_default() } else { n.user.clone() };
    if let Some(password) = secret::load("NATS_PASSWORD", "nats.password_file", n.password_file.as_deref())? {
        if user.is_empty() {
            bail!("a NATS password is given but no user (nats.user or NATS_USER)");
        }
        options = options.user_and_password(user, password.expose_secret().to_owned());
    }
    if let Some(token) = secret::load("NATS_TOKEN", "nats.token_file", n.token_file.as_deref())? {
        options = options.token(token.expose_secret().to_owned());
    }
    if let Some(seed) = secret::load("NATS_NKEY_SEED", "nats.nkey_seed_file", n.nkey_seed_file.as_deref())? {
        options = options.nkey(seed.expose_secret().to_owned());
    }
    let creds = n.creds_file.clone().or_else(|| std::env::var_os("NATS_CREDS_FILE").map(Into::into));
    if let Some(path) = creds {
        let text = secret::load("QILIN_UNUSED_CREDS_VARIABLE", "nats.creds_file", Some(&path))?
            .ok_or_else(|| anyhow!("nats.creds_file {}: empty", path.display()))?;
        options = options
            .credentials(text.expose_secret())
            .with_context(|| format!("nats.creds_file {}: not a NATS credentials file", path.display()))?;
    }
    let t = &n.tls;
    if t.required || t.ca_file.is_some() || t.cert_file.is_some() {
        options = options.require_tls(true);
    }
    if let Some(ca) = &t.ca_file {
        options = options.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&t.cert_file, &t.key_file) {
        // The key is a secret file: refuse it when every user can read it (the client reads it).
        secret::load("QILIN_UNUSED_KEY_VARIABLE", "nats.tls.key_file", Some(key))?;
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    Ok(options)
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

/// True for connection errors that retrying cannot fix (TLS, authentication, bad address).
pub fn is_fatal(kind: ConnectErrorKind) -> bool {
    matches!(
        kind,
        ConnectErrorKind::Tls
            | ConnectErrorKind::Authentication
            | ConnectErrorKind::AuthorizationViolation
            | ConnectErrorKind::ServerParse
    )
}

/// The TLS error behind a connect error. async-nats reports a failed handshake (a server
/// certificate the CA file does not vouch for, a client certificate the server refused with an
/// alert) as `ConnectErrorKind::Io` wrapping the rustls error in an `io::Error`, so
/// [`is_fatal`] alone would retry it forever.
pub fn tls_error(e: &async_nats::ConnectError) -> Option<&async_nats::rustls::Error> {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(tls) = s.downcast_ref::<async_nats::rustls::Error>() {
            return Some(tls);
        }
        // io::Error::source() skips the wrapped error itself: look at it with get_ref().
        if let Some(tls) = s
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<async_nats::rustls::Error>())
        {
            return Some(tls);
        }
        source = s.source();
    }
    None
}

impl Sidecar {
    /// Opens the segment, connects and prepares the stream. Retries while the server is
    /// unreachable (logging each failure); gives up at once on TLS and authentication failures.
    pub async fn start(config: Config, reader: Reader, stop: &AtomicBool) -> anyhow::Result<Sidecar> {
        let feed = reader.feed_name();
        let prefix = config.subject_prefix(&feed);
        let connected = Arc::new(AtomicBool::new(false));
        let urls = config.nats.urls.join(", ");
        let mut delay = Duration::from_millis(100);
        let client = loop {
            let options = connect_options(&config, connected.clone())?;
            match options.connect(config.nats.urls.as_slice()).await {
                Ok(client) => break client,
                Err(e) if tls_error(&e).is_some() => {
                    let tls = tls_error(&e).expect("checked");
                    bail!("cannot connect to NATS at {urls} (not retried): TLS handshake failed: {tls}");
                }
                // async-nats's message already carries its cause: print it once.
                Err(e) if is_fatal(e.kind()) => bail!("cannot connect to NATS at {urls} (not retried): {e}"),
                Err(e) => {
                    tracing::warn!("cannot connect to NATS at {urls}: {e}; retrying in {delay:?}");
                    if stop.load(Ordering::Relaxed) {
                        bail!("stopped before NATS could be reached");
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(config::ms(config.nats.reconnect_max_delay_ms));
                }
            }
        };
        connected.store(true, Ordering::Relaxed);
        let js = (config.nats.mode == Mode::Jetstream).then(|| {
            jetstream::ContextBuilder::new()
                .timeout(config::ms(config.nats.request_timeout_ms))
                // Acks of publishes dropped after a failure keep their permits in the client's
                // acker until they arrive or time out: room for a second window, and a short
                // timeout, so a resynchronised sidecar does not wait on the failed window's permits.
                .ack_timeout(config::ms(config.nats.request_timeout_ms))
                .max_ack_inflight(2 * config.jetstream.ack_window + 1)
                .backpressure_on_inflight(true)
                .build(client.clone())
        });
        let prober = Arc::new(Prober::new(client.clone()).await?);
        let stream_name = config.stream_name(&feed);
        let status = StatusFile::new(reader.path(), &config.name)
            .with_context(|| format!("status directory beside {}", reader.path().display()))?;
        let cursor_file = CursorFile::new(config.cursor_path());
        let now = Instant::now();
        let mut sidecar = Sidecar {
            gap_subject: Subject::from(format!("{prefix}._gap")),
            feed,
            prefix,
            client,
            prober,
            js,
            connected,
            stream_name,
            subjects: Vec::new(),
            epoch_text: (u64::MAX, String::new()),
            layout_text: format!("{}-{:016x}", qilin_shm::layout::LAYOUT_VERSION, qilin_shm::layout::FINGERPRINT),
            pending: VecDeque::new(),
            confirming: None,
            last_confirm: now,
            expected_last: 0,
            published_seq: 0,
            published_ns: 0,
            confirmed: 0,
            confirmed_ns: 0,
            counters: Counters::default(),
            unconfirmed_gaps: VecDeque::new(),
            last_error: None,
            cursor_file,
            saved: 0,
            saving: None,
            last_save: now,
            status,
            last_status: now,
            backoff: Duration::from_millis(50),
            tick: TickRecord::ZERO,
            reader,
            config,
        };
        if sidecar.js.is_some() {
            sidecar.ensure_stream().await?;
        }
        let saved = sidecar.cursor_file.load(&sidecar.feed)?;
        let write_cursor = sidecar.reader.write_cursor();
        match &saved {
            Some(c) if c.sequence > write_cursor => bail!(
                "cursor file {} is at sequence {} but the segment {} has only reached {}: the segment was \
                 recreated and its sequences restarted. Remove the cursor file (and purge stream {} if it \
                 holds the old sequences) or give the new segment another feed name",
                sidecar.cursor_file.path().display(),
                c.sequence,
                sidecar.reader.path().display(),
                write_cursor,
                sidecar.stream_name
            ),
            Some(c) => {
                sidecar.confirmed = c.sequence;
                sidecar.saved = c.sequence;
                sidecar.reader.seek(Start::Sequence(c.sequence + 1));
                tracing::info!(
                    "resuming after sequence {} (cursor file {})",
                    c.sequence,
                    sidecar.cursor_file.path().display()
                );
            }
            None => {
                sidecar.reader.seek(match sidecar.config.start {
                    StartAt::Oldest => Start::Oldest,
                    StartAt::Newest => Start::Newest,
                });
                sidecar.confirmed = sidecar.reader.next_sequence() - 1;
                tracing::info!("no cursor file yet; starting at sequence {}", sidecar.confirmed + 1);
            }
        }
        sidecar.published_seq = sidecar.confirmed;
        if sidecar.js.is_some() {
            sidecar.resync(stop).await;
            if sidecar.confirmed > write_cursor.max(sidecar.reader.write_cursor()) {
                bail!(
                    "stream {} ends at sequence {} but the segment {} has only reached {}: the segment was \
                     recreated. Purge the stream or give the new segment another feed name",
                    sidecar.stream_name,
                    sidecar.confirmed,
                    sidecar.reader.path().display(),
                    sidecar.reader.write_cursor()
                );
            }
        }
        sidecar.write_status();
        Ok(sidecar)
    }

    /// The feed name.
    pub fn feed(&self) -> &str {
        &self.feed
    }

    /// Last confirmed sequence.
    pub fn confirmed(&self) -> u64 {
        self.confirmed
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    async fn ensure_stream(&mut self) -> anyhow::Result<()> {
        let js = self.js.as_ref().expect("jetstream mode");
        let want = format!("{}.>", self.prefix);
        match js.get_stream(&self.stream_name).await {
            Ok(mut stream) => {
                let info = stream.info().await?;
                if !info.config.subjects.iter().any(|s| s == &want || s == ">") {
                    bail!(
                        "stream {} exists with subjects {:?}, which do not include {want}: point \
                         jetstream.stream at this feed's stream or change the stream's subjects",
                        self.stream_name,
                        info.config.subjects
                    );
                }
                let window = info.config.duplicate_window;
                if window.as_secs() != self.config.jetstream.duplicate_window_s {
                    tracing::warn!(
                        "stream {} has a duplicate window of {window:?}, the config says {} s; the stream's holds",
                        self.stream_name,
                        self.config.jetstream.duplicate_window_s
                    );
                }
                tracing::info!("stream {} verified: subjects {:?}", self.stream_name, info.config.subjects);
                Ok(())
            }
            Err(e)
                if matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(j)
                    if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
            {
                if !self.config.jetstream.create {
                    bail!("stream {} does not exist and jetstream.create = false", self.stream_name);
                }
                let j = &self.config.jetstream;
                let config = stream::Config {
                    name: self.stream_name.clone(),
                    subjects: vec![want],
                    storage: match j.storage {
                        config::Storage::File => stream::StorageType::File,
                        config::Storage::Memory => stream::StorageType::Memory,
                    },
                    num_replicas: j.replicas,
                    max_age: Duration::from_secs(j.max_age_s),
                    max_bytes: if j.max_bytes == 0 { -1 } else { j.max_bytes as i64 },
                    duplicate_window: Duration::from_secs(j.duplicate_window_s),
                    ..Default::default()
                };
                js.create_stream(config).await.with_context(|| format!("creating stream {}", self.stream_name))?;
                tracing::info!("stream {} created", self.stream_name);
                Ok(())
            }
            Err(e) => Err(anyhow!(e).context(format!("looking up stream {}", self.stream_name))),
        }
    }

    /// Reads the stream's last message and moves the position after it (JetStream), or back to
    /// the confirmed position (core). Retries with backoff until it succeeds or `stop` is set.
    async fn resync(&mut self, stop: &AtomicBool) {
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
    }

    async fn try_resync(&mut self) -> anyhow::Result<()> {
        let timeout = config::ms(self.config.nats.request_timeout_ms);
        // Whatever the client still buffers reaches the server before the stream is read.
        self.prober.round_trip(timeout).await.map_err(|e| anyhow!("confirming with the server: {e}"))?;
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

    fn failed(&mut self, error: String) {
        self.counters.errors += 1;
        if self.last_error.as_deref() != Some(error.as_str()) {
            tracing::warn!("{error}; retrying from sequence {}", self.confirmed + 1);
        }
        self.last_error = Some(error);
        self.maintain();
    }

    async fn sleep_backoff(&mut self) {
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(config::ms(self.config.nats.reconnect_max_delay_ms));
    }

    fn subject(&mut self, tick: &TickRecord) -> Subject {
        let index = tick.instrument_index as usize;
        if let Some(Some((exchange, id, subject))) = self.subjects.get(index)
            && *exchange == tick.exchange
            && *id == tick.instrument_id
        {
            return subject.clone();
        }
        let exchange = qilin_tools::exchange_name(tick.exchange);
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
        if let Some(js) = &self.js {
            let ack: PublishAckFuture = js.publish_with_headers(subject, headers, body).await?;
            self.pending.push_back(Pending { sequence, publish_ns, ack: ack.into_future() });
        } else {
            // The client's queue is bounded (`client_capacity`); while NATS is away a full queue
            // would wait for the reconnect, so bound the wait and let the failure path take over.
            // The first poll nearly always finishes (the queue has room): only a publish that has
            // to wait pays for the timer.
            let timeout = config::ms(self.config.nats.request_timeout_ms);
            let mut publish = std::pin::pin!(self.client.publish_with_headers(subject, headers, body));
            match futures::poll!(publish.as_mut()) {
                std::task::Poll::Ready(result) => result?,
                std::task::Poll::Pending => tokio::time::timeout(timeout, publish)
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

    async fn send_tick(&mut self) -> anyhow::Result<()> {
        let tick = self.tick;
        let subject = self.subject(&tick);
        let mut headers = self.headers(tick.sequence, format!("{}-{}", self.feed, tick.sequence));
        headers.insert(SOURCE_NAME, qilin_tools::source_name(tick.source));
        let body = match self.config.nats.payload {
            Payload::Raw => {
                headers.insert(LAYOUT_NAME, self.layout_text.clone());
                Bytes::copy_from_slice(zerocopy::IntoBytes::as_bytes(&tick))
            }
            Payload::Json => Bytes::from(serde_json::to_vec(&qilin_tools::tick_json(&tick))?),
        };
        self.send(subject, headers, body, tick.sequence, tick.publish_ns).await
    }

    async fn send_gap(&mut self, first: u64, last: u64) -> anyhow::Result<()> {
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

    /// Publishes `first..=last`, which the ring no longer holds: from the recorder's journal where
    /// it has them (waiting up to `backfill_wait_ms` for the recorder to write them), the rest as
    /// gap events.
    async fn recover(&mut self, first: u64, last: u64) -> anyhow::Result<()> {
        if self.config.journal_dir.as_os_str().is_empty() {
            return self.send_gap(first, last).await;
        }
        let deadline = Instant::now() + config::ms(self.config.backfill_wait_ms);
        let before = self.counters.backfilled;
        let mut next = first;
        loop {
            next = self.backfill(next, last).await?;
            if next > last || Instant::now() >= deadline {
                break;
            }
            self.maintain();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let backfilled = self.counters.backfilled - before;
        if backfilled > 0 {
            tracing::info!("published {backfilled} ticks of {first}..={last} from the journal");
        }
        if next <= last { self.send_gap(next, last).await } else { Ok(()) }
    }

    /// Publishes from the journal what it holds of `next..=last`, in order; returns the first
    /// sequence it could not cover.
    async fn backfill(&mut self, mut next: u64, last: u64) -> anyhow::Result<u64> {
        let dir = self.config.journal_dir.clone();
        let files = match qilin_journal::journal_files(&dir, &self.feed) {
            Ok(files) => files,
            Err(e) => {
                tracing::warn!("backfill: {e}");
                return Ok(next);
            }
        };
        // Open from the newest day back to the file that holds `next` (its header's base is
        // below it), not every day of the directory: this runs again every 20 ms while waiting.
        let mut readers = Vec::new();
        for file in files.iter().rev() {
            match qilin_journal::JournalReader::open(&file.path) {
                Ok(r) => {
                    let holds_next = r.header().base_sequence < next;
                    readers.push(r);
                    if holds_next {
                        break;
                    }
                }
                Err(e) => tracing::warn!("backfill: {e}"),
            }
        }
        readers.reverse();
        for reader in &mut readers {
            loop {
                match reader.next_entry() {
                    Ok(Some(qilin_journal::Entry::Tick(tick))) => {
                        if tick.sequence < next {
                            continue;
                        }
                        if tick.sequence != next || tick.sequence > last {
                            return Ok(next);
                        }
                        self.tick = tick;
                        self.send_tick().await?;
                        self.bound_window().await?;
                        self.counters.backfilled += 1;
                        next += 1;
                    }
                    Ok(Some(qilin_journal::Entry::Gap(gap))) => {
                        if gap.last < next {
                            continue;
                        }
                        if gap.first > next {
                            return Ok(next);
                        }
                        let end = gap.last.min(last);
                        self.send_gap(next, end).await?;
                        next = end + 1;
                    }
                    // The end, or the block the recorder is writing right now: try again later.
                    Ok(None) | Err(_) => break,
                }
                if next > last {
                    return Ok(next);
                }
            }
        }
        Ok(next)
    }

    /// Keeps the ack window bounded before the next publish: every pending ack holds a permit of
    /// the context, and a publish waiting for a permit nobody returns would wait forever.
    async fn bound_window(&mut self) -> anyhow::Result<()> {
        if self.pending.len() >= self.config.jetstream.ack_window { self.settle(false).await } else { Ok(()) }
    }

    /// Moves `confirmed` forward over settled acks or a finished round trip. With `wait`, waits for
    /// everything in flight (used when the ring has nothing new and before stopping).
    async fn settle(&mut self, wait: bool) -> anyhow::Result<()> {
        let window = self.config.jetstream.ack_window;
        loop {
            let must_wait = wait || self.pending.len() >= window;
            let Some(front) = self.pending.front_mut() else { break };
            let result = if must_wait {
                (&mut front.ack).await
            } else {
                match (&mut front.ack).now_or_never() {
                    Some(result) => result,
                    None => break,
                }
            };
            let done = self.pending.pop_front().expect("front exists");
            let ack = result.with_context(|| format!("ack of sequence {}", done.sequence))?;
            if ack.duplicate {
                self.counters.duplicates += 1;
            }
            self.counters.acked += 1;
            self.confirm(done.sequence, done.publish_ns);
        }
        if self.js.is_none() {
            if let Some((_, _, round_trip)) = &mut self.confirming {
                let result = if wait { Some(round_trip.await) } else { round_trip.now_or_never() };
                if let Some(result) = result {
                    let (sequence, publish_ns, _) = self.confirming.take().expect("round trip in flight");
                    result.map_err(|e| anyhow!("confirming with the server: {e}"))?;
                    self.counters.acked += sequence - self.confirmed;
                    self.confirm(sequence, publish_ns);
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

    fn count_confirmed_gaps(&mut self) {
        while let Some(&(first, last)) = self.unconfirmed_gaps.front() {
            if last > self.confirmed {
                break;
            }
            self.unconfirmed_gaps.pop_front();
            self.counters.gaps += 1;
            self.counters.gap_sequences += last - first + 1;
        }
    }

    /// Saves the cursor and rewrites the status file when they are due.
    fn maintain(&mut self) {
        if self.confirmed != self.saved && self.last_save.elapsed() >= config::ms(self.config.cursor_interval_ms) {
            self.save_cursor();
        }
        if self.last_status.elapsed() >= config::ms(self.config.status_interval_ms) {
            self.write_status();
        }
    }

    /// Saves the cursor on tokio's blocking pool: its two fsyncs (tens of ms on a busy disk) must
    /// not stall publishing. One save at a time; a save still running is left to finish and the
    /// next interval writes the newer position.
    fn save_cursor(&mut self) {
        if let Some(running) = &mut self.saving {
            match running.now_or_never() {
                None => return,
                Some(result) => {
                    self.saving = None;
                    self.saved_result(result);
                }
            }
        }
        let (file, cursor) = (self.cursor_file.clone(), self.cursor());
        self.saving = Some(tokio::task::spawn_blocking(move || file.save(&cursor).map(|()| cursor.sequence)));
        self.last_save = Instant::now();
    }

    /// Saves the cursor and waits for it (at a stop).
    async fn save_cursor_now(&mut self) {
        if let Some(running) = self.saving.take() {
            let result = running.await;
            self.saved_result(result);
        }
        let (file, cursor) = (self.cursor_file.clone(), self.cursor());
        let result = tokio::task::spawn_blocking(move || file.save(&cursor).map(|()| cursor.sequence)).await;
        self.saved_result(result);
    }

    fn cursor(&self) -> Cursor {
        Cursor { feed: self.feed.clone(), sequence: self.confirmed, epoch: self.reader.epoch(), saved_ns: now_ns() }
    }

    fn saved_result(&mut self, result: Result<Result<u64, crate::cursor::CursorError>, tokio::task::JoinError>) {
        match result {
            Ok(Ok(sequence)) => self.saved = self.saved.max(sequence),
            Ok(Err(e)) => {
                self.counters.errors += 1;
                tracing::error!("{e}");
            }
            Err(e) => {
                self.counters.errors += 1;
                tracing::error!("saving the cursor: {e}");
            }
        }
    }

    /// The status object (also written to the status file).
    pub fn status_json(&self) -> serde_json::Value {
        let write_cursor = self.reader.write_cursor();
        let lag = write_cursor.saturating_sub(self.confirmed);
        let lag_ns = if lag > 0 && self.confirmed_ns > 0 { (now_ns() - self.confirmed_ns).max(0) } else { 0 };
        json!({
            "sidecar": "qilin-nats",
            "name": self.config.name,
            "pid": std::process::id(),
            "feed": self.feed,
            "mode": match self.config.nats.mode { Mode::Core => "core", Mode::Jetstream => "jetstream" },
            "stream": if self.js.is_some() { Some(&self.stream_name) } else { None },
            "subject_prefix": self.prefix,
            "updated_ns": now_ns(),
            "connected": self.connected.load(Ordering::Relaxed),
            "position": self.confirmed,
            "read": self.reader.next_sequence() - 1,
            "write_cursor": write_cursor,
            "lag_sequences": lag,
            "lag_ns": lag_ns,
            "in_flight": self.published_seq.saturating_sub(self.confirmed),
            "counters": self.counters,
            "last_error": self.last_error,
        })
    }

    fn write_status(&mut self) {
        if let Err(e) = self.status.write(&self.status_json()) {
            tracing::error!("status file {}: {e}", self.status.path().display());
        }
        self.last_status = Instant::now();
    }

    /// Publishes until `stop` is set (or, with `until`, until every sequence up to it is
    /// confirmed). Failures are retried forever; the only errors returned are ones retrying
    /// cannot fix.
    pub async fn run(&mut self, stop: &AtomicBool, until: Option<u64>) -> anyhow::Result<Stopped> {
        const BATCH: usize = 256;
        let idle = Duration::from_millis(1);
        loop {
            if stop.load(Ordering::Relaxed) {
                self.finish().await;
                return Ok(Stopped::Requested);
            }
            if until.is_some_and(|u| self.confirmed >= u) {
                self.finish().await;
                return Ok(Stopped::Reached);
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
        self.write_status();
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

    #[test]
    fn the_example_nats_server_config_is_valid() {
        let conf = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/nats-server.conf");
        let out = std::process::Command::new("nats-server")
            .arg("-c")
            .arg(&conf)
            .arg("-t")
            .output()
            .expect("nats-server must be installed (.ci/run installs Debian's nats-server)");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}
