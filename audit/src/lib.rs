//! The audit log: one JSON line per operation, hash-chained, shared by qilin-core, the sidecars and
//! `qilinctl` (crate `qilin-audit`; `qilin_tools::audit` re-exports it).
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

use std::{
    ffi::OsString,
    fs::{self, DirBuilder, File, OpenOptions},
    io::{self, Read, Write},
    os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// `prev` of the first line.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// The environment variable naming the log.
pub const ENV_PATH: &str = "QILIN_AUDIT_LOG";
/// What a masked secret is replaced by.
pub const MASK: &str = "***";
/// Mode of the log and of its head file.
pub const FILE_MODE: u32 = 0o640;

/// One operation, as the caller describes it; [`AuditLog::append`] adds who, where, when and the chain.
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
    /// SHA-256 hex of the previous line's bytes (without its newline); [`GENESIS`] on line 1.
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
    /// [`Entry::args`], masked by [`mask_args`].
    pub args: Vec<String>,
    /// [`Entry::exit_code`].
    pub exit_code: i32,
    /// [`Entry::actions`], as given (object keys sorted, as serde_json writes them).
    pub actions: Vec<Value>,
}

/// The head file: the last line's `seq` and SHA-256.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub seq: u64,
    pub hash: String,
}

/// Writing the log failed; the message names the file and the step.
#[derive(Debug, thiserror::Error)]
#[error("audit log {}: {step}: {source}", path.display())]
pub struct AuditError {
    pub path: PathBuf,
    pub step: &'static str,
    #[source]
    pub source: io::Error,
}

/// The log (or its head file) could not be read at all.
#[derive(Debug, thiserror::Error)]
#[error("audit log {}: {source}", path.display())]
pub struct VerifyError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// An audit log file. Cheap to keep: every append opens, locks and closes the file, so it is
/// `Sync` and survives the file being replaced.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    operator: Operator,
    host: String,
    program: String,
}

impl AuditLog {
    /// Opens `path` for appending, creating it (mode 0640) and its directory (0750) if missing.
    /// Fails when it cannot be written, so an operation can be refused before it is done.
    pub fn open(path: impl AsRef<Path>) -> Result<AuditLog, AuditError> {
        let path = path.as_ref().to_owned();
        open_for_append(&path).map_err(|source| AuditError { path: path.clone(), step: "opening", source })?;
        let program = std::env::args_os()
            .next()
            .map(|a| Path::new(&a).file_name().unwrap_or(&a).to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(AuditLog { path, operator: operator(), host: hostname(), program })
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `entry` as the next line of the chain (see the module doc for the steps) and returns
    /// the record written.
    pub fn append(&self, entry: &Entry) -> Result<Record, AuditError> {
        let err = |step| move |source| AuditError { path: self.path.clone(), step, source };
        let file = open_for_append(&self.path).map_err(err("opening"))?;
        file.lock().map_err(err("locking"))?; // released when `file` is closed
        let len = file.metadata().map_err(err("reading metadata"))?.len();
        let (prev, last_seq, torn) = if len == 0 {
            (GENESIS.to_owned(), 0, false)
        } else {
            let (line, terminated) = last_line(&file, len).map_err(err("reading the last line"))?;
            let seq = match serde_json::from_slice::<Probe>(&line) {
                Ok(probe) => probe.seq,
                Err(_) => count_lines(&file, len).map_err(err("counting lines"))?,
            };
            (sha256_hex(&line), seq, !terminated)
        };
        let head_seq = read_head(&self.path).ok().flatten().map_or(0, |h| h.seq);
        let ts_ns = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64);
        let record = Record {
            seq: last_seq.max(head_seq) + 1,
            prev,
            ts: rfc3339_ns(ts_ns),
            ts_ns,
            operator: self.operator.clone(),
            host: self.host.clone(),
            pid: std::process::id(),
            program: self.program.clone(),
            command: entry.command.clone(),
            args: mask_args(&entry.args),
            exit_code: entry.exit_code,
            actions: entry.actions.clone(),
        };
        let line = serde_json::to_vec(&record).map_err(|e| err("encoding")(e.into()))?;
        let mut buf = Vec::with_capacity(line.len() + 2);
        if torn {
            buf.push(b'\n'); // end the torn line; it stays as evidence and this line chains from it
        }
        buf.extend_from_slice(&line);
        buf.push(b'\n');
        if let Err(e) = (&file).write_all(&buf).and_then(|()| file.sync_all()) {
            let _ = file.set_len(len); // we hold the lock: take back a partial line
            return Err(err("writing")(e));
        }
        write_head(&self.path, &Head { seq: record.seq, hash: sha256_hex(&line) }).map_err(err("writing the head"))?;
        Ok(record)
    }
}

/// The head file of the log at `log`: `<log>.head`.
pub fn head_path(log: &Path) -> PathBuf {
    let mut name = log.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".head");
    log.with_file_name(name)
}

