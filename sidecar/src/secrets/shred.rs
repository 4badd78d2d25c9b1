//! Shredding the runtime secrets file: overwrite every byte in place with random bytes, fsync,
//! unlink, fsync the directory.
//!
//! What this does and does not guarantee: the file's inode is overwritten through the page cache
//! and flushed, so every open descriptor and every later reader of those blocks sees random bytes,
//! and the name is gone. On copy-on-write or log-structured storage (btrfs, ZFS, F2FS, flash
//! translation layers) the old blocks may survive physically; keep the runtime file on tmpfs
//! (`/run`, never swapped with encrypted swap or no swap) where overwrite-in-place is real.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Read},
    os::unix::fs::{FileExt, OpenOptionsExt},
    path::Path,
};

/// Overwrites `path` with random bytes (same length), fsyncs it, unlinks it and fsyncs its
/// directory. Returns the number of bytes overwritten. A symlink is refused (`O_NOFOLLOW`): the
/// operator names the file itself. `read`: the `(st_dev, st_ino)` of the file the secrets were
/// read from; if `path` names another file now (replaced since), nothing is overwritten or
/// unlinked: that file is not the one read, and the one read is no longer reachable by its name.
pub fn shred(path: &Path, read: Option<(u64, u64)>) -> io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let file = OpenOptions::new()
        .write(true)
        .custom_flags((nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK).bits())
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
    }
    let same = |m: &fs::Metadata| read.is_none_or(|id| id == (m.dev(), m.ino()));
    if !same(&meta) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "replaced since the secrets were read from it (another file has that name now): nothing shredded",
        ));
    }
    let len = meta.len();
    let mut random = File::open("/dev/urandom")?;
    let mut buf = [0u8; 8192];
    let mut offset = 0u64;
    while offset < len {
        let n = buf.len().min((len - offset) as usize);
        random.read_exact(&mut buf[..n])?;
        file.write_all_at(&buf[..n], offset)?;
        offset += n as u64;
    }
    file.sync_all()?;
    drop(file);
    // Unlink the name only if it still names the file just overwritten.
    if !fs::symlink_metadata(path).is_ok_and(|m| same(&m) && m.ino() == meta.ino() && m.dev() == meta.dev()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "overwritten, but its name was replaced meanwhile: not unlinked",
        ));
    }
    fs::remove_file(path)?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()?;
    Ok(len)
}
