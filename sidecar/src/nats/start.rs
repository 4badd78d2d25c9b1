//! Starting the sidecar: connect, prepare the stream, and find where to resume (the cursor file,
//! then in JetStream mode the stream's last message).

use std::{
    collections::VecDeque,
    sync::{Arc, atomic::AtomicBool},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use async_nats::Subject;
use qilin_shm::{Reader, TickRecord};

use super::{Config, Counters, Prober, Sidecar, Starting, State, connection};
use qilin_market::status::StatusFile;

use crate::{cursor::CursorFile, recorder::SegmentFile};

impl Sidecar {
    /// Opens the segment, connects and prepares the stream. Retries while the server is
    /// unreachable (logging each failure); gives up at once on TLS and authentication failures.
    /// The status file is written from the first moment (see [`Starting`]).
    pub async fn start(config: Config, reader: Reader, stop: &AtomicBool) -> anyhow::Result<Sidecar> {
        let starting = Starting::begin(&config);
        let file = SegmentFile::after(&reader);
        Sidecar::start_reporting(config, reader, file, stop, &starting).await
    }

    /// [`start`](Self::start) with the status the caller began before the segment was open (the
    /// sidecar takes it over, its counters and last error, once it has found its position) and
    /// the identity of the file the reader mapped, taken before it was opened
    /// ([`SegmentFile::open`]), to notice a segment re-created under the same path.
    pub async fn start_reporting(
        config: Config,
        reader: Reader,
        segment_file: SegmentFile,
        stop: &AtomicBool,
        starting: &Starting,
    ) -> anyhow::Result<Sidecar> {
        starting.segment_opened(&reader);
        let feed = reader.feed_name();
        let prefix = config.subject_prefix(&feed);
        let (client, connected) = connection::connect(&config, stop, starting).await?;
        starting.connected(connected.clone());
        let js = connection::jetstream_context(&config, &client).map(Arc::new);
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
            _credentials_watch: connection::watch_credentials(&config, client.clone()),
            client: Arc::new(client),
            prober,
            js,
            connected,
            stream_name,
            subjects: Vec::new(),
            epoch_text: (u64::MAX, String::new()),
            layout_text: qilin_shm::layout::fingerprint_text(qilin_shm::layout::FINGERPRINT),
            json_capacity: 1024,
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
            state: State::Resuming,
            segment_file,
            last_segment_check: now,
            held: None,
            backoff: Duration::from_millis(50),
            tick: TickRecord::ZERO,
            reader,
            config,
        };
        if sidecar.js.is_some() {
            sidecar.ensure_stream().await?;
        }
        // From here on the sidecar writes its own status (a wait on the server keeps it fresh).
        let (counters, last_error) = starting.finish();
        sidecar.counters = counters;
        sidecar.last_error = last_error;
        let write_cursor = sidecar.resume_from_cursor()?;
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
        sidecar.state = State::Publishing;
        sidecar.write_status();
        Ok(sidecar)
    }
}
