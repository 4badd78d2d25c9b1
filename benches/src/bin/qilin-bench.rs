//! `qilin-bench`: the latency harness. Given the CPUs to use, it measures in one run the floor
//! (core-to-core cache line, clock read), the segment with 1/4/16/32 reader processes, the core's
//! hand-off and UDP paths, end to end through the `qilin-core` binary to readers in Rust, C and
//! Python, and same-run baselines (crossbeam channel, Unix socket); prints a table, and writes JSON
//! and an SVG percentile plot. The `reader` and `uds-peer` subcommands are the child processes it
//! starts itself.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use qilin_benches::harness::{
    Plan,
    child::{self, From},
    report,
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
    /// Simulator rate of the end-to-end runs, ticks/s (default: CTP's full-market peak, ≈ 20 k/s).
    #[arg(long, default_value_t = 20_000)]
    e2e_rate: u64,
    /// Samples per end-to-end reader [default 200000; --quick 3000].
    #[arg(long)]
    e2e_samples: Option<u64>,
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
    },
    /// (child) iceoryx2 subscriber: receives records, prints a JSON histogram.
    #[cfg(feature = "iceoryx2")]
    Iceoryx2Sub {
        #[arg(long)]
        service: String,
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
        Some(Role::Reader { segment, cpu, from, warmup, count }) => {
            let from = match from {
                FromArg::First => From::First,
                FromArg::Newest => From::Newest,
            };
            return child::run_reader(&segment, cpu, from, warmup, count);
        }
        Some(Role::UdsPeer { socket, cpu, warmup, count }) => return child::run_uds_peer(&socket, cpu, warmup, count),
        #[cfg(feature = "iceoryx2")]
        Some(Role::Iceoryx2Sub { service, cpu, warmup, count }) => {
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