/// The log path: `explicit`, else `$QILIN_AUDIT_LOG`, else [`default_path`].
pub fn resolve_path(explicit: Option<&Path>) -> PathBuf {
    match explicit {
        Some(path) => path.to_owned(),
        None => match std::env::var_os(ENV_PATH).filter(|v| !v.is_empty()) {
            Some(path) => PathBuf::from(path),
            None => default_path(),
        },
    }
}

/// `$XDG_STATE_HOME/qilin/audit.jsonl`, else `$HOME/.local/state/qilin/audit.jsonl`, else
/// `state/audit.jsonl`.
pub fn default_path() -> PathBuf {
    default_path_from(std::env::var_os("XDG_STATE_HOME"), std::env::var_os("HOME"))
}

fn default_path_from(xdg_state_home: Option<OsString>, home: Option<OsString>) -> PathBuf {
    // The XDG spec says a relative value is invalid and must be ignored.
    let absolute = |v: OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    if let Some(dir) = xdg_state_home.and_then(absolute) {
        dir.join("qilin/audit.jsonl")
    } else if let Some(home) = home.and_then(absolute) {
        home.join(".local/state/qilin/audit.jsonl")
    } else {
        PathBuf::from("state/audit.jsonl")
    }
}

// ---------------------------------------------------------------------------------------------
// Masking

/// Words that make a key secret. A key is split into words at every non-alphanumeric character and
/// at lower→upper case changes (`AuthCode` → `auth`, `code`); it is secret when a word, without one
/// plural `s`, ends with one of these (`password`, `NKEY`, `apikey`, `tokens`), or when `auth` is
/// followed by `code`. Over-masking (`monkey`, `--key-id`) is accepted: it only hides a value.
const SECRET_WORDS: [&str; 10] =
    ["password", "passwd", "passphrase", "secret", "token", "key", "seed", "cred", "credential", "authcode"];

/// Whether `key` (a flag like `--nats-token`, or the left side of `KEY=value`) names a secret.
pub fn is_secret_key(key: &str) -> bool {
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut prev_lower = false;
    for c in key.chars() {
        let boundary = !c.is_ascii_alphanumeric() || (prev_lower && c.is_ascii_uppercase());
        if boundary && !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
        if c.is_ascii_alphanumeric() {
            word.push(c.to_ascii_lowercase());
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
    }
    if !word.is_empty() {
        words.push(word);
    }
    let secret_word = |w: &str| {
        let w = w.strip_suffix('s').unwrap_or(w);
        SECRET_WORDS.iter().any(|s| w.ends_with(s))
    };
    words.iter().any(|w| secret_word(w)) || words.windows(2).any(|p| p[0] == "auth" && p[1] == "code")
}

/// Masks secrets in a command line, argument by argument:
///
/// - `KEY=value` / `--key=value` with a secret key (see [`is_secret_key`]) → `KEY=***`;
/// - a flag with a secret name and no `=` (`--password`, `-token`) masks the next argument unless
///   that one starts with `--` (`--password hunter2` → `--password ***`);
/// - `scheme://user:pass@host…` → `scheme://user:***@host…`, `scheme://token@host` →
///   `scheme://***@host`;
/// - anything else is kept.
///
/// Secrets have no business on a command line (they show in `ps`); this is the second line of
/// defence, not a licence.
pub fn mask_args<S: AsRef<str>>(args: &[S]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut mask_next = false;
    for arg in args.iter().map(AsRef::as_ref) {
        if std::mem::take(&mut mask_next) && !arg.starts_with("--") {
            out.push(MASK.to_owned());
            continue;
        }
        match arg.split_once('=') {
            Some((key, _)) if is_secret_key(key) => out.push(format!("{key}={MASK}")),
            Some((key, value)) => out.push(format!("{key}={}", mask_url(value))),
            None => {
                mask_next = arg.starts_with('-') && is_secret_key(arg);
                out.push(mask_url(arg));
            }
        }
    }
    out
}

/// Masks the user information of a URL (`nats://u:p@h` → `nats://u:***@h`, `nats://t@h` →
/// `nats://***@h`).
fn mask_url(s: &str) -> String {
    let Some(scheme_end) = s.find("://").map(|i| i + 3) else { return s.to_owned() };
    let authority_end = s[scheme_end..].find(['/', '?', '#']).map_or(s.len(), |i| scheme_end + i);
    let Some(at) = s[scheme_end..authority_end].rfind('@').map(|i| scheme_end + i) else { return s.to_owned() };
    let userinfo = &s[scheme_end..at];
    let masked = match userinfo.split_once(':') {
        Some((user, _)) => format!("{user}:{MASK}"),
        None => MASK.to_owned(),
    };
    format!("{}{masked}{}", &s[..scheme_end], &s[at..])
}

// ---------------------------------------------------------------------------------------------
// Verification

/// What is wrong, for programs (the [`Problem`]'s `detail` says it for people).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// Not an audit entry (not JSON, or no `seq`/`prev`).
    Malformed,
    /// `seq` jumps forward: lines before this one were deleted.
    SeqGap,
    /// `seq` repeats or goes back: a line was inserted (or duplicated) before this one.
    SeqBack,
    /// `prev` is not the hash of the line before: that line was edited or inserted, or one was deleted.
    PrevMismatch,
    /// The last line has no newline: an interrupted write or an edit.
    Torn,
    /// The head file records a later `seq` than the last line: lines were deleted from the end.
    TailDeleted,
    /// The head file disagrees with the last line: the last line was edited, or lines were added
    /// without going through an append.
    HeadMismatch,
    /// The log has lines but no head file: a deleted tail could not be detected.
    HeadMissing,
    /// The head file is not a head (not JSON).
    HeadMalformed,
}

