//! Primary and backup as two live sessions of the CTP stand-in in one real `qilin-core` on the
//! `ctp` source: automatic failover (disconnect, refused logins, heartbeat warning) and failback,
//! the qilin-secrets rotation runbook, and SIGKILL plus restart with qilin-secrets handing the
//! credentials over again. The test plays both fronts and pushes the same market to each, as two
//! CTP fronts of one broker carry the same exchange ticks.
//!
//! "Every tick exactly once" is checked against an oracle run: a core with the primary session
//! alone is given the whole market first, and the two-session ring must then hold the same market
//! ticks, each once. Fields the feed adds or derives from an instrument's previous tick are left
//! out of the comparison (sequence, stamps, source, index, quality flags, CZCE's derived
//! millisecond): around a switch the two sessions can hand the engine one instrument's ticks in a
//! different order, which changes those derivations but not which exchange ticks are in the ring.
//!
//! A front that is down loses what it is sent (the market goes on without it). So that the
//! backup is the one taking those ticks by construction, not by timing, the test stops the market
//! after dropping the primary's connection until the header shows the switch, and before the
//! primary can fail back it waits until the primary's front has its subscription again.
//!
//! The tests run one at a time: each has a busy-polling core on a 2-core machine.

mod common;

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{Child, Command, Stdio},
    sync::Mutex,
};

use common::{
    WATCHDOG,
    ctp::{Options, Rig, quirky_ticks},
    workspace_bin,
};
use qilin_ctp_standin::DEPTH_SIZE;
use qilin_shm::{Counter, LinkState, Next, Reader, Source, Start, TickRecord};
use qilin_testkit::{assert_audit_verifies, audit_entries, await_drained, read_ring, source_runs, switches};
use zerocopy::IntoBytes;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

const INSTRUMENTS: [&str; 4] = ["rb2605", "m2605", "SR605", "IF2604"];

/// Account passwords; each is grepped for in every output.
const PRIMARY_1: &str = "Pw-ctps-primary-one";
const PRIMARY_2: &str = "Pw-ctps-primary-two";
const BACKUP: &str = "Pw-ctps-backup-fish";

fn options() -> Options {
    Options {
        subscribe: INSTRUMENTS.iter().map(|s| s.to_string()).collect(),
        ring_slots: 1 << 16,
        failover:
            "login_retry_ms = 200\ncommand_timeout_ms = 20000\nfailback_after_ms = 300\nheartbeat_warning_s = 10\n"
                .into(),
        ..Options::default()
    }
}

/// The market both fronts carry, pushed in order at under 10 000 ticks/s.
struct Market {
    ticks: Vec<[u8; DEPTH_SIZE]>,
    next: usize,
    /// The market's continuation, for after the scenario (not in the oracle).
    after: Vec<[u8; DEPTH_SIZE]>,
}

impl Market {
    fn new(n: usize, after: usize) -> Market {
        let mut ticks = quirky_ticks((n + after) as u64, &INSTRUMENTS);
        let after = ticks.split_off(n);
        Market { ticks, next: 0, after }
    }

