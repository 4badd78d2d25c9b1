//! Primary and backup sessions, the credentials hand-off and rotation, with real processes: a real
//! `qilin-core` on the simulator with two sessions (`[source.sim.sessions]`), a real `qilin-secrets`
//! watching a real secret file, clients on the real control socket (as root and as other uids, via
//! `setpriv`), and the audit log checked with `qilinctl audit verify`.
//!
//! "No tick lost or doubled" is checked against an oracle: a second `qilin-core` with the same
//! seed and tick count but one anonymous session produces the same market; the two rings must hold
//! the same market ticks, each once. (Fields that `normalize` derives from the previous tick of an
//! instrument, the CZCE repeated-second millisecond and the quality flags, are left out of the
//! comparison: two sessions can hand the engine one instrument's ticks in a different order around
//! a switch, which changes those derivations but not which exchange ticks are in the ring.)
//!
//! The tests run one at a time: each has one or two busy-polling cores on a 2-core machine.

mod common;

use common::rotation::{self, await_audit, ctl, ctl_bytes, step_of, write_secret_file};

use std::{
    fs,
    io::{BufRead, BufReader},
    os::unix::{fs::PermissionsExt, net::UnixStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use common::{Core, unique, wait_for, workspace_bin};
use qilin_shm::{Counter, LinkState, Next, Source, Start, TickRecord};
use qilin_testkit::{assert_audit_verifies, audit_entries, await_drained, read_ring, source_runs, switches};
use serde_json::{Value, json};
use zerocopy::IntoBytes;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Account values of the first set; every fragment is grepped for in every output.
const PRIMARY_PASSWORD_1: &str = "Pw-zq7-primary-one";
const PRIMARY_PASSWORD_2: &str = "Pw-zq7-primary-two";
const BACKUP_PASSWORD: &str = "Pw-zq7-backup-fish";

fn secrets_env(primary_password: &str, primary_front: &str) -> String {
    rotation::secrets_env(primary_password, primary_front, BACKUP_PASSWORD)
}

fn credentials(session: &str, password: &str, front: &str) -> String {
    format!(
        "credentials {}",
        json!({"session": session, "broker_id": "9999", "user_id": format!("{session}-user"),
               "password": password, "md_fronts": [front]})
    )
}

/// A core with two simulated sessions, auditing into `<dir>/audit.jsonl`.
fn session_core(dir: &Path, feed: &str, rate: u64, max_ticks: u64, core_extra: &str, failover: &str) -> Core {
    let core_extra = format!("audit_log = {:?}\n{core_extra}", dir.join("audit.jsonl").display().to_string());
    let tail = format!(
        "seed = 5\n[source.sim.sessions]\nenabled = true\nlogin_ms = 10\nreconnect_ms = 200\n[failover]\n\
         overlap_ms = 200\nlogin_retry_ms = 100\n{failover}\n"
    );
    let core = Core::start_with(dir, feed, 1 << 17, rate, max_ticks, &core_extra, &tail);
    // The segment exists before the control socket is bound: wait for both.
    let socket = dir.join("core.sock");
    wait_for("the core's control socket", || UnixStream::connect(&socket).ok());
    core
}

/// The oracle: the same market from one anonymous session, as fast as it goes.
fn oracle(dir: &Path, feed: &str, max_ticks: u64) -> (Core, Vec<TickRecord>) {
    let core = Core::start_with(dir, feed, 1 << 17, 400_000, max_ticks, "", "seed = 5\n");
    let reader = core.reader();
    wait_for("the oracle's ticks", || (reader.write_cursor() >= max_ticks).then_some(()));
    let ticks = read_ring(reader.path(), max_ticks);
    (core, ticks)
}

/// A tick's exchange content without what the feed adds or derives from the previous tick.
fn market(t: &TickRecord) -> Vec<u8> {
    let mut m = *t;
    m.sequence = 0;
    m.receive_ns = 0;
    m.publish_ns = 0;
    m.source = 0;
    m.instrument_index = 0;
    m.quality = 0;
    m.exchange_time_ns = 0;
    m.update_time_ms /= 1000; // the second stays; CZCE's millisecond is derived
    m.as_bytes().to_vec()
}

/// Every market tick of the oracle is in `ticks` exactly once and nothing else is.
fn assert_same_market(what: &str, ticks: &[TickRecord], oracle: &[TickRecord]) {
    let mut got: Vec<Vec<u8>> = ticks.iter().map(market).collect();
    let mut want: Vec<Vec<u8>> = oracle.iter().map(market).collect();
    got.sort();
    want.sort();
    let doubled = got.windows(2).filter(|w| w[0] == w[1]).count();
    assert_eq!(doubled, 0, "{what}: {doubled} market ticks are in the ring more than once");
    assert_eq!(got.len(), want.len(), "{what}: the ring holds {} ticks, the market made {}", got.len(), want.len());
    let missing = want.iter().filter(|w| got.binary_search(w).is_err()).count();
    assert_eq!(missing, 0, "{what}: {missing} market ticks are missing from the ring");
    assert_eq!(got, want, "{what}: the ring's market ticks differ from the oracle's");
}

struct Secrets {
    child: Child,
    log: PathBuf,
}

impl Secrets {
    fn start(dir: &Path, source: &Path, core_socket: &Path, segment: &Path) -> Secrets {
        let log = dir.join("secrets.log");
        let child = Command::new(workspace_bin("qilin-secrets"))
            .args(["--profile", "sim", "--watch", "--watch-interval-ms", "50", "--health-within-ms", "10000"])
            .arg("--source")
            .arg(source)
            .arg("--audit-log")
            .arg(dir.join("audit.jsonl"))
            .arg("--core-socket")
            .arg(core_socket)
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

    fn proc_file(&self, name: &str) -> Vec<u8> {
        fs::read(format!("/proc/{}/{name}", self.child.id())).unwrap_or_default()
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
    // Whole values and distinctive fragments of them (long enough not to occur by chance in 50 MB
    // of segment bytes: a three-letter fragment did once).
    for secret in
        [PRIMARY_PASSWORD_1, PRIMARY_PASSWORD_2, BACKUP_PASSWORD, "Pw-zq7", "primary-one", "primary-two", "backup-fish"]
    {
        assert!(!text.contains(secret), "{what} contains the secret {secret:?}");
    }
}

fn wait_logged_in(socket: &Path, both: bool) -> Value {
    wait_for("the sessions to log in", || {
        let r = ctl(socket, "sessions");
        let p = r["sessions"]["primary"]["state"] == "logged_in";
        let b = r["sessions"]["backup"]["state"] == "logged_in";
        (r["active"] == "primary" && p && (b || !both)).then_some(r)
    })
}

/// The runbook end to end: the secret file is replaced while ticks flow; qilin-secrets validates,
/// fails over, re-logs the primary in with the new password, fails back and verifies health; no
/// market tick is lost or doubled; the header shows the new front; every step is audited; no
/// password appears in any output, the segment or either process's argv and environment.
#[test]
fn rotation_while_ticks_flow_loses_and_doubles_nothing() {
    let _serial = serial();
    const TICKS: u64 = 60_000;
    let dir = tempfile::tempdir().unwrap();
    let (odir, feed, ofeed) = (dir.path().join("oracle"), unique("rot"), unique("rto"));
    fs::create_dir(&odir).unwrap();
    let (_oracle_core, oracle) = oracle(&odir, &ofeed, TICKS);

    let core = session_core(dir.path(), &feed, 10_000, TICKS, "", "");
    let socket = dir.path().join("core.sock");
    let source = dir.path().join("secrets.env");
    write_secret_file(&source, &secrets_env(PRIMARY_PASSWORD_1, "tcp://127.0.0.1:10211"));
    let secrets = Secrets::start(dir.path(), &source, &socket, &core.segment);
    wait_logged_in(&socket, true);
    let reader = core.reader();
    wait_for("a quarter of the ticks", || (reader.write_cursor() > TICKS / 4).then_some(()));
    assert_eq!(Source::from_code(reader.status().unwrap().active_source as u8), Some(Source::Primary));

    write_secret_file(&source, &secrets_env(PRIMARY_PASSWORD_2, "tcp://127.0.0.9:20211"));
    let audit = dir.path().join("audit.jsonl");
    let done = await_audit(&audit, "the rotation to finish", |e| step_of(e) == "done");
    let at = reader.write_cursor();
    assert_eq!(done["actions"][0]["outcome"], "rotated", "rotation outcome: {done}");
    // Failed back: the header says so once the runbook is done (which ticks come last depends on
    // where the market ends within the failback's overlap, when both sessions' ticks are taken).
    assert_eq!(Source::from_code(reader.status().unwrap().active_source as u8), Some(Source::Primary));
    assert!(at < TICKS, "the rotation finished after the market stopped (cursor {at}): it did not happen under flow");

    wait_for("every tick", || (reader.write_cursor() >= TICKS).then_some(()));
    await_drained(&reader); // a doubled tick would be published by now
    assert_eq!(reader.write_cursor(), TICKS, "more ticks in the ring than the market made");
    let ticks = read_ring(reader.path(), TICKS);
    assert_same_market("rotation", &ticks, &oracle);
    let runs = source_runs(&ticks);
    eprintln!("rotation: source runs {runs:?}; duplicates dropped {}", reader.counter(Counter::Duplicates));
    assert!(runs.iter().any(|(s, _)| *s == Source::Backup), "no tick came from the backup during the rotation");
    assert!(reader.counter(Counter::Duplicates) > 0, "no duplicate was dropped: the overlap was not exercised");
    assert_eq!(reader.counter(Counter::Failovers), 2);

    let status = reader.status().unwrap();
    assert_eq!(LinkState::from_code(status.link_state), Some(LinkState::LoggedIn));
    assert_eq!(qilin_shm::layout::id_str(&status.front), Some("tcp://127.0.0.9:20211"), "the header's front");
    let sessions = ctl(&socket, "sessions");
    assert_eq!(sessions["sessions"]["primary"]["credentials_version"], 2, "{sessions}");
    assert_eq!(sessions["sessions"]["backup"]["credentials_version"], 1, "{sessions}");

    // The audit trail: each runbook step by qilin-secrets, each switch by the core, a sound chain.
    let entries = audit_entries(&audit);
    let steps: Vec<&str> =
        entries.iter().filter(|e| e["program"] == "qilin-secrets").map(step_of).filter(|s| !s.is_empty()).collect();
    assert_eq!(
        steps,
        ["validate", "failover", "hand over primary", "relogin primary", "failback", "verify health", "done"],
        "runbook steps in the audit log"
    );
    let pair = |c: &str, t: &str| (c.to_string(), t.to_string());
    assert_eq!(switches(&audit), [pair("activate", "start"), pair("failover", "command"), pair("failback", "command")]);
    // The relogin qilin-secrets asked for is in the core's entries too.
    assert!(
        entries.iter().any(|e| e["program"] == "qilin-core" && e["command"] == "relogin" && e["args"][0] == "primary"),
        "the core did not audit the relogin"
    );
    assert!(
        entries.iter().any(|e| step_of(e) == "verify health"
            && e["actions"][0]["outcome"].as_str().unwrap_or("").starts_with("ok: primary tick")),
        "health verification not recorded as ok"
    );
    assert_audit_verifies(&audit);

    // No secret anywhere: logs, audit log, stdout, the segment, argv and environment of both.
    let mut core_proc = Vec::new();
    for name in ["cmdline", "environ"] {
        core_proc.extend(fs::read(format!("/proc/{}/{name}", core.pid())).unwrap_or_default());
        assert_no_secret(&format!("qilin-secrets /proc/{name}"), &secrets.proc_file(name));
    }
    assert_no_secret("qilin-core /proc cmdline+environ", &core_proc);
    assert_no_secret("the segment", &fs::read(&core.segment).unwrap());
    assert_no_secret("the core's log", &fs::read(dir.path().join("core.log")).unwrap());
    assert_no_secret("qilin-secrets' log (RUST_LOG=trace)", &fs::read(&secrets.log).unwrap());
    assert_no_secret("qilin-secrets' stdout", &fs::read(dir.path().join("secrets.out")).unwrap());
    assert_no_secret("the audit log", &fs::read(&audit).unwrap());
}

/// A new set that fails validation is refused with the key names and reasons (never the values)
/// and nothing switches; a valid set the broker refuses is rolled back: the primary logs in again
/// with its previous credentials and the feed fails back.
#[test]
fn bad_new_secrets_are_refused_and_the_running_session_stays() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let feed = unique("bad");
    let core = session_core(dir.path(), &feed, 2_000, 0, "", "");
    let socket = dir.path().join("core.sock");
    let source = dir.path().join("secrets.env");
    let audit = dir.path().join("audit.jsonl");
    write_secret_file(&source, &secrets_env(PRIMARY_PASSWORD_1, "tcp://127.0.0.1:10211"));
    let secrets = Secrets::start(dir.path(), &source, &socket, &core.segment);
    wait_logged_in(&socket, true);

    // A primary password longer than CTP allows, an unparseable backup front, a duplicated key.
    let bad = secrets_env(PRIMARY_PASSWORD_1, "tcp://127.0.0.1:10211")
        .replace(PRIMARY_PASSWORD_1, "Pw-zq7-far-too-long-for-a-ctp-password-0123456789")
        .replace("CTP_BACKUP_MD_FRONTS=tcp://127.0.0.2:10211", "CTP_BACKUP_MD_FRONTS=tcp//zq7-bad-front")
        + "CTP_BACKUP_USER_ID=back02\n";
    write_secret_file(&source, &bad);
    let refused = await_audit(&audit, "the refusal", |e| step_of(e) == "validate");
    assert_eq!(refused["exit_code"], 1, "{refused}");
    let problems: Vec<String> = refused["actions"][0]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["key"].as_str().unwrap().to_string())
        .collect();
    for key in ["CTP_PRIMARY_PASSWORD", "CTP_BACKUP_MD_FRONTS", "CTP_BACKUP_USER_ID"] {
        assert!(problems.iter().any(|k| k == key), "{key} not reported: {problems:?}");
    }
    // Refused once, not again: qilin-secrets looks at the unchanged file in several more rounds.
    let rounds =
        || common::status(&core.segment, "secrets").and_then(|s| s["counters"]["watch_rounds"].as_u64()).unwrap_or(0);
    let seen = rounds();
    wait_for("five more watch rounds", || (rounds() >= seen + 5).then_some(()));
    let validations = audit_entries(&audit).iter().filter(|e| step_of(e) == "validate").count();
    assert_eq!(validations, 1, "an unchanged bad file was refused (and audited) more than once");
    let sessions = ctl(&socket, "sessions");
    assert_eq!(sessions["active"], "primary");
    assert_eq!(sessions["failovers"], 0, "a refused set caused a switch: {sessions}");
    assert_eq!(sessions["sessions"]["primary"]["credentials_version"], 1);
    assert_eq!(sessions["sessions"]["backup"]["credentials_version"], 1);
    let mut reader = core.reader();
    reader.seek(Start::Newest);
    let mut t = TickRecord::ZERO;
    let first = wait_for("a tick after the refusal", || matches!(reader.try_next(&mut t), Next::Tick).then_some(t));
    assert_eq!(Source::from_code(first.source), Some(Source::Primary));

    // A valid set the broker refuses: the new primary password's login fails (injected).
    assert_eq!(ctl(&socket, "inject primary login-fail 1")["ok"], true);
    write_secret_file(&source, &secrets_env(PRIMARY_PASSWORD_2, "tcp://127.0.0.1:10211"));
    let done = await_audit(&audit, "the rolled-back rotation", |e| step_of(e) == "done");
    let outcome = done["actions"][0]["outcome"].as_str().unwrap();
    assert!(outcome.contains("relogin primary") && outcome.contains("rolled back"), "{outcome}");
    let sessions = wait_for("the primary active again", || {
        let r = ctl(&socket, "sessions");
        (r["active"] == "primary" && r["sessions"]["primary"]["state"] == "logged_in").then_some(r)
    });
    assert_eq!(sessions["sessions"]["primary"]["credentials_version"], 3, "new, then the previous again: {sessions}");
    assert_eq!(sessions["sessions"]["primary"]["login_failures"], 1);
    let steps: Vec<String> =
        audit_entries(&audit).iter().map(|e| step_of(e).to_string()).filter(|s| !s.is_empty()).collect();
    for step in ["roll back primary", "relogin primary (previous credentials)"] {
        assert!(steps.iter().any(|s| s == step), "{step} not audited: {steps:?}");
    }
    let log = fs::read_to_string(&secrets.log).unwrap();
    assert!(
        log.contains("CTP_BACKUP_MD_FRONTS") && log.contains("CTP_PRIMARY_PASSWORD"),
        "the keys are not named:\n{log}"
    );
    assert!(!log.contains("zq7-bad-front"), "the bad value was printed:\n{log}");
    assert_no_secret("qilin-secrets' log", log.as_bytes());
    assert_no_secret("the audit log", &fs::read(&audit).unwrap());
    assert_audit_verifies(&audit);
}

/// Automatic failover on a disconnect, on a login failure and on a heartbeat warning past the
/// threshold; automatic failback once the primary has been up `failback_after_ms`; every market
/// tick once; the header shows `failed_over` while on the backup; each switch audited.
#[test]
fn automatic_failover_and_failback_lose_and_double_nothing() {
    let _serial = serial();
    const TICKS: u64 = 50_000;
    let dir = tempfile::tempdir().unwrap();
    let (odir, feed, ofeed) = (dir.path().join("oracle"), unique("afo"), unique("afq"));
    fs::create_dir(&odir).unwrap();
    let (_oracle_core, oracle) = oracle(&odir, &ofeed, TICKS);
    let core = session_core(dir.path(), &feed, 5_000, TICKS, "", "failback_after_ms = 300\nheartbeat_warning_s = 10");
    let socket = dir.path().join("core.sock");
    assert_eq!(ctl(&socket, &credentials("primary", "p-secret", "tcp://127.0.0.1:1"))["ok"], true);
    assert_eq!(ctl(&socket, &credentials("backup", "b-secret", "tcp://127.0.0.2:1"))["ok"], true);
    wait_logged_in(&socket, true);
    let reader = core.reader();
    let on_backup = |what: &str| {
        wait_for(what, || {
            let s = reader.status().ok()?;
            (s.active_source == Source::Backup as u32
                && LinkState::from_code(s.link_state) == Some(LinkState::FailedOver))
            .then_some(())
        })
    };
    let back_on_primary = |what: &str| {
        wait_for(what, || {
            let s = reader.status().ok()?;
            (s.active_source == Source::Primary as u32
                && LinkState::from_code(s.link_state) == Some(LinkState::LoggedIn))
            .then_some(())
        })
    };
    let mut cursor = 0;
    let mut advance = |n: u64| {
        cursor += n;
        wait_for("ticks", || (reader.write_cursor() >= cursor).then_some(()));
    };

    advance(5_000);
    assert_eq!(ctl(&socket, "inject primary disconnect")["ok"], true);
    on_backup("failover on disconnect");
    back_on_primary("failback after the primary reconnected and stayed up");

    advance(5_000);
    assert_eq!(ctl(&socket, "inject primary login-fail 2")["ok"], true);
    assert_eq!(ctl(&socket, "inject primary disconnect")["ok"], true);
    on_backup("failover on disconnect, then failed logins");
    back_on_primary("failback after two refused logins");

    advance(5_000);
    assert_eq!(ctl(&socket, "inject primary heartbeat-warning 3")["ok"], true);
    // The manager has handled it once it is the primary's last error; it switched nothing.
    wait_for("the 3 s warning handled", || {
        let s = ctl(&socket, "sessions");
        s["sessions"]["primary"]["last_error"].as_str().is_some_and(|e| e.contains("no data for 3 s")).then_some(())
    });
    assert_eq!(
        reader.status().unwrap().active_source,
        Source::Primary as u32,
        "a warning under the threshold switched"
    );
    assert_eq!(ctl(&socket, "inject primary heartbeat-warning 12")["ok"], true);
    on_backup("failover on a heartbeat warning");
    // The primary never went down: a failover on command holds; this one was automatic, so it comes back.
    back_on_primary("failback after the warning");

    wait_for("every tick", || (reader.write_cursor() >= TICKS).then_some(()));
    await_drained(&reader);
    assert_eq!(reader.write_cursor(), TICKS, "more ticks in the ring than the market made");
    let ticks = read_ring(reader.path(), TICKS);
    assert_same_market("automatic failover", &ticks, &oracle);
    eprintln!("auto: source runs {:?}", source_runs(&ticks));
    let sessions = ctl(&socket, "sessions");
    assert_eq!(sessions["sessions"]["primary"]["login_failures"], 2, "{sessions}");
    assert_eq!(sessions["sessions"]["primary"]["disconnects"], 2, "{sessions}");
    assert_eq!(reader.counter(Counter::FrontDisconnects), 2);
    assert_eq!(reader.counter(Counter::Failovers), 6);
    let switches = switches(&dir.path().join("audit.jsonl"));
    let auto = |c: &str| (c.to_string(), "auto".to_string());
    let mut want = vec![("activate".to_string(), "start".to_string())];
    for _ in 0..3 {
        want.extend([auto("failover"), auto("failback")]);
    }
    assert_eq!(switches, want);
    assert_audit_verifies(&dir.path().join("audit.jsonl"));
}

/// Runs `script` with python3 as `uid` (util-linux `setpriv`); returns its stdout.
fn python_as(uid: u32, script: &str, args: &[&str]) -> Child {
    Command::new("setpriv")
        .args([format!("--reuid={uid}"), format!("--regid={uid}"), "--clear-groups".into()])
        // Debian's interpreter: a per-user one (pyenv under /root) is not reachable by other uids.
        .args(["/usr/bin/python3", "-c", script])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("setpriv (util-linux) and python3 are installed by .ci/run")
}

const CLIENT: &str = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile("rw")
for line in sys.argv[2:]:
    f.write(line + "\n"); f.flush(); print(f.readline().strip(), flush=True)
"#;

fn client_as(uid: u32, socket: &Path, lines: &[&str]) -> Vec<Value> {
    let mut args = vec![socket.to_str().unwrap()];
    args.extend(lines);
    let out = python_as(uid, CLIENT, &args).wait_with_output().unwrap();
    assert!(out.status.success(), "client as uid {uid} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// SO_PEERCRED on both ends. The core: a uid outside `control_allowed_uids` is refused at connect,
/// an allowed uid that is not `secrets_uid` may run commands but its credentials are refused,
/// logged and audited (never parsed). qilin-secrets: a control socket served by another uid than
/// the core's gets nothing. The second uid is `nobody` (65534) and 65533, via `setpriv`: this
/// test needs root, which CI has.
#[test]
fn peer_uids_are_checked_on_both_ends() {
    let _serial = serial();
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test switches to other uids with setpriv and must run as root (CI does); it is not skipped"
    );
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let feed = unique("uid");
    let _core = session_core(dir.path(), &feed, 1_000, 0, "control_allowed_uids = [0, 65534]\nsecrets_uid = 0", "");
    let socket = dir.path().join("core.sock");
    // Mode 0660 keeps others out at the file level; open it so the uid check itself is exercised.
    fs::set_permissions(&socket, fs::Permissions::from_mode(0o666)).unwrap();
    let audit = dir.path().join("audit.jsonl");

    let stranger = client_as(65533, &socket, &["status"]);
    assert_eq!(stranger[0]["ok"], false);
    assert!(stranger[0]["error"].as_str().unwrap().contains("uid 65533 is not allowed"), "{stranger:?}");

    let nobody = client_as(
        65534,
        &socket,
        &["status", &credentials("primary", "Pw-zq7-stolen", "tcp://10.0.0.1:1"), "sessions"],
    );
    assert_eq!(nobody[0]["ok"], true, "an allowed uid may read status: {nobody:?}");
    assert_eq!(nobody[1]["ok"], false);
    let error = nobody[1]["error"].as_str().unwrap();
    assert!(error.contains("uid 65534 may not hand over credentials"), "{error}");
    assert_eq!(nobody[2]["sessions"]["primary"]["state"], "waiting_credentials", "the refused credentials were used");

    let refusals: Vec<Value> = audit_entries(&audit)
        .into_iter()
        .filter(|e| e["command"].as_str().unwrap_or("").starts_with("refused"))
        .collect();
    let peers: Vec<(&str, u64)> = refusals
        .iter()
        .map(|e| (e["command"].as_str().unwrap(), e["actions"][0]["peer_uid"].as_u64().unwrap()))
        .collect();
    assert_eq!(peers, [("refused connect", 65533), ("refused credentials", 65534)]);
    let log = fs::read_to_string(dir.path().join("core.log")).unwrap();
    assert!(log.contains("credentials refused: not the secrets uid") && log.contains("uid=65534"), "{log}");
    assert_no_secret("the core's log", log.as_bytes());
    assert_no_secret("the audit log", &fs::read(&audit).unwrap());

    // qilin-secrets run by a uid the core does not take credentials from: refused, exit 6.
    let shared = dir.path().join("shared");
    fs::create_dir(&shared).unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o777)).unwrap();
    let readable = shared.join("secrets.env");
    fs::write(&readable, secrets_env(PRIMARY_PASSWORD_1, "tcp://127.0.0.1:10211")).unwrap();
    fs::set_permissions(&readable, fs::Permissions::from_mode(0o644)).unwrap(); // the sim profile allows it
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(workspace_bin("qilin-secrets"))
        .args(["--profile", "sim", "--core-uid", "0", "--source"])
        .arg(&readable)
        .arg("--audit-log")
        .arg(shared.join("audit.jsonl"))
        .arg("--core-socket")
        .arg(&socket)
        .env_remove("QILIN_AUDIT_LOG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "qilin-secrets as uid 65534 was not refused:\n{stderr}");
    assert!(stderr.contains("the core refused the primary credentials: uid 65534 may not hand over"), "{stderr}");
    assert_no_secret("qilin-secrets' stderr", &out.stderr);
    let refused_handoffs = audit_entries(&shared.join("audit.jsonl"))
        .iter()
        .filter(|e| e["command"] == "secrets handoff" && e["exit_code"] == 1)
        .count();
    assert_eq!(refused_handoffs, 2, "both refused hand-offs are audited by qilin-secrets");

    // The other end: a socket at the expected path served by uid 65534 gets no credentials.
    let impostor_dir = dir.path().join("impostor");
    fs::create_dir(&impostor_dir).unwrap();
    fs::set_permissions(&impostor_dir, fs::Permissions::from_mode(0o777)).unwrap();
    let impostor_socket = impostor_dir.join("core.sock");
    let received = impostor_dir.join("received");
    let server = r#"
import os, socket, sys
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); os.chmod(sys.argv[1], 0o666); s.listen(4)
print("listening", flush=True)
total = 0
s.settimeout(30)
try:
    while True:
        c, _ = s.accept(); c.settimeout(2)
        try:
            while True:
                b = c.recv(65536)
                if not b: break
                total += len(b)
        except Exception: pass
        open(sys.argv[2], "w").write(str(total))
except Exception: pass
"#;
    let mut fake = python_as(65534, server, &[impostor_socket.to_str().unwrap(), received.to_str().unwrap()]);
    let mut ready = String::new();
    BufReader::new(fake.stdout.take().unwrap()).read_line(&mut ready).unwrap();
    assert_eq!(ready.trim(), "listening");
    let source = dir.path().join("secrets.env");
    write_secret_file(&source, &secrets_env(PRIMARY_PASSWORD_1, "tcp://127.0.0.1:10211"));
    let out = Command::new(workspace_bin("qilin-secrets"))
        .args(["--profile", "sim", "--source"])
        .arg(&source)
        .arg("--audit-log")
        .arg(&audit)
        .arg("--core-socket")
        .arg(&impostor_socket)
        .env_remove("QILIN_AUDIT_LOG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "qilin-secrets did not refuse the impostor:\n{stderr}");
    assert!(stderr.contains("is served by uid 65534, not the core's uid 0"), "{stderr}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !received.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(fs::read_to_string(&received).unwrap_or_default(), "0", "the impostor received bytes");
    let _ = fake.kill();
    let _ = fake.wait();
    assert_no_secret("qilin-secrets' stderr", &out.stderr);
    assert_audit_verifies(&audit);
}

/// Bad session commands get a clear refusal naming what is wrong (never a value), change nothing,
/// and the socket keeps serving: malformed credentials from the secrets uid itself, unknown
/// sessions and faults, a failover to a session that is not logged in (audited as refused), an
/// over-long line, a line that is not UTF-8, and session commands on a core without sessions.
#[test]
fn bad_session_commands_are_refused_clearly() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let core = session_core(dir.path(), &unique("cmd"), 1_000, 0, "", "");
    let socket = dir.path().join("core.sock");
    let error = |reply: Value| -> String {
        assert_eq!(reply["ok"], false, "{reply}");
        reply["error"].as_str().unwrap_or_default().to_string()
    };
    let e = error(ctl(&socket, "credentials {\"session\": \"primary\", \"password\": \"Pw-zq7-cut"));
    assert!(e.contains("not valid JSON") && !e.contains("zq7"), "{e}");
    let e = error(ctl(
        &socket,
        r#"credentials {"session":"primary","broker_id":"1","user_id":"u","password":999777,"md_fronts":[]}"#,
    ));
    assert!(e.contains("missing, unknown or of the wrong type") && !e.contains("999777"), "{e}");
    let e = error(ctl(&socket, &credentials("primary", "Pw-zq7-ok", "tcp://no-port")));
    assert!(e.contains("md_fronts[0]") && e.contains("no :port") && !e.contains("Pw-zq7"), "{e}");
    assert!(error(ctl(&socket, "inject primary explode")).starts_with("usage: inject"));
    assert!(error(ctl(&socket, "inject primary login-fail 0")).starts_with("usage: inject"));
    assert!(error(ctl(&socket, "inject tertiary disconnect")).starts_with("usage: inject"));
    assert!(error(ctl(&socket, "relogin tertiary")).contains("expected primary or backup"));
    assert!(error(ctl(&socket, "relogin primary")).contains("no credentials"));
    let e = error(ctl(&socket, "failover"));
    assert!(e.contains("backup session is not logged in (waiting_credentials)"), "{e}");
    let mut long = vec![b'x'; 70 * 1024];
    long.push(b'\n');
    assert!(error(ctl_bytes(&socket, &long)).contains("longer than 65536 bytes"));
    assert!(error(ctl_bytes(&socket, b"status \xff\xfe\n")).contains("not UTF-8"));
    let sessions = ctl(&socket, "sessions");
    for s in ["primary", "backup"] {
        assert_eq!(sessions["sessions"][s]["state"], "waiting_credentials", "a refused command changed {s}");
        assert_eq!(sessions["sessions"][s]["credentials_version"], 0);
    }
    let refused = audit_entries(&dir.path().join("audit.jsonl"))
        .into_iter()
        .find(|e| e["command"] == "failover")
        .expect("the refused failover is audited");
    assert_eq!(refused["exit_code"], 1);
    assert!(refused["actions"][0]["outcome"].as_str().unwrap().starts_with("refused: "), "{refused}");
    assert_no_secret("the core's log", &fs::read(dir.path().join("core.log")).unwrap());
    drop(core);

    // A core without sessions answers session commands with what it would need.
    let plain_dir = tempfile::tempdir().unwrap();
    let _plain = Core::start(plain_dir.path(), &unique("nos"), 1024, 100, 0);
    let plain_socket = plain_dir.path().join("core.sock");
    wait_for("the control socket", || UnixStream::connect(&plain_socket).ok());
    for line in ["sessions", "failover", &credentials("primary", "Pw-zq7-x", "tcp://h:1")] {
        let e = error(ctl(&plain_socket, line));
        assert!(e.contains("this source has no primary/backup sessions"), "{line}: {e}");
    }
}
