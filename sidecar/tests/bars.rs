//! qilin-bars against real processes: a real nats-server (JetStream), a real qilin-core on the
//! simulator (six exchanges, 3 s of market time per round: the day close, then the night), a real qilin-recorder writing the journal, and a
//! real qilin-bars that is SIGKILLed mid-bar and restarted. The bars in the stream must be exactly
//! the bars a [`Builder`] makes offline from the journal's ticks (and the clock qilin-bars saved at
//! its clean stop): byte for byte, in order, none lost, none twice. Every wait is on a positive
//! signal (stream counts, the cursor file, the journal), bounded only by the watchdog.

mod common;

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use async_nats::jetstream;
use common::*;
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use qilin_market::Market;
use qilin_sidecar::bars::{Bar, Builder, Period, cursor};

const FEED: &str = "barsfeed";

fn instruments_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/instruments.toml")
}

/// A real qilin-bars process.
struct BarsProcess {
    child: Option<Child>,
    config: PathBuf,
    log: PathBuf,
}

impl BarsProcess {
    fn start(config: &Path, log: &Path) -> BarsProcess {
        let mut p = BarsProcess { child: None, config: config.into(), log: log.into() };
        p.restart();
        p
    }

    fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_qilin-bars"))
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
        wait_for("qilin-bars to exit", || child.try_wait().unwrap())
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for BarsProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn bars_config(dir: &Path, segment: &Path, url: &str, journal: &Path) -> PathBuf {
    let path = dir.join("bars.toml");
    fs::write(
        &path,
        format!(
            "name = \"bars\"\nsegment = {:?}\nstate_dir = {:?}\ninstruments_file = {:?}\njournal_dir = {:?}\n\
             bar_segment = {:?}\nbar_ring_slots = 4096\ncursor_interval_ms = 50\n[nats]\nurls = [{url:?}]\nreconnect_max_delay_ms = 200\n\
             request_timeout_ms = 2000\n",
            segment.display().to_string(),
            dir.join("state").display().to_string(),
            instruments_file().display().to_string(),
            journal.display().to_string(),
            bar_segment(dir).display().to_string(),
        ),
    )
    .unwrap();
    path
}

/// The bar segment of the test's qilin-bars (in the test's directory: nothing left in /dev/shm).
fn bar_segment(dir: &Path) -> PathBuf {
    dir.join("bars-segment")
}

/// Every bar of the bar segment from its oldest, with the epochs the reader saw change.
fn segment_bars(path: &Path) -> (Vec<qilin_shm::BarRecord>, u64) {
    let mut reader = qilin_shm::BarReader::open_segment(path).expect("the bar segment");
    reader.seek(qilin_shm::Start::Oldest);
    let mut bar = qilin_shm::BarRecord::ZERO;
    let mut out = Vec::new();
    loop {
        match reader.try_next(&mut bar) {
            qilin_shm::Next::Tick => out.push(bar),
            qilin_shm::Next::Empty => return (out, reader.current_epoch()),
            other => panic!("the bar segment's ring holds every bar: {other:?}"),
        }
    }
}

/// Every message of the bar stream: subject, message id, body.
async fn stream_bars(url: &str, stream: &str) -> Vec<(String, String, Vec<u8>)> {
    stream_messages(async_nats::ConnectOptions::new(), url, stream)
        .await
        .into_iter()
        .map(|m| {
            let id = m.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id")).unwrap().as_str().to_owned();
            (m.subject.to_string(), id, m.payload.to_vec())
        })
        .collect()
}

async fn stream_count(url: &str, stream: &str) -> u64 {
    let js = jetstream::new(async_nats::connect(url).await.unwrap());
    match js.get_stream(stream).await {
        Ok(mut s) => s.info().await.unwrap().state.messages,
        Err(_) => 0,
    }
}

#[test]
fn bars_on_nats_equal_the_bars_of_the_journal_across_a_sigkill_mid_bar() {
    sigkill_and_restart(false);
}

/// The same, killed once a trading day has closed (its `1d` bar is in the stream): the restart
/// rebuilds from the cursor's trading day through the next one's journal file.
#[test]
fn a_sigkill_after_the_trading_day_rolled_rebuilds_across_both_days() {
    sigkill_and_restart(true);
}

fn sigkill_and_restart(after_day_bar: bool) {
    let dir = tempfile::tempdir().unwrap();
    let feed = unique(FEED);
    let nats = NatsServer::start(dir.path());
    let url = nats.url();
    let max_ticks = 12_000;
    let core = Core::start_with(
        dir.path(),
        &feed,
        1 << 16,
        1000,
        max_ticks,
        "",
        "instruments = [\"rb2605\", \"sc2605\", \"m2605\", \"SR605\", \"IF2606\", \"si2605\"]\n\
         start = \"2026-03-11 14:30:00\"\nsnapshot_interval_ms = 3000\n",
    );
    let journal = dir.path().join("journal");
    let recorder_conf = recorder_config(dir.path(), &core.segment, &journal, "");
    let mut recorder = Recorder::start(&recorder_conf, &dir.path().join("recorder.log"));
    let config = bars_config(dir.path(), &core.segment, &url, &journal);
    let mut bars = BarsProcess::start(&config, &dir.path().join("bars.log"));
    let stream = format!("QILIN_BARS_{}", feed.to_ascii_uppercase().replace('-', "_"));
    let cursor_path = dir.path().join("state/bars.cursor");
    let rt = runtime();

    // Mid-run: bars are in the stream and a cursor has been saved; then SIGKILL (bars are open:
    // the trading day's at least) and start again.
    wait_for("bars in the stream and a saved cursor", || {
        let saved = cursor::load(&cursor_path, &feed).ok().flatten().filter(|c| c.sequence > 0);
        (rt.block_on(stream_count(&url, &stream)) >= 30 && saved.is_some()).then_some(())
    });
    if after_day_bar {
        wait_for("a daily bar in the stream", || {
            rt.block_on(stream_bars(&url, &stream))
                .iter()
                .any(|(subject, _, _)| subject.contains(".bar.1d."))
                .then_some(())
        });
    }
    bars.signal(Signal::SIGKILL);
    bars.restart();

    // The core's last tick, processed and acknowledged; the journal complete.
    let reader = core.reader();
    wait_for("the core's last tick", || (reader.write_cursor() == max_ticks).then_some(()));
    wait_for("qilin-bars' cursor at the last tick", || {
        cursor::load(&cursor_path, &feed).ok().flatten().filter(|c| c.sequence == max_ticks)
    });
    let (ticks, gaps) = wait_for("the whole journal", || {
        let files = qilin_journal::journal_files(&journal, &feed).ok()?;
        let last = files.iter().filter_map(|f| qilin_journal::verify(&f.path).ok()).map(|s| s.last_sequence).max()?;
        (last == max_ticks).then(|| read_journal(&journal, &feed, max_ticks))
    });
    assert!(gaps.is_empty(), "the ring holds every tick: {gaps:?}");
    recorder.signal(Signal::SIGTERM);
    assert!(bars.signal(Signal::SIGTERM).success(), "{}", bars.log());
    let saved = cursor::load(&cursor_path, &feed).unwrap().unwrap();
    assert_eq!(saved.sequence, max_ticks);
    assert!(bars.log().contains("restored to the cursor"), "the restart rebuilt to its cursor:\n{}", bars.log());
    let st = status(&core.segment, "bars").expect("qilin-bars' status file");
    assert_eq!((st["sidecar"].as_str(), st["state"].as_str()), (Some("qilin-bars"), Some("stopped")));
    assert_eq!(st["position"].as_u64(), Some(max_ticks));
    let read = st["counters"]["ticks"].as_u64().unwrap();
    if after_day_bar {
        // The restart read the journal from the oldest trading day with a bar open, not before.
        assert!(read <= max_ticks, "{read} ticks");
    } else {
        assert_eq!(read, max_ticks, "every tick, once, after the restart's rebuild");
    }

    // Offline: the journal's ticks through a Builder, then the clock the process stopped at.
    let market = Market::find(Some(&instruments_file())).unwrap().unwrap();
    let mut builder = Builder::new(market, &Period::ALL, 2000);
    let mut want: Vec<Bar> = Vec::new();
    for t in &ticks {
        builder.on_tick(t, &mut want);
    }
    builder.advance_clock(saved.clock_ns, &mut want);
    assert!(want.len() > 100, "a run long enough to matter: {} bars", want.len());
    assert!(want.iter().any(|b| b.period == Period::Day), "a trading day closed");

    let got = rt.block_on(stream_bars(&url, &stream));
    let ids: std::collections::HashSet<&str> = got.iter().map(|(_, id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), got.len(), "a message id twice");
    for (i, (bar, (subject, id, body))) in want.iter().zip(&got).enumerate() {
        assert_eq!(
            String::from_utf8_lossy(body),
            String::from_utf8_lossy(&bar.to_json()),
            "bar {i} of {} (stream has {})",
            want.len(),
            got.len()
        );
        assert_eq!(id, &bar.msg_id(&feed));
        let want_subject =
            format!("qilin-bars.{feed}.bar.{}.{}.{}", bar.period.name(), bar.exchange, bar.instrument_id);
        assert_eq!(subject, &want_subject);
    }
    assert_eq!(got.len(), want.len(), "bars lost or extra");
    // The bar segment: the same bars, in publish order, field for field, none twice although the
    // restart published its last ones again (a second writer epoch on the same segment).
    let (in_segment, epoch) = segment_bars(&bar_segment(dir.path()));
    assert_eq!(epoch, 2, "qilin-bars reopened its segment after the SIGKILL");
    for (i, (record, bar)) in in_segment.iter().zip(&want).enumerate() {
        let mut expected = qilin_sidecar::bars::segment::record(bar, record.instrument_index).unwrap();
        (expected.sequence, expected.publish_ns) = (i as u64 + 1, record.publish_ns);
        assert_eq!(
            zerocopy::IntoBytes::as_bytes(record),
            zerocopy::IntoBytes::as_bytes(&expected),
            "segment bar {i}: {record:?}, want {bar:?}"
        );
    }
    assert_eq!(in_segment.len(), want.len(), "bars lost or twice in the segment");
    // The binary's offline mode over the same journal: the stream is a prefix of its lines (then the
    // bars still open at the clock the process stopped at, closed at the journal's end).
    let replay = Command::new(env!("CARGO_BIN_EXE_qilin-bars"))
        .arg("--config")
        .arg(&config)
        .arg("--replay-journal")
        .arg(&journal)
        .arg("--feed")
        .arg(&feed)
        .output()
        .unwrap();
    assert!(replay.status.success(), "{}", String::from_utf8_lossy(&replay.stderr));
    let lines: Vec<&[u8]> = replay.stdout.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
    assert!(lines.len() > got.len(), "{} lines, {} in the stream", lines.len(), got.len());
    for (i, (line, (_, _, body))) in lines.iter().zip(&got).enumerate() {
        assert_eq!(String::from_utf8_lossy(line), String::from_utf8_lossy(body), "line {i}");
    }
    for line in
        bars.log().lines().filter(|l| l.contains("restored") || l.contains("stopped at") || l.contains("rebuilt"))
    {
        eprintln!("{line}");
    }
    drop(nats);
}

/// NATS stopped while the market runs: qilin-bars goes on building and writing closed bars into its
/// segment (a strategy on this host does not wait for the stream), keeps them pending, and once the
/// server is back publishes them in order with their ids: the stream then holds exactly the
/// segment's bars, once each.
#[test]
fn the_bar_segment_goes_on_while_nats_is_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let feed = unique(FEED);
    let mut nats = NatsServer::start(dir.path());
    let url = nats.url();
    // No tick limit: the market runs until the test kills the core, so bars keep closing for as
    // long as the outage lasts.
    let mut core = Core::start_with(
        dir.path(),
        &feed,
        1 << 20,
        1000,
        0,
        "",
        "instruments = [\"rb2605\", \"sc2605\", \"m2605\", \"SR605\", \"IF2606\", \"si2605\"]\n\
         start = \"2026-03-11 14:30:00\"\nsnapshot_interval_ms = 3000\n",
    );
    let journal = dir.path().join("journal"); // empty: no recorder, the ring is read from its oldest tick
    fs::create_dir_all(&journal).unwrap();
    let config = bars_config(dir.path(), &core.segment, &url, &journal);
    let mut bars = BarsProcess::start(&config, &dir.path().join("bars.log"));
    let stream = format!("QILIN_BARS_{}", feed.to_ascii_uppercase().replace('-', "_"));
    let rt = runtime();
    wait_for("bars in the stream", || (rt.block_on(stream_count(&url, &stream)) >= 10).then_some(()));

