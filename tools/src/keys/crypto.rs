//! The cryptography of the key store, all of it from RustCrypto's crates, nothing home-made:
//!
//! - the **master key** is `$QILIN_MASTER_KEY`, at least 32 printable ASCII characters without
//!   spaces (the same rule `validate-env` applies to it, from the secrets schema);
//! - the **key-encryption key** (KEK, 32 bytes) is Argon2id (RFC 9106, version 0x13) of the master
//!   key with the store's random 16-byte salt and its stored cost parameters ([`KdfParams`]);
//! - every secret is sealed with **XChaCha20-Poly1305** under the KEK with a fresh random 24-byte
//!   nonce (192 bits: random nonces do not collide in practice) and associated data saying what the
//!   ciphertext is, so a ciphertext moved to another place of the store fails to open;
//! - key material, salts and nonces come from the OS random generator (`getrandom`);
//! - plaintext is held in `secrecy` boxes and `zeroize`d buffers; the master key and the KEK have no
//!   `Debug` that shows them.

use std::fmt;

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::{
    KeyInit, XChaCha20Poly1305, XNonce,
    aead::{Aead, Payload},
};
use secrecy::{ExposeSecret, ExposeSecretMut, SecretBox, SecretString};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::KeyError;
use crate::secrets::{
    Profile,
    schema::{self},
    validate::check_format,
};

/// The environment variable holding the master key.
pub const ENV_MASTER_KEY: &str = "QILIN_MASTER_KEY";
/// Lowers the Argon2id memory cost (KiB) of a store *created* while it is set, in debug builds
/// only ([`TEST_SETTINGS`]): the test suite's stores derive in microseconds. A release build never
/// reads its value; [`ignored_test_settings`] makes it say so. The cost is stored in the file, and
/// every command flags a store below [`KdfParams::DEFAULT_M_COST_KIB`].
pub const ENV_TEST_KDF_M_COST: &str = "QILIN_KEYS_TEST_KDF_M_COST_KIB";
/// Whether this build obeys test-only settings ([`ENV_TEST_KDF_M_COST`]): only with debug
/// assertions, i.e. the `dev` and `test` profiles. `cargo build --release` (and `cargo test
/// --release`) turn them off, and the code that reads the setting is not compiled at all then. A
/// cargo feature was not used: `cargo test --release` or `--all-targets` would unify a dev-only
/// feature into the release binary.
pub const TEST_SETTINGS: bool = cfg!(debug_assertions);
/// Bytes of key material (256 bits).
pub const MATERIAL_LEN: usize = 32;
/// Bytes of the Argon2id salt.
pub const SALT_LEN: usize = 16;
/// Bytes of an XChaCha20-Poly1305 nonce.
pub const NONCE_LEN: usize = 24;
/// Bytes of a Poly1305 tag.
pub const TAG_LEN: usize = 16;

/// The Argon2id parameters of a store, written in the file so they can be raised later without
/// breaking stores written before.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KdfParams {
    /// Always `argon2id`.
    pub algorithm: String,
    /// Argon2 version: 19 (0x13).
    pub version: u32,
    /// Memory cost in KiB.
    pub m_cost_kib: u32,
    /// Passes over the memory.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
    /// Random salt, new for every store.
    #[serde(with = "hex_bytes")]
    pub salt: Vec<u8>,
}

impl KdfParams {
    /// 64 MiB: RFC 9106's second recommended option (64 MiB, 3 passes) with one lane.
    pub const DEFAULT_M_COST_KIB: u32 = 64 * 1024;
    /// Passes.
    pub const DEFAULT_T_COST: u32 = 3;
    /// Lanes (one: the derivation runs once per command, on whatever core it gets).
    pub const DEFAULT_P_COST: u32 = 1;

    /// Fresh parameters with a new random salt and the given memory cost.
    pub fn new(m_cost_kib: u32) -> Result<KdfParams, KeyError> {
        Ok(KdfParams {
            algorithm: "argon2id".into(),
            version: 0x13,
            m_cost_kib,
            t_cost: Self::DEFAULT_T_COST,
            p_cost: Self::DEFAULT_P_COST,
            salt: random_bytes::<SALT_LEN>()?.to_vec(),
        })
    }

