//! qilin-nats throughput to a local nats-server (issue 6), against a bare async-nats publisher of
//! the same messages measured in the same process and run.
//!
//! Set-up (not timed): a real `nats-server` (JetStream, file store in a temporary directory) on a
//! free loopback port; one segment in `/dev/shm` holding N ticks of every instrument of
//! `config/instruments.toml` (six exchanges, round robin), its ring large enough to hold them all.
//!
//! Each run measures, on one current-thread tokio runtime (as the `qilin-nats` binary runs):
//!
//! - `core raw`, qilin: `Sidecar::run(&stop, Some(N))` in core mode from sequence 1 (a fresh
//!   cursor directory every run), timed from the call until it returns `Stopped::Reached` (every
//!   sequence published and the position confirmed by a flush). `Sidecar::start` (connect) is not
//!   timed.
//! - `core raw`, bare: a fresh `async_nats::Client` publishes the same subjects, headers and raw
//!   bodies, built in memory beforehand (not timed), with `publish_with_headers`, then `flush`.
//! - `jetstream raw`, qilin: the same in JetStream mode into a fresh stream (the sidecar creates
//!   it; it is deleted after the run), timed until every ack is in.
//! - `jetstream raw`, bare: the same messages (with `Nats-Msg-Id` and `Nats-Expected-Last-Sequence`)
//!   into a fresh stream of the same configuration, through a `jetstream::Context` built as the
//!   sidecar builds its own, keeping at most `ack_window` (4096) acks in flight: publish, and when
//!   the window is full await the oldest ack first; then await the rest.
//! - `core json` (qilin and bare): as `core raw` with JSON bodies.
//!
//! Within each pair the order alternates from run to run (bare first in the warm-up and even runs,
//! qilin first in odd runs). One warm-up round runs first (not counted); it also checks that the
//! bare messages equal what qilin-nats publishes (core: the first messages as a subscriber sees
//! them; JetStream: stored messages). Every run checks the counts (qilin counters, stream message
//! counts) and that no ack failed.
//!
//! Besides ticks/s, the table gives CPU time per tick of this process (qilin or the bare
//! publisher, with the async-nats connection task) and of nats-server, from `/proc/<pid>/stat`
//! (10 ms resolution), which is steadier than wall time on a shared machine; and `build`, the time
//! the bare publisher's untimed preparation took per message (subject lookup, headers, body: the
//! work qilin-nats does per tick inside its timed run).
//!
//! Note: in async-nats `Client::flush` only writes the client's buffer to the socket; it is not a
//! server round trip. Both core-mode figures end at a flush (qilin-nats confirms its position the
//! same way), so they compare like with like.
//!
//! With `json` among the modes it also times JSON encoding alone, in this process: the map that
//! `tick_json` built up to b2d161a against `write_tick_json` (what qilin-nats does now), on the
//! same ticks, alternating which goes first.
//!
//! Run: `cargo bench -p qilin-benches --bench nats_throughput`. Environment: `QILIN_NATS_TICKS`
//! (default 200 000), `QILIN_NATS_RUNS` (default 5), `QILIN_NATS_MODES` (comma-separated subset
//! of `core,jetstream,json`, default all), `QILIN_NATS_STORAGE` (`file`, the default, or `memory`:
//! the JetStream streams' storage), `QILIN_NATS_SERVER` (default `nats-server` on `PATH`, else
//! `/usr/sbin/nats-server`). Without `--bench` (`cargo test --benches`) it runs once with 2 000
//! ticks as a smoke test.

use std::{
    collections::{HashMap, VecDeque},
    fmt::Write as _,
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::AtomicBool,
    time::{Duration, Instant},
};

use async_nats::{
    HeaderMap, Subject,
    header::{NATS_EXPECTED_LAST_SEQUENCE, NATS_MESSAGE_ID},
    jetstream::{self, stream},
};
use bytes::Bytes;
use qilin_benches::TempSegment;
use qilin_market::Instruments;
use qilin_shm::{
    Exchange, Next, Reader, SegmentOptions, Source, Start, TickRecord, Writer,
    layout::{FINGERPRINT, fingerprint_text},
    now_ns,
};
use qilin_sidecar::nats::{
    Config, EPOCH_HEADER, LAYOUT_HEADER, Mode, Payload, SEQ_HEADER, SOURCE_HEADER, Sidecar, StartAt, Stopped,
    config::{JetStreamConfig, NatsConfig, Storage},
    subject_token,
};

