//! Encryption at rest (optional): the keys, and sealing and opening of the file header's key check
//! and of each block's payload with XChaCha20-Poly1305.
//!
//! **Key.** The managed key `journal-encryption` (docs/KEYS.md): 32 random bytes per version, used
//! as the XChaCha20-Poly1305 key directly (the material is generated for this one use, so no
//! derivation is needed to separate it from another). A file records the version it was created
//! with in its header; each block records the version that sealed it (the same, unless a recorder
//! restarted after a rotation and appended with the new active version). [`Keyring`] is the one
//! place that answers "the key for version N" (from key files rendered by `qilinctl keys
//! render-key`, or filled from the key store by qilinctl), with an error naming the version.
//!
//! **Associated data: the block's position.** Every block is bound to
//! - the file, by its random 16-byte `file_id` (header): a block copied into another journal fails;
//! - its byte offset in the file: a block moved, or swapped with another, fails;
//! - its plain block header (kind, first sequence, record count, payload length, key version):
//!   the fields a reader uses to place the block in the sequence cannot be altered.
//!
//! The sequence fields alone would already pin a block once the reader checks continuity; the
//! offset and file id make the check not depend on that logic (a block of the same sequences from
//! another day's file, or from a second recording of the same day, does not authenticate). What
//! per-block sealing cannot show is a file cut after a whole block (the tail simply ends): the
//! audit log's anchors and the recorder's metrics are where a lost tail shows.
//!
//! **Nonce.** 24 bytes stored in front of each block's ciphertext: a 16-byte prefix drawn from the
//! OS generator each time a writer opens the file, then a 64-bit counter of the blocks that
//! writer sealed. The counter never repeats within one open (a block cut back after a failed
//! write and written again takes a new count), and two opens share a prefix with probability about
//! 2^-128 per pair, so no (key, nonce) pair is used twice. A nonce derived from the offset alone
//! would repeat when a torn tail or a failed write is cut back and the same offset is written again
//! with other contents: with a stream cipher that leaks the XOR of the two plaintexts and lets the
//! Poly1305 key be recovered. The header's key check uses `file_id ‖ 0xff…ff`, a nonce no writer
//! prefix takes in practice (each file has a fresh id and the header is sealed once).
//!
//! **Gap records are authenticated, not encrypted**: which sequences are missing, why and when says
//! nothing about the market, and a writer reopening a file after a restart must find where a
//! trailing gap ends without holding the key of every version in the file.
//!
//! **Integrity without the key.** The CRC-32 of every block covers its ciphertext, so torn tails
//! are found and cut by a writer, and `verify` checks a file's structure, without any key. A
//! block whose CRC matches but which does not authenticate was tampered with (or the key is wrong):
//! it is never treated as a torn tail, never cut.

use std::{collections::BTreeMap, fmt, path::Path};

use chacha20poly1305::{
    KeyInit, XChaCha20Poly1305, XNonce,
    aead::{AeadInOut, Tag},
};
use zeroize::Zeroizing;

/// Name of the managed key that encrypts journals.
pub const KEY_NAME: &str = "journal-encryption";
/// Cipher code in the header: XChaCha20-Poly1305.
pub(crate) const CIPHER_XCHACHA20_POLY1305: u32 = 1;
/// Bytes of the nonce in front of each sealed payload.
pub(crate) const NONCE_LEN: usize = 24;
/// Bytes of the Poly1305 tag after each sealed payload.
pub(crate) const TAG_LEN: usize = 16;
/// What sealing adds to a payload.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;
/// Bytes of a file id.
pub(crate) const FILE_ID_LEN: usize = 16;

/// One version of the `journal-encryption` key. Its `Debug` shows the version only.
#[derive(Clone)]
pub struct JournalKey {
    version: u32,
    key: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for JournalKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JournalKey {{ version: {}, key: <redacted> }}", self.version)
    }
}

impl JournalKey {
    /// Version `version` (≥ 1) with its 32 bytes of material.
    pub fn new(version: u32, material: &[u8]) -> Result<JournalKey, String> {
        if version == 0 {
            return Err(format!("{KEY_NAME} key version 0: versions start at 1"));
        }
        let key: [u8; 32] = material
            .try_into()
            .map_err(|_| format!("{KEY_NAME} key version {version}: {} bytes, not 32", material.len()))?;
        Ok(JournalKey { version, key: Zeroizing::new(key) })
    }

    /// The version and key in a `qilinctl keys render-key` file (read with the loader of every
    /// secret file: private mode, errors name the file, never the key).
    pub fn from_key_file(path: &Path) -> Result<JournalKey, String> {
        let (version, material) = qilin_market::secrets::managed::load_key_file(path)?;
        JournalKey::new(version, &material).map_err(|e| format!("key file {}: {e}", path.display()))
    }

    /// The key's version.
    pub fn version(&self) -> u32 {
        self.version
    }

    pub(crate) fn cipher(&self) -> XChaCha20Poly1305 {
        let key: &[u8; 32] = &self.key;
        XChaCha20Poly1305::new(key.into())
    }
}