/// One finding of [`verify`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The line it is about (1-based, as in the file); one past the last line for a deleted tail.
    pub line: u64,
    pub kind: ProblemKind,
    pub detail: String,
}

/// The result of [`verify`]: clean when `problems` is empty.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Lines in the log.
    pub lines: u64,
    /// `seq` of the last well-formed line.
    pub last_seq: u64,
    /// The head file, if present and readable.
    pub head: Option<Head>,
    pub problems: Vec<Problem>,
    /// Not tampering, but worth knowing (loose file mode, a head one entry behind after a crash).
    pub notes: Vec<String>,
}

impl Report {
    /// No problem found.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks the whole chain of the log at `path` and its head file; `Err` only when they cannot be
/// read. The log and the head are read under a shared lock, so an append is never seen half done.
pub fn verify(path: &Path) -> Result<Report, VerifyError> {
    let unreadable = |source| VerifyError { path: path.to_owned(), source };
    let mut file = File::open(path).map_err(unreadable)?;
    file.lock_shared().map_err(unreadable)?; // held until the head is read too
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(unreadable)?;
    let head = match fs::read(head_path(path)) {
        Ok(b) => Some(serde_json::from_slice::<Head>(&b).map_err(|e| e.to_string())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(source) => return Err(VerifyError { path: head_path(path), source }),
    };
    let mode = file.metadata().map_err(unreadable)?.mode() & 0o7777;
    drop(file);

    let mut report = Report::default();
    if mode & !FILE_MODE != 0 {
        report.notes.push(format!("file mode {mode:04o} is looser than {FILE_MODE:04o}"));
    }
    let mut problem = |line, kind, detail| report.problems.push(Problem { line, kind, detail });
    let terminated = bytes.last().is_none_or(|&b| b == b'\n');
    let body = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
    let lines: Vec<&[u8]> = if bytes.is_empty() { Vec::new() } else { body.split(|&b| b == b'\n').collect() };
    let (mut expected, mut last_seq) = (1u64, 0u64);
    let mut hashes: Vec<String> = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        let n = i as u64 + 1;
        let prev_hash = hashes.last().map_or(GENESIS, String::as_str);
        match serde_json::from_slice::<Probe>(line) {
            Err(e) => {
                problem(n, ProblemKind::Malformed, format!("line {n}: not an audit entry ({e})"));
                expected += 1; // it took a place in the sequence
            }
            Ok(probe) => {
                if probe.seq > expected {
                    let missing = probe.seq - expected;
                    problem(
                        n,
                        ProblemKind::SeqGap,
                        format!(
                            "line {n}: seq {}, expected {expected}: {missing} line(s) (seq {expected}..={}) deleted before it",
                            probe.seq,
                            probe.seq - 1
                        ),
                    );
                } else if probe.seq < expected {
                    problem(
                        n,
                        ProblemKind::SeqBack,
                        format!(
                            "line {n}: seq {}, expected {expected}: line {n} or a line before it was inserted or duplicated",
                            probe.seq
                        ),
                    );
                }
                let before_prev = hashes.len().checked_sub(2).map(|i| hashes[i].as_str());
                if probe.prev != prev_hash && Some(probe.prev.as_str()) == before_prev {
                    let detail = format!(
                        "line {n}: prev is the SHA-256 of line {}, not of line {}: line {} or line {n} was inserted",
                        n - 2,
                        n - 1,
                        n - 1
                    );
                    problem(n, ProblemKind::PrevMismatch, detail);
                } else if probe.prev != prev_hash {
                    let detail = if n == 1 {
                        "line 1: prev is not the genesis value: lines were deleted from the start, or line 1 was edited"
                            .to_owned()
                    } else {
                        format!(
                            "line {n}: prev does not match the SHA-256 of line {}: line {} was edited or inserted, a line \
                             between them was deleted, or line {n}'s prev was edited",
                            n - 1,
                            n - 1
                        )
                    };
                    problem(n, ProblemKind::PrevMismatch, detail);
                }
                expected = probe.seq + 1;
                last_seq = probe.seq;
            }
        }
        hashes.push(sha256_hex(line));
    }
    let count = lines.len() as u64;
    if !terminated {
        problem(
            count,
            ProblemKind::Torn,
            format!("line {count}: no newline at the end: an interrupted write or an edit"),
        );
    }
    match head {
        None if count > 0 => problem(
            count + 1,
            ProblemKind::HeadMissing,
            format!(
                "head file {} is missing: a deletion of the last lines cannot be ruled out",
                head_path(path).display()
            ),
        ),
        None => {}
        Some(Err(e)) => problem(count + 1, ProblemKind::HeadMalformed, format!("head file is not a head ({e})")),
        Some(Ok(head)) => {
            let last_hash = hashes.last().map_or(GENESIS, String::as_str);
            let before_last = hashes.len().checked_sub(2).map_or(GENESIS, |i| hashes[i].as_str());
            if head.seq == last_seq && head.hash == last_hash {
                // In step.
            } else if head.seq > last_seq {
                problem(
                    count + 1,
                    ProblemKind::TailDeleted,
                    format!(
                        "after line {count}: the head file records seq {} but the log ends at seq {last_seq}: {} line(s) \
                         deleted from the end",
                        head.seq,
                        head.seq - last_seq
                    ),
                );
            } else if head.seq == last_seq {
                problem(
                    count,
                    ProblemKind::HeadMismatch,
                    format!(
                        "line {count} (seq {last_seq}): its hash is not the one the head file records: it was edited"
                    ),
                );
            } else if head.seq + 1 == last_seq && head.hash == before_last {
                report.notes.push(format!(
                    "the head file is one entry behind (seq {}): an append was interrupted before updating it; the next \
                     append brings it up to date",
                    head.seq
                ));
            } else {
                problem(
                    count,
                    ProblemKind::HeadMismatch,
                    format!(
                        "line {count} (seq {last_seq}): the head file records seq {}: lines were added or edited without \
                         an append",
                        head.seq
                    ),
                );
            }
            report.head = Some(head);
        }
    }
    report.problems.sort_by_key(|p| p.line); // stable: findings about one line keep their order
    report.lines = count;
    report.last_seq = last_seq;
    Ok(report)
}

/// The log's lines (under a shared lock), each with its parsed record when it is one.
pub fn read_lines(path: &Path) -> Result<Vec<(String, Option<Record>)>, VerifyError> {
    let bytes = read_locked(path).map_err(|source| VerifyError { path: path.to_owned(), source })?;
    Ok(String::from_utf8_lossy(&bytes)
        .lines()
        .map(|line| (line.to_owned(), serde_json::from_str::<Record>(line).ok()))
        .collect())
}

// ---------------------------------------------------------------------------------------------
// Plumbing

/// The chain fields of a line (other fields are free to evolve).
#[derive(Deserialize)]
struct Probe {
    seq: u64,
    prev: String,
}

/// SHA-256 of `bytes` as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// `ns` since the Unix epoch as UTC RFC 3339 with nine fraction digits.
pub fn rfc3339_ns(ns: i64) -> String {
    let (secs, nanos) = (ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000));
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's `civil_from_days`).
    let z = days + 719_468;
    let (era, doe) = (z.div_euclid(146_097), z.rem_euclid(146_097));
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z", sod / 3600, sod / 60 % 60, sod % 60)
}

