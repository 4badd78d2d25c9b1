//! A key store opened from its file: read and verified under the master key, changed in memory,
//! written back atomically. The caller holds [`lock`] around a read-modify-write, so two rotations
//! (two `qilinctl` processes, a timer and an operator) cannot interleave.
//!
//! Reading verifies everything before anything is used, in an order that names the fault:
//! JSON (file, line, column) → format and consistency → the check value (wrong master key) →
//! every version's ciphertext (tampered: key and version named) → the seal over the metadata →
//! the generation against the newest one the audit log recorded ([`Witness`]: an older copy put
//! in place of the store is refused).
//! Writing: temporary file (mode 0600) in the same directory, fsync, rename over the store, fsync
//! of the directory; the directory is created 0700.

use std::{
    collections::BTreeMap,
    fs::{self, DirBuilder, File, OpenOptions},
    io::{self, Write},
    os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use secrecy::{ExposeSecret, SecretBox, SecretString};
use subtle::ConstantTimeEq;

use super::{
    ENV_STORE, KeyError,
    crypto::{self, KdfParams, Kek, MATERIAL_LEN, MasterKey, Sealed},
    model::{
        self, CreatedBy, DEFAULT_GRACE_DAYS, FORMAT, KeyEntry, KeyType, Retirement, State, StoreFile, VersionEntry,
    },
    witness::Witness,
};
use crate::audit;

/// Mode of the store, its lock file, backups and the pre-restore copy (every file [`write_atomic`] writes).
pub const FILE_MODE: u32 = 0o600;

const CHECK_AAD: &[u8] = b"qilin-keys/1 check";
const CHECK_TEXT: &[u8] = b"qilin-keys master key check";
const SEAL_AAD: &[u8] = b"qilin-keys/1 seal\0";

/// Associated data of a version's material: the ciphertext opens only as this key's this version.
fn material_aad(name: &str, version: u32) -> Vec<u8> {
    format!("qilin-keys/1 material\0{name}\0{version}").into_bytes()
}

type Material = SecretBox<[u8; MATERIAL_LEN]>;

/// An opened store: the file's content, the key-encryption key and the plaintext of every version
/// that still has material (all of them opened and authenticated when the store was read).
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    file: StoreFile,
    kek: Kek,
    material: BTreeMap<(String, u32), Material>,
    mode: Option<u32>,
}

/// What a rotation did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rotation {
    pub name: String,
    /// The version that was active, if there was one.
    pub old_version: Option<u32>,
    /// Its state now: grace (until `old_grace_until`) or retired (revoked, or no grace period).
    pub old_state: Option<State>,
    pub old_grace_until: Option<i64>,
    pub new_version: u32,
    pub created_by: CreatedBy,
    /// Versions of this key whose grace had ended, retired by this rotation.
    pub retired: Vec<Retirement>,
}

/// The answer of [`Store::verify`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The active version.
    Active { version: u32 },
    /// A replaced version still in its grace period.
    Grace { version: u32, until_unix_s: i64 },
    /// No version that verifies (unknown, retired, or past its grace).
    Rejected,
}

impl Store {
    /// A new, empty store for `path` (not written until [`Store::save`]).
    pub fn create(path: &Path, master: &MasterKey, kdf: KdfParams) -> Result<Store, KeyError> {
        if let Some(reason) = kdf.problem() {
            return Err(KeyError::Invalid { path: path.to_owned(), reason });
        }
        let kek = master.derive(&kdf)?;
        let check = kek.seal(CHECK_AAD, CHECK_TEXT)?;
        let file = StoreFile {
            format: FORMAT.into(),
            store_id: Some(crypto::hex(&crypto::random_bytes::<16>()?)),
            generation: 0,
            kdf,
            check,
            keys: Vec::new(),
            seal: None,
        };
        Ok(Store { path: path.to_owned(), file, kek, material: BTreeMap::new(), mode: None })
    }

