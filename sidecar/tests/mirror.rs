//! qilin-mirror with real processes: a real nats-server (JetStream), a real qilin-core on the
//! simulator, a real qilin-nats and a real qilin-mirror. The mirror's segment, read with the
//! unchanged Rust reader, holds the feed's sequences once and in order, equal field for field to
//! the feed's; SIGKILLs lose and double nothing; a purged range is exactly a gap; a fresh mirror's
//! last values equal the feed's; bad input is skipped with a gap or refused. Every wait is for a
//! positive signal (a status file position, a write cursor), bounded by the testkit's watchdog.

mod common;

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use common::*;
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use qilin_shm::{Next, Reader, Start, TickRecord};
use zerocopy::IntoBytes;

/// A real qilin-mirror process writing `segment`; its segment and status files removed on drop.
struct MirrorProc {
    child: Option<Child>,
    config: PathBuf,
    log: PathBuf,
    segment: PathBuf,
}

impl MirrorProc {
    fn start(dir: &Path, feed: &str, url: &str, ring_slots: u64, start: &str) -> MirrorProc {
        let segment = PathBuf::from(format!("/dev/shm/{feed}-mirror"));
        let config = dir.join("mirror.toml");
        fs::write(
            &config,
            format!(
                "name = \"mirror\"\nfeed = {feed:?}\nsegment = {:?}\nring_slots = {ring_slots}\n\
                 instrument_capacity = 512\nstart = {start:?}\nstatus_interval_ms = 50\n\
                 [nats]\nurls = [{url:?}]\nreconnect_max_delay_ms = 200\nrequest_timeout_ms = 2000\n",
                segment.display().to_string()
            ),
        )
        .unwrap();
        let mut m = MirrorProc { child: None, config, log: dir.join("mirror.log"), segment };
        m.restart();
        m
    }

    fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_qilin-mirror"))
            .arg("--config")
            .arg(&self.config)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    fn signal(&mut self, signal: Signal) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        kill(Pid::from_raw(child.id() as i32), signal).unwrap();
        child.wait().unwrap()
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        wait_for("qilin-mirror to exit", || child.try_wait().unwrap())
    }

    fn status(&self) -> Option<serde_json::Value> {
        status(&self.segment, "mirror")
    }

    /// Waits for the status file to say `position == n`.
    fn wait_position(&self, n: u64) -> serde_json::Value {
        wait_for(&format!("qilin-mirror to write sequence {n}"), || {
            if let Some(s) = self.status()
                && s["state"] == "failed"
            {
                panic!("the mirror failed: {s}\n{}", self.log());
            }
            self.status().filter(|s| s["position"] == n)
        })
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for MirrorProc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        qilin_testkit::remove_segment(&self.segment);
        let _ = fs::remove_dir_all(qilin_market::status::status_dir(&self.segment));
    }
}

/// One event of a reader, ticks as their records.
#[derive(Debug)]
enum Event {
    Tick(Box<TickRecord>),
    Gap(u64, u64),
    Epoch(u64),
}

/// Everything a reader of `path` reports from sequence 1 to `until`, lap headroom 0 (so a lost
/// range near the oldest sequence does not take readable ticks with it: LAYOUT.md, "Mirrors").
/// Fails on a stall. Adjacent gaps are merged.
fn read_from_1(path: &Path, until: u64) -> Vec<Event> {
    let mut reader = Reader::open(path).unwrap().with_lap_headroom(0);
    reader.seek(Start::Sequence(1));
    let mut out = Vec::new();
    let mut t = TickRecord::ZERO;
    while reader.next_sequence() <= until {
        match reader.try_next(&mut t) {
            Next::Tick => out.push(Event::Tick(Box::new(t))),
            Next::Gap { first, last } => match out.last_mut() {
                Some(Event::Gap(_, l)) if *l + 1 == first => *l = last,
                _ => out.push(Event::Gap(first, last)),
            },
            Next::NewEpoch { current, .. } => out.push(Event::Epoch(current)),
            Next::Empty => panic!("reader of {} stalled at {}", path.display(), reader.next_sequence()),
        }
    }
    assert_eq!(reader.try_next(&mut t), Next::Empty, "nothing after {until}");
    out
}

