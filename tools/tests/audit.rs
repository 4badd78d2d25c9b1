//! The audit trail end to end with real processes: `qilinctl subscribe`/`unsubscribe`/`shutdown`
//! against a real `qilin-core` (UDP source, its control socket), the entries they append (exit
//! codes, the core's replies, who and where), an operation refused because the log cannot be
//! written, concurrent `qilinctl` processes on one log, the path defaults, and `qilinctl audit
//! verify` naming the line after the log is tampered with.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use qilin_shm::{Reader, RunState};
use serde_json::{Value, json};

/// A hang guard for anything that waits on a process, never a performance bound.
const WATCHDOG: Duration = Duration::from_secs(120);

fn unique(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("qilin-test-audit-{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// The `qilin-core` binary beside this test's (`cargo test --workspace` builds it); built with
/// cargo when missing (this crate's tests run alone). qilinctl itself never links the core.
fn core_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let path = dir.join("qilin-core");
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "qilin-core", "--bin", "qilin-core"]);
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        assert!(cmd.status().unwrap().success(), "building qilin-core failed");
    }
    assert!(path.exists(), "{} not found after building", path.display());
    path
}

/// A running `qilin-core` with its own temp dir (config, log, control socket) and segment.
struct Core {
    child: Child,
    dir: tempfile::TempDir,
    segment: PathBuf,
}

impl Core {
    /// The UDP source (no ticks unless sent).
    fn start() -> Core {
        Core::start_with("", &["--source", "udp", "--udp-bind", "127.0.0.1:0"])
    }

    /// `extra` appended to the config file, `args` added to the command line.
    fn start_with(extra: &str, args: &[&str]) -> Core {
        let dir = tempfile::tempdir().unwrap();
        let segment = PathBuf::from(format!("/dev/shm/{}", unique("core")));
        let instruments = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/instruments.toml");
        let config = dir.path().join("core.toml");
        fs::write(
            &config,
            format!(
                "[feed]\nname = \"audit-test\"\nring_slots = 1024\ninstrument_capacity = 64\n\n\
                 [core]\nlock_memory = false\ninstruments_file = {:?}\naudit_log = {:?}\n{extra}",
                instruments.display().to_string(),
                dir.path().join("core-audit.jsonl").display().to_string(),
            ),
        )
        .unwrap();
        let log = fs::File::create(dir.path().join("core.log")).unwrap();
        let child = Command::new(core_bin())
            .arg("--config")
            .arg(&config)
            .args(args)
            .arg("--segment")
            .arg(&segment)
            .arg("--control-socket")
            .arg(dir.path().join("control.sock"))
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("starting qilin-core");
        let core = Core { child, dir, segment };
        let pid = u64::from(core.child.id());
        core.wait_for("the core running with its control socket", || {
            let running = Reader::open(&core.segment)
                .is_ok_and(|r| r.writer_pid() == pid && r.run_state() == Some(RunState::Running));
            (running && core.socket().exists()).then_some(())
        });
        core
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("control.sock")
    }

    fn wait_for<T>(&self, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + WATCHDOG;
        loop {
            if let Some(v) = f() {
                return v;
            }
            let log = fs::read_to_string(self.dir.path().join("core.log")).unwrap_or_default();
            assert!(Instant::now() < deadline, "watchdog: no {what} within {WATCHDOG:?}; core log:\n{log}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        qilin_testkit::remove_segment(&self.segment);
    }
}

fn qilinctl(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_qilinctl"));
    cmd.args(args).env_remove("QILIN_AUDIT_LOG").env_remove("SUDO_USER");
    cmd
}

fn run(cmd: &mut Command) -> (Option<i32>, String, String) {
    let Output { status, stdout, stderr } = cmd.output().expect("running qilinctl");
    (status.code(), String::from_utf8_lossy(&stdout).into_owned(), String::from_utf8_lossy(&stderr).into_owned())
}

fn entries(log: &Path) -> Vec<Value> {
    fs::read_to_string(log).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64
}

#[test]
fn operations_on_a_real_core_are_audited_and_tampering_is_named() {
    let started_ns = now_ns();
    let mut core = Core::start();
    let socket = core.socket();
    let socket = socket.to_str().unwrap();
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("audit.jsonl");
    let log_arg = log.to_str().unwrap();
    let op = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--control-socket", socket, "--audit-log", log_arg]);
        run(&mut qilinctl(&all))
    };

    // 1. A known and an unknown product: the second is refused, so exit 1; both replies printed.
    let (code, out, err) = op(&["subscribe", "rb2605", "zz9999"]);
    assert_eq!(code, Some(1), "stdout {out} stderr {err}");
    let replies: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(replies.len(), 2, "{out}");
    assert_eq!((&replies[0]["ok"], &replies[0]["instrument"]), (&json!(true), &json!("rb2605")));
    assert_eq!(replies[1]["ok"], false);
    assert!(err.contains("zz9999") && err.contains("unknown product"), "{err}");
    let index = Reader::open(&core.segment).unwrap().find_instrument("rb2605").map(u64::from);
    assert_eq!(index, replies[0]["index"].as_u64(), "the reply's index is the directory's");

    // 2. Unsubscribe: accepted.
    let (code, out, err) = op(&["unsubscribe", "rb2605"]);
    assert_eq!(code, Some(0), "stdout {out} stderr {err}");
    assert_eq!(serde_json::from_str::<Value>(out.trim()).unwrap(), json!({"ok": true, "instrument": "rb2605"}));

    // 3. A socket nobody serves: exit 2, still audited.
    let missing = format!("{socket}.missing");
    let (code, _, err) =
        run(&mut qilinctl(&["subscribe", "m2605", "--control-socket", &missing, "--audit-log", log_arg]));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("connecting to"), "{err}");