/// Why no key can be given for a version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyUnavailable {
    /// No key source was given at all.
    NoKeys,
    /// The version is retired: its material was wiped from the key store (docs/KEYS.md).
    Retired,
    /// The sources given do not hold it (the versions they hold, and where they came from).
    Missing {
        /// Versions available.
        have: Vec<u32>,
        /// Where the keys came from (file names, the key store's path).
        from: String,
    },
}

impl fmt::Display for KeyUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyUnavailable::NoKeys => f.write_str(
                "no key was given (a key file rendered by `qilinctl keys render-key journal-encryption`, or the key store)",
            ),
            KeyUnavailable::Retired => f.write_str(
                "that version is retired: its material was wiped from the key store, so nothing can decrypt this file any more",
            ),
            KeyUnavailable::Missing { have, from } => {
                let have: Vec<String> = have.iter().map(u32::to_string).collect();
                let have = if have.is_empty() { "none".to_owned() } else { have.join(", ") };
                write!(f, "{from} holds versions {have}, not this one")
            }
        }
    }
}

/// The `journal-encryption` key versions a reader (or writer) can use: the one home for "the key
/// for version N". Filled from key files ([`Keyring::from_key_files`]) or by a caller that reads
/// the key store (qilinctl), which also marks the retired versions so the error says so.
#[derive(Clone, Debug, Default)]
pub struct Keyring {
    keys: BTreeMap<u32, JournalKey>,
    retired: Vec<u32>,
    from: String,
}

impl Keyring {
    /// An empty keyring whose keys come from `from` (named in errors: "key files a, b", "key store
    /// /var/lib/qilin-keys/keys.json").
    pub fn new(from: impl Into<String>) -> Keyring {
        Keyring { keys: BTreeMap::new(), retired: Vec::new(), from: from.into() }
    }

    /// The keys in `paths` (each a `keys render-key` file, of one version or, with `--in-force`,
    /// every version in force); the first error names its file.
    pub fn from_key_files<P: AsRef<Path>>(paths: &[P]) -> Result<Keyring, String> {
        let names: Vec<String> = paths.iter().map(|p| p.as_ref().display().to_string()).collect();
        let mut ring =
            Keyring::new(format!("key file{} {}", if names.len() == 1 { "" } else { "s" }, names.join(", ")));
        for path in paths {
            let path = path.as_ref();
            for (version, material) in qilin_market::secrets::managed::load_key_file_versions(path)? {
                ring.insert(
                    JournalKey::new(version, &material).map_err(|e| format!("key file {}: {e}", path.display()))?,
                );
            }
        }
        Ok(ring)
    }

    /// Adds (or replaces) a version.
    pub fn insert(&mut self, key: JournalKey) {
        self.retired.retain(|v| *v != key.version);
        self.keys.insert(key.version, key);
    }

    /// Records that `version` is retired (asked for, it is refused as retired rather than missing).
    pub fn mark_retired(&mut self, version: u32) {
        if !self.keys.contains_key(&version) && !self.retired.contains(&version) {
            self.retired.push(version);
        }
    }

    /// Whether it holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The newest version held (what a writer seals new files with).
    pub fn newest(&self) -> Option<&JournalKey> {
        self.keys.values().next_back()
    }

    /// The key of `version`.
    pub fn get(&self, version: u32) -> Result<&JournalKey, KeyUnavailable> {
        if let Some(key) = self.keys.get(&version) {
            return Ok(key);
        }
        if self.retired.contains(&version) {
            return Err(KeyUnavailable::Retired);
        }
        Err(KeyUnavailable::Missing { have: self.keys.keys().copied().collect(), from: self.from.clone() })
    }
}

/// `n` bytes from the OS random generator.
pub(crate) fn random<const N: usize>() -> std::io::Result<[u8; N]> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|e| std::io::Error::other(format!("the OS random generator: {e}")))?;
    Ok(out)
}

fn header_nonce(file_id: &[u8; FILE_ID_LEN]) -> XNonce {
    let mut nonce = [0xffu8; NONCE_LEN];
    nonce[..FILE_ID_LEN].copy_from_slice(file_id);
    XNonce::from(nonce)
}

const HEADER_AD: &[u8] = b"qilin-journal header v2\0";
const BLOCK_AD: &[u8] = b"qilin-journal block v2\0\0";

/// The header's key check: the tag of an empty message with the header's first bytes as
/// associated data (so it also authenticates feed, day, base sequence, file id, key version).
pub(crate) fn header_tag(key: &JournalKey, file_id: &[u8; FILE_ID_LEN], header: &[u8]) -> [u8; TAG_LEN] {
    let aad = [HEADER_AD, header].concat();
    let tag = key
        .cipher()
        .encrypt_inout_detached(&header_nonce(file_id), &aad, (&mut [][..]).into())
        .expect("an empty message always encrypts");
    tag.into()
}