/// The feed's records 1..=n (its ring holds them all).
fn feed_records(segment: &Path, n: u64) -> Vec<TickRecord> {
    read_from_1(segment, n)
        .into_iter()
        .filter_map(|e| match e {
            Event::Tick(t) => Some(*t),
            Event::Gap(f, l) => panic!("the feed's ring lost {f}..={l}: size the test's ring to hold them"),
            Event::Epoch(_) => None,
        })
        .collect()
}

/// The record as the feed wrote it, but for `instrument_index`: the mirror's directory is its own
/// (src/mirror/apply.rs), so the index names the mirror's entry of the same instrument.
fn without_index(t: &TickRecord) -> TickRecord {
    let mut t = *t;
    t.instrument_index = 0;
    t
}

/// The mirror's ticks are the feed's records for `ticks` (field for field, as bytes: NaN included;
/// the index names the same instrument in the mirror's directory) and its gaps are exactly `gaps`.
fn assert_mirror(
    mirror_segment: &Path,
    mirror: &[Event],
    feed: &[TickRecord],
    ticks: &[std::ops::RangeInclusive<u64>],
    gaps: &[(u64, u64)],
) {
    let directory = Reader::open(mirror_segment).unwrap();
    let mut seen_ticks = Vec::new();
    let mut seen_gaps = Vec::new();
    for e in mirror {
        match e {
            Event::Tick(t) => {
                let f = &feed[(t.sequence - 1) as usize];
                assert_eq!(
                    without_index(t).as_bytes(),
                    without_index(f).as_bytes(),
                    "sequence {} differs from the feed's",
                    t.sequence
                );
                let entry = directory.instrument(t.instrument_index).expect("the index is in the directory");
                assert_eq!(
                    entry.instrument_id, f.instrument_id,
                    "sequence {}: index names another instrument",
                    t.sequence
                );
                seen_ticks.push(t.sequence);
            }
            Event::Gap(f, l) => seen_gaps.push((*f, *l)),
            Event::Epoch(_) => {}
        }
    }
    let want: Vec<u64> = ticks.iter().flat_map(|r| r.clone()).collect();
    assert_eq!(seen_ticks, want, "the mirror holds each of these sequences once, in order");
    assert_eq!(seen_gaps, gaps, "the mirror's gaps");
}

/// Every instrument of the feed that has a last value has the same last value in the mirror,
/// found by its id; the mirror's directory names no instrument the feed does not have.
fn assert_same_book(feed: &Path, mirror: &Path) {
    let (f, m) = (Reader::open(feed).unwrap(), Reader::open(mirror).unwrap());
    let mut ticked = 0;
    for i in 0..f.directory_len() {
        let entry = f.instrument(i).unwrap();
        let id = qilin_shm::layout::id_str(&entry.instrument_id).unwrap();
        let (mut a, mut b) = (TickRecord::ZERO, TickRecord::ZERO);
        if f.latest(i, &mut a) != Ok(true) {
            assert!(m.find_instrument(id).is_none_or(|j| m.latest(j, &mut b) == Ok(false)), "{id}");
            continue;
        }
        ticked += 1;
        let j = m.find_instrument(id).unwrap_or_else(|| panic!("{id} is not in the mirror's directory"));
        assert_eq!(m.instrument(j).unwrap().exchange, entry.exchange, "{id}");
        assert_eq!(m.latest(j, &mut b), Ok(true), "last value of {id}");
        assert_eq!(without_index(&a).as_bytes(), without_index(&b).as_bytes(), "last value of {id}");
        assert_eq!(b.instrument_index, j);
    }
    assert!(ticked > 0);
    assert_eq!(m.directory_len(), ticked, "one entry per instrument that ticked");
}