    // 4. A log that cannot be written refuses the operation before it is sent: the core keeps running.
    let not_a_dir = log_dir.path().join("file");
    fs::write(&not_a_dir, "").unwrap();
    let bad_log = not_a_dir.join("audit.jsonl");
    let (code, _, err) =
        run(&mut qilinctl(&["shutdown", "--control-socket", socket, "--audit-log", bad_log.to_str().unwrap()]));
    assert_eq!(code, Some(4), "{err}");
    assert!(err.contains("nothing was sent"), "{err}");
    // Nothing was sent: the core's log, read after the accepted shutdown below, shows one request.
    assert!(matches!(core.child.try_wait(), Ok(None)), "the core stopped although the shutdown was refused");
    assert_eq!(Reader::open(&core.segment).unwrap().run_state(), Some(RunState::Running));

    // 5. Shutdown: accepted, and the core exits cleanly.
    let (code, out, err) = op(&["shutdown"]);
    assert_eq!(code, Some(0), "stdout {out} stderr {err}");
    assert_eq!(out.trim(), r#"{"ok":true}"#);
    let deadline = Instant::now() + WATCHDOG;
    let status = loop {
        if let Some(status) = core.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "watchdog: the core still runs {WATCHDOG:?} after shutdown");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(0));
    assert_eq!(Reader::open(&core.segment).unwrap().run_state(), Some(RunState::Stopped));
    let core_log = fs::read_to_string(core.dir.path().join("core.log")).unwrap();
    assert_eq!(
        core_log.matches("shutdown requested over the control socket").count(),
        1,
        "the refused shutdown reached the core:\n{core_log}"
    );
    let finished_ns = now_ns();

    // The log: four entries (the refused shutdown wrote none), in order, with outcomes and replies.
    let e = entries(&log);
    let summary: Vec<(&str, i64)> =
        e.iter().map(|e| (e["command"].as_str().unwrap(), e["exit_code"].as_i64().unwrap())).collect();
    assert_eq!(summary, [("subscribe", 1), ("unsubscribe", 0), ("subscribe", 2), ("shutdown", 0)]);
    assert_eq!(e.iter().map(|e| e["seq"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 2, 3, 4]);
    let actions = &e[0]["actions"];
    assert_eq!(actions[0]["request"], "subscribe rb2605");
    assert_eq!(actions[0]["reply"], replies[0]);
    assert_eq!(actions[1]["request"], "subscribe zz9999");
    assert_eq!(actions[1]["reply"], replies[1]);
    assert_eq!(actions[0]["socket"], socket);
    assert_eq!(e[1]["actions"][0]["reply"], json!({"ok": true, "instrument": "rb2605"}));
    assert!(e[2]["actions"][0]["error"].as_str().unwrap().contains("connecting to"), "{}", e[2]);
    assert_eq!(e[3]["actions"], json!([{"socket": socket, "request": "shutdown", "reply": {"ok": true}}]));
    assert_eq!(
        e[0]["args"],
        json!(["subscribe", "rb2605", "zz9999", "--control-socket", socket, "--audit-log", log_arg])
    );
    let uid = nix::unistd::getuid().as_raw();
    let host = nix::unistd::gethostname().unwrap().to_string_lossy().into_owned();
    let mut pids = std::collections::BTreeSet::new();
    for entry in &e {
        assert_eq!(entry["operator"]["uid"], uid, "{entry}");
        assert!(!entry["operator"]["user"].as_str().unwrap().is_empty(), "{entry}");
        assert_eq!(entry["operator"]["sudo_user"], Value::Null, "{entry}");
        assert_eq!(entry["host"], host.as_str(), "{entry}");
        assert_eq!(entry["program"], "qilinctl", "{entry}");
        let ts_ns = entry["ts_ns"].as_i64().unwrap();
        assert!((started_ns..=finished_ns).contains(&ts_ns), "ts_ns {ts_ns} outside the test's run");
        assert!(entry["ts"].as_str().unwrap().ends_with('Z'), "{entry}");
        let pid = entry["pid"].as_u64().unwrap();
        assert_ne!(pid, u64::from(std::process::id()));
        pids.insert(pid);
    }
    assert_eq!(pids.len(), 4, "one qilinctl process per entry");

    // verify: clean; show --json: the stored bytes.
    let (code, out, _) = run(&mut qilinctl(&["audit", "verify", "--log", log_arg]));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("4 entries, chain intact"), "{out}");
    let original = fs::read_to_string(&log).unwrap();
    let (code, out, _) = run(&mut qilinctl(&["audit", "show", "--json", "--last", "2", "--log", log_arg]));
    assert_eq!(code, Some(0));
    assert_eq!(out, original.lines().skip(2).map(|l| format!("{l}\n")).collect::<String>());
    let (_, out, _) = run(&mut qilinctl(&["audit", "show", "--log", log_arg]));
    assert_eq!(out.lines().count(), 4, "{out}");
    assert!(out.lines().nth(1).unwrap().contains("unsubscribe rb2605 -> {"), "{out}");

