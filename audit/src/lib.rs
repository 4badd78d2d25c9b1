//! The audit log: one JSON line per operation, hash-chained, shared by qilin-core, the sidecars and
//! `qilinctl` (crate `qilin-audit`).
//!
//! # Format
//!
//! Each line is one [`Record`], its fields in this order:
//!
//! ```text
//! {"seq":3,"prev":"<64 hex>","ts":"2026-03-02T01:30:00.123456789Z","ts_ns":1772415000123456789,
//!  "operator":{"user":"qilin","uid":990,"sudo_user":"alice"},"host":"md01","pid":4242,
//!  "program":"qilinctl","command":"subscribe","args":["subscribe","rb2605"],"exit_code":0,
//!  "actions":[{"reply":{"index":0,"instrument":"rb2605","ok":true},"request":"subscribe rb2605",
//!  "socket":"/tmp/qilin-qilin.sock"}]}
//! ```
//!
//! - `seq` counts entries from 1; `prev` is the SHA-256 (lowercase hex) of the previous line's exact
//!   bytes without its newline, and [`GENESIS`] (64 zeros) on the first line.
//! - `ts` is UTC RFC 3339 with nanoseconds, `ts_ns` the same instant in ns since the Unix epoch.
//! - `operator.user` is the login name of the *real* uid (from the password database; the uid in
//!   decimal if it has no entry), `sudo_user` is `$SUDO_USER` when set (informational: whoever can
//!   run as the uid can set it).
//! - `args` is the program's argv without argv\[0\], masked by [`mask_args`]; `actions` are written
//!   as given: callers put names, ids and replies there, never secret values.
//!
//! # Writing
//!
//! [`AuditLog::append`] opens the file `O_APPEND` (creating it with mode 0640, and its directory with
//! 0750), takes an exclusive `flock` on it, reads the last line and the head file, writes the new line
//! with one `write`, fsyncs, then replaces the head file `<log>.head` (`{"seq":N,"hash":"<sha256 of
//! line N>"}`: temporary file, fsync, rename, fsync of the directory) and only then drops the lock.
//! Several writers (threads or processes, each with its own `AuditLog` or not) therefore produce
//! one chain. An append never repairs evidence: after deleted lines the new `seq` continues from the
//! larger of the last line's and the head's, so `verify` keeps reporting the gap.
//!
//! # What the chain detects, and what it cannot
//!
//! [`verify`] detects an edited line (the next line's `prev` no longer matches; for the last line,
//! the head file's hash), an inserted line and a deleted line (`seq` out of order and `prev`
//! mismatch at the line after it), a deleted last line or lines (the head file records a higher
//! `seq`), and a torn write (no final newline). A hash chain alone cannot see the tail being cut off,
//! which is what the head file is for; and the chain carries no key, so someone who can write both
//! files can rewrite every line after an edit, renumber, and rewrite the head: the log is tamper-
//! *evident* against edits by hand and against accidents, not proof against its own writer. Keep
//! it out of reach of the operators it records (own it by the service user, run operations through
//! `sudo -u`), and copy it off the host if that matters.
//!
//! # Where
//!
//! [`resolve_path`]: an explicit path (`--audit-log` / `--log`), else `$QILIN_AUDIT_LOG`, else
//! [`default_path`]: `$XDG_STATE_HOME/qilin/audit.jsonl`, `~/.local/state/qilin/audit.jsonl`, or
//! `state/audit.jsonl` without a home, so a newcomer's commands work without root. Production sets
//! `QILIN_AUDIT_LOG=/var/log/qilin/audit.jsonl` for the service user.

#![deny(unsafe_code, unsafe_op_in_unsafe_fn)]

mod chain;
mod head;
mod location;
mod mask;
mod record;
mod verify;
mod writer;

#[cfg(test)]
mod tests;

pub use chain::{GENESIS, sha256_hex};
pub use head::{FILE_MODE, Head, head_path};
pub use location::{ENV_PATH, default_path, resolve_path};
pub use mask::{MASK, is_secret_key, mask_args};
/// Timestamps of the log: RFC 3339 UTC with nanoseconds (`qilin_market::date`).
pub use qilin_market::date::rfc3339_ns;
pub use record::{Entry, Operator, Record};
pub use verify::{Problem, ProblemKind, Report, VerifyError, read_lines, verify};
pub use writer::{AuditError, AuditLog};