fn start_feed(dir: &Path, feed: &str, url: &str, ticks: u64, ring: u64, rate: u64) -> (Core, Sidecar) {
    let core = Core::start(dir, feed, ring, rate, ticks);
    let config = sidecar_config(dir, &core.segment, url, "", "");
    let sidecar = Sidecar::start(&config, &dir.join("nats.log"));
    (core, sidecar)
}

fn wait_nats(core: &Core, n: u64) {
    wait_for("qilin-nats to confirm every sequence", || status(&core.segment, "nats").filter(|s| s["position"] == n));
}

#[test]
fn the_mirror_holds_every_sequence_once_equal_to_the_feed_across_sigkills() {
    let dir = tempfile::tempdir().unwrap();
    let feed = unique("mirror-kill");
    let server = NatsServer::start(dir.path());
    const TICKS: u64 = 40_000;
    let (core, _nats) = start_feed(dir.path(), &feed, &server.url(), TICKS, 1 << 16, 10_000);
    let mut mirror = MirrorProc::start(dir.path(), &feed, &server.url(), 1 << 16, "first");
    // Kill the mirror each time it has written more than at the previous kill, while the feed is
    // still publishing: a positive signal, whatever the machine's speed.
    let mut kills = 0;
    let mut at = 0;
    while core.reader().write_cursor() < TICKS * 3 / 4 && kills < 6 {
        let position = wait_for("the mirror to move on", || {
            mirror.status().and_then(|s| s["position"].as_u64()).filter(|p| *p > at + 500)
        });
        let status = mirror.signal(Signal::SIGKILL);
        assert_eq!(status.code(), None, "killed by a signal");
        at = Reader::open(&mirror.segment).unwrap().write_cursor();
        assert!(at >= position, "the segment holds at least what the status said");
        kills += 1;
        mirror.restart();
    }
    assert!(kills >= 2, "only {kills} kills happened mid-stream");
    wait_nats(&core, TICKS);
    let status = mirror.wait_position(TICKS);
    assert_eq!(status["lag_sequences"], 0, "{status}");
    assert_eq!(status["counters"]["lost_sequences"], 0, "{status}");
    assert_eq!(mirror.signal(Signal::SIGTERM).code(), Some(0), "clean stop:\n{}", mirror.log());

    let feed_records = feed_records(&core.segment, TICKS);
    let events = read_from_1(&mirror.segment, TICKS);
    assert_mirror(&mirror.segment, &events, &feed_records, &[1..=TICKS], &[]);
    let (f, m) = (core.reader(), Reader::open(&mirror.segment).unwrap());
    assert_eq!(m.current_epoch(), f.current_epoch(), "the feed's epoch");
    assert_eq!(m.feed_name(), f.feed_name());
    assert_same_book(&core.segment, &mirror.segment);
    println!("{kills} SIGKILLs of the mirror; its segment holds 1..={TICKS} once each, equal to the feed's");
}

