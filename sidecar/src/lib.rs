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

use std::path::Path;

use qilin_shm::{OpenError, Reader};

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
