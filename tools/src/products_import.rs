//! `qilinctl products import`: the product table from a CTP instrument query (ReqQryInstrument,
//! one `CThostFtdcInstrumentField` per CSV row, columns named as the struct's fields) merged with
//! the current table (docs/PRODUCTS.md).
//!
//! ProductClass `1` rows are futures, grouped by product code; `2` rows are options, grouped by
//! option code and attached to their underlying future; other classes are skipped and counted.
//! Products the table holds keep their sessions, name and reference price (CTP sends none of
//! them); tick, multiplier, simulator contracts and option series come from the CSV. Every problem
//! is collected, each naming the file, the line (header = line 1) and the column; the merged table
//! is rendered with [`qilin_market::products::render`] and loaded back before anything is written.

use std::{
    collections::{BTreeMap, HashMap},
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use qilin_market::{
    Date,
    products::{
        IdForm, Instruments, Kind, MAX_INSTRUMENT_ID, ProductSpec, SessionMap, contract_form, default_day_sessions,
        product_of, render::render_products,
    },
};
use qilin_shm::Exchange;
use serde::Serialize;
use serde_json::{Value, json};

/// Columns every CSV must have.
pub const REQUIRED_COLUMNS: [&str; 6] =
    ["InstrumentID", "ExchangeID", "ProductID", "ProductClass", "PriceTick", "VolumeMultiple"];

/// How many contracts of a product the simulator is given (the nearest to expiry).
pub const SIMULATOR_CONTRACTS: usize = 3;

/// A new product's reference price, in ticks (CTP sends no price with an instrument).
pub const NEW_REFERENCE_TICKS: f64 = 1000.0;

/// Why an import wrote nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportError {
    /// The CSV could not be read (exit 2).
    Unreadable(String),
    /// Problems in the data, every one (exit 1).
    Problems(Vec<String>),
}

impl std::fmt::Display for ImportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImportError::Unreadable(e) => f.write_str(e),
            ImportError::Problems(p) => write!(f, "{} problem(s):\n  {}", p.len(), p.join("\n  ")),
        }
    }
}

/// What to import.
#[derive(Debug, Clone)]
pub struct ImportOptions<'a> {
    /// The CSV of the instrument query.
    pub csv: &'a Path,
    /// The current table.
    pub table: &'a Instruments,
    /// Where the result will be written (names it in the load-back check).
    pub out: &'a Path,
    /// Products the table lacks get their exchange's default sessions instead of being an error.
    pub default_sessions: bool,
}

/// A product the CSV added to the table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Added {
    pub exchange: &'static str,
    pub code: String,
    pub name: String,
    pub price_tick: f64,
    pub volume_multiple: u32,
    pub instruments: Vec<String>,
    pub reference_price: f64,
    /// The sessions it was given (its exchange's defaults), no night session.
    pub day_sessions: Vec<String>,
}

/// One value of a product that changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub code: String,
    pub field: &'static str,
    pub old: Value,
    pub new: Value,
}

/// An option series the CSV added.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OptionSeries {
    pub exchange: &'static str,
    pub code: String,
    pub underlying: String,
    pub id_form: &'static str,
    pub price_tick: f64,
    pub volume_multiple: u32,
}

/// A product of the table the CSV does not hold (kept as it was).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotInCsv {
    pub exchange: &'static str,
    pub code: String,
    /// `future` or `options`.
    pub kind: &'static str,
    /// For options, the future they are on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub underlying: Option<String>,
}

/// What an import changed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ImportReport {
    /// The CSV read.
    pub csv: String,
    /// The table merged with.
    pub table: String,
    /// Data rows read.
    pub rows: u64,
    /// Futures rows used.
    pub future_rows: u64,
    /// Option rows used.
    pub option_rows: u64,
    /// Rows skipped, by ProductClass (`"3 (combination)"`).
    pub skipped: BTreeMap<String, u64>,
    /// Products added (with --default-sessions).
    pub added: Vec<Added>,
    /// Ticks, multipliers and reference prices (rounded to a new tick) changed.
    pub changed: Vec<Change>,
    /// Simulator contracts changed.
    pub instruments_changed: Vec<Change>,
    /// Option series added.
    pub options_added: Vec<OptionSeries>,
    /// Option series changed (code, id form, tick, multiplier).
    pub options_changed: Vec<Change>,
    /// Products of the table absent from the CSV, kept as they were.
    pub not_in_csv: Vec<NotInCsv>,
    /// Futures in the written table.
    pub futures: usize,
    /// Option series in the written table.
    pub option_series: usize,
}

