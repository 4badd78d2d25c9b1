//! A rotation that fails at any step after the failover (issue 18, item 15), with real processes: a
//! real `qilin-core` on the simulator with two sessions and a real `qilin-secrets --watch` on a real
//! secret file. Each test makes one step of the runbook fail by construction: the backup is down so
//! the failover is refused; the core refuses the hand-over; the broker refuses the relogin (with the
//! new credentials and once more with the previous ones); the health check finds no primary tick (the
//! simulated market has stopped); the core is SIGKILLed while it holds the relogin. Afterwards the
//! feed runs on the primary with its previous credentials (or the documented retry rotated it), the
//! audit log says what happened in order, `qilinctl audit verify` passes, and qilin-secrets' status
//! file shows the failure. One more test writes the watched file in place, in two parts.
//!
//! The tests run one at a time: each has a busy-polling core on a 2-core machine.

mod common;

use common::rotation::{self, await_audit, ctl, step_of, write_secret_file};

use std::{
    fs,
    io::Write,
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Mutex,
};

use common::{Core, status, unique, wait_for, workspace_bin};
use qilin_shm::{LinkState, Source};
use qilin_testkit::{assert_audit_verifies, audit_entries, is_switch, switches};
use serde_json::Value;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

const PRIMARY_PASSWORD_1: &str = "Pw-rf4-primary-one";
const PRIMARY_PASSWORD_2: &str = "Pw-rf4-primary-two";
const BACKUP_PASSWORD: &str = "Pw-rf4-backup-fish";
const OLD_FRONT: &str = "tcp://127.0.0.1:10211";
const NEW_FRONT: &str = "tcp://127.0.0.9:20211";

fn secrets_env(primary_password: &str, primary_front: &str) -> String {
    rotation::secrets_env(primary_password, primary_front, BACKUP_PASSWORD)
}

fn outcome_of(e: &Value) -> &str {
    e["actions"][0]["outcome"].as_str().unwrap_or("")
}

/// qilin-secrets' rotation entries: (rotation id, step, exit code, outcome).
fn rotation_steps(audit: &Path) -> Vec<(String, String, i64, String)> {
    audit_entries(audit)
        .iter()
        .filter(|e| e["program"] == "qilin-secrets" && e["command"] == "secrets rotate")
        .map(|e| {
            let id = e["actions"][0]["rotation"].as_str().unwrap_or("").to_string();
            (id, step_of(e).to_string(), e["exit_code"].as_i64().unwrap_or(-1), outcome_of(e).to_string())
        })
        .collect()
}

/// The steps alone, with their exit codes.
fn steps(audit: &Path) -> Vec<(String, i64)> {
    rotation_steps(audit).into_iter().map(|(_, s, c, _)| (s, c)).collect()
}

fn owned(list: &[(&str, i64)]) -> Vec<(String, i64)> {
    list.iter().map(|(s, c)| (s.to_string(), *c)).collect()
}

/// A core with two simulated sessions (logins answered after `login_ms`, a refused one tried again
/// by the core after `login_retry_ms`), auditing into `<dir>/audit.jsonl`; `max_ticks` 0 runs the
/// market until the end of the test.
fn session_core(dir: &Path, feed: &str, rate: u64, max_ticks: u64, login_ms: u64, login_retry_ms: u64) -> Core {
    let core_extra = format!("audit_log = {:?}\n", dir.join("audit.jsonl").display().to_string());
    let tail = format!(
        "seed = 5\n[source.sim.sessions]\nenabled = true\nlogin_ms = {login_ms}\nreconnect_ms = 200\n[failover]\n\
         overlap_ms = 200\nlogin_retry_ms = {login_retry_ms}\n"
    );
    let core = Core::start_with(dir, feed, 1 << 16, rate, max_ticks, &core_extra, &tail);
    let socket = dir.join("core.sock");
    wait_for("the core's control socket", || UnixStream::connect(&socket).ok());
    core
}

struct Secrets {
    child: Child,
    log: PathBuf,
}

