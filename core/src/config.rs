//! The core's configuration: one TOML file, every key with a default so an empty file (or none) runs
//! the simulator, units in key names, unknown keys refused, and a `validate()` that reports every
//! problem with its key at once.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
};

use serde::Deserialize;

/// The whole configuration file.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[feed]`: the segment.
    pub feed: FeedConfig,
    /// `[core]`: the process and its hot thread.
    pub core: CoreConfig,
    /// `[source]`: where ticks come from.
    pub source: SourceConfig,
    /// `[failover]`: primary and backup sessions.
    pub failover: FailoverConfig,
}

/// `[failover]`: when the core switches between the primary and the backup account's sessions.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FailoverConfig {
    /// Switch to the other session, if it is logged in, when the active one disconnects, fails to
    /// log in or reports a heartbeat warning of at least `heartbeat_warning_s`.
    pub auto: bool,
    /// A heartbeat warning reporting at least this many seconds without data counts as a failure.
    pub heartbeat_warning_s: u32,
    /// After an automatic failover, switch back once the primary has been logged in this long;
    /// 0 = only on command (`qilinctl failback`). A failover on command always waits for a command.
    pub failback_after_ms: u64,
    /// After a switch, ticks of both sessions are taken (and deduplicated) for this long, so the
    /// switch loses nothing the other session delivers a little later or earlier.
    pub overlap_ms: u64,
    /// Wait between login attempts of a session whose login failed.
    pub login_retry_ms: u64,
    /// How long a `failover`/`failback`/`relogin` command waits for its outcome.
    pub command_timeout_ms: u64,
}

impl Default for FailoverConfig {
    fn default() -> Self {
        FailoverConfig {
            auto: true,
            heartbeat_warning_s: 10,
            failback_after_ms: 0,
            overlap_ms: 500,
            login_retry_ms: 1000,
            command_timeout_ms: 10_000,
        }
    }
}

/// `[feed]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FeedConfig {
    /// Feed name (segment header, NATS message ids); ASCII, at most 31 bytes.
    pub name: String,
    /// Segment file; default `/dev/shm/<name>`.
    pub segment_path: Option<PathBuf>,
    /// Ring capacity in slots (power of two).
    pub ring_slots: u64,
    /// Instrument directory / last-value-cache capacity.
    pub instrument_capacity: u32,
}

impl Default for FeedConfig {
    fn default() -> Self {
        FeedConfig { name: "qilin".into(), segment_path: None, ring_slots: 1 << 16, instrument_capacity: 4096 }
    }
}

impl FeedConfig {
    /// The segment path in force.
    pub fn segment_path(&self) -> PathBuf {
        self.segment_path.clone().unwrap_or_else(|| PathBuf::from(format!("/dev/shm/{}", self.name)))
    }
}

/// What the core does with a tick whose product the product table does not list.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum UnknownProducts {
    /// Admit it with its exchange's default sessions, flag every tick `unknown_product` and count
    /// it (`flag_unknown_product`): a feed that silently drops a product loses data, and a new
    /// listing appears before the table is updated.
    #[default]
    Admit,
    /// Refuse it (`reject_unknown_instrument`), as feeds that carry only what they know do.
    Reject,
}

/// Which instruments the core admits into the directory.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Admit {
    /// Any instrument whose product is in the instruments file (UDP relays and the simulator).
    #[default]
    AnyKnownProduct,
    /// Only instruments subscribed over the control socket (or listed in `core.subscribe`).
    SubscribedOnly,
}

