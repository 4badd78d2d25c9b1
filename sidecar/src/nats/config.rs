//! `qilin-nats` configuration: one TOML file, every key with a default, unknown keys refused, and
//! every problem reported with its file and key at once. Secrets never appear in this file: it
//! names secret files (or the sidecar reads `NATS_*` environment variables).

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

pub use qilin_market::config::ConfigError;

/// The whole file.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Instance name: status file `<segment>.sidecars/<name>.json`, cursor `<state_dir>/<name>.cursor`.
    pub name: String,
    /// The segment to read.
    pub segment: PathBuf,
    /// Directory of the durable cursor file; default the state directory (`$XDG_STATE_HOME/qilin`
    /// or `~/.local/state/qilin`).
    pub state_dir: PathBuf,
    /// Where to start when there is no cursor (first start).
    pub start: StartAt,
    /// How often the status file is rewritten.
    pub status_interval_ms: u64,
    /// How often the cursor file is saved (when it moved).
    pub cursor_interval_ms: u64,
    /// The recorder's journal directory: ticks the ring lost are published from it (backfill);
    /// empty: lost ticks become gap events at once.
    pub journal_dir: PathBuf,
    /// The journal-encryption keys of an encrypted journal (`qilinctl keys render-key
    /// journal-encryption --in-force` files, 0600), read again at every backfill so a rotation's
    /// new file is taken. Empty: the journal is not encrypted.
    pub journal_key_files: Vec<PathBuf>,
    /// How long to wait for the recorder to write a lost range before publishing what is still
    /// missing as a gap event.
    pub backfill_wait_ms: u64,
    /// `[nats]`.
    pub nats: NatsConfig,
    /// `[jetstream]` (used when `nats.mode = "jetstream"`).
    pub jetstream: JetStreamConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            name: "nats".into(),
            segment: PathBuf::from("/dev/shm/qilin"),
            state_dir: qilin_market::paths::state_dir(),
            start: StartAt::Oldest,
            status_interval_ms: 250,
            cursor_interval_ms: 200,
            journal_dir: PathBuf::new(),
            journal_key_files: Vec::new(),
            backfill_wait_ms: 2000,
            nats: NatsConfig::default(),
            jetstream: JetStreamConfig::default(),
        }
    }
}

/// First start without a cursor.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum StartAt {
    /// The oldest tick still in the ring.
    #[default]
    Oldest,
    /// Only ticks published from now on.
    Newest,
}

/// Core NATS or JetStream.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Fire and forget; the position is confirmed by a round trip to the server (a token published to the sidecar's own inbox coming back); a restart may republish
    /// the ticks since the last flush (consumers dedup on the `Qilin-Seq` header).
    Core,
    /// Every message acknowledged by the stream; exactly once across restarts.
    #[default]
    Jetstream,
}

/// Message body.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Payload {
    /// The 376-byte tick record exactly as in the segment (read it with qilin-shm or the C header).
    #[default]
    Raw,
    /// The tick as JSON with CTP field names, as `qilinctl tail --json` prints it.
    Json,
}

/// `[nats]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// Servers, tried in order (`nats://host:port` or `tls://host:port`).
    pub urls: Vec<String>,
    /// Core NATS or JetStream.
    pub mode: Mode,
    /// Subject prefix; empty: `qilin.<feed>`.
    pub subject_prefix: String,
    /// Message body.
    pub payload: Payload,
    /// Messages the client may buffer on its way to the socket (bounds memory while NATS is slow).
    pub client_capacity: usize,
    /// Core mode: how often the position is confirmed by a round trip to the server.
    pub flush_interval_ms: u64,
    /// Connection attempt timeout.
    pub connect_timeout_ms: u64,
    /// JetStream API requests, publish acks and flushes.
    pub request_timeout_ms: u64,
    /// Longest wait between reconnect attempts (the backoff doubles up to it).
    pub reconnect_max_delay_ms: u64,
    /// User name (with a password from `NATS_PASSWORD` or `password_file`); or `NATS_USER`.
    pub user: String,
    /// File holding the password (else `NATS_PASSWORD`).
    pub password_file: Option<PathBuf>,
    /// File holding a token (else `NATS_TOKEN`).
    pub token_file: Option<PathBuf>,
    /// File holding an nkey seed (else `NATS_NKEY_SEED`).
    pub nkey_seed_file: Option<PathBuf>,
    /// A `.creds` file (JWT + nkey seed) (else `NATS_CREDS_FILE` names it).
    pub creds_file: Option<PathBuf>,
    /// A managed key as `qilinctl keys render-nats` writes it for this sidecar: a dotenv file with
    /// `NATS_USER` and `NATS_PASSWORD` of the key's active version (docs/KEYS.md). Read at every
    /// connect and watched: when it changes, the sidecar reconnects with the new version.
    pub credentials_file: Option<PathBuf>,
    /// `[nats.tls]`.
    pub tls: TlsConfig,
    /// Send credentials that cross the wire (password, token, a `.creds` file's JWT) to a server
    /// that is neither TLS nor on this host. Off: such a configuration is refused at start. (An
    /// nkey seed never leaves the process: only a signature does.)
    pub allow_plaintext_credentials: bool,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            urls: vec!["nats://127.0.0.1:4222".into()],
            mode: Mode::Jetstream,
            subject_prefix: String::new(),
            payload: Payload::Raw,
            client_capacity: 65536,
            flush_interval_ms: 100,
            connect_timeout_ms: 2000,
            request_timeout_ms: 5000,
            reconnect_max_delay_ms: 2000,
            user: String::new(),
            password_file: None,
            token_file: None,
            nkey_seed_file: None,
            creds_file: None,
            credentials_file: None,
            tls: TlsConfig::default(),
            allow_plaintext_credentials: false,
        }
    }
}