const FEED: &str = "bench-nats";
const QILIN_STREAM: &str = "QILIN_BENCH_Q";
const BARE_STREAM: &str = "QILIN_BENCH_B";
/// Hang guard for one measurement, never a performance bound.
const WATCHDOG: Duration = Duration::from_secs(300);
/// Messages compared between qilin-nats and the bare publisher in the warm-up (core modes).
const COMPARED: usize = 2_000;
/// Linux reports process CPU time in clock ticks of 1/100 s (USER_HZ).
const USER_HZ: f64 = 100.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    CoreRaw,
    JetStreamRaw,
    CoreJson,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::CoreRaw => "core raw",
            Kind::JetStreamRaw => "jetstream raw",
            Kind::CoreJson => "core json",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Kind::CoreRaw => "core",
            Kind::JetStreamRaw => "jetstream",
            Kind::CoreJson => "json",
        }
    }

    fn jetstream(self) -> bool {
        self == Kind::JetStreamRaw
    }

    fn payload(self) -> Payload {
        if self == Kind::CoreJson { Payload::Json } else { Payload::Raw }
    }
}

/// One message as the bare publisher sends it.
type Message = (Subject, HeaderMap, Bytes);

/// One timed measurement.
#[derive(Clone, Copy, Debug)]
struct Sample {
    ticks: u64,
    secs: f64,
    client_cpu_s: f64,
    server_cpu_s: f64,
    /// Bare publisher: seconds spent building the messages beforehand (not in `secs`).
    build_s: f64,
}

impl Sample {
    fn rate(&self) -> f64 {
        self.ticks as f64 / self.secs
    }

    fn client_us(&self) -> f64 {
        self.client_cpu_s * 1e6 / self.ticks as f64
    }

    fn server_us(&self) -> f64 {
        self.server_cpu_s * 1e6 / self.ticks as f64
    }

    fn build_us(&self) -> f64 {
        self.build_s * 1e6 / self.ticks as f64
    }
}

/// CPU time (user + system, seconds) of a process so far, from `/proc/<pid>/stat`.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    // Fields after the command name start at field 3 (state); utime and stime are fields 14, 15.
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) as f64 / USER_HZ
}

/// Wall clock and both processes' CPU time from one moment.
struct Clock {
    server_pid: String,
    wall: Instant,
    client: f64,
    server: f64,
}

impl Clock {
    fn start(server_pid: u32) -> Clock {
        let server_pid = server_pid.to_string();
        Clock { client: cpu_seconds("self"), server: cpu_seconds(&server_pid), wall: Instant::now(), server_pid }
    }

    fn stop(self, ticks: u64) -> Sample {
        let secs = self.wall.elapsed().as_secs_f64();
        Sample {
            ticks,
            secs,
            client_cpu_s: cpu_seconds("self") - self.client,
            server_cpu_s: cpu_seconds(&self.server_pid) - self.server,
            build_s: 0.0,
        }
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v.trim().replace('_', "").parse().unwrap_or_else(|_| panic!("{name}={v:?}: not a number")),
        Err(_) => default,
    }
}

/// Waits until the server has processed everything this client sent before (a subscription, say):
/// a request nobody answers comes back as "no responders" from the server itself. `flush` is not
/// such a barrier: in async-nats it only writes the client's buffer to the socket.
async fn barrier(client: &async_nats::Client) {
    match client.request("qilin-bench.barrier", Bytes::new()).await {
        Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => {}
        other => panic!("barrier request: expected no responders, got {other:?}"),
    }
}

/// A real nats-server with JetStream (file store) on a loopback port; killed on drop.
struct NatsServer {
    port: u16,
    version: String,
    child: Child,
}

