//! Sidecar processes of qilin-feed. Each maps the segment read-only through [`qilin_shm::Reader`],
//! so a sidecar can crash, be killed or be restarted at any moment without the core noticing.
//!
//! - [`nats`]: `qilin-nats`, every tick to NATS (core NATS or JetStream), idempotent across
//!   restarts, with a durable cursor.
//! - [`status`]: the small JSON status file every sidecar keeps beside the segment
//!   (`<segment>.sidecars/<name>.json`), read by `qilinctl status` and the metrics exporter.
//! - [`cursor`]: the durable cursor file (last sequence confirmed downstream), replaced atomically.
//! - [`secret`]: secrets from the environment or from secret files, held in `secrecy` types.

pub mod cursor;
pub mod metrics;
pub mod nats;
pub mod recorder;
pub mod secret;
pub mod status;
