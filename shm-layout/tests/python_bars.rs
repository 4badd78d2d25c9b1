//! The Python package reads a bar segment as the Rust reader does: `qilin_shm.bars.BarReader` (the
//! stdlib reader, under the system `python3`) and `qilin_shm.batch.read_bars` (numpy, under the test
//! venv's Python) print every bar of a segment the Rust writer wrote, and the last bar per
//! instrument and period, in the canonical line format of `common/bars.rs` (every field, doubles as
//! their bits); the lines equal the Rust reader's. `qilin_shm.Reader` refuses the bar segment and
//! `BarReader` a tick segment with `OpenError::WrongKind`'s message, word for word.

mod common;
#[path = "common/bars.rs"]
mod sample;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use common::{TempSegment, options};
use qilin_shm::{BarReader, Reader, Writer};
use sample::{rust_lines, write_bars};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn dump(python: &Path, mode: &str, segment: &TempSegment) -> Vec<String> {
    let out = Command::new(python)
        .current_dir(repo())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONPATH", repo().join("python"))
        .arg(repo().join("python/tests/bars_dump.py"))
        .arg(mode)
        .arg(segment.path())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} ({e})", python.display()));
    assert!(out.status.success(), "{mode}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect()
}

fn segments() -> (TempSegment, TempSegment) {
    let bars = TempSegment::new("py-bars");
    write_bars(bars.path());
    let ticks = TempSegment::new("py-bars-ticks");
    drop(Writer::open(ticks.path(), &options(16, 4)).unwrap());
    (bars, ticks)
}

#[test]
fn the_stdlib_reader_reads_the_bars_the_rust_reader_reads_and_refuses_the_other_kind_alike() {
    let (bars, ticks) = segments();
    let python = PathBuf::from("python3");
    let rust = rust_lines(bars.path());
    assert_eq!(rust.len(), 14);
    assert_eq!(dump(&python, "bars", &bars), rust);
    assert_eq!(dump(&python, "tick", &bars), [Reader::open(bars.path()).unwrap_err().to_string()]);
    assert_eq!(dump(&python, "bars", &ticks), [BarReader::open_segment(ticks.path()).unwrap_err().to_string()]);
}

#[test]
fn the_numpy_path_reads_the_bars_the_rust_reader_reads() {
    let (bars, _ticks) = segments();
    let python = qilin_testkit::venv_python();
    assert_eq!(dump(&python, "numpy", &bars), rust_lines(bars.path()));
}