    /// Reads and verifies the store at `path`, and refuses it when it is older than the newest
    /// generation of it that `witness` recorded (a copy of an older store put in its place).
    pub fn load(path: &Path, master: &MasterKey, witness: &Witness) -> Result<Store, KeyError> {
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(KeyError::NotFound { path: path.to_owned() }),
            Err(source) => return Err(KeyError::Io { path: path.to_owned(), step: "reading", source }),
        };
        let mut store = Store::from_bytes(path, &bytes, master)?;
        store.mode = fs::metadata(path).ok().map(|m| m.mode() & 0o7777);
        let generation = store.generation();
        if let Some(seen) = witness.newest(store.store_id(), path).filter(|seen| seen.generation > generation) {
            return Err(KeyError::RolledBack {
                what: format!("the key store {} is generation {generation}", path.display()),
                generation,
                newer: seen.generation,
                newer_seen: witness.describe(seen),
                hint: format!(
                    "nothing was done. Put the newer store back (from a backup), or keep this older one on purpose \
                     with `qilinctl keys restore --force --from {}` (audited)",
                    path.display()
                ),
            });
        }
        Ok(store)
    }

    /// Reads and verifies a store from `bytes`; `path` names it in errors.
    pub fn from_bytes(path: &Path, bytes: &[u8], master: &MasterKey) -> Result<Store, KeyError> {
        let invalid = |reason: String| KeyError::Invalid { path: path.to_owned(), reason };
        let file: StoreFile = serde_json::from_slice(bytes).map_err(|e| corrupt(path, &e))?;
        if file.format != FORMAT {
            return Err(invalid(format!("format {:?} (this qilinctl reads {FORMAT:?})", file.format)));
        }
        if let Some(reason) = file.kdf.problem() {
            return Err(invalid(reason));
        }
        for (i, key) in file.keys.iter().enumerate() {
            if let Some(reason) = key.problem() {
                return Err(invalid(reason));
            }
            if file.keys[..i].iter().any(|k| k.name == key.name) {
                return Err(invalid(format!("key {} appears twice", key.name)));
            }
        }
        let kek = master.derive(&file.kdf)?;
        let wrong_master = || KeyError::WrongMasterKey { path: path.to_owned() };
        match kek.open(CHECK_AAD, &file.check) {
            Ok(text) if &text[..] == CHECK_TEXT => {}
            _ => return Err(wrong_master()),
        }
        let mut material = BTreeMap::new();
        for key in &file.keys {
            for v in &key.versions {
                let Some(sealed) = &v.material else { continue };
                let tampered =
                    || KeyError::Tampered { path: path.to_owned(), name: key.name.clone(), version: v.version };
                let plain = kek.open(&material_aad(&key.name, v.version), sealed).map_err(|_| tampered())?;
                let bytes: [u8; MATERIAL_LEN] = plain.as_slice().try_into().map_err(|_| tampered())?;
                material.insert((key.name.clone(), v.version), SecretBox::new(Box::new(bytes)));
            }
        }
        let store = Store { path: path.to_owned(), file, kek, material, mode: None };
        store.check_seal()?;
        Ok(store)
    }

    fn seal_aad(&self) -> Vec<u8> {
        let unsealed = StoreFile { seal: None, ..self.file.clone() };
        let mut aad = SEAL_AAD.to_vec();
        aad.extend(serde_json::to_vec(&unsealed).unwrap_or_default());
        aad
    }

    fn check_seal(&self) -> Result<(), KeyError> {
        let mismatch = || KeyError::SealMismatch { path: self.path.clone() };
        let seal = self.file.seal.as_ref().ok_or_else(mismatch)?;
        match self.kek.open(&self.seal_aad(), seal) {
            Ok(plain) if plain.is_empty() => Ok(()),
            _ => Err(mismatch()),
        }
    }

    /// The file's bytes as [`Store::save`] writes them (sealing the current content).
    pub fn to_bytes(&mut self) -> Result<Vec<u8>, KeyError> {
        self.file.seal = None;
        let seal = self.kek.seal(&self.seal_aad(), b"")?;
        self.file.seal = Some(seal);
        let mut bytes = serde_json::to_vec_pretty(&self.file).map_err(|e| KeyError::Io {
            path: self.path.clone(),
            step: "encoding",
            source: e.into(),
        })?;
        bytes.push(b'\n');
        Ok(bytes)
    }

    /// Seals and writes the store to its path atomically, mode 0600 (hold [`lock`]), as the next
    /// generation (a store written before ids existed gets one now).
    pub fn save(&mut self) -> Result<(), KeyError> {
        if self.file.store_id.is_none() {
            self.file.store_id = Some(crypto::hex(&crypto::random_bytes::<16>()?));
        }
        self.file.generation += 1;
        let bytes = self.to_bytes()?;
        write_atomic(&self.path, &bytes).map_err(|(step, source)| KeyError::Io {
            path: self.path.clone(),
            step,
            source,
        })?;
        self.mode = Some(FILE_MODE);
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn kdf(&self) -> &KdfParams {
        &self.file.kdf
    }

    /// The store's random id (`None` only for a store written before ids existed, until saved).
    pub fn store_id(&self) -> Option<&str> {
        self.file.store_id.as_deref()
    }

    /// How many times the store was written (0 before its first save).
    pub fn generation(&self) -> u64 {
        self.file.generation
    }

    /// The whole content, to tell whether an operation changed anything.
    pub fn content(&self) -> &StoreFile {
        &self.file
    }

    /// Makes this store (read from a backup) the store at `path`, to be saved above `generation`.
    pub(super) fn replace_at(&mut self, path: &Path, generation: u64) {
        self.path = path.to_owned();
        self.file.generation = self.file.generation.max(generation);
    }

    /// Every key, in the order added.
    pub fn keys(&self) -> &[KeyEntry] {
        &self.file.keys
    }

    /// The key named `name`.
    pub fn key(&self, name: &str) -> Result<&KeyEntry, KeyError> {
        self.file
            .keys
            .iter()
            .find(|k| k.name == name)
            .ok_or_else(|| KeyError::UnknownKey { path: self.path.clone(), name: name.to_owned() })
    }

    fn key_mut(&mut self, name: &str) -> Result<&mut KeyEntry, KeyError> {
        let path = &self.path;
        self.file
            .keys
            .iter_mut()
            .find(|k| k.name == name)
            .ok_or_else(|| KeyError::UnknownKey { path: path.clone(), name: name.to_owned() })
    }

    /// Warnings about the file: permissions wider than 0600, KDF parameters below the defaults.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if let Some(mode) = self.mode.filter(|m| m & 0o077 != 0) {
            notes.push(format!("{} has mode {mode:04o}; it should be 0600 (chmod 600 it)", self.path.display()));
        }
        let kdf = &self.file.kdf;
        if kdf.is_weak() {
            notes.push(format!(
                "{} was created with weak Argon2id parameters (m_cost {} KiB, t_cost {}; defaults {} KiB, {}): \
                 a test store?",
                self.path.display(),
                kdf.m_cost_kib,
                kdf.t_cost,
                KdfParams::DEFAULT_M_COST_KIB,
                KdfParams::DEFAULT_T_COST
            ));
        }
        notes
    }

    /// Adds a key with fresh material as version 1, active from `now`.
    pub fn add(
        &mut self,
        name: &str,
        key_type: KeyType,
        period_days: Option<u32>,
        grace_days: Option<u32>,
        now: i64,
    ) -> Result<u32, KeyError> {
        model::check_name(name).map_err(|reason| KeyError::BadName { name: name.to_owned(), reason })?;
        if self.file.keys.iter().any(|k| k.name == name) {
            return Err(KeyError::Exists { path: self.path.clone(), name: name.to_owned() });
        }
        if period_days == Some(0) {
            return Err(KeyError::BadSetting {
                name: name.to_owned(),
                reason: "the rotation period must be at least 1 day".into(),
            });
        }
        let version = self.new_version(name, 1, CreatedBy::Add, now)?;
        self.file.keys.push(KeyEntry {
            name: name.to_owned(),
            key_type,
            rotation_period_days: period_days.unwrap_or(key_type.default_period_days()),
            grace_period_days: grace_days.unwrap_or(DEFAULT_GRACE_DAYS),
            created_unix_s: now,
            versions: vec![version],
        });
        Ok(1)
    }

    /// Fresh material for `name` version `version`, sealed, kept in memory; the entry to store.
    fn new_version(&mut self, name: &str, version: u32, by: CreatedBy, now: i64) -> Result<VersionEntry, KeyError> {
        let material = crypto::new_material()?;
        let sealed: Sealed = self.kek.seal(&material_aad(name, version), material.expose_secret())?;
        self.material.insert((name.to_owned(), version), material);
        Ok(VersionEntry {
            version,
            state: State::Active,
            created_by: by,
            activated_unix_s: now,
            grace_from_unix_s: None,
            grace_until_unix_s: None,
            retired_unix_s: None,
            retired_because: None,
            material: Some(sealed),
        })
    }

    /// Rotates `name` at `now`: a new active version; the previous one in grace for the key's grace
    /// period (or retired at once when `revoke_previous`); versions whose grace ended retired.
    pub fn rotate(&mut self, name: &str, now: i64, by: CreatedBy, revoke_previous: bool) -> Result<Rotation, KeyError> {
        let key = self.key_mut(name)?;
        let retired = key.retire_expired(now);
        let old_version = key.demote_active(now, revoke_previous);
        let next = key.next_version();
        let old = old_version.and_then(|n| key.version(n)).map(|v| (v.state, v.grace_until_unix_s));
        let entry = self.new_version(name, next, by, now)?;
        self.key_mut(name)?.versions.push(entry);
        self.drop_retired_material();
        Ok(Rotation {
            name: name.to_owned(),
            old_version,
            old_state: old.map(|o| o.0),
            old_grace_until: old.and_then(|o| o.1),
            new_version: next,
            created_by: by,
            retired,
        })
    }

    /// Retires, in every key, the versions whose grace ended by `now`.
    pub fn retire_expired(&mut self, now: i64) -> Vec<Retirement> {
        let retired = self.file.keys.iter_mut().flat_map(|k| k.retire_expired(now)).collect();
        self.drop_retired_material();
        retired
    }

    /// The scheduled run: retires what expired, then rotates every key that is due at `now`.
    pub fn rotate_due(&mut self, now: i64) -> Result<(Vec<Rotation>, Vec<Retirement>), KeyError> {
        let retired = self.retire_expired(now);
        let due: Vec<String> = self.file.keys.iter().filter(|k| k.is_due(now)).map(|k| k.name.clone()).collect();
        let rotations =
            due.iter().map(|name| self.rotate(name, now, CreatedBy::Scheduled, false)).collect::<Result<_, _>>()?;
        Ok((rotations, retired))
    }

    fn drop_retired_material(&mut self) {
        let live: Vec<(String, u32)> = self
            .file
            .keys
            .iter()
            .flat_map(|k| k.versions.iter().filter(|v| v.material.is_some()).map(|v| (k.name.clone(), v.version)))
            .collect();
        self.material.retain(|id, _| live.contains(id));
    }

    /// Whether `candidate` (a token as handed out: the material's lowercase hex) is `name`'s active
    /// version or a version still in its grace period at `now`. Every version is compared, each in
    /// constant time; the state is taken at `now`, so a grace that ended is refused even if no
    /// command has written the retirement down yet.
    pub fn verify(&self, name: &str, candidate: &[u8], now: i64) -> Result<Verdict, KeyError> {
        let key = self.key(name)?;
        let mut verdict = Verdict::Rejected;
        for v in &key.versions {
            let Some(material) = self.material.get(&(name.to_owned(), v.version)) else { continue };
            let text = crypto::hex_secret(material.expose_secret());
            let matches = bool::from(text.as_bytes().ct_eq(candidate));
            verdict = match (matches, v.state_at(now)) {
                (true, State::Active) => Verdict::Active { version: v.version },
                (true, State::Grace) => {
                    Verdict::Grace { version: v.version, until_unix_s: v.grace_until_unix_s.unwrap_or(now) }
                }
                _ => verdict,
            };
        }
        Ok(verdict)
    }

    /// The material of `name`'s `version` (default: the active one) and that version's number.
    pub fn material(&self, name: &str, version: Option<u32>) -> Result<(u32, &Material), KeyError> {
        let key = self.key(name)?;
        let version = match version {
            Some(version) => version,
            None => {
                key.active().map(|v| v.version).ok_or(KeyError::NoMaterial { name: name.to_owned(), version: 0 })?
            }
        };
        let material = self
            .material
            .get(&(name.to_owned(), version))
            .ok_or(KeyError::NoMaterial { name: name.to_owned(), version })?;
        Ok((version, material))
    }

    /// The token form of [`Store::material`]: lowercase hex, 64 characters.
    pub fn token(&self, name: &str, version: Option<u32>) -> Result<(u32, SecretString), KeyError> {
        let (version, material) = self.material(name, version)?;
        Ok((version, SecretString::from(crypto::hex_secret(material.expose_secret()).as_str())))
    }
}

