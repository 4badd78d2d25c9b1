//! qilin's CTP stand-in, the Rust side: building the stand-in library (`standin.cpp`, a
//! `thostmduserapi_se.so` with the 6.7.11 ABI) and the scenario driver that plays the front the
//! stand-in connects to.
//!
//! The stand-in speaks no CTP wire protocol. Its "front" (`tcp://host:port`, registered with
//! `RegisterFront` as any front) is a [`Front`]: a TCP listener of the test or of the demo driver
//! (`qilin-ctp-front`). Over that connection the stand-in forwards the client's requests (login,
//! subscriptions) and the driver sends what a front would (answers, depth structs, heartbeat
//! warnings, a disconnect with a reason) plus one thing no front can (stall the callback thread).
//! The protocol is in `ctp-standin/README.md`.
//!
//! [`Front`] answers by itself, after its [`Script`]: a login with the expected password is
//! accepted with the script's trading day, any other refused with the script's ErrorID and
//! GB18030 message; each subscribed instrument is accepted unless the script refuses it. Every
//! request is recorded ([`Seen`]) for the test to check.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{self, Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, Condvar, Mutex, MutexGuard},
    time::{Duration, Instant},
};

pub mod vendor;

/// `sizeof(CThostFtdcDepthMarketDataField)` in 6.7.x: the unit of [`Front::push`].
pub const DEPTH_SIZE: usize = 584;

/// What the stand-in's `GetApiVersion()` returns: a 6.7.11 version string (so a qilin-core built
/// for 6.7.11 accepts it) that names the stand-in wherever the version is shown.
pub const VERSION: &str = "v6.7.11_qilin-standin";

/// The SDK version whose headers the stand-in is compiled against.
pub const SDK_VERSION: &str = "6.7.11";

/// "不合法的登录" (invalid login) in GB18030, the message of CTP's ErrorID 3.
pub const INVALID_LOGIN_GB18030: &[u8] = &[0xb2, 0xbb, 0xba, 0xcf, 0xb7, 0xa8, 0xb5, 0xc4, 0xb5, 0xc7, 0xc2, 0xbc];
/// "合约不存在" (no such instrument) in GB18030.
pub const NO_SUCH_INSTRUMENT_GB18030: &[u8] = &[0xba, 0xcf, 0xd4, 0xbc, 0xb2, 0xbb, 0xb4, 0xe6, 0xd4, 0xda];

/// `OnFrontDisconnected` reasons, as the vendor's documentation lists them.
pub const REASONS: [(i32, &str); 5] = [
    (0x1001, "network read failed"),
    (0x1002, "network write failed"),
    (0x2001, "heartbeat receive timeout"),
    (0x2002, "heartbeat send timeout"),
    (0x2003, "received an error message"),
];

/// The directory of the 6.7.11 Linux headers inside the ctp2rs crate's source (the crate is a
/// dependency of qilin-core and of this crate, so a build has unpacked it on this machine).
///
/// Looked up first in Cargo's registry sources by the version `Cargo.lock` pins, with no network
/// and no `cargo` run; then, failing that, with `cargo metadata` (which downloads every package of
/// the lock file, for every platform, when they are not all cached: it needs the registry).
pub fn headers() -> Result<PathBuf, String> {
    let source = match ctp2rs_in_registry() {
        Ok(dir) => dir,
        Err(registry) => ctp2rs_from_metadata()
            .map_err(|metadata| format!("the ctp2rs crate's source: {registry}; and {metadata}"))?,
    };
    linux_headers(&source)
}

/// `api/ctp/v6.7.11/<the Linux build>` in ctp2rs's source.
fn linux_headers(source: &Path) -> Result<PathBuf, String> {
    let versions = source.join("api").join("ctp").join(format!("v{SDK_VERSION}"));
    let dir = std::fs::read_dir(&versions)
        .map_err(|e| format!("{}: {e}", versions.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name().is_some_and(|n| n.to_string_lossy().contains("linux")) && p.join("ThostFtdcMdApi.h").is_file()
        })
        .ok_or_else(|| format!("no Linux headers of {SDK_VERSION} under {}", versions.display()))?;
    Ok(dir)
}

