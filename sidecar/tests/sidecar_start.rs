//! Sidecars seen from outside at the awkward moments (issue 18, items 14 and 10), with real
//! processes only: a real `nats-server`, a real `qilin-core` on the simulator, real `qilin-nats`
//! and `qilin-recorder`, and `qilinctl status` run as a process, as an operator would.
//!
//! - Started while NATS is unreachable, `qilin-nats` is listed by `qilinctl status` at once, alive,
//!   `connected: false`, with its state and the connect error; a restart during the outage replaces
//!   the killed process's status; NATS down while it runs keeps the status fresh.
//! - A segment removed and created again under the same path (the core restarted on a removed
//!   segment: a new file, a new inode, sequences from 1 in a new session) is noticed by both
//!   sidecars, which drain the old file, reopen the path and log the new epoch (docs/SIDECARS.md,
//!   "A re-created segment").

mod common;

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use common::*;
use nix::sys::signal::Signal;
use serde_json::Value;

/// `qilinctl status --json` on `segment`, as a process. Exit 0 (live) or 3 (stale writer) both
/// print the status; anything else fails the test.
fn qilinctl_status(segment: &Path) -> Value {
    let out = Command::new(workspace_bin("qilinctl"))
        .args(["status", "--json", "--segment"])
        .arg(segment)
        .output()
        .expect("running qilinctl");
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "qilinctl status: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("qilinctl status --json prints JSON")
}

/// The entry of sidecar instance `name` in `qilinctl status --json`, if listed.
fn listed(segment: &Path, name: &str) -> Option<Value> {
    qilinctl_status(segment)["sidecars"].as_array()?.iter().find(|s| s["instance"] == name).cloned()
}

/// A qilin-nats config with the shipped defaults for timing (status every 250 ms, requests time
/// out after 5 s, reconnects back off up to 2 s), so the test sees what an operator would.
fn nats_config(dir: &Path, segment: &Path, url: &str) -> PathBuf {
    let path = dir.join("nats.toml");
    fs::write(
        &path,
        format!(
            "name = \"nats\"\nsegment = {:?}\nstate_dir = {:?}\n[nats]\nurls = [{url:?}]\n",
            segment.display().to_string(),
            dir.join("state").display().to_string(),
        ),
    )
    .unwrap();
    path
}

/// Starts a real qilin-nats (or qilin-recorder) with `config`, its output appended to `log`.
fn spawn(program: &str, config: &Path, log: &Path) -> KillOnDrop {
    let out = fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    let child = Command::new(program)
        .arg("--config")
        .arg(config)
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    KillOnDrop(child)
}

fn spawn_nats(config: &Path, log: &Path) -> KillOnDrop {
    spawn(env!("CARGO_BIN_EXE_qilin-nats"), config, log)
}

/// Sends `signal` and waits (bounded) for the exit.
fn stop(process: &mut KillOnDrop, signal: Signal) -> std::process::ExitStatus {
    let pid = nix::unistd::Pid::from_raw(process.0.id() as i32);
    nix::sys::signal::kill(pid, signal).unwrap();
    wait_for("the process to exit", || process.0.try_wait().unwrap())
}

/// Waits until `qilinctl status` lists instance `name` alive, written by `pid`, and `check`
/// accepts it; returns that entry.
fn wait_listed(segment: &Path, name: &str, pid: u32, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    wait_for(what, || {
        let sc = listed(segment, name)?;
        (sc["pid"] == pid && sc["alive"] == true && check(&sc)).then_some(sc)
    })
}

/// While NATS is down, the status keeps being rewritten: seen alive (younger than qilinctl's 2 s)
/// by qilinctl, by the same process, still disconnected, `span` after the first such sighting.
fn stays_listed_while_down(segment: &Path, pid: u32, span: Duration) {
    let first = wait_listed(segment, "nats", pid, "a disconnected status", |sc| sc["connected"] == false);
    let since = Instant::now();
    let first_ns = first["updated_ns"].as_i64().unwrap();
    wait_listed(segment, "nats", pid, "the disconnected status to be rewritten", |sc| {
        sc["connected"] == false
            && sc["last_error"].is_string()
            && since.elapsed() >= span
            && sc["updated_ns"].as_i64().unwrap() > first_ns
    });
}

