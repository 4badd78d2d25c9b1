//! The instruction budget of the core's hot path (`qilin-budget check`, `benches/budget.toml`):
//! reading callgrind's out files, instructions per call of the measured loop, the budget file (read with
//! `toml`, its figures rewritten in place so that its comments stay), and the verdict. The
//! workloads and the valgrind runs are in `src/bin/qilin-budget.rs`.

use std::fmt::Write as _;

/// The measured paths, in the order the check runs and prints them.
pub const PATHS: [&str; 3] = ["udp", "session", "replay"];

/// How far above its budget a path may measure before the check fails (+10 %).
pub const TOLERANCE: f64 = 0.10;

/// The budget file's table of instructions per call, one key per path.
pub const TABLE: &str = "instructions_per_call";

/// The total of the `Ir` event (instructions executed) in a callgrind out file: its `totals:`
/// line, else its `summary:` line, at the column the `events:` line gives `Ir`.
pub fn callgrind_ir(text: &str) -> Result<u64, String> {
    let events: Vec<&str> = text
        .lines()
        .find_map(|l| l.strip_prefix("events:"))
        .ok_or("no `events:` line: not a callgrind out file")?
        .split_whitespace()
        .collect();
    let column = events.iter().position(|e| *e == "Ir").ok_or_else(|| format!("no Ir among the events {events:?}"))?;
    let line = ["totals:", "summary:"]
        .iter()
        .find_map(|key| text.lines().find_map(|l| l.strip_prefix(key)))
        .ok_or("no `totals:` or `summary:` line (did the run end early?)")?;
    let field = line.split_whitespace().nth(column).ok_or_else(|| format!("no Ir column in {line:?}"))?;
    field.parse().map_err(|e| format!("Ir total {field:?}: {e}"))
}

/// Instructions per call of a measured loop: its total `Ir` (callgrind counting only inside the
/// loop, `--toggle-collect`) over its calls. A loop that ran fewer instructions than calls did not
/// run them (or the toggle missed it): an error, not a figure.
pub fn per_call(calls: u64, total: u64) -> Result<f64, String> {
    if calls == 0 {
        return Err("no calls to measure".into());
    }
    if total < calls {
        return Err(format!(
            "{calls} calls ran {total} instructions: callgrind counted nothing of the loop (did the \
             --toggle-collect pattern miss it?)"
        ));
    }
    Ok(total as f64 / calls as f64)
}

/// The budgets of a budget file, `(path, instructions per call)`, sorted by path.
pub fn parse_budget(text: &str) -> Result<Vec<(String, u64)>, String> {
    let doc: toml::Table = toml::from_str(text).map_err(|e| format!("not TOML: {e}"))?;
    let table = doc.get(TABLE).and_then(toml::Value::as_table).ok_or_else(|| format!("no [{TABLE}] table"))?;
    let mut out = Vec::new();
    for (key, value) in table {
        let budget = value
            .as_integer()
            .and_then(|v| u64::try_from(v).ok())
            .filter(|v| *v > 0)
            .ok_or_else(|| format!("{TABLE}.{key} = {value}: a budget is a positive whole number"))?;
        out.push((key.clone(), budget));
    }
    Ok(out)
}

/// `text` with each path's budget set to its measured figure, rounded: the figure on the path's
/// line in the `[instructions_per_call]` table is replaced, the rest of the line (a trailing
/// comment) and every other line kept; a path the table lacks is added at its end. The result is
/// read back to check that it holds exactly the new figures.
pub fn update_budget(text: &str, measured: &[(&str, f64)]) -> Result<String, String> {
    let lines: Vec<&str> = text.lines().collect();
    let header = lines
        .iter()
        .position(|l| l.trim() == format!("[{TABLE}]"))
        .ok_or_else(|| format!("no [{TABLE}] line to update"))?;
    let end = lines[header + 1..]
        .iter()
        .position(|l| l.trim_start().starts_with('['))
        .map_or(lines.len(), |i| header + 1 + i);
    let mut out: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    let mut missing = Vec::new();
    for (path, figure) in measured {
        let rounded = figure.round() as u64;
        let found = (header + 1..end).find(|&i| {
            let (key, rest) = out[i].split_once('=').unwrap_or(("", ""));
            key.trim() == *path && !rest.trim().is_empty()
        });
        match found {
            Some(i) => {
                let (key, rest) = out[i].split_once('=').expect("found by its '='");
                let rest = rest.trim_start();
                let number_end = rest.find(|c: char| !c.is_ascii_digit() && c != '_').unwrap_or(rest.len());
                out[i] = format!("{key}= {rounded}{}", &rest[number_end..]);
            }
            None => missing.push(format!("{path} = {rounded}")),
        }
    }
    // New entries go after the table's last non-blank line.
    let last = (header..end).rev().find(|&i| !out[i].trim().is_empty()).unwrap_or(header);
    out.splice(last + 1..last + 1, missing);
    let mut new = out.join("\n");
    if text.ends_with('\n') {
        new.push('\n');
    }
    let back = parse_budget(&new).map_err(|e| format!("the updated file does not read back: {e}"))?;
    for (path, figure) in measured {
        let want = figure.round() as u64;
        if !back.iter().any(|(p, b)| p == path && *b == want) {
            return Err(format!("the updated file does not read back {path} = {want}"));
        }
    }
    Ok(new)
}