fn corrupt(path: &Path, e: &serde_json::Error) -> KeyError {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let reason = text.strip_suffix(&suffix).unwrap_or(&text).to_owned();
    KeyError::Corrupt { path: path.to_owned(), line: e.line(), column: e.column(), reason }
}

/// `explicit`, else `$QILIN_KEY_STORE`, else [`default_path`].
pub fn resolve_path(explicit: Option<&Path>) -> PathBuf {
    match explicit {
        Some(path) => path.to_owned(),
        None => match std::env::var_os(ENV_STORE).filter(|v| !v.is_empty()) {
            Some(path) => PathBuf::from(path),
            None => default_path(),
        },
    }
}

/// `keys.json` in the directory of the audit log's default path: `$XDG_STATE_HOME/qilin/`, else
/// `~/.local/state/qilin/`, else `state/`.
pub fn default_path() -> PathBuf {
    audit::default_path().with_file_name("keys.json")
}

/// An exclusive `flock` on `<store>.lock`, released when dropped. The lock is on a file beside the
/// store, not the store itself, because the store is replaced by rename on every write.
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

/// Takes the store's lock, waiting for another holder (creating the directory 0700 and the lock
/// file 0600 if needed).
pub fn lock(store: &Path) -> Result<StoreLock, KeyError> {
    let path = sibling(store, ".lock");
    let err = |step| {
        let path = path.clone();
        move |source| KeyError::Io { path, step, source }
    };
    create_dir(store).map_err(err("creating the directory"))?;
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(FILE_MODE)
        .open(&path)
        .map_err(err("opening the lock file"))?;
    file.lock().map_err(err("locking"))?;
    Ok(StoreLock { _file: file })
}

