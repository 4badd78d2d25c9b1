//! `qilin-bench`: the latency harness. Given the CPUs to use, it measures in one run the floor
//! (core-to-core cache line, clock read), the segment with 1/4/16/32 reader processes (paced) and
//! one (ping-pong), the core's hand-off and UDP paths, end to end from a paced UDP sender through
//! the `qilin-core` binary to readers in Rust, C and Python, and same-run baselines (crossbeam
//! channel, Unix socket, paced and ping-pong), in interleaved rounds; prints a table, and writes
//! JSON and an SVG percentile plot. The `reader`, `uds-peer`, `segment-echo` (and `iceoryx2-sub`)
//! subcommands are the child processes it starts itself.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use qilin_benches::harness::{
    Plan,
    child::{self, From, Stamp},
    pingpong, report,
};

/// qilin-bench: latency percentiles of qilin-feed against a same-run floor and baselines.
#[derive(Debug, Parser)]
#[command(after_help = "Example: qilin-bench --cores 2,3 --json bench.json --svg bench.svg")]
struct Args {
    #[command(subcommand)]
    role: Option<Role>,
    /// CPUs to use, as the OS numbers them: the first runs writers and senders, the others the
    /// readers and the core's hot thread (at least two; pick two physical cores, isolated if you can).
    #[arg(long, value_delimiter = ',', default_value = "0,1")]
    cores: Vec<usize>,
    /// A few seconds in all (fewer samples): a smoke run, not figures.
    #[arg(long)]
    quick: bool,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the percentile plot (SVG) here.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Samples per series after the warm-up [default 500000; --quick 20000].
    #[arg(long)]
    samples: Option<u64>,
    /// Warm-up samples discarded at the start of every series [default 20000; --quick 2000].
    #[arg(long)]
    warmup: Option<u64>,
    /// Paced rate of the harness's writers and senders, ticks/s.
    #[arg(long, default_value_t = 100_000)]
    rate: u64,
    /// Rate of the paced UDP sender of the end-to-end runs (and of the core/ctp front), ticks/s
    /// (default: CTP's full-market peak, ≈ 20 k/s).
    #[arg(long, default_value_t = 20_000)]
    e2e_rate: u64,
    /// Samples per end-to-end reader [default 200000; --quick 3000].
    #[arg(long)]
    e2e_samples: Option<u64>,
    /// Split every latency series into this many rounds, run round robin and merged per series, so a
    /// change in load falls on all of them alike [default 5; --quick 2].
    #[arg(long)]
    rounds: Option<u64>,
    /// Reader counts of the segment series.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,32")]
    readers: Vec<usize>,
    /// Run only these groups (baseline, segment, core, e2e, throughput); the floor always runs.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// The qilin-core binary [default: beside this one].
    #[arg(long)]
    core_bin: Option<PathBuf>,
    /// The qilin-feed source tree (config/, shm-layout/include, python/, benches/c, benches/python).
    #[arg(long)]
    repo: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum FromArg {
    First,
    Newest,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum StampArg {
    /// The record's receive_ns.
    Receive,
    /// The paced UDP sender's due time, carried in curr_delta.
    Due,
}

#[derive(Debug, Subcommand)]
enum Role {
    /// (child) Segment reader: records now − receive_ns per tick, prints a JSON histogram.
    Reader {
        #[arg(long)]
        segment: PathBuf,
        #[arg(long)]
        cpu: usize,
        #[arg(long, value_enum)]
        from: FromArg,
        #[arg(long, value_enum, default_value = "receive")]
        stamp: StampArg,
        #[arg(long)]
        warmup: u64,
        #[arg(long)]
        count: u64,
    },
    /// (child) Unix-socket peer: connects, reads records, prints a JSON histogram.
    UdsPeer {
        #[arg(long)]
        socket: PathBuf,
        #[arg(long)]
        cpu: usize,
        #[arg(long)]
        warmup: u64,
        #[arg(long)]
        count: u64,
        /// Ping-pong: write every record back instead of timing it (then --count is the total).
        #[arg(long)]
        echo: bool,
    },
    /// (child) Segment ping-pong peer: reads --segment, publishes every tick on --answer (created).
    SegmentEcho {
        #[arg(long)]
        segment: PathBuf,
        #[arg(long)]
        answer: PathBuf,
        #[arg(long)]
        cpu: usize,
        #[arg(long)]
        count: u64,
    },
    /// Producer for keep-up runs: creates --segment and publishes pre-built ticks at --rate per
    /// second (0: as fast as it can) for --seconds, pinned to --cpu; prints a JSON summary.
    Blast {
        #[arg(long)]
        segment: PathBuf,
        #[arg(long)]
        rate: u64,
        #[arg(long)]
        seconds: f64,
        #[arg(long)]
        cpu: usize,
        #[arg(long, default_value_t = 2_097_152)]
        ring_slots: u64,
        #[arg(long, default_value_t = 400)]
        instruments: u32,
    },
    /// (child) iceoryx2 subscriber: receives records, prints a JSON histogram.
    #[cfg(feature = "iceoryx2")]
    Iceoryx2Sub {
        #[arg(long)]
        service: String,
        /// Ping-pong: send every sample back on this service instead of timing it.
        #[arg(long)]
        answer: Option<String>,
        #[arg(long)]
        cpu: usize,
        #[arg(long)]
        warmup: u64,
        #[arg(long)]
        count: u64,
    },
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.role {
        Some(Role::Reader { segment, cpu, from, stamp, warmup, count }) => {
            let from = match from {
                FromArg::First => From::First,
                FromArg::Newest => From::Newest,
            };
            let stamp = match stamp {
                StampArg::Receive => Stamp::Receive,
                StampArg::Due => Stamp::Due,
            };
            return child::run_reader(&segment, cpu, from, stamp, warmup, count);
        }
        Some(Role::UdsPeer { socket, cpu, warmup, count, echo: false }) => {
            return child::run_uds_peer(&socket, cpu, warmup, count);
        }
        Some(Role::UdsPeer { socket, cpu, count, echo: true, .. }) => {
            return pingpong::run_uds_echo(&socket, cpu, count);
        }
        Some(Role::Blast { segment, rate, seconds, cpu, ring_slots, instruments }) => {
            let duration = std::time::Duration::try_from_secs_f64(seconds).context("--seconds")?;
            let blast = qilin_benches::harness::blast::Blast { rate, duration, ring_slots, instruments, cpu };
            return qilin_benches::harness::blast::run(&segment, &blast);
        }
        Some(Role::SegmentEcho { segment, answer, cpu, count }) => {
            return pingpong::run_segment_echo(&segment, &answer, cpu, count);
        }
        #[cfg(feature = "iceoryx2")]
        Some(Role::Iceoryx2Sub { service, answer: Some(answer), cpu, count, .. }) => {
            return qilin_benches::harness::iceoryx2::run_echo(&service, &answer, cpu, count);
        }
        #[cfg(feature = "iceoryx2")]
        Some(Role::Iceoryx2Sub { service, answer: None, cpu, warmup, count }) => {
            return qilin_benches::harness::iceoryx2::run_subscriber(&service, cpu, warmup, count);
        }
        None => {}
    }
    if args.cores.len() < 2 {
        bail!("--cores needs at least two CPUs (writer, reader), e.g. --cores 0,1");
    }
    let self_bin = std::env::current_exe().context("locating this binary")?;
    let repo = match args.repo {
        Some(repo) => repo,
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."),
    };
    let quick = args.quick;
    let plan = Plan {
        cores: args.cores,
        samples: args.samples.unwrap_or(if quick { 20_000 } else { 500_000 }),
        warmup: args.warmup.unwrap_or(if quick { 2_000 } else { 20_000 }),
        rate: args.rate,
        e2e_rate: args.e2e_rate,
        e2e_samples: args.e2e_samples.unwrap_or(if quick { 3_000 } else { 200_000 }),
        rounds: args.rounds.unwrap_or(if quick { 2 } else { 5 }).max(1),
        reader_counts: args.readers,
        only: args.only,
        throughput_ticks: if quick { 50_000 } else { 200_000 },
        throughput_rounds: if quick { 2 } else { 5 },
        core_bin: args.core_bin.unwrap_or_else(|| self_bin.with_file_name("qilin-core")),
        repo,
        self_bin,
    };
    let run = report::run(&plan);
    print!("{}", report::table(&run, &plan));
    report::write_outputs(&run, &plan, args.json.as_deref(), args.svg.as_deref())
}
