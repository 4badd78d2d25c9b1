//! The witness side of an anchor: [`Witness::observe`] reads the log's last whole line through a
//! read-only descriptor and appends it to the anchor file when it changed. The periodic task that
//! calls it (under another uid than the log's writer) is qilin-recorder's.

use std::{
    fs::{File, OpenOptions, TryLockError},
    io,
    os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use qilin_market::date::rfc3339_ns;

use crate::{
    anchor::{Anchor, append_anchor, read_anchor_file},
    chain::{Probe, sha256_hex},
};

/// How long [`Witness::observe`] waits for a writer's lock before giving up on this round.
pub const LOCK_WAIT: Duration = Duration::from_secs(1);

/// What went wrong in a round; the message names the file and the step.
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    /// The log could not be opened or read (missing, permissions, not a regular file, …).
    #[error("audit log {}: {what}: {source}", path.display())]
    ReadLog { path: PathBuf, what: &'static str, source: io::Error },
    /// A writer held the log's lock longer than [`LOCK_WAIT`]: nothing was anchored this round.
    #[error("audit log {}: locked by a writer for more than {LOCK_WAIT:?}; nothing anchored this round", path.display())]
    Busy { path: PathBuf },
    /// The anchor file could not be read or written.
    #[error("audit anchor {}: {what}: {source}", path.display())]
    Anchor { path: PathBuf, what: &'static str, source: io::Error },
}

impl WitnessError {
    /// The anchor file itself failed (as opposed to reading the log).
    pub fn is_anchor_error(&self) -> bool {
        matches!(self, WitnessError::Anchor { .. })
    }
}

/// The outcome of one [`Witness::observe`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observation {
    /// The anchor written this round (the head changed), if any.
    pub anchored: Option<Anchor>,
    /// The head seen (seq of the last whole line), `None` for an empty log.
    pub head_seq: Option<u64>,
    /// The log went back below what was anchored (lines cut off or rewritten); its warning is in
    /// `warnings`.
    pub went_back: bool,
    /// Things the witness's owner should log loudly: the log went back, its last line is not an
    /// entry, or it is owned by the witness's own uid.
    pub warnings: Vec<String>,
}

/// Anchors one log into one anchor file. Keeps the last anchor in memory; on the first round it
/// reads it back from the anchor file, so a restart anchors only a changed head.
#[derive(Debug)]
pub struct Witness {
    log: PathBuf,
    anchor: PathBuf,
    last: Option<Anchor>,
    loaded: bool,
    warned_same_uid: bool,
}

impl Witness {
    /// A witness of `log` writing to `anchor`. Touches nothing until [`Witness::observe`].
    pub fn new(log: impl Into<PathBuf>, anchor: impl Into<PathBuf>) -> Witness {
        Witness { log: log.into(), anchor: anchor.into(), last: None, loaded: false, warned_same_uid: false }
    }

    /// The log.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// The anchor file.
    pub fn anchor(&self) -> &Path {
        &self.anchor
    }

    /// The last anchor written or read back.
    pub fn last(&self) -> Option<&Anchor> {
        self.last.as_ref()
    }

    /// One round: reads the log's head and appends it to the anchor file if it changed since the
    /// last anchor. Never writes the log.
    pub fn observe(&mut self) -> Result<Observation, WitnessError> {
        self.observe_keyed(None)
    }

    /// [`Witness::observe`] with the signing key in force (`(version, key)`): each anchor carries
    /// the version and its MAC ([`anchor_mac`](crate::anchor_mac)). A version other than the last
    /// anchor's starts a new chain, and is anchored at once even if the head did not change.
    pub fn observe_keyed(&mut self, key: Option<(u32, &[u8])>) -> Result<Observation, WitnessError> {
        let mut out = Observation::default();
        if !self.loaded {
            match read_anchor_file(&self.anchor) {
                Ok(file) => self.last = file.anchors.last().cloned(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(WitnessError::Anchor { path: self.anchor.clone(), what: "reading", source });
                }
            }
            self.loaded = true;
        }
        let Some((seq, hash)) = self.read_head(&mut out)? else { return Ok(out) };
        out.head_seq = Some(seq);
        if let Some(last) = &self.last {
            let same_key = last.key_version == key.map(|(version, _)| version);
            if last.seq == seq && last.hash == hash && same_key {
                return Ok(out);
            }
            if seq < last.seq || (seq == last.seq && last.hash != hash) {
                out.went_back = true;
                out.warnings.push(format!(
                    "audit log {} went back: seq {} was anchored at {} with hash {}, the log now ends at seq {seq} \
                     (hash {hash}): lines were cut off or rewritten",
                    self.log.display(),
                    last.seq,
                    last.ts,
                    last.hash
                ));
            }
        }
        let ts_ns = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64);
        let mut anchor =
            Anchor { seq, hash, ts: rfc3339_ns(ts_ns), ts_ns, log: self.log.clone(), key_version: None, mac: None };
        if let Some((version, key)) = key {
            let prev = match &self.last {
                Some(last) if last.key_version == Some(version) => last.mac.clone().unwrap_or_default(),
                _ => String::new(),
            };
            anchor.mac = Some(crate::anchor::anchor_mac(key, &anchor, &prev));
            anchor.key_version = Some(version);
        }
        append_anchor(&self.anchor, &anchor).map_err(|source| WitnessError::Anchor {
            path: self.anchor.clone(),
            what: "appending",
            source,
        })?;
        self.last = Some(anchor.clone());
        out.anchored = Some(anchor);
        Ok(out)
    }

    /// `(seq, hash)` of the log's last whole line, read under a shared lock (so no append is seen
    /// half done) through a read-only descriptor; `None` for a log without a whole line.
    fn read_head(&mut self, out: &mut Observation) -> Result<Option<(u64, String)>, WitnessError> {
        let path = self.log.clone();
        let read_err = |what| {
            let path = path.clone();
            move |source| WitnessError::ReadLog { path, what, source }
        };
        let flags = (nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK).bits();
        let file = OpenOptions::new().read(true).custom_flags(flags).open(&self.log).map_err(read_err("opening"))?;
        let meta = file.metadata().map_err(read_err("reading metadata"))?;
        if !meta.file_type().is_file() {
            return Err(read_err("opening")(io::Error::other("not a regular file")));
        }
        if meta.uid() == nix::unistd::geteuid().as_raw() && !self.warned_same_uid {
            self.warned_same_uid = true;
            out.warnings.push(format!(
                "audit log {} is owned by this witness's own uid {}: its writer can rewrite the anchor too; run the \
                 witness under another uid",
                self.log.display(),
                meta.uid()
            ));
        }
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            match file.try_lock_shared() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(TryLockError::WouldBlock) => return Err(WitnessError::Busy { path: self.log.clone() }),
                Err(TryLockError::Error(e)) => return Err(read_err("locking")(e)),
            }
        }
        let len = file.metadata().map_err(read_err("reading metadata"))?.len();
        let Some(line) = last_whole_line(&file, len).map_err(read_err("reading the last line"))? else {
            return Ok(None);
        };
        drop(file);
        match serde_json::from_slice::<Probe>(&line) {
            Ok(probe) => Ok(Some((probe.seq, sha256_hex(&line)))),
            Err(e) => {
                out.warnings.push(format!(
                    "audit log {}: the last whole line is not an audit entry ({e}); nothing anchored",
                    self.log.display()
                ));
                Ok(None)
            }
        }
    }
}

/// The last newline-terminated line of a file of `len` bytes, without its newline (a last line
/// without a newline is torn or still being written, and left out).
fn last_whole_line(file: &File, len: u64) -> io::Result<Option<Vec<u8>>> {
    let mut chunk = vec![0u8; 8192];
    let (mut pos, mut end) = (len, None::<u64>);
    while pos > 0 {
        let n = chunk.len().min(pos as usize);
        pos -= n as u64;
        file.read_exact_at(&mut chunk[..n], pos)?;
        for i in (0..n).rev() {
            if chunk[i] != b'\n' {
                continue;
            }
            let at = pos + i as u64;
            match end {
                None => end = Some(at),
                Some(end) => return read_range(file, at + 1, end).map(Some),
            }
        }
    }
    match end {
        Some(end) => read_range(file, 0, end).map(Some),
        None => Ok(None),
    }
}

fn read_range(file: &File, start: u64, end: u64) -> io::Result<Vec<u8>> {
    let mut line = vec![0u8; (end - start) as usize];
    file.read_exact_at(&mut line, start)?;
    Ok(line)
}
