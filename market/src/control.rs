//! The control socket's protocol, typed: one request per line, one JSON reply per line. The core
//! parses lines into [`Request`]s; qilinctl and qilin-secrets build them and send
//! [`Request::line`]; everyone reads replies through [`Reply`].
//!
//! ```text
//! status                 → {"ok":true,"epoch":…,"write_cursor":…,"heartbeat_age_ms":…,"counters":{…}}
//! subscribe rb2505       → {"ok":true,"instrument":"rb2505","index":3}
//! unsubscribe rb2505     → {"ok":true,"instrument":"rb2505"}
//! shutdown               → {"ok":true}
//! sessions               → {"ok":true,"active":"primary","failovers":0,"sessions":{"primary":{…},"backup":{…}}}
//! failover | failback    → {"ok":true,"active":"backup","from":"primary","switched":true}
//! relogin primary        → {"ok":true,"session":"primary","state":"logged_in"}   (after the login)
//! inject primary disconnect | login-fail N | heartbeat-warning SECONDS   (simulated sessions only)
//! credentials {"session":"primary","broker_id":…,"user_id":…,"password":…,"md_fronts":[…]}
//!                        → {"ok":true,"session":"primary","credentials_version":2,"applied":"…"}
//! any refusal            → {"ok":false,"error":"…"}
//! ```
//!
//! A `credentials` request borrows its JSON from the line (which the core zeroes once handled) and
//! is parsed into secrecy types by the core's session code; nothing here copies it.

use std::fmt;

use qilin_shm::Source;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Longest request line accepted (a credentials object is well under 4 KiB).
pub const MAX_LINE: usize = 64 * 1024;
/// Longest instrument id (one less than the segment's field).
const MAX_ID: usize = qilin_shm::layout::INSTRUMENT_ID_LEN - 1;

/// One of the two sessions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Which {
    /// The primary account's session.
    Primary = 0,
    /// The backup account's session.
    Backup = 1,
}

impl Which {
    /// Both, primary first.
    pub const BOTH: [Which; 2] = [Which::Primary, Which::Backup];

    /// Index into per-session arrays.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The other session.
    pub const fn other(self) -> Which {
        match self {
            Which::Primary => Which::Backup,
            Which::Backup => Which::Primary,
        }
    }

    /// What its ticks record as their source.
    pub const fn source(self) -> Source {
        match self {
            Which::Primary => Source::Primary,
            Which::Backup => Source::Backup,
        }
    }

    /// `primary` / `backup`.
    pub const fn name(self) -> &'static str {
        match self {
            Which::Primary => "primary",
            Which::Backup => "backup",
        }
    }

    /// Parses `primary` / `backup`.
    pub fn parse(text: &str) -> Option<Which> {
        match text {
            "primary" => Some(Which::Primary),
            "backup" => Some(Which::Backup),
            _ => None,
        }
    }
}

/// A fault injected into a simulated session (`inject`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The front drops the connection (reason 0x1001) and comes back after `reconnect_ms`.
    Disconnect,
    /// The next `n` logins fail (ErrorID 3, invalid login), 1..=1000.
    LoginFailures(u32),
    /// The front reports a heartbeat warning of this many seconds, 1..=3600.
    HeartbeatWarning(i32),
}

/// One control request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// The segment's status.
    Status,
    /// Admit an instrument and publish it.
    Subscribe(&'a str),
    /// Stop publishing an instrument.
    Unsubscribe(&'a str),
    /// Stop the core.
    Shutdown,
    /// Both sessions' states.
    Sessions,
    /// Switch to the backup session.
    Failover,
    /// Switch back to the primary session.
    Failback,
    /// Log a session in again with its current credentials.
    Relogin(Which),
    /// A fault for a simulated session.
    Inject(Which, Fault),
    /// A credentials object (JSON text, parsed by the core's session code only).
    Credentials(&'a str),
}

/// Why a line is not a request: the reply's error text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Not one of the commands.
    #[error(
        "unknown command {0:?}; try: status | subscribe ID | unsubscribe ID | sessions | failover | failback | relogin primary|backup | shutdown"
    )]
    Unknown(String),
    /// `relogin` with something else than a session.
    #[error("{0:?}: expected primary or backup")]
    Session(String),
    /// A malformed `inject`.
    #[error("usage: inject primary|backup disconnect | login-fail N (1-1000) | heartbeat-warning SECONDS (1-3600)")]
    Inject,
    /// An instrument id that cannot be one.
    #[error("{0:?} is not an InstrumentID (1-31 ASCII characters)")]
    Instrument(String),
}

