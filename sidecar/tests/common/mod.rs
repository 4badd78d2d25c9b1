//! Fixtures for the sidecar process tests: a real `nats-server` (JetStream, optional TLS), a real
//! `qilin-core` on the simulator, a real `qilin-nats`, and a JetStream client that reads back what
//! the stream holds. Every wait is bounded by [`WATCHDOG`], a hang guard, never a performance bound.

#![allow(dead_code)] // each test file uses a different part

pub mod rotation;

use std::{
    fs,
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use async_nats::jetstream;
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

#[allow(unused_imports)] // each test file uses a different part
pub use qilin_testkit::{WATCHDOG, unique, wait_for, workspace_bin};

/// A TCP port free at the time of the call.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// TLS settings of a test server.
#[derive(Clone, Debug)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// With a CA file: client certificates are required and verified against it.
    pub verify_ca: Option<PathBuf>,
}

/// A real nats-server with JetStream on a loopback port; stopped on drop.
pub struct NatsServer {
    pub port: u16,
    pub dir: PathBuf,
    conf: PathBuf,
    child: Option<Child>,
}

impl NatsServer {
    pub fn start(dir: &Path) -> NatsServer {
        Self::start_with(dir, None)
    }

    pub fn start_with(dir: &Path, tls: Option<ServerTls>) -> NatsServer {
        Self::start_extra(dir, tls, "")
    }

    /// As [`NatsServer::start_with`], with `extra` lines appended to the server's config.
    pub fn start_extra(dir: &Path, tls: Option<ServerTls>, extra: &str) -> NatsServer {
        let port = free_port();
        let store = dir.join("jetstream");
        let mut conf = format!(
            "listen: 127.0.0.1:{port}\njetstream {{ store_dir: {:?} }}\n{extra}\n",
            store.display().to_string()
        );
        if let Some(tls) = tls {
            conf.push_str(&format!(
                "tls {{\n  cert_file: {:?}\n  key_file: {:?}\n",
                tls.cert.display().to_string(),
                tls.key.display().to_string()
            ));
            if let Some(ca) = tls.verify_ca {
                conf.push_str(&format!("  ca_file: {:?}\n  verify: true\n", ca.display().to_string()));
            }
            conf.push_str("  timeout: 2\n}\n");
        }
        let path = dir.join(format!("nats-server-{port}.conf"));
        fs::write(&path, conf).unwrap();
        let mut server = NatsServer { port, dir: dir.to_path_buf(), conf: path, child: None };
        server.restart();
        server
    }

    /// One node of a JetStream cluster on loopback: `name`, its client `port`, its route port and
    /// the route ports of every node (its own included, as nats-server allows).
    pub fn start_cluster_node(dir: &Path, name: &str, port: u16, route_port: u16, routes: &[u16]) -> NatsServer {
        let node_dir = dir.join(name);
        fs::create_dir_all(&node_dir).unwrap();
        let routes: Vec<String> = routes.iter().map(|p| format!("nats-route://127.0.0.1:{p}")).collect();
        let conf = format!(
            "server_name: {name}\nlisten: 127.0.0.1:{port}\njetstream {{ store_dir: {:?} }}\n\
             cluster {{\n  name: qilin-test\n  listen: 127.0.0.1:{route_port}\n  routes: [{}]\n}}\n",
            node_dir.join("jetstream").display().to_string(),
            routes.join(", "),
        );
        let path = node_dir.join("nats-server.conf");
        fs::write(&path, conf).unwrap();
        let mut server = NatsServer { port, dir: node_dir, conf: path, child: None };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port and store.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = fs::OpenOptions::new().create(true).append(true).open(self.dir.join("nats-server.log")).unwrap();
        let child = Command::new("nats-server")
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("nats-server must be installed (.ci/run installs Debian's nats-server)");
        self.child = Some(child);
        let port = self.port;
        wait_for("nats-server to listen", || TcpStream::connect(("127.0.0.1", port)).ok());
    }

    /// Stops the server with `signal` and waits for it to exit.
    pub fn stop(&mut self, signal: Signal) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), signal);
            child.wait().unwrap();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop(Signal::SIGKILL);
    }
}

/// A real qilin-core on the simulator.
pub struct Core {
    pub segment: PathBuf,
    child: Child,
    config: PathBuf,
    log: PathBuf,
}

impl Core {
    /// Simulator at `rate` ticks/s for `max_ticks` ticks into a ring of `ring_slots`.
    pub fn start(dir: &Path, feed: &str, ring_slots: u64, rate: u64, max_ticks: u64) -> Core {
        Core::start_with(dir, feed, ring_slots, rate, max_ticks, "", "")
    }