    // Tamper: make the refused subscribe look successful. Line 2's prev still matches, so the
    // break shows at line 2, naming line 1.
    let lines: Vec<&str> = original.lines().collect();
    let edited = lines[0].replace(r#""exit_code":1"#, r#""exit_code":0"#);
    assert_ne!(edited, lines[0]);
    fs::write(&log, format!("{edited}\n{}\n", lines[1..].join("\n"))).unwrap();
    let (code, out, _) = run(&mut qilinctl(&["audit", "verify", "--log", log_arg]));
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("line 2: prev does not match the SHA-256 of line 1: line 1 was edited"), "{out}");
    assert!(out.contains("TAMPERED"), "{out}");

    // Delete a middle line: named by its place and the missing seq.
    fs::write(&log, format!("{}\n{}\n{}\n", lines[0], lines[2], lines[3])).unwrap();
    let (code, out, _) = run(&mut qilinctl(&["audit", "verify", "--log", log_arg]));
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("line 2: seq 3, expected 2: 1 line(s) (seq 2..=2) deleted before it"), "{out}");

    // Delete the last line: the chain is intact, the head file says what is missing.
    fs::write(&log, format!("{}\n", lines[..3].join("\n"))).unwrap();
    let (code, out, _) = run(&mut qilinctl(&["audit", "verify", "--log", log_arg, "--json"]));
    assert_eq!(code, Some(1), "{out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["clean"], false);
    assert_eq!(
        report["problems"],
        json!([{
            "line": 4,
            "kind": "tail_deleted",
            "detail": "after line 3: the head file records seq 4 but the log ends at seq 3: 1 line(s) deleted from the end",
        }])
    );

    // Restored, it verifies again; a log that is not there is exit 2.
    fs::write(&log, &original).unwrap();
    assert_eq!(run(&mut qilinctl(&["audit", "verify", "--log", log_arg])).0, Some(0));
    let gone = log_dir.path().join("gone.jsonl");
    let (code, _, err) = run(&mut qilinctl(&["audit", "verify", "--log", gone.to_str().unwrap()]));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("gone.jsonl"), "{err}");
}

#[test]
fn concurrent_qilinctl_processes_make_one_chain_at_the_default_paths() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("env.jsonl");
    let socket = dir.path().join("nobody.sock");
    let n = 12;
    // $QILIN_AUDIT_LOG names the log; nobody serves the socket, so each exits 2 after auditing.
    let children: Vec<Child> = (0..n)
        .map(|i| {
            let id = format!("rb26{i:02}");
            qilinctl(&["subscribe", &id, "--control-socket", socket.to_str().unwrap()])
                .env("QILIN_AUDIT_LOG", &log)
                .env("SUDO_USER", "alice")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        assert_eq!(child.wait_with_output().unwrap().status.code(), Some(2));
    }
    let e = entries(&log);
    assert_eq!(e.len(), n);
    assert_eq!(e.iter().map(|e| e["seq"].as_u64().unwrap()).collect::<Vec<_>>(), (1..=n as u64).collect::<Vec<_>>());
    let ids: std::collections::BTreeSet<&str> = e.iter().map(|e| e["args"][1].as_str().unwrap()).collect();
    assert_eq!(ids.len(), n, "every process's entry once");
    assert!(e.iter().all(|e| e["operator"]["sudo_user"] == "alice" && e["exit_code"] == 2));
    let (code, out, _) = run(qilinctl(&["audit", "verify"]).env("QILIN_AUDIT_LOG", &log));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(&format!("{n} entries, chain intact")), "{out}");

    // Without --audit-log or $QILIN_AUDIT_LOG: $XDG_STATE_HOME/qilin/audit.jsonl.
    let state = dir.path().join("state");
    let (code, _, _) =
        run(qilinctl(&["shutdown", "--control-socket", socket.to_str().unwrap()]).env("XDG_STATE_HOME", &state));
    assert_eq!(code, Some(2));
    let default_log = state.join("qilin/audit.jsonl");
    assert_eq!(entries(&default_log)[0]["command"], "shutdown");
    let (code, out, _) = run(qilinctl(&["audit", "verify"]).env("XDG_STATE_HOME", &state));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(default_log.to_str().unwrap()), "{out}");
}