impl NatsServer {
    fn start(dir: &Path) -> NatsServer {
        let binary = std::env::var("QILIN_NATS_SERVER").unwrap_or_else(|_| {
            let on_path = Command::new("nats-server").arg("--version").output().is_ok_and(|o| o.status.success());
            if on_path { "nats-server".into() } else { "/usr/sbin/nats-server".into() }
        });
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let store = dir.join("jetstream");
        let conf = dir.join("nats-server.conf");
        std::fs::write(
            &conf,
            format!("listen: 127.0.0.1:{port}\njetstream {{ store_dir: {:?} }}\n", store.display().to_string()),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("nats-server.log")).unwrap();
        let child = Command::new(&binary)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary} (Debian: apt-get install nats-server): {e}"));
        let version = Command::new(&binary)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        let server = NatsServer { port, version, child };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen on port {port} within 30 s");
            std::thread::sleep(Duration::from_millis(10));
        }
        server
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The status directory the sidecar keeps beside the segment; removed on drop.
struct SidecarsDir(PathBuf);

impl Drop for SidecarsDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Creates the segment with every instrument of `config/instruments.toml` and `ticks` ticks, round
/// robin over the instruments, prices walking around each product's reference price.
fn fill_segment(path: &Path, ticks: u64) -> (Writer, usize) {
    let products = Instruments::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/instruments.toml"))
        .expect("config/instruments.toml");
    let list: Vec<(Exchange, &str, f64, f64, u32)> = products
        .products()
        .iter()
        .flat_map(|p| {
            p.instruments
                .iter()
                .map(move |id| (p.exchange, id.as_str(), p.reference_price, p.price_tick, p.volume_multiple))
        })
        .collect();
    let options = SegmentOptions {
        feed_name: FEED.into(),
        ring_slots: ticks.next_power_of_two().max(1024),
        instrument_capacity: list.len() as u32,
    };
    let mut writer = Writer::open(path, &options).expect("creating the benchmark segment in /dev/shm");
    for (exchange, id, _, tick, multiple) in &list {
        writer.add_instrument(id, *exchange, *multiple, *tick).expect("adding an instrument");
    }
    for k in 0..ticks {
        let i = (k % list.len() as u64) as usize;
        let step = k / list.len() as u64;
        let (exchange, id, reference, tick, _) = list[i];
        let mut r = TickRecord::ZERO;
        let base = (reference / tick).round() * tick;
        let price = base + tick * ((step % 21) as f64 - 10.0);
        let ms = 9 * 3_600_000 + (step as u32 % 40_000) * 500;
        r.exchange_time_ns = 1_772_413_200_000_000_000 + i64::from(ms) * 1_000_000;
        r.receive_ns = r.exchange_time_ns + 1_500_000;
        r.instrument_index = i as u32;
        r.trading_day = 20260302;
        r.action_day = 20260302;
        r.update_time_ms = ms;
        r.exchange = exchange as u8;
        r.source = Source::Primary as u8;
        r.instrument_id[..id.len()].copy_from_slice(id.as_bytes());
        r.last_price = price;
        r.pre_settlement_price = base;
        r.pre_close_price = base + tick;
        r.pre_open_interest = 185_000.0;
        r.open_price = base - tick;
        r.highest_price = base + 12.0 * tick;
        r.lowest_price = base - 12.0 * tick;
        r.volume = 10_000 + step as i64 * 3;
        r.turnover = r.volume as f64 * price * 10.0;
        r.open_interest = 186_100.0 + (step % 50) as f64;
        r.close_price = f64::NAN;
        r.settlement_price = f64::NAN;
        r.upper_limit_price = base * 1.08;
        r.lower_limit_price = base * 0.92;
        r.pre_delta = f64::NAN;
        r.curr_delta = f64::NAN;
        r.average_price = price - tick / 2.0;
        r.banding_upper_price = f64::NAN;
        r.banding_lower_price = f64::NAN;
        for level in 0..5 {
            r.bid_price[level] = price - tick * (level as f64 + 1.0);
            r.ask_price[level] = price + tick * level as f64;
            r.bid_volume[level] = 10 + (step as i32 + level as i32) % 90;
            r.ask_volume[level] = 20 + (step as i32 * 7 + level as i32) % 90;
        }
        r.publish_ns = now_ns();
        writer.publish(&mut r).expect("publishing a tick");
    }
    (writer, list.len())
}

