//! `qilin-core` as a real process: the UDP source end to end (hand-built 584-, 568- and 408-byte
//! structs in, every field read back through the reader API, rejects counted by reason), and a
//! SIGKILL followed by a restart on the same segment (new epoch, sequences continue, no tick twice).

mod common;

use common::{WATCHDOG, unique, wait_for};

use std::{
    net::UdpSocket,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use qilin_core::ctp::RawFields;
use qilin_shm::{Counter, Exchange, Liveness, Next, Reader, RunState, Source, Start, TickRecord, quality};

/// A running `qilin-core`, killed (SIGKILL) and its files removed on drop.
struct Core {
    child: Child,
    segment: PathBuf,
    socket: PathBuf,
}

impl Core {
    fn start(segment: &Path, socket: &Path, args: &[&str]) -> Core {
        let child = Command::new(env!("CARGO_BIN_EXE_qilin-core"))
            .arg("--segment")
            .arg(segment)
            .arg("--control-socket")
            .arg(socket)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting qilin-core");
        let core = Core { child, segment: segment.to_owned(), socket: socket.to_owned() };
        core.wait_running();
        core
    }

    /// Waits until the segment exists and this process is running in it.
    fn wait_running(&self) {
        let deadline = Instant::now() + WATCHDOG;
        loop {
            if let Ok(reader) = Reader::open(&self.segment)
                && reader.writer_pid() == u64::from(self.child.id())
                && reader.run_state() == Some(RunState::Running)
            {
                return;
            }
            assert!(Instant::now() < deadline, "qilin-core did not start within {WATCHDOG:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A valid tick; each test sets what it is about.
fn fields(instrument: &str, exchange: &str, trading_day: &str, action_day: &str, time: &str, ms: i32) -> RawFields {
    let mut f = RawFields {
        instrument_id: instrument.into(),
        exchange_id: exchange.into(),
        trading_day: trading_day.into(),
        action_day: action_day.into(),
        update_time: time.into(),
        update_millisec: ms,
        last_price: 3100.0,
        pre_settlement_price: 3090.0,
        pre_close_price: 3095.0,
        pre_open_interest: 1000.0,
        open_price: 3092.0,
        highest_price: 3105.0,
        lowest_price: 3088.0,
        volume: 100,
        turnover: 3100.0 * 10.0 * 100.0,
        open_interest: 1010.0,
        close_price: f64::MAX,
        settlement_price: f64::MAX,
        upper_limit_price: 3400.0,
        lower_limit_price: 2780.0,
        pre_delta: 0.0,
        curr_delta: f64::MAX,
        average_price: 31000.0,
        banding_upper_price: 3300.0,
        banding_lower_price: 2900.0,
        ..RawFields::default()
    };
    for level in 0..5 {
        f.bid_price[level] = 3099.0 - level as f64;
        f.ask_price[level] = 3100.0 + level as f64;
        f.bid_volume[level] = 10 + level as i32;
        f.ask_volume[level] = 20 + level as i32;
    }
    f
}

fn read_ticks(reader: &mut Reader, n: usize) -> Vec<TickRecord> {
    let mut ticks = Vec::new();
    let mut out = TickRecord::ZERO;
    wait_for("ticks in the segment", || {
        loop {
            match reader.try_next(&mut out) {
                Next::Tick => ticks.push(out),
                Next::Gap { first, last } => panic!("unexpected gap {first}..={last}"),
                Next::NewEpoch { .. } => {}
                Next::Empty => break,
            }
        }
        (ticks.len() >= n).then_some(())
    });
    ticks
}

#[test]
fn udp_structs_of_every_version_are_normalized_and_bad_ones_counted() {
    let segment = PathBuf::from(format!("/dev/shm/{}", unique("udp")));
    let socket = std::env::temp_dir().join(format!("{}.sock", unique("udp")));
    let port = free_udp_port();
    let bind = format!("127.0.0.1:{port}");
    let core = Core::start(&segment, &socket, &["--source", "udp", "--udp-bind", &bind]);
    let mut reader = Reader::open(&segment).unwrap();
    reader.seek(Start::Oldest);
    let send = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = |bytes: &[u8]| {
        send.send_to(bytes, &bind).unwrap();
    };

    // 1. SHFE night tick, Friday 2026-02-27 21:30:00.500, trading day Monday 2026-03-02; 6.7.x.
    let mut shfe = fields("rb2605", "SHFE", "20260302", "20260227", "21:30:00", 500);
    shfe.bid_price[4] = f64::MAX; // an empty fifth level
    to(&shfe.to_v67_bytes());
    // 2. DCE Friday night 22:15:30.123: DCE puts the trading day (Monday) in both fields; 6.5.x.
    let dce = fields("m2605", "DCE", "20260302", "20260302", "22:15:30", 123);
    to(&dce.to_v65_bytes());
    // 3 and 4. CZCE day ticks with the same second and UpdateMillisec 0; 6.3.x.
    let mut czce = fields("SR605", "CZCE", "20260302", "20260302", "10:00:01", 0);
    czce.average_price = 3100.0; // CZCE sends it per unit already
    to(&czce.to_v63_bytes());
    czce.volume = 101;
    to(&czce.to_v63_bytes());
    // Malformed: wrong sizes, id without NUL, unknown exchange, NaN price, unparseable time.
    to(&shfe.to_v67_bytes()[..583]);
    to(&[1, 2, 3]);
    let mut no_nul = shfe.to_v67_bytes();
    no_nul[401..482].fill(b'X');
    to(&no_nul);
    to(&fields("rb2605", "NYMEX", "20260302", "20260227", "21:30:01", 0).to_v67_bytes());
    let mut nan = fields("rb2605", "SHFE", "20260302", "20260227", "21:30:02", 0);
    nan.last_price = f64::NAN;
    to(&nan.to_v67_bytes());
    to(&fields("rb2605", "SHFE", "20260302", "20260227", "25:61:00", 0).to_v67_bytes());

    let ticks = read_ticks(&mut reader, 4);
    let ids: Vec<_> = ticks.iter().map(|t| t.instrument_id_str().unwrap().to_string()).collect();
    assert_eq!(ids, ["rb2605", "m2605", "SR605", "SR605"]);
    let seqs: Vec<_> = ticks.iter().map(|t| t.sequence).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);

    let rb = &ticks[0];
    assert_eq!(rb.exchange, Exchange::Shfe as u8);
    assert_eq!(rb.source, Source::Udp as u8);
    assert_eq!((rb.trading_day, rb.action_day), (20260302, 20260227));
    assert_eq!(rb.update_time_ms, (21 * 3600 + 30 * 60) * 1000 + 500);
    assert_eq!(rb.exchange_time_ns, 1_772_199_000_500_000_000, "2026-02-27T13:30:00.500Z");
    assert_eq!(rb.last_price, 3100.0);
    assert_eq!(rb.pre_settlement_price, 3090.0);
    assert_eq!(rb.pre_close_price, 3095.0);
    assert_eq!(rb.pre_open_interest, 1000.0);
    assert_eq!((rb.open_price, rb.highest_price, rb.lowest_price), (3092.0, 3105.0, 3088.0));
    assert_eq!((rb.volume, rb.turnover, rb.open_interest), (100, 3_100_000.0, 1010.0));
    assert!(rb.close_price.is_nan() && rb.settlement_price.is_nan() && rb.curr_delta.is_nan(), "DBL_MAX → NaN");
    assert_eq!((rb.upper_limit_price, rb.lower_limit_price, rb.pre_delta), (3400.0, 2780.0, 0.0));
    assert_eq!(rb.average_price, 3100.0, "per lot 31000 / multiplier 10");
    assert_eq!((rb.banding_upper_price, rb.banding_lower_price), (3300.0, 2900.0));
    assert_eq!(rb.bid_price[..4], [3099.0, 3098.0, 3097.0, 3096.0]);
    assert!(rb.bid_price[4].is_nan());
    assert_eq!(rb.ask_price, [3100.0, 3101.0, 3102.0, 3103.0, 3104.0]);
    assert_eq!(rb.bid_volume, [10, 11, 12, 13, 14]);
    assert_eq!(rb.ask_volume, [20, 21, 22, 23, 24]);
    // ClosePrice, SettlementPrice, CurrDelta absent: by design, no flag. BidPrice5 absent with
    // BidVolume5 14: a price that should be there, ABSENT_PRICE.
    assert_eq!(rb.quality, quality::ABSENT_PRICE);
    assert!(rb.receive_ns > 0 && rb.publish_ns >= rb.receive_ns);

    let m = &ticks[1];
    assert_eq!(m.exchange, Exchange::Dce as u8);
    assert_eq!((m.trading_day, m.action_day), (20260302, 20260227), "Friday night: calendar day derived");
    assert_eq!(m.exchange_time_ns, 1_772_201_730_123_000_000, "2026-02-27T14:15:30.123Z");
    assert_ne!(m.quality & quality::DERIVED_ACTION_DAY, 0);
    assert!(m.banding_upper_price.is_nan(), "6.5.x has no banding prices");

    let (sr1, sr2) = (&ticks[2], &ticks[3]);
    assert_eq!(sr1.exchange, Exchange::Czce as u8);
    assert_eq!(sr1.exchange_time_ns, 1_772_416_801_000_000_000, "2026-03-02T02:00:01Z");
    assert_eq!(sr2.exchange_time_ns, sr1.exchange_time_ns + 1_000_000, "repeated second gets +1 ms");
    assert_ne!(sr2.quality & quality::REPEATED_SECOND, 0);
    assert_eq!(sr1.quality & quality::REPEATED_SECOND, 0);
    assert_eq!(sr1.average_price, 3100.0, "CZCE average price is per unit already");
    assert!(sr1.banding_upper_price.is_nan(), "6.3.x has no banding prices");

    // Rejects are counted by reason (flushed to the header within a heartbeat).
    let expected = [
        (Counter::RejectSize, 2),
        (Counter::RejectId, 1),
        (Counter::RejectExchange, 1),
        (Counter::RejectPrice, 1),
        (Counter::RejectTime, 1),
        (Counter::TicksPublished, 4),
        (Counter::UdpDatagrams, 10),
        (Counter::FlagRepeatedSecond, 1),
    ];
    wait_for("reject counters", || expected.iter().all(|(c, n)| reader.counter(*c) == *n).then_some(()));
    let mut out = TickRecord::ZERO;
    assert_eq!(reader.try_next(&mut out), Next::Empty, "no rejected record reached the ring");
    drop(core);
    qilin_testkit::remove_segment(&segment);
}

#[test]
fn sigkill_and_restart_on_the_same_segment_continues_the_sequence() {
    let segment = PathBuf::from(format!("/dev/shm/{}", unique("restart")));
    let socket = std::env::temp_dir().join(format!("{}.sock", unique("restart")));
    let args = ["--source", "sim", "--sim-rate", "20000"];
    let mut first = Core::start(&segment, &socket, &args);
    let mut reader = Reader::open(&segment).unwrap();
    reader.seek(Start::Oldest);
    let epoch = reader.current_epoch();

    // Read along while the first core runs, then kill it mid-stream.
    let mut seen = Vec::new();
    let mut out = TickRecord::ZERO;
    wait_for("the first core's ticks", || {
        while reader.try_next(&mut out) == Next::Tick {
            seen.push(out.sequence);
        }
        (seen.len() >= 2000).then_some(())
    });
    first.kill();
    let killed_at = reader.write_cursor();
    assert!(matches!(reader.liveness(qilin_shm::now_ns() + 2_000_000_000, 1_000_000_000), Liveness::Stale { .. }));
    assert_eq!(reader.run_state(), Some(RunState::Running), "SIGKILL leaves no clean stop");

    let second = Core::start(&segment, &socket, &args);
    assert_eq!(reader.current_epoch(), epoch + 1);
    let mut new_epoch = false;
    wait_for("the second core's ticks", || {
        loop {
            match reader.try_next(&mut out) {
                Next::Tick => seen.push(out.sequence),
                Next::NewEpoch { previous, current } => {
                    assert_eq!((previous, current), (epoch, epoch + 1));
                    assert!(!new_epoch, "a restart is reported once");
                    new_epoch = true;
                }
                Next::Gap { first, last } => panic!("reader kept up, yet lost {first}..={last}"),
                Next::Empty => break,
            }
        }
        (seen.last().is_some_and(|s| *s > killed_at + 2000)).then_some(())
    });
    assert!(new_epoch, "the restart was reported once as a new epoch");
    assert_eq!(seen[0], 1);
    for pair in seen.windows(2) {
        assert_eq!(pair[1], pair[0] + 1, "sequences continue across the restart with no tick twice");
    }
    drop(second);
    qilin_testkit::remove_segment(&segment);
}

#[test]
fn refused_commands_are_counted_in_the_header() {
    use std::io::{BufRead, BufReader, Write};
    let segment = PathBuf::from(format!("/dev/shm/{}", unique("cmdq")));
    let socket = std::env::temp_dir().join(format!("{}.sock", unique("cmdq")));
    let config = std::env::temp_dir().join(format!("{}.toml", unique("cmdq")));
    std::fs::write(&config, "[core]\ncommand_queue_capacity = 1\nheartbeat_interval_ms = 50\n").unwrap();
    let port = free_udp_port();
    let bind = format!("127.0.0.1:{port}");
    let core =
        Core::start(&segment, &socket, &["--config", config.to_str().unwrap(), "--source", "udp", "--udp-bind", &bind]);
    let stream = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let commands: String = "unsubscribe rb2605\n".repeat(200);
    writer.write_all(commands.as_bytes()).unwrap();
    let mut refused = 0u64;
    for line in BufReader::new(stream).lines().take(200) {
        if line.unwrap().contains("command queue full") {
            refused += 1;
        }
    }
    assert!(refused > 0, "200 commands within one 50 ms housekeeping period overflow a queue of 1");
    let reader = Reader::open(&segment).unwrap();
    wait_for("command_queue_full in the header", || {
        (reader.counter(Counter::CommandQueueFull) == refused).then_some(())
    });
    drop(core);
    qilin_testkit::remove_segment(&segment);
    let _ = std::fs::remove_file(&config);
}

/// Two real `qilin-core` processes on one segment: the second stops at start with an error naming
/// the segment and the pid that holds it, and the first goes on publishing untouched. Then a
/// segment whose header was corrupted (magic overwritten) is refused by a new core with an error
/// naming the file, without a panic and without the file being overwritten.
#[test]
fn a_second_core_or_a_corrupt_segment_is_refused_clearly() {
    let segment = PathBuf::from(format!("/dev/shm/{}", unique("twice")));
    let socket = std::env::temp_dir().join(format!("{}.sock", unique("twice")));
    let args = ["--source", "sim", "--sim-rate", "5000"];
    let first = Core::start(&segment, &socket, &args);
    let reader = Reader::open(&segment).unwrap();
    let run = |segment: &Path, socket: &Path| {
        Command::new(env!("CARGO_BIN_EXE_qilin-core"))
            .arg("--segment")
            .arg(segment)
            .arg("--control-socket")
            .arg(socket)
            .args(args)
            .stdout(Stdio::null())
            .output()
            .expect("running qilin-core")
    };
    let other_socket = std::env::temp_dir().join(format!("{}.sock", unique("twice-b")));
    let out = run(&segment, &other_socket);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a second core on the same segment started:\n{stderr}");
    assert!(stderr.contains(&segment.display().to_string()), "the error does not name the segment:\n{stderr}");
    assert!(stderr.contains(&first.child.id().to_string()), "the error does not name the holder's pid:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(reader.writer_pid(), u64::from(first.child.id()), "the refused core took the segment over");
    let before = reader.write_cursor();
    wait_for("the first core to go on publishing", || (reader.write_cursor() > before + 500).then_some(()));
    drop(first);

    // A header whose magic was overwritten: refused, named, left as it was.
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[..8].copy_from_slice(b"GARBAGE!");
    std::fs::write(&segment, &bytes).unwrap();
    let out = run(&segment, &other_socket);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a core started on a corrupt segment:\n{stderr}");
    assert!(
        stderr.contains(&segment.display().to_string()) && stderr.contains("not a qilin segment"),
        "the error does not say what is wrong with which file:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(&std::fs::read(&segment).unwrap()[..8], b"GARBAGE!", "the corrupt segment was overwritten");
    qilin_testkit::remove_segment(&segment);
}

/// `qilin-core --config FILE` with bad values stops at once: a non-zero exit, every problem on
/// stderr with the file and the key, no segment created, no panic.
#[test]
fn a_bad_config_file_stops_the_core_with_every_problem_named() {
    let dir = std::env::temp_dir().join(unique("badcfg"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("core.toml");
    let segment = PathBuf::from(format!("/dev/shm/{}", unique("badcfg")));
    std::fs::write(
        &config,
        format!(
            "[feed]\nsegment_path = {:?}\nring_slots = 1000\n[core]\nheartbeat_interval_ms = 0\n",
            segment.display().to_string()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_qilin-core")).arg("--config").arg(&config).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the core started with a bad config:\n{stderr}");
    for needle in [
        format!("{}: feed.ring_slots", config.display()),
        format!("{}: core.heartbeat_interval_ms", config.display()),
        "2 problem(s)".to_string(),
    ] {
        assert!(stderr.contains(&needle), "stderr lacks {needle:?}:\n{stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!segment.exists(), "a segment was created from a refused config");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A core whose trading calendar has no file for today's year (China time) says so at start and
/// counts the day in `calendar_missing`; with a file for the year the counter stays 0.
#[test]
fn a_calendar_without_todays_year_is_warned_about_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let year = qilin_market::Date::china_of(qilin_shm::now_ns()).year();
    let run = |tag: &str, calendar: &Path| {
        let config = dir.path().join(format!("{tag}.toml"));
        std::fs::write(&config, format!("[core]\ncalendar_dir = {:?}\n", calendar.display().to_string())).unwrap();
        let log = dir.path().join(format!("{tag}.log"));
        let segment = PathBuf::from(format!("/dev/shm/{}", unique(tag)));
        let socket = std::env::temp_dir().join(format!("{}.sock", unique(tag)));
        let child = Command::new(env!("CARGO_BIN_EXE_qilin-core"))
            .args(["--config", config.to_str().unwrap(), "--segment", segment.to_str().unwrap()])
            .arg("--control-socket")
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut core = Core { child, segment: segment.clone(), socket };
        core.wait_running();
        let reader = Reader::open(&segment).unwrap();
        // Two heartbeats after the start: the first housekeeping (which checks the day) is done.
        let first = reader.heartbeat_ns();
        wait_for("two heartbeats", || (reader.heartbeat_ns() > first).then_some(()));
        let missing = reader.counter(Counter::CalendarMissing);
        core.kill();
        qilin_testkit::remove_segment(&segment);
        (missing, std::fs::read_to_string(&log).unwrap())
    };
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let (missing, log) = run("cal-missing", &empty);
    assert_eq!(missing, 1, "{log}");
    assert!(
        log.contains("the trading calendar has no file for these years") && log.contains(&year.to_string()),
        "{log}"
    );

    let covered = dir.path().join("covered");
    std::fs::create_dir(&covered).unwrap();
    std::fs::write(covered.join(format!("{year}.toml")), format!("year = {year}\n")).unwrap();
    let (missing, log) = run("cal-covered", &covered);
    assert_eq!(missing, 0, "{log}");
}

/// The core holds CTP passwords: it is not dumpable (no core file, no ptrace by its own uid). The
/// kernel shows that in /proc: the files of a non-dumpable process belong to root, not to the
/// process's uid. So the core runs here as uid 65534 (`setpriv`, root needed, as CI has) and
/// /proc/<pid>/status must belong to uid 0.
#[test]
fn the_core_is_not_dumpable() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert!(nix::unistd::geteuid().is_root(), "this test runs the core as uid 65534 with setpriv and must run as root");
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let segment = PathBuf::from(format!("/dev/shm/{}", unique("dump")));
    let mut child = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_qilin-core"))
        .args(["--source", "sim", "--sim-rate", "1000", "--segment"])
        .arg(&segment)
        .arg("--control-socket")
        .arg(dir.path().join("core.sock"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("setpriv (util-linux)");
    let pid = u64::from(child.id());
    wait_for("the core running as uid 65534", || {
        Reader::open(&segment).ok().filter(|r| r.writer_pid() == pid && r.run_state() == Some(RunState::Running))
    });
    let owner = std::fs::metadata(format!("/proc/{pid}/status")).map(|m| m.uid());
    let _ = child.kill();
    let _ = child.wait();
    qilin_testkit::remove_segment(&segment);
    assert_eq!(owner.unwrap(), 0, "/proc/<core>/status belongs to the core's uid: the core is dumpable");
}

/// libfaketime (Debian `faketime`, installed by `.ci/run`): the core's CLOCK_REALTIME follows the
/// offset in `file` (re-read at most once a second), its CLOCK_MONOTONIC is left alone, as an
/// administrator's or NTP's step does.
const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

/// A step of the wall clock freezes nothing. The core's CLOCK_REALTIME steps back a day while it
/// runs: the heartbeat follows the new time at once and keeps moving (the hot loop schedules its
/// housekeeping on the monotonic clock; on CLOCK_REALTIME it froze heartbeat, commands and
/// shutdown for the size of the step), and `shutdown` stops it. Stepped a day ahead instead, its
/// heartbeat lies in readers' future: the Rust reader and `qilinctl status` call that stale, not
/// live.
#[test]
fn a_step_of_the_wall_clock_freezes_nothing_and_a_heartbeat_from_the_future_is_stale() {
    assert!(std::path::Path::new(FAKETIME).is_file(), "{FAKETIME} is missing: apt-get install faketime (.ci/run does)");
    let dir = tempfile::tempdir().unwrap();
    let offset = dir.path().join("faketime");
    std::fs::write(&offset, "+0\n").unwrap();
    let segment = PathBuf::from(format!("/dev/shm/{}", unique("clock")));
    let socket = dir.path().join("core.sock");
    struct KillOnDrop(Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_qilin-core"))
            .args(["--source", "sim", "--sim-rate", "1000", "--segment"])
            .arg(&segment)
            .arg("--control-socket")
            .arg(&socket)
            .env("LD_PRELOAD", FAKETIME)
            .env("FAKETIME_TIMESTAMP_FILE", &offset)
            .env("FAKETIME_CACHE_DURATION", "1")
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
            // No shared-memory objects of libfaketime's own left in /dev/shm.
            .env("FAKETIME_DISABLE_SHM", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let pid = u64::from(child.0.id());
    let reader = wait_for("the core running", || {
        Reader::open(&segment).ok().filter(|r| r.writer_pid() == pid && r.run_state() == Some(RunState::Running))
    });
    const DAY: i64 = 86_400_000_000_000;
    let real = qilin_shm::now_ns;

    // A day back: heartbeats of the new time, one after another.
    std::fs::write(&offset, "-1d\n").unwrap();
    let mut seen = wait_for("a heartbeat of the stepped-back clock", || {
        let h = reader.heartbeat_ns();
        (h < real() - DAY / 2).then_some(h)
    });
    for _ in 0..20 {
        seen = wait_for("the heartbeat moving after the step back", || {
            let h = reader.heartbeat_ns();
            (h > seen).then_some(h)
        });
    }
    assert!(matches!(reader.liveness(real(), 1_000_000_000), Liveness::Stale { .. }));

    // A day ahead: the heartbeat is in the future for every reader on the real clock.
    std::fs::write(&offset, "+1d\n").unwrap();
    wait_for("a heartbeat of the stepped-ahead clock", || (reader.heartbeat_ns() > real() + DAY / 2).then_some(()));
    let liveness = reader.liveness(real(), 1_000_000_000);
    assert!(matches!(liveness, Liveness::Stale { age_ns } if age_ns < -DAY / 2), "{liveness:?}");
    let out =
        Command::new(qilin_testkit::workspace_bin("qilinctl")).arg("--segment").arg(&segment).arg("status").output();
    let out = out.unwrap();
    assert_eq!(out.status.code(), Some(3), "qilinctl status on a heartbeat from the future: {out:?}");

    // Commands are still served: shutdown stops it cleanly.
    let mut stream = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    std::io::Write::write_all(&mut stream, b"shutdown\n").unwrap();
    let status = wait_for("the core to stop", || child.0.try_wait().unwrap());
    qilin_testkit::remove_segment(&segment);
    assert!(status.success(), "{status:?}");
}

/// A /dev/shm too small for the segment: the core stops at start with an error naming the segment,
/// its size and what to do, instead of dying of SIGBUS on the hot thread later. (A 1 MiB tmpfs
/// stands in for a full /dev/shm; root needed, as CI has.)
#[test]
fn a_full_dev_shm_stops_the_core_at_start_naming_the_size_needed() {
    let dir = tempfile::tempdir().unwrap();
    let tmpfs = qilin_testkit::Tmpfs::mount(dir.path().join("shm"), "1m");
    let segment = tmpfs.dir.join("qilin");
    let out = Command::new(env!("CARGO_BIN_EXE_qilin-core"))
        .args(["--source", "sim", "--sim-rate", "1000", "--segment"])
        .arg(&segment)
        .arg("--control-socket")
        .arg(dir.path().join("core.sock"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&segment.display().to_string()) && stderr.contains("bytes") && stderr.contains("MiB"),
        "the error names the segment and its size: {stderr}"
    );
    assert!(stderr.contains("No space left on device") || stderr.contains("ENOSPC"), "{stderr}");
}

/// Hostile datagrams on the UDP source. The core takes datagrams only from `source.udp.allow`
/// (here 127.0.0.1 alone): 10 000 structs with forged ids from 127.0.0.2 are dropped and counted
/// (`udp_refused`), nothing else moves. From the allowed sender, 10 000 invalid structs with forged
/// ids (NaN price, impossible time) are rejected by reason, and none takes a place in the
/// instrument directory, which lives as long as the segment: an instrument is admitted only with a
/// tick that normalizes (before the fix each forged id was admitted first, until the directory was
/// full). A valid tick of a new contract is still admitted.
#[test]
fn forged_and_invalid_datagrams_neither_pass_a_refused_sender_nor_fill_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let segment = PathBuf::from(format!("/dev/shm/{}", unique("udpallow")));
    let bind = format!("127.0.0.1:{}", free_udp_port());
    let config = dir.path().join("core.toml");
    std::fs::write(
        &config,
        format!("[source]\nkind = \"udp\"\n\n[source.udp]\nbind = \"{bind}\"\nallow = [\"127.0.0.1/32\"]\n"),
    )
    .unwrap();
    let core = Core::start(&segment, &dir.path().join("core.sock"), &["--config", config.to_str().unwrap()]);
    let reader = Reader::open(&segment).unwrap();
    let directory = reader.directory_len();
    let forged = |i: usize| format!("rb{i:04}");
    // In bursts, each taken in full before the next (no datagram lost to a full socket buffer).
    let send_all = |from: &str, structs: &mut dyn Iterator<Item = Vec<u8>>, counter: Counter| {
        let socket = UdpSocket::bind(format!("{from}:0")).unwrap();
        let mut sent = 0;
        loop {
            let burst: Vec<Vec<u8>> = structs.take(500).collect();
            if burst.is_empty() {
                break;
            }
            for bytes in &burst {
                socket.send_to(bytes, &bind).unwrap();
            }
            sent += burst.len() as u64;
            wait_for("the burst counted", || (reader.counter(counter) >= sent).then_some(()));
        }
        sent
    };

    // A refused sender: forged ids, otherwise valid ticks.
    let mut from_stranger =
        (0..10_000).map(|i| fields(&forged(i), "SHFE", "20260302", "20260227", "21:30:00", 0).to_v67_bytes().to_vec());
    assert_eq!(send_all("127.0.0.2", &mut from_stranger, Counter::UdpRefused), 10_000);
    assert_eq!(reader.counter(Counter::UdpRefused), 10_000);
    assert_eq!(reader.counter(Counter::TicksReceived), 0, "a refused datagram reached the engine");
    assert_eq!(reader.directory_len(), directory);

    // The allowed sender: forged ids on invalid ticks.
    let mut invalid = (0..10_000).map(|i| {
        let mut f = fields(&forged(i), "SHFE", "20260302", "20260227", "21:30:00", 0);
        if i % 2 == 0 {
            f.last_price = f64::NAN;
        } else {
            f.update_time = "25:61:00".into();
        }
        f.to_v67_bytes().to_vec()
    });
    assert_eq!(send_all("127.0.0.1", &mut invalid, Counter::TicksReceived), 10_000);
    assert_eq!((reader.counter(Counter::RejectPrice), reader.counter(Counter::RejectTime)), (5_000, 5_000));
    assert_eq!(reader.counter(Counter::TicksPublished), 0);
    assert_eq!(reader.counter(Counter::DirectoryFull), 0);
    assert_eq!(reader.directory_len(), directory, "invalid ticks took places in the directory");

    // A valid tick of a contract not seen before is admitted and published.
    let mut valid =
        std::iter::once(fields("rb2611", "SHFE", "20260302", "20260227", "21:30:00", 0).to_v67_bytes().to_vec());
    send_all("127.0.0.1", &mut valid, Counter::TicksPublished);
    assert_eq!(reader.directory_len(), directory + 1);
    assert!(reader.find_instrument("rb2611").is_some());
    assert_eq!(reader.counter(Counter::UdpRefused), 10_000);
    drop(core);
    qilin_testkit::remove_segment(&segment);
}
