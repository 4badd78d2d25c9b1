//! The key store's content as it is written (JSON, field order as declared) and the schedule:
//! which version is active, which still verifies, which key is due. No cryptography here: sealed
//! material is carried as [`Sealed`] and opened by [`super::store`].
//!
//! ```text
//! {"format":"qilin-keys/1",
//!  "store_id":"<16 bytes hex>","generation":7,
//!  "kdf":{"algorithm":"argon2id","version":19,"m_cost_kib":65536,"t_cost":3,"p_cost":1,"salt":"<hex>"},
//!  "check":{"nonce":"<hex>","ciphertext":"<hex>"},
//!  "keys":[{"name":"nats-token","type":"api","rotation_period_days":90,"grace_period_days":7,
//!           "created_unix_s":1767225600,
//!           "versions":[{"version":1,"state":"grace","created_by":"add","activated_unix_s":1767225600,
//!                        "grace_from_unix_s":1774224000,"grace_until_unix_s":1774828800,
//!                        "material":{"nonce":"<hex>","ciphertext":"<hex>"}},
//!                       {"version":2,"state":"active","created_by":"scheduled", …}]}],
//!  "seal":{"nonce":"<hex>","ciphertext":"<hex: the 16-byte tag>"}}
//! ```

use serde::{Deserialize, Serialize};

use super::{DAY_S, crypto::Sealed};

/// The `format` of a store this code reads and writes.
pub const FORMAT: &str = "qilin-keys/1";

/// What a key is for; decides its default rotation period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyType {
    /// Tokens handed to clients or servers: NATS tokens, API and rate-limit tokens (90 days).
    Api,
    /// Keys that encrypt data, e.g. journal encryption (180 days).
    Encryption,
    /// Keys that sign, e.g. the audit log's signing key (60 days).
    Signing,
}

impl KeyType {
    /// The rotation period of a key of this type unless the key sets its own.
    pub fn default_period_days(self) -> u32 {
        match self {
            KeyType::Api => 90,
            KeyType::Encryption => 180,
            KeyType::Signing => 60,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Api => "api",
            KeyType::Encryption => "encryption",
            KeyType::Signing => "signing",
        }
    }

    /// A type named on the command line. The two types of the key-management design this store
    /// comes from that this feed has no use for are refused with the reason (docs/KEYS.md, "Key
    /// types"), not as unknown words.
    pub fn parse(text: &str) -> Result<KeyType, String> {
        let known = [KeyType::Api, KeyType::Encryption, KeyType::Signing];
        if let Some(t) = known.into_iter().find(|t| t.as_str().eq_ignore_ascii_case(text)) {
            return Ok(t);
        }
        if let Some((name, why)) = NOT_OFFERED.iter().find(|(name, _)| name.eq_ignore_ascii_case(text)) {
            return Err(format!("key type '{name}' is not offered: {why}; the types are api, encryption and signing"));
        }
        Err(format!("unknown key type '{text}': the types are api (90 days), encryption (180) and signing (60)"))
    }
}

/// Key types of the original design (JWT 30 days, API 90, encryption 180, signing 60, database
/// password 90) that this feed refuses, each with the reason.
pub const NOT_OFFERED: [(&str, &str); 2] = [
    (
        "jwt",
        "qilin-feed issues and verifies no JSON Web Tokens (NATS takes a token or a user password, \
         which are 'api' keys; NATS JWTs belong to the operator's nsc tooling)",
    ),
    ("database", "qilin-feed has no database (ticks go to the segment, journal files and NATS)"),
];

/// The grace period of a key unless it sets its own: how long the previous version still verifies.
pub const DEFAULT_GRACE_DAYS: u32 = 7;

/// Where a version is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// The one in use: handed out, used to sign and encrypt; verifies.
    Active,
    /// Replaced, still verifies until `grace_until_unix_s`.
    Grace,
    /// Never verifies again; its material is wiped from the store.
    Retired,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Active => "active",
            State::Grace => "grace",
            State::Retired => "retired",
        }
    }
}

/// The whole file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreFile {
    /// [`FORMAT`].
    pub format: String,
    /// A random id (16 bytes, hex) given when the store is created. Copies and backups keep it, so
    /// the audit log's record of this store's generations finds it wherever it is put back. Absent
    /// only in stores written before generations existed (the next write gives one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_id: Option<String>,
    /// One more on every write of the store (0: written before generations existed). Every audited
    /// change records the generation it wrote, which is how an older copy put in place of the store
    /// is told apart from the store (`super::witness`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub generation: u64,
    /// How the key-encryption key is derived from the master key.
    pub kdf: super::crypto::KdfParams,
    /// A fixed text sealed under the key-encryption key: tells a wrong master key from a damaged key.
    pub check: Sealed,
    /// The keys, in the order they were added.
    pub keys: Vec<KeyEntry>,
    /// A tag over everything above (the whole file without this field), so an edited state, date
    /// or version is detected. Absent only while the file is being written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<Sealed>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One managed key and its versions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// `nats-token`, `rate-limit-token`, `audit-signing`, `journal-encryption`, …
    pub name: String,
    #[serde(rename = "type")]
    pub key_type: KeyType,
    /// A version older than this is due for rotation.
    pub rotation_period_days: u32,
    /// How long a replaced version still verifies.
    pub grace_period_days: u32,
    /// When the key was added.
    pub created_unix_s: i64,
    /// Every version, oldest first.
    pub versions: Vec<VersionEntry>,
}