/// `qilinctl failover`, `failback`, `relogin` and `sessions` against a real core whose simulator
/// runs two sessions: each operation's entry carries the core's reply; a refused relogin (the
/// active session) exits 1 and is audited as such; `status` shows the link line of each state.
#[test]
fn failover_failback_and_relogin_are_audited() {
    let core = Core::start_with(
        "[source.sim]\nticks_per_second = 2000\n[source.sim.sessions]\nenabled = true\nlogin_ms = 5\n",
        &[],
    );
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let socket = core.socket();
    let ctl = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--control-socket", socket.to_str().unwrap(), "--audit-log", log.to_str().unwrap()]);
        run(&mut qilinctl(&all))
    };
    // Credentials, as qilin-secrets hands them over (this test runs as the core's own uid).
    for session in ["primary", "backup"] {
        let line = format!(
            "credentials {}",
            json!({"session": session, "broker_id": "9999", "user_id": session, "password": "pw-not-real",
                   "md_fronts": [format!("tcp://127.0.0.1:{}", if session == "primary" { 1 } else { 2 })]})
        );
        let mut stream = std::os::unix::net::UnixStream::connect(&socket).unwrap();
        std::io::Write::write_all(&mut stream, format!("{line}\n").as_bytes()).unwrap();
        let mut reply = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(&stream), &mut reply).unwrap();
        assert!(reply.contains("\"ok\":true"), "{reply}");
    }
    let sessions = core.wait_for("both sessions logged in", || {
        let (code, out, _) = ctl(&["sessions"]);
        let v: Value = serde_json::from_str(out.trim()).ok()?;
        (code == Some(0) && v["active"] == "primary" && v["sessions"]["backup"]["state"] == "logged_in").then_some(v)
    });
    assert_eq!(sessions["sessions"]["primary"]["front"], "tcp://127.0.0.1:1");
    let status = |what: &str| {
        let (_, out, _) = run(&mut qilinctl(&["--segment", core.segment.to_str().unwrap(), "status"]));
        assert!(out.contains(what), "status does not show {what:?}:\n{out}");
    };
    status("link         logged_in  active session primary  front tcp://127.0.0.1:1");

    let (code, out, err) = ctl(&["failover"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("\"active\":\"backup\""), "{out}");
    status("link         failed_over  active session backup  front tcp://127.0.0.1:2");
    let (code, _, err) = ctl(&["relogin", "backup"]);
    assert_eq!(code, Some(1), "relogin of the active session must be refused");
    assert!(err.contains("fail over first"), "{err}");
    let (code, out, _) = ctl(&["relogin", "primary"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("\"state\":\"logged_in\""), "{out}");
    let (code, out, _) = ctl(&["failback"]);
    assert_eq!(code, Some(0), "{out}");
    status("link         logged_in  active session primary");

    let got: Vec<(String, i64, String)> = entries(&log)
        .iter()
        .map(|e| {
            let reply = &e["actions"][0]["reply"];
            (
                e["command"].as_str().unwrap().to_string(),
                e["exit_code"].as_i64().unwrap(),
                reply["active"].as_str().or(reply["state"].as_str()).unwrap_or("").to_string(),
            )
        })
        .collect();
    let want: Vec<(String, i64, String)> =
        [("failover", 0, "backup"), ("relogin", 1, ""), ("relogin", 0, "logged_in"), ("failback", 0, "primary")]
            .iter()
            .map(|(c, x, r)| (c.to_string(), *x, r.to_string()))
            .collect();
    assert_eq!(got, want, "qilinctl's audit entries");
    // The core audits the switches and the relogins (the refused one too) in its own log.
    let core_log = core.dir.path().join("core-audit.jsonl");
    let commands: Vec<String> = entries(&core_log).iter().map(|e| e["command"].as_str().unwrap().to_string()).collect();
    assert_eq!(commands, ["activate", "failover", "relogin", "relogin", "failback"]);
    assert!(!fs::read_to_string(&core_log).unwrap().contains("pw-not-real"));
    let (code, _, err) = run(&mut qilinctl(&["audit", "verify", "--log", log.to_str().unwrap()]));
    assert_eq!(code, Some(0), "{err}");
}
