//! The hand-off of CTP credentials to the core, over its control socket.
//!
//! Both ends check the other's uid: the core accepts `credentials` only from its configured secrets
//! uid, and [`CoreLink`] refuses to write a credential to a socket whose listening process is not
//! the expected core uid (SO_PEERCRED on the client side names the server), so a socket planted at
//! the path by someone else gets nothing. One connection per request: the core serves each
//! connection on its own thread, and a request never holds the socket for another client.
//!
//! The credentials line is built in a zeroizing buffer, written with one `write_all`, and zeroed.

use std::{
    fmt::Write as _,
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::Duration,
};

use nix::sys::socket::{getsockopt, sockopt};
use qilin_market::control::{Reply, Request};
use secrecy::{ExposeSecret, zeroize::Zeroizing};
use serde::Serialize;

use super::Loaded;

/// The two CTP accounts, as the core names their sessions and the schema names their keys.
pub const ACCOUNTS: [(&str, &str); 2] = [("primary", "CTP_PRIMARY_"), ("backup", "CTP_BACKUP_")];

/// Why a request to the core failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Nothing listens at the path (the core is not running yet).
    #[error("cannot connect to the core's control socket {path}: {source}")]
    Unreachable {
        /// The socket.
        path: PathBuf,
        /// The connect error.
        source: std::io::Error,
    },
    /// The listening process is not the expected core uid: nothing was sent.
    #[error("the control socket {path} is served by uid {found}, not the core's uid {expected}: credentials not sent")]
    WrongPeer {
        /// The socket.
        path: PathBuf,
        /// The peer's uid.
        found: u32,
        /// The configured core uid.
        expected: u32,
    },
    /// The core answered, and refused (the reason is the core's).
    #[error("the core refused the {session} credentials: {reason}")]
    Refused {
        /// `primary` or `backup`.
        session: String,
        /// The core's error.
        reason: String,
    },
    /// Reading or writing the socket failed, or the reply was not JSON.
    #[error("control socket {path}: {what}")]
    Io {
        /// The socket.
        path: PathBuf,
        /// What went wrong.
        what: String,
    },
}

/// A client of the core's control socket that checks who serves it.
#[derive(Clone, Debug)]
pub struct CoreLink {
    path: PathBuf,
    core_uid: u32,
    timeout: Duration,
}

impl CoreLink {
    /// A link to the socket at `path`, served by `core_uid`; `timeout` bounds each reply.
    pub fn new(path: &Path, core_uid: u32, timeout: Duration) -> CoreLink {
        CoreLink { path: path.to_owned(), core_uid, timeout }
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sends one request and returns the core's reply.
    pub fn request(&self, request: &Request<'_>) -> Result<Reply, LinkError> {
        let stream = self.connect()?;
        self.exchange(stream, request.line().as_bytes())
    }

    /// Sends a line built by [`credentials_line`] (kept in its zeroizing buffer) and returns the reply.
    pub fn send_credentials(&self, line: &str) -> Result<Reply, LinkError> {
        let stream = self.connect()?;
        self.exchange(stream, line.as_bytes())
    }

    /// Hands `session`'s credentials from `loaded` (keys `CTP_PRIMARY_*` or `CTP_BACKUP_*`) to the
    /// core. `Ok(None)` if `loaded` has no user id for that account (nothing to hand over).
    pub fn hand_over(&self, loaded: &Loaded, session: &str) -> Result<Option<Reply>, LinkError> {
        let Some(line) = credentials_line(loaded, session) else { return Ok(None) };
        let stream = self.connect()?;
        self.exchange(stream, line.as_bytes()).map(Some)
    }

    fn connect(&self) -> Result<UnixStream, LinkError> {
        let stream = UnixStream::connect(&self.path)
            .map_err(|source| LinkError::Unreachable { path: self.path.clone(), source })?;
        let io = |what: String| LinkError::Io { path: self.path.clone(), what };
        let peer = getsockopt(&stream, sockopt::PeerCredentials).map_err(|e| io(format!("SO_PEERCRED: {e}")))?;
        if peer.uid() != self.core_uid {
            tracing::error!(
                socket = %self.path.display(), uid = peer.uid(), expected = self.core_uid,
                "the control socket is not served by the core's uid; nothing sent"
            );
            return Err(LinkError::WrongPeer { path: self.path.clone(), found: peer.uid(), expected: self.core_uid });
        }
        stream.set_read_timeout(Some(self.timeout)).map_err(|e| io(e.to_string()))?;
        stream.set_write_timeout(Some(self.timeout)).map_err(|e| io(e.to_string()))?;
        Ok(stream)
    }

    fn exchange(&self, mut stream: UnixStream, line: &[u8]) -> Result<Reply, LinkError> {
        let io = |what: String| LinkError::Io { path: self.path.clone(), what };
        let mut message = Zeroizing::new(Vec::with_capacity(line.len() + 1));
        message.extend_from_slice(line);
        message.push(b'\n');
        stream.write_all(&message).map_err(|e| io(format!("writing: {e}")))?;
        let mut reply = String::new();
        BufReader::new(&stream).read_line(&mut reply).map_err(|e| io(format!("reading the reply: {e}")))?;
        if reply.is_empty() {
            return Err(io("the core closed the connection without a reply".into()));
        }
        Reply::parse(&reply).map_err(io)
    }
}

#[derive(Serialize)]
struct Wire<'a> {
    session: &'a str,
    broker_id: &'a str,
    user_id: &'a str,
    password: &'a str,
    md_fronts: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    app_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth_code: Option<&'a str>,
}

