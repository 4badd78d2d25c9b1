//! qilin-nats against a real nats-server (JetStream and core NATS) and a real qilin-core on the
//! simulator: SIGKILLed sidecars, a server stopped under load, a sidecar lapped by the ring.

mod common;

use std::{
    path::Path,
    time::{Duration, Instant},
};

use common::*;
use nix::sys::signal::Signal;
use qilin_shm::now_ns;

fn wait_position(segment: &Path, watch: &mut CoreWatch, n: u64) -> serde_json::Value {
    wait_for("qilin-nats to confirm every sequence", || {
        watch.sample();
        status(segment, "nats").filter(|s| s["position"] == n)
    })
}

#[test]
fn jetstream_holds_every_sequence_once_and_in_order_across_sigkills() {
    let dir = tempfile::tempdir().unwrap();
    let feed = unique("nats-kill");
    let server = NatsServer::start(dir.path());
    const TICKS: u64 = 60_000;
    let core = Core::start(dir.path(), &feed, 1 << 16, 15_000, TICKS);
    let mut watch = CoreWatch::new(&core);
    let config = sidecar_config(dir.path(), &core.segment, &server.url(), "", "");
    let log = dir.path().join("nats.log");
    let mut sidecar = Sidecar::start(&config, &log);

    let mut seed = std::process::id() as u64 ^ now_ns() as u64;
    println!("kill schedule seed {seed}");
    let mut kills = 0;
    while core.reader().write_cursor() < TICKS * 4 / 5 {
        watch.sleep(Duration::from_millis(200 + lcg(&mut seed) % 400));
        let status = sidecar.signal(Signal::SIGKILL);
        assert_eq!(status.code(), None, "killed by a signal");
        kills += 1;
        sidecar.restart();
    }
    assert!(kills >= 3, "only {kills} kills happened mid-stream");
    watch.wait_published(TICKS);
    let status = wait_position(&core.segment, &mut watch, TICKS);
    assert_eq!(sidecar.signal(Signal::SIGTERM).code(), Some(0), "clean stop on SIGTERM:\n{}", sidecar.log());

    let stream = stream_name(&feed);
    let stored = runtime().block_on(stream_contents(&server.url(), &stream));
    let gaps = assert_exactly_once(&stored, TICKS);
    assert!(gaps.is_empty(), "no tick was lapped, yet gap events {gaps:?}");
    let prefix = format!("qilin.{feed}.");
    for s in &stored {
        if let Stored::Tick { subject, .. } = s {
            let rest = subject.strip_prefix(&prefix).unwrap_or_else(|| panic!("subject {subject}"));
            let (exchange, instrument) = rest.split_once('.').unwrap();
            assert!(["SHFE", "INE", "DCE", "CZCE", "CFFEX", "GFEX"].contains(&exchange), "{subject}");
            assert!(!instrument.is_empty() && !instrument.contains('.'), "{subject}");
        }
    }
    let cursor: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("state/nats.cursor")).unwrap()).unwrap();
    assert_eq!(cursor["sequence"], TICKS, "the cursor file holds the last confirmed sequence");
    assert_eq!(status["lag_sequences"], 0);
    watch.assert_no_stall_or_drop(TICKS);
    println!("{kills} SIGKILLs; stream holds {} messages, 1..={TICKS} once each", stored.len());
}

#[test]
fn nats_down_under_load_loses_nothing_and_the_lag_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let feed = unique("nats-down");
    let mut server = NatsServer::start(dir.path());
    const TICKS: u64 = 50_000;
    let core = Core::start(dir.path(), &feed, 1 << 17, 10_000, TICKS);
    let mut watch = CoreWatch::new(&core);
    let config = sidecar_config(dir.path(), &core.segment, &server.url(), "", "");
    let mut sidecar = Sidecar::start(&config, &dir.path().join("nats.log"));
    wait_for("some ticks confirmed", || {
        watch.sample();
        status(&core.segment, "nats").filter(|s| s["position"].as_u64() > Some(1000))
    });

    server.stop(Signal::SIGKILL);
    let down_at = core.reader().write_cursor();
    let mut max_lag = 0;
    let mut saw_disconnected = false;
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        watch.sleep(Duration::from_millis(50));
        if let Some(s) = status(&core.segment, "nats") {
            max_lag = max_lag.max(s["lag_sequences"].as_u64().unwrap());
            saw_disconnected |= s["connected"] == false;
        }
    }
    let up_at = core.reader().write_cursor();
    server.restart();
    assert!(up_at - down_at > 10_000, "the server was down for {} ticks only", up_at - down_at);
    assert!(saw_disconnected, "the status file never said disconnected");
    assert!(max_lag >= (up_at - down_at) / 2, "reported lag {max_lag} while {} ticks arrived", up_at - down_at);

    watch.wait_published(TICKS);
    let status = wait_position(&core.segment, &mut watch, TICKS);
    assert!(status["counters"]["errors"].as_u64().unwrap() > 0, "the outage was counted: {status}");
    sidecar.signal(Signal::SIGTERM);
    let stream = stream_name(&feed);
    let stored = runtime().block_on(stream_contents(&server.url(), &stream));
    let gaps = assert_exactly_once(&stored, TICKS);
    assert!(gaps.is_empty(), "the ring held the outage, yet gap events {gaps:?}");
    watch.assert_no_stall_or_drop(TICKS);
    println!("server down for {} ticks; max reported lag {max_lag}", up_at - down_at);
}

