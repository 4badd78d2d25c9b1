//! The entry a caller gives and the record (one JSON line) the log holds; the order of the fields of
//! [`Record`] is the order of the keys on a line.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One operation, as the caller describes it; [`AuditLog::append`](crate::AuditLog::append) adds who, where, when and the chain.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Entry {
    /// The operation: `subscribe`, `failover`, `keys rotate`, …
    pub command: String,
    /// The command line without argv\[0\] (masked on append).
    pub args: Vec<String>,
    /// The process's exit code for this operation.
    pub exit_code: i32,
    /// What was done, in order, with each step's outcome.
    pub actions: Vec<Value>,
}

/// Who ran the operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operator {
    /// Login name of the real uid.
    pub user: String,
    /// The real uid.
    pub uid: u32,
    /// `$SUDO_USER`, when set.
    pub sudo_user: Option<String>,
}

/// One line of the log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Position in the chain, from 1.
    pub seq: u64,
    /// SHA-256 hex of the previous line's bytes (without its newline); [`GENESIS`](crate::GENESIS) on line 1.
    pub prev: String,
    /// UTC RFC 3339 with nanoseconds.
    pub ts: String,
    /// The same instant in ns since the Unix epoch.
    pub ts_ns: i64,
    pub operator: Operator,
    /// The host name.
    pub host: String,
    /// The writing process.
    pub pid: u32,
    /// File name of the writing program (`qilinctl`, `qilin-secrets`, …).
    pub program: String,
    /// [`Entry::command`].
    pub command: String,
    /// [`Entry::args`], masked by [`mask_args`](crate::mask_args).
    pub args: Vec<String>,
    /// [`Entry::exit_code`].
    pub exit_code: i32,
    /// [`Entry::actions`], as given (object keys sorted, as serde_json writes them).
    pub actions: Vec<Value>,
}
