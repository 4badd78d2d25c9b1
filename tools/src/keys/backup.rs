//! Backups of the key store: the store file byte for byte (still sealed under the master key)
//! with its SHA-256, so a damaged copy is told apart from one made under another master key; and
//! the restore that checks both before it replaces the store, keeping the old one beside it.
//!
//! A restore compares generations: a backup older than the newest generation of its store that
//! the audit log recorded (or than the store it replaces) would bring back versions rotated,
//! retired or revoked since, so it is refused unless forced, and a forced one is reported as a
//! rollback for the audit entry. The restored store is written above every generation seen, so it
//! opens afterwards; restoring from a bare store file (not a backup) is how an older store found
//! in place of the store is kept on purpose.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::{
    KeyError, MasterKey, Store,
    model::{FORMAT, StoreFile},
    store::{sibling, write_atomic},
    witness::Witness,
};
use crate::audit;

/// `format` of a backup file.
pub const BACKUP_FORMAT: &str = "qilin-keys-backup/1";

/// A backup: the store's exact bytes (still sealed under the master key) and their SHA-256, so a
/// damaged copy is told apart from one made under another master key.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackupFile {
    format: String,
    created_unix_s: i64,
    /// The store it was taken from.
    source: String,
    /// SHA-256 (hex) of `store`'s bytes.
    store_sha256: String,
    /// The store file, byte for byte.
    store: String,
}

/// What a backup or restore covered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupSummary {
    pub keys: usize,
    pub versions: usize,
    pub sha256: String,
    /// The store's id.
    pub store_id: String,
    /// The generation backed up; after a restore, the generation the restored store was written as.
    pub generation: u64,
    /// Restore only: where the replaced store was kept.
    pub previous: Option<PathBuf>,
    /// Restore only: the generation the backup holds.
    pub backup_generation: u64,
    /// Restore only: the newest generation of the store seen (audit log, replaced store), if any.
    pub newest_generation: Option<u64>,
    /// Restore only: the backup was older than that (restored with `force`).
    pub rolled_back: bool,
}

fn summary(store: &Store, sha256: String) -> BackupSummary {
    let versions = store.keys().iter().map(|k| k.versions.len()).sum();
    BackupSummary {
        keys: store.keys().len(),
        versions,
        sha256,
        store_id: store.store_id().unwrap_or_default().to_owned(),
        generation: store.generation(),
        previous: None,
        backup_generation: store.generation(),
        newest_generation: None,
        rolled_back: false,
    }
}

/// Writes a backup of the store at `store` to `out` (mode 0600; refuses to overwrite a file)
/// after checking that the store reads under `master` and is not older than `witness` says.
/// Hold [`super::store::lock`].
pub fn backup(
    store: &Path,
    out: &Path,
    master: &MasterKey,
    witness: &Witness,
    now: i64,
) -> Result<BackupSummary, KeyError> {
    let backup_err = |reason: String| KeyError::Backup { path: out.to_owned(), reason };
    let opened = Store::load(store, master, witness)?;
    // The same bytes as just verified: every writer holds the lock the caller holds.
    let bytes = fs::read(store).map_err(|source| KeyError::Io { path: store.to_owned(), step: "reading", source })?;
    if fs::symlink_metadata(out).is_ok() {
        return Err(backup_err("exists; a backup never overwrites a file (choose another name)".into()));
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| KeyError::Invalid { path: store.to_owned(), reason: "not UTF-8".into() })?;
    let sha256 = audit::sha256_hex(text.as_bytes());
    let file = BackupFile {
        format: BACKUP_FORMAT.into(),
        created_unix_s: now,
        source: store.display().to_string(),
        store_sha256: sha256.clone(),
        store: text,
    };
    let mut json = serde_json::to_vec_pretty(&file).map_err(|e| backup_err(format!("encoding: {e}")))?;
    json.push(b'\n');
    write_atomic(out, &json).map_err(|(step, e)| backup_err(format!("{step}: {e}")))?;
    Ok(summary(&opened, sha256))
}

