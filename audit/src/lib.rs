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
//! files can rewrite every line after an edit, renumber, and rewrite the head: cutting off the last
//! lines and rewriting `<log>.head` to match the new last line verifies clean. Without an anchor the
//! log is tamper-*evident* against edits by hand and against accidents, not proof against its own
//! writer. Keep it out of reach of the operators it records (own it by the service user, run
//! operations through `sudo -u`), anchor it, and copy it off the host if that matters.
//!
//! # The anchor
//!
//! An anchor is the log's head recorded by a witness the log's writer cannot impersonate: a
//! [`Witness`] running under another uid (qilin-recorder's `[[audit_anchor]]`, docs/SIDECARS.md)
//! reads the log through a read-only descriptor every few seconds and, when its last whole line
//! changed, appends that line's `seq` and hash with the time to an anchor file only the witness
//! can write ([`Anchor`], one fsynced JSON line each; the witness never writes the log).
//! [`verify_anchored`] (`qilinctl audit verify --anchor FILE`) checks the chain as [`verify`] does
//! and then every anchor: the log must still have a line with the anchored `seq` and that line must
//! still hash to the anchored hash ([`ProblemKind::AnchorMismatch`]), and the log must not end
//! before the last anchored `seq` ([`ProblemKind::AnchorBeyondEnd`]).
//!
//! What it adds: a truncation with a rewritten head is caught once the cut lines were anchored; a
//! rewrite from an edited line on (every later line re-chained, the head rewritten) is caught when
//! any anchor is at or after the edited line. What it does not: changes made before the first
//! anchoring, and changes to lines written after the last anchoring (the window between two
//! rounds, `audit_anchor_interval_ms`) as long as nothing anchored is touched; an attacker who
//! also controls the witness's uid (or root), who can rewrite the anchor too; and a deleted or
//! replaced anchor file is not detected by the log: `verify_anchored` on a missing anchor file is
//! an error, never a pass, so keep the anchor's path in the check and copy it off the host if that
//! matters. The anchor carries no key; a keyed anchor (an HMAC with the managed `audit-signing`
//! key, issue 23) adds its key version and MAC to the same line, which readers of this format
//! ignore.
//!
//! # Where
//!
//! [`resolve_path`]: an explicit path (`--audit-log` / `--log`), else `$QILIN_AUDIT_LOG`, else
//! [`default_path`]: `$XDG_STATE_HOME/qilin/audit.jsonl`, `~/.local/state/qilin/audit.jsonl`, or
//! `state/audit.jsonl` without a home, so a newcomer's commands work without root. Production sets
//! `QILIN_AUDIT_LOG=/var/log/qilin/audit.jsonl` for the service user.

#![deny(unsafe_code, unsafe_op_in_unsafe_fn)]

mod anchor;
mod anchor_check;
mod chain;
mod head;
mod location;
mod mask;
mod record;
mod verify;
mod witness;
mod writer;

#[cfg(test)]
mod anchor_tests;
#[cfg(test)]
mod tests;

pub use anchor::{Anchor, AnchorFile, anchor_mac, append_anchor, read_anchor_file};
pub use anchor_check::{verify_anchored, verify_anchored_keyed};
pub use chain::{GENESIS, sha256_hex};
pub use head::{FILE_MODE, Head, head_path};
pub use location::{ENV_PATH, default_path, resolve_path};
pub use mask::{MASK, is_secret_key, mask_args};
/// Timestamps of the log: RFC 3339 UTC with nanoseconds (`qilin_market::date`).
pub use qilin_market::date::rfc3339_ns;
pub use record::{Entry, Operator, Record};
pub use verify::{AnchorSummary, Problem, ProblemKind, Report, VerifyError, read_lines, verify};
pub use witness::{LOCK_WAIT, Observation, Witness, WitnessError};
pub use writer::{AuditError, AuditLog};