#[test]
fn a_fresh_mirror_fills_the_last_values_then_follows_a_feed_restart() {
    let dir = tempfile::tempdir().unwrap();
    let feed = unique("mirror-fill");
    let server = NatsServer::start(dir.path());
    const TICKS: u64 = 3_000;
    let (mut core, _nats) = start_feed(dir.path(), &feed, &server.url(), TICKS, 1 << 14, 20_000);
    wait_nats(&core, TICKS);
    let mirror = MirrorProc::start(dir.path(), &feed, &server.url(), 1 << 14, "last");
    let status = mirror.wait_position(TICKS);
    assert!(status["counters"]["filled"].as_u64().unwrap() > 0, "{status}");
    assert_same_book(&core.segment, &mirror.segment);
    // Before its first sequence the mirror has nothing: a reader from the oldest gets a gap, then
    // nothing, never a stall or a placeholder.
    let events = read_from_1(&mirror.segment, TICKS);
    assert!(matches!(events.as_slice(), [Event::Gap(1, TICKS)]), "{events:?}");

    // The core restarts (a new epoch, sequences continue): the mirror follows both.
    let epoch = core.reader().current_epoch();
    core.kill();
    core.restart();
    assert!(core.reader().current_epoch() > epoch);
    wait_nats(&core, 2 * TICKS);
    let status = mirror.wait_position(2 * TICKS);
    assert_eq!(status["counters"]["epochs"], 1, "{status}");
    let feed_records = feed_records(&core.segment, 2 * TICKS);
    let events = read_from_1(&mirror.segment, 2 * TICKS);
    assert_mirror(&mirror.segment, &events, &feed_records, &[TICKS + 1..=2 * TICKS], &[(1, TICKS)]);
    assert_eq!(Reader::open(&mirror.segment).unwrap().current_epoch(), core.reader().current_epoch());
    assert_same_book(&core.segment, &mirror.segment);
}

#[test]
fn a_range_purged_while_the_mirror_was_down_is_exactly_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let feed = unique("mirror-purge");
    let server = NatsServer::start(dir.path());
    const TICKS: u64 = 4_000;
    let (mut core, _nats) = start_feed(dir.path(), &feed, &server.url(), TICKS, 1 << 14, 20_000);
    wait_nats(&core, TICKS);
    // A stream whose early range is gone: purge everything before sequence 1001.
    let stream = stream_name(&feed);
    let rt = runtime();
    let purge = |keep_from: u64| {
        rt.block_on(async {
            let js = async_nats::jetstream::new(async_nats::connect(server.url()).await.unwrap());
            let s = js.get_stream(&stream).await.unwrap();
            s.purge().sequence(keep_from).await.unwrap();
        })
    };
    purge(1001); // no gap events in this stream: stream sequence = feed sequence
    let mut mirror = MirrorProc::start(dir.path(), &feed, &server.url(), 1 << 14, "first");
    let status = mirror.wait_position(TICKS);
    assert_eq!(
        (status["counters"]["holes"].as_u64(), status["counters"]["lost_sequences"].as_u64()),
        (Some(1), Some(1000))
    );
    // Down while the feed publishes more, and the stream drops a range meanwhile.
    assert_eq!(mirror.signal(Signal::SIGKILL).code(), None);
    core.kill();
    core.restart();
    wait_nats(&core, 2 * TICKS);
    purge(TICKS + 1501);
    mirror.restart();
    let status = mirror.wait_position(2 * TICKS);
    assert_eq!(status["counters"]["holes"], 1, "the restarted mirror's own count: {status}");
    assert_eq!(status["counters"]["lost_sequences"], 1500, "{status}");
    let feed_records = feed_records(&core.segment, 2 * TICKS);
    let events = read_from_1(&mirror.segment, 2 * TICKS);
    assert_mirror(
        &mirror.segment,
        &events,
        &feed_records,
        &[1001..=TICKS, TICKS + 1501..=2 * TICKS],
        &[(1, 1000), (TICKS + 1, TICKS + 1500)],
    );
}

/// Messages published by the test itself, as qilin-nats would (or would not) write them.
struct Forger {
    js: async_nats::jetstream::Context,
    prefix: String,
}

impl Forger {
    async fn new(url: &str, feed: &str) -> Forger {
        let js = async_nats::jetstream::new(async_nats::connect(url).await.unwrap());
        let prefix = format!("qilin.{feed}");
        js.create_stream(async_nats::jetstream::stream::Config {
            name: stream_name(feed),
            subjects: vec![format!("{prefix}.>")],
            ..Default::default()
        })
        .await
        .unwrap();
        Forger { js, prefix }
    }

