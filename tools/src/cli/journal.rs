//! Journal commands (docs/CSV.md, docs/PARQUET.md): `export --csv`, `export --parquet`,
//! `import --csv`, `replay`, `quality`, and the journal selection they share.
//!
//! Exit codes: `export --csv`, `export --parquet`, `quality`: 0 done, 2 the journal or the output
//! could not be read or written. `import --csv` (audited): 0 imported, 2 nothing imported (a bad row, a journal that
//! would be overwritten, …), 4 the audit log cannot be written so nothing was done, 5 imported but
//! not audited. `replay` (audited when it starts): 2 the journal is missing or damaged or
//! `qilin-core` cannot be run, 4 the audit log cannot be written; otherwise qilinctl becomes the
//! core (exec) and the exit code is the core's.

use std::{
    ops::RangeInclusive,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::Args as ClapArgs;
use qilin_market::Market;
use qilin_shm::Reader;
use qilin_tools::{
    journal_cli::{self, ImportOptions, JournalSel, parse_days},
    parquet_export,
    quality_report::{self, QualityOptions},
    replay,
};
use serde_json::{Value, json};

use super::audited::{audit_entry, open_audit};

/// Which journal files: a directory and feed (and days), or one file.
#[derive(Debug, ClapArgs)]
pub struct JournalOpts {
    /// Journal directory (the recorder's journal_dir).
    #[arg(long, default_value = "journal")]
    journal_dir: PathBuf,
    /// Feed whose journals to read [default: qilin; with --file, replay names the segment's feed
    /// after the file's].
    #[arg(long)]
    feed: Option<String>,
    /// Trading days: YYYYMMDD, YYYYMMDD..YYYYMMDD or all.
    #[arg(long, default_value = "all", value_parser = parse_days)]
    day: RangeInclusive<u32>,
    /// One journal file instead of a directory.
    #[arg(long, conflicts_with_all = ["journal_dir", "day"])]
    file: Option<PathBuf>,
    #[command(flatten)]
    key_opts: JournalKeyOpts,
}

/// The keys of encrypted journals, for every command that reads journals.
#[derive(Debug, ClapArgs)]
pub struct JournalKeyOpts {
    /// Encrypted journals: a `qilinctl keys render-key journal-encryption` file; repeat for each
    /// key version the journals need.
    #[arg(long = "key-file", value_name = "FILE")]
    key_files: Vec<PathBuf>,
    /// Encrypted journals: read the journal-encryption versions from the key store
    /// ($QILIN_KEY_STORE or the default, $QILIN_MASTER_KEY); retired versions are refused by name.
    #[arg(long, conflicts_with = "key_files")]
    keys: bool,
}

impl JournalKeyOpts {
    /// Loads the keys given (`--key-file`, `--keys`) for every journal the command opens; exit 2
    /// with the error (naming the file, or the store) when they cannot be read.
    pub fn load_keys(&self, command: &str) -> Result<(), ExitCode> {
        let ring = if self.keys {
            let now =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
            qilin_tools::keys::cli::journal_keyring(None, now).map_err(|e| format!("--keys: {e}"))
        } else if !self.key_files.is_empty() {
            qilin_journal::Keyring::from_key_files(&self.key_files).map_err(|e| format!("--key-file: {e}"))
        } else {
            return Ok(());
        };
        match ring {
            Ok(ring) => {
                journal_cli::use_keys(ring);
                Ok(())
            }
            Err(e) => {
                eprintln!("qilinctl: {command}: {e}");
                Err(ExitCode::from(2))
            }
        }
    }
}

impl JournalOpts {
    fn load_keys(&self, command: &str) -> Result<(), ExitCode> {
        self.key_opts.load_keys(command)
    }

    fn selection(&self) -> JournalSel {
        match &self.file {
            Some(file) => JournalSel::File(file.clone()),
            None => JournalSel::Dir {
                dir: self.journal_dir.clone(),
                feed: self.feed.clone().unwrap_or_else(|| "qilin".into()),
                days: self.day.clone(),
            },
        }
    }
}

pub fn export(csv: bool, journal: &JournalOpts, instruments: &[String], output: Option<&Path>) -> ExitCode {
    if !csv {
        eprintln!("qilinctl: export needs --csv or --parquet");
        return ExitCode::from(2);
    }
    if let Err(code) = journal.load_keys("export") {
        return code;
    }
    let sel = journal.selection();
    let result = match output {
        Some(path) if path != Path::new("-") => journal_cli::export_to_file(&sel, instruments, path),
        _ => {
            journal_cli::export(&sel, instruments, std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock()))
        }
    };
    match result {
        Ok(report) => {
            for note in &report.notes {
                eprintln!("qilinctl: {note}");
            }
            eprintln!("{}", exported(&report, "the CSV"));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("qilinctl: export: {e}");
            ExitCode::from(2)
        }
    }
}

