//! The `ctp` source against the real vendor SDK: the official Linux market-data library of CTP
//! 6.7.11 (`libthostmduserapi_se.so` from the PyPI wheel `openctp-ctp==6.7.11.0`, fetched with
//! `pip download` into the target directory by `qilin_ctp_standin::vendor::library`, never
//! committed; `QILIN_CTP_SDK=/path/to/lib` uses another copy). Without a broker the SDK is pointed
//! at a TCP listener the test owns: the SDK connects to it at once (the test sees the accept and the
//! SDK's first bytes), and when the test closes the connection the SDK reports
//! `OnFrontDisconnected(0x1001)` and reconnects by itself. `OnFrontConnected` needs a real front's
//! answer, so logins are not exercised here (see the opt-in live test at the end, and docs/CTP.md).
//!
//! What is checked: the SDK's version in the header and in `qilinctl status`; connecting,
//! disconnected (reason decoded and counted) and reconnecting, each in the header and in
//! `qilinctl status`; the SDK's stdout diagnostics in the core's log rather than on its stdout;
//! no password in any output; shutdown while connecting (SIGTERM) and while connected (`shutdown`)
//! exits 0 with both sessions released; a missing library, a non-library and a library of another
//! version each stop the core at start with an error naming the path and the version expected.
//!
//! The tests skip, saying so on stderr, only when the library cannot be downloaded (no pip, no
//! network); `.ci/run` makes sure it can be. qilin-e2e builds qilin-core with its default
//! features, which include the `ctp` source.

mod common;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use common::{WATCHDOG, unique, wait_for, workspace, workspace_bin};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use qilin_core::session::ctp::{BUILT_FOR, Sdk};
use qilin_shm::{Counter, LinkState, Reader, RunState};
use serde_json::{Value, json};

/// The version the vendor's library must report.
const SDK_VERSION: &str = qilin_ctp_standin::SDK_VERSION;
const PASSWORD: &str = "pw-ctp-test-7f3a91-never-shown";

/// The vendor's library (fetched once per target directory); `None` (after saying why) if it
/// cannot be.
fn sdk_library() -> Option<PathBuf> {
    qilin_ctp_standin::vendor::library(Path::new(env!("CARGO_TARGET_TMPDIR")))
}

/// A `qilin-core` with the ctp source; killed on drop if still running.
struct CtpCore {
    child: Child,
    dir: tempfile::TempDir,
    segment: PathBuf,
}