/// `[core]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CoreConfig {
    /// CPU to pin the hot thread to; none = do not pin.
    pub cpu: Option<usize>,
    /// Raw structs the SDK → core hand-off holds.
    pub handoff_capacity: usize,
    /// Commands the control → core channel holds.
    pub command_queue_capacity: usize,
    /// Events the core → logger queue holds.
    pub event_queue_capacity: usize,
    /// Heartbeat period.
    pub heartbeat_interval_ms: u64,
    /// Control socket path; default `/tmp/qilin-<feed>.sock`.
    pub control_socket: Option<PathBuf>,
    /// Uids allowed to send commands (SO_PEERCRED); empty = only the core's own uid.
    pub control_allowed_uids: Vec<u32>,
    /// The only uid whose `credentials` are accepted (the qilin-secrets sidecar's); none = the core's
    /// own uid. Credentials from any other uid are refused, logged and audited.
    pub secrets_uid: Option<u32>,
    /// Audit log for session switches and refused credentials; default `$QILIN_AUDIT_LOG`, else the
    /// per-user default of `qilinctl audit`.
    pub audit_log: Option<PathBuf>,
    /// `mlockall` the process (a warning, not an error, when not permitted).
    pub lock_memory: bool,
    /// Product specifications.
    pub instruments_file: PathBuf,
    /// The trading calendar's directory (`YYYY.toml` per year, docs/CALENDAR.md).
    pub calendar_dir: PathBuf,
    /// Admission policy.
    pub admit: Admit,
    /// Ticks of products the table does not list: `admit` (flagged) or `reject`.
    pub unknown_products: UnknownProducts,
    /// Instruments subscribed at start (with `admit = "subscribed-only"`).
    pub subscribe: Vec<String>,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            cpu: None,
            handoff_capacity: 1 << 16,
            command_queue_capacity: 64,
            event_queue_capacity: 4096,
            heartbeat_interval_ms: 1,
            control_socket: None,
            control_allowed_uids: Vec::new(),
            secrets_uid: None,
            audit_log: None,
            lock_memory: true,
            instruments_file: default_instruments_file(),
            calendar_dir: in_tree_or_cwd("config/calendar"),
            admit: Admit::AnyKnownProduct,
            unknown_products: UnknownProducts::Admit,
            subscribe: Vec::new(),
        }
    }
}

/// `config/instruments.toml` next to the workspace when run from a checkout, else the cwd-relative path.
fn default_instruments_file() -> PathBuf {
    in_tree_or_cwd("config/instruments.toml")
}

/// `relative` in the workspace when run from a checkout, else relative to the working directory.
fn in_tree_or_cwd(relative: &str) -> PathBuf {
    let in_tree = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(relative);
    if in_tree.exists() { in_tree } else { PathBuf::from(relative) }
}

impl CoreConfig {
    /// The control socket path in force.
    pub fn control_socket(&self, feed: &str) -> PathBuf {
        self.control_socket.clone().unwrap_or_else(|| PathBuf::from(format!("/tmp/qilin-{feed}.sock")))
    }
}

/// Source kinds.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// Built-in simulator.
    #[default]
    Sim,
    /// Raw CTP structs in UDP datagrams.
    Udp,
    /// Journal files written by qilin-recorder.
    Replay,
    /// The CTP market-data SDK (`[source.ctp]`): primary and backup sessions logged in with the
    /// credentials qilin-secrets hands over.
    Ctp,
}

/// `[source]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    /// Which source runs.
    pub kind: SourceKind,
    /// `[source.sim]`.
    pub sim: SimConfig,
    /// `[source.udp]`.
    pub udp: UdpConfig,
    /// `[source.replay]`.
    pub replay: ReplayConfig,
    /// `[source.ctp]`.
    pub ctp: CtpConfig,
}

/// `[source.ctp]`: the vendor market-data SDK (see docs/CTP.md). The fronts and the account come
/// with the credentials over the control socket; the instruments subscribed are `core.subscribe`
/// plus those subscribed over the control socket.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CtpConfig {
    /// The SDK's market-data library, `thostmduserapi_se.so`, of the version this core was built for
    /// (loaded at start; nothing is linked at build time).
    pub sdk_path: PathBuf,
    /// Directory for the SDK's flow files, one subdirectory per session; default
    /// `/tmp/qilin-<feed>.ctp-flow`.
    pub flow_dir: Option<PathBuf>,
    /// `CreateFtdcMdApi`'s production-mode flag (6.7.11 and later): false only for a test front that
    /// requires it.
    pub production_mode: Option<bool>,
    /// Where the SDK's own stdout diagnostics go: `"log"` (each line into the core's log, target
    /// `ctp_sdk`) or `"inherit"` (the process's stdout, untouched).
    pub sdk_stdout: SdkStdout,
}