/// The merged table, rendered and checked, ready to write.
#[derive(Debug, Clone)]
pub struct Imported {
    /// Every product, each future followed by its option series.
    pub products: Vec<ProductSpec>,
    /// The TOML to write.
    pub text: String,
    /// What changed.
    pub report: ImportReport,
}

/// One futures or option row, parsed.
#[derive(Debug, Clone)]
struct Row {
    line: u64,
    id: String,
    exchange: Exchange,
    kind: Kind,
    name: String,
    price_tick: f64,
    volume_multiple: u32,
    expire: Option<u32>,
    underlying_id: String,
}

/// A value and the row it came from, to name both rows when another disagrees.
#[derive(Debug, Clone)]
struct Seen<T> {
    value: T,
    line: u64,
    id: String,
}

impl<T> Seen<T> {
    fn of(value: T, row: &Row) -> Seen<T> {
        Seen { value, line: row.line, id: row.id.clone() }
    }
}

#[derive(Debug)]
struct FutureGroup {
    exchange: Exchange,
    code: String,
    line: u64,
    name: String,
    tick: Seen<f64>,
    multiple: Seen<u32>,
    contracts: Vec<(Option<u32>, String)>,
}

#[derive(Debug)]
struct OptionGroup {
    exchange: Exchange,
    code: String,
    id_form: Seen<IdForm>,
    underlying: Seen<String>,
    tick: Seen<f64>,
    multiple: Seen<u32>,
}

/// CTP `THOST_FTDC_PC_*` names of the classes that are skipped.
fn class_name(class: &str) -> String {
    let name = match class {
        "3" => "combination",
        "4" => "spot",
        "5" => "EFP",
        "6" => "spot option",
        "7" => "TAS",
        "I" => "index",
        _ => "unknown class",
    };
    format!("{class} ({name})")
}

/// The CFFEX index options' futures (their UnderlyingInstrID names the index, not a future).
fn cffex_index_future(option_code: &str) -> Option<&'static str> {
    match option_code {
        "IO" => Some("IF"),
        "HO" => Some("IH"),
        "MO" => Some("IM"),
        _ => None,
    }
}

fn same(a: &f64, b: &f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

fn form_name(form: IdForm) -> &'static str {
    match form {
        IdForm::Compact => "compact",
        IdForm::Dash => "dash",
    }
}

/// The product part of a CTP InstrumentName ("螺纹钢2605" → "螺纹钢"); `None` when nothing is left
/// or the name was not UTF-8 (CTP sends GBK; a CSV kept in GBK is read lossily).
fn name_part(name: &str) -> Option<String> {
    let part = name.trim().trim_end_matches(|c: char| c.is_ascii_digit() || c.is_whitespace());
    (!part.is_empty() && !part.contains('\u{FFFD}')).then(|| part.to_owned())
}

