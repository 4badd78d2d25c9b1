//! Sidecar processes of qilin-feed. Each maps the segment read-only through [`qilin_shm::Reader`],
//! so a sidecar can crash, be killed or be restarted at any moment without the core noticing.
//!
//! - [`nats`]: `qilin-nats`, every tick to NATS (core NATS or JetStream), idempotent across
//!   restarts, with a durable cursor.
//! - [`bars`]: `qilin-bars`' bar builder: session-aware bars from ticks, the same live and in replay.
//! - [`cursor`]: the durable cursor file (last sequence confirmed downstream), replaced atomically.
//! - [`secrets`]: `qilin-secrets`' hand-off, rotation and shredding.
//! - [`mirror`]: `qilin-mirror`, the feed's JetStream stream back into a local segment on another
//!   host, with the feed's sequences and epoch.
//! - [`metrics`], [`recorder`]: `qilin-recorder`'s journal, metrics and health endpoints.
//! - [`process`]: what every sidecar binary does first (logging, core dumps, its config file).
//!
//! What they share with the core and the tools (status files, config loading, secret files, tick
//! JSON, the control protocol) is `qilin_market`'s.

pub mod bars;
pub mod cursor;
pub mod metrics;
pub mod mirror;
pub mod nats;
pub mod process;
pub mod recorder;
pub mod secrets;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use qilin_journal::Keyring;
use qilin_shm::{OpenError, Reader};

/// The journal-encryption keys a sidecar reads an encrypted journal with: `journal_key_files`, each
/// a `qilinctl keys render-key journal-encryption --in-force` file (docs/KEYS.md). `None` when
/// none is given: an encrypted file is then refused, its error naming the key version it needs.
/// The error names the config key and the file.
pub fn journal_keys(paths: &[PathBuf]) -> anyhow::Result<Option<Arc<Keyring>>> {
    if paths.is_empty() {
        return Ok(None);
    }
    let ring = Keyring::from_key_files(paths).map_err(|e| anyhow::anyhow!("journal_key_files: {e}"))?;
    Ok(Some(Arc::new(ring)))
}

/// Whether a journal error is about the keys (missing, wrong, retired, or a block that does not
/// authenticate): a configuration problem to report, not a torn tail to read past.
pub fn journal_key_error(e: &qilin_journal::JournalError) -> bool {
    use qilin_journal::JournalError as E;
    matches!(e, E::KeyUnavailable { .. } | E::WrongKey { .. } | E::Unauthenticated { .. })
}

/// Opens the segment read-only. `Ok(Err(reason))` while the core has not finished creating it
/// (missing, not initialised, still growing): a sidecar started before the core waits and retries.
/// Any other failure (not a segment, another layout) is an error to report.
pub fn open_segment(path: &Path) -> Result<Result<Reader, String>, OpenError> {
    match Reader::open(path) {
        Ok(reader) => Ok(Ok(reader)),
        Err(OpenError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(Err(format!("segment {} does not exist yet", path.display())))
        }
        Err(e @ (OpenError::NotInitialised { .. } | OpenError::Truncated { .. })) => Ok(Err(e.to_string())),
        Err(e) => Err(e),
    }
}