/// Shared set-up of every measurement.
struct Bench {
    dir: PathBuf,
    segment: PathBuf,
    url: String,
    server_pid: u32,
    ticks: u64,
    prefix: String,
    window: usize,
    storage: Storage,
}

impl Bench {
    fn config(&self, kind: Kind, tag: &str) -> Config {
        let defaults = Config::default();
        let config = Config {
            name: format!("bench-{tag}"),
            segment: self.segment.clone(),
            state_dir: self.dir.join(format!("state-{tag}")),
            start: StartAt::Oldest,
            nats: NatsConfig {
                urls: vec![self.url.clone()],
                mode: if kind.jetstream() { Mode::Jetstream } else { Mode::Core },
                payload: kind.payload(),
                ..defaults.nats.clone()
            },
            jetstream: JetStreamConfig {
                stream: QILIN_STREAM.into(),
                storage: self.storage,
                ..defaults.jetstream.clone()
            },
            ..defaults
        };
        config.validate("nats_throughput").expect("a valid config");
        config
    }

    /// The messages qilin-nats publishes for the segment's ticks, built the way a publisher that
    /// already holds them would hand them over.
    fn messages(&self, kind: Kind) -> Vec<Message> {
        let mut reader = Reader::open(&self.segment).expect("opening the segment");
        reader.seek(Start::Oldest);
        let epoch = reader.epoch().to_string();
        let layout = fingerprint_text(FINGERPRINT);
        let mut subjects: HashMap<(u8, [u8; 32]), Subject> = HashMap::new();
        let mut out = Vec::with_capacity(self.ticks as usize);
        let mut tick = TickRecord::ZERO;
        loop {
            match reader.try_next(&mut tick) {
                Next::Tick => {}
                Next::Empty => break,
                other => panic!("unexpected {other:?} reading the benchmark segment"),
            }
            let subject = subjects
                .entry((tick.exchange, tick.instrument_id))
                .or_insert_with(|| {
                    let exchange = qilin_market::names::exchange_name(tick.exchange);
                    let id = tick.instrument_id_str().unwrap_or("");
                    Subject::from(format!("{}.{}.{}", self.prefix, subject_token(exchange), subject_token(id)))
                })
                .clone();
            let mut headers = HeaderMap::new();
            headers.insert(NATS_MESSAGE_ID, format!("{FEED}-{}", tick.sequence).as_str());
            headers.insert(SEQ_HEADER, tick.sequence.to_string().as_str());
            headers.insert(EPOCH_HEADER, epoch.as_str());
            if kind.jetstream() {
                // A fresh stream: message k follows stream sequence k - 1.
                headers.insert(NATS_EXPECTED_LAST_SEQUENCE, (tick.sequence - 1).to_string().as_str());
            }
            headers.insert(SOURCE_HEADER, qilin_market::names::source_name(tick.source));
            let body = match kind.payload() {
                Payload::Raw => {
                    headers.insert(LAYOUT_HEADER, layout.as_str());
                    Bytes::copy_from_slice(zerocopy::IntoBytes::as_bytes(&tick))
                }
                Payload::Json => {
                    let mut body = Vec::new();
                    qilin_market::names::write_tick_json(&tick, &mut body);
                    Bytes::from(body)
                }
            };
            out.push((subject, headers, body));
        }
        assert_eq!(out.len() as u64, self.ticks, "the segment holds every tick");
        out
    }

    async fn connect(&self) -> async_nats::Client {
        async_nats::ConnectOptions::new()
            .client_capacity(Config::default().nats.client_capacity)
            .connect(&self.url)
            .await
            .expect("connecting to the benchmark nats-server")
    }

    fn context(&self, client: async_nats::Client) -> jetstream::Context {
        // As the sidecar builds its own.
        jetstream::ContextBuilder::new()
            .timeout(Duration::from_millis(Config::default().nats.request_timeout_ms))
            .max_ack_inflight(self.window + 1)
            .backpressure_on_inflight(true)
            .build(client)
    }