impl Secrets {
    fn start(dir: &Path, source: &Path, segment: &Path, health_within_ms: u64) -> Secrets {
        let log = dir.join("secrets.log");
        let child = Command::new(workspace_bin("qilin-secrets"))
            .args(["--profile", "sim", "--watch", "--watch-interval-ms", "50"])
            .arg(format!("--health-within-ms={health_within_ms}"))
            .arg("--source")
            .arg(source)
            .arg("--audit-log")
            .arg(dir.join("audit.jsonl"))
            .arg("--core-socket")
            .arg(dir.join("core.sock"))
            .arg("--segment")
            .arg(segment)
            .env("RUST_LOG", "trace")
            .env_remove("QILIN_AUDIT_LOG")
            .stdout(Stdio::from(fs::File::create(dir.join("secrets.out")).unwrap()))
            .stderr(Stdio::from(fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap();
        Secrets { child, log }
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Secrets {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn assert_no_secret(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    for secret in
        [PRIMARY_PASSWORD_1, PRIMARY_PASSWORD_2, BACKUP_PASSWORD, "Pw-rf4", "primary-one", "primary-two", "backup-fish"]
    {
        assert!(!text.contains(secret), "{what} contains the secret {secret:?}");
    }
}

/// No password in qilin-secrets' log and stdout, the core's log, the audit log or the status file.
fn assert_no_secret_anywhere(dir: &Path, segment: &Path) {
    for name in ["secrets.log", "secrets.out", "core.log", "audit.jsonl"] {
        assert_no_secret(name, &fs::read(dir.join(name)).unwrap_or_default());
    }
    let status = qilin_market::status::status_dir(segment).join("secrets.json");
    assert_no_secret("qilin-secrets' status file", &fs::read(status).unwrap_or_default());
}

fn wait_logged_in(socket: &Path) -> Value {
    wait_for("both sessions to log in, the primary active", || {
        let r = ctl(socket, "sessions");
        let up = |s: &str| r["sessions"][s]["state"] == "logged_in";
        (r["active"] == "primary" && up("primary") && up("backup")).then_some(r)
    })
}

/// The feed is on the primary, logged in through `front` with credentials version `version`, as
/// the control socket and the segment's header both say.
fn assert_on_primary(core: &Core, socket: &Path, front: &str, version: u64) {
    let sessions = wait_for("the primary active and logged in", || {
        let r = ctl(socket, "sessions");
        (r["active"] == "primary" && r["sessions"]["primary"]["state"] == "logged_in").then_some(r)
    });
    let primary = &sessions["sessions"]["primary"];
    assert_eq!(primary["front"], front, "the primary's front: {sessions}");
    assert_eq!(primary["credentials_version"], version, "the primary's credentials version: {sessions}");
    let header = wait_for("the header to show the primary", || {
        let s = core.reader().status().ok()?;
        (s.active_source == Source::Primary as u32).then_some(s)
    });
    assert_eq!(LinkState::from_code(header.link_state), Some(LinkState::LoggedIn));
    assert_eq!(qilin_shm::layout::id_str(&header.front), Some(front), "the header's front");
}

/// qilin-secrets' status file once `f` holds for it.
fn await_status(segment: &Path, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    wait_for(what, || status(segment, "secrets").filter(|s| f(s)))
}

fn counter(status: &Value, name: &str) -> u64 {
    status["counters"][name].as_u64().unwrap_or_else(|| panic!("no counter {name} in the status: {status}"))
}

/// The backup is down, so the failover is refused: nothing switched, the primary keeps its
/// credentials, and the rotation is retried with a growing delay, each attempt audited; the status
/// file says the rotation is being retried and counts the failures.
#[test]
fn the_backup_down_refuses_the_failover_and_the_rotation_is_retried_with_backoff() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let core = session_core(dir.path(), &unique("rfb"), 2_000, 0, 10, 100);
    let socket = dir.path().join("core.sock");
    let (source, audit) = (dir.path().join("secrets.env"), dir.path().join("audit.jsonl"));
    write_secret_file(&source, &secrets_env(PRIMARY_PASSWORD_1, OLD_FRONT));
    let _secrets = Secrets::start(dir.path(), &source, &core.segment, 5_000);
    wait_logged_in(&socket);

    // The backup drops and every login it tries for the rest of the test is refused.
    assert_eq!(ctl(&socket, "inject backup login-fail 1000")["ok"], true);
    assert_eq!(ctl(&socket, "inject backup disconnect")["ok"], true);
    wait_for("the backup down", || {
        (ctl(&socket, "sessions")["sessions"]["backup"]["state"] != "logged_in").then_some(())
    });

    write_secret_file(&source, &secrets_env(PRIMARY_PASSWORD_2, NEW_FRONT));
    let first = await_audit(&audit, "the first attempt's end", |e| step_of(e) == "done");
    let outcome = outcome_of(&first);
    assert!(outcome.contains("backup session is not logged in"), "{outcome}");
    assert!(outcome.contains("retrying in 1000 ms"), "no retry announced: {outcome}");
    wait_for("the second attempt's end", || {
        (rotation_steps(&audit).iter().filter(|(_, s, ..)| s == "done").count() >= 2).then_some(())
    });
    let all = rotation_steps(&audit);
    let dones: Vec<&String> = all.iter().filter(|(_, s, ..)| s == "done").map(|(.., o)| o).collect();
    assert!(dones[1].contains("retrying in 2000 ms"), "the delay did not grow: {dones:?}");
    let attempt = owned(&[("validate", 0), ("failover", 1), ("done", 1)]);
    let mut want = attempt.clone();
    want.extend(attempt);
    assert_eq!(steps(&audit)[..6], want[..], "two attempts, each validated and refused at the failover");
    assert_ne!(all[0].0, all[3].0, "each attempt has its own rotation id");

    let status = await_status(&core.segment, "the status to show the retry", |s| {
        s["rotation"]["state"] == "retrying" && s["counters"]["rotations_failed"].as_u64() >= Some(2)
    });
    assert!(status["rotation"]["last_outcome"].as_str().unwrap_or("").contains("failover"), "{status}");
    assert!(status["last_error"].as_str().is_some(), "{status}");

    // Nothing switched, the primary kept its credentials.
    assert_on_primary(&core, &socket, OLD_FRONT, 1);
    assert_eq!(ctl(&socket, "sessions")["failovers"], 0);
    assert_eq!(switches(&audit), [("activate".to_string(), "start".to_string())]);
    let refused = audit_entries(&audit).into_iter().filter(|e| is_switch(e) && e["exit_code"] == 1).count();
    assert!(refused >= 2, "the core audited {refused} refused failovers");
    assert_audit_verifies(&audit);
    assert_no_secret_anywhere(dir.path(), &core.segment);
}

/// The report: `CTP_PRIMARY_PASSWORD` removed from the watched file. The sim profile
/// requires no key, so validation passes and the failover happens; the core refuses the hand-over
/// ("password is empty"); qilin-secrets fails back at once, and the primary runs on, with the
/// credentials it never stopped holding. The refused set is not retried.
#[test]
fn a_hand_over_the_core_refuses_fails_back_to_the_primary_on_its_previous_credentials() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let core = session_core(dir.path(), &unique("rfh"), 2_000, 0, 10, 100);
    let socket = dir.path().join("core.sock");
    let (source, audit) = (dir.path().join("secrets.env"), dir.path().join("audit.jsonl"));
    write_secret_file(&source, &secrets_env(PRIMARY_PASSWORD_1, OLD_FRONT));
    let secrets = Secrets::start(dir.path(), &source, &core.segment, 5_000);
    wait_logged_in(&socket);

    let without_password: String = secrets_env(PRIMARY_PASSWORD_1, OLD_FRONT)
        .lines()
        .filter(|l| !l.starts_with("CTP_PRIMARY_PASSWORD="))
        .map(|l| format!("{l}\n"))
        .collect();
    write_secret_file(&source, &without_password);
    let done = await_audit(&audit, "the rotation's end", |e| step_of(e) == "done");
    let outcome = outcome_of(&done);
    assert!(outcome.contains("password is empty"), "{outcome}");
    assert!(outcome.contains("rolled back"), "no failback after the refused hand-over: {outcome}");
    assert_eq!(
        steps(&audit),
        owned(&[("validate", 0), ("failover", 0), ("hand over primary", 1), ("failback", 0), ("done", 1)]),
        "the runbook's steps, in order"
    );
    assert_on_primary(&core, &socket, OLD_FRONT, 1);
    assert_eq!(
        switches(&audit),
        [("activate", "start"), ("failover", "command"), ("failback", "command")]
            .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    let status = await_status(&core.segment, "the status to show the failure", |s| {
        s["rotation"]["last_outcome"].as_str().is_some_and(|o| o.contains("password is empty"))
    });
    assert_eq!(status["rotation"]["state"], "idle", "{status}");
    assert_eq!((counter(&status, "rotations_failed"), counter(&status, "rotations_rolled_back")), (1, 1), "{status}");
    assert!(secrets.log().contains("rolled back"), "the log does not say it rolled back");
    assert_audit_verifies(&audit);
    assert_no_secret_anywhere(dir.path(), &core.segment);
}

/// The broker refuses the new credentials' login and then the first login with the previous ones
/// as well: the rotation ends recovering, qilin-secrets tries again, the primary logs in with its
/// previous credentials and the feed fails back to it. Both refusals go to qilin-secrets' relogins:
/// the core's own retry of a refused login waits a minute here, and logins take 3 s, so the login
/// the core starts when the previous credentials are handed back is still unanswered when the
/// relogin that follows at once replaces it.
#[test]
fn a_relogin_refused_with_the_new_and_the_previous_credentials_still_ends_on_the_primary() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let core = session_core(dir.path(), &unique("rfr"), 2_000, 0, 3_000, 60_000);
    let socket = dir.path().join("core.sock");
    let (source, audit) = (dir.path().join("secrets.env"), dir.path().join("audit.jsonl"));
    write_secret_file(&source, &secrets_env(PRIMARY_PASSWORD_1, OLD_FRONT));
    let _secrets = Secrets::start(dir.path(), &source, &core.segment, 5_000);
    wait_logged_in(&socket);

    assert_eq!(ctl(&socket, "inject primary login-fail 2")["ok"], true);
    write_secret_file(&source, &secrets_env(PRIMARY_PASSWORD_2, NEW_FRONT));
    let done = await_audit(&audit, "the rotation's end", |e| step_of(e) == "done");
    assert!(outcome_of(&done).contains("recovering"), "the rotation gave up on the backup: {}", outcome_of(&done));
    await_audit(&audit, "the recovery's end", |e| step_of(e) == "recovered");
    let all = steps(&audit);
    let until_done = all.iter().position(|(s, _)| s == "done").unwrap() + 1;
    assert_eq!(
        all[..until_done],
        owned(&[
            ("validate", 0),
            ("failover", 0),
            ("hand over primary", 0),
            ("relogin primary", 1),
            ("roll back primary", 0),
            ("relogin primary (previous credentials)", 1),
            ("done", 1),
        ])[..],
        "the rotation's steps"
    );
    // Then, retried (the core itself tries a refused login again only after a minute here): the
    // relogin with the previous credentials, the failback, and the end of the recovery.
    assert_eq!(
        all[until_done..],
        owned(&[("relogin primary (previous credentials)", 0), ("failback", 0), ("recovered", 0)])[..],
        "the recovery's steps"
    );
    let ids: Vec<String> = rotation_steps(&audit).into_iter().map(|(id, ..)| id).collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "the recovery is audited under the rotation's id: {ids:?}");
    assert_on_primary(&core, &socket, OLD_FRONT, 3);
    assert_eq!(ctl(&socket, "sessions")["sessions"]["primary"]["login_failures"], 2);
    let status = await_status(&core.segment, "the status after the recovery", |s| {
        s["rotation"]["state"] == "idle"
            && s["rotation"]["last_outcome"].as_str().is_some_and(|o| o.starts_with("recovered"))
    });
    assert_eq!((counter(&status, "rotations_failed"), counter(&status, "rotations_rolled_back")), (1, 1), "{status}");
    assert_audit_verifies(&audit);
    assert_no_secret_anywhere(dir.path(), &core.segment);
}

/// The new credentials log in, the failback happens, but no tick from the primary follows (the
/// simulated market has stopped, by construction): the health check fails, and qilin-secrets puts
/// the previous credentials back (failover, hand-over, relogin, failback).
#[test]
fn a_failed_health_check_rolls_the_primary_back_to_its_previous_credentials() {
    let _serial = serial();
    const TICKS: u64 = 2_000;
    let dir = tempfile::tempdir().unwrap();
    let core = session_core(dir.path(), &unique("rfv"), 2_000, TICKS, 10, 100);
    let socket = dir.path().join("core.sock");
    let (source, audit) = (dir.path().join("secrets.env"), dir.path().join("audit.jsonl"));
    write_secret_file(&source, &secrets_env(PRIMARY_PASSWORD_1, OLD_FRONT));
    let _secrets = Secrets::start(dir.path(), &source, &core.segment, 1_000);
    wait_logged_in(&socket);
    let reader = core.reader();
    wait_for("the market to end", || (reader.write_cursor() >= TICKS).then_some(()));

    write_secret_file(&source, &secrets_env(PRIMARY_PASSWORD_2, NEW_FRONT));
    let done = await_audit(&audit, "the rotation's end", |e| step_of(e) == "done");
    let outcome = outcome_of(&done);
    assert!(outcome.contains("verify health") && outcome.contains("rolled back"), "{outcome}");
    assert_eq!(
        steps(&audit),
        owned(&[
            ("validate", 0),
            ("failover", 0),
            ("hand over primary", 0),
            ("relogin primary", 0),
            ("failback", 0),
            ("verify health", 1),
            ("failover", 0),
            ("roll back primary", 0),
            ("relogin primary (previous credentials)", 0),
            ("failback", 0),
            ("done", 1),
        ]),
        "the runbook's steps, then the roll-back's"
    );
    assert_on_primary(&core, &socket, OLD_FRONT, 3);
    let command = |c: &str| (c.to_string(), "command".to_string());
    let mut want = vec![("activate".to_string(), "start".to_string())];
    want.extend([command("failover"), command("failback"), command("failover"), command("failback")]);
    assert_eq!(switches(&audit), want);
    let status = await_status(&core.segment, "the status to show the failure", |s| {
        s["rotation"]["last_outcome"].as_str().is_some_and(|o| o.contains("verify health"))
    });
    assert_eq!((counter(&status, "rotations_failed"), counter(&status, "rotations_rolled_back")), (1, 1), "{status}");
    assert_audit_verifies(&audit);
    assert_no_secret_anywhere(dir.path(), &core.segment);
}

/// The core is SIGKILLed while it holds qilin-secrets' relogin (logins take 2 s here, and the test
/// waits until the core shows the new credentials logging in). qilin-secrets finds the core gone,
/// keeps trying with growing delays, hands the restarted core the credentials it holds (the previous
/// ones), finishes the recovery on the primary, and then retries the rotation, which succeeds.
#[test]
fn the_core_killed_mid_rotation_is_recovered_and_the_rotation_retried() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut core = session_core(dir.path(), &unique("rfk"), 2_000, 0, 2_000, 100);
    let socket = dir.path().join("core.sock");
    let (source, audit) = (dir.path().join("secrets.env"), dir.path().join("audit.jsonl"));
    write_secret_file(&source, &secrets_env(PRIMARY_PASSWORD_1, OLD_FRONT));
    let _secrets = Secrets::start(dir.path(), &source, &core.segment, 5_000);
    wait_logged_in(&socket);

    write_secret_file(&source, &secrets_env(PRIMARY_PASSWORD_2, NEW_FRONT));
    wait_for("the relogin with the new credentials under way", || {
        let r = ctl(&socket, "sessions");
        let p = &r["sessions"]["primary"];
        (r["active"] == "backup" && p["credentials_version"] == 2 && p["state"] != "logged_in").then_some(())
    });
    core.kill();
    let done = await_audit(&audit, "the first rotation's end", |e| step_of(e) == "done");
    let outcome = outcome_of(&done);
    assert!(outcome.contains("recovering"), "{outcome}");
    let status =
        await_status(&core.segment, "the status to show the recovery", |s| s["rotation"]["state"] == "recovering");
    assert!(status["last_error"].as_str().is_some_and(|e| e.contains("control socket")), "{status}");

    core.restart();
    let rotated = await_audit(&audit, "the retried rotation", |e| step_of(e) == "done" && outcome_of(e) == "rotated");
    let all = rotation_steps(&audit);
    let first_id = &all[0].0;
    let first: Vec<(String, i64)> =
        all.iter().filter(|(id, ..)| id == first_id).map(|(_, s, c, _)| (s.clone(), *c)).collect();
    assert_eq!(first[..3], owned(&[("validate", 0), ("failover", 0), ("hand over primary", 0)])[..], "{first:?}");
    let failed_at = first.iter().position(|(_, c)| *c == 1).expect("a step failed");
    assert!(
        ["relogin primary", "failback", "verify health"].contains(&first[failed_at].0.as_str()),
        "the failure came after the hand-over: {first:?}"
    );
    assert_eq!(first.last().map(|(s, c)| (s.as_str(), *c)), Some(("recovered", 0)), "{first:?}");
    let retry_id = rotated["actions"][0]["rotation"].as_str().unwrap();
    let retry: Vec<(String, i64)> =
        all.iter().filter(|(id, ..)| id == retry_id).map(|(_, s, c, _)| (s.clone(), *c)).collect();
    assert_eq!(
        retry,
        owned(&[
            ("validate", 0),
            ("failover", 0),
            ("hand over primary", 0),
            ("relogin primary", 0),
            ("failback", 0),
            ("verify health", 0),
            ("done", 0),
        ]),
        "the retried rotation"
    );
    // Before the retry: the recovery ended (after the restarted core got the previous credentials).
    let recovered_at = all.iter().position(|(id, s, ..)| id == first_id && s == "recovered").unwrap();
    let retry_at = all.iter().position(|(id, ..)| id == retry_id).unwrap();
    assert!(recovered_at < retry_at, "{all:?}");
    // The restarted core: previous credentials (version 1), then the rotated ones (version 2).
    assert_on_primary(&core, &socket, NEW_FRONT, 2);
    let status = await_status(&core.segment, "the status after the retry", |s| {
        s["rotation"]["state"] == "idle" && s["rotation"]["last_outcome"] == "rotated"
    });
    assert!(counter(&status, "rotations_failed") >= 1 && counter(&status, "rotations_ok") == 1, "{status}");
    assert_audit_verifies(&audit);
    assert_no_secret_anywhere(dir.path(), &core.segment);
}

/// The watched file written in place (truncated and rewritten, same inode), in two parts: the first
/// part cuts the backup account short. qilin-secrets must not act on the half-written file: one
/// rotation, of the complete set, which changes only the primary's password.
#[test]
fn a_file_written_in_place_is_acted_on_only_once_it_is_complete_and_stable() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let core = session_core(dir.path(), &unique("rfw"), 2_000, 0, 10, 100);
    let socket = dir.path().join("core.sock");
    let (source, audit) = (dir.path().join("secrets.env"), dir.path().join("audit.jsonl"));
    write_secret_file(&source, &secrets_env(PRIMARY_PASSWORD_1, OLD_FRONT));
    let inode = fs::metadata(&source).map(|m| std::os::unix::fs::MetadataExt::ino(&m)).unwrap();
    let secrets = Secrets::start(dir.path(), &source, &core.segment, 5_000);
    wait_logged_in(&socket);

