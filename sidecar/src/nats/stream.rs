//! The JetStream stream: verified at start (its subjects must cover the feed's), or created from
//! the config when it does not exist (and again after a server restart lost a memory stream).

use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use async_nats::jetstream::{self, stream};

use super::{Sidecar, config};

impl Sidecar {
    /// Verifies the stream, or creates it (`jetstream.create`).
    pub(super) async fn ensure_stream(&mut self) -> anyhow::Result<()> {
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
}
