//! `qilin-ctp-front`: the `ctp` source on a laptop. Builds the CTP stand-in library, plays the
//! primary and backup fronts it connects to, and feeds them the simulator's ticks (raw 6.7.11
//! structs, as a front would send them). Unless `--no-core`, it also starts `qilin-core` on the
//! given config with `--demo` and hands it both sessions' credentials over the control socket, as
//! `qilin-secrets` would.
//!
//! ```sh
//! cargo run --release -p qilin-ctp-standin -- --config config/ctp-standin.toml
//! ```

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use clap::Parser;
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use qilin_core::{config::Config, sim::Simulator};
use qilin_ctp_standin::{Front, Script};
use qilin_market::{Calendar, Instruments};

#[derive(Parser, Debug)]
#[command(version, about = "Plays CTP fronts for the qilin stand-in library and feeds them the simulator's ticks")]
struct Args {
    /// The qilin-core config (source.kind = "ctp"; its source.ctp.sdk_path is where the stand-in is put).
    #[arg(long)]
    config: PathBuf,
    /// The primary front's address.
    #[arg(long, default_value = "127.0.0.1:41205")]
    listen: String,
    /// The backup front's address.
    #[arg(long, default_value = "127.0.0.1:41206")]
    backup_listen: String,
    /// Ticks per second (overrides source.sim.ticks_per_second; 0 is one round per snapshot interval).
    #[arg(long)]
    rate: Option<u64>,
    /// Only build the stand-in and play the fronts; start qilin-core yourself.
    #[arg(long)]
    no_core: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut config = Config::load(&args.config)?;
    if let Some(rate) = args.rate {
        config.source.sim.ticks_per_second = rate;
    }
    let sdk_path = config.source.ctp.sdk_path.clone();
    install_standin(&sdk_path)?;
    println!("stand-in library: {}", sdk_path.display());

    let products = Instruments::load(&config.core.instruments_file)?;
    let calendar = Calendar::load_dir(&config.core.calendar_dir)?;
    let sim = Simulator::new(&config.source.sim, &products)?.with_calendar(calendar);
    let script = Script { trading_day: sim.trading_day_now().to_string(), ..Script::default() };
    let fronts = Arc::new([
        Front::bind(&args.listen, script.clone()).with_context(|| format!("listening on {}", args.listen))?,
        Front::bind(&args.backup_listen, script).with_context(|| format!("listening on {}", args.backup_listen))?,
    ]);
    println!("fronts: primary {}, backup {}", fronts[0].url(), fronts[1].url());
    let feeding = fronts.clone();
    std::thread::spawn(move || {
        // Each front sends the tick if its stand-in is connected (the stand-in passes on only what
        // its session logged in and subscribed, as a front would).
        sim.run_into(|raw| {
            for front in feeding.iter() {
                let _ = front.push(raw);
            }
            true
        })
    });

    if args.no_core {
        println!(
            "serving; start qilin-core with {} and hand it credentials whose md_fronts are these fronts",
            args.config.display()
        );
        loop {
            std::thread::park();
        }
    }
    let dir = std::env::temp_dir().join(format!("qilin-ctp-front-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let socket = dir.join("control.sock");
    let mut core = Command::new(beside_me("qilin-core")?)
        .arg("--config")
        .arg(&args.config)
        .arg("--control-socket")
        .arg(&socket)
        .arg("--demo")
        .spawn()
        .context("starting qilin-core")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while UnixStream::connect(&socket).is_err() {
        if Instant::now() > deadline || core.try_wait()?.is_some() {
            let _ = core.kill();
            bail!("qilin-core did not open its control socket {}", socket.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for (session, front) in ["primary", "backup"].iter().zip(fronts.iter()) {
        let creds = serde_json::json!({"session": session, "broker_id": "9999", "user_id": format!("demo-{session}"),
                                        "password": "demo", "md_fronts": [front.url()]});
        let reply = request(&socket, &format!("credentials {creds}"))?;
        println!("credentials for {session}: {reply}");
    }
    // Ctrl-C (or SIGTERM) stops the core cleanly first: it releases both sessions while their
    // fronts are still here.
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())?;
    }
    let mut asked = false;
    let status = loop {
        if let Some(status) = core.try_wait()? {
            break status;
        }
        if stop.load(Ordering::Relaxed) && !asked {
            asked = true;
            let _ = kill(Pid::from_raw(core.id() as i32), Signal::SIGTERM);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = std::fs::remove_dir_all(&dir);
    if !status.success() {
        bail!("qilin-core exited with {status}");
    }
    Ok(())
}

/// Builds the stand-in and puts it at `sdk_path`.
fn install_standin(sdk_path: &Path) -> anyhow::Result<()> {
    let dir = sdk_path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let built = qilin_ctp_standin::build(dir).map_err(anyhow::Error::msg)?;
    let part = sdk_path.with_extension("part");
    std::fs::copy(&built, &part).with_context(|| format!("copying the stand-in to {}", part.display()))?;
    std::fs::rename(&part, sdk_path).with_context(|| format!("installing {}", sdk_path.display()))?;
    Ok(())
}

/// A binary of the workspace beside this one (built with cargo if missing, with the `ctp` source,
/// which qilin-core builds only with a feature; one built without it refuses this demo's config
/// saying how to build it).
fn beside_me(name: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::current_exe()?.with_file_name(name);
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let release = path.parent().and_then(Path::file_name).is_some_and(|n| n == "release");
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "qilin-core", "--features", "ctp-6-7-11", "--bin", name]);
        if release {
            cmd.arg("--release");
        }
        if !cmd.status()?.success() || !path.exists() {
            bail!("building {name} failed");
        }
    }
    Ok(path)
}

fn request(socket: &Path, line: &str) -> anyhow::Result<String> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    writeln!(stream, "{line}")?;
    let mut reply = String::new();
    BufReader::new(&stream).read_line(&mut reply)?;
    Ok(reply.trim().to_string())
}