/// `$CARGO_HOME/registry/src/*/ctp2rs-<the version in Cargo.lock>`.
fn ctp2rs_in_registry() -> Result<PathBuf, String> {
    let lock_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.lock");
    let lock = std::fs::read_to_string(&lock_path).map_err(|e| format!("{}: {e}", lock_path.display()))?;
    let version = lock
        .split("[[package]]")
        .find_map(|entry| {
            let mut lines = entry.lines().map(str::trim);
            (lines.clone().any(|l| l == "name = \"ctp2rs\""))
                .then(|| lines.find_map(|l| l.strip_prefix("version = \"")?.strip_suffix('"')))
                .flatten()
        })
        .ok_or_else(|| format!("{} pins no ctp2rs version", lock_path.display()))?;
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .ok_or("neither CARGO_HOME nor HOME is set")?;
    let registry = home.join("registry").join("src");
    let crate_dir = format!("ctp2rs-{version}");
    std::fs::read_dir(&registry)
        .map_err(|e| format!("{}: {e}", registry.display()))?
        .filter_map(|e| e.ok().map(|e| e.path().join(&crate_dir)))
        .find(|p| p.join("Cargo.toml").is_file())
        .ok_or_else(|| format!("{crate_dir} is not unpacked under {}", registry.display()))
}