    async fn send(&self, seq: u64, epoch: u64, layout: Option<&str>, body: Vec<u8>, gap: Option<(u64, u64)>) {
        let mut h = async_nats::HeaderMap::new();
        h.insert("Qilin-Seq", seq.to_string());
        h.insert("Qilin-Epoch", epoch.to_string());
        if let Some(l) = layout {
            h.insert("Qilin-Layout", l);
        }
        let subject = match gap {
            Some((first, last)) => {
                h.insert("Qilin-Gap-First", first.to_string());
                h.insert("Qilin-Gap-Last", last.to_string());
                format!("{}._gap", self.prefix)
            }
            None => format!("{}.SHFE.rb2605", self.prefix),
        };
        self.js.publish_with_headers(subject, h, body.into()).await.unwrap().await.unwrap();
    }

    async fn tick(&self, seq: u64, epoch: u64) {
        let layout = qilin_shm::layout::fingerprint_text(qilin_shm::FINGERPRINT);
        self.send(seq, epoch, Some(&layout), record(seq).as_bytes().to_vec(), None).await;
    }
}

fn record(seq: u64) -> TickRecord {
    let mut t = TickRecord::ZERO;
    t.sequence = seq;
    t.instrument_id = qilin_shm::layout::fixed_id::<32>("rb2605").unwrap();
    t.exchange = qilin_shm::Exchange::Shfe as u8;
    t.last_price = 3000.0 + seq as f64;
    t
}

#[test]
fn bad_input_is_skipped_with_a_gap_or_refused_and_nothing_is_written_out_of_order() {
    let dir = tempfile::tempdir().unwrap();
    let feed = unique("mirror-bad");
    let server = NatsServer::start(dir.path());
    let rt = runtime();
    let forger = rt.block_on(Forger::new(&server.url(), &feed));
    rt.block_on(async {
        forger.tick(1, 2).await;
        forger.tick(2, 2).await;
        let layout = qilin_shm::layout::fingerprint_text(qilin_shm::FINGERPRINT);
        forger.send(3, 2, Some(&layout), vec![0; 100], None).await; // a body that does not decode
        forger.tick(2, 2).await; // a sequence that goes backwards
        forger.tick(4, 1).await; // an epoch below the stream's
        forger.tick(5, 2).await;
        forger.send(8, 2, None, b"{}".to_vec(), Some((6, 8))).await; // a gap event
        forger.tick(9, 3).await; // a new epoch: followed
    });
    let mut mirror = MirrorProc::start(dir.path(), &feed, &server.url(), 64, "first");
    let status = mirror.wait_position(9);
    let c = &status["counters"];
    assert_eq!(
        ["ticks", "undecodable", "backwards", "bad_epoch", "gap_events", "epochs"].map(|k| c[k].as_u64().unwrap()),
        [4, 1, 1, 1, 1, 1],
        "{status}"
    );
    assert_eq!(c["lost_sequences"], 5, "3, 4 and 6..=8: {status}");
    let events = read_from_1(&mirror.segment, 9);
    let seqs: Vec<String> = events
        .iter()
        .map(|e| match e {
            Event::Tick(t) => {
                assert_eq!(t.as_bytes(), record(t.sequence).as_bytes());
                format!("{}", t.sequence)
            }
            Event::Gap(f, l) => format!("{f}-{l}"),
            Event::Epoch(e) => format!("e{e}"),
        })
        .collect();
    assert_eq!(seqs, ["1", "2", "3-4", "5", "6-8", "9"], "the reader attached after the epoch change");
    assert_eq!(Reader::open(&mirror.segment).unwrap().current_epoch(), 3);
    let log = mirror.log();
    for what in ["Undecodable", "Backwards", "BadEpoch"] {
        assert!(log.contains(what), "{what} logged:\n{log}");
    }

    // A stream of another layout: refused with the reason, exit code 3, nothing written.
    rt.block_on(forger.send(10, 3, Some("0x0123456789abcdef"), record(10).as_bytes().to_vec(), None));
    let exit = mirror.wait_exit();
    assert_eq!(exit.code(), Some(3), "{}", mirror.log());
    assert!(mirror.log().contains("0x0123456789abcdef"), "{}", mirror.log());
    assert_eq!(mirror.status().unwrap()["state"], "failed");
    assert_eq!(Reader::open(&mirror.segment).unwrap().write_cursor(), 9, "nothing written");
}