    /// Stream sequences `1`, the middle and the last, as stored.
    async fn stored(&self, js: &jetstream::Context, name: &str) -> Vec<Message> {
        let stream = js.get_stream(name).await.expect("the stream");
        let info = stream.cached_info();
        assert_eq!(info.state.messages, self.ticks, "stream {name} holds every tick");
        assert_eq!(info.state.last_sequence, self.ticks, "stream {name} holds every tick once");
        let mut out = Vec::new();
        for seq in [1, self.ticks.div_ceil(2), self.ticks] {
            let m = stream.get_raw_message(seq).await.expect("a stored message");
            out.push((m.subject, m.headers, m.payload));
        }
        out
    }

    /// qilin-nats from sequence 1 to N. With `check`, also returns what it published (core: the
    /// first messages a subscriber receives; JetStream: three stored messages).
    async fn qilin(&self, kind: Kind, tag: &str, check: bool) -> (Sample, Vec<Message>) {
        let reader = Reader::open(&self.segment).expect("opening the segment");
        let stop = AtomicBool::new(false);
        let mut sidecar = Sidecar::start(self.config(kind, tag), reader, &stop).await.expect("starting qilin-nats");
        let watcher = if check && !kind.jetstream() {
            let client = self.connect().await;
            let mut sub = client.subscribe(format!("{}.>", self.prefix)).await.unwrap();
            barrier(&client).await;
            Some(tokio::spawn(async move {
                use futures::StreamExt as _;
                let mut got = Vec::new();
                while got.len() < COMPARED {
                    // Bounded: a message the subscriber never gets fails the comparison, not the run.
                    match tokio::time::timeout(Duration::from_secs(10), sub.next()).await {
                        Ok(Some(m)) => got.push((m.subject, m.headers.unwrap_or_default(), m.payload)),
                        _ => break,
                    }
                }
                drop(client);
                got
            }))
        } else {
            None
        };
        let clock = Clock::start(self.server_pid);
        let stopped = tokio::time::timeout(WATCHDOG, sidecar.run(&stop, Some(self.ticks)))
            .await
            .expect("qilin-nats within the watchdog")
            .expect("qilin-nats run");
        let sample = clock.stop(self.ticks);
        assert_eq!(stopped, Stopped::Reached);
        let c = sidecar.counters().clone();
        assert_eq!(sidecar.confirmed(), self.ticks);
        assert_eq!((c.published, c.acked, c.errors, c.gaps, c.retried), (self.ticks, self.ticks, 0, 0, 0), "{c:?}");
        drop(sidecar);
        let mut seen = Vec::new();
        if let Some(watcher) = watcher {
            seen = watcher.await.unwrap();
        }
        if kind.jetstream() {
            let js = self.context(self.connect().await);
            if check {
                seen = self.stored(&js, QILIN_STREAM).await;
            } else {
                let info = js.get_stream(QILIN_STREAM).await.unwrap();
                assert_eq!(info.cached_info().state.messages, self.ticks);
            }
            js.delete_stream(QILIN_STREAM).await.expect("deleting the qilin stream");
        }
        (sample, seen)
    }