/// Reads, checks and merges; writes nothing.
pub fn import(options: &ImportOptions<'_>) -> Result<Imported, ImportError> {
    let file = options.csv.display().to_string();
    let (rows, mut report) = read_rows(options.csv)?;
    let mut problems = rows.1;
    let rows = rows.0;
    report.csv = file.clone();
    report.table = options.table.path().display().to_string();
    let at = |line: u64, what: String| format!("{file}: line {line}: {what}");

    // Futures, by product code (unique in the table, whatever the exchange).
    let mut futures: Vec<FutureGroup> = Vec::new();
    let mut future_index: HashMap<String, usize> = HashMap::new();
    for row in rows.iter().filter(|r| r.kind == Kind::Future) {
        report.future_rows += 1;
        let code = product_of(&row.id).to_owned();
        let Some(&i) = future_index.get(&code) else {
            future_index.insert(code.clone(), futures.len());
            futures.push(FutureGroup {
                exchange: row.exchange,
                code,
                line: row.line,
                name: row.name.clone(),
                tick: Seen::of(row.price_tick, row),
                multiple: Seen::of(row.volume_multiple, row),
                contracts: vec![(row.expire, row.id.clone())],
            });
            continue;
        };
        let g = &mut futures[i];
        if g.exchange != row.exchange {
            problems.push(at(
                row.line,
                format!(
                    "ExchangeID: {} is {} here but {} at line {} ({}): a product code is listed once",
                    row.id,
                    row.exchange.as_str(),
                    g.exchange.as_str(),
                    g.line,
                    g.contracts[0].1
                ),
            ));
            continue;
        }
        agree(&mut problems, &at, row, "PriceTick", &g.tick, row.price_tick, same);
        agree(&mut problems, &at, row, "VolumeMultiple", &g.multiple, row.volume_multiple, |a, b| a == b);
        if g.name.is_empty() {
            g.name.clone_from(&row.name);
        }
        if !g.contracts.iter().any(|(_, id)| *id == row.id) {
            g.contracts.push((row.expire, row.id.clone()));
        }
    }
    let table_future = |code: &str| options.table.product(code);
    let future_exchange = |code: &str| {
        future_index.get(code).map(|&i| futures[i].exchange).or_else(|| table_future(code).map(|p| p.exchange))
    };

    // Options, by option code, each on the future its UnderlyingInstrID names.
    let mut series: Vec<OptionGroup> = Vec::new();
    for row in rows.iter().filter(|r| r.kind != Kind::Future) {
        report.option_rows += 1;
        let Kind::Option { id_form } = row.kind else { continue };
        let code = product_of(&row.id).to_owned();
        let named = product_of(&row.underlying_id);
        let underlying = if future_exchange(named) == Some(row.exchange) {
            named.to_owned()
        } else if let Some(future) = cffex_index_future(&code).filter(|_| row.exchange == Exchange::Cffex)
            && future_exchange(future) == Some(Exchange::Cffex)
        {
            future.to_owned()
        } else {
            problems.push(at(
                row.line,
                format!(
                    "UnderlyingInstrID: {:?} of option {}: no futures product {named:?} of {} in the CSV or the table",
                    row.underlying_id,
                    row.id,
                    row.exchange.as_str()
                ),
            ));
            continue;
        };
        let Some(g) = series.iter_mut().find(|g| g.code == code) else {
            series.push(OptionGroup {
                exchange: row.exchange,
                code,
                id_form: Seen::of(id_form, row),
                underlying: Seen::of(underlying, row),
                tick: Seen::of(row.price_tick, row),
                multiple: Seen::of(row.volume_multiple, row),
            });
            continue;
        };
        if g.exchange != row.exchange {
            problems.push(at(
                row.line,
                format!(
                    "ExchangeID: option {} is {} here but {} at line {} ({})",
                    row.id,
                    row.exchange.as_str(),
                    g.exchange.as_str(),
                    g.tick.line,
                    g.tick.id
                ),
            ));
            continue;
        }
        agree(&mut problems, &at, row, "InstrumentID", &g.id_form, id_form, |a, b| a == b);
        agree(&mut problems, &at, row, "UnderlyingInstrID", &g.underlying, underlying, |a, b| a == b);
        agree(&mut problems, &at, row, "PriceTick", &g.tick, row.price_tick, same);
        agree(&mut problems, &at, row, "VolumeMultiple", &g.multiple, row.volume_multiple, |a, b| a == b);
    }
    for (i, g) in series.iter().enumerate() {
        if let Some(other) = series[..i].iter().find(|o| o.underlying.value == g.underlying.value) {
            problems.push(at(
                g.tick.line,
                format!(
                    "InstrumentID: option series {} ({}) and {} (line {}, {}) are both on {}: the table holds one series per future",
                    g.code, g.tick.id, other.code, other.tick.line, other.tick.id, g.underlying.value
                ),
            ));
        }
    }
    if rows.is_empty() && problems.is_empty() {
        problems.push(format!("{file}: no futures (ProductClass 1) or options (ProductClass 2) rows"));
    }

    // Merge: the table's order, new products after the last of their exchange.
    let option_on = |future: &str| series.iter().find(|s| s.underlying.value == future);
    let mut products: Vec<ProductSpec> = Vec::new();
    for old in options.table.products().iter().filter(|p| p.kind == Kind::Future) {
        let old_option = options
            .table
            .products()
            .iter()
            .find(|p| matches!(p.kind, Kind::Option { .. }) && p.underlying.as_deref() == Some(old.code.as_str()));
        let future = match future_index.get(&old.code).map(|&i| &futures[i]) {
            Some(g) if g.exchange != old.exchange => {
                problems.push(at(
                    g.line,
                    format!(
                        "ExchangeID: product {} is {} here but {} in {}",
                        g.code,
                        g.exchange.as_str(),
                        old.exchange.as_str(),
                        report.table
                    ),
                ));
                continue;
            }
            Some(g) => updated(old, g, &mut report),
            None => {
                report.not_in_csv.push(NotInCsv {
                    exchange: old.exchange.as_str(),
                    code: old.code.clone(),
                    kind: "future",
                    underlying: None,
                });
                old.clone()
            }
        };
        push_with_option(&mut products, future, old_option, option_on(&old.code), &mut report);
    }
    for g in futures.iter().filter(|g| table_future(&g.code).is_none()) {
        if !options.default_sessions {
            problems.push(at(
                g.line,
                format!(
                    "InstrumentID: {}: product {:?} of {} is not in {}, and CTP sends no trading sessions: add it \
                     there, or give --default-sessions for its exchange's default day sessions",
                    g.contracts[0].1,
                    g.code,
                    g.exchange.as_str(),
                    report.table
                ),
            ));
            continue;
        }
        let day_sessions = default_day_sessions(g.exchange);
        let future = ProductSpec {
            session_map: SessionMap::new(&day_sessions, None),
            exchange: g.exchange,
            code: g.code.clone(),
            name: name_part(&g.name).unwrap_or_else(|| g.code.clone()),
            kind: Kind::Future,
            underlying: None,
            price_tick: g.tick.value,
            volume_multiple: g.multiple.value,
            day_sessions,
            night_session: None,
            instruments: nearest(&g.contracts),
            reference_price: NEW_REFERENCE_TICKS * g.tick.value,
            unknown: false,
        };
        report.added.push(Added {
            exchange: g.exchange.as_str(),
            code: future.code.clone(),
            name: future.name.clone(),
            price_tick: future.price_tick,
            volume_multiple: future.volume_multiple,
            instruments: future.instruments.clone(),
            reference_price: future.reference_price,
            day_sessions: render_sessions(&future),
        });
        let mut tail = Vec::new();
        push_with_option(&mut tail, future, None, option_on(&g.code), &mut report);
        let at_end = products.iter().rposition(|p| p.exchange == g.exchange).map_or(products.len(), |i| i + 1);
        products.splice(at_end..at_end, tail);
    }
    if !problems.is_empty() {
        return Err(ImportError::Problems(problems));
    }

    report.futures = products.iter().filter(|p| p.kind == Kind::Future).count();
    report.option_series = products.len() - report.futures;
    let header = format!(
        "Product table generated by `qilinctl products import` from {file} (a CTP instrument query)\n\
         merged with {}:\n\
         sessions, names and reference prices are that table's; ticks, multipliers, contracts and\n\
         option series the CSV's. Format: config/instruments.toml, docs/PRODUCTS.md.",
        report.table
    );
    let text = render_products(&products, &header);
    match Instruments::from_toml_str(&text, options.out) {
        Ok(back) if back.products() == products => Ok(Imported { products, text, report }),
        Ok(_) => Err(ImportError::Problems(vec![format!(
            "{}: the rendered table does not load back equal (a bug: nothing written)",
            options.out.display()
        )])),
        Err(e) => Err(ImportError::Problems(vec![e.to_string()])),
    }
}