impl CtpCore {
    /// Starts the core on `sdk` without waiting for it.
    fn spawn(sdk: &Path, extra: &str) -> CtpCore {
        let dir = tempfile::tempdir().unwrap();
        let feed = unique("ctp");
        let segment = PathBuf::from(format!("/dev/shm/{feed}"));
        let instruments = workspace().join("config/instruments.toml");
        let config = dir.path().join("core.toml");
        std::fs::write(
            &config,
            format!(
                "[feed]\nname = \"ctp-test\"\nring_slots = 1024\ninstrument_capacity = 64\n\n\
                 [core]\nlock_memory = false\ninstruments_file = {:?}\naudit_log = {:?}\nsubscribe = [\"rb2605\"]\n\n\
                 [source]\nkind = \"ctp\"\n\n[source.ctp]\nsdk_path = {:?}\nflow_dir = {:?}\n{extra}\n\n\
                 [failover]\nlogin_retry_ms = 200\ncommand_timeout_ms = 1000\n",
                instruments.display().to_string(),
                dir.path().join("audit.jsonl").display().to_string(),
                sdk.display().to_string(),
                dir.path().join("flow").display().to_string(),
            ),
        )
        .unwrap();
        let child = Command::new(workspace_bin("qilin-core"))
            .arg("--config")
            .arg(&config)
            .arg("--segment")
            .arg(&segment)
            .arg("--control-socket")
            .arg(dir.path().join("control.sock"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(std::fs::File::create(dir.path().join("stdout")).unwrap()))
            .stderr(Stdio::from(std::fs::File::create(dir.path().join("log")).unwrap()))
            .spawn()
            .expect("starting qilin-core");
        CtpCore { child, dir, segment }
    }

    /// Starts the core and waits until it runs with its control socket bound.
    fn start(sdk: &Path) -> CtpCore {
        let core = CtpCore::spawn(sdk, "");
        let pid = u64::from(core.child.id());
        core.wait("the core running", || {
            let running = Reader::open(&core.segment)
                .is_ok_and(|r| r.writer_pid() == pid && r.run_state() == Some(RunState::Running));
            (running && core.socket().exists()).then_some(())
        });
        core
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("control.sock")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout")).unwrap_or_default()
    }

    /// Polls `f` until it yields; fails with the core's log after the watchdog.
    fn wait<T>(&self, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + WATCHDOG;
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(Instant::now() < deadline, "watchdog: no {what} within {WATCHDOG:?}; core log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn ctl(&self, line: &str) -> Value {
        let mut stream = UnixStream::connect(self.socket()).expect("connecting to the control socket");
        stream.set_read_timeout(Some(WATCHDOG)).unwrap();
        writeln!(stream, "{line}").unwrap();
        let mut reply = String::new();
        BufReader::new(&stream).read_line(&mut reply).unwrap();
        serde_json::from_str(&reply).unwrap_or_else(|e| panic!("reply to {line:?} is not JSON ({e}): {reply:?}"))
    }

    fn credentials(&self, session: &str, front: &str) -> Value {
        let creds = json!({"session": session, "broker_id": "9999", "user_id": format!("{session}-user"),
                           "password": PASSWORD, "md_fronts": [front]});
        self.ctl(&format!("credentials {creds}"))
    }

    /// The header's link state.
    fn link_state(&self) -> Option<LinkState> {
        let status = Reader::open(&self.segment).ok()?.status().ok()?;
        LinkState::from_code(status.link_state)
    }

    /// `qilinctl status --json`'s `link` object.
    fn qilinctl_link(&self) -> Value {
        let out = Command::new(workspace_bin("qilinctl"))
            .arg("--segment")
            .arg(&self.segment)
            .args(["status", "--json"])
            .output()
            .expect("running qilinctl");
        assert!(out.status.success(), "qilinctl status failed: {}", String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).expect("qilinctl status --json prints JSON");
        v["link"].clone()
    }

    /// Waits for the header and `qilinctl status` to show `state`.
    fn await_state(&self, state: LinkState) -> Value {
        self.wait(&format!("link state {} in the header and qilinctl status", state.as_str()), || {
            (self.link_state() == Some(state)).then(|| self.qilinctl_link()).filter(|l| l["state"] == state.as_str())
        })
    }

    /// Waits for the process to exit.
    fn exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WATCHDOG;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "watchdog: the core did not exit; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Checks a clean stop: exit status 0, both sessions released, no secret in any output.
    fn assert_clean_exit(&mut self) {
        let status = self.exit();
        let log = self.log();
        assert!(status.success(), "exit status {status:?}; log:\n{log}");
        assert!(log.contains("CTP sessions released"), "{log}");
        assert!(!log.contains("not released cleanly"), "{log}");
        assert!(!log.contains(PASSWORD) && !self.stdout().contains(PASSWORD), "the password appeared in an output");
        assert!(!self.segment.exists() || Reader::open(&self.segment).unwrap().run_state() == Some(RunState::Stopped));
    }
}

impl Drop for CtpCore {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.segment);
    }
}

/// A listener standing in for a front, polled without blocking forever.
struct FakeFront(TcpListener);

impl FakeFront {
    fn new() -> FakeFront {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        FakeFront(listener)
    }

    fn url(&self) -> String {
        format!("tcp://{}", self.0.local_addr().unwrap())
    }

    /// Waits for the SDK to connect and reads its first bytes.
    fn accept(&self, core: &CtpCore) -> (TcpStream, usize) {
        let (mut stream, _) = core.wait("the SDK connecting to the test's front", || self.0.accept().ok());
        stream.set_nonblocking(false).unwrap();
        stream.set_read_timeout(Some(WATCHDOG)).unwrap();
        let mut first = [0u8; 512];
        let n = stream.read(&mut first).unwrap_or(0);
        (stream, n)
    }
}

#[test]
fn the_sdk_reports_the_version_the_core_is_built_for() {
    let Some(lib) = sdk_library() else { return };
    assert_eq!(BUILT_FOR, SDK_VERSION, "the tests fetch the SDK of the default feature");
    let sdk = Sdk::check(&lib).unwrap_or_else(|e| panic!("{e}"));
    assert!(sdk.version.starts_with(&format!("v{SDK_VERSION}_")), "GetApiVersion() = {:?}", sdk.version);
}