    nats.stop(Signal::SIGTERM);
    let written = || qilin_shm::BarReader::open_segment(bar_segment(dir.path())).unwrap().write_cursor();
    let at_outage = written();
    wait_for("20 more bars in the segment while NATS is down", || (written() >= at_outage + 20).then_some(()));
    wait_for("qilin-bars to report the outage", || {
        bars.log().contains("retrying (same message ids) while the bar segment goes on").then_some(())
    });
    // The status file says so too: bars handed to the publisher, not acknowledged.
    let status = core
        .segment
        .with_file_name(format!("{}.sidecars/bars.json", core.segment.file_name().unwrap().to_str().unwrap()));
    wait_for("the status to show NATS down with bars pending", || {
        let s: serde_json::Value = serde_json::from_slice(&fs::read(&status).ok()?).ok()?;
        (s["nats_down"] == true && s["pending_bars"].as_u64()? > 0).then_some(())
    });
    let during = written();

    nats.restart();
    wait_for("qilin-bars to publish again", || bars.log().contains("NATS takes bars again").then_some(()));
    core.kill();
    assert!(bars.signal(Signal::SIGTERM).success(), "{}", bars.log());

    let (in_segment, _) = segment_bars(&bar_segment(dir.path()));
    let got = rt.block_on(stream_bars(&url, &stream));
    let ids: std::collections::HashSet<&str> = got.iter().map(|(_, id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), got.len(), "a message id twice");
    assert_eq!(got.len(), in_segment.len(), "the stream and the segment hold different bars");
    for (i, (record, (_, _, body))) in in_segment.iter().zip(&got).enumerate() {
        let json: serde_json::Value = serde_json::from_slice(body).unwrap();
        let want = (
            record.instrument_id_str().unwrap(),
            record.start_ns,
            record.end_ns,
            record.volume,
            u64::from(record.ticks),
            record.first_sequence,
            record.last_sequence,
        );
        let got = (
            json["instrument_id"].as_str().unwrap(),
            json["start_ns"].as_i64().unwrap(),
            json["end_ns"].as_i64().unwrap(),
            json["volume"].as_i64().unwrap(),
            json["ticks"].as_u64().unwrap(),
            json["first_sequence"].as_u64().unwrap(),
            json["last_sequence"].as_u64().unwrap(),
        );
        assert_eq!(got, want, "bar {i}: the stream's and the segment's differ");
    }
    println!(
        "{} bars: {at_outage} in the segment when NATS stopped, {during} while it was down, all in the stream once",
        in_segment.len()
    );
}