#[test]
fn qilin_nats_started_while_nats_is_down_is_listed_at_once_and_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let feed = unique("ndown");
    let core = Core::start(dir.path(), &feed, 1 << 16, 1000, 10_000_000);
    // The server's port, then the server stopped: NATS is unreachable at a known address.
    let mut server = NatsServer::start(dir.path());
    server.stop(Signal::SIGTERM);
    let url = server.url();
    let config = nats_config(dir.path(), &core.segment, &url);
    let log = dir.path().join("nats.log");

    let mut first = spawn_nats(&config, &log);
    let pid_a = first.0.id();
    let sc = wait_listed(&core.segment, "nats", pid_a, "qilin-nats to be listed while NATS is down", |sc| {
        sc["connected"] == false && sc["last_error"].is_string()
    });
    println!("listed while NATS is down: {sc}");
    assert_eq!(sc["sidecar"], "qilin-nats");
    assert_eq!(sc["state"], "connecting", "{sc}");
    let error = sc["last_error"].as_str().unwrap();
    assert!(error.contains(&format!("127.0.0.1:{}", server.port)), "the error names the server: {error}");
    stays_listed_while_down(&core.segment, pid_a, Duration::from_secs(3));

    // Killed during the outage and started again: the new process's status replaces the old one.
    stop(&mut first, Signal::SIGKILL);
    let mut second = spawn_nats(&config, &log);
    let pid_b = second.0.id();
    assert_ne!(pid_a, pid_b);
    wait_listed(&core.segment, "nats", pid_b, "the restarted qilin-nats to replace the killed one's status", |sc| {
        sc["connected"] == false && sc["state"] == "connecting"
    });

    // NATS comes up: connected, publishing, the error cleared.
    server.restart();
    let sc = wait_listed(&core.segment, "nats", pid_b, "qilin-nats to connect and publish", |sc| {
        sc["connected"] == true && sc["position"].as_u64().is_some_and(|p| p > 0) && sc["last_error"].is_null()
    });
    assert_eq!(sc["state"], "publishing", "{sc}");

    // NATS goes away while it runs: the status stays fresh, disconnected, with the error.
    server.stop(Signal::SIGKILL);
    stays_listed_while_down(&core.segment, pid_b, Duration::from_secs(7));
    server.restart();
    wait_listed(&core.segment, "nats", pid_b, "qilin-nats to publish again", |sc| {
        sc["connected"] == true && sc["last_error"].is_null() && sc["state"] == "publishing"
    });
    assert!(stop(&mut second, Signal::SIGTERM).success(), "{}", fs::read_to_string(&log).unwrap());
    drop(core);
}

/// Sends `signal` to a running process without waiting (SIGSTOP, SIGCONT).
fn send(process: &KillOnDrop, signal: Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(process.0.id() as i32), signal).unwrap();
}

/// The sidecar's own status file (`qilinctl status` needs a live segment to list it; this does
/// not).
fn own_status(segment: &Path, name: &str, pid: u32) -> Option<Value> {
    status(segment, name).filter(|s| s["pid"] == pid)
}