/// Why a version was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CreatedBy {
    /// `keys add`.
    Add,
    /// `keys rotate NAME`: an operator asked for it.
    Forced,
    /// `keys rotate --due`: its predecessor's period had elapsed.
    Scheduled,
}

impl CreatedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            CreatedBy::Add => "add",
            CreatedBy::Forced => "forced",
            CreatedBy::Scheduled => "scheduled",
        }
    }
}

/// One version of a key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionEntry {
    /// From 1.
    pub version: u32,
    /// The state as last written; [`VersionEntry::state_at`] is the state at a given time.
    pub state: State,
    pub created_by: CreatedBy,
    /// When it became active (versions are active from their creation).
    pub activated_unix_s: i64,
    /// When it was replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_from_unix_s: Option<i64>,
    /// Until when it verifies after being replaced (its retire-after time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_until_unix_s: Option<i64>,
    /// When it was retired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_unix_s: Option<i64>,
    /// `grace ended` or `revoked`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_because: Option<String>,
    /// The sealed material; `None` once retired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub material: Option<Sealed>,
}

impl VersionEntry {
    /// The state at `now`: a grace version whose grace has ended is retired even before a
    /// command writes that down.
    pub fn state_at(&self, now: i64) -> State {
        match (self.state, self.grace_until_unix_s) {
            (State::Grace, Some(until)) if now >= until => State::Retired,
            (state, _) => state,
        }
    }
}

/// A version that went from grace to retired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retirement {
    pub name: String,
    pub version: u32,
    /// When its grace ended.
    pub at: i64,
}

impl KeyEntry {
    /// The active version, if any.
    pub fn active(&self) -> Option<&VersionEntry> {
        self.versions.iter().rev().find(|v| v.state == State::Active)
    }

    /// The version numbered `version`.
    pub fn version(&self, version: u32) -> Option<&VersionEntry> {
        self.versions.iter().find(|v| v.version == version)
    }

    /// The next version number.
    pub fn next_version(&self) -> u32 {
        self.versions.iter().map(|v| v.version).max().unwrap_or(0) + 1
    }

    /// When the active version is due for rotation (its activation plus the period); `None`
    /// without an active version.
    pub fn next_due(&self) -> Option<i64> {
        let period = i64::from(self.rotation_period_days) * DAY_S;
        self.active().map(|v| v.activated_unix_s.saturating_add(period))
    }

    /// Whether the key is due for rotation at `now` (a key without an active version is due).
    pub fn is_due(&self, now: i64) -> bool {
        self.next_due().is_none_or(|due| now >= due)
    }

    /// How many versions are in each state at `now`: (active, grace, retired).
    pub fn state_counts(&self, now: i64) -> (usize, usize, usize) {
        let count = |s| self.versions.iter().filter(|v| v.state_at(now) == s).count();
        (count(State::Active), count(State::Grace), count(State::Retired))
    }

    /// Marks every grace version whose grace ended by `now` retired (the time is its grace end)
    /// and drops its material.
    pub fn retire_expired(&mut self, now: i64) -> Vec<Retirement> {
        let mut out = Vec::new();
        for v in &mut self.versions {
            if v.state == State::Grace && v.state_at(now) == State::Retired {
                let at = v.grace_until_unix_s.unwrap_or(now);
                retire(v, at, "grace ended");
                out.push(Retirement { name: self.name.clone(), version: v.version, at });
            }
        }
        out
    }

    /// Demotes the active version at `now`: to grace until `now + grace`, or straight to retired
    /// when `revoke`. Returns its number.
    pub fn demote_active(&mut self, now: i64, revoke: bool) -> Option<u32> {
        let grace_until = now.saturating_add(i64::from(self.grace_period_days) * DAY_S);
        let v = self.versions.iter_mut().rev().find(|v| v.state == State::Active)?;
        v.grace_from_unix_s = Some(now);
        if revoke || grace_until <= now {
            v.grace_until_unix_s = Some(now);
            retire(v, now, if revoke { "revoked" } else { "grace ended" });
        } else {
            v.state = State::Grace;
            v.grace_until_unix_s = Some(grace_until);
        }
        Some(v.version)
    }

    /// What is inconsistent in this entry, if anything (checked when a store is read).
    pub fn problem(&self) -> Option<String> {
        if let Err(reason) = check_name(&self.name) {
            return Some(format!("key name {:?}: {reason}", self.name));
        }
        if self.rotation_period_days == 0 {
            return Some(format!("key {}: rotation_period_days is 0", self.name));
        }
        let actives = self.versions.iter().filter(|v| v.state == State::Active).count();
        if actives > 1 {
            return Some(format!("key {}: {actives} active versions", self.name));
        }
        for (i, v) in self.versions.iter().enumerate() {
            if v.version as usize != i + 1 {
                return Some(format!("key {}: version {} at position {}", self.name, v.version, i + 1));
            }
            if (v.state == State::Retired) != v.material.is_none() {
                return Some(format!(
                    "key {} version {}: state {} with material {}",
                    self.name,
                    v.version,
                    v.state.as_str(),
                    if v.material.is_some() { "present" } else { "absent" }
                ));
            }
            if v.state == State::Grace && v.grace_until_unix_s.is_none() {
                return Some(format!("key {} version {}: grace without an end", self.name, v.version));
            }
        }
        None
    }
}

