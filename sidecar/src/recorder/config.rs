//! `qilin-recorder` configuration: one TOML file, every key with a default, unknown keys refused,
//! and every problem reported with its file and key at once.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use qilin_journal::{FsyncPolicy, WriterOptions};
use serde::Deserialize;

pub use qilin_market::config::ConfigError;

/// The whole file.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Instance name: status file `<segment>.sidecars/<name>.json`.
    pub name: String,
    /// The segment to read.
    pub segment: PathBuf,
    /// Directory of the journal files `<feed>-<YYYYMMDD>.qj`; default `journal` in the state
    /// directory (`$XDG_STATE_HOME/qilin` or `~/.local/state/qilin`).
    pub journal_dir: PathBuf,
    /// Where to start when the journal directory holds no file of the feed yet (first start).
    pub start: StartAt,
    /// How often the status file is rewritten.
    pub status_interval_ms: u64,
    /// Sleep between polls of the ring when it has nothing new.
    pub poll_interval_us: u64,
    /// `[journal]`.
    pub journal: JournalConfig,
    /// `[metrics]`: the Prometheus `/metrics`, `/healthz` and `/readyz` endpoints.
    pub metrics: crate::metrics::MetricsConfig,
    /// How often the audit logs of `[[audit_anchor]]` are looked at (an anchor is written only when
    /// a log's last line changed).
    pub audit_anchor_interval_ms: u64,
    /// `[[audit_anchor]]`: audit logs this recorder witnesses (see `recorder/audit_anchor.rs`).
    pub audit_anchor: Vec<AuditAnchor>,
}

/// `[[audit_anchor]]`: one audit log and the anchor file its head is recorded in.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AuditAnchor {
    /// The audit log, read only (e.g. `/var/log/qilin/audit.jsonl`).
    pub log: PathBuf,
    /// The anchor file, appended by this recorder only (e.g.
    /// `/var/lib/qilin/audit-anchor/core.jsonl`): somewhere the log's writer cannot write.
    pub anchor: PathBuf,
    /// The managed `audit-signing` key as `qilinctl keys render-key` writes it (mode 0600, this
    /// recorder's): every anchor then carries the key version and an HMAC chained to the anchor
    /// before it, which `qilinctl audit verify --anchor FILE --keys` checks (docs/KEYS.md). Read
    /// every round: a rotated key starts a new chain at once.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            name: "recorder".into(),
            segment: PathBuf::from("/dev/shm/qilin"),
            journal_dir: qilin_market::paths::state_dir().join("journal"),
            start: StartAt::Oldest,
            status_interval_ms: 250,
            poll_interval_us: 500,
            journal: JournalConfig::default(),
            metrics: crate::metrics::MetricsConfig::default(),
            audit_anchor_interval_ms: 2000,
            audit_anchor: Vec::new(),
        }
    }
}

/// First start without a journal.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum StartAt {
    /// The oldest tick still in the ring.
    #[default]
    Oldest,
    /// Only ticks published from now on.
    Newest,
}

/// When journal blocks are forced to disk.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Fsync {
    /// Never by the recorder: the kernel writes back on its own (a power cut loses what it had
    /// not written; a crash of the recorder loses nothing).
    Never,
    /// At most `fsync_interval_ms` after a block was written.
    #[default]
    Interval,
    /// After every block (throughput bound by the disk's flush latency).
    EveryBlock,
}

/// `[journal]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct JournalConfig {
    /// Records per block (each block is one write and one checksum).
    pub block_records: u32,
    /// A partial block is written once its first record is this old.
    pub max_block_age_ms: u64,
    /// When to fdatasync.
    pub fsync: Fsync,
    /// With `fsync = "interval"`: the longest a written block waits for its fdatasync.
    pub fsync_interval_ms: u64,
    /// While the disk is full (or the journal cannot be written), retry this often.
    pub retry_interval_ms: u64,
    /// Encryption at rest (off when unset): the managed `journal-encryption` key as `qilinctl keys
    /// render-key journal-encryption` writes it (mode 0600, this recorder's). Each new trading-day
    /// file is sealed with the version the file holds when it is created (read again at each new
    /// file, so a rotation takes effect at the next day); an open file keeps its version. Readers
    /// need the key store or the key files (docs/KEYS.md).
    pub encryption_key_file: Option<PathBuf>,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            block_records: 64,
            max_block_age_ms: 20,
            fsync: Fsync::Interval,
            fsync_interval_ms: 200,
            retry_interval_ms: 1000,
            encryption_key_file: None,
        }
    }
}