/// `source.ctp.sdk_stdout`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SdkStdout {
    /// The SDK's stdout lines go into the core's log (target `ctp_sdk`).
    #[default]
    Log,
    /// Left on the process's stdout.
    Inherit,
}

impl CtpConfig {
    /// The flow directory in force.
    pub fn flow_dir(&self, feed: &str) -> PathBuf {
        self.flow_dir.clone().unwrap_or_else(|| PathBuf::from(format!("/tmp/qilin-{feed}.ctp-flow")))
    }

    /// The production-mode flag in force (default true).
    pub fn production_mode(&self) -> bool {
        self.production_mode.unwrap_or(true)
    }
}

/// `[source.replay]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ReplayConfig {
    /// A journal file (`<feed>-<YYYYMMDD>.qj`) or a directory of them.
    pub path: PathBuf,
    /// Feed whose files to replay from a directory; empty: the directory's only feed.
    pub feed: String,
    /// Pace: 0 = as fast as the hot thread takes them; 1.0 = the original speed; 2.0 = twice as fast.
    pub speed: f64,
    /// Encrypted journals: the `journal-encryption` key versions they need, each a file `qilinctl
    /// keys render-key journal-encryption` wrote (mode 0600). A version missing here is an error
    /// naming it and the file (docs/KEYS.md).
    pub key_files: Vec<PathBuf>,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        ReplayConfig { path: PathBuf::new(), feed: String::new(), speed: 0.0, key_files: Vec::new() }
    }
}

/// `[source.sim]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// Snapshot cadence per instrument (CTP pushes every 500 ms).
    pub snapshot_interval_ms: u64,
    /// Total ticks per second for load tests; 0 = real cadence. Simulated time advances by
    /// `snapshot_interval_ms` per round of instruments either way.
    pub ticks_per_second: u64,
    /// Stop after this many ticks (0 = run until stopped).
    pub max_ticks: u64,
    /// PRNG seed: the same seed produces the same ticks.
    pub seed: u64,
    /// Instruments to simulate; empty = every instrument listed in the instruments file.
    pub instruments: Vec<String>,
    /// Simulated exchange clock start, China local time `YYYY-MM-DD HH:MM:SS` (trading day is derived).
    pub start: String,
    /// Fault and quirk injection, as probabilities per tick.
    pub inject: InjectConfig,
    /// `[source.sim.sessions]`: simulate the primary and backup accounts' sessions.
    pub sessions: SimSessionsConfig,
}

/// `[source.sim.sessions]`: the simulator as two CTP sessions (primary and backup account). Off:
/// one anonymous session, ticks tagged `sim`. On: each session logs in with the credentials the
/// secrets sidecar hands over on the control socket, ticks record their session (`primary` /
/// `backup`), and disconnects, login failures and heartbeat warnings can be injected over the
/// control socket (`inject …`), so failover and rotation are testable without a broker.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SimSessionsConfig {
    /// Run the two sessions.
    pub enabled: bool,
    /// Simulated time from login request to the login response.
    pub login_ms: u64,
    /// A disconnected simulated front reconnects after this long (the CTP SDK retries about every 2 s).
    pub reconnect_ms: u64,
}

impl Default for SimSessionsConfig {
    fn default() -> Self {
        SimSessionsConfig { enabled: false, login_ms: 20, reconnect_ms: 2000 }
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            snapshot_interval_ms: 500,
            ticks_per_second: 0,
            max_ticks: 0,
            seed: 1,
            instruments: Vec::new(),
            start: "2026-03-02 09:00:00".into(),
            inject: InjectConfig::default(),
            sessions: SimSessionsConfig::default(),
        }
    }
}

