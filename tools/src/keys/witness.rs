//! The witness of a store's newest generation, kept where a copy of the store does not reach: the
//! audit log. Every write of a store raises its sealed `generation`, and every audited `qilinctl
//! keys` operation that succeeds records in its action the store's id and the generation it wrote
//! or read (`store_id`, `store_generation`). A store whose generation is below the newest one the
//! log recorded for its id is an older copy put back in its place (a rollback), which would bring
//! back versions retired or revoked since: [`super::Store::load`] refuses it, and restoring an
//! older backup needs `--force` and is audited as a rollback.
//!
//! What this cannot see: a writer of the audit log who also cuts those entries out or rewrites the
//! log (the chain and its anchor are what notice that, `qilinctl audit verify`); a log rotated away
//! or another log named (no entry for the store: it is taken as it is); and a copy of the store's
//! newest generation (nothing was changed since, so nothing comes back).

use std::{
    collections::BTreeMap,
    fs::File,
    io::{self, BufRead, BufReader},
    path::{Path, PathBuf},
};

use serde_json::Value;

use super::KeyError;

/// One generation of a store as the audit log recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub generation: u64,
    /// The entry's `seq`.
    pub seq: u64,
    /// The entry's `ts`.
    pub ts: String,
    /// The entry's `command` (`keys rotate`, …).
    pub command: String,
}

/// The newest generation recorded of each store: by store id, and by path for stores written
/// before ids existed.
#[derive(Clone, Debug, Default)]
pub struct Witness {
    log: Option<PathBuf>,
    by_id: BTreeMap<String, Seen>,
    by_path: BTreeMap<String, Seen>,
}

/// What an action carries when it records a generation.
const MARK: &[u8] = b"\"store_generation\"";

impl Witness {
    /// No witness: every generation is accepted (unit tests; a store read only to be backed up
    /// or restored, which compare generations themselves).
    pub fn none() -> Witness {
        Witness::default()
    }

    /// What the audit log at `log` recorded (nothing when it does not exist yet). Read under a
    /// shared lock, so no append is half done; only lines that carry a generation are parsed.
    pub fn from_audit_log(log: &Path) -> Result<Witness, KeyError> {
        let err = |source| KeyError::Witness { log: log.to_owned(), source };
        let mut witness = Witness { log: Some(log.to_owned()), ..Witness::default() };
        let file = match File::open(log) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(witness),
            Err(e) => return Err(err(e)),
        };
        file.lock_shared().map_err(err)?;
        let mut reader = BufReader::new(file);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).map_err(err)? > 0 {
            if line.windows(MARK.len()).any(|w| w == MARK) {
                witness.note(&line);
            }
            line.clear();
        }
        Ok(witness)
    }

    /// Keeps the generations of one log line: successful `keys …` entries only.
    fn note(&mut self, line: &[u8]) {
        let Ok(record) = serde_json::from_slice::<Value>(line) else { return };
        let command = record["command"].as_str().unwrap_or_default();
        if !command.starts_with("keys ") || record["exit_code"].as_i64() != Some(0) {
            return;
        }
        for action in record["actions"].as_array().into_iter().flatten() {
            let Some(generation) = action["store_generation"].as_u64() else { continue };
            let seen = Seen {
                generation,
                seq: record["seq"].as_u64().unwrap_or(0),
                ts: record["ts"].as_str().unwrap_or_default().to_owned(),
                command: command.to_owned(),
            };
            if let Some(id) = action["store_id"].as_str() {
                keep_newest(&mut self.by_id, id, seen.clone());
            }
            if let Some(path) = action["store"].as_str() {
                keep_newest(&mut self.by_path, path, seen);
            }
        }
    }

    /// The newest generation recorded of the store `store_id` (of the store at `path` for a store
    /// without an id).
    pub fn newest(&self, store_id: Option<&str>, path: &Path) -> Option<&Seen> {
        match store_id {
            Some(id) => self.by_id.get(id),
            None => self.by_path.get(&path.display().to_string()),
        }
    }

    /// For [`KeyError::RolledBack`]: where `seen` was recorded.
    pub fn describe(&self, seen: &Seen) -> String {
        let log = self.log.as_deref().map_or_else(|| "?".into(), |l| l.display().to_string());
        format!(
            "the audit log {log} recorded generation {} of it (entry {}, `{}` at {})",
            seen.generation, seen.seq, seen.command, seen.ts
        )
    }
}

fn keep_newest(map: &mut BTreeMap<String, Seen>, key: &str, seen: Seen) {
    match map.get(key) {
        Some(old) if old.generation >= seen.generation => {}
        _ => {
            map.insert(key.to_owned(), seen);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn line(seq: u64, command: &str, exit_code: i32, actions: Value) -> String {
        let record = serde_json::json!({"seq": seq, "ts": "2026-01-01T00:00:00.000000000Z", "command": command,
                                        "exit_code": exit_code, "actions": actions});
        format!("{record}\n")
    }

    #[test]
    fn the_newest_successful_keys_entry_of_each_store_is_the_witness() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.jsonl");
        let text = [
            line(
                1,
                "keys add",
                0,
                serde_json::json!([{"store": "/s/a.json", "store_id": "aa", "store_generation": 1}]),
            ),
            line(
                2,
                "keys rotate",
                0,
                serde_json::json!([{"store": "/s/a.json", "store_id": "aa", "store_generation": 4}]),
            ),
            // Written after 4 by a slower process: the newest stays 4.
            line(
                3,
                "keys rotate",
                0,
                serde_json::json!([{"store": "/s/a.json", "store_id": "aa", "store_generation": 3}]),
            ),
            // Failed entries and other commands do not count.
            line(
                4,
                "keys rotate",
                2,
                serde_json::json!([{"store": "/s/a.json", "store_id": "aa", "store_generation": 9}]),
            ),
            line(5, "subscribe", 0, serde_json::json!([{"store_id": "aa", "store_generation": 9}])),
            line(
                6,
                "keys add",
                0,
                serde_json::json!([{"store": "/s/b.json", "store_id": "bb", "store_generation": 2}]),
            ),
            "{not json \"store_generation\"\n".to_owned(),
        ]
        .concat();
        fs::write(&log, text).unwrap();
        let w = Witness::from_audit_log(&log).unwrap();
        let a = w.newest(Some("aa"), Path::new("/elsewhere")).unwrap();
        assert_eq!((a.generation, a.seq, a.command.as_str()), (4, 2, "keys rotate"));
        assert_eq!(w.newest(Some("bb"), Path::new("/s/a.json")).unwrap().generation, 2);
        assert_eq!(w.newest(Some("cc"), Path::new("/s/a.json")), None);
        assert_eq!(w.newest(None, Path::new("/s/a.json")).unwrap().generation, 4, "a store without an id: by path");
        assert!(w.describe(a).starts_with(&format!("the audit log {} recorded generation 4 of it", log.display())));
        let missing = Witness::from_audit_log(&dir.path().join("none.jsonl")).unwrap();
        assert_eq!(missing.newest(Some("aa"), Path::new("/s/a.json")), None);
        assert!(matches!(Witness::from_audit_log(dir.path()), Err(KeyError::Witness { .. })), "a directory");
    }
}