    /// As [`Core::start`], with `core_extra` lines added to `[core]` and `tail` (more tables)
    /// after `[source.sim]`. The control socket is `<dir>/core.sock`, the log `<dir>/core.log`.
    pub fn start_with(
        dir: &Path,
        feed: &str,
        ring_slots: u64,
        rate: u64,
        max_ticks: u64,
        core_extra: &str,
        tail: &str,
    ) -> Core {
        let segment = PathBuf::from(format!("/dev/shm/{feed}"));
        let config = dir.join("core.toml");
        let instruments = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/instruments.toml");
        fs::write(
            &config,
            format!(
                "[feed]\nname = {feed:?}\nsegment_path = {:?}\nring_slots = {ring_slots}\n\
                 [core]\nlock_memory = false\ncontrol_socket = {:?}\ninstruments_file = {:?}\n{core_extra}\n\
                 [source.sim]\nticks_per_second = {rate}\nmax_ticks = {max_ticks}\n{tail}\n",
                segment.display().to_string(),
                dir.join("core.sock").display().to_string(),
                instruments.display().to_string(),
            ),
        )
        .unwrap();
        fs::File::create(dir.join("core.log")).unwrap();
        let child = Core::spawn(&config, &dir.join("core.log"));
        let mut core = Core { segment, child, config, log: dir.join("core.log") };
        core.wait_running();
        core
    }

    fn spawn(config: &Path, log: &Path) -> Child {
        let log = fs::OpenOptions::new().append(true).open(log).unwrap();
        Command::new(workspace_bin("qilin-core"))
            .arg("--config")
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap()
    }

    /// Waits until this process writes the segment (the heartbeat shows its pid), failing with the
    /// core's log if it exits.
    fn wait_running(&mut self) {
        let pid = u64::from(self.child.id());
        wait_for("the core's segment", || {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("qilin-core exited ({status}):\n{}", fs::read_to_string(&self.log).unwrap_or_default());
            }
            qilin_shm::Reader::open(&self.segment).ok().filter(|r| r.writer_pid() == pid)
        });
    }

    /// SIGKILLs the core and reaps it; the segment stays.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// After [`kill`](Self::kill): the last sequence the core published. That is the write cursor,
    /// plus a slot it finished after its last cursor store when the kill fell between the two:
    /// readers may have read that tick, and a restarted core adopts it (`Writer::recover`).
    pub fn last_published(&self) -> u64 {
        let mut reader = self.reader();
        let mut last = reader.write_cursor();
        reader.seek(qilin_shm::Start::Sequence(last + 1));
        let mut tick = qilin_shm::TickRecord::ZERO;
        while let qilin_shm::Next::Tick = reader.try_next(&mut tick) {
            last = tick.sequence;
        }
        last
    }

    /// Starts the core again on the same segment with the same config (a new epoch; sequences
    /// continue; its simulator starts over).
    pub fn restart(&mut self) {
        assert!(!self.is_running(), "the core is still running");
        self.child = Core::spawn(&self.config, &self.log);
        self.wait_running();
    }

    pub fn reader(&self) -> qilin_shm::Reader {
        qilin_shm::Reader::open(&self.segment).unwrap()
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        qilin_testkit::remove_segment_and_status(&self.segment);
    }
}

/// A real qilin-nats process.
pub struct Sidecar {
    child: Option<Child>,
    config: PathBuf,
    log: PathBuf,
    envs: Vec<(String, String)>,
}

impl Sidecar {
    pub fn start(config: &Path, log: &Path) -> Sidecar {
        Self::start_with_env(config, log, Vec::new())
    }

    pub fn start_with_env(config: &Path, log: &Path, envs: Vec<(String, String)>) -> Sidecar {
        let mut sidecar = Sidecar { child: None, config: config.to_path_buf(), log: log.to_path_buf(), envs };
        sidecar.restart();
        sidecar
    }

    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_qilin-nats"))
            .arg("--config")
            .arg(&self.config)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    pub fn signal(&mut self, signal: Signal) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        kill(Pid::from_raw(child.id() as i32), signal).unwrap();
        child.wait().unwrap()
    }

    /// Waits for the process to exit on its own.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        wait_for("qilin-nats to exit", || child.try_wait().unwrap())
    }

    /// Sends `signal` without waiting for an exit (SIGSTOP, SIGCONT).
    /// The running process's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn send(&self, signal: Signal) {
        let child = self.child.as_ref().expect("running");
        kill(Pid::from_raw(child.id() as i32), signal).unwrap();
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The sidecar's status file.
pub fn status(segment: &Path, name: &str) -> Option<serde_json::Value> {
    let path = qilin_market::status::status_dir(segment).join(format!("{name}.json"));
    serde_json::from_slice(&fs::read(path).ok()?).ok()
}

