//! The durable cursor: the last sequence a downstream (NATS server, journal) has confirmed, kept in
//! a small JSON file that is replaced atomically (write a temporary file, fsync it, rename it over
//! the old one, fsync the directory). A crash at any moment leaves either the old or the new cursor,
//! never a torn one.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

/// What the cursor file holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cursor {
    /// Feed name of the segment the sequence belongs to.
    pub feed: String,
    /// Last sequence confirmed downstream (0: nothing yet).
    pub sequence: u64,
    /// Epoch of the segment when it was saved (informational: sequences continue across epochs).
    pub epoch: u64,
    /// When it was saved, UTC ns.
    pub saved_ns: i64,
}

/// Problems with a cursor file, each naming the file.
#[derive(Debug, thiserror::Error)]
pub enum CursorError {
    /// The file could not be read or written.
    #[error("cursor file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a cursor.
    #[error("cursor file {path} is malformed: {reason} (move it away to start from the configured start point)")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The file belongs to another feed.
    #[error("cursor file {path} belongs to feed {found:?}, but the segment is feed {expected:?}")]
    OtherFeed {
        /// The file.
        path: PathBuf,
        /// Feed in the file.
        found: String,
        /// Feed of the segment.
        expected: String,
    },
}

/// A cursor file on disk.
#[derive(Clone, Debug)]
pub struct CursorFile {
    path: PathBuf,
    tmp: PathBuf,
}

impl CursorFile {
    /// The cursor file at `path` (its directory is created on first save).
    pub fn new(path: impl Into<PathBuf>) -> CursorFile {
        let path = path.into();
        let mut tmp = path.clone().into_os_string();
        tmp.push(".tmp");
        CursorFile { path, tmp: tmp.into() }
    }

    /// Path of the file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Loads the cursor for `feed`; `Ok(None)` if there is no file yet.
    pub fn load(&self, feed: &str) -> Result<Option<Cursor>, CursorError> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(CursorError::Io { path: self.path.clone(), source }),
        };
        let cursor: Cursor = serde_json::from_slice(&bytes)
            .map_err(|e| CursorError::Malformed { path: self.path.clone(), reason: e.to_string() })?;
        if cursor.feed != feed {
            return Err(CursorError::OtherFeed {
                path: self.path.clone(),
                found: cursor.feed,
                expected: feed.to_owned(),
            });
        }
        Ok(Some(cursor))
    }

    /// Saves `cursor` durably and atomically.
    pub fn save(&self, cursor: &Cursor) -> Result<(), CursorError> {
        self.save_inner(cursor).map_err(|source| CursorError::Io { path: self.path.clone(), source })
    }

    fn save_inner(&self, cursor: &Cursor) -> std::io::Result<()> {
        let dir = self.path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        fs::create_dir_all(dir)?;
        let mut file = fs::File::create(&self.tmp)?;
        serde_json::to_writer(&mut file, cursor)?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        drop(file);
        fs::rename(&self.tmp, &self.path)?;
        fs::File::open(dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(seq: u64) -> Cursor {
        Cursor { feed: "sim".into(), sequence: seq, epoch: 2, saved_ns: 5 }
    }

    #[test]
    fn saves_replace_and_load_checks_the_feed() {
        let dir = tempfile::tempdir().unwrap();
        let file = CursorFile::new(dir.path().join("state/nats.cursor"));
        assert!(file.load("sim").unwrap().is_none());
        file.save(&cursor(10)).unwrap();
        file.save(&cursor(11)).unwrap();
        assert_eq!(file.load("sim").unwrap(), Some(cursor(11)));
        let err = file.load("other").unwrap_err().to_string();
        assert!(err.contains("belongs to feed \"sim\"") && err.contains("nats.cursor"), "{err}");
        assert!(!dir.path().join("state/nats.cursor.tmp").exists());
    }

    #[test]
    fn a_malformed_file_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nats.cursor");
        fs::write(&path, b"{\"feed\":\"sim\",\"seq").unwrap();
        let err = CursorFile::new(&path).load("sim").unwrap_err().to_string();
        assert!(err.contains("nats.cursor") && err.contains("malformed"), "{err}");
    }
}
