//! The sidecar status file: where a sidecar is, how far behind, and its counters, as one JSON object
//! in `<segment>.sidecars/<name>.json`. It is rewritten whole (temporary file + rename) every few
//! hundred milliseconds, so a reader never sees half a file; its `updated_ns` tells whether the
//! sidecar is still alive. The segment usually lives on tmpfs (`/dev/shm`), so these writes cost no
//! disk I/O. The format is documented in `docs/SIDECARS.md`; `qilinctl status` and the metrics
//! exporter read it without linking this crate.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use serde_json::Value;

/// Directory that holds the status files of the sidecars of the segment at `segment`.
pub fn status_dir(segment: &Path) -> PathBuf {
    let mut name = segment.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".sidecars");
    segment.with_file_name(name)
}

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

/// Reads every status file beside `segment`, sorted by file name. Unreadable files are returned as
/// an object with an `error` key, so a half-broken sidecar is still listed.
pub fn read_all(segment: &Path) -> Vec<(String, Value)> {
    let Ok(entries) = fs::read_dir(status_dir(segment)) else { return Vec::new() };
    let mut out: Vec<(String, Value)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_str()?.strip_suffix(".json")?.to_owned();
            (!name.starts_with('.')).then_some((name, e.path()))
        })
        .map(|(name, path)| {
            let value = fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
                .unwrap_or_else(|e| serde_json::json!({ "error": format!("{}: {e}", path.display()) }));
            (name, value)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
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