#[test]
fn lapped_while_nats_is_down_publishes_the_exact_lost_range() {
    let dir = tempfile::tempdir().unwrap();
    let feed = unique("nats-lap");
    let mut server = NatsServer::start(dir.path());
    const TICKS: u64 = 40_000;
    const RING: u64 = 4096;
    let core = Core::start(dir.path(), &feed, RING, 10_000, TICKS);
    let mut watch = CoreWatch::new(&core);
    let config = sidecar_config(dir.path(), &core.segment, &server.url(), "", "");
    let mut sidecar = Sidecar::start(&config, &dir.path().join("nats.log"));
    // The lap below must happen whatever the machine's load: the core is frozen at 2 000 ticks, so
    // however long the sidecar takes to confirm its first 1 000, at least TICKS − down_at > 3 rings
    // are still to come when NATS goes down.
    let down_at = while_core_frozen_at(&core, 2000, || {
        wait_for("some ticks confirmed", || {
            status(&core.segment, "nats").filter(|s| s["position"].as_u64() > Some(1000))
        });
        server.stop(Signal::SIGKILL);
        core.reader().write_cursor()
    });
    assert!(down_at + 3 * RING < TICKS, "the core ran {down_at} ticks before it was frozen");
    watch.reset(&core); // the heartbeat was quiet on purpose
    wait_for("the core to lap the sidecar", || {
        watch.sample();
        (core.reader().write_cursor() > down_at + 3 * RING).then_some(())
    });
    server.restart();
    watch.wait_published(TICKS);
    let status = wait_position(&core.segment, &mut watch, TICKS);
    sidecar.signal(Signal::SIGTERM);

    let stream = stream_name(&feed);
    let stored = runtime().block_on(stream_contents(&server.url(), &stream));
    // Every sequence is either a stored tick or inside exactly one gap event, never both.
    let gaps = assert_exactly_once(&stored, TICKS);
    assert!(!gaps.is_empty(), "the ring was lapped but no gap event was published");
    let lost: u64 = gaps.iter().map(|(f, l)| l - f + 1).sum();
    // How much is lost is not fixed by the scenario: while NATS is away the sidecar keeps retrying
    // (acks time out, it rewinds to its confirmed position, finds the lap, sends a gap event and the
    // ticks after it), and the client buffers those publishes until the server is back; how many
    // of them are stored depends on when the retries ran (a CI run under load stored enough to lose
    // 7 872 of the 3 rings). What holds by construction is asserted: a lap was detected, every
    // sequence is stored or in exactly one gap (above), and the counters say the same.
    assert!(lost > 0 && lost < TICKS, "lost {lost} of {TICKS} ticks");
    assert_eq!(status["counters"]["gaps"], gaps.len() as u64, "{status}");
    assert_eq!(status["counters"]["gap_sequences"], lost, "{status}");
    assert!(sidecar.log().contains("are gone from the ring"), "{}", sidecar.log());
    watch.assert_no_stall_or_drop(TICKS);
    println!("gap events {gaps:?}");
}