    /// Pushes the next `n` ticks, ten at a time every 2 ms (5 000/s at most), to the backup and,
    /// if `primary_up`, to the primary; a front whose connection is down would lose them anyway,
    /// so a failed push there is ignored, never one to the backup, which stays up throughout.
    fn flow(&mut self, rig: &Rig, n: usize, primary_up: bool) {
        let end = self.next + n;
        assert!(end <= self.ticks.len(), "the market ran out: make it longer than the scenario");
        while self.next < end {
            let burst = &self.ticks[self.next..(self.next + 10).min(end)];
            rig.front("backup").push(burst.as_flattened()).expect("pushing to the backup's front");
            if primary_up {
                let _ = rig.front("primary").push(burst.as_flattened());
            }
            self.next += burst.len();
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }

    /// Keeps the market flowing (to both fronts) until `done` yields.
    fn flow_until<T>(&mut self, rig: &Rig, what: &str, mut done: impl FnMut() -> Option<T>) -> T {
        let deadline = std::time::Instant::now() + WATCHDOG;
        loop {
            if let Some(v) = done() {
                return v;
            }
            assert!(std::time::Instant::now() < deadline, "watchdog: no {what}; core log:\n{}", rig.log());
            self.flow(rig, 50, true);
        }
    }

    fn rest(&mut self, rig: &Rig) {
        self.flow(rig, self.ticks.len() - self.next, true);
    }
}

/// The exchange's part of a record (see the module comment).
fn exchange_part(t: &TickRecord) -> Vec<u8> {
    let mut m = *t;
    (m.sequence, m.receive_ns, m.publish_ns, m.exchange_time_ns) = (0, 0, 0, 0);
    (m.source, m.quality, m.instrument_index) = (0, 0, 0);
    m.update_time_ms -= m.update_time_ms % 1000;
    m.as_bytes().to_vec()
}

/// The oracle: a core with the primary session alone, given the whole market.
fn oracle(market: &Market) -> Vec<Vec<u8>> {
    let rig = Rig::start(&options());
    rig.credentials("primary", PRIMARY_1);
    rig.await_logged_in("primary", INSTRUMENTS.len());
    let front = rig.front("primary");
    for chunk in market.ticks.chunks(1000) {
        front.push(chunk.as_flattened()).unwrap();
        front.sync(WATCHDOG).unwrap();
    }
    let n = market.ticks.len() as u64;
    let reader = rig.reader();
    rig.wait("the oracle's ticks", || (reader.counter(Counter::TicksReceived) >= n).then_some(()));
    assert_eq!(reader.counter(Counter::TicksPublished), n, "the oracle published every tick");
    let mut ticks: Vec<Vec<u8>> = read_ring(&rig.segment, n).iter().map(exchange_part).collect();
    ticks.sort();
    ticks
}

/// Every market tick of the oracle is in the ring once, and nothing else is.
fn assert_exactly_once(what: &str, ring: &[TickRecord], oracle: &[Vec<u8>]) {
    let mut got: Vec<Vec<u8>> = ring.iter().map(exchange_part).collect();
    got.sort();
    let twice = got.windows(2).filter(|w| w[0] == w[1]).count();
    assert_eq!(twice, 0, "{what}: {twice} market ticks are in the ring more than once");
    let missing = oracle.iter().filter(|t| got.binary_search(t).is_err()).count();
    assert_eq!(missing, 0, "{what}: {missing} of the market's {} ticks are not in the ring", oracle.len());
    assert_eq!(got, oracle, "{what}: the ring holds ticks the market did not make");
}

/// Waits for `session` active in the header, with `state`.
fn await_active(rig: &Rig, session: Source, state: LinkState) -> Option<()> {
    let s = rig.status();
    (s.active_source == session as u32 && LinkState::from_code(s.link_state) == Some(state)).then_some(())
}

/// None of the passwords (nor a distinctive fragment) in `bytes`.
fn assert_no_password(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    for secret in [PRIMARY_1, PRIMARY_2, BACKUP, "Pw-ctps", "primary-one", "primary-two", "backup-fish"] {
        assert!(!text.contains(secret), "{what} contains the secret {secret:?}");
    }
}

/// Waits until the hot thread has taken everything the stand-ins handed over: both fronts synced
/// (every callback has run, so every struct is in a hand-off or counted as dropped there), then
/// received + standby + dropped equals what the two stand-ins delivered.
fn await_taken(rig: &Rig, delivered: u64) {
    rig.wait("every delivered struct taken by the hot thread", || {
        let taken = rig.counter(Counter::TicksReceived)
            + rig.counter(Counter::StandbyTicks)
            + rig.counter(Counter::HandoffFull);
        assert!(taken <= delivered, "the core took {taken} structs, the stand-ins delivered {delivered}");
        (taken == delivered).then_some(())
    });
}

/// Failover on a disconnect, on refused logins (the primary stays failed over while its logins are
/// refused) and on a heartbeat warning past the threshold (one under it switches nothing), each
/// followed by the automatic failback; every tick once, against the oracle; the header shows
/// `failed_over` while on the backup; each switch audited, in order; no password anywhere.
#[test]
fn failover_and_failback_between_two_standin_sessions_deliver_every_tick_once() {
    let _serial = serial();
    let mut market = Market::new(30_000, 0);
    let oracle = oracle(&market);

    let mut rig = Rig::start(&options());
    let (primary, backup) = (rig.front("primary"), rig.front("backup"));
    rig.credentials("primary", PRIMARY_1);
    rig.credentials("backup", BACKUP);
    rig.await_logged_in("primary", INSTRUMENTS.len());
    rig.await_logged_in("backup", INSTRUMENTS.len());
    rig.wait("the primary active", || await_active(&rig, Source::Primary, LinkState::LoggedIn));
    market.flow(&rig, 3_000, true);

    // 1. The primary's front drops the connection (0x1001) and holds the reconnection: the
    // backup takes over; the market goes on on the backup alone.
    primary.script(|s| s.hold_connections = true);
    primary.disconnect(0x1001).unwrap();
    rig.wait("failover on a disconnect", || await_active(&rig, Source::Backup, LinkState::FailedOver));
    market.flow(&rig, 2_000, false);
    // The front answers again: reconnect, login and subscription with no operator action; the
    // failback comes once the primary has been logged in for failback_after_ms.
    primary.script(|s| s.hold_connections = false);
    rig.await_logged_in("primary", INSTRUMENTS.len());
    market.flow_until(&rig, "failback after the reconnection", || {
        await_active(&rig, Source::Primary, LinkState::LoggedIn)
    });
    market.flow(&rig, 2_000, true);

    // 2. Dropped again (0x2003), and the primary's logins are refused on reconnection: the backup
    // stays active through the refusals, each decoded and counted; failback once one is accepted.
    primary.script(|s| {
        s.hold_connections = true;
        s.refuse_logins = true;
    });
    primary.disconnect(0x2003).unwrap();
    rig.wait("failover on a second disconnect", || await_active(&rig, Source::Backup, LinkState::FailedOver));
    market.flow(&rig, 2_000, false);
    primary.script(|s| s.hold_connections = false);
    let refused = market.flow_until(&rig, "two refused logins of the primary", || {
        let s = rig.sessions();
        (s["sessions"]["primary"]["login_failures"].as_u64() >= Some(2)).then_some(s)
    });
    assert_eq!(refused["active"], "backup", "a refused login of the primary ended the failover: {refused}");
    let error = refused["sessions"]["primary"]["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("ErrorID 3") && error.contains("不合法的登录"), "the refusal, decoded: {error}");
    primary.script(|s| s.refuse_logins = false);
    rig.await_logged_in("primary", INSTRUMENTS.len());
    market.flow_until(&rig, "failback after the refused logins", || {
        await_active(&rig, Source::Primary, LinkState::LoggedIn)
    });
    market.flow(&rig, 2_000, true);

    // 3. Heartbeat warnings: 3 s is under the threshold (10 s) and switches nothing; 12 s fails
    // over while both sessions stay connected, and the failback follows.
    primary.heartbeat_warning(3).unwrap();
    primary.sync(WATCHDOG).unwrap();
    let warned = rig.wait("the 3 s warning recorded", || {
        let s = rig.sessions();
        s["sessions"]["primary"]["last_error"].as_str().is_some_and(|e| e.contains("no data for 3 s")).then_some(s)
    });
    assert_eq!((warned["active"].as_str(), warned["failovers"].as_u64()), (Some("primary"), Some(4)), "{warned}");
    market.flow(&rig, 1_000, true);
    primary.heartbeat_warning(12).unwrap();
    market.flow_until(&rig, "failover on a 12 s heartbeat warning", || {
        await_active(&rig, Source::Backup, LinkState::FailedOver)
    });
    market.flow_until(&rig, "failback after the warning", || await_active(&rig, Source::Primary, LinkState::LoggedIn));
    market.rest(&rig);

    // Everything the stand-ins delivered is taken (the API objects outlive reconnections, so their
    // counts cover the whole run); then the ring holds the market, once.
    let delivered = primary.sync(WATCHDOG).unwrap().delivered + backup.sync(WATCHDOG).unwrap().delivered;
    await_taken(&rig, delivered);
    let n = oracle.len() as u64;
    let reader = rig.reader();
    assert_eq!(reader.counter(Counter::HandoffFull), 0, "hand-off drops would lose ticks");
    assert_eq!(reader.write_cursor(), n, "the ring holds {} ticks, the market made {n}", reader.write_cursor());
    let ring = read_ring(&rig.segment, n);
    assert_exactly_once("two sessions", &ring, &oracle);
    let runs = source_runs(&ring);
    eprintln!("{} runs of one source; duplicates dropped {}", runs.len(), reader.counter(Counter::Duplicates));
    assert!(runs.len() >= 7, "three failovers and failbacks should show as runs: {runs:?}");
    assert!(reader.counter(Counter::Duplicates) > 0, "no duplicate was dropped: no overlap was exercised");
    assert!(reader.counter(Counter::StandbyTicks) > 0, "the standby's copies were not dropped as standby");

    // Counts, reasons and the audit trail.
    let sessions = rig.sessions();
    let p = &sessions["sessions"]["primary"];
    assert_eq!((p["disconnects"].as_u64(), p["login_failures"].as_u64()), (Some(2), Some(2)), "{sessions}");
    assert_eq!(p["disconnect_reasons"]["0x1001 network read failed"], 1, "{sessions}");
    assert_eq!(p["disconnect_reasons"]["0x2003 received a bad message"], 1, "{sessions}");
    assert_eq!(sessions["sessions"]["backup"]["disconnects"], 0, "{sessions}");
    assert_eq!(reader.counter(Counter::FrontDisconnects), 2);
    assert_eq!(reader.counter(Counter::Failovers), 6);
    let auto = |c: &str| (c.to_string(), "auto".to_string());
    let mut want = vec![("activate".to_string(), "start".to_string())];
    for _ in 0..3 {
        want.extend([auto("failover"), auto("failback")]);
    }
    assert_eq!(switches(&rig.audit_log()), want, "the switches in the audit log, in order");
    assert_audit_verifies(&rig.audit_log());
    assert_no_password("the core's log", rig.log().as_bytes());
    assert_no_password("the audit log", &fs::read(rig.audit_log()).unwrap());
    assert_no_password("the segment", &fs::read(&rig.segment).unwrap());
    rig.ctl("shutdown");
    rig.assert_clean_exit();
}

/// qilin-secrets, watching a secret file and handing credentials to the core.
struct Secrets {
    child: Child,
}

impl Secrets {
    fn start(rig: &Rig, source: &Path) -> Secrets {
        let dir = rig.dir.path();
        let child = Command::new(workspace_bin("qilin-secrets"))
            .args(["--profile", "live", "--watch", "--watch-interval-ms", "50", "--health-within-ms", "20000"])
            .arg("--source")
            .arg(source)
            .arg("--audit-log")
            .arg(rig.audit_log())
            .arg("--core-socket")
            .arg(rig.socket())
            .arg("--segment")
            .arg(&rig.segment)
            .env("RUST_LOG", "trace")
            .env_remove("QILIN_AUDIT_LOG")
            .stdout(Stdio::from(fs::File::create(dir.join("secrets.out")).unwrap()))
            .stderr(Stdio::from(fs::File::create(dir.join("secrets.log")).unwrap()))
            .spawn()
            .expect("starting qilin-secrets");
        Secrets { child }
    }
}

impl Drop for Secrets {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The secret file, as a vault agent writes it: a new 0600 file renamed over the old one.
fn write_secrets(rig: &Rig, path: &Path, primary_password: &str) {
    let text = format!(
        "CTP_PRIMARY_BROKER_ID=9999\nCTP_PRIMARY_USER_ID=prim01\nCTP_PRIMARY_PASSWORD={primary_password}\n\
         CTP_PRIMARY_MD_FRONTS={}\nCTP_BACKUP_BROKER_ID=9999\nCTP_BACKUP_USER_ID=back01\n\
         CTP_BACKUP_PASSWORD={BACKUP}\nCTP_BACKUP_MD_FRONTS={}\n",
        rig.front("primary").url(),
        rig.front("backup").url()
    );
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text).unwrap();
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600)).unwrap();
    fs::rename(&tmp, path).unwrap();
}