/// Writes a qilin-nats config for a test.
pub fn sidecar_config(dir: &Path, segment: &Path, url: &str, extra_nats: &str, extra_root: &str) -> PathBuf {
    let path = dir.join("nats.toml");
    fs::write(
        &path,
        format!(
            "name = \"nats\"\nsegment = {:?}\nstate_dir = {:?}\nstatus_interval_ms = 50\n{extra_root}\n\
             [nats]\nurls = [{url:?}]\nreconnect_max_delay_ms = 200\nrequest_timeout_ms = 1000\n{extra_nats}\n",
            segment.display().to_string(),
            dir.join("state").display().to_string(),
        ),
    )
    .unwrap();
    path
}

/// One message of the stream, as the test sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stored {
    Tick { seq: u64, subject: String },
    Gap { first: u64, last: u64 },
}

/// The stream name qilin-nats uses by default for `feed` (docs/SIDECARS.md: `QILIN_<FEED>`).
pub fn stream_name(feed: &str) -> String {
    format!("QILIN_{}", feed.to_ascii_uppercase().replace('-', "_"))
}

/// A current-thread tokio runtime for the test's own NATS client.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// A child process killed (SIGKILL) and reaped however the test ends.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads every message of `stream` in stream order (an ephemeral pull consumer, no acks).
pub async fn stream_contents(url: &str, stream: &str) -> Vec<Stored> {
    stream_contents_with(async_nats::ConnectOptions::new(), url, stream).await
}

/// [`stream_contents`] with the test's own connect options (TLS, credentials).
pub async fn stream_contents_with(options: async_nats::ConnectOptions, url: &str, stream: &str) -> Vec<Stored> {
    let mut out = Vec::new();
    for m in stream_messages(options, url, stream).await {
        let header = |k: &str| m.headers.as_ref().and_then(|h| h.get(k)).map(|v| v.as_str().parse::<u64>().unwrap());
        if let Some(first) = header("Qilin-Gap-First") {
            out.push(Stored::Gap { first, last: header("Qilin-Gap-Last").unwrap() });
        } else {
            let seq = header("Qilin-Seq").unwrap();
            let record = <qilin_shm::TickRecord as zerocopy::FromBytes>::read_from_bytes(&m.payload[..]).unwrap();
            assert_eq!(record.sequence, seq, "header and body disagree");
            out.push(Stored::Tick { seq, subject: m.subject.to_string() });
        }
    }
    out
}

/// Every message `stream` holds now, in stream order, read by an ephemeral pull consumer without
/// acks (the stream is left as it is).
pub async fn stream_messages(options: async_nats::ConnectOptions, url: &str, stream: &str) -> Vec<jetstream::Message> {
    use futures::StreamExt;
    let client = options.connect(url).await.unwrap();
    let js = jetstream::new(client);
    let mut stream = js.get_stream(stream).await.unwrap();
    let total = stream.info().await.unwrap().state.messages as usize;
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::Config {
            ack_policy: jetstream::consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut out = Vec::with_capacity(total);
    while out.len() < total {
        out.push(tokio::time::timeout(WATCHDOG, messages.next()).await.expect("watchdog").unwrap().unwrap());
    }
    out
}

/// Checks that `stored` holds every sequence from 1 to `last` exactly once and in order, each
/// either as a tick or inside one gap event. Returns the gap events.
pub fn assert_exactly_once(stored: &[Stored], last: u64) -> Vec<(u64, u64)> {
    let mut next = 1;
    let mut gaps = Vec::new();
    for (i, s) in stored.iter().enumerate() {
        match *s {
            Stored::Tick { seq, .. } => {
                assert_eq!(seq, next, "message {i}: expected sequence {next}, found tick {seq}");
                next += 1;
            }
            Stored::Gap { first, last } => {
                assert_eq!(first, next, "message {i}: gap {first}..={last} does not start at {next}");
                assert!(last >= first);
                gaps.push((first, last));
                next = last + 1;
            }
        }
    }
    assert_eq!(next, last + 1, "the stream ends at sequence {} instead of {last}", next - 1);
    gaps
}

/// Freezes the core (SIGSTOP) once it has published `at` ticks, runs `f` while it stays frozen, then
/// thaws it (SIGCONT), so what `f` waits for (a sidecar catching up, say) cannot let the core run
/// ahead however loaded the machine is: a lap that must follow has its ticks still to come. The
/// heartbeat is quiet meanwhile on purpose: call `CoreWatch::reset` afterwards.
pub fn while_core_frozen_at<T>(core: &Core, at: u64, f: impl FnOnce() -> T) -> T {
    use nix::sys::signal::{Signal, kill};
    let pid = nix::unistd::Pid::from_raw(core.pid() as i32);
    wait_for(&format!("{at} ticks"), || (core.reader().write_cursor() >= at).then_some(()));
    kill(pid, Signal::SIGSTOP).unwrap();
    // kill returns before the threads stop: until each is, the hot one may still publish (and `f`
    // would read a write cursor that moves on under it).
    wait_for("every thread of the core stopped", || all_threads_stopped(core.pid()).then_some(()));
    let result = f();
    kill(pid, Signal::SIGCONT).unwrap();
    result
}

/// Whether every thread of process `pid` is stopped (state `T` in `/proc/<pid>/task/*/stat`).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else { return false };
    tasks.filter_map(Result::ok).all(|task| {
        // The state follows the command name, which is in parentheses and may hold spaces.
        fs::read_to_string(task.path().join("stat"))
            .ok()
            .and_then(|stat| stat.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with('T')))
            .unwrap_or(false)
    })
}