#[test]
fn core_nats_with_json_bodies_delivers_every_tick_with_headers() {
    use futures::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let feed = unique("nats-core");
    let server = NatsServer::start(dir.path());
    const TICKS: u64 = 5_000;
    let rt = runtime();
    let client = rt.block_on(async_nats::connect(server.url())).unwrap();
    let mut sub = rt.block_on(client.subscribe(format!("test.{feed}.>"))).unwrap();
    rt.block_on(client.flush()).unwrap();

    let core = Core::start(dir.path(), &feed, 1 << 16, 5_000, TICKS);
    let config = sidecar_config(
        dir.path(),
        &core.segment,
        &server.url(),
        &format!("mode = \"core\"\npayload = \"json\"\nsubject_prefix = \"test.{feed}\"\n"),
        "",
    );
    let mut sidecar = Sidecar::start(&config, &dir.path().join("nats.log"));
    let mut seen = Vec::new();
    let mut bodies = Vec::new();
    rt.block_on(async {
        while (seen.len() as u64) < TICKS {
            let m = tokio::time::timeout(WATCHDOG, sub.next()).await.expect("watchdog").unwrap();
            let seq: u64 = m.headers.as_ref().unwrap().get("Qilin-Seq").unwrap().as_str().parse().unwrap();
            let headers = m.headers.as_ref().unwrap();
            assert_eq!(headers.get("Nats-Msg-Id").unwrap().as_str(), format!("{feed}-{seq}"));
            assert_eq!(headers.get("Qilin-Source").unwrap().as_str(), "sim");
            let body: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
            assert_eq!(body["sequence"], seq);
            let subject = format!(
                "test.{feed}.{}.{}",
                body["ExchangeID"].as_str().unwrap(),
                body["InstrumentID"].as_str().unwrap()
            );
            assert_eq!(m.subject.as_str(), subject);
            assert!(headers.get("Qilin-Layout").is_none(), "JSON bodies carry no layout header");
            seen.push(seq);
            bodies.push(m.payload);
        }
    });
    assert_eq!(seen, (1..=TICKS).collect::<Vec<_>>(), "every tick once, in order");
    // Each body is, byte for byte, the segment's record as `tick_json` (qilinctl tail --json) writes it.
    let mut reader = core.reader();
    reader.seek(qilin_shm::Start::Sequence(1));
    let mut tick = qilin_shm::TickRecord::ZERO;
    for body in &bodies {
        assert_eq!(reader.try_next(&mut tick), qilin_shm::Next::Tick, "the ring holds every tick");
        let expected = serde_json::to_vec(&qilin_market::names::tick_json(&tick)).unwrap();
        assert_eq!(String::from_utf8_lossy(body), String::from_utf8_lossy(&expected), "sequence {}", tick.sequence);
    }
    let status = wait_for("the flush to confirm the last tick", || {
        status(&core.segment, "nats").filter(|s| s["position"] == TICKS)
    });
    assert_eq!(status["mode"], "core");
    assert_eq!(sidecar.signal(Signal::SIGTERM).code(), Some(0));
}

#[test]
fn raw_bodies_are_the_segments_records_with_the_layout_fingerprint_header() {
    use futures::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let feed = unique("nats-raw");
    let server = NatsServer::start(dir.path());
    const TICKS: u64 = 2_000;
    let rt = runtime();
    let client = rt.block_on(async_nats::connect(server.url())).unwrap();
    let mut sub = rt.block_on(client.subscribe(format!("test.{feed}.>"))).unwrap();
    // The subscription is in place once a message of its own comes back (`flush` only writes).
    rt.block_on(async {
        client.publish(format!("test.{feed}.probe"), "probe".into()).await.unwrap();
        let probe = tokio::time::timeout(WATCHDOG, sub.next()).await.expect("watchdog").unwrap();
        assert_eq!(&probe.payload[..], b"probe");
    });
    let core = Core::start(dir.path(), &feed, 1 << 16, 5_000, TICKS);
    let config = sidecar_config(
        dir.path(),
        &core.segment,
        &server.url(),
        &format!("mode = \"core\"\npayload = \"raw\"\nsubject_prefix = \"test.{feed}\"\n"),
        "",
    );
    let mut sidecar = Sidecar::start(&config, &dir.path().join("nats.log"));
    // `0x` and 16 lowercase hex digits: `qilinctl layout --json`'s `fingerprint` (tools/src/lib.rs
    // writes it with the same function; python/tests/test_nats_consumer.py compares the two texts).
    let fingerprint = qilin_shm::layout::fingerprint_text(qilin_shm::layout::FINGERPRINT);
    assert_eq!(fingerprint, qilin_shm::layout::fingerprint_text(qilin_shm::layout::FINGERPRINT));
    let mut reader = core.reader();
    reader.seek(qilin_shm::Start::Sequence(1));
    let mut tick = qilin_shm::TickRecord::ZERO;
    rt.block_on(async {
        for seq in 1..=TICKS {
            let m = tokio::time::timeout(WATCHDOG, sub.next()).await.expect("watchdog").unwrap();
            let headers = m.headers.as_ref().unwrap();
            assert_eq!(headers.get("Qilin-Seq").unwrap().as_str(), seq.to_string(), "every tick once, in order");
            assert_eq!(headers.get("Qilin-Layout").unwrap().as_str(), fingerprint);
            assert_eq!(reader.try_next(&mut tick), qilin_shm::Next::Tick, "the ring holds every tick");
            assert_eq!(tick.sequence, seq);
            assert_eq!(&m.payload[..], zerocopy::IntoBytes::as_bytes(&tick), "sequence {seq}: the record's bytes");
        }
    });
    assert_eq!(sidecar.signal(Signal::SIGTERM).code(), Some(0));
}

