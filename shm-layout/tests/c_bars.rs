//! The C header reads a bar segment as the Rust reader does: a C program built against
//! `include/qilin_shm.h` opens a bar segment the Rust writer wrote (`qilin_open_bars`), reads every
//! bar from the oldest (`qilin_try_next_bar`) and the last bar per period (`qilin_latest_bar`), and
//! prints every field; the lines equal the Rust reader's, field for field (doubles as their bits, so
//! NaN and -0.0 compare exactly). `qilin_open` refuses the bar segment and `qilin_open_bars` a tick
//! segment with the message of `OpenError::WrongKind`, word for word.
//!
//! Needs gcc (Debian/Ubuntu: `apt-get install build-essential`); fails, never skips, without it.

mod common;
#[path = "common/bars.rs"]
mod sample;

use std::{path::Path, process::Command};

use common::{TempSegment, options};
use qilin_shm::{BarReader, Reader, Writer};
use sample::{rust_lines, write_bars};

const PROGRAM: &str = r#"
#include <inttypes.h>
#include "qilin_shm.h"

static uint64_t bits(double d) { uint64_t u; memcpy(&u, &d, 8); return u; }

static void print_bar(const char *what, const qilin_bar_record_t *b) {
    printf("%s %" PRIu64 " %" PRId64 " %" PRId64 " %u %u %u %u %u %u %.32s %016" PRIx64 " %016" PRIx64
           " %016" PRIx64 " %016" PRIx64 " %" PRId64 " %016" PRIx64 " %016" PRIx64 " %016" PRIx64 " %" PRIu64
           " %" PRIu64 "\n",
           what, b->sequence, b->start_ns, b->end_ns, b->instrument_index, b->trading_day, b->flags, b->ticks,
           (unsigned)b->exchange, (unsigned)b->period, (const char *)b->instrument_id, bits(b->open), bits(b->high),
           bits(b->low), bits(b->close), b->volume, bits(b->turnover), bits(b->open_interest),
           bits(b->open_interest_change), b->first_sequence, b->last_sequence);
}

int main(int argc, char **argv) {
    qilin_reader_t r;
    char err[512];
    uint64_t a, b;
    qilin_bar_record_t bar;
    unsigned p;
    uint32_t i;
    if (argc == 3 && strcmp(argv[1], "tick") == 0) {
        if (qilin_open(argv[2], &r, err, sizeof err) == 0) return 3;
        printf("%s\n", err);
        return 0;
    }
    if (qilin_open_bars(argv[2], &r, err, sizeof err) != 0) {
        printf("%s\n", err);
        return 0;
    }
    qilin_seek_oldest(&r);
    for (;;) {
        int rc = qilin_try_next_bar(&r, &bar, &a, &b);
        if (rc == QILIN_EMPTY) break;
        if (rc != QILIN_TICK) { printf("unexpected %d\n", rc); return 4; }
        print_bar("bar", &bar);
    }
    for (i = 0; i < qilin_directory_len(&r); i++)
        for (p = QILIN_BAR_PERIOD_1M; p <= QILIN_BAR_PERIOD_1D; p++)
            if (qilin_latest_bar(&r, i, p, &bar) == QILIN_LATEST_FOUND) print_bar("last", &bar);
    qilin_close(&r);
    return 0;
}
"#;

#[test]
fn a_c_reader_reads_the_bars_the_rust_reader_reads_and_refuses_the_other_kind_alike() {
    let bars = TempSegment::new("c-bars");
    write_bars(bars.path());
    let ticks = TempSegment::new("c-bars-ticks");
    drop(Writer::open(ticks.path(), &options(16, 4)).unwrap());

    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("bars.c");
    std::fs::write(&source, PROGRAM).unwrap();
    let exe = dir.path().join("bars");
    let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("include");
    let built = Command::new("gcc")
        .args(["-std=c11", "-D_DEFAULT_SOURCE", "-Wall", "-Wextra", "-Werror", "-O2", "-I"])
        .arg(&include)
        .arg(&source)
        .arg("-o")
        .arg(&exe)
        .output()
        .unwrap_or_else(|e| panic!("cannot run gcc ({e}): apt-get install build-essential"));
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    let run = |args: &[&str]| {
        let out = Command::new(&exe).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };

    let c = run(&["bars", &bars.text()]);
    let c: Vec<&str> = c.lines().collect();
    let rust = rust_lines(bars.path());
    assert_eq!(rust.len(), 8 + 6, "8 bars, 3 last bars per instrument: {rust:#?}");
    assert_eq!(c, rust);

    let tick_error = Reader::open(bars.path()).unwrap_err().to_string();
    assert_eq!(run(&["tick", &bars.text()]).trim_end(), tick_error);
    let bar_error = BarReader::open_segment(ticks.path()).unwrap_err().to_string();
    assert_eq!(run(&["bars", &ticks.text()]).trim_end(), bar_error);
    assert!(bar_error.contains("is a tick segment, not a bar segment"), "{bar_error}");
}