/// The ctp2rs crate's source directory, as `cargo metadata` reports it.
fn ctp2rs_from_metadata() -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let out = Command::new(&cargo)
        .args(["metadata", "--format-version", "1", "--filter-platform", "x86_64-unknown-linux-gnu", "--manifest-path"])
        .arg(&manifest)
        .output()
        .map_err(|e| format!("running {cargo} metadata: {e}"))?;
    if !out.status.success() {
        return Err(format!("cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("cargo metadata's output: {e}"))?;
    let manifest = meta["packages"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "ctp2rs"))
        .and_then(|p| p["manifest_path"].as_str())
        .ok_or("the ctp2rs crate is not in the workspace's dependency graph")?;
    Path::new(manifest).parent().map(Path::to_path_buf).ok_or_else(|| format!("ctp2rs's manifest path {manifest}"))
}

/// Builds the stand-in with g++ into `out_dir/ctp-standin/libthostmduserapi_se.so` (once per
/// source: a rebuild only when `standin.cpp` changed) and returns the library's path.
pub fn build(out_dir: &Path) -> Result<PathBuf, String> {
    static BUILT: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(path) = built.as_ref() {
        return Ok(path.clone());
    }
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("standin.cpp");
    let text = std::fs::read(&source).map_err(|e| format!("{}: {e}", source.display()))?;
    let dir = out_dir.join("ctp-standin");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let lib = dir.join(format!("{:016x}", fnv1a(&text))).join("libthostmduserapi_se.so");
    if !lib.is_file() {
        let headers = headers()?;
        std::fs::create_dir_all(lib.parent().unwrap()).map_err(|e| format!("{}: {e}", dir.display()))?;
        let part = lib.with_extension(format!("so.{}", std::process::id()));
        let out = Command::new("g++")
            .args([
                "-std=c++17",
                "-O2",
                "-g",
                "-Wall",
                "-Wextra",
                "-Werror",
                "-shared",
                "-fPIC",
                "-pthread",
                "-isystem",
            ])
            .arg(&headers)
            .arg(&source)
            .arg("-o")
            .arg(&part)
            .output()
            .map_err(|e| format!("running g++ (Debian: apt-get install g++): {e}"))?;
        if !out.status.success() {
            return Err(format!("g++ failed on {}:\n{}", source.display(), String::from_utf8_lossy(&out.stderr)));
        }
        std::fs::rename(&part, &lib).map_err(|e| format!("{}: {e}", lib.display()))?;
    }
    *built = Some(lib.clone());
    Ok(lib)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// How the front answers, changeable while it runs ([`Front::script`]).
#[derive(Clone, Debug)]
pub struct Script {
    /// The password a login must carry; `None` accepts any.
    pub password: Option<String>,
    /// The TradingDay of an accepted login.
    pub trading_day: String,
    /// What a refused login carries: ErrorID and the GB18030 ErrorMsg.
    pub refusal: (i32, Vec<u8>),
    /// Refuse every login, whatever its password.
    pub refuse_logins: bool,
    /// Instruments whose subscription is refused, with the ErrorID and GB18030 message.
    pub refuse_instruments: BTreeMap<String, (i32, Vec<u8>)>,
    /// Hold new connections: accepted, but not answered (no `OnFrontConnected`) until this is
    /// cleared, as an unresponsive front.
    pub hold_connections: bool,
    /// Hold login requests unanswered until this is cleared.
    pub hold_logins: bool,
}

impl Default for Script {
    fn default() -> Script {
        Script {
            password: None,
            trading_day: "20260302".into(),
            refusal: (3, INVALID_LOGIN_GB18030.to_vec()),
            refuse_logins: false,
            refuse_instruments: BTreeMap::new(),
            hold_connections: false,
            hold_logins: false,
        }
    }
}

/// What the front has seen, for the test to check.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    /// Connections accepted.
    pub connections: u64,
    /// The flow path the latest connection's API was created with (from its hello).
    pub flow_path: String,
    /// The pid of the process the latest connection came from.
    pub pid: u32,
    /// Login requests: (BrokerID, UserID, whether the password was the expected one, accepted).
    pub logins: Vec<Login>,
    /// Whether the latest connection is logged in.
    pub logged_in: bool,
    /// Instruments subscribed on the latest connection (after its login).
    pub subscribed: BTreeSet<String>,
    /// The size of every SubscribeMarketData request, in order, over all connections.
    pub subscribe_batches: Vec<usize>,
    /// Unsubscribed instruments, over all connections.
    pub unsubscribed: Vec<String>,
    /// Whether a connection is open now.
    pub connected: bool,
    /// A login request is held unanswered (`Script::hold_logins`).
    pub login_waiting: bool,
}

/// One login request the front answered.
#[derive(Clone, Debug)]
pub struct Login {
    pub broker_id: String,
    pub user_id: String,
    /// Whether the password was the script's (or the script takes any).
    pub password_ok: bool,
    pub accepted: bool,
}

/// The stand-in's own count of depth structs at the latest [`Front::sync`]: handed to
/// `OnRtnDepthMarketData`, and held back because the connection was not logged in or had not
/// subscribed the instrument (what a front would not have sent).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delivery {
    pub delivered: u64,
    pub undelivered: u64,
}

struct State {
    script: Script,
    seen: Seen,
    /// The writing half of the latest connection.
    writer: Option<TcpStream>,
    /// Pong answers by token.
    pongs: BTreeMap<u64, Delivery>,
    next_token: u64,
    /// The number of the latest connection.
    current: u64,
    /// The latest connection waits for its welcome (`hold_connections`).
    welcome_held: bool,
    /// A login request held unanswered (`hold_logins`): the user's fields.
    login_held: Option<Vec<String>>,
    stopping: bool,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A front for the stand-in: a TCP listener on loopback served by its own thread, answering
/// after its [`Script`]; the methods push what a front would push to the latest connection.
pub struct Front {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Front {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Front({})", self.addr)
    }
}

/// Frame types (see standin.cpp and README.md).
mod frame {
    pub const HELLO: u8 = b'H';
    pub const LOGIN: u8 = b'L';
    pub const SUBSCRIBE: u8 = b'S';
    pub const UNSUBSCRIBE: u8 = b'U';
    pub const LOGOUT: u8 = b'O';
    pub const PONG: u8 = b'P';
    pub const LOGIN_RSP: u8 = b'l';
    pub const SUB_RSP: u8 = b's';
    pub const UNSUB_RSP: u8 = b'u';
    pub const DEPTH: u8 = b'd';
    pub const HEARTBEAT: u8 = b'h';
    pub const DROP: u8 = b'x';
    pub const STALL: u8 = b'z';
    pub const RSP_ERROR: u8 = b'e';
    pub const PING: u8 = b'p';
    pub const WELCOME: u8 = b'W';
}

fn encode(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + body.len());
    out.extend_from_slice(&(body.len() as u32 + 1).to_le_bytes());
    out.push(kind);
    out.extend_from_slice(body);
    out
}

