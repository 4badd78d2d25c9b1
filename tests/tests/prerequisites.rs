//! The README's test command, `scripts/test`, installs what the suite runs. Its list of programs
//! and files (between `# BEGIN prerequisites` and `# END prerequisites`) must name
//!
//! - every program the workspace's code starts by name, `Command::new("…")`;
//! - every program behind a `Command::new(expression)`: each such call is classified in
//!   [`INDIRECT`] (by file and expression), so a new one fails here until someone says what it runs;
//! - every system path the code names (`/usr/bin/…`, `/usr/sbin/…`, `/usr/lib/…`),
//!
//! and everything listed must be present on this machine, as the script leaves it. So the list
//! cannot fall behind the tests: a test that starts a new tool fails here, not on the next fresh
//! machine. (fuzz/ is its own workspace and not part of the suite; programs a shell command line
//! runs inside `sh -c` are not seen.)

use std::{
    fs,
    path::{Path, PathBuf},
};

/// A `Command::new(expression)` whose program is not a literal.
enum Runs {
    /// A binary of the workspace, the toolchain's cargo, or a file the test itself builds.
    Built,
    /// Programs of the system; each is also a string literal in the same file.
    External(&'static [&'static str]),
}

/// Every `Command::new` whose argument is not a string literal, by file and argument (whitespace
/// collapsed), except the workspace's binaries and cargo, which are told apart by their form
/// ([`built_by_form`]).
const INDIRECT: &[(&str, &str, Runs)] = &[
    ("benches/benches/nats_throughput.rs", "&binary", Runs::External(&["nats-server"])),
    ("benches/src/harness/baselines.rs", "&plan.self_bin", Runs::Built),
    ("benches/benches/export.rs", "bin", Runs::Built),
    ("benches/src/harness/e2e.rs", "&compiler", Runs::External(&["cc"])),
    // .venv/bin/python (made by scripts/test from python/requirements-test.txt), else python3.
    ("benches/src/harness/e2e.rs", "batch_python(plan)", Runs::External(&["python3"])),
    ("benches/src/harness/e2e.rs", "&exe", Runs::Built),
    ("benches/src/harness/e2e.rs", "&plan.core_bin", Runs::Built),
    ("benches/src/harness/e2e.rs", "&plan.self_bin", Runs::Built),
    (
        "benches/src/harness/e2e.rs",
        "std::env::var(\"PYTHON\").unwrap_or_else(|_| \"python3\".into())",
        Runs::External(&["python3"]),
    ),
    ("benches/src/harness/iceoryx2.rs", "&plan.self_bin", Runs::Built),
    ("benches/src/harness/pingpong.rs", "&plan.self_bin", Runs::Built),
    ("benches/src/harness/segment.rs", "&plan.self_bin", Runs::Built),
    ("benches/tests/harness.rs", "bench", Runs::Built),
    ("core/tests/reader_c.rs", "&tail", Runs::Built),
    ("core/tests/reader_c.rs", "&tails[0]", Runs::Built),
    ("core/tests/reader_c.rs", "tail", Runs::Built),
    ("core/tests/reader_c.rs", "compiler", Runs::External(&["gcc", "g++"])),
    ("core/tests/reader_python.rs", "&tail", Runs::Built),
    // .venv/bin/python: scripts/test makes it with python3 -m venv.
    ("core/tests/reader_python.rs", "qilin_testkit::venv_python()", Runs::External(&["python3"])),
    ("ctp-standin/src/vendor.rs", "pip[0]", Runs::External(&["pip", "pip3", "python3"])),
    ("shm-layout/tests/c_bars.rs", "&exe", Runs::Built),
    // python3, or .venv/bin/python (qilin_testkit::venv_python) for the numpy path.
    ("shm-layout/tests/python_bars.rs", "python", Runs::External(&["python3"])),
    ("shm-layout/tests/c_header.rs", "&exe", Runs::Built),
    ("shm-layout/tests/c_header.rs", "compiler", Runs::External(&["gcc", "g++"])),
    ("shm-layout/tests/common/mod.rs", "exe", Runs::Built),
    ("shm-layout/tests/mirror_readers.rs", "&tail", Runs::Built),
    ("sidecar/tests/faults.rs", "&tail", Runs::Built),
    ("sidecar/tests/metrics.rs", "name", Runs::External(&["promtool", "prometheus"])),
    ("sidecar/tests/sidecar_start.rs", "program", Runs::Built),
    ("tests/tests/common/ctp.rs", "core", Runs::Built),
    ("tests/tests/common/ctp.rs", "ctp_core()", Runs::Built),
    ("tools/src/cli/journal.rs", "&core", Runs::Built),
    ("tools/tests/audit.rs", "core_bin()", Runs::Built),
    ("tools/tests/keys.rs", "bin", Runs::Built),
];

