//! A real `qilin-core` on the `ctp` source with qilin's CTP stand-in library in place of the
//! vendor's, and the two fronts (primary, backup) the stand-in connects to, played by
//! [`qilin_ctp_standin::Front`]s owned by the test.

#![allow(dead_code)] // each test file uses a different part

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use qilin_core::{config::SimConfig, sim::Simulator};
use qilin_ctp_standin::{DEPTH_SIZE, Front, Script};
use qilin_market::Instruments;
use qilin_shm::{Counter, LinkState, Reader, RunState, layout::StatusRecord};
use serde_json::{Value, json};

use super::{WATCHDOG, standin, unique, workspace, workspace_bin};

/// The workspace's `qilin-core`, with the ctp source. The source is a feature, so a core without it
/// (`cargo run -p qilin-core`, the README's first command in debug) may be the one in the target
/// directory, where `cargo test -p qilin-e2e`, which builds no other package's binaries, finds it.
/// Such a core is told by its refusal of a ctp config and rebuilt as the workspace builds it (the
/// feature is on there: qilin-ctp-standin enables it).
pub fn ctp_core() -> PathBuf {
    static CORE: OnceLock<PathBuf> = OnceLock::new();
    CORE.get_or_init(|| {
        let core = workspace_bin("qilin-core");
        if !has_the_ctp_source(&core) {
            eprintln!("{} was built without the ctp feature: cargo build --workspace --bins", core.display());
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut build = Command::new(cargo);
            build.current_dir(workspace()).args(["build", "--workspace", "--bins"]);
            if core.parent().and_then(Path::file_name).is_some_and(|n| n == "release") {
                build.arg("--release");
            }
            assert!(build.status().expect("running cargo build").success(), "building the workspace binaries failed");
            assert!(has_the_ctp_source(&core), "{} still lacks the ctp source after building", core.display());
        }
        core
    })
    .clone()
}

/// Whether `core` has the ctp source: given a ctp config with a missing library, a core without it
/// stops at the config ("built without the ctp feature"), one with it at the library.
fn has_the_ctp_source(core: &Path) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ctp.toml");
    std::fs::write(
        &config,
        "[source]\nkind = \"ctp\"\n[source.ctp]\nsdk_path = \"/nonexistent/thostmduserapi_se.so\"\n",
    )
    .unwrap();
    let out = Command::new(core)
        .current_dir(workspace())
        .arg("--config")
        .arg(&config)
        .arg("--segment")
        .arg(dir.path().join("segment"))
        .output()
        .expect("running qilin-core");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    if stderr.contains("built without the ctp feature") {
        return false;
    }
    assert!(stderr.contains("/nonexistent/thostmduserapi_se.so"), "{stderr}");
    true
}

/// The password every test account uses unless it says otherwise; grepped for in every output.
pub const PASSWORD: &str = "Pw-standin-7d1e-never-shown";

/// How the core is configured.
#[derive(Clone, Debug)]
pub struct Options {
    /// `core.subscribe`.
    pub subscribe: Vec<String>,
    pub ring_slots: u64,
    pub handoff_capacity: usize,
    pub instrument_capacity: u32,
    /// Lines added to `[failover]`.
    pub failover: String,
    /// Lines added to `[core]`.
    pub core: String,
    /// The market-data library: the stand-in unless this names another (the vendor's).
    pub lib: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            subscribe: vec!["rb2605".into()],
            ring_slots: 1 << 14,
            handoff_capacity: 65_536,
            instrument_capacity: 1024,
            failover: "login_retry_ms = 200\ncommand_timeout_ms = 20000\n".into(),
            core: String::new(),
            lib: None,
        }
    }
}

/// The core, its fronts and its files; the core is killed on drop.
pub struct Rig {
    pub dir: tempfile::TempDir,
    pub segment: PathBuf,
    pub config: PathBuf,
    pub fronts: [Front; 2],
    pub child: Child,
    pub lib: PathBuf,
}

impl Rig {
    /// Starts the core (no credentials yet) and waits until it runs with its control socket bound.
    pub fn start(options: &Options) -> Rig {
        let rig = Rig::spawn(options);
        rig.await_running();
        rig
    }

