//! The hash chain: the genesis value, the SHA-256 that links each line to the one before it, and the
//! chain fields read back from a line.

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// `prev` of the first line.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// SHA-256 of `bytes` as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The chain fields of a line (other fields are free to evolve).
#[derive(Deserialize)]
pub(crate) struct Probe {
    pub(crate) seq: u64,
    pub(crate) prev: String,
}
