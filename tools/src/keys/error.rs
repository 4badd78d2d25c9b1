//! What can go wrong with the key store. Every message names the file, and the key and version when
//! there is one; none carries key material or the master key (they are never formatted at all).

use std::{io, path::PathBuf};

use super::crypto::ENV_MASTER_KEY;

/// A key-store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "{ENV_MASTER_KEY} is not set: the key store is encrypted under a key derived from it \
         (at least 32 printable ASCII characters, no spaces)"
    )]
    MasterKeyMissing,
    #[error("{ENV_MASTER_KEY} is unusable: {reason} (it must be at least 32 printable ASCII characters, no spaces)")]
    MasterKeyFormat { reason: String },
    #[error(
        "the key store {} cannot be decrypted with this {ENV_MASTER_KEY} (wrong master key, or the store was \
         tampered with)",
        path.display()
    )]
    WrongMasterKey { path: PathBuf },
    #[error(
        "the key store {}: key {name} version {version}: its ciphertext fails authentication (tampered with or \
         damaged); nothing was changed",
        path.display()
    )]
    Tampered { path: PathBuf, name: String, version: u32 },
    #[error(
        "the key store {}: its metadata (keys, versions, states, dates) does not match its seal: edited outside \
         qilinctl, or damaged; nothing was changed",
        path.display()
    )]
    SealMismatch { path: PathBuf },
    #[error("the key store {}: line {line}, column {column}: {reason}", path.display())]
    Corrupt { path: PathBuf, line: usize, column: usize, reason: String },
    #[error("the key store {}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
    #[error("no key store at {} (create one with `qilinctl keys add NAME --type api|encryption|signing`)", path.display())]
    NotFound { path: PathBuf },
    #[error("key store {}: {step}: {source}", path.display())]
    Io {
        path: PathBuf,
        step: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("no key named {name:?} in {}", path.display())]
    UnknownKey { path: PathBuf, name: String },
    #[error("a key named {name:?} already exists in {}", path.display())]
    Exists { path: PathBuf, name: String },
    #[error("key name {name:?}: {reason}")]
    BadName { name: String, reason: &'static str },
    #[error("key {name}: {reason}")]
    BadSetting { name: String, reason: String },
    #[error("key {name} has no version {version} holding material (retired versions are wiped)")]
    NoMaterial { name: String, version: u32 },
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),
    #[error("backup {}: {reason}", path.display())]
    Backup { path: PathBuf, reason: String },
    #[error("backup {}: it was made under a different {ENV_MASTER_KEY} (or is damaged); nothing was restored", path.display())]
    BackupOtherMasterKey { path: PathBuf },
    /// A store (or a backup) older than the newest generation of it seen: a rollback.
    #[error(
        "{what}, but {newer_seen}: an older copy, which would bring back key versions rotated, retired or revoked \
         since; {hint}"
    )]
    RolledBack {
        /// `the key store PATH is generation G` / `backup FILE holds generation G of the key store`.
        what: String,
        generation: u64,
        newer: u64,
        /// Where the newer generation was seen: `the audit log LOG recorded generation N of it (…)`.
        newer_seen: String,
        /// What was not done and how to go on.
        hint: String,
    },
    #[error(
        "cannot check the key store against the audit log {} (it records the store's newest generation, so an \
         older copy put in its place is noticed): {source}; nothing was done (name a readable log with \
         --audit-log or $QILIN_AUDIT_LOG)",
        log.display()
    )]
    Witness {
        log: PathBuf,
        #[source]
        source: io::Error,
    },
}