    /// Starts the core without waiting for it (it may stop at start).
    pub fn spawn(options: &Options) -> Rig {
        let lib = options.lib.clone().unwrap_or_else(standin);
        let dir = tempfile::tempdir().unwrap();
        let segment = PathBuf::from(format!("/dev/shm/{}", unique("ctp")));
        let config = dir.path().join("core.toml");
        let ids: Vec<String> = options.subscribe.iter().map(|s| format!("{s:?}")).collect();
        std::fs::write(
            &config,
            format!(
                "[feed]\nname = \"ctp-standin\"\nring_slots = {}\ninstrument_capacity = {}\n\n\
                 [core]\nlock_memory = false\nhandoff_capacity = {}\ninstruments_file = {:?}\ncalendar_dir = {:?}\n\
                 audit_log = {:?}\nsubscribe = [{}]\n{}\n\n\
                 [source]\nkind = \"ctp\"\n\n[source.ctp]\nsdk_path = {:?}\nflow_dir = {:?}\nsdk_stdout = \"log\"\n\n\
                 [failover]\n{}\n",
                options.ring_slots,
                options.instrument_capacity,
                options.handoff_capacity,
                workspace().join("config/instruments.toml").display().to_string(),
                workspace().join("config/calendar").display().to_string(),
                dir.path().join("audit.jsonl").display().to_string(),
                ids.join(", "),
                options.core,
                lib.display().to_string(),
                dir.path().join("flow").display().to_string(),
                options.failover,
            ),
        )
        .unwrap();
        let fronts = [Front::start(Script::default()).unwrap(), Front::start(Script::default()).unwrap()];
        let child = Rig::spawn_core(dir.path(), &config, &segment, "log");
        Rig { dir, segment, config, fronts, child, lib }
    }

    fn spawn_core(dir: &Path, config: &Path, segment: &Path, log: &str) -> Child {
        Command::new(ctp_core())
            .arg("--config")
            .arg(config)
            .arg("--segment")
            .arg(segment)
            .arg("--control-socket")
            .arg(dir.join("control.sock"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(std::fs::File::options().create(true).append(true).open(dir.join("stdout")).unwrap()))
            .stderr(Stdio::from(std::fs::File::options().create(true).append(true).open(dir.join(log)).unwrap()))
            .spawn()
            .expect("starting qilin-core")
    }

    fn await_running(&self) {
        let pid = u64::from(self.child.id());
        self.wait("the core running with its control socket", || {
            let running = Reader::open(&self.segment)
                .is_ok_and(|r| r.writer_pid() == pid && r.run_state() == Some(RunState::Running));
            (running && UnixStream::connect(self.socket()).is_ok()).then_some(())
        });
    }

    /// SIGKILLs the core and starts a new one on the same config and segment.
    pub fn kill_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(self.socket());
        self.child = Rig::spawn_core(self.dir.path(), &self.config, &self.segment, "log");
        self.await_running();
    }

    pub fn front(&self, session: &str) -> &Front {
        &self.fronts[usize::from(session == "backup")]
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("control.sock")
    }

    pub fn audit_log(&self) -> PathBuf {
        self.dir.path().join("audit.jsonl")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout")).unwrap_or_default()
    }

    /// Polls `f` until it yields; fails with the core's log after the watchdog.
    pub fn wait<T>(&self, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + WATCHDOG;
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(Instant::now() < deadline, "watchdog: no {what} within {WATCHDOG:?}; core log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// One request on the control socket.
    pub fn ctl(&self, line: &str) -> Value {
        let mut stream = UnixStream::connect(self.socket()).expect("connecting to the control socket");
        stream.set_read_timeout(Some(WATCHDOG)).unwrap();
        writeln!(stream, "{line}").unwrap();
        let mut reply = String::new();
        BufReader::new(&stream).read_line(&mut reply).unwrap();
        serde_json::from_str(&reply).unwrap_or_else(|e| panic!("reply to {line:?} is not JSON ({e}): {reply:?}"))
    }

    /// Hands `session` its credentials (as qilin-secrets does), its front being the rig's.
    pub fn credentials(&self, session: &str, password: &str) -> Value {
        let reply = self.credentials_for(session, password, &self.front(session).url());
        assert_eq!(reply["ok"], true, "credentials refused: {reply}");
        reply
    }

    /// Hands `session` its credentials with the front `url`; the core's reply.
    pub fn credentials_for(&self, session: &str, password: &str, url: &str) -> Value {
        let creds = json!({"session": session, "broker_id": "9999", "user_id": format!("{session}-user"),
                           "password": password, "md_fronts": [url]});
        self.ctl(&format!("credentials {creds}"))
    }

    /// `sessions` on the control socket.
    pub fn sessions(&self) -> Value {
        self.ctl("sessions")
    }

    /// Waits until `session` is logged in (by the core's account) and the front has everything
    /// subscribed that the core subscribes at a login.
    pub fn await_logged_in(&self, session: &str, subscribed: usize) -> Value {
        self.wait(&format!("{session} logged in and subscribed"), || {
            let seen = self.front(session).seen();
            let s = self.sessions();
            (s["sessions"][session]["state"] == "logged_in" && seen.logged_in && seen.subscribed.len() >= subscribed)
                .then_some(s)
        })
    }

    pub fn reader(&self) -> Reader {
        Reader::open(&self.segment).unwrap()
    }

    pub fn status(&self) -> StatusRecord {
        let reader = self.reader();
        // `Contended` means every bounded attempt met the line being rewritten (a hot thread taken
        // off its CPU mid-write on a busy machine): read it again, as a strategy would.
        self.wait("a whole status line", || reader.status().ok())
    }

    pub fn link_state(&self) -> Option<LinkState> {
        LinkState::from_code(self.status().link_state)
    }

    pub fn counter(&self, c: Counter) -> u64 {
        self.reader().counter(c)
    }

    /// `qilinctl status --json`.
    pub fn qilinctl_status(&self) -> Value {
        let out = Command::new(workspace_bin("qilinctl"))
            .arg("--segment")
            .arg(&self.segment)
            .args(["status", "--json"])
            .output()
            .expect("running qilinctl");
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("qilinctl status --json printed no JSON ({e}): {}", String::from_utf8_lossy(&out.stderr))
        })
    }