/// Programs started through another one (`unshare … sh -c "ip …"`, `nsenter … python3`), which
/// the scan of `Command::new` does not see: (file, program), the program named in that file.
const WRAPPED: &[(&str, &str)] = &[
    ("core/tests/udp_multicast.rs", "ip"),
    ("core/tests/udp_multicast.rs", "python3"),
    // `ip netns exec <ns> nats-server` / `tc`: the cluster nodes and the rate limit across namespaces.
    ("sidecar/tests/mirror_netns.rs", "nats-server"),
    ("sidecar/tests/mirror_netns.rs", "tc"),
];

/// The workspace's binaries and the toolchain's cargo, by the form of the expression.
fn built_by_form(arg: &str) -> bool {
    arg.contains("CARGO_BIN_EXE_")
        || arg.contains("workspace_bin(")
        || arg.contains("beside_me(")
        || arg.contains("env!(\"CARGO\")")
        || matches!(arg, "cargo" | "&cargo")
}

/// The names in scripts/test's list.
fn listed() -> Vec<String> {
    let script = fs::read_to_string(qilin_testkit::workspace().join("scripts/test")).unwrap();
    let start = script.find("# BEGIN prerequisites").expect("scripts/test has a # BEGIN prerequisites line");
    let end = script.find("# END prerequisites").expect("scripts/test has a # END prerequisites line");
    script[start..end]
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| !name.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// Every `.rs` file of the workspace (not its target directories, not fuzz/).
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if !(name.starts_with('.') || name.starts_with("target") || name == "fuzz") {
                sources(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

/// The argument of each `Command::new(…)` in `text`, whitespace collapsed.
fn command_args(text: &str) -> Vec<String> {
    let mut args = Vec::new();
    for (at, _) in text.match_indices("Command::new(") {
        let rest = &text[at + "Command::new(".len()..];
        let (mut depth, mut in_str, mut escaped) = (0usize, false, false);
        let mut end = rest.len();
        for (i, c) in rest.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if in_str => escaped = true,
                '"' => in_str = !in_str,
                '(' if !in_str => depth += 1,
                ')' if !in_str && depth == 0 => {
                    end = i;
                    break;
                }
                ')' if !in_str => depth -= 1,
                _ => {}
            }
        }
        let arg = rest[..end].split_whitespace().collect::<Vec<_>>().join(" ");
        args.push(arg.trim_end_matches(',').trim_end().to_owned());
    }
    args
}

/// A single string literal's content.
fn literal(arg: &str) -> Option<&str> {
    let inner = arg.strip_prefix('"')?.strip_suffix('"')?;
    (!inner.contains('"')).then_some(inner)
}

/// System paths named in `text` (string literals under /usr/bin, /usr/sbin, /usr/lib, /bin, /sbin).
fn system_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for prefix in ["\"/usr/bin/", "\"/usr/sbin/", "\"/usr/lib/", "\"/bin/", "\"/sbin/"] {
        for (at, _) in text.match_indices(prefix) {
            let rest = &text[at + 1..];
            let end = rest.find('"').unwrap_or(rest.len());
            let path = &rest[..end];
            if !path.ends_with('/') && !path.contains(['{', ' ']) {
                out.push(path.to_owned());
            }
        }
    }
    out
}