/// The closing line of an export, `export --csv`'s or `--parquet`'s: what was read, what was left
/// out, and the gaps `into` (the output) does not hold.
fn exported(report: &journal_cli::ExportReport, into: &str) -> String {
    let mut line = format!("qilinctl: exported {} ticks from {} journal file(s)", report.ticks, report.files);
    if report.filtered > 0 {
        line += &format!(", {} of other instruments left out", report.filtered);
    }
    if report.gaps > 0 {
        line += &format!(
            "; {} gap record(s) covering {} sequences are not in {into} (the sequence column skips them)",
            report.gaps, report.gap_sequences
        );
    }
    line
}

pub fn export_parquet(journal: &JournalOpts, instruments: &[String], output: Option<&Path>) -> ExitCode {
    let Some(output) = output else {
        eprintln!(
            "qilinctl: export --parquet needs --output FILE or --output DIR (a Parquet file is not written to stdout)"
        );
        return ExitCode::from(2);
    };
    if let Err(code) = journal.load_keys("export") {
        return code;
    }
    match parquet_export::export_parquet(&journal.selection(), instruments, output) {
        Ok(report) => {
            for note in &report.totals.notes {
                eprintln!("qilinctl: {note}");
            }
            for day in &report.days {
                eprintln!(
                    "qilinctl: {}: {} ticks of trading day {} in {} row group(s)",
                    day.path.display(),
                    day.ticks,
                    day.trading_day,
                    day.row_groups
                );
            }
            eprintln!("{}", exported(&report.totals, "the file"));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("qilinctl: export: {e}");
            ExitCode::from(2)
        }
    }
}

pub fn import(
    input: &Path,
    dir: &Path,
    feed: &str,
    force: bool,
    instruments: Option<&Path>,
    audit_log: Option<&Path>,
) -> ExitCode {
    let log = match open_audit(audit_log, "nothing imported") {
        Ok(log) => log,
        Err(code) => return code,
    };
    let products = match Market::find(instruments) {
        Ok(products) => products,
        Err(e) => {
            eprintln!("qilinctl: import: {e}");
            return audit_entry(&log, "import", 2, vec![json!({"error": e})]);
        }
    };
    let options = ImportOptions {
        input: input.to_owned(),
        dir: dir.to_owned(),
        feed: feed.to_owned(),
        force,
        products: products.clone(),
    };
    let report = match journal_cli::import(&options) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("qilinctl: import: {e}; nothing was written");
            return audit_entry(
                &log,
                "import",
                2,
                vec![json!({"input": input.display().to_string(), "error": e.to_string()})],
            );
        }
    };
    let d = &report.derived;
    if d.vendor {
        eprintln!(
            "qilinctl: {} has no quality column: read as a vendor CTP export, normalized as the core does{}",
            input.display(),
            match &products {
                Some(p) => format!(
                    " (products from {}; {} row(s) of unknown products)",
                    p.instruments.path().display(),
                    d.rows_without_product
                ),
                None => " (no product file: ExchangeID, AveragePrice and stale flags as the file gives them)".into(),
            }
        );
    }
    if !d.missing.is_empty() {
        eprintln!("qilinctl: columns derived or left empty (docs/CSV.md): {}", d.missing.join(","));
    }
    if let Some(why) = &report.renumbered_because {
        eprintln!("qilinctl: {why}");
    }
    let journals: Vec<Value> = report
        .days
        .iter()
        .map(|day| {
            eprintln!(
                "qilinctl: wrote {} ({} ticks, sequences {}..={})",
                day.path.display(),
                day.ticks,
                day.sequences.0,
                day.sequences.1
            );
            json!({"file": day.path.display().to_string(), "trading_day": day.trading_day, "ticks": day.ticks,
                   "first_sequence": day.sequences.0, "last_sequence": day.sequences.1})
        })
        .collect();
    let action = json!({
        "input": input.display().to_string(),
        "rows": report.rows,
        "vendor_format": d.vendor,
        "sequences": if report.kept_sequences { "kept" } else { "renumbered" },
        "journals": journals,
        "replaced": report.replaced.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
    });
    audit_entry(&log, "import", 0, vec![action])
}