/// Replaces the store at `store` with the backup `from` (or a bare store file), after checking the
/// backup's checksum and that it reads under `master` (a backup made under another master key is
/// refused). A backup older than the newest generation of its store seen (in `witness`, or the
/// store it replaces) is refused unless `force`. The replaced store is kept as
/// `<store>.before-restore`; the restored one is written as a generation above every one seen.
/// Hold [`super::store::lock`].
pub fn restore(
    store: &Path,
    from: &Path,
    master: &MasterKey,
    witness: &Witness,
    force: bool,
) -> Result<BackupSummary, KeyError> {
    let backup_err = |reason: String| KeyError::Backup { path: from.to_owned(), reason };
    let bytes = fs::read(from).map_err(|e| backup_err(format!("reading: {e}")))?;
    let format = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v["format"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let (kind, content) = if format == FORMAT {
        ("store file", bytes)
    } else {
        let file: BackupFile =
            serde_json::from_slice(&bytes).map_err(|e| backup_err(format!("not a backup file: {e}")))?;
        if file.format != BACKUP_FORMAT {
            return Err(backup_err(format!("format {:?} (this qilinctl reads {BACKUP_FORMAT:?})", file.format)));
        }
        if audit::sha256_hex(file.store.as_bytes()) != file.store_sha256 {
            return Err(backup_err("damaged: its checksum does not match its content; nothing was restored".into()));
        }
        ("backup", file.store.into_bytes())
    };
    let sha256 = audit::sha256_hex(&content);
    let mut opened = Store::from_bytes(from, &content, master).map_err(|e| match e {
        KeyError::WrongMasterKey { .. } => KeyError::BackupOtherMasterKey { path: from.to_owned() },
        other => other,
    })?;
    let mut result = summary(&opened, sha256);

    // The newest generation of this store seen: the audit log's, and the store it replaces (read
    // without verifying: it may be what is being repaired; a number can only make this stricter).
    let old = match fs::read(store) {
        Ok(old) => Some(old),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(source) => return Err(KeyError::Io { path: store.to_owned(), step: "reading", source }),
    };
    let replaced = old
        .as_deref()
        .and_then(|b| serde_json::from_slice::<StoreFile>(b).ok())
        .filter(|f| f.store_id.as_deref() == opened.store_id())
        .map(|f| f.generation);
    let logged = witness.newest(opened.store_id(), store);
    let newest = logged.map(|s| s.generation).max(replaced);
    let generation = opened.generation();
    if let Some(newer) = newest.filter(|&n| n > generation) {
        if !force {
            let newer_seen = match logged.filter(|s| s.generation == newer) {
                Some(seen) => witness.describe(seen),
                None => format!("the store it would replace, {}, is generation {newer}", store.display()),
            };
            return Err(KeyError::RolledBack {
                what: format!("{kind} {} holds generation {generation} of the key store", from.display()),
                generation,
                newer,
                newer_seen,
                hint: "nothing was restored (`--force` restores it anyway; the rollback is audited)".into(),
            });
        }
        result.rolled_back = true;
    }
    result.newest_generation = newest;

    if let Some(old) = old {
        let previous = sibling(store, ".before-restore");
        write_atomic(&previous, &old).map_err(|(step, source)| KeyError::Io {
            path: previous.clone(),
            step,
            source,
        })?;
        result.previous = Some(previous);
    }
    opened.replace_at(store, newest.unwrap_or(0));
    opened.save()?;
    result.store_id = opened.store_id().unwrap_or_default().to_owned();
    result.generation = opened.generation();
    Ok(result)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use secrecy::{ExposeSecret, SecretString};

    use super::*;
    use crate::keys::{KeyType, crypto::KdfParams, model::CreatedBy};

    const T0: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z
    const MASTER: &str = "test-master-key-0123456789abcdef-zq9";

    fn master(s: &str) -> MasterKey {
        MasterKey::new(SecretString::from(s.to_owned())).unwrap()
    }

    fn token(store: &Store, name: &str, version: Option<u32>) -> String {
        store.token(name, version).unwrap().1.expose_secret().to_owned()
    }

    fn reload(store: &Store) -> Result<Store, KeyError> {
        Store::load(store.path(), &master(MASTER), &Witness::none())
    }

    fn store_with(keys: &[(&str, KeyType)]) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/keys.json");
        let mut store = Store::create(&path, &master(MASTER), KdfParams::new(64).unwrap()).unwrap();
        for (name, t) in keys {
            store.add(name, *t, None, None, T0).unwrap();
        }
        store.save().unwrap();
        (dir, store)
    }

    #[test]
    fn backup_and_restore_round_trip_and_refuse_another_master_key() {
        let (dir, mut store) = store_with(&[("nats-token", KeyType::Api)]);
        let v1 = token(&store, "nats-token", None);
        let out = dir.path().join("backup.json");
        let summary = backup(store.path(), &out, &master(MASTER), &Witness::none(), T0).unwrap();
        assert_eq!((summary.keys, summary.versions), (1, 1));
        assert_eq!(fs::metadata(&out).unwrap().mode() & 0o7777, 0o600);
        assert!(!fs::read_to_string(&out).unwrap().contains(&v1));
        assert!(
            matches!(backup(store.path(), &out, &master(MASTER), &Witness::none(), T0), Err(KeyError::Backup { .. })),
            "no overwrite"
        );

        store.rotate("nats-token", T0 + 1, CreatedBy::Forced, true).unwrap();
        store.save().unwrap();
        let after_rotation = fs::read(store.path()).unwrap();
        // Older than the store it replaces (generation 1 < 2): only on purpose.
        let e = restore(store.path(), &out, &master(MASTER), &Witness::none(), false).unwrap_err();
        assert!(matches!(e, KeyError::RolledBack { generation: 1, newer: 2, .. }), "{e}");
        assert!(
            e.to_string().contains(&format!("the store it would replace, {}, is generation 2", store.path().display()))
        );
        assert_eq!(fs::read(store.path()).unwrap(), after_rotation, "nothing restored");
        let restored = restore(store.path(), &out, &master(MASTER), &Witness::none(), true).unwrap();
        assert_eq!((restored.rolled_back, restored.backup_generation, restored.generation), (true, 1, 3));
        assert_eq!(restored.previous, Some(sibling(store.path(), ".before-restore")));
        assert_eq!(fs::read(sibling(store.path(), ".before-restore")).unwrap(), after_rotation);
        let back = reload(&store).unwrap();
        assert_eq!(token(&back, "nats-token", None), v1);

        let e = restore(store.path(), &out, &master("another-master-key-0123456789abcdef"), &Witness::none(), true)
            .unwrap_err();
        assert!(matches!(e, KeyError::BackupOtherMasterKey { .. }), "{e}");
        assert!(e.to_string().contains("made under a different QILIN_MASTER_KEY"), "{e}");

        let mut damaged = fs::read_to_string(&out).unwrap();
        let at = damaged.find("\\\"version\\\": 1").unwrap();
        damaged.replace_range(at..at + 14, "\\\"version\\\": 2");
        fs::write(&out, damaged).unwrap();
        let e = restore(store.path(), &out, &master(MASTER), &Witness::none(), true).unwrap_err();
        assert!(e.to_string().contains("damaged: its checksum does not match"), "{e}");
    }
}