    let complete = secrets_env(PRIMARY_PASSWORD_2, OLD_FRONT);
    let cut = complete.find("CTP_BACKUP_USER_ID=").unwrap() + "CTP_BACKUP_USER_ID=ba".len();
    let mut file = fs::OpenOptions::new().write(true).truncate(true).open(&source).unwrap();
    file.write_all(&complete.as_bytes()[..cut]).unwrap();
    // qilin-secrets has seen a change: it says it waits for the file to settle, or (before the fix)
    // it started a rotation.
    wait_for("qilin-secrets to see the change", || {
        (secrets.log().contains("waiting until it is unchanged") || !rotation_steps(&audit).is_empty()).then_some(())
    });
    file.write_all(&complete.as_bytes()[cut..]).unwrap();
    drop(file);
    assert_eq!(fs::metadata(&source).map(|m| std::os::unix::fs::MetadataExt::ino(&m)).unwrap(), inode, "not in place");

    let done = await_audit(&audit, "a rotation's end", |e| step_of(e) == "done");
    let all = audit_entries(&audit);
    let validations: Vec<&Value> = all.iter().filter(|e| step_of(e) == "validate").collect();
    let changed: Vec<&Value> = validations.iter().map(|e| &e["actions"][0]["changed"]).collect();
    assert_eq!(changed, [&serde_json::json!(["CTP_PRIMARY_PASSWORD"])], "a half-written file was acted on");
    assert_eq!(outcome_of(&done), "rotated");
    assert_on_primary(&core, &socket, OLD_FRONT, 2);
    assert_eq!(ctl(&socket, "sessions")["sessions"]["backup"]["credentials_version"], 1, "the backup was touched");
    assert_audit_verifies(&audit);
    assert_no_secret_anywhere(dir.path(), &core.segment);
}