/// What the workspace's code runs, each with where: (program or path, file).
fn used() -> Result<Vec<(String, String)>, Vec<String>> {
    let root = qilin_testkit::workspace();
    let mut files = Vec::new();
    sources(root, &mut files);
    files.sort();
    let (mut used, mut unclassified) = (Vec::new(), Vec::new());
    let mut indirect_seen = vec![false; INDIRECT.len()];
    for file in &files {
        let rel = file.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        if rel == "tests/tests/prerequisites.rs" {
            continue; // this file's own examples
        }
        let text = fs::read_to_string(file).unwrap();
        for arg in command_args(&text) {
            if let Some(program) = literal(&arg) {
                used.push((program.to_owned(), rel.clone()));
            } else if built_by_form(&arg) {
            } else if let Some(i) = INDIRECT.iter().position(|(f, a, _)| *f == rel && *a == arg) {
                indirect_seen[i] = true;
                if let Runs::External(programs) = INDIRECT[i].2 {
                    for program in programs {
                        assert!(
                            text.contains(&format!("\"{program}\"")) || text.contains(&format!("/{program}\"")),
                            "{rel}: INDIRECT says `Command::new({arg})` runs {program}, but the file never names it"
                        );
                        used.push(((*program).to_owned(), rel.clone()));
                    }
                }
            } else {
                unclassified.push(format!("{rel}: Command::new({arg})"));
            }
        }
        used.extend(system_paths(&text).into_iter().map(|p| (p, rel.clone())));
        for (_, program) in WRAPPED.iter().filter(|(f, _)| *f == rel) {
            assert!(
                text.contains(&format!("\"{program} ")) || text.contains(&format!("\"{program}\"")),
                "{rel}: WRAPPED says it runs {program}, but the file never names it"
            );
            used.push(((*program).to_owned(), rel.clone()));
        }
    }
    for (seen, (file, arg, _)) in indirect_seen.iter().zip(INDIRECT) {
        if !seen {
            unclassified.push(format!("{file}: Command::new({arg}) is in INDIRECT but no longer in the code"));
        }
    }
    if unclassified.is_empty() { Ok(used) } else { Err(unclassified) }
}

#[test]
fn every_program_the_code_runs_is_installed_by_scripts_test() {
    let listed = listed();
    let used = used().unwrap_or_else(|calls| {
        panic!(
            "classify these in tests/tests/prerequisites.rs (INDIRECT): what does each run?\n  {}",
            calls.join("\n  ")
        )
    });
    let workspace_bins = ["qilin-core", "qilinctl", "qilin-nats", "qilin-recorder", "qilin-secrets", "qilin-bench"];
    let toolchain = ["cargo", "rustup"];
    let mut missing: Vec<String> = used
        .iter()
        .filter(|(program, _)| !listed.contains(program))
        .filter(|(program, _)| !workspace_bins.contains(&program.as_str()) && !toolchain.contains(&program.as_str()))
        .map(|(program, file)| format!("{program} (run by {file})"))
        .collect();
    missing.sort();
    missing.dedup();
    assert!(missing.is_empty(), "scripts/test does not install:\n  {}", missing.join("\n  "));
    // The script's list is not padded either: everything listed is used (libclang is bindgen's).
    let unused: Vec<&String> =
        listed.iter().filter(|name| *name != "libclang.so" && !used.iter().any(|(p, _)| p == *name)).collect();
    assert!(unused.is_empty(), "scripts/test lists what nothing runs: {unused:?}");
}

/// Where Debian puts libclang (the script asks ldconfig; these are the directories it lists).
fn libclang_dirs() -> impl Iterator<Item = PathBuf> {
    let llvm = fs::read_dir("/usr/lib").into_iter().flatten().flatten().map(|e| e.path());
    let llvm = llvm.filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("llvm-")));
    [PathBuf::from("/usr/lib/x86_64-linux-gnu")].into_iter().chain(llvm.map(|p| p.join("lib")))
}

#[test]
fn everything_scripts_test_lists_is_present() {
    let mut absent = Vec::new();
    for name in listed() {
        let present = if name == "libclang.so" {
            libclang_dirs().any(|dir| {
                fs::read_dir(dir).into_iter().flatten().flatten().any(|e| {
                    let file = e.file_name().to_string_lossy().into_owned();
                    file.starts_with("libclang") && file.contains(".so")
                })
            })
        } else if name.starts_with('/') {
            Path::new(&name).exists()
        } else {
            std::env::var_os("PATH")
                .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(&name).is_file()))
        };
        if !present {
            absent.push(name);
        }
    }
    assert!(absent.is_empty(), "missing (scripts/test installs them; run it, as root): {absent:?}");
}

#[test]
fn the_scanner_sees_literal_and_indirect_commands() {
    let text = "let a = Command::new(\"gcc\");\nlet b = std::process::Command::new(\n    compiler,\n)\n.arg(\"(x\");\n\
                let c = Command::new(format!(\"{}\", f(\")\")));";
    assert_eq!(command_args(text), ["\"gcc\"", "compiler", "format!(\"{}\", f(\")\"))"]);
    assert_eq!(literal("\"gcc\""), Some("gcc"));
    assert_eq!(literal("compiler"), None);
    assert_eq!(
        system_paths("x(\"/usr/bin/python3\") y(\"/usr/local/bin/\") \"/usr/lib/a/b.so\""),
        ["/usr/bin/python3", "/usr/lib/a/b.so"]
    );
}