#[test]
fn connect_disconnect_reconnect_each_in_the_header_and_qilinctl_status() {
    let Some(lib) = sdk_library() else { return };
    let mut core = CtpCore::start(&lib);
    let front = FakeFront::new();

    // Before any credentials: the SDK's version, no session.
    let link = core.qilinctl_link();
    assert!(link["api_version"].as_str().unwrap().starts_with(&format!("v{SDK_VERSION}_")), "{link}");
    assert_eq!(link["state"], "idle", "{link}");
    let status = Reader::open(&core.segment).unwrap().status().unwrap();
    assert!(qilin_shm::layout::id_str(&status.api_version).unwrap().starts_with("v6.7.11_"));

    let answer = core.credentials("primary", &front.url());
    assert_eq!(answer["ok"], true, "{answer}");
    let link = core.await_state(LinkState::Connecting);
    assert_eq!(link["active_source"], Value::Null, "{link}");
    let (connection, first_bytes) = front.accept(&core);
    assert!(first_bytes > 0, "the SDK sent nothing after connecting");
    assert!(std::fs::read_dir(core.dir.path().join("flow/primary")).is_ok(), "the session's flow directory");

    // The front goes away: OnFrontDisconnected(0x1001), decoded and counted.
    drop(connection);
    core.await_state(LinkState::Disconnected);
    let sessions = core.ctl("sessions");
    let primary = &sessions["sessions"]["primary"];
    assert_eq!(primary["state"], "disconnected", "{sessions}");
    assert!(primary["disconnects"].as_u64() >= Some(1), "{sessions}");
    assert!(primary["disconnect_reasons"]["0x1001 network read failed"].as_u64() >= Some(1), "{sessions}");
    assert!(primary["last_error"].as_str().unwrap().contains("network read failed"), "{sessions}");
    assert!(sessions["api_version"].as_str().unwrap().starts_with("v6.7.11_"), "{sessions}");
    let reader = Reader::open(&core.segment).unwrap();
    assert!(reader.counter(Counter::FrontDisconnects) >= 1);

    // The SDK reconnects by itself.
    let (_again, bytes) = front.accept(&core);
    assert!(bytes > 0, "the SDK sent nothing after reconnecting");

    // Its stdout diagnostics went into the log, not to stdout.
    core.wait("the SDK's stdout line about the disconnect in the log", || {
        core.log().lines().any(|l| l.contains("ctp_sdk") && l.contains("OnSessionDisconnected")).then_some(())
    });
    assert!(!core.stdout().contains("OnSessionDisconnected"), "SDK output on stdout:\n{}", core.stdout());

    // Shutdown while connected: clean and bounded.
    assert_eq!(core.ctl("shutdown")["ok"], true);
    core.assert_clean_exit();
}

#[test]
fn shutdown_while_connecting_is_clean() {
    let Some(lib) = sdk_library() else { return };
    let mut core = CtpCore::start(&lib);
    // A front nobody listens on: the SDK keeps trying.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    assert_eq!(core.credentials("primary", &format!("tcp://127.0.0.1:{port}"))["ok"], true);
    assert_eq!(core.credentials("backup", &format!("tcp://127.0.0.1:{port}"))["ok"], true);
    core.await_state(LinkState::Connecting);
    kill(Pid::from_raw(core.child.id() as i32), Signal::SIGTERM).unwrap();
    core.assert_clean_exit();
}

#[test]
fn relogin_releases_and_recreates_the_api() {
    let Some(lib) = sdk_library() else { return };
    let mut core = CtpCore::start(&lib);
    let front = FakeFront::new();
    assert_eq!(core.credentials("backup", &front.url())["ok"], true);
    let (first, _) = front.accept(&core);
    // A relogin of the (standby) backup releases its API and creates a new one, which connects anew.
    let (tx, rx) = std::sync::mpsc::channel();
    let socket = core.socket();
    std::thread::spawn(move || {
        let mut stream = UnixStream::connect(socket).unwrap();
        writeln!(stream, "relogin backup").unwrap();
        let mut reply = String::new();
        let _ = BufReader::new(&stream).read_line(&mut reply);
        let _ = tx.send(reply);
    });
    let (_second, bytes) = front.accept(&core);
    assert!(bytes > 0);
    // The released API closed its connection (end of stream, not the read timeout).
    first.set_read_timeout(Some(WATCHDOG)).unwrap();
    let mut rest = Vec::new();
    assert!((&first).read_to_end(&mut rest).is_ok(), "the released API's connection is still open");
    assert!(core.log().contains("CTP API released"), "{}", core.log());
    // No login answer from a bare listener: the relogin reports it after command_timeout_ms.
    let reply: Value = serde_json::from_str(&wait_for("the relogin's reply", || rx.try_recv().ok())).unwrap();
    assert_eq!(reply["ok"], false, "{reply}");
    assert!(reply["error"].as_str().unwrap().contains("not logged in"), "{reply}");
    assert_eq!(core.ctl("shutdown")["ok"], true);
    core.assert_clean_exit();
}

/// Starts the core on `sdk` and returns its exit status and log (it must stop by itself).
fn refused_at_start(sdk: &Path) -> (ExitStatus, String) {
    let mut core = CtpCore::spawn(sdk, "");
    let status = core.exit();
    (status, core.log())
}