    /// The parameters for a new store: the defaults; in a debug build, the memory cost of
    /// [`ENV_TEST_KDF_M_COST`] when that is set (tests).
    pub fn for_new_store() -> Result<KdfParams, KeyError> {
        KdfParams::new(test_m_cost_kib().unwrap_or(Self::DEFAULT_M_COST_KIB))
    }

    /// Whether these are weaker than the defaults (a store created for tests).
    pub fn is_weak(&self) -> bool {
        self.m_cost_kib < Self::DEFAULT_M_COST_KIB || self.t_cost < Self::DEFAULT_T_COST
    }

    /// What is wrong with parameters read from a file, if anything.
    pub fn problem(&self) -> Option<String> {
        if self.algorithm != "argon2id" || self.version != 0x13 {
            return Some(format!("unsupported kdf {} version {} (expected argon2id 19)", self.algorithm, self.version));
        }
        if self.salt.len() < SALT_LEN {
            return Some(format!("kdf salt is {} bytes, at least {SALT_LEN} required", self.salt.len()));
        }
        Params::new(self.m_cost_kib, self.t_cost, self.p_cost, Some(MATERIAL_LEN)).err().map(|e| {
            format!("kdf parameters m_cost_kib {} t_cost {} p_cost {}: {e}", self.m_cost_kib, self.t_cost, self.p_cost)
        })
    }
}

/// [`ENV_TEST_KDF_M_COST`]'s value (debug builds).
#[cfg(debug_assertions)]
fn test_m_cost_kib() -> Option<u32> {
    std::env::var(ENV_TEST_KDF_M_COST).ok().and_then(|v| v.parse().ok())
}

/// Release builds have no test settings: always the production cost.
#[cfg(not(debug_assertions))]
fn test_m_cost_kib() -> Option<u32> {
    None
}

/// A warning for stderr when a test-only setting is set in a build that ignores it, so that
/// nobody believes a release build made a cheap store.
pub fn ignored_test_settings() -> Option<String> {
    (!TEST_SETTINGS && std::env::var_os(ENV_TEST_KDF_M_COST).is_some()).then(|| {
        format!(
            "{ENV_TEST_KDF_M_COST} is set and ignored: this is a release build of qilinctl, which always uses \
             the production Argon2id cost ({} KiB, {} passes); the setting exists for debug builds (tests) only, \
             unset it",
            KdfParams::DEFAULT_M_COST_KIB,
            KdfParams::DEFAULT_T_COST
        )
    })
}

/// The master key, from [`ENV_MASTER_KEY`]. Never printed.
pub struct MasterKey(SecretString);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    /// Reads and checks [`ENV_MASTER_KEY`].
    pub fn from_env() -> Result<MasterKey, KeyError> {
        match std::env::var_os(ENV_MASTER_KEY) {
            None => Err(KeyError::MasterKeyMissing),
            Some(v) if v.is_empty() => Err(KeyError::MasterKeyMissing),
            Some(v) => match v.into_string() {
                Ok(s) => MasterKey::new(SecretString::from(s)),
                Err(raw) => {
                    drop(Zeroizing::new(raw.into_encoded_bytes()));
                    Err(KeyError::MasterKeyFormat { reason: "is not valid UTF-8".into() })
                }
            },
        }
    }

    /// Checks `value` with the secrets schema's rule for `QILIN_MASTER_KEY`.
    pub fn new(value: SecretString) -> Result<MasterKey, KeyError> {
        let format = schema::spec(ENV_MASTER_KEY).map(|s| s.format).unwrap_or(schema::Format::Token { min: 32 });
        check_format(format, value.expose_secret(), Profile::Live)
            .map_err(|reason| KeyError::MasterKeyFormat { reason })?;
        Ok(MasterKey(value))
    }

    /// The KEK for a store with `kdf` (call [`KdfParams::problem`] first).
    pub fn derive(&self, kdf: &KdfParams) -> Result<Kek, KeyError> {
        let invalid = |e: argon2::Error| KeyError::MasterKeyFormat { reason: format!("key derivation failed: {e}") };
        let params = Params::new(kdf.m_cost_kib, kdf.t_cost, kdf.p_cost, Some(MATERIAL_LEN)).map_err(invalid)?;
        let mut out = SecretBox::new(Box::new([0u8; MATERIAL_LEN]));
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(self.0.expose_secret().as_bytes(), &kdf.salt, out.expose_secret_mut())
            .map_err(invalid)?;
        Ok(Kek(out))
    }
}