#[test]
fn the_streams_gap_events_are_exactly_the_mirrors_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let feed = unique("mirror-gaps");
    let mut server = NatsServer::start(dir.path());
    const TICKS: u64 = 30_000;
    const RING: u64 = 4096;
    let (core, _nats) = start_feed(dir.path(), &feed, &server.url(), TICKS, RING, 10_000);
    // qilin-nats lapped while NATS is down (as nats_jetstream.rs's lapped test): the core is frozen
    // until NATS is down, so the lap that follows has its ticks still to come.
    let down_at = while_core_frozen_at(&core, 2000, || {
        wait_for("some ticks confirmed", || {
            status(&core.segment, "nats").filter(|s| s["position"].as_u64() > Some(1000))
        });
        server.stop(Signal::SIGKILL);
        core.reader().write_cursor()
    });
    wait_for("the core to lap qilin-nats", || (core.reader().write_cursor() > down_at + 3 * RING).then_some(()));
    server.restart();
    wait_nats(&core, TICKS);
    let stored = runtime().block_on(stream_contents(&server.url(), &stream_name(&feed)));
    let stream_gaps = merged(assert_exactly_once(&stored, TICKS));
    assert!(!stream_gaps.is_empty(), "the lap left gap events in the stream");

    let mirror = MirrorProc::start(dir.path(), &feed, &server.url(), 1 << 16, "first");
    let status = mirror.wait_position(TICKS);
    let events = read_from_1(&mirror.segment, TICKS);
    let mirror_gaps: Vec<(u64, u64)> =
        events.iter().filter_map(|e| if let Event::Gap(f, l) = e { Some((*f, *l)) } else { None }).collect();
    assert_eq!(mirror_gaps, stream_gaps, "the mirror's gaps are the stream's gap events, exactly");
    let ticks: Vec<u64> =
        events.iter().filter_map(|e| if let Event::Tick(t) = e { Some(t.sequence) } else { None }).collect();
    let stream_ticks: Vec<u64> =
        stored.iter().filter_map(|s| if let Stored::Tick { seq, .. } = s { Some(*seq) } else { None }).collect();
    assert_eq!(ticks, stream_ticks, "every tick of the stream once, in order");
    let lost: u64 = stream_gaps.iter().map(|(f, l)| l - f + 1).sum();
    assert_eq!(status["counters"]["lost_sequences"], lost, "{status}");
    assert_eq!(status["counters"]["holes"], 0, "{status}");
    // The ticks the feed's ring still holds are byte-equal to the mirror's.
    let mut feed_reader = core.reader().with_lap_headroom(0);
    feed_reader.seek(Start::Sequence(TICKS - RING / 2));
    let mut t = TickRecord::ZERO;
    let by_seq: std::collections::HashMap<u64, &TickRecord> =
        events.iter().filter_map(|e| if let Event::Tick(t) = e { Some((t.sequence, &**t)) } else { None }).collect();
    while feed_reader.next_sequence() <= TICKS {
        if feed_reader.try_next(&mut t) == Next::Tick {
            let m = by_seq[&t.sequence];
            assert_eq!(without_index(m).as_bytes(), without_index(&t).as_bytes(), "sequence {}", t.sequence);
        }
    }
    println!("stream gap events {stream_gaps:?}: the mirror's gaps, exactly");
}

/// Adjacent ranges merged (a reader reports a lost range in pieces; the stream may hold adjacent
/// gap events).
fn merged(ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (f, l) in ranges {
        match out.last_mut() {
            Some(m) if m.1 + 1 == f => m.1 = l,
            _ => out.push((f, l)),
        }
    }
    out
}

