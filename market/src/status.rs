//! The sidecar status file: where a sidecar is, how far behind, and its counters, as one JSON object
//! in `<segment>.sidecars/<name>.json`. It is rewritten whole (temporary file + rename) every few
//! hundred milliseconds, so a reader never sees half a file; its `updated_ns` tells whether the
//! sidecar is still alive. The segment usually lives on tmpfs (`/dev/shm`), so these writes cost no
//! disk I/O. The format is documented in `docs/SIDECARS.md`. The sidecars write it, `qilinctl
//! status` and the recorder's metrics read it.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use serde_json::{Value, json};

/// Directory of the sidecar status files of the segment at `segment`: `<segment>.sidecars/`.
pub fn status_dir(segment: &Path) -> PathBuf {
    let mut name = segment.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".sidecars");
    segment.with_file_name(name)
}

/// Every sidecar status file beside `segment`, sorted by instance name. An unreadable file is
/// returned as an object with an `error` key, so a half-broken sidecar is still listed.
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
                .unwrap_or_else(|e| json!({ "error": format!("{}: {e}", path.display()) }));
            (name, value)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The sidecars' statuses with `alive` (status rewritten within `stale_after_ns`) and `age_ms`.
pub fn sidecars_json(segment: &Path, now_ns: i64, stale_after_ns: i64) -> Value {
    let list: Vec<Value> = read_all(segment)
        .into_iter()
        .map(|(name, mut v)| {
            let updated = v["updated_ns"].as_i64();
            v["instance"] = json!(name);
            v["age_ms"] = json!(updated.map(|u| (now_ns - u) as f64 / 1e6));
            v["alive"] = json!(updated.is_some_and(|u| now_ns - u <= stale_after_ns));
            v
        })
        .collect();
    Value::Array(list)
}

/// Mode of `<segment>.sidecars/`: rwx for the owner and the group, setgid and sticky.
pub const DIR_MODE: u32 = 0o3770;

/// Mode of a status file: written by its sidecar, read by the group.
pub const FILE_MODE: u32 = 0o640;

/// Writes status objects for one sidecar instance.
#[derive(Debug)]
pub struct StatusFile {
    path: PathBuf,
    tmp: PathBuf,
}

impl StatusFile {
    /// The status file of sidecar instance `name` beside `segment`; creates the directory with
    /// [`DIR_MODE`] if it is missing.
    ///
    /// The sidecars run as different uids that share the feed's group (README, "Operations";
    /// docs/SIDECARS.md, "Status files"), so whichever starts first creates a directory they can all write, whatever its
    /// umask: group-writable, setgid (files take the directory's group) and sticky (a sidecar cannot
    /// replace or delete another uid's file).
    pub fn new(segment: &Path, name: &str) -> std::io::Result<StatusFile> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let dir = status_dir(segment);
        match fs::DirBuilder::new().mode(DIR_MODE).create(&dir) {
            // The umask may have taken bits off: set them (only the creator can, and needs to).
            Ok(()) => fs::set_permissions(&dir, fs::Permissions::from_mode(DIR_MODE))?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        Ok(StatusFile { path: dir.join(format!("{name}.json")), tmp: dir.join(format!(".{name}.json.tmp")) })
    }

    /// Path of the status file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the file with `value` (write to a temporary file, then rename over the old one). The
    /// file is [`FILE_MODE`] whatever the umask: the recorder's metrics and `qilinctl status` read
    /// every sidecar's file through the group.
    pub fn write(&self, value: &Value) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let mut file = fs::File::create(&self.tmp)?;
        file.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
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
        file.write(&json!({"position": 41, "updated_ns": 1_000})).unwrap();
        file.write(&json!({"position": 42, "updated_ns": 1_000})).unwrap();
        fs::write(status_dir(&segment).join("broken.json"), b"{not json").unwrap();
        let all = read_all(&segment);
        assert_eq!(all.len(), 2, "{all:?}");
        assert_eq!(all[0].0, "broken");
        assert!(all[0].1["error"].as_str().unwrap().contains("broken.json"));
        assert_eq!(all[1], ("nats".to_string(), json!({"position": 42, "updated_ns": 1_000})));
        let listed = sidecars_json(&segment, 3_000_000, 5_000_000);
        assert_eq!((listed[1]["instance"].as_str(), listed[1]["alive"].as_bool()), (Some("nats"), Some(true)));
        assert_eq!(listed[1]["age_ms"], json!(2.999));
        assert_eq!(sidecars_json(&segment, 10_000_000, 5_000_000)[1]["alive"], json!(false));
    }

    #[test]
    fn the_directory_and_files_are_shared_with_the_group() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let segment = dir.path().join("feed");
        // (The umask of the test process, usually 022, would leave 0755 and 0644; the deployment
        // test runs qilin-secrets with its unit's UMask=0077.)
        let file = StatusFile::new(&segment, "secrets").unwrap();
        file.write(&json!({})).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&status_dir(&segment)), DIR_MODE);
        assert_eq!(mode(file.path()), FILE_MODE);
    }
}