impl JournalConfig {
    /// The journal writer's options.
    pub fn writer_options(&self) -> WriterOptions {
        WriterOptions {
            block_records: self.block_records,
            max_block_age: ms(self.max_block_age_ms),
            fsync: match self.fsync {
                Fsync::Never => FsyncPolicy::Never,
                Fsync::Interval => FsyncPolicy::Interval(ms(self.fsync_interval_ms)),
                Fsync::EveryBlock => FsyncPolicy::EveryBlock,
            },
        }
    }
}

impl qilin_market::config::Validate for Config {
    fn check(&self, file: &str) -> Result<(), ConfigError> {
        self.validate(file)
    }
}

impl Config {
    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        qilin_market::config::load(path)
    }

    /// Parses and validates TOML text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        qilin_market::config::parse(text, file)
    }

    /// Checks every value, reporting all problems at once.
    pub fn validate(&self, file: &str) -> Result<(), ConfigError> {
        let mut problems: Vec<(String, String)> = Vec::new();
        let mut bad = |key: &str, reason: String| problems.push((key.into(), reason));
        if self.name.is_empty() || !self.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b)) {
            bad("name", format!("{:?}: one or more of [A-Za-z0-9_-]", self.name));
        }
        if self.journal_dir.as_os_str().is_empty() {
            bad("journal_dir", "empty: give a directory".into());
        }
        let j = &self.journal;
        for (key, value, min, max) in [
            ("status_interval_ms", self.status_interval_ms, 10, 60_000),
            ("poll_interval_us", self.poll_interval_us, 1, 100_000),
            (
                "journal.block_records",
                u64::from(j.block_records),
                1,
                u64::from(qilin_journal::format::MAX_BLOCK_RECORDS),
            ),
            ("journal.max_block_age_ms", j.max_block_age_ms, 0, 60_000),
            ("journal.fsync_interval_ms", j.fsync_interval_ms, 1, 600_000),
            ("journal.retry_interval_ms", j.retry_interval_ms, 1, 600_000),
            ("audit_anchor_interval_ms", self.audit_anchor_interval_ms, 10, 3_600_000),
        ] {
            if !(min..=max).contains(&value) {
                bad(key, format!("{value}: must be between {min} and {max}"));
            }
        }
        if let Some(path) = &j.encryption_key_file
            && path.as_os_str().is_empty()
        {
            bad("journal.encryption_key_file", "empty: give the key file (or leave the key out: no encryption)".into());
        }
        for (i, a) in self.audit_anchor.iter().enumerate() {
            let key = |field: &str| format!("audit_anchor[{i}].{field}");
            if a.log.as_os_str().is_empty() {
                problems.push((key("log"), "empty: give the audit log to witness".into()));
            }
            if a.anchor.as_os_str().is_empty() {
                problems.push((key("anchor"), "empty: give the anchor file to append to".into()));
            } else if a.anchor == a.log || a.anchor == qilin_audit::head_path(&a.log) {
                problems
                    .push((key("anchor"), format!("{}: the log or its head file, not an anchor", a.anchor.display())));
            } else if self.audit_anchor[..i].iter().any(|b| b.anchor == a.anchor) {
                problems.push((key("anchor"), format!("{}: already the anchor of another log", a.anchor.display())));
            }
        }
        problems.extend(self.metrics.problems("metrics"));
        ConfigError::check(file, problems)
    }
}

