//! Managed keys: secrets the feed generates itself (NATS tokens, API and rate-limit tokens, the
//! audit log's signing key, encryption keys), kept in one key store file, encrypted at rest under a
//! key derived from `QILIN_MASTER_KEY`, rotated on a schedule or on demand, each rotation audited
//! by `qilinctl keys` (docs/KEYS.md is the operator's description).
//!
//! - [`model`]: the file's content (keys, versions, states, dates) and the schedule, without crypto.
//! - [`crypto`]: the master key, Argon2id, XChaCha20-Poly1305, the OS random generator.
//! - [`store`]: a [`Store`] opened from a file: load and verify, add, rotate, verify a token, save
//!   atomically under a lock.
//! - [`backup`]: backup files and the restore that checks them.
//! - [`witness`]: the newest generation of each store, as the audit log recorded it, so an older
//!   copy put in place of a store is refused.
//! - [`render`]: a managed key as NATS credentials (`keys render-nats`) or a key file (`render-key`).
//! - [`plan`]: the render plan of `keys render-all`, run after every scheduled rotation.
//! - [`cli`]: `qilinctl keys list|add|rotate|render-nats|render-key|render-all|history|show|verify|backup|restore`.
//!
//! # Model
//!
//! A key has a [`KeyType`] with a default rotation period (api 90 days, encryption 180, signing 60;
//! overridable per key) and a grace period (default 7 days). Its versions are numbered from 1; at
//! most one is [`State::Active`]. A rotation makes a new active version and moves the previous one
//! to [`State::Grace`] until `now + grace`, during which [`Store::verify`] still accepts it; a
//! version whose grace has ended is [`State::Retired`], never verifies, and its ciphertext is wiped
//! from the store (its dates stay, for the history). Time is always passed in (`now`, Unix seconds),
//! so the schedule is tested without sleeping.

pub mod backup;
pub mod cli;
pub mod crypto;
mod error;
pub mod model;
pub mod plan;
pub mod render;
pub mod store;
pub mod witness;

pub use crypto::{ENV_MASTER_KEY, MasterKey};
pub use error::KeyError;
pub use model::{KeyEntry, KeyType, State, VersionEntry};
pub use store::{Rotation, Store, Verdict};
pub use witness::Witness;

/// The environment variable naming the key store.
pub const ENV_STORE: &str = "QILIN_KEY_STORE";

/// Seconds in a day: periods are whole days of 86 400 s (UTC, no leap seconds, no DST).
pub const DAY_S: i64 = 86_400;