#[test]
fn ticks_the_ring_lost_are_published_from_the_recorders_journal() {
    let dir = tempfile::tempdir().unwrap();
    let feed = unique("nats-bf");
    let mut server = NatsServer::start(dir.path());
    const TICKS: u64 = 40_000;
    const RING: u64 = 4096;
    let core = Core::start(dir.path(), &feed, RING, 10_000, TICKS);
    let mut watch = CoreWatch::new(&core);
    let journal = dir.path().join("journal");
    let _recorder =
        Recorder::start(&recorder_config(dir.path(), &core.segment, &journal, ""), &dir.path().join("recorder.log"));
    let config = sidecar_config(
        dir.path(),
        &core.segment,
        &server.url(),
        "",
        &format!("journal_dir = {:?}\n", journal.display().to_string()),
    );
    let mut sidecar = Sidecar::start(&config, &dir.path().join("nats.log"));
    // The lap below must happen whatever the machine's load: the core is frozen at 2 000 ticks, so
    // however long the sidecar takes to confirm its first 1 000, at least TICKS − down_at > 3 rings
    // are still to come when NATS goes down.
    let down_at = while_core_frozen_at(&core, 2000, || {
        wait_for("some ticks confirmed", || {
            status(&core.segment, "nats").filter(|s| s["position"].as_u64() > Some(1000))
        });
        server.stop(Signal::SIGKILL);
        core.reader().write_cursor()
    });
    assert!(down_at + 3 * RING < TICKS, "the core ran {down_at} ticks before it was frozen");
    watch.reset(&core); // the heartbeat was quiet on purpose
    wait_for("the core to lap the sidecar", || {
        watch.sample();
        (core.reader().write_cursor() > down_at + 3 * RING).then_some(())
    });
    server.restart();
    watch.wait_published(TICKS);
    wait_for("the recorder to journal everything", || {
        status(&core.segment, "recorder").filter(|s| s["position"] == TICKS)
    });
    let status = wait_position(&core.segment, &mut watch, TICKS);
    sidecar.signal(Signal::SIGTERM);

    let stream = stream_name(&feed);
    let stored = runtime().block_on(stream_contents(&server.url(), &stream));
    let gaps = assert_exactly_once(&stored, TICKS);
    // The stream lacks exactly what the journal lacks (nothing, unless the recorder was lapped too).
    let mut reader = qilin_journal::DirReader::open(&journal, &feed, 0..=u32::MAX).unwrap();
    let mut journal_gaps = Vec::new();
    while let Some(entry) = reader.next_entry().unwrap() {
        if let qilin_journal::Entry::Gap(g) = entry {
            journal_gaps.push((g.first, g.last));
        }
    }
    // A gap event only for what the journal lacks too: every sequence of a stream gap is inside a
    // journal gap. (Not equality: a recorder lapped on a busy machine can lack ticks the sidecar
    // still read from the ring, and published once NATS was back: a test-under-load run had journal
    // gap 2113..=3200 and a stream without gaps.)
    for &(first, last) in &gaps {
        for seq in first..=last {
            assert!(
                journal_gaps.iter().any(|&(f, l)| (f..=l).contains(&seq)),
                "gap event {first}..={last}: sequence {seq} is in the journal ({journal_gaps:?})"
            );
        }
    }
    // How many come from the journal depends on when the sidecar's retries ran while NATS was away
    // (the client buffers them until the server is back; see the lapped test above): at least one.
    let backfilled = status["counters"]["backfilled"].as_u64().unwrap();
    assert!(backfilled > 0, "no tick came from the journal: {status}");
    watch.assert_no_stall_or_drop(TICKS);
    println!("{backfilled} ticks published from the journal; gaps {gaps:?}");
}