/// Whether `id` can be an InstrumentID (1 to 31 printable ASCII characters, no space).
pub fn is_instrument_id(id: &str) -> bool {
    (1..=MAX_ID).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

impl<'a> Request<'a> {
    /// Parses one line (without its newline; surrounding blanks ignored). The error of a
    /// `credentials` line never quotes it (the unknown-command error is not used for it).
    pub fn parse(line: &'a str) -> Result<Request<'a>, RequestError> {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("credentials")
            && (rest.is_empty() || rest.starts_with(char::is_whitespace))
        {
            return Ok(Request::Credentials(rest.trim()));
        }
        let mut words = line.split_whitespace();
        let request = match (words.next(), words.next(), words.next()) {
            (Some("status"), None, _) => Request::Status,
            (Some("shutdown"), None, _) => Request::Shutdown,
            (Some("sessions"), None, _) => Request::Sessions,
            (Some("failover"), None, _) => Request::Failover,
            (Some("failback"), None, _) => Request::Failback,
            (Some("relogin"), Some(which), None) => {
                Request::Relogin(Which::parse(which).ok_or_else(|| RequestError::Session(which.to_owned()))?)
            }
            (Some("inject"), Some(which), Some(what)) => {
                let arg = words.next().map(str::parse::<i64>);
                let fault = match (what, arg) {
                    ("disconnect", None) => Some(Fault::Disconnect),
                    ("login-fail", Some(Ok(n))) if (1..=1000).contains(&n) => Some(Fault::LoginFailures(n as u32)),
                    ("heartbeat-warning", Some(Ok(s))) if (1..=3600).contains(&s) => {
                        Some(Fault::HeartbeatWarning(s as i32))
                    }
                    _ => None,
                };
                match (Which::parse(which), fault, words.next()) {
                    (Some(which), Some(fault), None) => Request::Inject(which, fault),
                    _ => return Err(RequestError::Inject),
                }
            }
            (Some(verb @ ("subscribe" | "unsubscribe")), Some(id), None) => {
                if !is_instrument_id(id) {
                    return Err(RequestError::Instrument(id.to_owned()));
                }
                if verb == "subscribe" { Request::Subscribe(id) } else { Request::Unsubscribe(id) }
            }
            _ => return Err(RequestError::Unknown(line.to_owned())),
        };
        Ok(request)
    }

    /// The request's line, without the newline.
    pub fn line(&self) -> String {
        self.to_string()
    }

    /// The name used in audit entries and logs (`subscribe`, `credentials`, …).
    pub fn verb(&self) -> &'static str {
        match self {
            Request::Status => "status",
            Request::Subscribe(_) => "subscribe",
            Request::Unsubscribe(_) => "unsubscribe",
            Request::Shutdown => "shutdown",
            Request::Sessions => "sessions",
            Request::Failover => "failover",
            Request::Failback => "failback",
            Request::Relogin(_) => "relogin",
            Request::Inject(..) => "inject",
            Request::Credentials(_) => "credentials",
        }
    }
}

impl fmt::Display for Request<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Request::Subscribe(id) | Request::Unsubscribe(id) => write!(f, "{} {id}", self.verb()),
            Request::Relogin(which) => write!(f, "relogin {}", which.name()),
            Request::Inject(which, Fault::Disconnect) => write!(f, "inject {} disconnect", which.name()),
            Request::Inject(which, Fault::LoginFailures(n)) => write!(f, "inject {} login-fail {n}", which.name()),
            Request::Inject(which, Fault::HeartbeatWarning(s)) => {
                write!(f, "inject {} heartbeat-warning {s}", which.name())
            }
            Request::Credentials(json) => write!(f, "credentials {json}"),
            other => f.write_str(other.verb()),
        }
    }
}

/// A reply: `{"ok":true,…}` with its fields, or `{"ok":false,"error":…}` (a refusal may carry
/// more fields, such as the instrument). Each variant holds the whole reply object.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// Done (`"ok": true`).
    Ok(Value),
    /// Refused (`"ok": false`); [`Reply::error`] says why.
    Refused(Value),
}

