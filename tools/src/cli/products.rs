//! Product-table commands (docs/PRODUCTS.md): `products import` (the table from a CTP instrument
//! query, merged with the current one; audited, it writes a file operators deploy) and `products
//! check` (instruments of a journal or a segment whose product the table lacks; read-only).
//!
//! Exit codes: `products import`: 0 written, 1 problems in the CSV (every one printed, nothing
//! written), 2 the CSV, the table or the output file cannot be read or written, 4 the audit log
//! cannot be written so nothing was done, 5 written but not audited. `products check`: 0 every
//! instrument has a product, 1 some have none (listed), 2 the journal, segment or table cannot be
//! read.

use std::{
    collections::BTreeMap,
    ops::RangeInclusive,
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::Subcommand;
use qilin_journal::Entry;
use qilin_market::{Instruments, products::DEFAULT_PATH};
use qilin_tools::{
    exchange_name,
    journal_cli::{JournalSel, for_each_entry, parse_days},
    products_import::{self, ImportError, ImportOptions},
};
use serde_json::json;

use super::{
    audited::{audit_entry, open_audit},
    segment,
};

#[derive(Debug, Subcommand)]
pub enum ProductsCmd {
    /// Write a product table from a CSV of CTP's instrument query (CThostFtdcInstrumentField
    /// columns) merged with the current table; nothing is written if any row is wrong (audited).
    Import {
        /// The CSV: a header line naming the CThostFtdcInstrumentField fields, one instrument a row.
        #[arg(long, value_name = "FILE")]
        csv: PathBuf,
        /// The current table (sessions, names and reference prices are kept from it).
        #[arg(long, value_name = "FILE", default_value = DEFAULT_PATH)]
        instruments: PathBuf,
        /// The new table (written under a temporary name, renamed when complete).
        #[arg(long, value_name = "NEW.toml")]
        out: PathBuf,
        /// Give products the table lacks their exchange's default day sessions (no night session)
        /// instead of refusing them.
        #[arg(long)]
        default_sessions: bool,
        /// The report (or the problems) as JSON.
        #[arg(long)]
        json: bool,
        /// Audit log [default: $QILIN_AUDIT_LOG, else $XDG_STATE_HOME/qilin/audit.jsonl, else
        /// ~/.local/state/qilin/audit.jsonl].
        #[arg(long)]
        audit_log: Option<PathBuf>,
    },
    /// List the instruments of a journal (--journal-dir) or of a segment's directory (the global
    /// --segment) whose product the table lacks; exit 1 when there are some.
    Check {
        /// Journal directory (the recorder's journal_dir).
        #[arg(long)]
        journal_dir: Option<PathBuf>,
        /// Feed whose journals to read [default: qilin].
        #[arg(long, requires = "journal_dir")]
        feed: Option<String>,
        /// Trading days: YYYYMMDD, YYYYMMDD..YYYYMMDD or all [default: all].
        #[arg(long, requires = "journal_dir", value_parser = parse_days)]
        day: Option<RangeInclusive<u32>>,
        /// The product table.
        #[arg(long, value_name = "FILE", default_value = DEFAULT_PATH)]
        instruments: PathBuf,
        #[command(flatten)]
        keys: super::journal::JournalKeyOpts,
    },
}

/// Runs a `products` subcommand; `segment` is the global `--segment`.
pub fn run(command: &ProductsCmd, segment: Option<&Path>) -> ExitCode {
    match command {
        ProductsCmd::Import { csv, instruments, out, default_sessions, json, audit_log } => {
            import(csv, instruments, out, *default_sessions, *json, audit_log.as_deref())
        }
        ProductsCmd::Check { journal_dir, feed, day, instruments, keys } => match (journal_dir, segment) {
            (Some(dir), None) => {
                if let Err(code) = keys.load_keys("products check") {
                    return code;
                }
                let sel = JournalSel::Dir {
                    dir: dir.clone(),
                    feed: feed.clone().unwrap_or_else(|| "qilin".into()),
                    days: day.clone().unwrap_or(0..=u32::MAX),
                };
                check_journal(&sel, instruments)
            }
            (None, Some(segment)) => check_segment(segment, instruments),
            _ => {
                eprintln!("qilinctl: products check: give either --journal-dir DIR or --segment PATH");
                ExitCode::from(2)
            }
        },
    }
}

fn import(
    csv: &Path,
    table: &Path,
    out: &Path,
    default_sessions: bool,
    json: bool,
    audit_log: Option<&Path>,
) -> ExitCode {
    let log = match open_audit(audit_log, "nothing imported") {
        Ok(log) => log,
        Err(code) => return code,
    };
    let what = json!({"csv": csv.display().to_string(), "instruments": table.display().to_string(),
                      "out": out.display().to_string()});
    let fail = |code: u8, problems: Vec<String>| {
        for p in &problems {
            eprintln!("qilinctl: products import: {p}");
        }
        eprintln!("qilinctl: products import: nothing written ({} problem(s))", problems.len());
        if json {
            println!("{}", json!({"written": false, "problems": problems}));
        }
        let mut action = what.clone();
        action["problems"] = json!(problems);
        audit_entry(&log, "products import", code, vec![action])
    };
    let current = match Instruments::load(table) {
        Ok(current) => current,
        Err(e) => return fail(2, vec![e.to_string()]),
    };
    let options = ImportOptions { csv, table: &current, out, default_sessions };
    let imported = match products_import::import(&options) {
        Ok(imported) => imported,
        Err(ImportError::Unreadable(e)) => return fail(2, vec![e]),
        Err(ImportError::Problems(problems)) => return fail(1, problems),
    };
    if let Err(e) = products_import::write_atomically(out, &imported.text) {
        return fail(2, vec![e]);
    }
    let mut report = json!(imported.report);
    report["out"] = json!(out.display().to_string());
    report["written"] = json!(true);
    if json {
        println!("{report}");
    } else {
        print!("{}", products_import::render_report(&imported.report, out));
    }
    audit_entry(&log, "products import", 0, vec![report])
}

fn load(table: &Path) -> Result<Instruments, ExitCode> {
    Instruments::load(table).map_err(|e| {
        eprintln!("qilinctl: products check: {e}");
        ExitCode::from(2)
    })
}

fn check_journal(sel: &JournalSel, table: &Path) -> ExitCode {
    let table = match load(table) {
        Ok(table) => table,
        Err(code) => return code,
    };
    // id → (exchange, ticks); and how many instruments had a product.
    let mut unknown: BTreeMap<String, (&'static str, u64)> = BTreeMap::new();
    let mut known = std::collections::BTreeSet::new();
    let mut read = || -> Result<usize, qilin_tools::journal_cli::CliError> {
        let files = sel.files()?;
        for path in &files {
            let mut reader = sel.open(path)?;
            let note = for_each_entry(&mut reader, |entry| {
                if let Entry::Tick(t) = entry {
                    let id = t.instrument_id_str().unwrap_or("(not UTF-8)");
                    if table.spec_for(id).is_some() {
                        if !known.contains(id) {
                            known.insert(id.to_owned());
                        }
                    } else {
                        unknown.entry(id.to_owned()).or_insert((exchange_name(t.exchange), 0)).1 += 1;
                    }
                }
                Ok(())
            })?;
            if let Some(note) = note {
                eprintln!("qilinctl: products check: {note}");
            }
        }
        Ok(files.len())
    };
    let files = match read() {
        Ok(files) => files,
        Err(e) => {
            eprintln!("qilinctl: products check: {e}");
            return ExitCode::from(2);
        }
    };
    for (id, (exchange, ticks)) in &unknown {
        println!("{id:<16} {exchange:<6} {ticks} tick(s)");
    }
    summary(unknown.len(), known.len() + unknown.len(), &format!("{files} journal file(s)"), &table)
}

fn check_segment(path: &Path, table: &Path) -> ExitCode {
    let table = match load(table) {
        Ok(table) => table,
        Err(code) => return code,
    };
    let reader = match segment::open(Some(path)) {
        Ok(reader) => reader,
        Err(code) => return code,
    };
    let entries = reader.instruments();
    let mut missing = 0;
    for (index, entry) in entries.iter().enumerate() {
        let id = entry.instrument_id_str().unwrap_or("(not UTF-8)");
        if table.spec_for(id).is_none() {
            missing += 1;
            println!("{index:>5} {id:<16} {}", exchange_name(entry.exchange));
        }
    }
    summary(missing, entries.len(), &format!("the directory of {}", path.display()), &table)
}

fn summary(missing: usize, total: usize, source: &str, table: &Instruments) -> ExitCode {
    eprintln!(
        "qilinctl: products check: {missing} of {total} instrument(s) in {source} have no product in {}",
        table.path().display()
    );
    if missing == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) }
}