/// Checks that `value` of `row` agrees with what an earlier row of the same product gave.
fn agree<T: PartialEq + std::fmt::Debug + Clone>(
    problems: &mut Vec<String>,
    at: &impl Fn(u64, String) -> String,
    row: &Row,
    column: &str,
    first: &Seen<T>,
    value: T,
    eq: impl Fn(&T, &T) -> bool,
) {
    if !eq(&first.value, &value) {
        problems.push(at(
            row.line,
            format!(
                "{column}: {value:?} for {} disagrees with {:?} for {} at line {}: a product's rows must agree",
                row.id, first.value, first.id, first.line
            ),
        ));
    }
}

/// The [`SIMULATOR_CONTRACTS`] nearest contracts: by ExpireDate, by id where there is none.
fn nearest(contracts: &[(Option<u32>, String)]) -> Vec<String> {
    let mut sorted = contracts.to_vec();
    sorted.sort_by(|a, b| (a.0.unwrap_or(u32::MAX), &a.1).cmp(&(b.0.unwrap_or(u32::MAX), &b.1)));
    sorted.into_iter().take(SIMULATOR_CONTRACTS).map(|(_, id)| id).collect()
}

fn render_sessions(p: &ProductSpec) -> Vec<String> {
    let hm = |ms: u32| format!("{:02}:{:02}", ms / 3_600_000, ms / 60_000 % 60);
    p.day_sessions.iter().map(|s| format!("{}-{}", hm(s.start_ms), hm(s.end_ms))).collect()
}