/// `[nats.tls]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Refuse a connection that is not TLS.
    pub required: bool,
    /// CA certificate(s) (PEM) that signed the server's certificate.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    pub cert_file: Option<PathBuf>,
    /// Its private key (PEM); a secret file: not readable by every user.
    pub key_file: Option<PathBuf>,
}

/// Stream storage.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Storage {
    /// On disk.
    #[default]
    File,
    /// In memory.
    Memory,
}

/// `[jetstream]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct JetStreamConfig {
    /// Stream name; empty: `QILIN_<FEED>` (upper case, `-` → `_`).
    pub stream: String,
    /// Create the stream if it does not exist (otherwise it must exist).
    pub create: bool,
    /// Storage of a created stream.
    pub storage: Storage,
    /// Replicas of a created stream (clustered JetStream).
    pub replicas: usize,
    /// Age limit of a created stream (0: none).
    pub max_age_s: u64,
    /// Size limit of a created stream (0: none).
    pub max_bytes: u64,
    /// The server drops a message whose `Nats-Msg-Id` it saw within this window. Resuming does
    /// not rely on it (the sidecar reads the stream's last message and continues after it); the
    /// window catches the client's own retransmissions.
    pub duplicate_window_s: u64,
    /// Publishes awaiting their ack at most (a bounded window; the oldest is awaited when full).
    pub ack_window: usize,
}