/// `[source.sim.inject]`: each value is the probability (0..=1) that a tick gets that fault.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct InjectConfig {
    /// Some prices DBL_MAX (absent).
    pub absent_prices: f64,
    /// Cumulative volume goes down.
    pub volume_regression: f64,
    /// Wrong struct size.
    pub bad_size: f64,
    /// InstrumentID not NUL-terminated.
    pub bad_id: f64,
    /// Unknown ExchangeID.
    pub unknown_exchange: f64,
    /// NaN last price.
    pub nan_price: f64,
    /// Unparseable UpdateTime.
    pub bad_time: f64,
    /// Old struct versions (6.5.x / 6.3.x) instead of 6.7.x.
    pub old_versions: f64,
}

impl InjectConfig {
    fn all(&self) -> [(&'static str, f64); 8] {
        [
            ("absent_prices", self.absent_prices),
            ("volume_regression", self.volume_regression),
            ("bad_size", self.bad_size),
            ("bad_id", self.bad_id),
            ("unknown_exchange", self.unknown_exchange),
            ("nan_price", self.nan_price),
            ("bad_time", self.bad_time),
            ("old_versions", self.old_versions),
        ]
    }
}

/// `[source.udp]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UdpConfig {
    /// Address to bind: loopback by default (a relay on this host); a relay on another host needs
    /// an interface address or 0.0.0.0 (for multicast: the group's port on 0.0.0.0).
    pub bind: SocketAddr,
    /// Senders whose datagrams are taken: addresses or CIDR ranges (`10.1.2.0/24`). Any other
    /// sender's datagrams are dropped and counted (`udp_refused`).
    pub allow: Vec<String>,
    /// Multicast group to join; none = unicast.
    pub multicast_group: Option<Ipv4Addr>,
    /// Interface address for the multicast join.
    pub multicast_interface: Ipv4Addr,
    /// Datagrams per `recvmmsg` call.
    pub batch: usize,
    /// SO_RCVBUF request.
    pub recv_buffer_bytes: usize,
}

impl Default for UdpConfig {
    fn default() -> Self {
        UdpConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 7400)),
            allow: vec!["127.0.0.0/8".into()],
            multicast_group: None,
            multicast_interface: Ipv4Addr::UNSPECIFIED,
            batch: 32,
            recv_buffer_bytes: 8 << 20,
        }
    }
}

/// One `source.udp.allow` entry: `a.b.c.d/n`, an IPv6 range, or a single address (a /32 or /128).
pub fn parse_net(entry: &str) -> Result<ipnet::IpNet, String> {
    entry
        .parse::<ipnet::IpNet>()
        .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{entry:?}: not an address or a CIDR range (e.g. 10.1.2.0/24)"))
}

impl UdpConfig {
    /// The allowed senders, parsed (the config is validated: every entry parses).
    pub fn allowed(&self) -> Vec<ipnet::IpNet> {
        self.allow.iter().filter_map(|e| parse_net(e).ok()).collect()
    }
}

pub use qilin_market::config::ConfigError;

/// What a core built without the `ctp` feature says when asked for the ctp source.
pub const CTP_NOT_BUILT: &str = "this qilin-core was built without the ctp feature (the README's `cargo run` \
     builds it without, as its binding needs libclang to build); build one with it: apt-get install libclang-dev, \
     then cargo build --release -p qilin-core --features ctp-6-7-11 (docs/CTP.md)";