/// Whether `tag` is the header's key check under `key` (compared in constant time by the AEAD).
pub(crate) fn header_tag_ok(key: &JournalKey, file_id: &[u8; FILE_ID_LEN], header: &[u8], tag: &[u8; TAG_LEN]) -> bool {
    let aad = [HEADER_AD, header].concat();
    key.cipher()
        .decrypt_inout_detached(
            &header_nonce(file_id),
            &aad,
            (&mut [][..]).into(),
            &Tag::<XChaCha20Poly1305>::from(*tag),
        )
        .is_ok()
}

fn block_aad(file_id: &[u8; FILE_ID_LEN], offset: u64, block_header: &[u8]) -> [u8; 24 + FILE_ID_LEN + 8 + 28] {
    let mut aad = [0u8; 24 + FILE_ID_LEN + 8 + 28];
    aad[..24].copy_from_slice(BLOCK_AD);
    aad[24..40].copy_from_slice(file_id);
    aad[40..48].copy_from_slice(&offset.to_le_bytes());
    aad[48..].copy_from_slice(&block_header[..28]);
    aad
}

/// Seals blocks for one writer: a cipher, the file's id and the nonce prefix and counter.
pub(crate) struct Sealer {
    cipher: XChaCha20Poly1305,
    pub key_version: u32,
    file_id: [u8; FILE_ID_LEN],
    prefix: [u8; 16],
    counter: u64,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sealer {{ key_version: {}, blocks: {} }}", self.key_version, self.counter)
    }
}

impl Sealer {
    pub fn new(key: &JournalKey, file_id: [u8; FILE_ID_LEN]) -> std::io::Result<Sealer> {
        Ok(Sealer { cipher: key.cipher(), key_version: key.version, file_id, prefix: random()?, counter: 0 })
    }

    /// Seals a block in place: `block` is `[block header (32) | nonce room (24) | body]`, its
    /// header's first 28 bytes already holding the final payload length and key version; the
    /// nonce is written, the body encrypted (a ticks body; a gap body, `encrypt` false, stays
    /// readable and is authenticated with the rest) and the tag appended. `offset`: where the
    /// block goes. The CRC is left to the caller.
    pub fn seal(&mut self, offset: u64, block: &mut Vec<u8>, encrypt: bool) {
        const BODY: usize = crate::format::BLOCK_HEADER_SIZE + NONCE_LEN;
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..16].copy_from_slice(&self.prefix);
        nonce[16..].copy_from_slice(&self.counter.to_le_bytes());
        self.counter += 1;
        let aad = block_aad(&self.file_id, offset, &block[..28]);
        let tag = if encrypt {
            self.cipher.encrypt_inout_detached(&XNonce::from(nonce), &aad, (&mut block[BODY..]).into())
        } else {
            let aad = [&aad[..], &block[BODY..]].concat();
            self.cipher.encrypt_inout_detached(&XNonce::from(nonce), &aad, (&mut [][..]).into())
        }
        .expect("a block is far below XChaCha20's message limit");
        block[BODY - NONCE_LEN..BODY].copy_from_slice(&nonce);
        block.extend_from_slice(&tag);
    }
}

/// Opens `payload` (`[nonce | body | tag]`) in place and leaves the plaintext body alone in it:
/// a ticks body (`encrypted`) is decrypted, a gap body checked. `false` when it does not
/// authenticate (the payload is then left as it was).
pub(crate) fn open_block(
    key: &JournalKey,
    file_id: &[u8; FILE_ID_LEN],
    offset: u64,
    header: &[u8],
    payload: &mut Vec<u8>,
    encrypted: bool,
) -> bool {
    if payload.len() < SEAL_OVERHEAD {
        return false;
    }
    let body_len = payload.len() - SEAL_OVERHEAD;
    let nonce = XNonce::from(<[u8; NONCE_LEN]>::try_from(&payload[..NONCE_LEN]).expect("24 bytes"));
    let tag =
        Tag::<XChaCha20Poly1305>::from(<[u8; TAG_LEN]>::try_from(&payload[NONCE_LEN + body_len..]).expect("16 bytes"));
    let aad = block_aad(file_id, offset, header);
    let cipher = key.cipher();
    let ok = if encrypted {
        cipher
            .decrypt_inout_detached(&nonce, &aad, (&mut payload[NONCE_LEN..NONCE_LEN + body_len]).into(), &tag)
            .is_ok()
    } else {
        let aad = [&aad[..], &payload[NONCE_LEN..NONCE_LEN + body_len]].concat();
        cipher.decrypt_inout_detached(&nonce, &aad, (&mut [][..]).into(), &tag).is_ok()
    };
    if ok {
        strip(payload);
    }
    ok
}

/// Leaves the body alone in a sealed payload (without checking anything).
pub(crate) fn strip(payload: &mut Vec<u8>) {
    let body_len = payload.len().saturating_sub(SEAL_OVERHEAD);
    payload.copy_within(NONCE_LEN..NONCE_LEN + body_len, 0);
    payload.truncate(body_len);
}