/// `old` with the CSV's tick, multiplier and contracts; the reference price moved onto the new
/// tick if it is no longer a multiple of it.
fn updated(old: &ProductSpec, g: &FutureGroup, report: &mut ImportReport) -> ProductSpec {
    let mut new = old.clone();
    new.price_tick = g.tick.value;
    new.volume_multiple = g.multiple.value;
    new.instruments = nearest(&g.contracts);
    let ticks = (old.reference_price / new.price_tick).round();
    if (ticks * new.price_tick - old.reference_price).abs() > 1e-9 * old.reference_price {
        new.reference_price = ticks.max(1.0) * new.price_tick;
    }
    let mut change = |field, old: Value, new: Value| {
        if old != new {
            report.changed.push(Change { code: g.code.clone(), field, old, new });
        }
    };
    change("price_tick", json!(old.price_tick), json!(new.price_tick));
    change("volume_multiple", json!(old.volume_multiple), json!(new.volume_multiple));
    change("reference_price", json!(old.reference_price), json!(new.reference_price));
    if old.instruments != new.instruments {
        report.instruments_changed.push(Change {
            code: g.code.clone(),
            field: "instruments",
            old: json!(old.instruments),
            new: json!(new.instruments),
        });
    }
    new
}

/// Pushes `future` and its option series: the CSV's if it has one, else the table's (listed as
/// not in the CSV).
fn push_with_option(
    products: &mut Vec<ProductSpec>,
    future: ProductSpec,
    old: Option<&ProductSpec>,
    csv: Option<&OptionGroup>,
    report: &mut ImportReport,
) {
    let option = match (csv, old) {
        (Some(s), old) => {
            let new = ProductSpec {
                code: s.code.clone(),
                name: format!("{} options", future.name),
                kind: Kind::Option { id_form: s.id_form.value },
                underlying: Some(future.code.clone()),
                price_tick: s.tick.value,
                volume_multiple: s.multiple.value,
                instruments: Vec::new(),
                reference_price: s.tick.value,
                ..future.clone()
            };
            match old {
                None => report.options_added.push(OptionSeries {
                    exchange: new.exchange.as_str(),
                    code: new.code.clone(),
                    underlying: future.code.clone(),
                    id_form: form_name(s.id_form.value),
                    price_tick: new.price_tick,
                    volume_multiple: new.volume_multiple,
                }),
                Some(old) => {
                    let form = |p: &ProductSpec| match p.kind {
                        Kind::Option { id_form } => json!(form_name(id_form)),
                        Kind::Future => Value::Null,
                    };
                    let pairs = [
                        ("code", json!(old.code), json!(new.code)),
                        ("id_form", form(old), form(&new)),
                        ("price_tick", json!(old.price_tick), json!(new.price_tick)),
                        ("volume_multiple", json!(old.volume_multiple), json!(new.volume_multiple)),
                    ];
                    for (field, o, n) in pairs {
                        if o != n {
                            report.options_changed.push(Change { code: new.code.clone(), field, old: o, new: n });
                        }
                    }
                }
            }
            Some(new)
        }
        (None, Some(old)) => {
            report.not_in_csv.push(NotInCsv {
                exchange: old.exchange.as_str(),
                code: old.code.clone(),
                kind: "options",
                underlying: Some(future.code.clone()),
            });
            // Sessions and name follow the future, as when the table is loaded.
            Some(ProductSpec {
                code: old.code.clone(),
                name: format!("{} options", future.name),
                kind: old.kind,
                underlying: old.underlying.clone(),
                price_tick: old.price_tick,
                volume_multiple: old.volume_multiple,
                instruments: Vec::new(),
                reference_price: old.price_tick,
                ..future.clone()
            })
        }
        (None, None) => None,
    };
    products.push(future);
    products.extend(option);
}

type Rows = (Vec<Row>, Vec<String>);