impl Reply {
    /// `{"ok":true}` plus the fields of `fields` (an object; anything else is ignored).
    pub fn ok(fields: Value) -> Reply {
        let mut object = match fields {
            Value::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        object.insert("ok".into(), json!(true));
        Reply::Ok(Value::Object(object))
    }

    /// A refusal.
    pub fn refused(error: impl Into<String>) -> Reply {
        Reply::Refused(json!({"ok": false, "error": error.into()}))
    }

    /// The reason of a refusal (`None` for [`Reply::Ok`]).
    pub fn error(&self) -> Option<&str> {
        match self {
            Reply::Ok(_) => None,
            Reply::Refused(value) => Some(value["error"].as_str().unwrap_or("no reason given")),
        }
    }

    /// Parses a reply line; a line that is not a reply object is an error naming what came.
    pub fn parse(line: &str) -> Result<Reply, String> {
        let value: Value =
            serde_json::from_str(line.trim()).map_err(|e| format!("the core's reply is not JSON ({e})"))?;
        match value["ok"].as_bool() {
            Some(true) => Ok(Reply::Ok(value)),
            Some(false) => Ok(Reply::Refused(value)),
            None => Err("the core's reply has no \"ok\" field".to_owned()),
        }
    }

    /// The reply as its JSON value.
    pub fn to_value(&self) -> Value {
        match self {
            Reply::Ok(value) | Reply::Refused(value) => value.clone(),
        }
    }

    /// Whether it is [`Reply::Ok`].
    pub fn is_ok(&self) -> bool {
        matches!(self, Reply::Ok(_))
    }
}

impl fmt::Display for Reply {
    /// The reply line, without the newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_value())
    }
}

/// The reply to `sessions`, as far as clients read it.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct SessionsReply {
    /// The active session (`None` before the first login).
    pub active: Option<Which>,
    /// Failovers since start.
    #[serde(default)]
    pub failovers: u64,
    /// Each session's state.
    pub sessions: std::collections::BTreeMap<Which, SessionState>,
}

/// One session in [`SessionsReply`].
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct SessionState {
    /// `waiting_credentials`, `connecting`, `logged_in`, …
    pub state: String,
}

impl SessionsReply {
    /// Reads it from a [`Reply::Ok`] value.
    pub fn from_value(value: &Value) -> Result<SessionsReply, String> {
        SessionsReply::deserialize(value).map_err(|e| format!("unexpected sessions reply: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_round_trips_through_its_line() {
        let requests = [
            Request::Status,
            Request::Subscribe("m2605-C-3000"),
            Request::Unsubscribe("rb2605"),
            Request::Shutdown,
            Request::Sessions,
            Request::Failover,
            Request::Failback,
            Request::Relogin(Which::Backup),
            Request::Inject(Which::Primary, Fault::Disconnect),
            Request::Inject(Which::Backup, Fault::LoginFailures(3)),
            Request::Inject(Which::Primary, Fault::HeartbeatWarning(30)),
            Request::Credentials("{\"session\":\"primary\"}"),
        ];
        for request in requests {
            let line = request.line();
            assert_eq!(Request::parse(&line), Ok(request.clone()), "{line}");
            assert_eq!(Request::parse(&format!("  {line} \r")), Ok(request), "blanks around {line:?}");
        }
    }

    #[test]
    fn bad_lines_are_refused_with_a_reason() {
        for (line, wanted) in [
            ("frobnicate", "unknown command \"frobnicate\""),
            ("status now", "unknown command"),
            ("relogin tertiary", "\"tertiary\": expected primary or backup"),
            ("inject primary login-fail 0", "usage: inject"),
            ("inject primary heartbeat-warning 4000", "usage: inject"),
            ("inject primary disconnect now", "usage: inject"),
            ("subscribe rb2605 rb2610", "unknown command"),
            ("subscribe aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "is not an InstrumentID"),
            ("credentialsX {}", "unknown command"),
            ("", "unknown command"),
        ] {
            let err = Request::parse(line).unwrap_err().to_string();
            assert!(err.contains(wanted), "{line:?}: {err}");
        }
    }

    #[test]
    fn replies_parse_and_print() {
        let ok = Reply::ok(json!({"instrument": "rb2605", "index": 3}));
        assert_eq!(Reply::parse(&ok.to_string()), Ok(ok.clone()));
        assert!(ok.is_ok() && ok.to_value()["index"] == 3);
        let no = Reply::refused("busy");
        assert_eq!(no.to_string(), r#"{"error":"busy","ok":false}"#);
        assert_eq!((no.error(), ok.error()), (Some("busy"), None));
        assert_eq!(Reply::parse(&no.to_string()), Ok(no));
        let with_id = Reply::parse(r#"{"ok":false,"error":"not admitted","instrument":"zz9999"}"#).unwrap();
        assert_eq!((with_id.error(), &with_id.to_value()["instrument"]), (Some("not admitted"), &json!("zz9999")));
        assert!(Reply::parse("{}").unwrap_err().contains("no \"ok\""));
        assert!(Reply::parse("nope").unwrap_err().contains("not JSON"));
        let sessions = json!({"ok": true, "active": "backup", "failovers": 2,
            "sessions": {"primary": {"state": "waiting_credentials", "x": 1}, "backup": {"state": "logged_in"}}});
        let s = SessionsReply::from_value(&sessions).unwrap();
        assert_eq!((s.active, s.failovers), (Some(Which::Backup), 2));
        assert_eq!(s.sessions[&Which::Primary].state, "waiting_credentials");
    }
}