/// A nonce and what XChaCha20-Poly1305 made of a plaintext (ciphertext followed by the tag).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sealed {
    #[serde(with = "hex_bytes")]
    pub nonce: Vec<u8>,
    #[serde(with = "hex_bytes")]
    pub ciphertext: Vec<u8>,
}

/// The key-encryption key. Never printed.
pub struct Kek(SecretBox<[u8; MATERIAL_LEN]>);

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Kek(<redacted>)")
    }
}

/// A ciphertext did not authenticate under the KEK with its associated data.
#[derive(Debug)]
pub struct OpenFailed;

impl Kek {
    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.0.expose_secret().into())
    }

    /// Seals `plaintext` bound to `aad` under a fresh random nonce.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Sealed, KeyError> {
        let nonce = random_bytes::<NONCE_LEN>()?;
        let ciphertext = self
            .cipher()
            .encrypt(&XNonce::from(nonce), Payload { msg: plaintext, aad })
            .map_err(|_| KeyError::Random("XChaCha20-Poly1305 refused to encrypt".into()))?;
        Ok(Sealed { nonce: nonce.to_vec(), ciphertext })
    }

    /// Opens `sealed` bound to `aad`; the plaintext is wiped when dropped.
    pub fn open(&self, aad: &[u8], sealed: &Sealed) -> Result<Zeroizing<Vec<u8>>, OpenFailed> {
        let nonce: [u8; NONCE_LEN] = sealed.nonce.as_slice().try_into().map_err(|_| OpenFailed)?;
        self.cipher()
            .decrypt(&XNonce::from(nonce), Payload { msg: &sealed.ciphertext, aad })
            .map(Zeroizing::new)
            .map_err(|_| OpenFailed)
    }
}

/// `N` bytes from the OS random generator.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], KeyError> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(out)
}

/// New key material from the OS random generator.
pub fn new_material() -> Result<SecretBox<[u8; MATERIAL_LEN]>, KeyError> {
    let mut material = SecretBox::new(Box::new([0u8; MATERIAL_LEN]));
    getrandom::fill(material.expose_secret_mut()).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(material)
}

/// Lowercase hex of `bytes`, in a buffer wiped when dropped (used for key material as handed out).
pub fn hex_secret(bytes: &[u8]) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(bytes.len() * 2));
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    hex_secret(bytes).to_string()
}

/// Bytes of lowercase (or uppercase) hex; `None` for anything else.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes.chunks(2).map(|p| Some((digit(p[0])? << 4) | digit(p[1])?)).collect()
}