    /// Waits for the header and `qilinctl status` to show `state`.
    pub fn await_state(&self, state: LinkState) -> Value {
        self.wait(&format!("link state {} in the header and qilinctl status", state.as_str()), || {
            (self.link_state() == Some(state))
                .then(|| self.qilinctl_status())
                .filter(|s| s["link"]["state"] == state.as_str())
        })
    }

    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    /// Waits for the core to exit.
    pub fn exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WATCHDOG;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "watchdog: the core did not exit; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Checks a clean stop: exit 0, both sessions released within the core's bound, the segment
    /// marked stopped, no password anywhere.
    pub fn assert_clean_exit(&mut self) {
        let status = self.exit();
        let log = self.log();
        assert!(status.success(), "exit status {status:?}; log:\n{log}");
        assert!(log.contains("CTP sessions released"), "{log}");
        assert!(!log.contains("not released cleanly") && !log.contains("did not release its sessions"), "{log}");
        assert!(
            !self.segment.exists()
                || Reader::open(&self.segment).is_ok_and(|r| r.run_state() == Some(RunState::Stopped)),
            "the segment is left without being marked stopped"
        );
        self.assert_no_password(PASSWORD);
    }

    /// `password` in no output of the core: log, stdout, sessions reply, segment, audit log.
    pub fn assert_no_password(&self, password: &str) {
        let mut outputs = vec![("log", self.log()), ("stdout", self.stdout())];
        outputs.push(("audit log", std::fs::read_to_string(self.audit_log()).unwrap_or_default()));
        if UnixStream::connect(self.socket()).is_ok() {
            outputs.push(("sessions", self.sessions().to_string()));
        }
        if let Ok(bytes) = std::fs::read(&self.segment) {
            outputs.push(("segment", String::from_utf8_lossy(&bytes).into_owned()));
        }
        for (what, text) in outputs {
            assert!(!text.contains(password), "the password appeared in the core's {what}");
        }
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        qilin_testkit::remove_segment(&self.segment);
        let _ = std::fs::remove_dir_all(qilin_market::status::status_dir(&self.segment));
    }
}

/// The simulator's ticks for a few instruments of every exchange, with its quirks: absent prices
/// (DBL_MAX), volume regressions, CZCE's UpdateMillisec 0 and repeated seconds, DCE's night dates.
pub fn quirky_ticks(n: u64, instruments: &[&str]) -> Vec<[u8; DEPTH_SIZE]> {
    let products = Instruments::load(&workspace().join("config/instruments.toml")).unwrap();
    let mut config = SimConfig {
        ticks_per_second: 1_000_000_000,
        max_ticks: n,
        seed: 17,
        instruments: instruments.iter().map(|s| s.to_string()).collect(),
        start: "2026-03-02 20:59:00".into(),
        ..SimConfig::default()
    };
    config.inject.absent_prices = 0.05;
    config.inject.volume_regression = 0.01;
    let mut out = Vec::with_capacity(n as usize);
    Simulator::new(&config, &products).unwrap().run_into(|raw| {
        out.push(raw.try_into().expect("the simulator makes 584-byte structs"));
        true
    });
    out
}
