//! The anchor file: the log's head as a witness saw it, one JSON line per change, written by a
//! process the log's writer cannot impersonate (see the crate doc, "The anchor").
//!
//! A line: `{"seq":17,"hash":"<64 hex>","ts":"2026-03-02T01:30:00.123456789Z","ts_ns":…,
//! "log":"/var/log/qilin/audit.jsonl"}`: line `seq` of the log hashed to `hash` (SHA-256 of its
//! bytes without the newline, as in the chain) when the witness looked at `ts`. `log` is the path
//! it read, for people. Readers ignore fields they do not know: a keyed anchor (issue 23, an HMAC
//! with the managed `audit-signing` key) adds its key version and MAC to the same line.

use std::{
    fs::{self, DirBuilder, File, OpenOptions},
    io::{self, Read, Write},
    os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::head::{FILE_MODE, sync_dir};

/// One line of an anchor file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    /// The `seq` of the log's last whole line when the witness looked.
    pub seq: u64,
    /// SHA-256 hex of that line's bytes (without its newline).
    pub hash: String,
    /// When the witness saw it, UTC RFC 3339 with nanoseconds.
    pub ts: String,
    /// The same instant in ns since the Unix epoch.
    pub ts_ns: i64,
    /// The log the witness read.
    pub log: PathBuf,
    /// With a signing key (`[[audit_anchor]] key_file`): the version of the managed
    /// `audit-signing` key that keyed [`Anchor::mac`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_version: Option<u32>,
    /// HMAC-SHA256 (hex) under that version over this anchor and the MAC of the anchor before it
    /// when that one has the same version ([`anchor_mac`]): the chain of one key version. Whoever
    /// can rewrite the anchor file but lacks the key cannot make a line that verifies, nor drop one
    /// from the middle of a chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

/// The MAC of `anchor` under `key`, chained to `prev` (the MAC of the anchor before it in the file
/// when that one has the same key version, else empty: a new version starts a new chain):
/// HMAC-SHA256 of `qilin-anchor/1`, the log's path, `seq`, `hash`, `ts_ns` and `prev`, each on its
/// own line.
pub fn anchor_mac(key: &[u8], anchor: &Anchor, prev: &str) -> String {
    use hmac::{Mac, digest::KeyInit};
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes a key of any length");
    let text =
        format!("qilin-anchor/1\n{}\n{}\n{}\n{}\n{prev}", anchor.log.display(), anchor.seq, anchor.hash, anchor.ts_ns);
    mac.update(text.as_bytes());
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// An anchor file read back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AnchorFile {
    /// The anchors, in file order.
    pub anchors: Vec<Anchor>,
    /// Lines that are not anchors: (line number from 1, why).
    pub malformed: Vec<(u64, String)>,
    /// The last line has no newline (the witness was interrupted mid-write); it is left out.
    pub torn: bool,
    /// The file's owner.
    pub uid: u32,
}

impl AnchorFile {
    /// The last anchor, if any.
    pub fn last(&self) -> Option<&Anchor> {
        self.anchors.last()
    }
}

/// Reads the anchor file at `path`. A missing file is an error (`NotFound`): an anchor that is not
/// there checks nothing.
pub fn read_anchor_file(path: &Path) -> io::Result<AnchorFile> {
    let mut file = File::open(path)?;
    let uid = file.metadata()?.uid();
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let torn = bytes.last().is_some_and(|&b| b != b'\n');
    let mut out = AnchorFile { torn, uid, ..AnchorFile::default() };
    let whole = match bytes.iter().rposition(|&b| b == b'\n') {
        Some(end) => &bytes[..end],
        None => return Ok(out),
    };
    for (i, line) in whole.split(|&b| b == b'\n').enumerate() {
        match serde_json::from_slice::<Anchor>(line) {
            Ok(anchor) => out.anchors.push(anchor),
            Err(e) => out.malformed.push((i as u64 + 1, e.to_string())),
        }
    }
    Ok(out)
}

/// Appends `anchor` to the anchor file at `path` and fsyncs it. Creates the file (mode 0640) and
/// its directory (0750) if missing; refuses a symlink (`O_NOFOLLOW`), anything but a regular file,
/// and a file owned by another uid than this process's (an anchor is the witness's own file). A
/// torn last line (an interrupted append) is ended first, so the new line stands on its own.
pub fn append_anchor(path: &Path, anchor: &Anchor) -> io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        DirBuilder::new().recursive(true).mode(0o750).create(dir)?;
    }
    let flags = (nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK).bits();
    let open = |create_new| {
        OpenOptions::new().read(true).append(true).create_new(create_new).mode(FILE_MODE).custom_flags(flags).open(path)
    };
    let (file, created) = match open(true) {
        Ok(file) => (file, true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => (open(false)?, false),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(io::Error::other(format!(
            "owned by uid {}, not by this process (uid {me}): an anchor is its witness's own file",
            meta.uid()
        )));
    }
    if created {
        file.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
    }
    let mut line = Vec::with_capacity(256);
    if meta.len() > 0 {
        let mut last = [0u8];
        file.read_exact_at(&mut last, meta.len() - 1)?;
        if last[0] != b'\n' {
            line.push(b'\n');
        }
    }
    serde_json::to_writer(&mut line, anchor).map_err(io::Error::other)?;
    line.push(b'\n');
    (&file).write_all(&line)?;
    file.sync_all()?;
    if created { sync_dir(path) } else { Ok(()) }
}