/// Watches the core while a test runs: the largest heartbeat age seen. A stall of the core caused
/// by a sidecar would show here; the bound checked at the end is a hang guard, not a latency figure.
pub struct CoreWatch {
    reader: qilin_shm::Reader,
    pub max_heartbeat_age_ns: i64,
    /// The hot thread's `/proc/<pid>/task/<tid>` and its voluntary context switches and major page
    /// faults when the watch started.
    hot: (PathBuf, u64, u64),
}

/// The core's hot thread (named `qilin-hot`): its /proc directory, and its voluntary context
/// switches and major page faults now.
fn hot_thread(pid: u32) -> (PathBuf, u64, u64) {
    let tasks = PathBuf::from(format!("/proc/{pid}/task"));
    let task = wait_for("the core's hot thread", || {
        fs::read_dir(&tasks)
            .ok()?
            .filter_map(Result::ok)
            .map(|t| t.path())
            .find(|task| fs::read_to_string(task.join("comm")).is_ok_and(|c| c.trim() == "qilin-hot"))
    });
    let (switches, faults) = (voluntary_switches(&task), major_faults(&task));
    (task, switches, faults)
}

fn voluntary_switches(task: &Path) -> u64 {
    let status = task.join("status");
    let text = fs::read_to_string(&status).unwrap_or_else(|e| panic!("{}: {e}", status.display()));
    text.lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no voluntary_ctxt_switches in {}", status.display()))
}

/// `majflt` of `task/stat` (field 12): page faults that had to wait for a read.
fn major_faults(task: &Path) -> u64 {
    let stat = task.join("stat");
    let text = fs::read_to_string(&stat).unwrap_or_else(|e| panic!("{}: {e}", stat.display()));
    let after_comm = &text[text.rfind(')').expect("comm in stat") + 1..];
    after_comm.split_whitespace().nth(9).and_then(|v| v.parse().ok()).expect("majflt in stat")
}

impl CoreWatch {
    pub fn new(core: &Core) -> CoreWatch {
        CoreWatch { reader: core.reader(), max_heartbeat_age_ns: 0, hot: hot_thread(core.pid()) }
    }

    pub fn sample(&mut self) {
        use qilin_shm::Liveness;
        if let Liveness::Live { age_ns } | Liveness::Stale { age_ns } =
            self.reader.liveness(qilin_shm::now_ns(), i64::MAX)
        {
            self.max_heartbeat_age_ns = self.max_heartbeat_age_ns.max(age_ns);
        }
    }