/// `<path><suffix>`: `keys.json` → `keys.json.lock`.
pub fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

fn create_dir(path: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(parent(path))
}

/// Writes `bytes` to `path` atomically with mode 0600, creating its directory (0700) if needed:
/// temporary file in the same directory, fsync, rename, fsync of the directory. On error, the step
/// and the cause.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), (&'static str, io::Error)> {
    create_dir(path).map_err(|e| ("creating the directory", e))?;
    replace_file(path, bytes, FILE_MODE, None)
}

/// [`write_atomic`] for a secret another uid reads (`keys render-nats --client-owner`): the
/// temporary file is given to `owner` (uid, gid) before it is renamed into place, so the file
/// under `path` is never the caller's. Changing the owner needs root.
pub fn write_atomic_for(path: &Path, bytes: &[u8], owner: Option<(u32, u32)>) -> Result<(), (&'static str, io::Error)> {
    create_dir(path).map_err(|e| ("creating the directory", e))?;
    replace_file(path, bytes, FILE_MODE, owner)
}

/// Writes a file that holds no secret (the key schedule) atomically with mode 0644, into a
/// directory that must exist (it is the reader's to set up and share, not ours to create 0700).
pub fn write_public(path: &Path, bytes: &[u8]) -> Result<(), (&'static str, io::Error)> {
    replace_file(path, bytes, 0o644, None)
}

