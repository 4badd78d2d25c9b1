//! Primary and backup sessions: who logs in where, which one the ring takes ticks from, and the
//! switches between them (design.md, "Failover").
//!
//! ```text
//!  qilin-secrets ──credentials──▶ control thread ──Msg──▶ session manager thread ──Command──▶ hot thread
//!  qilinctl failover/failback ──▶      (uid checked)          │  ▲ SessionEvent                (switch, status,
//!                                                             ▼  │                              counters)
//!                                                   Fronts (sim now; the CTP SDK later)
//!                                                     │ ticks, one hand-off per session
//!                                                     ▼
//!                                                  hot thread: takes the active session's ticks; while
//!                                                  switching, or while the active one is down, both
//!                                                  sessions' ticks, deduplicated
//! ```
//!
//! The manager ([`manager::Manager`]) runs on its own thread: it owns the credentials (in `secrecy`
//! types; the hot thread never sees them), asks the [`Fronts`] to connect and log in, reacts to their
//! [`SessionEvent`]s (automatic failover on disconnect, login failure or a heartbeat warning past the
//! threshold; automatic failback after a configured healthy time), executes operator commands
//! (`failover`, `failback`, `relogin`, `sessions`, `inject`), tells the hot thread which session is
//! active and what to put in the header's status line, and writes every switch to the audit log.

#[cfg(feature = "ctp")]
pub mod ctp;
pub mod manager;
pub mod sim;

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use qilin_shm::Source;
use secrecy::SecretString;
use serde::Deserialize;

/// One of the two sessions, and the faults a simulated one can show: the control protocol's types.
pub use qilin_market::control::{Fault, Which};

/// One account's credentials, as the secrets sidecar hands them over (one JSON object on the control
/// socket). The password and the auth code stay in `secrecy` types: their `Debug` is redacted, and
/// they are zeroed when dropped.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// Which session these are for.
    pub session: Which,
    /// CTP BrokerID.
    pub broker_id: String,
    /// CTP UserID.
    pub user_id: String,
    /// CTP password.
    pub password: SecretString,
    /// Market-data fronts, `tcp://host:port` (or `ssl://`), tried in order.
    pub md_fronts: Vec<String>,
    /// AppID for terminal authentication, if the broker requires it.
    #[serde(default)]
    pub app_id: Option<String>,
    /// AuthCode for terminal authentication, if the broker requires it.
    #[serde(default)]
    pub auth_code: Option<SecretString>,
}

impl Credentials {
    /// Parses the JSON object of a `credentials` command. Errors name the field and the reason,
    /// never a value (serde_json's messages quote values only for invalid enum variants and types,
    /// which are reduced to the field here).
    pub fn parse(json: &str) -> Result<Credentials, String> {
        let creds: Credentials = serde_json::from_str(json).map_err(|e| {
            // serde_json's Display may quote an unexpected value ("invalid type: string \"…\""), so
            // keep only its classification and position.
            let what = match e.classify() {
                serde_json::error::Category::Syntax | serde_json::error::Category::Eof => "not valid JSON",
                serde_json::error::Category::Data => "a field is missing, unknown or of the wrong type",
                serde_json::error::Category::Io => "unreadable",
            };
            format!("credentials: {what} (line {}, column {}); expected {{\"session\":\"primary|backup\",\"broker_id\",\"user_id\",\"password\",\"md_fronts\":[…],\"app_id\"?,\"auth_code\"?}}", e.line(), e.column())
        })?;
        creds.check()?;
        Ok(creds)
    }

    /// The checks the core repeats whatever the sidecar validated: present fields and front URLs.
    fn check(&self) -> Result<(), String> {
        use secrecy::ExposeSecret;
        let mut problems = Vec::new();
        if self.broker_id.trim().is_empty() {
            problems.push("broker_id is empty".to_string());
        }
        if self.user_id.trim().is_empty() {
            problems.push("user_id is empty".to_string());
        }
        if self.password.expose_secret().is_empty() {
            problems.push("password is empty".to_string());
        }
        if self.md_fronts.is_empty() {
            problems.push("md_fronts is empty".to_string());
        }
        for (i, front) in self.md_fronts.iter().enumerate() {
            if let Err(reason) = check_front(front) {
                problems.push(format!("md_fronts[{i}] {front:?}: {reason}"));
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(format!("credentials: {}", problems.join("; "))) }
    }
}

/// A front address: `tcp://host:port` or `ssl://host:port`, port 1–65535.
pub fn check_front(front: &str) -> Result<(), &'static str> {
    let rest = front
        .strip_prefix("tcp://")
        .or_else(|| front.strip_prefix("ssl://"))
        .ok_or("expected tcp://host:port or ssl://host:port")?;
    let (host, port) = rest.rsplit_once(':').ok_or("no :port")?;
    if host.is_empty() || host.contains('/') || host.contains('@') {
        return Err("no host name");
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err("port is not 1-65535"),
    }
}

