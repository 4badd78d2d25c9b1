//! Secrets of qilin-feed: where they come from, what they must look like, and the checks
//! `qilinctl validate-env` and `qilin-secrets` run before anything uses them.
//!
//! - [`schema`]: the keys (CTP primary/backup accounts, NATS credentials, rate-limit tokens, the
//!   master key), which profile requires which, and their formats.
//! - [`source`]: loading from the process environment, a dotenv file or a directory of secret
//!   files (one file per key, as Vault Agent renders them). Every value goes into a
//!   [`SecretString`] as soon as it is read; file buffers are zeroized.
//! - [`dotenv`]: the dotenv line parser (no environment substitution, no value in errors).
//! - [`mod@validate`]: every problem at once, each with its key and a reason, never the value.
//!
//! - [`managed`]: the NATS credentials file `qilinctl keys render-nats` writes for qilin-nats.
//! - [`schedule`]: the managed keys' schedule (no material) that `qilinctl keys rotate` publishes for
//!   the metrics.
//! - [`file`](mod@file): the one secret-file loader (`O_NOFOLLOW`, checked on the open descriptor, private
//!   mode required), used for every secret read from a file, including the sidecars' single-value
//!   files ([`file::load`]).
//!
//! `qilinctl validate-env`, `qilin-secrets` and the sidecars all take this module, so they run
//! exactly the same checks.

pub mod dotenv;
pub mod file;
pub mod managed;
pub mod schedule;
pub mod schema;
pub mod source;
pub mod validate;

use std::{collections::BTreeMap, fmt, path::PathBuf};

pub use schema::Profile;
use secrecy::SecretString;
pub use source::{SourceError, load};
pub use validate::validate;

/// One problem: the key (or, for a whole file, its path) and what is wrong. Never the value.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// The key, or the path of a dotenv file for a problem of the file itself.
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

impl Problem {
    pub(crate) fn new(key: impl Into<String>, reason: impl Into<String>) -> Problem {
        Problem { key: key.into(), reason: reason.into() }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

/// Where secrets are read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The process environment (only our keys are taken).
    Env,
    /// A dotenv file.
    File(PathBuf),
    /// A directory of secret files, one per key, file name = key.
    Dir(PathBuf),
}

impl Source {
    /// A file or a directory, whichever `path` is (a path that cannot be looked at is a file, so
    /// the error names it when loading).
    pub fn from_path(path: impl Into<PathBuf>) -> Source {
        let path = path.into();
        if path.is_dir() { Source::Dir(path) } else { Source::File(path) }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Env => f.write_str("environment"),
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::Dir(p) => write!(f, "directory {}", p.display()),
        }
    }
}

/// Where one value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The process environment.
    Env,
    /// Line `line` (from 1) of the dotenv file.
    Line(usize),
    /// A secret file, with its permission bits.
    File {
        /// The file.
        path: PathBuf,
        /// `mode & 0o777`.
        mode: u32,
    },
}

/// One loaded value.
#[derive(Debug)]
pub struct Value {
    /// The value, redacted in `Debug`.
    pub secret: SecretString,
    /// Where it came from.
    pub origin: Origin,
}

/// What a source held: the values (first occurrence of each key) and the problems found while
/// reading (duplicates, unparseable lines, unknown keys, non-UTF-8 values).
#[derive(Debug)]
pub struct Loaded {
    /// The source.
    pub source: Source,
    /// Permission bits of the dotenv file (`None` for the environment and directories).
    pub file_mode: Option<u32>,
    /// `(st_dev, st_ino)` of the dotenv file read (`None` for the environment and directories).
    pub file_identity: Option<(u64, u64)>,
    /// Values by key.
    pub values: BTreeMap<String, Value>,
    /// Problems found while reading.
    pub problems: Vec<Problem>,
}

impl Loaded {
    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&SecretString> {
        self.values.get(key).map(|v| &v.secret)
    }

    /// The keys held, sorted (names only).
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }
}

/// Loads `source` and validates it for `profile`: the loaded set and every problem, or an error
/// when the source itself cannot be read.
pub fn check(source: &Source, profile: Profile) -> Result<(Loaded, Vec<Problem>), SourceError> {
    let loaded = load(source)?;
    let problems = validate(&loaded, profile);
    Ok((loaded, problems))
}