fn replace_file(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> Result<(), (&'static str, io::Error)> {
    let tmp = sibling(
        &parent(path).join(format!(".{}", path.file_name().unwrap_or_default().to_string_lossy())),
        &format!(".tmp-{}", std::process::id()),
    );
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(|e| ("creating the temporary file", e))?;
        f.set_permissions(fs::Permissions::from_mode(mode)).map_err(|e| ("setting the mode", e))?;
        f.write_all(bytes).and_then(|()| f.sync_all()).map_err(|e| ("writing the temporary file", e))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&f, Some(uid), Some(gid)).map_err(|e| ("changing the owner", e))?;
        }
        fs::rename(&tmp, path).map_err(|e| ("renaming the temporary file over it", e))
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written?;
    File::open(parent(path)).and_then(|d| d.sync_all()).map_err(|e| ("syncing the directory", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::DAY_S;

    const T0: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z
    const MASTER: &str = "test-master-key-0123456789abcdef-zq9";

    fn master(s: &str) -> MasterKey {
        MasterKey::new(SecretString::from(s.to_owned())).unwrap()
    }

    /// A store with cheap KDF parameters (64 KiB) and the given keys, saved in a fresh directory.
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

    fn token(store: &Store, name: &str, version: Option<u32>) -> String {
        store.token(name, version).unwrap().1.expose_secret().to_owned()
    }

    fn reload(store: &Store) -> Result<Store, KeyError> {
        Store::load(store.path(), &master(MASTER), &Witness::none())
    }

    #[test]
    fn a_saved_store_reads_back_with_the_same_keys_and_no_plaintext_in_the_file() {
        let (_dir, store) = store_with(&[("nats-token", KeyType::Api), ("audit-signing", KeyType::Signing)]);
        let again = reload(&store).unwrap();
        assert_eq!(again.keys(), store.keys());
        let t = token(&store, "nats-token", None);
        assert_eq!(t.len(), 64);
        assert_eq!(token(&again, "nats-token", None), t);
        assert_ne!(token(&again, "audit-signing", None), t);
        let text = fs::read_to_string(store.path()).unwrap();
        assert!(!text.contains(&t) && !text.contains(MASTER), "plaintext in the file");
        assert!(!format!("{again:?}").contains(&t[..16]), "plaintext in Debug");
        assert_eq!(fs::metadata(store.path()).unwrap().mode() & 0o7777, 0o600);
        assert_eq!(fs::metadata(store.path().parent().unwrap()).unwrap().mode() & 0o777, 0o700);
        assert!(again.notes().iter().any(|n| n.contains("weak Argon2id")), "{:?}", again.notes());
    }

    #[test]
    fn the_schedule_rotates_each_type_at_its_period() {
        let (_dir, mut store) =
            store_with(&[("api", KeyType::Api), ("enc", KeyType::Encryption), ("sig", KeyType::Signing)]);
        let rotated_at = |store: &mut Store, day: i64| {
            let (rotations, _) = store.rotate_due(T0 + day * DAY_S).unwrap();
            rotations.iter().map(|r| (r.name.clone(), r.new_version)).collect::<Vec<_>>()
        };
        let named = |v: &[(&str, u32)]| v.iter().map(|(n, v)| (n.to_string(), *v)).collect::<Vec<_>>();
        assert_eq!(rotated_at(&mut store, 0), []);
        assert_eq!(rotated_at(&mut store, 59), []);
        assert_eq!(rotated_at(&mut store, 60), named(&[("sig", 2)]));
        assert_eq!(rotated_at(&mut store, 61), []);
        assert_eq!(rotated_at(&mut store, 90), named(&[("api", 2)]));
        assert_eq!(rotated_at(&mut store, 119), []);
        assert_eq!(rotated_at(&mut store, 120), named(&[("sig", 3)]));
        assert_eq!(rotated_at(&mut store, 180), named(&[("api", 3), ("enc", 2), ("sig", 4)]));
        let sig = store.key("sig").unwrap();
        assert_eq!(sig.versions.iter().map(|v| v.created_by).collect::<Vec<_>>()[1..], [CreatedBy::Scheduled; 3]);
        // A per-key period overrides the type's.
        store.add("short", KeyType::Api, Some(1), None, T0 + 180 * DAY_S).unwrap();
        assert_eq!(rotated_at(&mut store, 181), named(&[("short", 2)]));
        assert_eq!(
            store.add("zero", KeyType::Api, Some(0), None, T0).unwrap_err().to_string(),
            "key zero: the rotation period must be at least 1 day"
        );
    }

    #[test]
    fn the_previous_key_verifies_during_grace_only() {
        let (_dir, mut store) = store_with(&[("nats-token", KeyType::Api)]);
        let v1 = token(&store, "nats-token", None);
        let at = T0 + 10 * DAY_S;
        let r = store.rotate("nats-token", at, CreatedBy::Forced, false).unwrap();
        assert_eq!((r.old_version, r.new_version, r.old_state), (Some(1), 2, Some(State::Grace)));
        assert_eq!(r.old_grace_until, Some(at + 7 * DAY_S));
        store.save().unwrap();
        let store = reload(&store).unwrap();
        let v2 = token(&store, "nats-token", None);
        let verify = |t: &str, now| store.verify("nats-token", t.as_bytes(), now).unwrap();
        assert_eq!(verify(&v2, at), Verdict::Active { version: 2 });
        assert_eq!(verify(&v1, at), Verdict::Grace { version: 1, until_unix_s: at + 7 * DAY_S });
        assert_eq!(verify(&v1, at + 7 * DAY_S - 1), Verdict::Grace { version: 1, until_unix_s: at + 7 * DAY_S });
        assert_eq!(verify(&v1, at + 7 * DAY_S), Verdict::Rejected, "grace over, even before a retirement is written");
        assert_eq!(verify(&v2, at + 400 * DAY_S), Verdict::Active { version: 2 }, "active verifies even when overdue");
        assert_eq!(verify(&v1.to_uppercase(), at), Verdict::Rejected, "the token exactly as handed out");
        assert_eq!(verify(&v1[..63], at), Verdict::Rejected);
        assert_eq!(verify("", at), Verdict::Rejected);
        assert!(matches!(store.verify("other", v2.as_bytes(), at), Err(KeyError::UnknownKey { .. })));

        // Retired: the material is wiped and never verifies again.
        let mut store = store;
        let retired = store.retire_expired(at + 7 * DAY_S);
        assert_eq!(retired.iter().map(|r| r.version).collect::<Vec<_>>(), [1]);
        assert!(matches!(store.token("nats-token", Some(1)), Err(KeyError::NoMaterial { version: 1, .. })));
        store.save().unwrap();
        let text = fs::read_to_string(store.path()).unwrap();
        let file: StoreFile = serde_json::from_str(&text).unwrap();
        assert_eq!(file.keys[0].versions[0].material, None);
        assert_eq!(file.keys[0].versions[0].retired_unix_s, Some(at + 7 * DAY_S));
        assert_eq!(reload(&store).unwrap().verify("nats-token", v1.as_bytes(), at).unwrap(), Verdict::Rejected);
    }

    #[test]
    fn revoking_the_previous_key_skips_its_grace() {
        let (_dir, mut store) = store_with(&[("rate-limit-token", KeyType::Api)]);
        let v1 = token(&store, "rate-limit-token", None);
        let r = store.rotate("rate-limit-token", T0 + 1, CreatedBy::Forced, true).unwrap();
        assert_eq!(r.old_state, Some(State::Retired));
        assert_eq!(store.verify("rate-limit-token", v1.as_bytes(), T0 + 1).unwrap(), Verdict::Rejected);
        assert_eq!(store.key("rate-limit-token").unwrap().versions[0].retired_because.as_deref(), Some("revoked"));
    }

    /// Edits the saved store's JSON with `edit` and writes it back.
    fn edit_file(store: &Store, edit: impl FnOnce(&mut serde_json::Value)) {
        let mut value: serde_json::Value = serde_json::from_slice(&fs::read(store.path()).unwrap()).unwrap();
        edit(&mut value);
        fs::write(store.path(), serde_json::to_vec_pretty(&value).unwrap()).unwrap();
    }

    #[test]
    fn a_flipped_ciphertext_byte_is_detected_and_named() {
        let (_dir, store) = store_with(&[("nats-token", KeyType::Api), ("journal-encryption", KeyType::Encryption)]);
        edit_file(&store, |v| {
            let ct = v["keys"][1]["versions"][0]["material"]["ciphertext"].as_str().unwrap().to_owned();
            let flipped = format!("{}{}", if ct.starts_with('0') { '1' } else { '0' }, &ct[1..]);
            v["keys"][1]["versions"][0]["material"]["ciphertext"] = flipped.into();
        });
        let e = reload(&store).unwrap_err();
        assert!(matches!(&e, KeyError::Tampered { name, version: 1, .. } if name == "journal-encryption"), "{e}");
        assert!(e.to_string().contains("key journal-encryption version 1: its ciphertext fails authentication"), "{e}");
    }

    #[test]
    fn a_ciphertext_moved_to_another_key_or_version_does_not_open() {
        let (_dir, mut store) = store_with(&[("a", KeyType::Api), ("b", KeyType::Api)]);
        store.rotate("a", T0 + 1, CreatedBy::Forced, false).unwrap();
        store.save().unwrap();
        // b's v1 replaced by a's v1: a valid ciphertext under the same KEK, in the wrong place.
        edit_file(&store, |v| {
            v["keys"][1]["versions"][0]["material"] = v["keys"][0]["versions"][0]["material"].clone()
        });
        assert!(matches!(reload(&store), Err(KeyError::Tampered { name, version: 1, .. }) if name == "b"));
        // a's v1 and v2 swapped.
        let (_dir, mut store) = store_with(&[("a", KeyType::Api)]);
        store.rotate("a", T0 + 1, CreatedBy::Forced, false).unwrap();
        store.save().unwrap();
        edit_file(&store, |v| {
            let (one, two) =
                (v["keys"][0]["versions"][0]["material"].clone(), v["keys"][0]["versions"][1]["material"].clone());
            v["keys"][0]["versions"][0]["material"] = two;
            v["keys"][0]["versions"][1]["material"] = one;
        });
        assert!(matches!(reload(&store), Err(KeyError::Tampered { version: 1, .. })));
    }

    #[test]
    fn an_edited_state_or_date_breaks_the_seal() {
        let (_dir, mut store) = store_with(&[("nats-token", KeyType::Api)]);
        store.rotate("nats-token", T0 + 1, CreatedBy::Forced, false).unwrap();
        store.save().unwrap();
        // Stretching the grace of the old version (to keep a leaked token alive) is refused.
        edit_file(&store, |v| v["keys"][0]["versions"][0]["grace_until_unix_s"] = (T0 + 999 * DAY_S).into());
        let e = reload(&store).unwrap_err();
        assert!(matches!(e, KeyError::SealMismatch { .. }), "{e}");
        assert!(e.to_string().contains("does not match its seal"));
        // So is dropping the seal.
        let (_dir, store) = store_with(&[("nats-token", KeyType::Api)]);
        edit_file(&store, |v| {
            v.as_object_mut().unwrap().remove("seal");
        });
        assert!(matches!(reload(&store), Err(KeyError::SealMismatch { .. })));
    }

    #[test]
    fn a_wrong_master_key_is_refused_with_the_clear_error() {
        let (_dir, store) = store_with(&[("nats-token", KeyType::Api)]);
        let e =
            Store::load(store.path(), &master("another-master-key-0123456789abcdef"), &Witness::none()).unwrap_err();
        assert!(matches!(e, KeyError::WrongMasterKey { .. }), "{e}");
        assert_eq!(
            e.to_string(),
            format!(
                "the key store {} cannot be decrypted with this QILIN_MASTER_KEY (wrong master key, or the store was \
                 tampered with)",
                store.path().display()
            )
        );
    }

    #[test]
    fn corrupt_json_is_named_by_file_and_line() {
        let (_dir, store) = store_with(&[("nats-token", KeyType::Api)]);
        let text = fs::read_to_string(store.path()).unwrap();
        let broken = text.replacen("\"type\": \"api\"", "\"type\": api", 1);
        fs::write(store.path(), &broken).unwrap();
        let line = broken.lines().position(|l| l.contains("\"type\": api")).unwrap() + 1;
        let e = reload(&store).unwrap_err();
        assert!(matches!(e, KeyError::Corrupt { line: l, .. } if l == line), "{e}");
        assert!(e.to_string().starts_with(&format!("the key store {}: line {line}, column", store.path().display())));
        // An unknown state is a parse error at its line too.
        fs::write(store.path(), text.replacen("\"active\"", "\"zombie\"", 1)).unwrap();
        assert!(matches!(reload(&store), Err(KeyError::Corrupt { .. })));
        fs::remove_file(store.path()).unwrap();
        assert!(matches!(reload(&store), Err(KeyError::NotFound { .. })));
    }

    #[test]
    fn a_store_written_before_generations_reads_and_gets_an_id_when_saved() {
        let (_dir, mut store) = store_with(&[("nats-token", KeyType::Api)]);
        assert_eq!((store.generation(), store.store_id().map(str::len)), (1, Some(32)));
        store.file.store_id = None;
        store.file.generation = 0;
        let legacy = store.to_bytes().unwrap();
        let text = String::from_utf8(legacy.clone()).unwrap();
        assert!(!text.contains("store_id") && !text.contains("generation"), "{text}");
        fs::write(store.path(), &legacy).unwrap();
        let mut again = reload(&store).unwrap();
        assert_eq!((again.store_id(), again.generation()), (None, 0));
        again.save().unwrap();
        let again = reload(&again).unwrap();
        assert_eq!((again.generation(), again.store_id().map(str::len)), (1, Some(32)));
    }

    #[test]
    fn concurrent_locked_rotations_do_not_lose_one() {
        let (_dir, store) = store_with(&[("nats-token", KeyType::Api)]);
        let path = store.path().to_owned();
        let (threads, each) = (4, 5);
        std::thread::scope(|s| {
            for _ in 0..threads {
                let path = &path;
                s.spawn(move || {
                    for _ in 0..each {
                        let _lock = lock(path).unwrap();
                        let mut store = Store::load(path, &master(MASTER), &Witness::none()).unwrap();
                        store.rotate("nats-token", T0 + 1, CreatedBy::Forced, false).unwrap();
                        store.save().unwrap();
                    }
                });
            }
        });
        let store = Store::load(&path, &master(MASTER), &Witness::none()).unwrap();
        assert_eq!(store.generation(), u64::from(threads * each) + 1, "one generation per write");
        let versions: Vec<u32> = store.key("nats-token").unwrap().versions.iter().map(|v| v.version).collect();
        assert_eq!(versions, (1..=threads * each + 1).collect::<Vec<_>>());
    }
}