/// [`wait_for`], printing `report()` when the watchdog fires.
fn wait_for_or<T>(what: &str, mut f: impl FnMut() -> Option<T>, report: impl FnOnce() -> String) -> T {
    let deadline = std::time::Instant::now() + WATCHDOG;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if std::time::Instant::now() > deadline {
            panic!("timed out after {WATCHDOG:?} waiting for {what}:\n{}", report());
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// `GET path` over HTTP/1.0: the body.
fn http_get(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    reply.split_once("\r\n\r\n").map(|(_, body)| body.to_owned())
}

#[test]
fn the_mirrors_lag_is_in_qilinctl_status_and_in_the_metrics_of_its_host() {
    let dir = tempfile::tempdir().unwrap();
    let feed = unique("mirror-lag");
    let server = NatsServer::start(dir.path());
    const TICKS: u64 = 3_000;
    let (core, _nats) = start_feed(dir.path(), &feed, &server.url(), TICKS, 1 << 14, 20_000);
    wait_nats(&core, TICKS);
    let mirror = MirrorProc::start(dir.path(), &feed, &server.url(), 1 << 14, "last");
    mirror.wait_position(TICKS);

    // qilinctl status on the mirror's segment lists the mirror with its position and lag.
    let out = Command::new(workspace_bin("qilinctl"))
        .args(["status", "--json", "--segment"])
        .arg(&mirror.segment)
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("qilinctl status --json: {e}: {}", String::from_utf8_lossy(&out.stderr)));
    let sidecars = status["sidecars"].as_array().expect("a sidecars list");
    let m = sidecars.iter().find(|s| s["sidecar"] == "qilin-mirror").unwrap_or_else(|| panic!("{status}"));
    assert_eq!(
        (m["position"].as_u64(), m["lag_sequences"].as_u64(), m["alive"].as_bool()),
        (Some(TICKS), Some(0), Some(true)),
        "{m}"
    );

    // A qilin-recorder on the mirror host (its metrics read the status files beside the segment it
    // records) exports the mirror's position, lag and counters.
    let port = free_port();
    let config = dir.path().join("mirror-recorder.toml");
    fs::write(
        &config,
        format!(
            "segment = {:?}\njournal_dir = {:?}\nstatus_interval_ms = 50\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n",
            mirror.segment.display().to_string(),
            dir.path().join("mirror-journal").display().to_string()
        ),
    )
    .unwrap();
    let _recorder = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_qilin-recorder"))
            .arg("--config")
            .arg(&config)
            .stderr(fs::File::create(dir.path().join("mirror-recorder.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let addr = format!("127.0.0.1:{port}");
    // `<name>{feed="…",sidecar="mirror"} <value>`
    let want = [("qilin_sidecar_position{", TICKS.to_string()), ("qilin_sidecar_lag_sequences{", "0".to_owned())];
    let has = |body: &str, (name, value): &(&str, String)| {
        body.lines().any(|l| {
            l.starts_with(name) && l.contains("sidecar=\"mirror\"") && l.rsplit(' ').next() == Some(value.as_str())
        })
    };
    let last = std::cell::RefCell::new(None);
    let body = wait_for_or(
        "the mirror's position and lag in /metrics",
        || {
            *last.borrow_mut() = http_get(&addr, "/metrics");
            let body = last.borrow().clone()?;
            want.iter().all(|w| has(&body, w)).then_some(body)
        },
        || {
            format!(
                "{:?}\n{}",
                last.borrow(),
                fs::read_to_string(dir.path().join("mirror-recorder.log")).unwrap_or_default()
            )
        },
    );
    assert!(
        body.lines().any(|l| l.starts_with("qilin_sidecar_counts_total{")
            && l.contains("sidecar=\"mirror\"")
            && l.contains("counter=\"filled\"")),
        "{body}"
    );
}
