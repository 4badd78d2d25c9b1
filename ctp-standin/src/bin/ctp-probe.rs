//! `ctp-probe`: loads a CTP market-data library (the vendor's `thostmduserapi_se.so` 6.7.11 or the
//! stand-in) through ctp2rs, as qilin-core does, runs one scenario and prints what it observed as
//! one JSON object on stdout. `tests/tests/ctp_library.rs` runs it on both libraries and compares.
//!
//! ```text
//! ctp-probe create <library> <flow-path>
//!     CreateFtdcMdApi(flow-path) and nothing else: {"version", "api": whether an API object came
//!     back, "flow_files"}. The vendor's library kills the process here when the flow directory is
//!     missing; the stand-in returns NULL.
//! ctp-probe run <library> <front> <flow-path> <disconnects> [timeout-seconds]
//!     CreateFtdcMdApi, RegisterSpi, RegisterFront(front), Init, then waits for <disconnects>
//!     OnFrontDisconnected callbacks (the front, a listener of the test, closes the connections),
//!     then Release: {"version", "flow_files", "threads": {before_create, after_create,
//!     after_init, after_release}, "caller_tid", "callbacks": [{event, reason, tid, at_ms}],
//!     "callbacks_after_release", "trading_day_before_init", "trading_day_before_login",
//!     "timed_out"}.
//! ctp-probe fetch <tmpdir>
//!     Downloads the vendor's library (hash-checked) into <tmpdir>/ctp-sdk-6.7.11/ unless it is
//!     there, as the tests do, and prints its path; exits 1 saying why it cannot (`scripts/test`).
//! ```
//!
//! It runs in a process of its own so that the thread counts (`/proc/self/task`) are the library's
//! threads and this one's only. The library's own stdout diagnostics are moved to stderr (fd 1
//! becomes a copy of fd 2 at start), so stdout carries the JSON alone.