/// The `credentials {…}` line for `session`, in a buffer zeroed when dropped; `None` without a
/// user id for that account.
pub fn credentials_line(loaded: &Loaded, session: &str) -> Option<Zeroizing<String>> {
    let prefix = ACCOUNTS.iter().find(|(name, _)| *name == session)?.1;
    let get = |key: &str| loaded.get(&format!("{prefix}{key}")).map(|s| s.expose_secret());
    let wire = Wire {
        session,
        broker_id: get("BROKER_ID").unwrap_or(""),
        user_id: get("USER_ID")?,
        password: get("PASSWORD").unwrap_or(""),
        md_fronts: get("MD_FRONTS").unwrap_or("").split(',').map(str::trim).filter(|f| !f.is_empty()).collect(),
        app_id: get("APP_ID"),
        auth_code: get("AUTH_CODE"),
    };
    // Both buffers are sized up front (no reallocation leaves a copy behind) and zeroed on drop.
    let mut json = Zeroizing::new(Vec::with_capacity(4096));
    serde_json::to_writer(&mut *json, &wire).ok()?;
    let mut line = Zeroizing::new(String::with_capacity(json.len() + 64));
    write!(line, "{}", Request::Credentials(std::str::from_utf8(&json).ok()?)).ok()?;
    Some(line)
}

/// Whether the values an account's credentials are made of differ between two loads.
pub fn account_changed(old: &Loaded, new: &Loaded, session: &str) -> bool {
    let Some((_, prefix)) = ACCOUNTS.iter().find(|(name, _)| *name == session) else { return false };
    ["BROKER_ID", "USER_ID", "PASSWORD", "MD_FRONTS", "APP_ID", "AUTH_CODE"].iter().any(|key| {
        let key = format!("{prefix}{key}");
        old.get(&key).map(|s| s.expose_secret()) != new.get(&key).map(|s| s.expose_secret())
    })
}

/// Keys whose values differ between two loads (names only).
pub fn changed_keys(old: &Loaded, new: &Loaded) -> Vec<String> {
    let mut keys: Vec<String> = old.keys().chain(new.keys()).map(str::to_owned).collect();
    keys.sort();
    keys.dedup();
    keys.retain(|k| old.get(k).map(|s| s.expose_secret()) != new.get(k).map(|s| s.expose_secret()));
    keys
}