impl Default for JetStreamConfig {
    fn default() -> Self {
        JetStreamConfig {
            stream: String::new(),
            create: true,
            storage: Storage::File,
            replicas: 1,
            max_age_s: 86_400,
            max_bytes: 0,
            duplicate_window_s: 120,
            ack_window: 4096,
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
        for (key, value, min, max) in [
            ("status_interval_ms", self.status_interval_ms, 10, 60_000),
            ("cursor_interval_ms", self.cursor_interval_ms, 1, 60_000),
            ("backfill_wait_ms", self.backfill_wait_ms, 0, 600_000),
            ("nats.flush_interval_ms", self.nats.flush_interval_ms, 1, 60_000),
            ("nats.connect_timeout_ms", self.nats.connect_timeout_ms, 10, 600_000),
            ("nats.request_timeout_ms", self.nats.request_timeout_ms, 10, 600_000),
            ("nats.reconnect_max_delay_ms", self.nats.reconnect_max_delay_ms, 10, 600_000),
            ("nats.client_capacity", self.nats.client_capacity as u64, 16, 1 << 24),
            ("jetstream.ack_window", self.jetstream.ack_window as u64, 1, 1 << 20),
            ("jetstream.replicas", self.jetstream.replicas as u64, 1, 5),
            ("jetstream.duplicate_window_s", self.jetstream.duplicate_window_s, 1, 86_400),
        ] {
            if !(min..=max).contains(&value) {
                bad(key, format!("{value}: must be between {min} and {max}"));
            }
        }
        let n = &self.nats;
        if n.urls.is_empty() {
            bad("nats.urls", "empty: give at least one server".into());
        }
        for url in &n.urls {
            if url.parse::<async_nats::ServerAddr>().is_err() {
                bad("nats.urls", format!("{url:?}: not a NATS server address (nats://host:port or tls://host:port)"));
            }
        }
        if !n.subject_prefix.is_empty()
            && n.subject_prefix.split('.').any(|t| t.is_empty() || t.contains(['*', '>', ' ', '\t']))
        {
            bad(
                "nats.subject_prefix",
                format!("{:?}: dot-separated non-empty tokens without * > or spaces", n.subject_prefix),
            );
        }
        let auth = [
            n.password_file.is_some(),
            n.token_file.is_some(),
            n.nkey_seed_file.is_some(),
            n.creds_file.is_some(),
            n.credentials_file.is_some(),
        ];
        if auth.iter().filter(|&&a| a).count() > 1 {
            bad(
                "nats",
                "give at most one of password_file, token_file, nkey_seed_file, creds_file, credentials_file".into(),
            );
        }
        if n.password_file.is_some() && n.user.is_empty() && std::env::var_os("NATS_USER").is_none() {
            bad("nats.user", "password_file is set but no user (nats.user or NATS_USER)".into());
        }
        let t = &n.tls;
        if t.cert_file.is_some() != t.key_file.is_some() {
            bad("nats.tls", "cert_file and key_file go together (mutual TLS needs both)".into());
        }
        for (key, path) in [
            ("nats.password_file", &n.password_file),
            ("nats.token_file", &n.token_file),
            ("nats.nkey_seed_file", &n.nkey_seed_file),
            ("nats.creds_file", &n.creds_file),
            ("nats.credentials_file", &n.credentials_file),
            ("nats.tls.ca_file", &t.ca_file),
            ("nats.tls.cert_file", &t.cert_file),
            ("nats.tls.key_file", &t.key_file),
        ] {
            if let Some(path) = path
                && let Err(e) = std::fs::metadata(path)
            {
                bad(key, format!("{}: {e}", path.display()));
            }
        }
        let j = &self.jetstream;
        if !j.stream.is_empty() && !j.stream.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b)) {
            bad("jetstream.stream", format!("{:?}: [A-Za-z0-9_-] only", j.stream));
        }
        ConfigError::check(file, problems)
    }

    /// Path of the cursor file.
    pub fn cursor_path(&self) -> PathBuf {
        self.state_dir.join(format!("{}.cursor", self.name))
    }

    /// The subject prefix in force for `feed`.
    pub fn subject_prefix(&self, feed: &str) -> String {
        if self.nats.subject_prefix.is_empty() {
            format!("qilin.{}", super::subject_token(feed))
        } else {
            self.nats.subject_prefix.clone()
        }
    }

    /// The stream name in force for `feed`.
    pub fn stream_name(&self, feed: &str) -> String {
        if self.jetstream.stream.is_empty() {
            format!("QILIN_{}", feed.to_ascii_uppercase().replace('-', "_"))
        } else {
            self.jetstream.stream.clone()
        }
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
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/nats.example.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let parsed: Config = toml::from_str(&text).unwrap();
        assert_eq!(parsed, Config::default(), "config/nats.example.toml must show the defaults");
        // Started from a checkout as the README shows, the cursor must not land in the source tree.
        assert!(parsed.state_dir.is_absolute(), "{}", parsed.state_dir.display());
        Config::default().validate("<defaults>").unwrap();
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let text = r#"
            name = "a b"
            [nats]
            urls = ["nats://ok:4222", "http://"]
            subject_prefix = "a..b"
            token_file = "/nonexistent/token"
            nkey_seed_file = "/nonexistent/seed"
            [nats.tls]
            cert_file = "/nonexistent/cert.pem"
            [jetstream]
            ack_window = 0
            stream = "a.b"
        "#;
        let err = Config::parse(text, "nats.toml").unwrap_err();
        let keys: Vec<&str> = err.problems.iter().map(|(k, _)| k.as_str()).collect();
        for key in [
            "name",
            "nats.urls",
            "nats.subject_prefix",
            "nats",
            "nats.tls",
            "nats.token_file",
            "nats.nkey_seed_file",
            "nats.tls.cert_file",
            "jetstream.ack_window",
            "jetstream.stream",
        ] {
            assert!(keys.contains(&key), "{key} missing from {err}");
        }
        assert!(err.to_string().starts_with("nats.toml has 10 problem(s):"), "{err}");
    }

    #[test]
    fn unknown_keys_name_their_line() {
        let err = Config::parse("name = \"n\"\n[nats]\nurl = \"x\"\n", "f.toml").unwrap_err();
        assert_eq!(err.problems[0].0, "line 3");
        assert!(err.problems[0].1.contains("unknown field `url`"), "{err}");
    }

    #[test]
    fn prefix_and_stream_default_from_the_feed() {
        let c = Config::default();
        assert_eq!(c.subject_prefix("sim-1"), "qilin.sim-1");
        assert_eq!(c.stream_name("sim-1"), "QILIN_SIM_1");
        assert_eq!(c.cursor_path(), qilin_market::paths::state_dir().join("nats.cursor"));
    }
}