/// Milliseconds as a [`Duration`].
pub fn ms(value: u64) -> Duration {
    Duration::from_millis(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_holds_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/recorder.example.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let parsed: Config = toml::from_str(&text).unwrap();
        assert_eq!(parsed, Config::default(), "config/recorder.example.toml must show the defaults");
        // Started from a checkout as the README shows, the journal must not land in the source tree.
        assert!(parsed.journal_dir.is_absolute(), "{}", parsed.journal_dir.display());
        assert!(parsed.journal_dir.ends_with("qilin/journal"), "{}", parsed.journal_dir.display());
        Config::default().validate("<defaults>").unwrap();
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let text = r#"
            name = "a b"
            journal_dir = ""
            status_interval_ms = 1
            poll_interval_us = 0
            [journal]
            block_records = 0
            fsync = "every-block"
            fsync_interval_ms = 0
            retry_interval_ms = 0
            max_block_age_ms = 600000
            [[audit_anchor]]
            log = "/var/log/qilin/audit.jsonl"
            anchor = "/var/log/qilin/audit.jsonl.head"
            [[audit_anchor]]
            log = ""
            anchor = "/var/lib/qilin/audit-anchor/core.jsonl"
            [[audit_anchor]]
            log = "/var/log/qilin-secrets/audit.jsonl"
            anchor = "/var/lib/qilin/audit-anchor/core.jsonl"
        "#;
        let err = Config::parse(text, "recorder.toml").unwrap_err();
        let keys: Vec<&str> = err.problems.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "name",
                "journal_dir",
                "status_interval_ms",
                "poll_interval_us",
                "journal.block_records",
                "journal.max_block_age_ms",
                "journal.fsync_interval_ms",
                "journal.retry_interval_ms",
                "audit_anchor[0].anchor",
                "audit_anchor[1].log",
                "audit_anchor[2].anchor",
            ],
            "{err}"
        );
        assert!(err.to_string().starts_with("recorder.toml has 11 problem(s):"), "{err}");
    }

    #[test]
    fn unknown_keys_and_policies_name_their_line() {
        let err = Config::parse("name = \"n\"\n[journal]\nfsync_ms = 3\n", "f.toml").unwrap_err();
        assert_eq!(err.problems[0].0, "line 3");
        assert!(err.problems[0].1.contains("unknown field `fsync_ms`"), "{err}");
        let err = Config::parse("[journal]\nfsync = \"sometimes\"\n", "f.toml").unwrap_err();
        assert_eq!(err.problems[0].0, "line 2");
        assert!(err.problems[0].1.contains("every-block"), "{err}");
    }

    #[test]
    fn audit_anchors_are_read_from_array_tables() {
        let text = "audit_anchor_interval_ms = 500\n[[audit_anchor]]\nlog = \"/l/a.jsonl\"\nanchor = \"/s/a.jsonl\"\n\
                    [[audit_anchor]]\nlog = \"/l/b.jsonl\"\nanchor = \"/s/b.jsonl\"\n";
        let config = Config::parse(text, "f.toml").unwrap();
        assert_eq!(config.audit_anchor_interval_ms, 500);
        assert_eq!(
            config.audit_anchor,
            [
                AuditAnchor { log: "/l/a.jsonl".into(), anchor: "/s/a.jsonl".into(), key_file: None },
                AuditAnchor { log: "/l/b.jsonl".into(), anchor: "/s/b.jsonl".into(), key_file: None }
            ]
        );
        let err =
            Config::parse("[[audit_anchor]]\nlog = \"/l\"\nanchor = \"/a\"\nkey = \"x\"\n", "f.toml").unwrap_err();
        assert!(err.to_string().contains("unknown field `key`"), "{err}");
    }

    #[test]
    fn fsync_policies_map_to_the_writer() {
        let mut j = JournalConfig::default();
        assert_eq!(j.writer_options().fsync, FsyncPolicy::Interval(Duration::from_millis(200)));
        j.fsync = Fsync::EveryBlock;
        assert_eq!(j.writer_options().fsync, FsyncPolicy::EveryBlock);
        j.fsync = Fsync::Never;
        assert_eq!(j.writer_options().fsync, FsyncPolicy::Never);
        assert_eq!(j.writer_options().block_records, 64);
    }
}
