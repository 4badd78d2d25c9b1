//! Which file a sidecar's reader mapped, so that a segment removed and created again under the
//! same path (a new file, a new inode: the core restarted on a removed segment) is noticed. The
//! old mapping stays valid after the unlink and shows a dead writer forever; only the path's
//! inode tells that the feed now lives in another file.
//!
//! `qilin_shm::Reader` does not say which inode it mapped (its descriptor is closed once mapped),
//! so the identity is taken by `stat` of the path *before* the reader opens it: if the path is
//! replaced in between, the identity kept is the older one and the next check reopens the path
//! once more for nothing; a replacement is never missed. Shared by `qilin-nats` and
//! `qilin-recorder` (docs/SIDECARS.md, "A re-created segment").

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use qilin_shm::{OpenError, Reader};

/// A segment file: its path and the identity (device, inode) of the file the reader mapped.
#[derive(Clone, Debug)]
pub struct SegmentFile {
    path: PathBuf,
    id: Option<(u64, u64)>,
}

fn identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

impl SegmentFile {
    /// Opens the segment read-only, as [`crate::open_segment`] does (`Ok(Err(reason))` while the
    /// core has not finished creating it), with the identity of the file opened.
    #[allow(clippy::type_complexity)] // the shape of `crate::open_segment`, plus the identity
    pub fn open(path: &Path) -> Result<Result<(Reader, SegmentFile), String>, OpenError> {
        let id = identity(path);
        Ok(crate::open_segment(path)?.map(|reader| (reader, SegmentFile { path: path.to_owned(), id })))
    }

    /// The identity of the file at `reader`'s path now, for a reader opened by someone else
    /// (weaker than [`open`](Self::open): a replacement between that open and this call is
    /// missed).
    pub fn after(reader: &Reader) -> SegmentFile {
        SegmentFile { path: reader.path().to_owned(), id: identity(reader.path()) }
    }

    /// The path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The inode of the file opened (0 if it could not be read).
    pub fn inode(&self) -> u64 {
        self.id.map_or(0, |(_, ino)| ino)
    }

    /// True when the path names another file than the one opened: created again. A path with no
    /// file (removed, not created again yet) is not a replacement.
    pub fn replaced(&self) -> bool {
        identity(&self.path).is_some_and(|now| Some(now) != self.id)
    }

    /// The new file, opened, when the path names another file than this one and that file is
    /// ready; `Ok(None)` when it is the same file, or the new one is still being created (ask
    /// again later); `Err` naming the path when the new one cannot be opened.
    pub fn reopen_if_replaced(&self) -> anyhow::Result<Option<(Reader, SegmentFile)>> {
        if !self.replaced() {
            return Ok(None);
        }
        match SegmentFile::open(&self.path) {
            Ok(Ok(opened)) => Ok(Some(opened)),
            Ok(Err(_)) => Ok(None),
            Err(e) => anyhow::bail!("segment {} was re-created: {e}", self.path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use qilin_shm::{SegmentOptions, Writer};

    use super::*;

    fn create(path: &Path) -> Writer {
        let options = SegmentOptions { feed_name: "recreated".into(), ring_slots: 64, instrument_capacity: 4 };
        Writer::open(path, &options).unwrap()
    }

    #[test]
    fn a_file_created_again_under_the_path_is_a_replacement_a_removed_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        let writer = create(&path);
        let (_reader, file) = SegmentFile::open(&path).unwrap().unwrap();
        assert!(!file.replaced());
        drop(writer);
        std::fs::remove_file(&path).unwrap();
        assert!(!file.replaced(), "no file at the path: nothing to switch to yet");
        let _writer = create(&path);
        assert!(file.replaced(), "a new file under the same path");
        let (_reader, again) = SegmentFile::open(&path).unwrap().unwrap();
        assert!(!again.replaced());
        assert_ne!(again.inode(), file.inode());
    }
}