/// Every futures and option row, and every problem of a row; skipped classes counted.
fn read_rows(path: &Path) -> Result<(Rows, ImportReport), ImportError> {
    let file = path.display().to_string();
    let unreadable = |e: &dyn std::fmt::Display| ImportError::Unreadable(format!("reading {file}: {e}"));
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_path(path).map_err(|e| unreadable(&e))?;
    let headers: Vec<String> = reader
        .byte_headers()
        .map_err(|e| unreadable(&e))?
        .iter()
        .map(|h| String::from_utf8_lossy(h).trim().trim_start_matches('\u{FEFF}').trim().to_owned())
        .collect();
    let column = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let missing: Vec<String> = REQUIRED_COLUMNS
        .iter()
        .filter(|c| column(c).is_none())
        .map(|c| format!("{file}: line 1: missing required column {c}"))
        .collect();
    if !missing.is_empty() {
        return Err(ImportError::Problems(missing));
    }
    let col = |name: &str| column(name).expect("checked above");
    let (id_col, exchange_col, class_col) = (col("InstrumentID"), col("ExchangeID"), col("ProductClass"));
    let (tick_col, multiple_col) = (col("PriceTick"), col("VolumeMultiple"));
    let (name_col, expire_col, underlying_col) =
        (column("InstrumentName"), column("ExpireDate"), column("UnderlyingInstrID"));

    let mut report = ImportReport::default();
    let (mut rows, mut problems) = (Vec::new(), Vec::new());
    let mut record = csv::ByteRecord::new();
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) if e.is_io_error() => return Err(unreadable(&e)),
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                problems.push(format!("{file}: line {line}: {e}"));
                continue;
            }
        }
        report.rows += 1;
        let line = record.position().map_or(0, |p| p.line());
        let field = |i: Option<usize>| -> String {
            i.and_then(|i| record.get(i)).map(|f| String::from_utf8_lossy(f).trim().to_owned()).unwrap_or_default()
        };
        let mut problem = |column: &str, what: String| problems.push(format!("{file}: line {line}: {column}: {what}"));
        let class = field(Some(class_col));
        let id = field(Some(id_col));
        let wanted = match class.as_str() {
            "1" => Kind::Future,
            "2" => Kind::Option { id_form: IdForm::Dash },
            "" => {
                problem("ProductClass", format!("empty (1 = futures, 2 = options) for {id:?}"));
                continue;
            }
            other => {
                *report.skipped.entry(class_name(other)).or_default() += 1;
                continue;
            }
        };
        let mut bad = false;
        let kind = contract_form(&id);
        match kind {
            None => {
                problem(
                    "InstrumentID",
                    format!(
                        "{id:?} is neither a future's id (product code and a 3- or 4-digit month: \"rb2605\", \
                         \"SR605\") nor an option's (\"cu2606C80000\", \"m2605-C-3000\")"
                    ),
                );
                bad = true;
            }
            Some(k) if (k == Kind::Future) != (wanted == Kind::Future) => {
                let (is, class) =
                    if k == Kind::Future { ("a future's", "2 (options)") } else { ("an option's", "1 (futures)") };
                problem("InstrumentID", format!("{id:?} is {is} id but ProductClass is {class}"));
                bad = true;
            }
            Some(_) if id.len() > MAX_INSTRUMENT_ID => {
                problem(
                    "InstrumentID",
                    format!("{id:?} is longer than the {MAX_INSTRUMENT_ID} characters the feed stores"),
                );
                bad = true;
            }
            Some(_) => {}
        }
        let exchange_text = field(Some(exchange_col));
        let exchange = Exchange::from_id(&exchange_text);
        if exchange.is_none() {
            problem("ExchangeID", format!("{exchange_text:?} is not one of SHFE, INE, DCE, CZCE, CFFEX, GFEX"));
        }
        let tick_text = field(Some(tick_col));
        let price_tick = match tick_text.parse::<f64>() {
            Ok(t) if t.is_finite() && t > 0.0 => Some(t),
            Ok(_) => {
                problem("PriceTick", format!("{tick_text:?} must be a positive number"));
                None
            }
            Err(_) => {
                problem("PriceTick", format!("{tick_text:?} is not a number"));
                None
            }
        };
        let multiple_text = field(Some(multiple_col));
        let volume_multiple = match multiple_text.parse::<i64>() {
            Ok(m) if m >= 1 => u32::try_from(m).ok().or_else(|| {
                problem("VolumeMultiple", format!("{multiple_text:?} is too large"));
                None
            }),
            Ok(_) => {
                problem("VolumeMultiple", format!("{multiple_text:?} must be at least 1"));
                None
            }
            Err(_) => {
                problem("VolumeMultiple", format!("{multiple_text:?} is not a whole number"));
                None
            }
        };
        let expire_text = field(expire_col);
        let expire = if expire_text.is_empty() {
            None
        } else {
            let date = Date::parse(&expire_text).map(|d| d.ymd);
            if date.is_none() {
                problem("ExpireDate", format!("{expire_text:?} is not a YYYYMMDD date"));
                bad = true;
            }
            date
        };
        let underlying_id = field(underlying_col);
        if wanted != Kind::Future && underlying_id.is_empty() {
            let why = if underlying_col.is_none() { "column missing" } else { "empty" };
            problem("UnderlyingInstrID", format!("{why}: option {id} needs its underlying future"));
            bad = true;
        }
        let (Some(kind), Some(exchange), Some(price_tick), Some(volume_multiple), false) =
            (kind, exchange, price_tick, volume_multiple, bad)
        else {
            continue;
        };
        rows.push(Row {
            line,
            id,
            exchange,
            kind,
            name: field(name_col),
            price_tick,
            volume_multiple,
            expire,
            underlying_id,
        });
    }
    Ok(((rows, problems), report))
}

