//! The C header `shm-layout/include/qilin_shm.h`: (a) the committed file is exactly what
//! `qilinctl layout --c-header` generates; (b) it compiles warning-free as C11 and as C++17 (its
//! static asserts check every size and offset); (c) a C program built against it prints the size and
//! offset of every field, the constants and the geometry arithmetic, and they equal the Rust tables
//! (so the asserts are not vacuous and the C geometry is Rust's).
//!
//! Needs gcc and g++ (Debian/Ubuntu: `apt-get install build-essential`); the test fails, never skips,
//! without them.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use qilin_shm::cheader::{c_header, c_struct_name};
use qilin_shm::{Counter, Exchange, FINGERPRINT, Geometry, LAYOUT_VERSION, MAX_INSTRUMENTS, MAX_RING_SLOTS, layout};

const REGENERATE: &str =
    "cargo run -p qilin-tools --bin qilinctl -- layout --c-header > shm-layout/include/qilin_shm.h";

fn include_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shm-layout/include")
}

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("qilin-c-header-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs a compiler; fails the test with its diagnostics, or with how to install it if it is missing.
fn compile(compiler: &str, args: &[&str], source: &Path, output: &Path) {
    let result = Command::new(compiler)
        .args(args)
        .arg("-I")
        .arg(include_dir())
        .arg(source)
        .arg("-o")
        .arg(output)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {compiler} ({e}): install a C/C++ toolchain (Debian/Ubuntu: apt-get install build-essential)")
        });
    assert!(
        result.status.success(),
        "{compiler} {args:?} {} failed:\n{}",
        source.display(),
        String::from_utf8_lossy(&result.stderr)
    );
}

#[test]
fn committed_header_is_the_generated_one() {
    let path = include_dir().join("qilin_shm.h");
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}; generate it with `{REGENERATE}`", path.display()));
    let generated = c_header();
    if committed != generated {
        let (line, (want, got)) = generated
            .lines()
            .chain(std::iter::repeat(""))
            .zip(committed.lines().chain(std::iter::repeat("")))
            .enumerate()
            .find(|(_, (g, c))| g != c)
            .map(|(i, pair)| (i + 1, pair))
            .unwrap_or((0, ("<trailing bytes differ>", "")));
        panic!(
            "{} is out of date with the Rust layout (first difference at line {line}):\n  generated: {want}\n  committed: {got}\nRegenerate it with\n  {REGENERATE}",
            path.display()
        );
    }
}

#[test]
fn header_compiles_warning_free_as_c11_and_cxx17() {
    let scratch = Scratch::new("compile");
    let unit = "#include \"qilin_shm.h\"\n#include \"qilin_shm.h\" /* include guard */\nint main(void) {\n    qilin_reader_t r;\n    qilin_tick_record_t t;\n    uint64_t a = 0, b = 0;\n    char err[256];\n    if (qilin_open(\"/nonexistent\", &r, err, sizeof err) == 0) {\n        (void)qilin_try_next(&r, &t, &a, &b);\n        (void)qilin_latest(&r, 0, &t);\n        (void)qilin_find_instrument(&r, \"rb2605\");\n        (void)qilin_heartbeat_ns(&r);\n        (void)qilin_run_state(&r);\n        qilin_seek_oldest(&r);\n        qilin_close(&r);\n    }\n    return 0;\n}\n";
    let c = scratch.0.join("unit.c");
    let cxx = scratch.0.join("unit.cpp");
    std::fs::write(&c, unit).unwrap();
    std::fs::write(&cxx, unit).unwrap();
    compile("gcc", &["-std=c11", "-Wall", "-Wextra", "-Werror", "-O2"], &c, &scratch.0.join("unit_c"));
    compile("g++", &["-std=c++17", "-Wall", "-Wextra", "-Werror", "-O2"], &cxx, &scratch.0.join("unit_cxx"));
}

/// Capacities whose geometry the C arithmetic must reproduce (the last ones are refused).
const GEOMETRIES: &[(u64, u32)] = &[
    (2, 1),
    (1024, 100),
    (65536, 4096),
    (1 << 20, 3),
    (MAX_RING_SLOTS, MAX_INSTRUMENTS),
    (1000, 10),
    (1, 10),
    (MAX_RING_SLOTS * 2, 10),
    (1024, 0),
    (1024, MAX_INSTRUMENTS + 1),
];