impl Config {
    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let config: Config = qilin_market::config::load_toml(path)?;
        config.validate(&path.display().to_string())?;
        Ok(config)
    }

    /// Parses and validates TOML text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let config: Config = qilin_market::config::parse_toml(text, file)?;
        config.validate(file)?;
        Ok(config)
    }

    /// Checks every value, reporting all problems at once.
    pub fn validate(&self, file: &str) -> Result<(), ConfigError> {
        let mut problems: Vec<(String, String)> = Vec::new();
        let mut bad = |key: &str, reason: String| problems.push((key.into(), reason));
        let f = &self.feed;
        if f.name.is_empty()
            || f.name.len() > 31
            || !f.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
        {
            bad("feed.name", format!("{:?}: 1 to 31 characters of [A-Za-z0-9_-]", f.name));
        }
        if let Err(e) = qilin_shm::Geometry::new(f.ring_slots, f.instrument_capacity) {
            let key = if matches!(e, qilin_shm::GeometryError::RingSlots { .. }) {
                "feed.ring_slots"
            } else {
                "feed.instrument_capacity"
            };
            bad(key, e.to_string());
        }
        let c = &self.core;
        if let Some(cpu) = c.cpu {
            let cores = core_affinity::get_core_ids().map(|ids| ids.len()).unwrap_or(0);
            if cores > 0 && !core_affinity::get_core_ids().unwrap_or_default().iter().any(|id| id.id == cpu) {
                bad("core.cpu", format!("{cpu}: this process may run on {cores} CPU(s), not on CPU {cpu}"));
            }
        }
        for (key, value) in [
            ("core.handoff_capacity", c.handoff_capacity),
            ("core.command_queue_capacity", c.command_queue_capacity),
            ("core.event_queue_capacity", c.event_queue_capacity),
        ] {
            if !(1..=1 << 24).contains(&value) {
                bad(key, format!("{value}: must be between 1 and {}", 1 << 24));
            }
        }
        if !(1..=1000).contains(&c.heartbeat_interval_ms) {
            bad("core.heartbeat_interval_ms", format!("{}: must be between 1 and 1000", c.heartbeat_interval_ms));
        }
        for id in &c.subscribe {
            if id.is_empty() || id.len() > 31 || !id.is_ascii() {
                bad("core.subscribe", format!("{id:?}: an InstrumentID is 1 to 31 ASCII characters"));
            }
        }
        let s = &self.source.sim;
        if s.snapshot_interval_ms == 0 {
            bad("source.sim.snapshot_interval_ms", "0: must be at least 1".into());
        }
        if qilin_market::date::parse_local_datetime(&s.start).is_none() {
            bad("source.sim.start", format!("{:?}: expected China local time as YYYY-MM-DD HH:MM:SS", s.start));
        }
        for (key, p) in s.inject.all() {
            if !(0.0..=1.0).contains(&p) {
                bad(&format!("source.sim.inject.{key}"), format!("{p}: a probability between 0 and 1"));
            }
        }
        if s.sessions.login_ms > 60_000 || s.sessions.reconnect_ms > 600_000 {
            bad("source.sim.sessions", "login_ms ≤ 60000 and reconnect_ms ≤ 600000".into());
        }
        let fo = &self.failover;
        if fo.overlap_ms > 60_000 {
            bad("failover.overlap_ms", format!("{}: at most 60000", fo.overlap_ms));
        }
        if fo.login_retry_ms == 0 {
            bad("failover.login_retry_ms", "0: must be at least 1".into());
        }
        if fo.command_timeout_ms == 0 {
            bad("failover.command_timeout_ms", "0: must be at least 1".into());
        }
        let u = &self.source.udp;
        if let Some(group) = u.multicast_group
            && !group.is_multicast()
        {
            bad("source.udp.multicast_group", format!("{group} is not a multicast address (224.0.0.0/4)"));
        }
        if !(1..=1024).contains(&u.batch) {
            bad("source.udp.batch", format!("{}: must be between 1 and 1024", u.batch));
        }
        if u.allow.is_empty() {
            bad("source.udp.allow", "empty: no sender would be taken; list the relay's address or range".into());
        }
        for (i, entry) in u.allow.iter().enumerate() {
            if let Err(e) = parse_net(entry) {
                bad(&format!("source.udp.allow[{i}]"), e);
            }
        }
        let r = &self.source.replay;
        if !(r.speed.is_finite() && r.speed >= 0.0) {
            bad("source.replay.speed", format!("{}: 0 (as fast as possible) or a positive factor", r.speed));
        }
        if self.source.kind == SourceKind::Ctp {
            if self.source.ctp.sdk_path.as_os_str().is_empty() {
                bad("source.ctp.sdk_path", "empty: the ctp source needs the path of thostmduserapi_se.so".into());
            }
            if !cfg!(feature = "ctp") {
                bad("source.kind", format!("\"ctp\": {CTP_NOT_BUILT}"));
            }
        }
        if self.source.kind == SourceKind::Replay && r.path.as_os_str().is_empty() {
            bad("source.replay.path", "empty: the replay source needs a journal file or directory".into());
        }
        if problems.is_empty() { Ok(()) } else { Err(ConfigError { file: file.into(), problems }) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_means_simulator_defaults() {
        let c = Config::parse("", "empty.toml").unwrap();
        assert_eq!(c.source.kind, SourceKind::Sim);
        assert_eq!(c.feed.segment_path(), PathBuf::from("/dev/shm/qilin"));
        assert_eq!(c.core.control_socket("qilin"), PathBuf::from("/tmp/qilin-qilin.sock"));
    }

    #[test]
    fn every_problem_is_reported_with_file_and_key() {
        let text =
            "[feed]\nring_slots = 1000\n[core]\nheartbeat_interval_ms = 0\n[source.sim.inject]\nbad_size = 2.0\n";
        let err = Config::parse(text, "bad.toml").unwrap_err();
        let keys: Vec<_> = err.problems.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["feed.ring_slots", "core.heartbeat_interval_ms", "source.sim.inject.bad_size"]);
        let shown = err.to_string();
        assert!(shown.contains("bad.toml: feed.ring_slots: ring_slots = 1000"), "{shown}");
        assert!(shown.starts_with("bad.toml has 3 problem(s)"), "{shown}");
    }

    #[test]
    fn unknown_keys_and_type_errors_name_the_line() {
        let err = Config::parse("[feed]\nname = \"x\"\nring_slot = 4\n", "typo.toml").unwrap_err();
        assert_eq!(err.problems[0].0, "line 3");
        assert!(err.problems[0].1.contains("unknown field `ring_slot`"), "{err}");
        let err = Config::parse("[core]\ncpu = \"one\"\n", "type.toml").unwrap_err();
        assert_eq!(err.problems[0].0, "line 2");
    }

    #[test]
    fn the_example_file_states_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/core.example.toml");
        let mut example = Config::load(&path).unwrap();
        assert_eq!(example.core.instruments_file, PathBuf::from("config/instruments.toml"));
        example.core.instruments_file = Config::default().core.instruments_file;
        assert_eq!(example.core.calendar_dir, PathBuf::from("config/calendar"));
        example.core.calendar_dir = Config::default().core.calendar_dir;
        assert_eq!(example, Config::default(), "config/core.example.toml and the defaults disagree");
    }

    #[test]
    fn ctp_source_needs_an_sdk_path() {
        let err = Config::parse("[source]\nkind = \"ctp\"\n", "c.toml").unwrap_err();
        assert_eq!(err.problems[0].0, "source.ctp.sdk_path");
        let c = Config::parse(
            "[source]\nkind = \"ctp\"\n[source.ctp]\nsdk_path = \"/opt/ctp/thostmduserapi_se.so\"\n",
            "c.toml",
        );
        assert_eq!(c.is_ok(), cfg!(feature = "ctp"));
        assert_eq!(Config::default().source.ctp.flow_dir("f"), PathBuf::from("/tmp/qilin-f.ctp-flow"));
    }

    /// The README's first command builds a core without the ctp source; given a ctp config, that
    /// core must say so and how to build one with it (`scripts/test` runs this without the feature).
    #[cfg(not(feature = "ctp"))]
    #[test]
    fn a_core_built_without_the_ctp_source_says_how_to_build_one() {
        let err = Config::parse(
            "[source]\nkind = \"ctp\"\n[source.ctp]\nsdk_path = \"/opt/ctp/thostmduserapi_se.so\"\n",
            "c.toml",
        )
        .unwrap_err();
        assert_eq!(err.problems.len(), 1, "{err}");
        let (key, problem) = &err.problems[0];
        assert_eq!(key, "source.kind");
        for part in
            ["built without the ctp feature", "cargo build --release -p qilin-core --features ctp-6-7-11", "libclang"]
        {
            assert!(problem.contains(part), "{problem:?} lacks {part:?}");
        }
    }

    #[test]
    fn multicast_group_must_be_multicast() {
        let err = Config::parse("[source.udp]\nmulticast_group = \"10.0.0.1\"\n", "m.toml").unwrap_err();
        assert_eq!(err.problems[0].0, "source.udp.multicast_group");
        assert!(Config::parse("[source.udp]\nmulticast_group = \"239.1.2.3\"\n", "m.toml").is_ok());
    }

    /// Each key `validate` checks, given a bad value on its own: refused, reported with that key
    /// (and only that key), the reason naming the value or the bound.
    #[test]
    fn every_checked_key_refuses_its_bad_values() {
        let cases: &[(&str, &str, &str)] = &[
            ("[feed]\nname = \"\"", "feed.name", "1 to 31 characters"),
            ("[feed]\nname = \"this-feed-name-is-longer-than-31-bytes\"", "feed.name", "1 to 31"),
            ("[feed]\nname = \"a b\"", "feed.name", "[A-Za-z0-9_-]"),
            ("[feed]\ninstrument_capacity = 0", "feed.instrument_capacity", "instrument_capacity = 0"),
            ("[core]\ncpu = 4096", "core.cpu", "4096"),
            ("[core]\nhandoff_capacity = 0", "core.handoff_capacity", "between 1 and"),
            ("[core]\ncommand_queue_capacity = 99999999", "core.command_queue_capacity", "between 1 and"),
            ("[core]\nevent_queue_capacity = 0", "core.event_queue_capacity", "between 1 and"),
            ("[core]\nheartbeat_interval_ms = 5000", "core.heartbeat_interval_ms", "between 1 and 1000"),
            ("[core]\nsubscribe = [\"\"]", "core.subscribe", "1 to 31 ASCII"),
            ("[source.sim]\nsnapshot_interval_ms = 0", "source.sim.snapshot_interval_ms", "at least 1"),
            ("[source.sim]\nstart = \"2026-03-02T09:00:00\"", "source.sim.start", "YYYY-MM-DD HH:MM:SS"),
            ("[source.sim.sessions]\nlogin_ms = 60001", "source.sim.sessions", "login_ms"),
            ("[failover]\noverlap_ms = 60001", "failover.overlap_ms", "at most 60000"),
            ("[failover]\nlogin_retry_ms = 0", "failover.login_retry_ms", "at least 1"),
            ("[failover]\ncommand_timeout_ms = 0", "failover.command_timeout_ms", "at least 1"),
            ("[source.udp]\nbatch = 0", "source.udp.batch", "between 1 and 1024"),
            ("[source.udp]\nallow = []", "source.udp.allow", "no sender would be taken"),
            (
                "[source.udp]\nallow = [\"10.0.0.0/8\", \"10.0.0.0/33\"]",
                "source.udp.allow[1]",
                "not an address or a CIDR range",
            ),
            ("[source.udp]\nallow = [\"relay.example\"]", "source.udp.allow[0]", "not an address or a CIDR range"),
            ("[source.replay]\nspeed = -1.0", "source.replay.speed", "positive factor"),
            ("[source]\nkind = \"replay\"", "source.replay.path", "needs a journal file"),
        ];
        for (text, key, reason) in cases {
            let err = Config::parse(text, "case.toml").expect_err(text);
            let keys: Vec<&str> = err.problems.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(keys, [*key], "{text}");
            assert!(err.problems[0].1.contains(reason), "{text}: {:?} lacks {reason:?}", err.problems[0].1);
        }
    }
}