/// The rotation runbook on two stand-in sessions while the market flows: the primary's password
/// changes at its front and in the secret file; qilin-secrets validates, fails over, re-logs the
/// primary in with the new password, fails back and verifies health; every tick once against the
/// oracle; steps and switches audited in order. Then the core is SIGKILLed and restarted:
/// qilin-secrets hands both sessions their (rotated) credentials again and ticks flow from the
/// primary. No password in any output, argv or environment.
#[test]
fn rotation_and_a_killed_core_resume_both_sessions_through_qilin_secrets() {
    let _serial = serial();
    let mut market = Market::new(40_000, 1_000);
    let oracle = oracle(&market);

    let mut rig = Rig::start(&options());
    let (primary, backup) = (rig.front("primary"), rig.front("backup"));
    primary.script(|s| s.password = Some(PRIMARY_1.into()));
    backup.script(|s| s.password = Some(BACKUP.into()));
    let source = rig.dir.path().join("secrets.env");
    write_secrets(&rig, &source, PRIMARY_1);
    let secrets = Secrets::start(&rig, &source);
    rig.await_logged_in("primary", INSTRUMENTS.len());
    rig.await_logged_in("backup", INSTRUMENTS.len());
    rig.wait("the primary active", || await_active(&rig, Source::Primary, LinkState::LoggedIn));
    market.flow(&rig, 3_000, true);

    // The broker changes the primary's password (the session logged in stays), then the vault
    // writes the new one; the runbook runs while the market flows.
    primary.script(|s| s.password = Some(PRIMARY_2.into()));
    write_secrets(&rig, &source, PRIMARY_2);
    let audit = rig.audit_log();
    let done = market.flow_until(&rig, "the rotation to finish", || {
        audit_entries(&audit).into_iter().find(|e| e["actions"][0]["step"] == "done")
    });
    assert_eq!(done["actions"][0]["outcome"], "rotated", "{done}");
    // The failback's overlap has ended once a backup copy is dropped as a standby tick again (during
    // the overlap copies are taken or dropped as duplicates); from then on only the primary's ticks
    // are published.
    let standby = rig.counter(Counter::StandbyTicks);
    market.flow_until(&rig, "the end of the failback's overlap", || {
        (rig.counter(Counter::StandbyTicks) > standby).then_some(())
    });
    let primary_from = rig.reader().write_cursor();
    market.rest(&rig);

    let last_login = primary.seen().logins.last().cloned().expect("the primary's relogin");
    assert!(last_login.password_ok && last_login.accepted, "the relogin carried the new password: {last_login:?}");
    assert_eq!(primary.seen().logins.len(), 2, "one login with each password");
    let sessions = rig.sessions();
    assert_eq!(sessions["sessions"]["primary"]["credentials_version"], 2, "{sessions}");
    assert_eq!(sessions["sessions"]["backup"]["credentials_version"], 1, "{sessions}");

    // Drained: a relogin makes a new API object (its counts start again), so wait instead for two
    // housekeeping rounds of the hot thread with no struct taken between them, after both fronts
    // have run every callback.
    primary.sync(WATCHDOG).unwrap();
    backup.sync(WATCHDOG).unwrap();
    await_drained(&rig.reader());
    let n = oracle.len() as u64;
    let reader = rig.reader();
    assert_eq!(reader.write_cursor(), n, "the ring holds {} ticks, the market made {n}", reader.write_cursor());
    let ring = read_ring(&rig.segment, n);
    assert_exactly_once("rotation", &ring, &oracle);
    let runs = source_runs(&ring);
    eprintln!("rotation: {} runs of one source", runs.len());
    assert!(runs.iter().any(|r| r.0 == Source::Backup), "no tick came from the backup during the rotation: {runs:?}");
    let after_overlap = &ring[primary_from as usize..];
    assert!(
        after_overlap.iter().all(|t| t.source == Source::Primary as u8) && after_overlap.len() >= 1_000,
        "the feed did not fail back: {} ticks after the overlap, runs {:?}",
        after_overlap.len(),
        source_runs(after_overlap)
    );

    let steps: Vec<String> = audit_entries(&audit)
        .iter()
        .filter(|e| e["program"] == "qilin-secrets")
        .filter_map(|e| e["actions"][0]["step"].as_str().map(String::from))
        .collect();
    assert_eq!(
        steps,
        ["validate", "failover", "hand over primary", "relogin primary", "failback", "verify health", "done"],
        "the runbook's steps in the audit log, in order"
    );
    let command = |c: &str| (c.to_string(), "command".to_string());
    assert_eq!(switches(&audit), [("activate".into(), "start".into()), command("failover"), command("failback")]);

    // SIGKILL and restart: qilin-secrets sees the new core and hands both sessions over again.
    let before = [primary.seen().logins.len(), backup.seen().logins.len()];
    rig.kill_and_restart();
    let pid = rig.child.id();
    let (primary, backup) = (rig.front("primary"), rig.front("backup"));
    for (i, front) in [primary, backup].into_iter().enumerate() {
        let seen = front
            .wait("a login from the restarted core", WATCHDOG, |s| {
                s.pid == pid && s.logged_in && s.subscribed.len() == INSTRUMENTS.len()
            })
            .unwrap();
        assert_eq!(seen.logins.len(), before[i] + 1, "one new login");
        assert!(seen.logins.last().unwrap().password_ok, "the restarted core logged in with the rotated password");
    }
    rig.await_logged_in("primary", INSTRUMENTS.len());
    rig.await_logged_in("backup", INSTRUMENTS.len());
    rig.wait("the primary active after the restart", || await_active(&rig, Source::Primary, LinkState::LoggedIn));
    // The primary's front alone carries the market's continuation: every tick of it in the ring.
    let restarted = rig.reader();
    let (from, more) = (restarted.write_cursor(), market.after.len() as u64);
    for burst in market.after.chunks(10) {
        primary.push(burst.as_flattened()).unwrap();
    }
    primary.sync(WATCHDOG).unwrap();
    rig.wait("the restarted core publishing the primary's ticks", || {
        (restarted.write_cursor() >= from + more).then_some(())
    });
    let mut after = Reader::open(&rig.segment).unwrap();
    after.seek(Start::Sequence(from + 1));
    let mut t = TickRecord::ZERO;
    for _ in 0..more {
        assert_eq!(after.try_next(&mut t), Next::Tick);
        assert_eq!(Source::from_code(t.source), Some(Source::Primary));
    }
    let hand_overs = audit_entries(&audit)
        .iter()
        .filter(|e| e["program"] == "qilin-secrets" && e["command"] == "secrets handoff" && e["exit_code"] == 0)
        .count();
    assert!(hand_overs >= 2, "qilin-secrets audited its hand-over to the restarted core: {hand_overs} hand-overs");

    // No password anywhere.
    let dir = rig.dir.path();
    for name in ["cmdline", "environ"] {
        assert_no_password(&format!("qilin-core's /proc {name}"), &fs::read(format!("/proc/{pid}/{name}")).unwrap());
        let own = fs::read(format!("/proc/{}/{name}", secrets.child.id())).unwrap_or_default();
        assert_no_password(&format!("qilin-secrets' /proc {name}"), &own);
    }
    assert_no_password("the core's log", rig.log().as_bytes());
    assert_no_password("qilin-secrets' log (RUST_LOG=trace)", &fs::read(dir.join("secrets.log")).unwrap());
    assert_no_password("qilin-secrets' stdout", &fs::read(dir.join("secrets.out")).unwrap());
    assert_no_password("the audit log", &fs::read(&audit).unwrap());
    assert_no_password("the segment", &fs::read(&rig.segment).unwrap());
    assert_audit_verifies(&audit);
    drop(secrets);
    rig.ctl("shutdown");
    rig.assert_clean_exit();
}