fn operator() -> Operator {
    let uid = nix::unistd::getuid();
    let user = match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) => user.name,
        _ => uid.as_raw().to_string(),
    };
    let sudo_user = std::env::var("SUDO_USER").ok().filter(|u| !u.is_empty());
    Operator { user, uid: uid.as_raw(), sudo_user }
}

fn hostname() -> String {
    nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Opens the log read + append, creating it with mode 0640 (whatever the umask) and its directory.
fn open_for_append(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        DirBuilder::new().recursive(true).mode(0o750).create(dir)?;
    }
    match OpenOptions::new().read(true).append(true).create_new(true).mode(FILE_MODE).open(path) {
        Ok(file) => {
            file.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
            sync_dir(path)?;
            Ok(file)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => OpenOptions::new().read(true).append(true).open(path),
        Err(e) => Err(e),
    }
}

fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()
}

/// The whole file, read under a shared lock so that no append is half done.
fn read_locked(path: &Path) -> io::Result<Vec<u8>> {
    let mut file = File::open(path)?;
    file.lock_shared()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The last line of a non-empty file without its newline, and whether it had one.
fn last_line(file: &File, len: u64) -> io::Result<(Vec<u8>, bool)> {
    let mut last = [0u8];
    file.read_exact_at(&mut last, len - 1)?;
    let terminated = last[0] == b'\n';
    let end = if terminated { len - 1 } else { len };
    let (mut start, mut pos) = (0, end);
    let mut chunk = vec![0u8; 8192];
    while pos > 0 {
        let n = chunk.len().min(pos as usize);
        pos -= n as u64;
        file.read_exact_at(&mut chunk[..n], pos)?;
        if let Some(i) = chunk[..n].iter().rposition(|&b| b == b'\n') {
            start = pos + i as u64 + 1;
            break;
        }
    }
    let mut line = vec![0u8; (end - start) as usize];
    file.read_exact_at(&mut line, start)?;
    Ok((line, terminated))
}

/// Lines in the file (a last line without newline counts).
fn count_lines(file: &File, len: u64) -> io::Result<u64> {
    let mut bytes = vec![0u8; len as usize];
    file.read_exact_at(&mut bytes, 0)?;
    let newlines = bytes.iter().filter(|&&b| b == b'\n').count() as u64;
    Ok(newlines + u64::from(bytes.last() != Some(&b'\n')))
}

fn read_head(log: &Path) -> io::Result<Option<Head>> {
    match fs::read(head_path(log)) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map(Some).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Replaces the head file atomically (the caller holds the log's lock, so one temporary name does).
fn write_head(log: &Path, head: &Head) -> io::Result<()> {
    let path = head_path(log);
    let mut tmp_name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let mut bytes = serde_json::to_vec(head).map_err(io::Error::other)?;
    bytes.push(b'\n');
    let mut file = OpenOptions::new().write(true).create(true).truncate(true).mode(FILE_MODE).open(&tmp)?;
    file.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, &path)?;
    sync_dir(&path)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::json;

    use super::*;

    fn entry(command: &str, exit_code: i32) -> Entry {
        Entry {
            command: command.into(),
            args: vec![command.into(), "rb2605".into()],
            exit_code,
            actions: vec![json!({"request": format!("{command} rb2605"), "reply": {"ok": true}})],
        }
    }

    /// A log of `n` entries in a fresh directory.
    fn log_of(n: usize) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        for i in 0..n {
            log.append(&entry(&format!("op{}", i + 1), i as i32 % 3)).unwrap();
        }
        (dir, path)
    }

    fn lines(path: &Path) -> Vec<String> {
        fs::read_to_string(path).unwrap().lines().map(str::to_owned).collect()
    }

    fn write_lines(path: &Path, lines: &[String]) {
        fs::write(path, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    }

    fn problems(path: &Path) -> Vec<(u64, ProblemKind)> {
        verify(path).unwrap().problems.iter().map(|p| (p.line, p.kind)).collect()
    }

    #[test]
    fn masking_table() {
        let table: &[(&[&str], &[&str])] = &[
            (&["--password", "hunter2", "rb2605"], &["--password", "***", "rb2605"]),
            (&["--password=hunter2"], &["--password=***"]),
            (&["CTP_PRIMARY_PASSWORD=hunter2"], &["CTP_PRIMARY_PASSWORD=***"]),
            (&["CTP_BACKUP_AUTH_CODE=0000000000000000"], &["CTP_BACKUP_AUTH_CODE=***"]),
            (&["AuthCode=abc"], &["AuthCode=***"]),
            (&["NATS_NKEY_SEED=SUAxyz"], &["NATS_NKEY_SEED=***"]),
            (&["--nats-token", "t0k"], &["--nats-token", "***"]),
            (&["--api-key", "k", "--verbose"], &["--api-key", "***", "--verbose"]),
            (
                &["apiKey=k", "passwd=p", "client_secret=s", "creds=c", "RATE_LIMIT_TOKENS=a,b"],
                &["apiKey=***", "passwd=***", "client_secret=***", "creds=***", "RATE_LIMIT_TOKENS=***"],
            ),
            (&["--key-file", "/run/secrets/k"], &["--key-file", "***"]),
            // A secret flag followed by another flag masks nothing (it was a switch).
            (&["--show-token", "--json"], &["--show-token", "--json"]),
            // Not secrets: ids, words that merely contain a secret word, plain flags.
            (
                &["subscribe", "rb2605", "--feed", "qilin", "--segment=/dev/shm/qilin"],
                &["subscribe", "rb2605", "--feed", "qilin", "--segment=/dev/shm/qilin"],
            ),
            (
                &["--passthrough", "x", "keys", "rotate", "--tokenizer=y"],
                &["--passthrough", "x", "keys", "rotate", "--tokenizer=y"],
            ),
            (&["--url", "nats://alice:s3cret@10.0.0.1:4222/x"], &["--url", "nats://alice:***@10.0.0.1:4222/x"]),
            (&["url=tls://T0KEN@host:4222"], &["url=tls://***@host:4222"]),
            (&["http://host/a@b"], &["http://host/a@b"]),
        ];
        for (input, want) in table {
            assert_eq!(mask_args(input), *want, "input {input:?}");
        }
    }

    #[test]
    fn rfc3339_with_nanoseconds() {
        assert_eq!(rfc3339_ns(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339_ns(1_772_199_000_500_000_000), "2026-02-27T13:30:00.500000000Z");
        assert_eq!(rfc3339_ns(951_782_400_000_000_001), "2000-02-29T00:00:00.000000001Z");
        assert_eq!(rfc3339_ns(-1), "1969-12-31T23:59:59.999999999Z");
        assert_eq!(rfc3339_ns(4_102_444_799_999_999_999), "2099-12-31T23:59:59.999999999Z");
    }

    #[test]
    fn default_path_prefers_xdg_then_home_then_relative() {
        let os = |s: &str| Some(OsString::from(s));
        assert_eq!(default_path_from(os("/st"), os("/home/a")), PathBuf::from("/st/qilin/audit.jsonl"));
        assert_eq!(
            default_path_from(os("rel"), os("/home/a")),
            PathBuf::from("/home/a/.local/state/qilin/audit.jsonl")
        );
        assert_eq!(default_path_from(None, None), PathBuf::from("state/audit.jsonl"));
        assert_eq!(resolve_path(Some(Path::new("/x/a.jsonl"))), PathBuf::from("/x/a.jsonl"));
    }

    #[test]
    fn a_chain_of_five_verifies_and_carries_who_when_and_what() {
        let (_dir, path) = log_of(5);
        let report = verify(&path).unwrap();
        assert!(report.is_clean(), "{report:?}");
        assert_eq!((report.lines, report.last_seq), (5, 5));
        let text = lines(&path);
        let records: Vec<Record> = text.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(records[0].prev, GENESIS);
        for i in 1..5 {
            assert_eq!(records[i].prev, sha256_hex(text[i - 1].as_bytes()), "line {}", i + 1);
        }
        assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
        assert_eq!(report.head, Some(Head { seq: 5, hash: sha256_hex(text[4].as_bytes()) }));
        let r = &records[2];
        assert_eq!((r.command.as_str(), r.exit_code, r.pid), ("op3", 2, std::process::id()));
        assert_eq!(r.args, ["op3", "rb2605"]);
        assert_eq!(r.actions, [json!({"request": "op3 rb2605", "reply": {"ok": true}})]);
        assert_eq!(r.operator.uid, nix::unistd::getuid().as_raw());
        assert!(!r.operator.user.is_empty() && !r.host.is_empty());
        assert_eq!(r.ts, rfc3339_ns(r.ts_ns));
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as i64;
        assert!(now - r.ts_ns < 600_000_000_000 && r.ts_ns <= now, "ts_ns {} vs now {now}", r.ts_ns);
        assert!(records.windows(2).all(|w| w[0].ts_ns <= w[1].ts_ns));
        // Field order is part of the format.
        assert!(text[0].starts_with(r#"{"seq":1,"prev":"0000"#), "{}", text[0]);
    }

    #[test]
    fn arguments_are_masked_when_written() {
        let (_dir, path) = log_of(0);
        let log = AuditLog::open(&path).unwrap();
        let e = Entry { args: vec!["validate-env".into(), "CTP_PRIMARY_PASSWORD=hunter2".into()], ..entry("x", 0) };
        let record = log.append(&e).unwrap();
        assert_eq!(record.args, ["validate-env", "CTP_PRIMARY_PASSWORD=***"]);
        let text = fs::read_to_string(&path).unwrap();
        assert!(!text.contains("hunter2") && text.contains("CTP_PRIMARY_PASSWORD=***"), "{text}");
    }

    #[test]
    fn files_are_created_0640_with_their_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/audit.jsonl");
        AuditLog::open(&path).unwrap().append(&entry("op", 0)).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().mode() & 0o7777;
        assert_eq!(mode(&path), 0o640);
        assert_eq!(mode(&head_path(&path)), 0o640);
        assert_eq!(mode(path.parent().unwrap()) & 0o7027, 0o0000, "directory is not group-writable or world-usable");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
        let report = verify(&path).unwrap();
        assert!(report.is_clean() && report.notes.iter().any(|n| n.contains("0666")), "{report:?}");
    }

    #[test]
    fn an_edited_field_in_line_3_is_named() {
        let (_dir, path) = log_of(5);
        let mut text = lines(&path);
        assert!(text[2].contains(r#""exit_code":2"#));
        text[2] = text[2].replace(r#""exit_code":2"#, r#""exit_code":0"#);
        write_lines(&path, &text);
        let report = verify(&path).unwrap();
        assert_eq!(problems(&path), [(4, ProblemKind::PrevMismatch)], "{report:?}");
        assert!(report.problems[0].detail.contains("line 3 was edited"), "{}", report.problems[0].detail);
    }

    #[test]
    fn an_edited_last_line_is_caught_by_the_head() {
        let (_dir, path) = log_of(5);
        let mut text = lines(&path);
        text[4] = text[4].replace("op5", "op6");
        write_lines(&path, &text);
        assert_eq!(problems(&path), [(5, ProblemKind::HeadMismatch)]);
    }

    #[test]
    fn an_inserted_line_is_named() {
        // A naive forgery: a copy of line 2 with another command, put after it.
        let (_dir, path) = log_of(5);
        let mut text = lines(&path);
        text.insert(2, text[1].replace("op2", "shutdown"));
        write_lines(&path, &text);
        let report = verify(&path).unwrap();
        assert_eq!(
            problems(&path),
            [(3, ProblemKind::SeqBack), (3, ProblemKind::PrevMismatch), (4, ProblemKind::PrevMismatch)]
        );
        assert!(report.problems[2].detail.contains("line 3 or line 4 was inserted"), "{report:?}");

        // A careful one: right seq and prev, so the line after it is what breaks.
        let (_dir, path) = log_of(5);
        let mut text = lines(&path);
        let mut forged: Record = serde_json::from_str(&text[2]).unwrap();
        forged.command = "shutdown".into();
        forged.prev = sha256_hex(text[1].as_bytes());
        text.insert(2, serde_json::to_string(&forged).unwrap());
        write_lines(&path, &text);
        let report = verify(&path).unwrap();
        assert_eq!(problems(&path), [(4, ProblemKind::SeqBack), (4, ProblemKind::PrevMismatch)], "{report:?}");
        assert!(report.problems[1].detail.contains("line 3 or line 4 was inserted"), "{report:?}");
        // The head still matches the last line: the end of the log was not touched.
        assert_eq!(report.head.map(|h| h.seq), Some(5));
    }

    #[test]
    fn a_deleted_middle_line_is_named() {
        let (_dir, path) = log_of(5);
        let mut text = lines(&path);
        text.remove(2);
        write_lines(&path, &text);
        let report = verify(&path).unwrap();
        assert_eq!(problems(&path), [(3, ProblemKind::SeqGap), (3, ProblemKind::PrevMismatch)]);
        assert!(report.problems[0].detail.contains("seq 3..=3"), "{}", report.problems[0].detail);

        // The first line too.
        let (_dir, path) = log_of(3);
        let text = lines(&path);
        write_lines(&path, &text[1..]);
        assert_eq!(problems(&path), [(1, ProblemKind::SeqGap), (1, ProblemKind::PrevMismatch)]);
    }

    #[test]
    fn a_deleted_last_line_is_caught_by_the_head() {
        let (_dir, path) = log_of(5);
        let text = lines(&path);
        write_lines(&path, &text[..4]);
        let report = verify(&path).unwrap();
        assert_eq!(problems(&path), [(5, ProblemKind::TailDeleted)], "{report:?}");
        assert!(report.problems[0].detail.contains("head file records seq 5 but the log ends at seq 4"));

        // An append afterwards keeps the evidence: it continues at seq 6, leaving a gap.
        AuditLog::open(&path).unwrap().append(&entry("after", 0)).unwrap();
        assert_eq!(problems(&path), [(5, ProblemKind::SeqGap)]);

        // What the chain cannot do alone: without the head file, a cut tail looks like a shorter log.
        let (_dir, path) = log_of(5);
        let text = lines(&path);
        write_lines(&path, &text[..4]);
        fs::remove_file(head_path(&path)).unwrap();
        assert_eq!(problems(&path), [(5, ProblemKind::HeadMissing)]);
    }

    #[test]
    fn a_head_one_behind_is_an_interrupted_append_not_tampering() {
        let (_dir, path) = log_of(3);
        let text = lines(&path);
        let behind = Head { seq: 2, hash: sha256_hex(text[1].as_bytes()) };
        fs::write(head_path(&path), serde_json::to_vec(&behind).unwrap()).unwrap();
        let report = verify(&path).unwrap();
        assert!(report.is_clean() && report.notes.iter().any(|n| n.contains("one entry behind")), "{report:?}");
        // Two behind is not a crash window.
        let behind = Head { seq: 1, hash: sha256_hex(text[0].as_bytes()) };
        fs::write(head_path(&path), serde_json::to_vec(&behind).unwrap()).unwrap();
        assert_eq!(problems(&path), [(3, ProblemKind::HeadMismatch)]);
    }

    #[test]
    fn a_torn_tail_is_reported_and_the_next_append_chains_after_it() {
        let (_dir, path) = log_of(2);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"seq":3,"prev":"ab"#).unwrap();
        drop(f);
        assert!(problems(&path).contains(&(3, ProblemKind::Torn)));
        AuditLog::open(&path).unwrap().append(&entry("next", 0)).unwrap();
        let text = lines(&path);
        assert_eq!(text.len(), 4);
        let next: Record = serde_json::from_str(&text[3]).unwrap();
        assert_eq!((next.seq, next.prev), (4, sha256_hex(text[2].as_bytes())));
        assert_eq!(problems(&path), [(3, ProblemKind::Malformed)]);
    }

    #[test]
    fn an_empty_log_is_clean_and_a_missing_one_unreadable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        assert!(verify(&path).is_err());
        AuditLog::open(&path).unwrap();
        let report = verify(&path).unwrap();
        assert!(report.is_clean() && report.lines == 0, "{report:?}");
    }

    #[test]
    fn concurrent_appends_from_threads_make_one_chain() {
        let (_dir, path) = log_of(0);
        let (threads, per_thread) = (8, 25);
        std::thread::scope(|s| {
            for t in 0..threads {
                let path = &path;
                s.spawn(move || {
                    let log = AuditLog::open(path).unwrap();
                    for i in 0..per_thread {
                        log.append(&entry(&format!("t{t}-{i}"), 0)).unwrap();
                    }
                });
            }
        });
        let report = verify(&path).unwrap();
        assert!(report.is_clean(), "{report:?}");
        assert_eq!(report.lines, threads * per_thread);
        let commands: BTreeSet<String> =
            read_lines(&path).unwrap().into_iter().map(|(_, r)| r.unwrap().command).collect();
        assert_eq!(commands.len() as u64, threads * per_thread, "every append once");
        // One AuditLog shared by threads works too (each append has its own descriptor and lock).
        let log = AuditLog::open(&path).unwrap();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..10 {
                        log.append(&entry("shared", 0)).unwrap();
                    }
                });
            }
        });
        let report = verify(&path).unwrap();
        assert!(report.is_clean() && report.last_seq == threads * per_thread + 40, "{report:?}");
    }
}