    /// Sleeps `d` while sampling.
    pub fn sleep(&mut self, d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end {
            self.sample();
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits until the core has published `n` ticks.
    pub fn wait_published(&mut self, n: u64) {
        let reader = qilin_shm::Reader::open(self.reader.path()).unwrap();
        wait_for("the simulator to finish", || {
            self.sample();
            (reader.write_cursor() >= n).then_some(())
        });
    }

    /// Forgets what was seen so far (after the test itself stopped the core on purpose).
    pub fn reset(&mut self, core: &Core) {
        self.reader = core.reader();
        self.max_heartbeat_age_ns = 0;
        self.hot = hot_thread(core.pid());
    }

    /// The core dropped nothing and never stalled: every simulated tick was published, nothing was
    /// dropped at the hand-off, and the hot thread never blocked. That is what its loop promises
    /// (it busy-polls, and nothing on it waits for a reader, a sidecar or a lock), and the kernel
    /// counts it exactly: a thread that blocks, even once, gets a voluntary context switch; one
    /// that is only preempted by other work on a busy machine gets none. The one wait the code
    /// cannot prevent here is a code or data page read back from disk (these cores run without
    /// `lock_memory`, which production sets): each is a major fault of the thread, and no more
    /// waits than those are allowed. The largest heartbeat age
    /// seen is reported (it measures the machine's scheduling as much as the core); a heartbeat
    /// quiet for 5 s would mean a loop that spins without housekeeping, which fails too.
    pub fn assert_no_stall_or_drop(&self, ticks: u64) {
        use qilin_shm::Counter;
        assert_eq!(self.reader.counter(Counter::HandoffFull), 0, "hand-off drops");
        assert_eq!(self.reader.counter(Counter::TicksPublished), ticks, "ticks published");
        let (task, before, faults_before) = &self.hot;
        let (after, faults_after) = (voluntary_switches(task), major_faults(task));
        let (waits, page_ins) = (after - before, faults_after - faults_before);
        println!(
            "largest heartbeat age seen: {:.1} ms; the hot thread waited {waits} times, {page_ins} of them \
             possibly for a page read back from disk (major faults; the tests run without lock_memory)",
            self.max_heartbeat_age_ns as f64 / 1e6
        );
        assert!(waits <= page_ins, "the hot thread blocked: {waits} voluntary context switches, {page_ins} page-ins");
        assert!(
            self.max_heartbeat_age_ns < 5_000_000_000,
            "the core's heartbeat was {} ms old at one point",
            self.max_heartbeat_age_ns / 1_000_000
        );
    }
}

/// A small deterministic generator for kill times, seeded and printed so a failure can be rerun.
pub fn lcg(state: &mut u64) -> u64 {
    *state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    *state >> 33
}

/// A real qilin-recorder process.
pub struct Recorder {
    child: Option<Child>,
    config: PathBuf,
    log: PathBuf,
}

impl Recorder {
    pub fn start(config: &Path, log: &Path) -> Recorder {
        let mut recorder = Recorder { child: None, config: config.to_path_buf(), log: log.to_path_buf() };
        recorder.restart();
        recorder
    }

    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_qilin-recorder"))
            .arg("--config")
            .arg(&self.config)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    pub fn signal(&mut self, signal: Signal) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        kill(Pid::from_raw(child.id() as i32), signal).unwrap();
        wait_for("qilin-recorder to exit", || child.try_wait().unwrap())
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Writes a recorder config for a test.
pub fn recorder_config(dir: &Path, segment: &Path, journal_dir: &Path, extra_journal: &str) -> PathBuf {
    let path = dir.join("recorder.toml");
    fs::write(
        &path,
        format!(
            "name = \"recorder\"\nsegment = {:?}\njournal_dir = {:?}\nstatus_interval_ms = 50\n\
             [journal]\nretry_interval_ms = 100\n{extra_journal}\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
            segment.display().to_string(),
            journal_dir.display().to_string(),
        ),
    )
    .unwrap();
    path
}

/// Reads the feed's whole journal and checks that it holds every sequence from 1 to `last` once,
/// in order, as a tick or inside a gap record. Returns the ticks and the gap records.
pub fn read_journal(dir: &Path, feed: &str, last: u64) -> (Vec<qilin_shm::TickRecord>, Vec<qilin_journal::Gap>) {
    read_journal_keyed(dir, feed, last, None)
}

/// [`read_journal`] of an encrypted journal, read with `keys`.
pub fn read_journal_keyed(
    dir: &Path,
    feed: &str,
    last: u64,
    keys: Option<std::sync::Arc<qilin_journal::Keyring>>,
) -> (Vec<qilin_shm::TickRecord>, Vec<qilin_journal::Gap>) {
    use qilin_journal::{DirReader, Entry, journal_files, verify};
    for file in journal_files(dir, feed).unwrap() {
        verify(&file.path).unwrap_or_else(|e| panic!("{e}"));
    }
    let mut next = 1;
    let (mut ticks, mut gaps) = (Vec::new(), Vec::new());
    for entry in DirReader::open_keyed(dir, feed, 0..=u32::MAX, keys).unwrap() {
        let entry = entry.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(entry.first_sequence(), next, "expected sequence {next}, found {entry:?}");
        next = entry.last_sequence() + 1;
        match entry {
            Entry::Tick(t) => ticks.push(t),
            Entry::Gap(g) => gaps.push(g),
        }
    }
    assert_eq!(next, last + 1, "the journal ends at sequence {} instead of {last}", next - 1);
    (ticks, gaps)
}