    /// A bare async-nats publisher of the same messages.
    async fn bare(&self, kind: Kind, check: bool) -> (Sample, Vec<Message>) {
        let built = Instant::now();
        let messages = self.messages(kind);
        let build_s = built.elapsed().as_secs_f64();
        let client = self.connect().await;
        if !kind.jetstream() {
            let clock = Clock::start(self.server_pid);
            let publish = async {
                for (subject, headers, body) in messages {
                    client.publish_with_headers(subject, headers, body).await.expect("publish");
                }
                client.flush().await.expect("flush");
            };
            tokio::time::timeout(WATCHDOG, publish).await.expect("bare publisher within the watchdog");
            return (Sample { build_s, ..clock.stop(self.ticks) }, Vec::new());
        }
        let js = self.context(client);
        let defaults = Config::default().jetstream;
        js.create_stream(stream::Config {
            name: BARE_STREAM.into(),
            subjects: vec![format!("{}.>", self.prefix)],
            storage: match self.storage {
                Storage::File => stream::StorageType::File,
                Storage::Memory => stream::StorageType::Memory,
            },
            num_replicas: defaults.replicas,
            max_age: Duration::from_secs(defaults.max_age_s),
            max_bytes: -1,
            duplicate_window: Duration::from_secs(defaults.duplicate_window_s),
            ..Default::default()
        })
        .await
        .expect("creating the bare stream");
        let window = self.window;
        let clock = Clock::start(self.server_pid);
        let publish = async {
            let mut pending = VecDeque::with_capacity(window);
            for (subject, headers, body) in messages {
                if pending.len() >= window {
                    let ack: jetstream::context::PublishAckFuture = pending.pop_front().unwrap();
                    ack.await.expect("ack");
                }
                pending.push_back(js.publish_with_headers(subject, headers, body).await.expect("publish"));
            }
            while let Some(ack) = pending.pop_front() {
                ack.await.expect("ack");
            }
        };
        tokio::time::timeout(WATCHDOG, publish).await.expect("bare JetStream publisher within the watchdog");
        let sample = Sample { build_s, ..clock.stop(self.ticks) };
        let seen = if check {
            self.stored(&js, BARE_STREAM).await
        } else {
            let info = js.get_stream(BARE_STREAM).await.unwrap();
            assert_eq!(info.cached_info().state.messages, self.ticks);
            Vec::new()
        };
        js.delete_stream(BARE_STREAM).await.expect("deleting the bare stream");
        (sample, seen)
    }
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

fn spread(values: &[f64], scale: f64, digits: usize) -> String {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min) * scale;
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max) * scale;
    format!("{:.digits$} ({min:.digits$}–{max:.digits$})", median(values) * scale)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let ticks = env_u64("QILIN_NATS_TICKS", if bench { 200_000 } else { 2_000 });
    let runs = env_u64("QILIN_NATS_RUNS", if bench { 5 } else { 1 }) as usize;
    assert!(ticks >= 2 && runs >= 1, "QILIN_NATS_TICKS ≥ 2 and QILIN_NATS_RUNS ≥ 1");
    let modes = std::env::var("QILIN_NATS_MODES").unwrap_or_else(|_| "core,jetstream,json".into());
    let all = [Kind::CoreRaw, Kind::JetStreamRaw, Kind::CoreJson];
    for mode in modes.split(',').map(str::trim) {
        assert!(all.iter().any(|k| k.key() == mode), "QILIN_NATS_MODES: {mode:?} is not one of core, jetstream, json");
    }
    let kinds: Vec<Kind> = all.into_iter().filter(|k| modes.split(',').any(|m| m.trim() == k.key())).collect();
    let storage = match std::env::var("QILIN_NATS_STORAGE").as_deref() {
        Err(_) | Ok("file") => Storage::File,
        Ok("memory") => Storage::Memory,
        Ok(other) => panic!("QILIN_NATS_STORAGE={other:?}: file or memory"),
    };

    let dir = tempfile::Builder::new().prefix("qilin-nats-bench-").tempdir().expect("a temporary directory");
    let server = NatsServer::start(dir.path());
    let segment = TempSegment::new("nats");
    let _sidecars = SidecarsDir(PathBuf::from(format!("{}.sidecars", segment.path().display())));
    let started = Instant::now();
    let (_writer, instruments) = fill_segment(segment.path(), ticks);
    let b = Bench {
        dir: dir.path().to_path_buf(),
        segment: segment.path().to_path_buf(),
        url: server.url(),
        server_pid: server.pid(),
        ticks,
        prefix: Config::default().subject_prefix(FEED),
        window: Config::default().jetstream.ack_window,
        storage,
    };
    // Body and header block (`NATS/1.0` line, `Name: value` lines, blank line) of a raw JetStream message.
    let (body_len, header_len) = {
        let m = b.messages(Kind::JetStreamRaw);
        let (_, headers, body) = &m[m.len() / 2];
        let lines: usize = headers
            .iter()
            .map(|(k, v)| v.iter().map(|v| AsRef::<str>::as_ref(k).len() + 2 + v.as_str().len() + 2).sum::<usize>())
            .sum();
        (body.len(), 10 + lines + 2)
    };
    println!(
        "qilin-nats throughput: {ticks} ticks per run ({instruments} instruments, 6 exchanges), {runs} runs + 1 \
         warm-up; {} at {} (JetStream {} store in {}); ack window {}; raw body {body_len} B + header block \
         {header_len} B; load average {}",
        server.version,
        b.url,
        if storage == Storage::File { "file" } else { "memory" },
        dir.path().display(),
        b.window,
        loadavg()
    );

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    // results[kind] = (qilin samples, bare samples)
    let mut results: Vec<(Vec<Sample>, Vec<Sample>)> = vec![(Vec::new(), Vec::new()); kinds.len()];
    let mut lines = String::new();
    runtime.block_on(async {
        for run in 0..=runs {
            let warmup = run == 0;
            for (k, &kind) in kinds.iter().enumerate() {
                let tag = format!("{}-{run}", kind.key());
                eprintln!("{} {}", if warmup { "warm-up".to_string() } else { format!("run {run}") }, kind.name());
                let ((q, q_seen), (bare, b_seen)) = if run % 2 == 1 {
                    let q = b.qilin(kind, &tag, warmup).await;
                    (q, b.bare(kind, warmup).await)
                } else {
                    let bare = b.bare(kind, warmup).await;
                    (b.qilin(kind, &tag, warmup).await, bare)
                };
                if warmup {
                    let expect = if kind.jetstream() {
                        b_seen
                    } else {
                        b.messages(kind).into_iter().take(q_seen.len()).collect()
                    };
                    let want = if kind.jetstream() { 3 } else { COMPARED.min(ticks as usize) };
                    assert_eq!(q_seen.len(), want, "{}: messages captured from qilin-nats", kind.name());
                    assert_eq!(q_seen.len(), expect.len(), "{}: messages compared", kind.name());
                    for (i, (q, e)) in q_seen.iter().zip(&expect).enumerate() {
                        assert!(q == e, "{}: message {i} differs: qilin-nats {q:?}, bare {e:?}", kind.name());
                    }
                } else {
                    results[k].0.push(q);
                    results[k].1.push(bare);
                }
                let _ = writeln!(
                    lines,
                    "{:>7} {:<14} {:>8.1} {:>8.1} {:>6.3} {:>9.2} {:>9.2} {:>7.2} {:>9.2} {:>9.2}",
                    if warmup { "warm-up".to_string() } else { run.to_string() },
                    kind.name(),
                    q.rate() / 1e3,
                    bare.rate() / 1e3,
                    q.rate() / bare.rate(),
                    q.client_us(),
                    bare.client_us(),
                    bare.build_us(),
                    q.server_us(),
                    bare.server_us()
                );
            }
        }
    });
    println!(
        "\nper run (bare first in the warm-up and even runs, qilin first in odd runs): k ticks/s; CPU µs per tick \
         of this process (qilin / bare) and of nats-server; build: µs per message the bare publisher spent \
         preparing, untimed"
    );
    println!(
        "{:>7} {:<14} {:>8} {:>8} {:>6} {:>9} {:>9} {:>7} {:>9} {:>9}",
        "run", "mode", "qilin", "bare", "ratio", "qilin cpu", "bare cpu", "build", "server q", "server b"
    );
    print!("{lines}");
    println!("\nsummary over {runs} runs: median (min–max)");
    println!(
        "{:<14} {:>22} {:>22} {:>22} {:>19} {:>19} {:>22}  verdict",
        "mode",
        "qilin k ticks/s",
        "bare k ticks/s",
        "ratio qilin/bare",
        "qilin cpu µs/tick",
        "bare cpu µs/tick",
        "cpu ratio bare/qilin"
    );
    for (k, &kind) in kinds.iter().enumerate() {
        let (q, bare) = &results[k];
        let qr: Vec<f64> = q.iter().map(Sample::rate).collect();
        let br: Vec<f64> = bare.iter().map(Sample::rate).collect();
        let ratios: Vec<f64> = qr.iter().zip(&br).map(|(a, b)| a / b).collect();
        let qc: Vec<f64> = q.iter().map(Sample::client_us).collect();
        let bc: Vec<f64> = bare.iter().map(Sample::client_us).collect();
        let cpu_ratios: Vec<f64> = qc.iter().zip(&bc).map(|(q, b)| b / q).collect();
        let met = |ok: bool| if ok { "met" } else { "MISSED" };
        let verdict = match kind {
            Kind::CoreRaw => {
                format!("≥ 300 k/s: {}; ≥ 0.8 × bare: {}", met(median(&qr) >= 300e3), met(median(&ratios) >= 0.8))
            }
            Kind::JetStreamRaw => format!("≥ 100 k/s: {}", met(median(&qr) >= 100e3)),
            Kind::CoreJson => "(no target)".into(),
        };
        println!(
            "{:<14} {:>22} {:>22} {:>22} {:>19} {:>19} {:>22}  {verdict}",
            kind.name(),
            spread(&qr, 1e-3, 1),
            spread(&br, 1e-3, 1),
            spread(&ratios, 1.0, 3),
            spread(&qc, 1.0, 2),
            spread(&bc, 1.0, 2),
            spread(&cpu_ratios, 1.0, 3),
        );
    }
    if kinds.contains(&Kind::CoreJson) {
        json_encoding(&b.segment, runs);
    }
    println!("\nload average at the end {}; total {:.1} s", loadavg(), started.elapsed().as_secs_f64());
}