fn retire(v: &mut VersionEntry, at: i64, because: &str) {
    v.state = State::Retired;
    v.retired_unix_s = Some(at);
    v.retired_because = Some(because.to_owned());
    v.material = None;
}

/// Key names: 1 to 64 of `a-z 0-9 - _ .`, starting with a letter or digit (they appear in file
/// names, audit entries and associated data, so nothing that needs quoting).
pub fn check_name(name: &str) -> Result<(), &'static str> {
    let ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.');
    match name.as_bytes() {
        [] => Err("empty"),
        b if b.len() > 64 => Err("longer than 64 characters"),
        [first, ..] if !(first.is_ascii_lowercase() || first.is_ascii_digit()) => {
            Err("must start with a lowercase letter or a digit")
        }
        b if !b.iter().copied().all(ok) => Err("only lowercase letters, digits, '-', '_' and '.' are allowed"),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

    fn key(key_type: KeyType) -> KeyEntry {
        let sealed = Sealed { nonce: vec![0; 24], ciphertext: vec![0; 48] };
        KeyEntry {
            name: "k".into(),
            key_type,
            rotation_period_days: key_type.default_period_days(),
            grace_period_days: DEFAULT_GRACE_DAYS,
            created_unix_s: T0,
            versions: vec![VersionEntry {
                version: 1,
                state: State::Active,
                created_by: CreatedBy::Add,
                activated_unix_s: T0,
                grace_from_unix_s: None,
                grace_until_unix_s: None,
                retired_unix_s: None,
                retired_because: None,
                material: Some(sealed),
            }],
        }
    }

    #[test]
    fn default_periods_are_90_180_60_days_and_due_exactly_at_the_end() {
        for (t, days) in [(KeyType::Api, 90), (KeyType::Encryption, 180), (KeyType::Signing, 60)] {
            let k = key(t);
            assert_eq!(i64::from(t.default_period_days()), days);
            assert_eq!(k.next_due(), Some(T0 + days * DAY_S), "{t:?}");
            assert!(!k.is_due(T0 + days * DAY_S - 1), "{t:?} one second early");
            assert!(k.is_due(T0 + days * DAY_S), "{t:?} on time");
        }
    }

    #[test]
    fn a_demoted_version_is_in_grace_then_retired_by_time_alone() {
        let mut k = key(KeyType::Api);
        let now = T0 + 90 * DAY_S;
        assert_eq!(k.demote_active(now, false), Some(1));
        let v = &k.versions[0];
        assert_eq!((v.state, v.grace_until_unix_s), (State::Grace, Some(now + 7 * DAY_S)));
        assert_eq!(v.state_at(now + 7 * DAY_S - 1), State::Grace);
        assert_eq!(v.state_at(now + 7 * DAY_S), State::Retired);
        assert!(k.retire_expired(now + 7 * DAY_S - 1).is_empty());
        let retired = k.retire_expired(now + 8 * DAY_S);
        assert_eq!(retired, [Retirement { name: "k".into(), version: 1, at: now + 7 * DAY_S }]);
        let v = &k.versions[0];
        assert_eq!((v.state, v.retired_unix_s, v.material.as_ref()), (State::Retired, Some(now + 7 * DAY_S), None));
        assert_eq!(v.retired_because.as_deref(), Some("grace ended"));
        assert_eq!(k.problem(), None);
    }

    #[test]
    fn a_revoked_version_is_retired_at_once() {
        let mut k = key(KeyType::Signing);
        k.demote_active(T0 + 5, true);
        assert_eq!(k.versions[0].state_at(T0 + 5), State::Retired);
        assert_eq!(k.versions[0].retired_because.as_deref(), Some("revoked"));
        assert_eq!(k.state_counts(T0 + 5), (0, 0, 1));
        assert!(k.is_due(T0 + 5), "no active version: due");
    }

    #[test]
    fn names_are_checked() {
        for good in ["nats-token", "audit-signing", "rate-limit-token", "a", "k1.v2_x"] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        for bad in ["", "Nats", "-x", "a b", "a/b", "é", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn inconsistent_entries_are_named() {
        let mut k = key(KeyType::Api);
        k.versions.push(VersionEntry { version: 2, ..k.versions[0].clone() });
        assert!(k.problem().unwrap().contains("2 active versions"));
        let mut k = key(KeyType::Api);
        k.versions[0].state = State::Retired;
        assert!(k.problem().unwrap().contains("state retired with material present"));
        let mut k = key(KeyType::Api);
        k.versions[0].version = 3;
        assert!(k.problem().unwrap().contains("version 3 at position 1"));
    }
}
