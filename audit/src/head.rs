//! The head file `<log>.head` (the last line's `seq` and hash), and the file mode and directory
//! fsync that the log shares with it.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

/// Mode of the log and of its head file.
pub const FILE_MODE: u32 = 0o640;

/// The head file: the last line's `seq` and SHA-256.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub seq: u64,
    pub hash: String,
}

/// The head file of the log at `log`: `<log>.head`.
pub fn head_path(log: &Path) -> PathBuf {
    let mut name = log.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".head");
    log.with_file_name(name)
}

pub(crate) fn read_head(log: &Path) -> io::Result<Option<Head>> {
    match fs::read(head_path(log)) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map(Some).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Replaces the head file atomically (the caller holds the log's lock, so one temporary name does).
pub(crate) fn write_head(log: &Path, head: &Head) -> io::Result<()> {
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

/// Fsyncs the directory holding `path`, so a file created or renamed there survives a crash.
pub(crate) fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()
}