/// JSON encoding alone, in this process, over the segment's ticks: the map of before
/// (`serde_json::to_vec(&tick_json_map(t))`, kept in `qilin_market::names`) against qilin-nats' body
/// today (`write_tick_json` into a `Vec` sized as the sidecar sizes it), `runs` rounds, alternating which goes first. Both
/// produce the same bytes (checked on every tick first).
fn json_encoding(segment: &Path, runs: usize) {
    let mut reader = Reader::open(segment).expect("opening the segment");
    reader.seek(Start::Oldest);
    let mut ticks = Vec::new();
    let mut tick = TickRecord::ZERO;
    while reader.try_next(&mut tick) == Next::Tick {
        ticks.push(tick);
    }
    let mut longest = 0;
    for t in &ticks {
        let mut body = Vec::new();
        qilin_market::names::write_tick_json(t, &mut body);
        assert_eq!(
            body,
            serde_json::to_vec(&qilin_market::names::tick_json_map(t)).unwrap(),
            "sequence {}",
            t.sequence
        );
        longest = longest.max(body.len());
    }
    let capacity = longest + 128;
    let map = |ticks: &[TickRecord]| {
        let start = Instant::now();
        let mut bytes = 0;
        for t in ticks {
            bytes += std::hint::black_box(serde_json::to_vec(&qilin_market::names::tick_json_map(t)).unwrap()).len();
        }
        (start.elapsed().as_secs_f64() * 1e9 / ticks.len() as f64, bytes)
    };
    let strukt = |ticks: &[TickRecord]| {
        let start = Instant::now();
        let mut bytes = 0;
        for t in ticks {
            let mut body = Vec::with_capacity(capacity);
            qilin_market::names::write_tick_json(t, &mut body);
            bytes += std::hint::black_box(body).len();
        }
        (start.elapsed().as_secs_f64() * 1e9 / ticks.len() as f64, bytes)
    };
    println!(
        "\nJSON encoding alone ({} ticks, bodies of {longest} B at most): ns per tick, map (tick_json up to b2d161a) \
         and struct (write_tick_json); map first in odd rounds",
        ticks.len()
    );
    let (mut maps, mut structs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..=runs {
        let ((m, mb), (s, sb)) = if round % 2 == 1 {
            let m = map(&ticks);
            (m, strukt(&ticks))
        } else {
            let s = strukt(&ticks);
            (map(&ticks), s)
        };
        assert_eq!(mb, sb, "the same bytes");
        println!(
            "{:>7} map {m:>8.0} struct {s:>8.0} ratio {:>6.2}",
            if round == 0 { "warm-up".into() } else { round.to_string() },
            m / s
        );
        if round > 0 {
            maps.push(m);
            structs.push(s);
            ratios.push(m / s);
        }
    }
    println!(
        "median (min–max): map {} ns, struct {} ns, map ÷ struct {}",
        spread(&maps, 1.0, 0),
        spread(&structs, 1.0, 0),
        spread(&ratios, 1.0, 2)
    );
}