fn cstrings(body: &[u8]) -> Vec<String> {
    body.split(|b| *b == 0).filter(|s| !s.is_empty()).map(|s| String::from_utf8_lossy(s).into_owned()).collect()
}

impl Front {
    /// Listens on `127.0.0.1:0` with `script`.
    pub fn start(script: Script) -> io::Result<Front> {
        Front::bind("127.0.0.1:0", script)
    }

    /// Listens on `addr` with `script`.
    pub fn bind(addr: &str, script: Script) -> io::Result<Front> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                script,
                seen: Seen::default(),
                writer: None,
                pongs: BTreeMap::new(),
                next_token: 1,
                current: 0,
                welcome_held: false,
                login_held: None,
                stopping: false,
            }),
            changed: Condvar::new(),
        });
        let serving = shared.clone();
        let thread = std::thread::Builder::new().name("ctp-front".into()).spawn(move || {
            for stream in listener.incoming() {
                if serving.lock().stopping {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let _ = stream.set_nodelay(true);
                let Ok(writer) = stream.try_clone() else { continue };
                let id = {
                    let mut st = serving.lock();
                    if let Some(old) = st.writer.replace(writer) {
                        let _ = old.shutdown(Shutdown::Both);
                    }
                    st.seen.connections += 1;
                    st.current = st.seen.connections;
                    st.seen.connected = true;
                    st.seen.logged_in = false;
                    st.seen.subscribed.clear();
                    st.login_held = None;
                    st.welcome_held = st.script.hold_connections;
                    if !st.welcome_held {
                        let _ = st.writer.as_ref().map(|w| (&*w).write_all(&encode(frame::WELCOME, &[])));
                    }
                    st.current
                };
                serving.changed.notify_all();
                let conn = serving.clone();
                let _ =
                    std::thread::Builder::new().name("ctp-front-conn".into()).spawn(move || serve(&conn, id, stream));
            }
        })?;
        Ok(Front { addr, shared, thread: Some(thread) })
    }

    /// The address to register: `tcp://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("tcp://{}", self.addr)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Changes the script; a held connection or login is answered once the script no longer
    /// holds it.
    pub fn script(&self, change: impl FnOnce(&mut Script)) {
        let mut st = self.shared.lock();
        change(&mut st.script);
        if st.welcome_held && !st.script.hold_connections {
            st.welcome_held = false;
            let _ = st.writer.as_ref().map(|w| (&*w).write_all(&encode(frame::WELCOME, &[])));
        }
        if !st.script.hold_logins
            && let Some(fields) = st.login_held.take()
        {
            let answer = answer_login(&mut st, &fields);
            let _ = st.writer.as_ref().map(|w| (&*w).write_all(&encode(frame::LOGIN_RSP, &answer)));
        }
        drop(st);
        self.shared.changed.notify_all();
    }

    /// What the front has seen so far.
    pub fn seen(&self) -> Seen {
        self.shared.lock().seen.clone()
    }

    /// Waits until `what(seen)` holds; `Err` naming `describe` after `timeout`.
    pub fn wait(&self, describe: &str, timeout: Duration, what: impl Fn(&Seen) -> bool) -> Result<Seen, String> {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.lock();
        loop {
            if what(&st.seen) {
                return Ok(st.seen.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("the front did not see {describe} within {timeout:?}; it saw {:?}", st.seen));
            }
            st = self.shared.changed.wait_timeout(st, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    fn send(&self, kind: u8, body: &[u8]) -> io::Result<()> {
        let writer = self.shared.lock().writer.as_ref().map(TcpStream::try_clone);
        match writer {
            Some(w) => w?.write_all(&encode(kind, body)),
            None => Err(io::Error::new(io::ErrorKind::NotConnected, "no stand-in is connected to this front")),
        }
    }

    /// Pushes depth structs (a multiple of [`DEPTH_SIZE`] bytes, 6.7.11 layout) in one frame.
    pub fn push(&self, structs: &[u8]) -> io::Result<()> {
        assert!(structs.len().is_multiple_of(DEPTH_SIZE), "push takes whole {DEPTH_SIZE}-byte structs");
        self.send(frame::DEPTH, structs)
    }

    /// `OnHeartBeatWarning(seconds)`.
    pub fn heartbeat_warning(&self, seconds: i32) -> io::Result<()> {
        self.send(frame::HEARTBEAT, &seconds.to_le_bytes())
    }

    /// Drops the connection: the stand-in closes it and reports `OnFrontDisconnected(reason)`,
    /// then reconnects after 1 s.
    pub fn disconnect(&self, reason: i32) -> io::Result<()> {
        self.send(frame::DROP, &reason.to_le_bytes())
    }

    /// Closes the connection from the front's side (the stand-in reports 0x1001, as the vendor's
    /// library does).
    pub fn close(&self) {
        if let Some(w) = self.shared.lock().writer.take() {
            let _ = w.shutdown(Shutdown::Both);
        }
    }

    /// The stand-in's callback thread sleeps `ms` before handling anything after this.
    pub fn stall(&self, ms: u32) -> io::Result<()> {
        self.send(frame::STALL, &ms.to_le_bytes())
    }

    /// `OnRspError` with `error_id` and a GB18030 message.
    pub fn rsp_error(&self, error_id: i32, message: &[u8]) -> io::Result<()> {
        self.send(frame::RSP_ERROR, &[&error_id.to_le_bytes()[..], message].concat())
    }

    /// Waits until the stand-in has run the callbacks of everything sent before, and returns its
    /// delivery counts (of the current connection's API object).
    pub fn sync(&self, timeout: Duration) -> io::Result<Delivery> {
        let token = {
            let mut st = self.shared.lock();
            st.next_token += 1;
            st.next_token
        };
        self.send(frame::PING, &token.to_le_bytes())?;
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.lock();
        loop {
            if let Some(d) = st.pongs.remove(&token) {
                return Ok(d);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, format!("no answer to sync within {timeout:?}")));
            }
            st = self.shared.changed.wait_timeout(st, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.shared.lock().stopping = true;
        self.close();
        // Wake the accept loop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Records a login request (BrokerID, UserID, Password) and makes its answer after the script.
fn answer_login(st: &mut State, fields: &[String]) -> Vec<u8> {
    let field = |i: usize| fields.get(i).cloned().unwrap_or_default();
    let password_ok = st.script.password.as_ref().is_none_or(|p| *p == field(2));
    let accepted = password_ok && !st.script.refuse_logins;
    let mut answer = Vec::new();
    let mut day = [0u8; 9];
    if accepted {
        answer.extend_from_slice(&0i32.to_le_bytes());
        let d = st.script.trading_day.as_bytes();
        day[..d.len().min(8)].copy_from_slice(&d[..d.len().min(8)]);
        answer.extend_from_slice(&day);
    } else {
        answer.extend_from_slice(&st.script.refusal.0.to_le_bytes());
        answer.extend_from_slice(&day);
        answer.extend_from_slice(&st.script.refusal.1);
    }
    st.seen.logins.push(Login { broker_id: field(0), user_id: field(1), password_ok, accepted });
    st.seen.login_waiting = false;
    st.seen.logged_in = accepted;
    answer
}

/// Reads one connection's frames and answers them after the script.
fn serve(shared: &Shared, id: u64, mut stream: TcpStream) {
    let reply = |stream: &TcpStream, kind: u8, body: &[u8]| {
        let _ = (&*stream).write_all(&encode(kind, body));
    };
    loop {
        let mut head = [0u8; 5];
        if stream.read_exact(&mut head).is_err() {
            break;
        }
        let len = u32::from_le_bytes(head[..4].try_into().unwrap()) as usize;
        let mut body = vec![0u8; len.saturating_sub(1)];
        if stream.read_exact(&mut body).is_err() {
            break;
        }
        let mut st = shared.lock();
        if st.current != id {
            continue; // a replaced connection: its requests are no longer answered
        }
        match head[4] {
            frame::HELLO => {
                st.seen.pid = u32::from_le_bytes(body.get(..4).and_then(|b| b.try_into().ok()).unwrap_or([0; 4]));
                st.seen.flow_path = String::from_utf8_lossy(body.get(4..).unwrap_or(&[])).into_owned();
            }
            frame::LOGIN => {
                let fields = body
                    .get(4..)
                    .unwrap_or(&[])
                    .split(|b| *b == 0)
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect::<Vec<_>>();
                if st.script.hold_logins {
                    st.login_held = Some(fields);
                    st.seen.login_waiting = true;
                } else {
                    let answer = answer_login(&mut st, &fields);
                    reply(&stream, frame::LOGIN_RSP, &answer);
                }
            }
            frame::SUBSCRIBE | frame::UNSUBSCRIBE => {
                let ids = cstrings(&body);
                let subscribe = head[4] == frame::SUBSCRIBE;
                if subscribe {
                    st.seen.subscribe_batches.push(ids.len());
                }
                let mut out = Vec::new();
                for (i, id) in ids.iter().enumerate() {
                    let refused = if subscribe { st.script.refuse_instruments.get(id).cloned() } else { None };
                    let (error_id, message) = refused.unwrap_or((0, Vec::new()));
                    if subscribe && error_id == 0 {
                        st.seen.subscribed.insert(id.clone());
                    } else if !subscribe {
                        st.seen.subscribed.remove(id);
                        st.seen.unsubscribed.push(id.clone());
                    }
                    let mut answer = error_id.to_le_bytes().to_vec();
                    answer.push(u8::from(i + 1 == ids.len()));
                    answer.extend_from_slice(id.as_bytes());
                    answer.push(0);
                    answer.extend_from_slice(&message);
                    out.extend(encode(if subscribe { frame::SUB_RSP } else { frame::UNSUB_RSP }, &answer));
                }
                let _ = (&stream).write_all(&out);
            }
            frame::LOGOUT => st.seen.logged_in = false,
            frame::PONG => {
                let word = |i: usize| {
                    u64::from_le_bytes(body.get(i * 8..i * 8 + 8).and_then(|b| b.try_into().ok()).unwrap_or([0; 8]))
                };
                st.pongs.insert(word(0), Delivery { delivered: word(1), undelivered: word(2) });
            }
            _ => {}
        }
        drop(st);
        shared.changed.notify_all();
    }
    let mut st = shared.lock();
    if st.current == id {
        st.writer = None;
        st.seen.connected = false;
        st.seen.logged_in = false;
        st.seen.subscribed.clear();
    }
    drop(st);
    shared.changed.notify_all();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The headers are found without running cargo (whose `metadata` wants every package of the
    /// lock file for every platform, which a machine that only built for Linux has not downloaded).
    #[test]
    fn headers_are_found_in_the_registry_without_cargo() {
        let source = ctp2rs_in_registry().expect("ctp2rs's source in the registry");
        let dir = linux_headers(&source).expect("the 6.7.11 Linux headers");
        assert!(dir.join("ThostFtdcMdApi.h").is_file(), "{}", dir.display());
        assert!(dir.join("ThostFtdcUserApiStruct.h").is_file(), "{}", dir.display());
    }
}