/// One line of the verdict: a path's measured instructions per call and its budget, if it has one.
#[derive(Clone, Debug)]
pub struct Row {
    /// The path (one of [`PATHS`]).
    pub path: String,
    /// Instructions per call, measured.
    pub measured: f64,
    /// Its budget in the file.
    pub budget: Option<u64>,
}

impl Row {
    /// Whether the check fails on this path: no budget, or more than the budget + [`TOLERANCE`].
    pub fn fails(&self) -> bool {
        self.budget.is_none_or(|b| self.measured > b as f64 * (1.0 + TOLERANCE))
    }
}

/// The table the check prints: path, measured, budget, measured ÷ budget, verdict.
pub fn table(rows: &[Row]) -> String {
    let mut s = format!("{:<8} {:>10} {:>8} {:>7}  verdict\n", "path", "measured", "budget", "ratio");
    for r in rows {
        let (budget, ratio) = match r.budget {
            Some(b) => (b.to_string(), format!("{:.3}", r.measured / b as f64)),
            None => ("-".into(), "-".into()),
        };
        let verdict = if r.fails() { "OVER" } else { "ok" };
        let _ = writeln!(s, "{:<8} {:>10.1} {budget:>8} {ratio:>7}  {verdict}", r.path, r.measured);
    }
    s
}

/// One message per failing path, naming it (empty when the check passes).
pub fn failures(rows: &[Row], budget_file: &str) -> Vec<String> {
    rows.iter()
        .filter(|r| r.fails())
        .map(|r| match r.budget {
            Some(b) => format!(
                "path `{}` runs {:.1} instructions per call, {:+.1} % against its budget of {b} in {budget_file} \
                 (the check fails above +{:.0} %)",
                r.path,
                r.measured,
                (r.measured / b as f64 - 1.0) * 100.0,
                TOLERANCE * 100.0
            ),
            None => format!("path `{}` has no budget in {budget_file} ([{TABLE}] {} = …)", r.path, r.path),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
# what it is
[instructions_per_call]
# the UDP path
udp = 1244
session = 1_500 # both sessions
replay   =  400

[other]
x = 1
";

    #[test]
    fn reads_ir_at_its_column_from_totals_or_summary() {
        let two = "version: 1\ncmd: x\nevents: Dr Ir\nfn=main\n1 5 7\nsummary: 11 222\ntotals: 10 333\n";
        assert_eq!(callgrind_ir(two), Ok(333));
        assert_eq!(callgrind_ir("events: Ir\nsummary: 42\n"), Ok(42));
        assert!(callgrind_ir("events: Ir\nfn=main\n1 3\n").unwrap_err().contains("totals"));
        assert!(callgrind_ir("summary: 42\n").unwrap_err().contains("events"));
        assert!(callgrind_ir("events: Dr\nsummary: 42\n").unwrap_err().contains("no Ir"));
    }

    #[test]
    fn per_call_divides_and_refuses_a_loop_that_was_not_counted() {
        assert_eq!(per_call(121_856, 121_856 * 1250 + 12), Ok(1250.0 + 12.0 / 121_856.0));
        assert!(per_call(0, 5).unwrap_err().contains("no calls"));
        assert!(per_call(100, 0).unwrap_err().contains("toggle-collect"));
    }

    #[test]
    fn parses_the_table_and_refuses_what_is_not_a_budget() {
        let b = parse_budget(FILE).unwrap();
        assert_eq!(b, vec![("replay".into(), 400), ("session".into(), 1500), ("udp".into(), 1244)]);
        assert!(parse_budget("[instructions_per_call]\nudp = 1.5\n").is_err());
        assert!(parse_budget("[instructions_per_call]\nudp = 0\n").is_err());
        assert!(parse_budget("udp = 3\n").unwrap_err().contains("no [instructions_per_call]"));
    }

    #[test]
    fn update_replaces_the_figures_and_keeps_everything_else() {
        let new = update_budget(FILE, &[("udp", 600.4), ("session", 1700.5), ("replay", 399.0)]).unwrap();
        let want = "\
# what it is
[instructions_per_call]
# the UDP path
udp = 600
session = 1701 # both sessions
replay   = 399

[other]
x = 1
";
        assert_eq!(new, want);
        // A path the table lacks is added to it, not to the next table.
        let added = update_budget(FILE, &[("dedup", 77.0)]).unwrap();
        assert!(added.contains("replay   =  400\ndedup = 77\n\n[other]"), "{added}");
        assert!(update_budget("x = 1\n", &[("udp", 1.0)]).is_err());
    }

    #[test]
    fn fails_above_ten_percent_or_without_a_budget_and_names_the_path() {
        let row = |path: &str, measured, budget| Row { path: path.into(), measured, budget };
        let rows = [row("udp", 1100.0, Some(1000)), row("session", 1100.5, Some(1000)), row("replay", 5.0, None)];
        assert_eq!(rows.iter().map(Row::fails).collect::<Vec<_>>(), [false, true, true]);
        let f = failures(&rows, "b.toml");
        assert_eq!(f.len(), 2);
        assert!(f[0].starts_with("path `session` runs 1100.5 instructions per call, +10.1 %"), "{}", f[0]);
        assert!(f[1].contains("`replay` has no budget in b.toml"), "{}", f[1]);
        let t = table(&rows);
        assert!(t.lines().nth(2).unwrap().ends_with("OVER") && t.lines().nth(1).unwrap().ends_with("ok"), "{t}");
    }
}