#[test]
fn a_segment_recreated_under_the_same_path_is_reopened_and_its_new_session_kept_apart() {
    const OLD: u64 = 30_000;
    let dir = tempfile::tempdir().unwrap();
    let feed = unique("recreated");
    let server = NatsServer::start(dir.path());
    // The ring holds both sessions' ticks: nothing is lapped, so every loss would be the sidecars'.
    let mut core = Core::start(dir.path(), &feed, 1 << 16, 5_000, OLD);
    let segment = core.segment.clone();
    let journal_dir = dir.path().join("journal");
    let nats_log = dir.path().join("nats.log");
    let recorder_log = dir.path().join("recorder.log");
    let mut nats = spawn_nats(&sidecar_config(dir.path(), &segment, &server.url(), "", ""), &nats_log);
    let mut recorder = spawn(
        env!("CARGO_BIN_EXE_qilin-recorder"),
        &recorder_config(dir.path(), &segment, &journal_dir, ""),
        &recorder_log,
    );
    let (nats_pid, recorder_pid) = (nats.0.id(), recorder.0.id());

    // Both sidecars stopped behind the core by construction: the core is frozen while they catch
    // up with it and are frozen in turn, and has ticks of the old session still to publish.
    let frozen_at = while_core_frozen_at(&core, 100, || {
        let at = core.reader().write_cursor();
        for name in ["nats", "recorder"] {
            wait_for(&format!("{name} to reach the frozen core"), || {
                status(&segment, name).filter(|s| s["position"] == at)
            });
        }
        send(&nats, Signal::SIGSTOP);
        send(&recorder, Signal::SIGSTOP);
        at
    });
    println!("sidecars frozen at sequence {frozen_at} of {OLD}");
    wait_for("the old session's last tick", || (core.reader().write_cursor() == OLD).then_some(()));

    // The core dies, its segment is removed, and a core started again creates a new file under
    // the same path: a new session, sequences from 1 again, which reuse the old session's numbers.
    core.kill();
    let old_epoch = core.reader().epoch();
    fs::remove_file(&segment).unwrap();
    core.restart();
    let new_epoch = core.reader().epoch();
    wait_for("the new session to pass sequence 1000", || (core.reader().write_cursor() >= 1000).then_some(()));
    println!("old session epoch {old_epoch}, new session epoch {new_epoch}");

    send(&nats, Signal::SIGCONT);
    send(&recorder, Signal::SIGCONT);
    // Each reads the old file to its end, then notices the new inode and reopens the path; the
    // journal and the stream already hold the old session's numbers, so each holds.
    for (name, pid) in [("nats", nats_pid), ("recorder", recorder_pid)] {
        let s = wait_for(&format!("{name} to notice the re-created segment"), || {
            own_status(&segment, name, pid).filter(|s| s["state"] == "segment-recreated")
        });
        println!("{name}: {s}");
        assert_eq!(s["position"], OLD, "{name} read the old file to its end first: {s}");
        assert_eq!(s["counters"]["recreated"], 1, "{s}");
        assert!(s["last_error"].as_str().unwrap().contains("re-created"), "{s}");
        assert!(s["write_cursor"].as_u64().unwrap() >= 1000, "{name} reads the new file: {s}");
        let listed = wait_listed(&segment, name, pid, &format!("qilinctl status to list {name}"), |_| true);
        assert_eq!(listed["state"], "segment-recreated", "{listed}");
    }
    for (log, name) in [(&nats_log, "qilin-nats"), (&recorder_log, "qilin-recorder")] {
        let log = fs::read_to_string(log).unwrap();
        let line =
            log.lines().find(|l| l.contains("was re-created (inode")).unwrap_or_else(|| panic!("{name}:\n{log}"));
        assert!(line.contains(&format!("new epoch {new_epoch}")), "{name} logs the new epoch: {line}");
    }

    // Stopped cleanly, nothing can arrive any more: the old session is in the stream and in the
    // journal exactly once, none of the new session's repeated numbers with it.
    assert!(stop(&mut nats, Signal::SIGTERM).success(), "{}", fs::read_to_string(&nats_log).unwrap());
    assert!(stop(&mut recorder, Signal::SIGTERM).success(), "{}", fs::read_to_string(&recorder_log).unwrap());
    let stored = runtime().block_on(stream_contents(&server.url(), &stream_name(&feed)));
    assert!(assert_exactly_once(&stored, OLD).is_empty(), "no gap event");
    let (ticks, gaps) = read_journal(&journal_dir, &feed, OLD);
    assert!(gaps.is_empty(), "no gap record: {gaps:?}");
    assert_eq!(ticks.len() as u64, OLD);
}