/// Serde for byte fields stored as hex strings: a bad string is an error at its line in the file.
mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::hex(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        super::unhex(&text).ok_or_else(|| D::Error::custom("expected a hex string"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cheap parameters (64 KiB), so unit tests derive in microseconds.
    fn cheap() -> KdfParams {
        KdfParams::new(64).unwrap()
    }

    fn master(s: &str) -> MasterKey {
        MasterKey::new(SecretString::from(s.to_owned())).unwrap()
    }

    #[test]
    fn master_key_follows_the_schema_rule_and_never_prints() {
        let short = MasterKey::new(SecretString::from("short-master-key".to_owned())).unwrap_err();
        assert!(short.to_string().contains("shorter than 32 characters"), "{short}");
        assert!(!short.to_string().contains("short-master-key"));
        let spaced = MasterKey::new(SecretString::from("a master key with spaces in it, long enough".to_owned()));
        assert!(spaced.unwrap_err().to_string().contains("space"));
        let key = master("0123456789abcdef0123456789abcdef-master");
        assert_eq!(format!("{key:?}"), "MasterKey(<redacted>)");
        let kek = key.derive(&cheap()).unwrap();
        assert_eq!(format!("{kek:?}"), "Kek(<redacted>)");
    }

    #[test]
    fn derivation_depends_on_key_salt_and_parameters() {
        let kdf = cheap();
        let a = master("0123456789abcdef0123456789abcdef-master");
        let b = master("0123456789abcdef0123456789abcdef-masteR");
        let sealed = a.derive(&kdf).unwrap().seal(b"aad", b"plaintext").unwrap();
        assert_eq!(&*a.derive(&kdf).unwrap().open(b"aad", &sealed).unwrap(), b"plaintext");
        assert!(b.derive(&kdf).unwrap().open(b"aad", &sealed).is_err(), "another master key");
        let other_salt = KdfParams { salt: cheap().salt, ..kdf.clone() };
        assert!(a.derive(&other_salt).unwrap().open(b"aad", &sealed).is_err(), "another salt");
        let other_cost = KdfParams { t_cost: kdf.t_cost + 1, ..kdf.clone() };
        assert!(a.derive(&other_cost).unwrap().open(b"aad", &sealed).is_err(), "another cost");
    }

    #[test]
    fn sealing_is_randomized_and_bound_to_its_associated_data() {
        let kek = master("0123456789abcdef0123456789abcdef-master").derive(&cheap()).unwrap();
        let one = kek.seal(b"k v1", b"same").unwrap();
        let two = kek.seal(b"k v1", b"same").unwrap();
        assert_ne!(one.nonce, two.nonce);
        assert_ne!(one.ciphertext, two.ciphertext);
        assert_eq!(one.nonce.len(), NONCE_LEN);
        assert_eq!(one.ciphertext.len(), 4 + TAG_LEN);
        assert!(kek.open(b"k v2", &one).is_err(), "other associated data");
        let mut flipped = one.clone();
        flipped.ciphertext[0] ^= 1;
        assert!(kek.open(b"k v1", &flipped).is_err(), "flipped ciphertext");
        let mut flipped = one.clone();
        flipped.nonce[3] ^= 0x80;
        assert!(kek.open(b"k v1", &flipped).is_err(), "flipped nonce");
    }

    #[test]
    fn default_parameters_are_the_documented_ones() {
        let kdf = KdfParams::new(KdfParams::DEFAULT_M_COST_KIB).unwrap();
        assert_eq!((kdf.m_cost_kib, kdf.t_cost, kdf.p_cost, kdf.version), (65_536, 3, 1, 0x13));
        assert_eq!((kdf.algorithm.as_str(), kdf.salt.len()), ("argon2id", SALT_LEN));
        assert!(!kdf.is_weak() && cheap().is_weak());
        assert_eq!(kdf.problem(), None);
        assert!(KdfParams { algorithm: "scrypt".into(), ..kdf.clone() }.problem().unwrap().contains("unsupported"));
        assert!(KdfParams { m_cost_kib: 1, ..kdf.clone() }.problem().is_some());
        assert!(KdfParams { salt: vec![1; 4], ..kdf }.problem().unwrap().contains("salt"));
    }

    #[test]
    fn hex_round_trips_and_refuses_non_hex() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(unhex(&hex(&bytes)).unwrap(), bytes);
        assert_eq!(hex(&[0x0f, 0xa0]), "0fa0");
        assert_eq!(unhex("0g"), None);
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("+1"), None);
    }

    #[test]
    fn material_is_random_and_32_bytes() {
        let (a, b) = (new_material().unwrap(), new_material().unwrap());
        assert_eq!(a.expose_secret().len(), MATERIAL_LEN);
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert!(!format!("{a:?}").contains(&hex(a.expose_secret())[..8]));
    }
}