#[test]
fn a_missing_or_foreign_library_stops_the_core_at_start() {
    let missing = Path::new("/nonexistent/qilin/thostmduserapi_se.so");
    let (status, log) = refused_at_start(missing);
    assert!(!status.success(), "{log}");
    assert!(log.contains(&missing.display().to_string()), "{log}");
    assert!(log.contains(&format!("version {BUILT_FOR}")), "{log}");

    let dir = tempfile::tempdir().unwrap();
    let not_elf = dir.path().join("thostmduserapi_se.so");
    std::fs::write(&not_elf, b"not a library\n").unwrap();
    let (status, log) = refused_at_start(&not_elf);
    assert!(!status.success(), "{log}");
    assert!(log.contains(&not_elf.display().to_string()) && log.contains("cannot be loaded"), "{log}");
}

#[test]
fn a_library_of_another_version_stops_the_core_at_start() {
    // A stand-in "SDK" that exports CThostFtdcMdApi::GetApiVersion() and reports 6.3.19.
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("old.c");
    std::fs::write(
        &source,
        "const char *_ZN15CThostFtdcMdApi13GetApiVersionEv(void) { return \"v6.3.19_P1_20200106 15:20:52\"; }\n",
    )
    .unwrap();
    let old = dir.path().join("libthostmduserapi_se.so");
    let out = Command::new("gcc").args(["-shared", "-fPIC", "-o"]).arg(&old).arg(&source).output().expect("gcc");
    assert!(out.status.success(), "gcc: {}", String::from_utf8_lossy(&out.stderr));
    let (status, log) = refused_at_start(&old);
    assert!(!status.success(), "{log}");
    assert!(log.contains(&old.display().to_string()), "{log}");
    assert!(log.contains("v6.3.19_P1_20200106") && log.contains(&format!("version {BUILT_FOR}")), "{log}");

    // A shared library without the market-data API at all.
    std::fs::write(&source, "int qilin_unrelated(void) { return 1; }\n").unwrap();
    let other = dir.path().join("libother.so");
    let out = Command::new("gcc").args(["-shared", "-fPIC", "-o"]).arg(&other).arg(&source).output().unwrap();
    assert!(out.status.success());
    let (status, log) = refused_at_start(&other);
    assert!(!status.success(), "{log}");
    assert!(log.contains("not a CTP market-data library"), "{log}");
}

/// Opt-in: logs in to a real front and checks that ticks reach the segment. Needs `CTP_LIVE=1` and
/// `CTP_BROKER_ID`, `CTP_USER_ID`, `CTP_PASSWORD`, `CTP_MD_FRONT` (`tcp://host:port`) and
/// `CTP_INSTRUMENT` (trading now, e.g. `rb2605`), and the SDK (downloaded as above, or
/// `QILIN_CTP_SDK`). Ticks flow only while the instrument trades (or on a 7×24 test environment).
#[test]
fn live_front_delivers_ticks_into_the_segment() {
    if std::env::var("CTP_LIVE").as_deref() != Ok("1") {
        eprintln!(
            "SKIPPED: live CTP test: set CTP_LIVE=1 with CTP_BROKER_ID, CTP_USER_ID, CTP_PASSWORD, CTP_MD_FRONT \
             and CTP_INSTRUMENT to log in to a real front (see docs/CTP.md)"
        );
        return;
    }
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("CTP_LIVE=1 needs {name}"));
    let (broker, user, password, front, instrument) =
        (var("CTP_BROKER_ID"), var("CTP_USER_ID"), var("CTP_PASSWORD"), var("CTP_MD_FRONT"), var("CTP_INSTRUMENT"));
    let lib = sdk_library().expect("CTP_LIVE=1 needs the SDK library");
    let mut core = CtpCore::start(&lib);
    let creds = json!({"session": "primary", "broker_id": broker, "user_id": user, "password": password,
                       "md_fronts": [front]});
    assert_eq!(core.ctl(&format!("credentials {creds}"))["ok"], true);
    let link = core.await_state(LinkState::LoggedIn);
    assert!(link["trading_day"].as_u64().unwrap() > 20_000_000, "{link}");
    assert_eq!(core.ctl(&format!("subscribe {instrument}"))["ok"], true);
    core.wait("a tick of the live instrument in the segment", || {
        let reader = Reader::open(&core.segment).ok()?;
        (reader.write_cursor() > 0 && reader.find_instrument(&instrument).is_some()).then_some(())
    });
    assert!(!core.log().contains(&password), "the password appeared in the log");
    assert_eq!(core.ctl("shutdown")["ok"], true);
    core.assert_clean_exit();
}
