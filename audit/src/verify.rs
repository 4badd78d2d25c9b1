//! Verification: [`verify`] checks the chain and the head file and returns a [`Report`] of
//! [`Problem`]s; [`read_lines`] reads the log back.

use std::{
    fs::{self, File},
    io::{self, Read},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use serde::Serialize;

use crate::{
    chain::{GENESIS, Probe, sha256_hex},
    head::{FILE_MODE, Head, head_path},
    record::Record,
};

/// The log (or its head file) could not be read at all.
#[derive(Debug, thiserror::Error)]
#[error("audit log {}: {source}", path.display())]
pub struct VerifyError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

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
    /// An anchored line no longer has the anchored hash, or its `seq` is gone: the log was rewritten
    /// at or before that `seq` (only with an anchor, [`verify_anchored`](crate::verify_anchored)).
    AnchorMismatch,
    /// The anchor recorded a later `seq` than the log's end: lines were cut off the end, whatever
    /// the head file says.
    AnchorBeyondEnd,
    /// A line of the anchor file is not an anchor.
    AnchorMalformed,
    /// A keyed anchor's MAC does not verify under its key version (the line was written or edited
    /// without the key, or a line of its chain was deleted), or an unkeyed anchor follows keyed
    /// ones (only with keys, [`verify_anchored_keyed`](crate::verify_anchored_keyed)).
    AnchorForged,
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
    /// The anchor checked, with [`verify_anchored`](crate::verify_anchored).
    pub anchor: Option<AnchorSummary>,
}

/// What [`verify_anchored`](crate::verify_anchored) compared.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AnchorSummary {
    /// The anchor file.
    pub file: PathBuf,
    /// Anchors in it.
    pub anchors: u64,
    /// Anchors whose `seq` and hash the log still has.
    pub matched: u64,
    /// The last anchor's `seq` and time.
    pub last_seq: Option<u64>,
    pub last_ts: Option<String>,
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
    verify_lines(path).map(|(report, _)| report)
}

/// One line of the log as [`verify_lines`] saw it: its `seq` (if it is an entry) and its hash.
pub(crate) struct LineHash {
    pub(crate) seq: Option<u64>,
    pub(crate) hash: String,
}

/// [`verify`], also handing back every line's `seq` and hash (for the anchor check).
pub(crate) fn verify_lines(path: &Path) -> Result<(Report, Vec<LineHash>), VerifyError> {
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
    let mut seqs: Vec<Option<u64>> = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        let n = i as u64 + 1;
        let prev_hash = hashes.last().map_or(GENESIS, String::as_str);
        match serde_json::from_slice::<Probe>(line) {
            Err(e) => {
                problem(n, ProblemKind::Malformed, format!("line {n}: not an audit entry ({e})"));
                expected += 1; // it took a place in the sequence
                seqs.push(None);
            }
            Ok(probe) => {
                seqs.push(Some(probe.seq));
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
    let lines = seqs.into_iter().zip(hashes).map(|(seq, hash)| LineHash { seq, hash }).collect();
    Ok((report, lines))
}

/// The log's lines (under a shared lock), each with its parsed record when it is one.
pub fn read_lines(path: &Path) -> Result<Vec<(String, Option<Record>)>, VerifyError> {
    let bytes = read_locked(path).map_err(|source| VerifyError { path: path.to_owned(), source })?;
    Ok(String::from_utf8_lossy(&bytes)
        .lines()
        .map(|line| (line.to_owned(), serde_json::from_str::<Record>(line).ok()))
        .collect())
}

/// The whole file, read under a shared lock so that no append is half done.
fn read_locked(path: &Path) -> io::Result<Vec<u8>> {
    let mut file = File::open(path)?;
    file.lock_shared()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}