/// What a session's connection reports (the CTP SPI callbacks, or the simulator's imitation of them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionEvent {
    /// `OnFrontConnected`: a front accepted the connection.
    Connected {
        /// The front's address.
        front: String,
    },
    /// `OnFrontDisconnected`: the connection dropped; the SDK reconnects by itself.
    Disconnected {
        /// The SDK's reason code (0x1001 network read failure, …).
        reason: i32,
    },
    /// `OnRspUserLogin` without error.
    LoggedIn {
        /// Trading day the front reports, YYYYMMDD.
        trading_day: u32,
    },
    /// `OnRspUserLogin` with an error.
    LoginFailed {
        /// CTP ErrorID.
        error_id: i32,
        /// The error message (decoded to UTF-8).
        message: String,
    },
    /// `OnHeartBeatWarning`: no data from the front for this many seconds.
    HeartbeatWarning {
        /// Seconds since the last data.
        seconds: i32,
    },
    /// `OnRspError`, or an error in the answer to a request other than the login (a refused
    /// `SubscribeMarketData`, say): logged and counted; the session's state does not change.
    RspError {
        /// The request it answers (`"OnRspError"` when the SDK does not say).
        request: &'static str,
        /// CTP ErrorID.
        error_id: i32,
        /// The error message (decoded to UTF-8).
        message: String,
    },
    /// The front refused to subscribe one instrument (`OnRspSubMarketData` with an error): reported
    /// by name, counted with the error answers; the other instruments are not affected.
    SubscriptionRefused {
        /// The instrument.
        instrument: String,
        /// CTP ErrorID.
        error_id: i32,
        /// The error message (decoded to UTF-8).
        message: String,
    },
}

/// CTP's `OnFrontDisconnected` reason codes in words.
pub fn disconnect_reason(reason: i32) -> &'static str {
    match reason {
        0x1001 => "network read failed",
        0x1002 => "network write failed",
        0x2001 => "heartbeat receive timed out",
        0x2002 => "heartbeat send failed",
        0x2003 => "received a bad message",
        _ => "unknown reason",
    }
}

/// What connects a session and logs it in: the simulator's fronts now, the CTP SDK later. Every
/// call returns at once; outcomes come back as [`SessionEvent`]s through the manager's channel.
pub trait Fronts: Send {
    /// Creates the session's connection to the fronts in `creds` and starts connecting (CTP:
    /// `CreateFtdcMdApi`, `RegisterFront` for each front, `Init`). Replaces an existing connection.
    fn connect(&mut self, which: Which, creds: &Credentials);
    /// Logs the connected session in and subscribes (CTP: `ReqUserLogin`, then `SubscribeMarketData`).
    fn login(&mut self, which: Which, creds: &Credentials);
    /// Closes the session (CTP: `ReqUserLogout`, `Release`); no more ticks or events from it.
    fn release(&mut self, which: Which);
    /// Injects a fault (simulator only).
    fn inject(&mut self, which: Which, fault: Fault) -> Result<(), String>;
    /// The vendor API version string for the header's status line.
    fn api_version(&self) -> &str;
    /// An instrument was subscribed (`true`) or unsubscribed over the control socket: the fronts
    /// subscribe it on every logged-in session now and at every later login (CTP:
    /// `SubscribeMarketData` / `UnSubscribeMarketData`). The simulator delivers every instrument and
    /// ignores it.
    fn subscription(&mut self, _instrument: &str, _subscribed: bool) {}
}

/// Per-session "logged in and delivering" flags shared by the fronts (which set them), the
/// simulator's market (which delivers only to sessions that are up) and the hot thread (which takes
/// the standby's ticks at once when the active session is down, before the manager switches).
#[derive(Clone, Debug, Default)]
pub struct Links(Arc<[AtomicBool; 2]>);

impl Links {
    /// Both down.
    pub fn new() -> Links {
        Links::default()
    }

    /// Whether `which` is up.
    #[inline]
    pub fn is_up(&self, which: Which) -> bool {
        self.0[which.index()].load(Ordering::Acquire)
    }

    /// Marks `which` up or down.
    pub fn set(&self, which: Which, up: bool) {
        self.0[which.index()].store(up, Ordering::Release);
    }

    /// Whether the session whose ticks carry `source` is up (false for non-session sources).
    #[inline]
    pub fn source_up(&self, source: Source) -> bool {
        match source {
            Source::Primary => self.is_up(Which::Primary),
            Source::Backup => self.is_up(Which::Backup),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn credentials_parse_and_debug_redacts() {
        let c = Credentials::parse(r#"{"session":"backup","broker_id":"9999","user_id":"u1","password":"hunter2-secret","md_fronts":["tcp://10.0.0.1:41213"],"auth_code":"AC-secret"}"#).unwrap();
        assert_eq!(c.session, Which::Backup);
        assert_eq!(c.password.expose_secret(), "hunter2-secret");
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("AC-secret"), "{shown}");
    }

    #[test]
    fn bad_credentials_name_the_field_never_the_value() {
        let err = Credentials::parse(r#"{"session":"primary","broker_id":"","user_id":"u","password":"p4ss-value","md_fronts":["http://x:1","tcp://h:0"]}"#).unwrap_err();
        assert!(err.contains("broker_id is empty"), "{err}");
        assert!(err.contains("md_fronts[0]") && err.contains("md_fronts[1]"), "{err}");
        assert!(!err.contains("p4ss-value"), "{err}");
        // A password of the wrong type: serde would quote it; the message must not.
        let err = Credentials::parse(
            r#"{"session":"primary","broker_id":"1","user_id":"u","password":7777123,"md_fronts":[]}"#,
        )
        .unwrap_err();
        assert!(!err.contains("7777123"), "{err}");
        let err = Credentials::parse(r#"{"session":"tertiary-secret-word"}"#).unwrap_err();
        assert!(!err.contains("tertiary-secret-word"), "{err}");
    }

    #[test]
    fn fronts_are_checked() {
        assert!(check_front("tcp://180.168.146.187:10211").is_ok());
        assert!(check_front("ssl://md.example.com:443").is_ok());
        assert!(check_front("tcp://:10211").is_err());
        assert!(check_front("tcp://host").is_err());
        assert!(check_front("udp://host:1").is_err());
        assert!(check_front("tcp://user:pw@host:1").is_err());
    }
}