/// The C program of (c), generated from the Rust tables: one line per struct and per field.
fn probe_source() -> String {
    let mut s = String::from("#include <stdio.h>\n#include \"qilin_shm.h\"\nint main(void) {\n");
    for st in layout::STRUCTS {
        let c = format!("{}_t", c_struct_name(st.name));
        s += &format!("    printf(\"struct {} %zu\\n\", sizeof({c}));\n", st.name);
        for f in st.fields {
            s += &format!(
                "    printf(\"field {}.{} %zu %zu\\n\", offsetof({c}, {}), sizeof((({c} *)0)->{}));\n",
                st.name, f.name, f.name, f.name
            );
        }
    }
    s += "    printf(\"version %u\\n\", (unsigned)QILIN_LAYOUT_VERSION);\n";
    s += "    printf(\"fingerprint 0x%016llx\\n\", (unsigned long long)QILIN_FINGERPRINT);\n";
    s += "    printf(\"magic %s\\n\", QILIN_MAGIC);\n";
    s += "    printf(\"record_words %u\\n\", (unsigned)QILIN_RECORD_WORDS);\n";
    s += "    for (unsigned i = 0; i < QILIN_COUNTER_COUNT; i++) printf(\"counter %u %s\\n\", i, qilin_counter_name(i));\n";
    s += "    for (unsigned e = 0; e < 8; e++) printf(\"exchange %u %s\\n\", e, qilin_exchange_name(e));\n";
    for (ring, cap) in GEOMETRIES {
        s += &format!(
            "    {{ qilin_geometry_t g; char err[256];\n      if (qilin_geometry(UINT64_C({ring}), {cap}u, &g, err, sizeof err) == 0) printf(\"geometry {ring} {cap} %llu %llu %llu %llu\\n\", (unsigned long long)g.directory_offset, (unsigned long long)g.lvc_offset, (unsigned long long)g.ring_offset, (unsigned long long)g.total_size);\n      else printf(\"geometry {ring} {cap} error %s\\n\", err); }}\n"
        );
    }
    s += "    return 0;\n}\n";
    s
}

/// What the probe must print, from the Rust side.
fn expected_probe_output() -> String {
    let mut s = String::new();
    for st in layout::STRUCTS {
        s += &format!("struct {} {}\n", st.name, st.size);
        for f in st.fields {
            s += &format!("field {}.{} {} {}\n", st.name, f.name, f.offset, f.size);
        }
    }
    s += &format!("version {LAYOUT_VERSION}\n");
    s += &format!("fingerprint {}\n", layout::fingerprint_text(FINGERPRINT));
    s += "magic QILINSHM\n";
    s += &format!("record_words {}\n", layout::RECORD_WORDS);
    for (i, name) in Counter::NAMES.iter().enumerate() {
        s += &format!("counter {i} {name}\n");
    }
    for e in 0..8u8 {
        s += &format!("exchange {e} {}\n", Exchange::from_code(e).map(Exchange::as_str).unwrap_or("?"));
    }
    for (ring, cap) in GEOMETRIES {
        match Geometry::new(*ring, *cap) {
            Ok(g) => {
                s += &format!(
                    "geometry {ring} {cap} {} {} {} {}\n",
                    g.directory_offset, g.lvc_offset, g.ring_offset, g.total_size
                )
            }
            Err(e) => s += &format!("geometry {ring} {cap} error {e}\n"),
        }
    }
    s
}

#[test]
fn c_sizes_offsets_constants_and_geometry_equal_the_rust_tables() {
    let scratch = Scratch::new("probe");
    let source = scratch.0.join("probe.c");
    std::fs::write(&source, probe_source()).unwrap();
    let expected = expected_probe_output();
    let fields: usize = layout::STRUCTS.iter().map(|s| s.fields.len()).sum();
    for (compiler, args) in
        [("gcc", ["-std=c11", "-Wall", "-Wextra", "-Werror"]), ("g++", ["-std=c++17", "-Wall", "-Wextra", "-Werror"])]
    {
        let args: Vec<&str> = if compiler == "g++" { [&args[..], &["-x", "c++"]].concat() } else { args.to_vec() };
        let exe = scratch.0.join(format!("probe-{compiler}"));
        compile(compiler, &args, &source, &exe);
        let out = Command::new(&exe).output().unwrap();
        assert!(out.status.success());
        let got = String::from_utf8(out.stdout).unwrap();
        for (i, (g, e)) in got.lines().zip(expected.lines()).enumerate() {
            assert_eq!(g, e, "{compiler}: line {} of the probe differs from the Rust tables", i + 1);
        }
        assert_eq!(
            got.lines().count(),
            expected.lines().count(),
            "{compiler}: probe printed a different number of lines"
        );
        assert!(got.lines().filter(|l| l.starts_with("field ")).count() == fields && fields > 50);
    }
}
