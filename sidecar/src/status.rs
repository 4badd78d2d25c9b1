//! The sidecar status file: where a sidecar is, how far behind, and its counters, as one JSON object
//! in `<segment>.sidecars/<name>.json`. It is rewritten whole (temporary file + rename) every few
//! hundred milliseconds, so a reader never sees half a file; its `updated_ns` tells whether the
//! sidecar is still alive. The segment usually lives on tmpfs (`/dev/shm`), so these writes cost no
//! disk I/O. The format is documented in `docs/SIDECARS.md`; the directory and the reader live in
//! `qilin_tools` so `qilinctl status` shows the sidecars without linking the sidecars.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use serde_json::Value;

pub use qilin_tools::{sidecar_status_dir as status_dir, sidecar_statuses as read_all};

/// Writes status objects for one sidecar instance.
#[derive(Debug)]
pub struct StatusFile {
    path: PathBuf,
    tmp: PathBuf,
}

impl StatusFile {
    /// The status file of sidecar instance `name` beside `segment`; creates the directory.
    pub fn new(segment: &Path, name: &str) -> std::io::Result<StatusFile> {
        let dir = status_dir(segment);
        fs::create_dir_all(&dir)?;
        Ok(StatusFile { path: dir.join(format!("{name}.json")), tmp: dir.join(format!(".{name}.json.tmp")) })
    }

    /// Path of the status file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the file with `value` (write to a temporary file, then rename over the old one).
    pub fn write(&self, value: &Value) -> std::io::Result<()> {
        let mut file = fs::File::create(&self.tmp)?;
        serde_json::to_writer(&mut file, value)?;
        file.write_all(b"\n")?;
        drop(file);
        fs::rename(&self.tmp, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_files_live_beside_the_segment_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let segment = dir.path().join("feed");
        assert_eq!(status_dir(&segment), dir.path().join("feed.sidecars"));
        let file = StatusFile::new(&segment, "nats").unwrap();
        file.write(&serde_json::json!({"position": 41})).unwrap();
        file.write(&serde_json::json!({"position": 42})).unwrap();
        fs::write(status_dir(&segment).join("broken.json"), b"{not json").unwrap();
        let all = read_all(&segment);
        assert_eq!(all.len(), 2, "{all:?}");
        assert_eq!(all[0].0, "broken");
        assert!(all[0].1["error"].as_str().unwrap().contains("broken.json"));
        assert_eq!(all[1], ("nats".to_string(), serde_json::json!({"position": 42})));
    }
}