/// Writes `text` to `path` through a temporary file in the same directory, renamed into place.
pub fn write_atomically(path: &Path, text: &str) -> Result<(), String> {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".tmp.{}", std::process::id()));
    let tmp: PathBuf = path.with_file_name(name);
    let result = (|| {
        let mut file = fs::File::create(&tmp).map_err(|e| format!("creating {}: {e}", tmp.display()))?;
        file.write_all(text.as_bytes()).map_err(|e| format!("writing {}: {e}", tmp.display()))?;
        file.sync_all().map_err(|e| format!("syncing {}: {e}", tmp.display()))?;
        fs::rename(&tmp, path).map_err(|e| format!("renaming {} to {}: {e}", tmp.display(), path.display()))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The report as text, one line per change.
pub fn render_report(report: &ImportReport, out: &Path) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let skipped: u64 = report.skipped.values().sum();
    let _ = writeln!(
        s,
        "read {} rows of {}: {} futures, {} options, {skipped} skipped",
        report.rows, report.csv, report.future_rows, report.option_rows
    );
    for (class, n) in &report.skipped {
        let _ = writeln!(s, "  skipped ProductClass {class}: {n} row(s)");
    }
    for a in &report.added {
        let _ = writeln!(
            s,
            "added {} {} ({}): tick {} x{}, default day sessions {}, no night session, reference price {} \
             ({NEW_REFERENCE_TICKS} ticks): check these",
            a.exchange,
            a.code,
            a.name,
            a.price_tick,
            a.volume_multiple,
            a.day_sessions.join(" "),
            a.reference_price
        );
    }
    for c in &report.changed {
        let _ = writeln!(s, "changed {} {}: {} -> {}", c.code, c.field, c.old, c.new);
    }
    for o in &report.options_added {
        let _ = writeln!(
            s,
            "options added {} {} on {} ({}): tick {} x{}",
            o.exchange, o.code, o.underlying, o.id_form, o.price_tick, o.volume_multiple
        );
    }
    for c in &report.options_changed {
        let _ = writeln!(s, "options changed {} {}: {} -> {}", c.code, c.field, c.old, c.new);
    }
    if !report.instruments_changed.is_empty() {
        let codes: Vec<&str> = report.instruments_changed.iter().map(|c| c.code.as_str()).collect();
        let _ = writeln!(s, "simulator contracts updated for {} product(s): {}", codes.len(), codes.join(" "));
    }
    let futures: Vec<String> = report
        .not_in_csv
        .iter()
        .filter(|n| n.underlying.is_none())
        .map(|n| format!("{} {}", n.exchange, n.code))
        .collect();
    if !futures.is_empty() {
        let _ = writeln!(s, "not in the CSV, kept as they were: {} futures: {}", futures.len(), futures.join(", "));
    }
    let options: Vec<String> = report
        .not_in_csv
        .iter()
        .filter_map(|n| n.underlying.as_ref().map(|u| format!("{} {} (options on {u})", n.exchange, n.code)))
        .collect();
    if !options.is_empty() {
        let _ =
            writeln!(s, "not in the CSV, kept as they were: {} option series: {}", options.len(), options.join(", "));
    }
    let _ = writeln!(s, "wrote {} ({} futures, {} option series)", out.display(), report.futures, report.option_series);
    s
}