/// How to run the replaying core.
pub struct CoreOpts<'a> {
    pub segment: &'a Path,
    pub speed: f64,
    pub control_socket: Option<&'a Path>,
    pub core_config: Option<&'a Path>,
    pub core: Option<&'a Path>,
}

pub fn replay_cmd(journal: &JournalOpts, opts: &CoreOpts<'_>, audit_log: Option<&Path>) -> ExitCode {
    if journal.key_opts.keys {
        eprintln!(
            "qilinctl: replay: qilin-core reads key files, not the key store: give --key-file (from `qilinctl keys \
             render-key journal-encryption`) for each version the journal needs"
        );
        return ExitCode::from(2);
    }
    if let Err(code) = journal.load_keys("replay") {
        return code;
    }
    let sel = journal.selection();
    let plan = match replay::plan(&sel) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("qilinctl: replay: {e}");
            return ExitCode::from(2);
        }
    };
    let core = match opts.core.map(Path::to_owned).map_or_else(replay::core_beside_self, Ok) {
        Ok(core) if core.is_file() => core,
        Ok(core) => {
            eprintln!(
                "qilinctl: replay: {} not found (install qilin-core beside qilinctl, or give --core)",
                core.display()
            );
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("qilinctl: replay: {e}");
            return ExitCode::from(2);
        }
    };
    let feed = match (&journal.feed, &sel) {
        (Some(feed), _) => feed.clone(),
        (None, JournalSel::File(_)) => plan.verified[0].1.header.feed.clone(),
        (None, JournalSel::Dir { feed, .. }) => feed.clone(),
    };
    let mut command = std::process::Command::new(&core);
    if let Some(config) = opts.core_config {
        command.arg("--config").arg(config);
    }
    command.arg("--replay").arg(&plan.replay_path).arg("--segment").arg(opts.segment).arg("--feed").arg(&feed);
    command.arg("--replay-speed").arg(opts.speed.to_string());
    for key_file in &journal.key_opts.key_files {
        command.arg("--replay-key-file").arg(key_file);
    }
    if let Some(socket) = opts.control_socket {
        command.arg("--control-socket").arg(socket);
    }
    let argv: Vec<String> = std::iter::once(core.display().to_string())
        .chain(command.get_args().map(|a| a.to_string_lossy().into_owned()))
        .collect();
    let log = match open_audit(audit_log, "replay") {
        Ok(log) => log,
        Err(code) => return code,
    };
    let actions = vec![plan.verified_json(), json!({"exec": argv})];
    let audited = audit_entry(&log, "replay", 0, actions);
    if audited != ExitCode::SUCCESS {
        eprintln!("qilinctl: replay not started: it could not be audited");
        return ExitCode::from(4);
    }
    eprintln!(
        "qilinctl: journal verified ({} ticks in {} file(s)); running {}",
        plan.ticks(),
        plan.verified.len(),
        argv.join(" ")
    );
    let error = command.exec();
    eprintln!("qilinctl: replay: running {}: {error}", core.display());
    audit_entry(&log, "replay", 2, vec![json!({"exec": argv, "error": error.to_string()})]);
    ExitCode::from(2)
}

pub fn quality(
    journal: &JournalOpts,
    json: bool,
    stale_after_s: u64,
    instruments: Option<&Path>,
    segment: Option<&Path>,
) -> ExitCode {
    let products = match Market::find(instruments) {
        Ok(products) => products,
        Err(e) => {
            eprintln!("qilinctl: quality: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(code) = journal.load_keys("quality") {
        return code;
    }
    let options = QualityOptions { stale_after_s, products };
    let mut report = match quality_report::report(&journal.selection(), &options) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("qilinctl: quality: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(segment) = segment {
        match Reader::open(segment) {
            Ok(reader) => report.rejects = quality_report::rejects_from_segment(&reader),
            Err(e) => {
                eprintln!("qilinctl: quality: --segment {}: {e}", segment.display());
                return ExitCode::from(2);
            }
        }
    }
    if json {
        println!("{}", json!(report));
    } else {
        print!("{}", quality_report::render_table(&report));
    }
    ExitCode::SUCCESS
}