use std::{
    io::Write,
    path::Path,
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use ctp2rs::v1alpha1::{MdApi, MdApiBuilder, MdSpi};
use serde_json::{Value, json};

/// One callback, as the SDK's thread delivered it.
struct Callback {
    event: &'static str,
    reason: Option<i32>,
    tid: i32,
    at: Instant,
}

/// The SPI: every callback it cares about goes to the main thread with the calling thread's id.
struct Spi {
    events: mpsc::Sender<Callback>,
}

impl Spi {
    fn send(&self, event: &'static str, reason: Option<i32>) {
        let tid = nix::unistd::gettid().as_raw();
        let _ = self.events.send(Callback { event, reason, tid, at: Instant::now() });
    }
}

impl MdSpi for Spi {
    fn on_front_connected(&mut self) {
        self.send("connected", None);
    }

    fn on_front_disconnected(&mut self, reason: i32) {
        self.send("disconnected", Some(reason));
    }

    fn on_heart_beat_warning(&mut self, seconds: i32) {
        self.send("heartbeat_warning", Some(seconds));
    }
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

/// The files in the flow path's directory (the flow path ends with '/'), sorted by name.
fn flow_files(flow: &str) -> Value {
    let mut files: Vec<(String, u64)> = std::fs::read_dir(flow)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| (e.file_name().to_string_lossy().into_owned(), e.metadata().map_or(0, |m| m.len())))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files.into_iter().map(|(name, size)| json!({"name": name, "size": size})).collect()
}

fn create(library: &str, flow: &str) -> anyhow::Result<MdApi> {
    if !Path::new(library).is_file() {
        bail!("{library}: not a file");
    }
    MdApiBuilder::new()
        .with_dynlib(library)
        .flow_path(flow)
        .using_udp(false)
        .multicast(false)
        .production_mode(true)
        .build()
        .map_err(|e| anyhow::anyhow!("{e}"))
}

fn probe_create(library: &str, flow: &str) -> anyhow::Result<Value> {
    let api = create(library, flow)?;
    Ok(json!({
        "version": api.get_api_version(),
        "api": !api.api_ptr.is_null(),
        "flow_files": flow_files(flow),
    }))
}

fn probe_run(library: &str, front: &str, flow: &str, disconnects: usize, timeout: Duration) -> anyhow::Result<Value> {
    let start = Instant::now();
    let caller_tid = nix::unistd::gettid().as_raw();
    let before_create = threads();
    let mut api = create(library, flow)?;
    if api.api_ptr.is_null() {
        bail!("CreateFtdcMdApi returned NULL for the flow path {flow}");
    }
    let after_create = threads();
    let version = api.get_api_version();
    let files = flow_files(flow);
    let trading_day_before_init = api.get_trading_day();

    let (tx, rx) = mpsc::channel();
    // The SPI object is leaked on purpose: the library holds its pointer until Release, and this
    // process ends soon after (qilin-core reclaims its SPI, see core/src/session/ctp/ffi.rs).
    let spi: *mut dyn MdSpi = Box::into_raw(Box::new(Spi { events: tx }));
    api.register_spi(spi);
    api.register_front(front);
    api.init();
    let after_init = threads();

    let deadline = start + timeout;
    let mut callbacks = Vec::new();
    let mut seen = 0;
    while seen < disconnects {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(cb) = rx.recv_timeout(left) else { break };
        seen += usize::from(cb.event == "disconnected");
        callbacks.push(cb);
    }
    let timed_out = seen < disconnects;
    let trading_day_before_login = api.get_trading_day();

    // Keep the library loaded: ctp2rs's drop would unload it after Release.
    let resident = api.dynlib.take();
    // RegisterSpi(NULL), then Release(), which returns once the library's threads have stopped.
    drop(api);
    let after_release = threads();
    let callbacks_after_release = rx.try_iter().count();
    std::mem::forget(resident);

    let at_ms = |at: Instant| at.duration_since(start).as_secs_f64() * 1e3;
    Ok(json!({
        "version": version,
        "flow_files": files,
        "threads": {
            "before_create": before_create,
            "after_create": after_create,
            "after_init": after_init,
            "after_release": after_release,
        },
        "caller_tid": caller_tid,
        "callbacks": callbacks.iter().map(|c| json!({
            "event": c.event, "reason": c.reason, "tid": c.tid, "at_ms": at_ms(c.at),
        })).collect::<Vec<_>>(),
        "callbacks_after_release": callbacks_after_release,
        "trading_day_before_init": trading_day_before_init,
        "trading_day_before_login": trading_day_before_login,
        "timed_out": timed_out,
    }))
}

fn main() -> anyhow::Result<()> {
    // stdout for the JSON only: the library writes its diagnostics to fd 1, which becomes stderr.
    let json_out = nix::unistd::dup(std::io::stdout()).context("dup(stdout)")?;
    nix::unistd::dup2_stdout(std::io::stderr()).context("dup2(stderr, stdout)")?;

    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: ctp-probe fetch <tmpdir> | ctp-probe create <library> <flow-path> | \
                 ctp-probe run <library> <front> <flow-path> <disconnects> [timeout-seconds]";
    let observed = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["fetch", tmpdir] => {
            let lib =
                qilin_ctp_standin::vendor::fetch_library(std::path::Path::new(tmpdir)).map_err(anyhow::Error::msg)?;
            json!({"library": lib})
        }
        ["create", library, flow] => probe_create(library, flow)?,
        ["run", library, front, flow, disconnects, ref rest @ ..] if rest.len() <= 1 => {
            let disconnects = disconnects.parse().context("<disconnects>")?;
            let timeout = rest.first().map_or(Ok(60.0), |t| t.parse::<f64>()).context("<timeout-seconds>")?;
            probe_run(library, front, flow, disconnects, Duration::from_secs_f64(timeout))?
        }
        _ => bail!("{usage}"),
    };
    let mut out = std::fs::File::from(json_out);
    writeln!(out, "{observed}")?;
    out.flush()?;
    Ok(())
}
