//! Generates the C header `qilin_shm.h` from the Rust layout definitions.
//!
//! Everything that describes the layout is derived from `qilin_shm`: the struct field tables
//! ([`crate::layout::STRUCTS`]), sizes, [`LAYOUT_VERSION`], [`FINGERPRINT`], counter names,
//! quality bits and the exchange, source, run-state and link-state codes. A field's C type comes
//! from its machine type in the field table ([`FieldDesc::ty`](crate::descriptor::FieldDesc),
//! derived from the Rust type by `layout_struct!`); the generator checks that it accounts for the
//! field's size and refuses to produce a header otherwise. The read protocol itself is the fixed
//! block [`INLINE_FUNCTIONS`], the same steps as `crate::Reader`.
//!
//! The committed `shm-layout/include/qilin_shm.h` must equal [`c_header`] byte for byte
//! (shm-layout/tests/c_header.rs); regenerate it with
//! `cargo run -p qilin-tools --bin qilinctl -- layout --c-header > shm-layout/include/qilin_shm.h`.

use std::fmt::Write as _;

use crate::{
    Counter, Exchange, LinkState, MAX_INSTRUMENTS, MAX_RING_SLOTS, RunState, Source,
    descriptor::StructDesc,
    encoding::{FieldType, Scalar},
    layout::{
        CACHE_LINE, FINGERPRINT, INSTRUMENT_ID_LEN, LAYOUT_VERSION, MAGIC, RECORD_WORDS, STATUS_WORDS, STRUCTS,
        fingerprint_text,
    },
    quality,
};

/// Page size the geometry rounds the ring and the total size to (`crate::Geometry`).
const PAGE: u64 = 4096;

/// `TickRecord` → `qilin_tick_record` (the C tag; the typedef adds `_t`).
pub fn c_struct_name(rust: &str) -> String {
    let mut out = String::from("qilin");
    for c in rust.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// `TicksReceived` / `FailedOver` / `ticks_received` → `TICKS_RECEIVED` / `FAILED_OVER`.
fn upper_snake(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 && !out.ends_with('_') {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// A field's C declaration parts: element type, element size, array length.
struct CType {
    element: String,
    element_size: usize,
    len: Option<usize>,
}

fn c_type(ty: FieldType, structs: &[StructDesc]) -> Result<CType, String> {
    let (element, len) = match ty {
        FieldType::Scalar(s) => (Ok(s), None),
        FieldType::Array(s, n) => (Ok(s), Some(n)),
        FieldType::Struct(name) => (Err(name), None),
    };
    let (c, size) = match element {
        Ok(Scalar::U8) => ("uint8_t".to_string(), 1),
        Ok(Scalar::U32) => ("uint32_t".to_string(), 4),
        Ok(Scalar::I32) => ("int32_t".to_string(), 4),
        Ok(Scalar::U64) => ("uint64_t".to_string(), 8),
        Ok(Scalar::I64) => ("int64_t".to_string(), 8),
        Ok(Scalar::F64) => ("double".to_string(), 8),
        Err(other) => {
            let s = structs.iter().find(|s| s.name == other).ok_or(format!("unknown type {other}"))?;
            (format!("{}_t", c_struct_name(s.name)), s.size)
        }
    };
    Ok(CType { element: c, element_size: size, len })
}

/// The header text. Panics (naming the field) if a field's machine type does not account for its
/// size or names no shared struct: the header must never guess.
pub fn c_header() -> String {
    try_c_header(&header_structs()).unwrap_or_else(|e| panic!("cannot generate qilin_shm.h: {e}"))
}

/// The structs the header declares: a tick segment's, then a bar segment's own (`BarRecord`,
/// `BarSlot`, `BarLvcEntry`).
pub fn header_structs() -> Vec<StructDesc> {
    let mut all = STRUCTS.to_vec();
    all.extend(crate::layout::BAR_STRUCTS.iter().filter(|b| !STRUCTS.iter().any(|t| t.name == b.name)));
    all
}

/// [`c_header`] over given tables (tests feed it broken ones).
pub fn try_c_header(structs: &[StructDesc]) -> Result<String, String> {
    let mut out = String::new();
    out.push_str(PREAMBLE);
    constants(&mut out);

    // Structs, each after the structs it contains.
    let mut emitted: Vec<&str> = Vec::new();
    while emitted.len() < structs.len() {
        let before = emitted.len();
        for s in structs {
            if emitted.contains(&s.name) {
                continue;
            }
            let mut decls = Vec::new();
            let mut ready = true;
            for f in s.fields {
                let key = format!("{}.{}", s.name, f.name);
                let ty = c_type(f.ty, structs).map_err(|e| format!("field {key}: {e}"))?;
                if let FieldType::Struct(inner) = f.ty
                    && !emitted.contains(&inner)
                {
                    ready = false;
                }
                let size = ty.element_size * ty.len.unwrap_or(1);
                if size != f.size {
                    return Err(format!(
                        "field {key}: its type {} is {size} bytes but the field is {} bytes",
                        f.ty.name(),
                        f.size
                    ));
                }
                decls.push((f, ty));
            }
            if !ready {
                continue;
            }
            let c = c_struct_name(s.name);
            let _ = writeln!(out, "/* {} ({} bytes) */", s.name, s.size);
            let _ = writeln!(out, "typedef struct {c} {{");
            for (f, ty) in &decls {
                let decl = match ty.len {
                    Some(n) => format!("{} {}[{n}];", ty.element, f.name),
                    None => format!("{} {};", ty.element, f.name),
                };
                let unit = f.encoding.unit().map(|u| format!(", {u}")).unwrap_or_default();
                let _ = writeln!(
                    out,
                    "    {decl:<40} /* +{:<4} {:>4} B  {}{unit} */",
                    f.offset,
                    f.size,
                    f.encoding.token()
                );
            }
            let _ = writeln!(out, "}} {c}_t;");
            let _ = writeln!(out, "QILIN_STATIC_ASSERT(sizeof({c}_t) == {}, \"sizeof {}\");", s.size, s.name);
            for (f, _) in &decls {
                let _ = writeln!(
                    out,
                    "QILIN_STATIC_ASSERT(offsetof({c}_t, {}) == {}, \"offset of {}.{}\");",
                    f.name, f.offset, s.name, f.name
                );
                let _ = writeln!(
                    out,
                    "QILIN_STATIC_ASSERT(sizeof((({c}_t *)0)->{}) == {}, \"size of {}.{}\");",
                    f.name, f.size, s.name, f.name
                );
            }
            out.push('\n');
            emitted.push(s.name);
        }
        if emitted.len() == before {
            return Err("shared structs contain each other in a cycle".into());
        }
    }
    out.push_str(INLINE_FUNCTIONS);
    Ok(out)
}

fn constants(out: &mut String) {
    let magic = String::from_utf8_lossy(&MAGIC).into_owned();
    let w = |out: &mut String, name: &str, value: String, doc: &str| {
        let _ = writeln!(out, "#define {name:<40} {value:<24} /* {doc} */");
    };
    out.push_str("/* ---- constants ------------------------------------------------------------------------ */\n");
    w(out, "QILIN_MAGIC", format!("\"{magic}\""), "first 8 bytes of every tick segment");
    w(out, "QILIN_LAYOUT_VERSION", format!("{LAYOUT_VERSION}u"), "Identity.layout_version");
    w(out, "QILIN_FINGERPRINT", format!("UINT64_C({})", fingerprint_text(FINGERPRINT)), "Identity.fingerprint");
    w(out, "QILIN_CACHE_LINE", format!("{CACHE_LINE}u"), "hot words sit on their own 128-byte line");
    w(out, "QILIN_INSTRUMENT_ID_LEN", format!("{INSTRUMENT_ID_LEN}u"), "InstrumentID bytes incl. NUL padding");
    w(out, "QILIN_RECORD_WORDS", format!("{RECORD_WORDS}u"), "64-bit words in a tick record");
    w(out, "QILIN_STATUS_WORDS", format!("{STATUS_WORDS}u"), "64-bit words in a status record");
    w(out, "QILIN_COUNTER_SLOTS", format!("{}u", crate::codes::COUNTER_SLOTS), "words in the counter block");
    w(out, "QILIN_MAX_RING_SLOTS", format!("UINT64_C({MAX_RING_SLOTS})"), "largest ring accepted");
    w(out, "QILIN_MAX_INSTRUMENTS", format!("{MAX_INSTRUMENTS}u"), "largest directory accepted");
    w(out, "QILIN_PAGE", format!("UINT64_C({PAGE})"), "ring and total size are page multiples");
    w(out, "QILIN_VERSIONED_ATTEMPTS", "1024u".into(), "retries of a last-value read");
    w(
        out,
        "QILIN_LAP_HEADROOM_DIVISOR",
        format!("UINT64_C({})", crate::LAP_HEADROOM_DIVISOR),
        "default lap headroom = ring_slots / this",
    );
    let bar_magic = String::from_utf8_lossy(&crate::layout::BAR_MAGIC).into_owned();
    w(out, "QILIN_BAR_MAGIC", format!("\"{bar_magic}\""), "first 8 bytes of every bar segment");
    w(out, "QILIN_BAR_LAYOUT_VERSION", format!("{}u", crate::layout::BAR_LAYOUT_VERSION), "a bar segment's version");
    w(
        out,
        "QILIN_BAR_FINGERPRINT",
        format!("UINT64_C({})", fingerprint_text(crate::layout::BAR_FINGERPRINT)),
        "a bar segment's fingerprint",
    );
    w(out, "QILIN_BAR_RECORD_WORDS", format!("{}u", crate::layout::BAR_RECORD_WORDS), "64-bit words in a bar record");
    w(
        out,
        "QILIN_BAR_LVC_PER_INSTRUMENT",
        format!("{}u", crate::layout::BAR_LVC_PER_INSTRUMENT),
        "last bars per instrument: one per period",
    );
    out.push('\n');

    out.push_str("/* Bar periods (BarRecord.period). */\n");
    for p in crate::codes::BarPeriod::ALL {
        w(out, &format!("QILIN_BAR_PERIOD_{}", p.as_str().to_ascii_uppercase()), format!("{}u", p as u8), p.as_str());
    }
    out.push_str("/* Bar flags (BarRecord.flags). */\n");
    for (bit, name, _) in crate::codes::bar_flags::BITS {
        w(out, &format!("QILIN_BAR_FLAG_{}", upper_snake(name)), format!("{bit:#x}u"), name);
    }
    out.push_str("/* Exchange codes (TickRecord.exchange, DirectoryEntry.exchange). */\n");
    for e in Exchange::ALL {
        w(out, &format!("QILIN_EXCHANGE_{}", e.as_str()), format!("{}u", e as u8), e.as_str());
    }
    out.push_str("/* Source codes (TickRecord.source, StatusRecord.active_source). */\n");
    for code in 0..=u8::MAX {
        if let Some(s) = Source::from_code(code) {
            w(out, &format!("QILIN_SOURCE_{}", s.as_str().to_ascii_uppercase()), format!("{code}u"), s.as_str());
        }
    }
    out.push_str("/* Run state (Session.run_state); 0 = never started. */\n");
    for code in 0..=255u64 {
        if let Some(s) = RunState::from_code(code) {
            let name = upper_snake(&format!("{s:?}"));
            w(out, &format!("QILIN_RUN_{name}"), format!("{code}u"), &format!("{s:?}"));
        }
    }
    out.push_str("/* Link state (StatusRecord.link_state). */\n");
    for code in 0..=255u32 {
        if let Some(s) = LinkState::from_code(code) {
            let name = upper_snake(&format!("{s:?}"));
            w(out, &format!("QILIN_LINK_{name}"), format!("{code}u"), &format!("{s:?}"));
        }
    }
    out.push_str("/* Quality bits (TickRecord.quality). */\n");
    for (bit, name) in quality::NAMES {
        w(out, &format!("QILIN_QUALITY_{}", upper_snake(name)), format!("{bit:#x}u"), name);
    }
    w(out, "QILIN_QUALITY_ANOMALIES", format!("{:#x}u", quality::ANOMALIES), "bits a user should look at");
    w(out, "QILIN_QUALITY_NOTES", format!("{:#x}u", quality::NOTES), "bits saying how the feed normalized");
    out.push_str("/* Counter indexes into Counters.values. */\n");
    for (i, name) in Counter::NAMES.iter().enumerate() {
        w(out, &format!("QILIN_COUNTER_{}", upper_snake(name)), format!("{i}u"), name);
    }
    w(out, "QILIN_COUNTER_COUNT", format!("{}u", Counter::NAMES.len()), "defined counters");
    out.push('\n');

    out.push_str("/* Name of counter `index` (metric style), NULL if undefined. */\n");
    out.push_str("static inline const char *qilin_counter_name(unsigned index) {\n");
    out.push_str("    static const char *const names[] = {\n");
    for name in Counter::NAMES {
        let _ = writeln!(out, "        \"{name}\",");
    }
    out.push_str("    };\n");
    out.push_str("    return index < QILIN_COUNTER_COUNT ? names[index] : NULL;\n}\n\n");
    out.push_str("/* CTP ExchangeID of an exchange code (\"SHFE\", ...), \"?\" if unknown. */\n");
    out.push_str("static inline const char *qilin_exchange_name(unsigned code) {\n    switch (code) {\n");
    for e in Exchange::ALL {
        let _ = writeln!(out, "    case {}: return \"{}\";", e as u8, e.as_str());
    }
    out.push_str("    default: return \"?\";\n    }\n}\n\n");
    out.push_str("/* Name of a source code (\"primary\", \"sim\", ...), \"?\" if unknown. */\n");
    out.push_str("static inline const char *qilin_source_name(unsigned code) {\n    switch (code) {\n");
    for code in 0..=u8::MAX {
        if let Some(s) = Source::from_code(code) {
            let _ = writeln!(out, "    case {code}: return \"{}\";", s.as_str());
        }
    }
    out.push_str("    default: return \"?\";\n    }\n}\n\n");
    out.push_str("/* ---- shared structs (field names as in Rust; every size and offset asserted) ----------- */\n");
}

const PREAMBLE: &str = r#"/* qilin_shm.h: the qilin-feed shared-memory segment, for C11 and C++ readers.
 *
 * GENERATED by `qilinctl layout --c-header` from the Rust definitions in qilin-shm
 * (shm-layout/src/layout.rs, codes.rs). Each field's comment gives its offset, size and encoding
 * (and unit), as in shm-layout/LAYOUT.md's generated tables. DO NOT EDIT BY HAND. Regenerate with
 *   cargo run -p qilin-tools --bin qilinctl -- layout --c-header > shm-layout/include/qilin_shm.h
 * (tools/tests/c_header.rs fails when this file and the generator disagree).
 *
 * Header-only. Needs GCC or Clang (it uses their __atomic builtins) and a 64-bit target where
 * 8-byte atomic loads are plain loads (x86-64, AArch64): the segment is mapped PROT_READ and a
 * reader never writes a byte of it.
 *
 *   qilin_reader_t r;
 *   char err[512];
 *   if (qilin_open("/dev/shm/qilin", &r, err, sizeof err) != 0) { fprintf(stderr, "%s\n", err); ... }
 *   qilin_seek_oldest(&r);
 *   qilin_tick_record_t t;
 *   uint64_t a, b;
 *   for (;;) switch (qilin_try_next(&r, &t, &a, &b)) {
 *       case QILIN_TICK:      use(&t); break;
 *       case QILIN_GAP:       lost(a, b); break;        sequences a..=b were overwritten
 *       case QILIN_NEW_EPOCH: restarted(a, b); break;   the core restarted; sequences continue
 *       case QILIN_EMPTY:     break;                    nothing new yet
 *   }
 *   qilin_close(&r);
 *
 * A bar segment (written by qilin-bars, magic QILINBAR, LAYOUT.md "Bar segments") reads the same way:
 * qilin_open_bars, then qilin_try_next_bar into a qilin_bar_record_t and qilin_latest_bar(r, index,
 * QILIN_BAR_PERIOD_1M, &bar); qilin_open refuses a bar segment and qilin_open_bars a tick segment.
 *
 * Opening validates, in this order, like the Rust reader: the file opens and is not empty, it holds
 * at least a header, the magic, the layout version, the fingerprint, the geometry the header's
 * capacities imply, and the file size. The read path (try_next, latest, ...) makes no syscall.
 */
#ifndef QILIN_SHM_H
#define QILIN_SHM_H

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if !defined(__GNUC__) && !defined(__clang__)
#error "qilin_shm.h needs GCC or Clang (__atomic builtins)"
#endif

#ifdef __cplusplus
#define QILIN_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
extern "C" {
#else
#define QILIN_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif

QILIN_STATIC_ASSERT(sizeof(double) == 8, "double is IEEE 754 binary64");
QILIN_STATIC_ASSERT(sizeof(void *) == 8, "64-bit target");
QILIN_STATIC_ASSERT(__atomic_always_lock_free(sizeof(uint64_t), 0), "8-byte atomic loads are lock-free");

"#;

/// The read protocol: the same steps as `crate::Reader` (see shm-layout/src/lib.rs and seqlock.rs).
pub const INLINE_FUNCTIONS: &str = r#"/* ---- reader --------------------------------------------------------------------------- */

/* Outcome of qilin_try_next. */
#define QILIN_TICK 0      /* a whole record was copied into *out */
#define QILIN_EMPTY 1     /* nothing new yet */
#define QILIN_GAP 2       /* lapped: sequences *first..=*last are lost; reading continues at *last + 1 */
#define QILIN_NEW_EPOCH 3 /* the writer restarted: *first = previous epoch, *last = current (once) */

/* Outcome of qilin_latest. */
#define QILIN_LATEST_FOUND 1                /* *out holds the instrument's latest tick */
#define QILIN_LATEST_NONE 0                 /* the instrument has no tick yet */
#define QILIN_LATEST_UNKNOWN_INSTRUMENT (-1) /* index not in the directory */
#define QILIN_LATEST_CONTENDED (-2)         /* kept changing while being read (or a writer died mid-write); retry */

/* A read-only view of a segment with its own cursor. Fields are private; use the functions. */
typedef struct qilin_reader {
    const uint8_t *base; /* PROT_READ mapping of the whole file */
    size_t map_len;
    uint64_t next;  /* sequence the next QILIN_TICK returns */
    uint64_t epoch; /* epoch last reported */
    uint64_t mask;  /* ring_slots - 1 */
    uint64_t lap_headroom; /* slots past the oldest a lapped reader resumes at (qilin_set_lap_headroom) */
    uint64_t ring_slots;
    uint32_t instrument_capacity;
    uint64_t directory_offset;
    uint64_t lvc_offset;
    uint64_t ring_offset;
    uint64_t total_size;
    int bars; /* 1: opened by qilin_open_bars (a bar segment), 0: by qilin_open */
} qilin_reader_t;

/* Where every region of a segment with given capacities starts (crate::Geometry). */
typedef struct qilin_geometry {
    uint64_t ring_slots;
    uint32_t instrument_capacity;
    uint64_t directory_offset;
    uint64_t lvc_offset;
    uint64_t ring_offset;
    uint64_t total_size;
} qilin_geometry_t;

static inline uint64_t qilin__align_up(uint64_t value, uint64_t to) {
    return (value + to - 1) / to * to;
}

static inline void qilin__errf(char *err, size_t err_len, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static inline void qilin__errf(char *err, size_t err_len, const char *fmt, ...) {
    va_list ap;
    if (err == NULL || err_len == 0) return;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

/* Computes the geometry for the given capacities; 0 on success, -1 (with the reason in err) if the
 * capacities are not usable. Same arithmetic and messages as Geometry::new. */
static inline int qilin__geometry_of(uint64_t ring_slots, uint32_t instrument_capacity, uint64_t stamped_size,
                                     uint64_t lvc_per_instrument, qilin_geometry_t *g, char *err, size_t err_len) {
    if (ring_slots < 2 || ring_slots > QILIN_MAX_RING_SLOTS || (ring_slots & (ring_slots - 1)) != 0) {
        qilin__errf(err, err_len, "ring_slots = %llu: must be a power of two between 2 and %llu",
                    (unsigned long long)ring_slots, (unsigned long long)QILIN_MAX_RING_SLOTS);
        return -1;
    }
    if (instrument_capacity < 1 || instrument_capacity > QILIN_MAX_INSTRUMENTS) {
        qilin__errf(err, err_len, "instrument_capacity = %u: must be between 1 and %u", (unsigned)instrument_capacity,
                    (unsigned)QILIN_MAX_INSTRUMENTS);
        return -1;
    }
    g->ring_slots = ring_slots;
    g->instrument_capacity = instrument_capacity;
    g->directory_offset = qilin__align_up(sizeof(qilin_header_t), QILIN_CACHE_LINE);
    g->lvc_offset = qilin__align_up(g->directory_offset + (uint64_t)instrument_capacity * sizeof(qilin_directory_entry_t),
                                    QILIN_CACHE_LINE);
    g->ring_offset = qilin__align_up(
        g->lvc_offset + (uint64_t)instrument_capacity * lvc_per_instrument * stamped_size, QILIN_PAGE);
    g->total_size = qilin__align_up(g->ring_offset + ring_slots * stamped_size, QILIN_PAGE);
    return 0;
}

/* The geometry of a tick segment (Geometry::new). */
static inline int qilin_geometry(uint64_t ring_slots, uint32_t instrument_capacity, qilin_geometry_t *g,
                                 char *err, size_t err_len) {
    return qilin__geometry_of(ring_slots, instrument_capacity, sizeof(qilin_slot_t), 1, g, err, err_len);
}

/* The geometry of a bar segment (Geometry::of::<BarRecord>): 192-byte slots and last-value entries,
 * QILIN_BAR_LVC_PER_INSTRUMENT last-value entries per instrument. */
static inline int qilin_bar_geometry(uint64_t ring_slots, uint32_t instrument_capacity, qilin_geometry_t *g,
                                     char *err, size_t err_len) {
    return qilin__geometry_of(ring_slots, instrument_capacity, sizeof(qilin_bar_slot_t), QILIN_BAR_LVC_PER_INSTRUMENT,
                              g, err, err_len);
}

/* Atomic word access: GCC/Clang builtins, valid in C11 and C++. Readers only ever load. */
static inline uint64_t qilin__load_acquire(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline uint64_t qilin__load_relaxed(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }

static inline void qilin__spin_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static inline const qilin_header_t *qilin__header(const qilin_reader_t *r) {
    return (const qilin_header_t *)(const void *)r->base;
}

/* A header word by its byte offset in the header (always 8-aligned). */
static inline const uint64_t *qilin__word(const qilin_reader_t *r, size_t offset) {
    return (const uint64_t *)(const void *)(r->base + offset);
}

#define QILIN__EPOCH offsetof(qilin_header_t, session.epoch)
#define QILIN__WRITER_PID offsetof(qilin_header_t, session.writer_pid)
#define QILIN__RUN_STATE offsetof(qilin_header_t, session.run_state)
#define QILIN__STOPPED_NS offsetof(qilin_header_t, session.stopped_ns)
#define QILIN__DIRECTORY_LEN offsetof(qilin_header_t, session.directory_len)
#define QILIN__HEARTBEAT offsetof(qilin_header_t, heartbeat.heartbeat_ns)
#define QILIN__WRITE_CURSOR offsetof(qilin_header_t, cursor.write_cursor)
#define QILIN__COUNTERS offsetof(qilin_header_t, counters.values)

/* Copies a stamped record's data words (Relaxed loads, never memcpy of memory the writer may be
 * changing), then an Acquire fence, then reloads the stamp: the copy is whole iff it still reads
 * `seen`. Same as crate::seqlock::copy_validated; the pairing is argued there. */
static inline int qilin__copy_validated(const uint64_t *stamp, uint64_t seen, const uint64_t *words, uint64_t *out,
                                        size_t n) {
    size_t i;
    for (i = 0; i < n; i++) out[i] = __atomic_load_n(&words[i], __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_ACQUIRE); /* SYNC F-rel (reader side) */
    return __atomic_load_n(stamp, __ATOMIC_RELAXED) == seen;
}

/* Last published sequence (0 if none). */
static inline uint64_t qilin_write_cursor(const qilin_reader_t *r) {
    return qilin__load_acquire(qilin__word(r, QILIN__WRITE_CURSOR)); /* SYNC C-cursor */
}

/* Writer heartbeat, UTC ns (about every millisecond while running). */
static inline int64_t qilin_heartbeat_ns(const qilin_reader_t *r) {
    return (int64_t)qilin__load_relaxed(qilin__word(r, QILIN__HEARTBEAT));
}

/* Writer run state: QILIN_RUN_STARTING / RUNNING / STOPPED, 0 if never started. */
static inline uint64_t qilin_run_state(const qilin_reader_t *r) {
    return qilin__load_acquire(qilin__word(r, QILIN__RUN_STATE));
}

/* When the writer last stopped cleanly, UTC ns (0 if it has not). */
static inline int64_t qilin_stopped_ns(const qilin_reader_t *r) {
    return (int64_t)qilin__load_relaxed(qilin__word(r, QILIN__STOPPED_NS));
}

/* Pid of the current (or last) writer. */
static inline uint64_t qilin_writer_pid(const qilin_reader_t *r) {
    return qilin__load_relaxed(qilin__word(r, QILIN__WRITER_PID));
}

/* Epoch in the header now (new on every writer start). */
static inline uint64_t qilin_current_epoch(const qilin_reader_t *r) {
    return qilin__load_acquire(qilin__word(r, QILIN__EPOCH));
}

/* A counter's value (index: QILIN_COUNTER_*), 0 for an index out of range. */
static inline uint64_t qilin_counter(const qilin_reader_t *r, unsigned index) {
    if (index >= QILIN_COUNTER_SLOTS) return 0;
    return qilin__load_relaxed(qilin__word(r, QILIN__COUNTERS + 8u * index));
}

/* The identity line (immutable once the magic is published). */
static inline const qilin_identity_t *qilin_identity(const qilin_reader_t *r) { return &qilin__header(r)->identity; }

/* The sequence the next QILIN_TICK returns. */
static inline uint64_t qilin_next_sequence(const qilin_reader_t *r) { return r->next; }

static inline uint64_t qilin__oldest_available(const qilin_reader_t *r, uint64_t cursor) {
    uint64_t slots = r->mask + 1;
    uint64_t oldest = cursor + 1 > slots ? cursor + 1 - slots : 0;
    return oldest > 1 ? oldest : 1;
}

/* Start at the oldest sequence still in the ring. Its slot is the next one the writer overwrites, so
 * on a busy ring the first read often reports a gap (which, like every lap, skips the lap headroom). */
static inline void qilin_seek_oldest(qilin_reader_t *r) { r->next = qilin__oldest_available(r, qilin_write_cursor(r)); }

/* Start at the next sequence the writer publishes (only new ticks). */
static inline void qilin_seek_newest(qilin_reader_t *r) { r->next = qilin_write_cursor(r) + 1; }

/* Start at `seq` (e.g. a saved cursor + 1); if it is gone, the first read reports the gap. */
static inline void qilin_seek_sequence(qilin_reader_t *r, uint64_t seq) { r->next = seq > 1 ? seq : 1; }

/* After being lapped, resume `slots` past the oldest sequence still in the ring instead of at it: the
 * oldest slot is the one the writer overwrites next, so a reader resuming there is lapped again after
 * a single tick. The skipped sequences are part of the reported gap. Clamped to ring_slots - 1 (resume
 * at the newest published tick); 0 gives the bare resume at the oldest. qilin_open sets the default,
 * ring_slots / QILIN_LAP_HEADROOM_DIVISOR (Reader::set_lap_headroom, default_lap_headroom in Rust). */
static inline void qilin_set_lap_headroom(qilin_reader_t *r, uint64_t slots) {
    r->lap_headroom = slots < r->mask ? slots : r->mask;
}

/* The lap headroom in force (see qilin_set_lap_headroom). */
static inline uint64_t qilin_lap_headroom(const qilin_reader_t *r) { return r->lap_headroom; }

/* Unmaps the segment. */
static inline void qilin_close(qilin_reader_t *r) {
    if (r->base != NULL && r->map_len > 0) munmap((void *)(uintptr_t)r->base, r->map_len);
    r->base = NULL;
    r->map_len = 0;
}

static inline void qilin__hex8(char *buf, const uint8_t *b) {
    /* "[51, 49, 4c, ...]", as Rust prints a byte array with {:02x?} */
    int i, n = 0;
    buf[n++] = '[';
    for (i = 0; i < 8; i++) n += snprintf(buf + n, 8, i ? ", %02x" : "%02x", (unsigned)b[i]);
    buf[n++] = ']';
    buf[n] = 0;
}

/* Reads one word in every 4 KiB of the mapping, so every page is mapped now rather than by a page
 * fault on the read path's first visit (what MADV_POPULATE_READ does in one call where <sys/mman.h>
 * defines it: Linux >= 5.14, with _DEFAULT_SOURCE or _GNU_SOURCE; -std=c11 alone hides it). */
static inline void qilin__prefault(const uint8_t *base, size_t len) {
    volatile uint64_t sink = 0; /* volatile: the loads are kept although their values are not used */
    size_t off;
    for (off = 0; off + 8 <= len; off += 4096) sink += qilin__load_relaxed((const uint64_t *)(base + off));
    (void)sink;
}

/* Opens the segment read-only (O_RDONLY, PROT_READ, MAP_SHARED), validates it, and starts at the
 * newest sequence. 0 on success; -1 with a message naming the path and the mismatch in err.
 *
 * Once the segment is validated, the mapping is pre-faulted, as the writer's is: MADV_POPULATE_READ
 * where <sys/mman.h> defines it and the kernel takes it, else one read per page. A new reader's first
 * lap of the ring then takes no page fault (without it: one every 11 to 170 slots, as the kernel maps
 * 1 to 16 pages a fault), and a large file that is not a segment is refused before its pages are
 * mapped. */
static inline int qilin__open_kind(const char *path, qilin_reader_t *r, char *err, size_t err_len, int bars) {
    struct stat st;
    void *map;
    uint64_t len, magic_word, words[sizeof(qilin_identity_t) / 8];
    uint8_t magic[8];
    qilin_identity_t id;
    qilin_geometry_t g;
    char detail[256], found[64], expected[64];
    size_t i;
    int fd, e;

    memset(r, 0, sizeof *r);
#ifdef O_CLOEXEC /* hidden by -std=c11 without _POSIX_C_SOURCE >= 200809L */
    fd = open(path, O_RDONLY | O_CLOEXEC);
#else
    fd = open(path, O_RDONLY);
#endif
    if (fd < 0) {
        e = errno;
        qilin__errf(err, err_len, "opening %s: %s (os error %d)", path, strerror(e), e);
        return -1;
    }
    if (fstat(fd, &st) != 0) {
        e = errno;
        close(fd);
        qilin__errf(err, err_len, "reading metadata of %s: %s (os error %d)", path, strerror(e), e);
        return -1;
    }
    len = (uint64_t)st.st_size;
    if (len == 0) {
        close(fd);
        qilin__errf(err, err_len,
                    "segment %s is not initialised (no magic yet): its writer is starting or died while creating it",
                    path);
        return -1;
    }
    map = mmap(NULL, (size_t)len, PROT_READ, MAP_SHARED, fd, 0);
    e = errno;
    close(fd); /* the mapping keeps the file */
    if (map == MAP_FAILED) {
        qilin__errf(err, err_len, "mapping %s: %s (os error %d)", path, strerror(e), e);
        return -1;
    }
    r->base = (const uint8_t *)map;
    r->map_len = (size_t)len;

    if (len < sizeof(qilin_header_t)) {
        qilin__errf(err, err_len, "segment %s is truncated: %llu bytes, needs %llu", path, (unsigned long long)len,
                    (unsigned long long)sizeof(qilin_header_t));
        goto fail;
    }
    magic_word = qilin__load_acquire((const uint64_t *)map); /* SYNC M-magic */
    memcpy(magic, &magic_word, 8);
    if (magic_word == 0) {
        qilin__errf(err, err_len,
                    "segment %s is not initialised (no magic yet): its writer is starting or died while creating it",
                    path);
        goto fail;
    }
    if (memcmp(magic, bars ? QILIN_BAR_MAGIC : QILIN_MAGIC, 8) != 0) {
        if (memcmp(magic, bars ? QILIN_MAGIC : QILIN_BAR_MAGIC, 8) == 0) {
            /* The other kind: the message of OpenError::WrongKind, word for word. */
            qilin__errf(err, err_len, "segment %s is a %s segment, not a %s segment: open it with the %s reader", path,
                        bars ? "tick" : "bar", bars ? "bar" : "tick", bars ? "tick" : "bar");
            goto fail;
        }
        qilin__hex8(found, magic);
        qilin__hex8(expected, (const uint8_t *)(bars ? QILIN_BAR_MAGIC : QILIN_MAGIC));
        qilin__errf(err, err_len, "%s is not a qilin segment: magic %s, expected %s (\"%s\")", path, found, expected,
                    bars ? QILIN_BAR_MAGIC : QILIN_MAGIC);
        goto fail;
    }
    /* The identity line is written before the magic is published and never again. */
    for (i = 0; i < sizeof words / 8; i++) words[i] = qilin__load_relaxed((const uint64_t *)map + i);
    memcpy(&id, words, sizeof id);
    if (id.layout_version != (bars ? QILIN_BAR_LAYOUT_VERSION : QILIN_LAYOUT_VERSION)) {
        qilin__errf(err, err_len,
                    "segment %s has layout version %u, this build reads version %u; rebuild the reader against the "
                    "writer's qilin-shm",
                    path, (unsigned)id.layout_version, (unsigned)(bars ? QILIN_BAR_LAYOUT_VERSION : QILIN_LAYOUT_VERSION));
        goto fail;
    }
    if (id.fingerprint != (bars ? QILIN_BAR_FINGERPRINT : QILIN_FINGERPRINT)) {
        qilin__errf(err, err_len,
                    "segment %s has layout fingerprint 0x%016llx, this build has 0x%016llx; the writer and this reader "
                    "disagree on field offsets, rebuild against the same qilin-shm",
                    path, (unsigned long long)id.fingerprint,
                    (unsigned long long)(bars ? QILIN_BAR_FINGERPRINT : QILIN_FINGERPRINT));
        goto fail;
    }
    if ((bars ? qilin_bar_geometry(id.ring_slots, id.instrument_capacity, &g, detail, sizeof detail)
              : qilin_geometry(id.ring_slots, id.instrument_capacity, &g, detail, sizeof detail)) != 0) {
        qilin__errf(err, err_len, "segment %s has a corrupt header: %s", path, detail);
        goto fail;
    }
    {
#define QILIN__CHECK(field, want)                                                                                   \
    if ((uint64_t)id.field != (uint64_t)(want)) {                                                                   \
        qilin__errf(err, err_len,                                                                                  \
                    "segment %s has a corrupt header: identity line does not match its own capacities: " #field     \
                    " is %llu, expected %llu",                                                                      \
                    path, (unsigned long long)id.field, (unsigned long long)(want));                               \
        goto fail;                                                                                                  \
    }
        QILIN__CHECK(header_size, sizeof(qilin_header_t))
        QILIN__CHECK(total_size, g.total_size)
        QILIN__CHECK(slot_size, bars ? sizeof(qilin_bar_slot_t) : sizeof(qilin_slot_t))
        QILIN__CHECK(record_size, bars ? sizeof(qilin_bar_record_t) : sizeof(qilin_tick_record_t))
        QILIN__CHECK(directory_entry_size, sizeof(qilin_directory_entry_t))
        QILIN__CHECK(lvc_entry_size, bars ? sizeof(qilin_bar_lvc_entry_t) : sizeof(qilin_lvc_entry_t))
        QILIN__CHECK(reserved0, 0)
        QILIN__CHECK(directory_offset, g.directory_offset)
        QILIN__CHECK(lvc_offset, g.lvc_offset)
        QILIN__CHECK(ring_offset, g.ring_offset)
#undef QILIN__CHECK
    }
    if (len < g.total_size) {
        qilin__errf(err, err_len, "segment %s is truncated: %llu bytes, needs %llu", path, (unsigned long long)len,
                    (unsigned long long)g.total_size);
        goto fail;
    }
    r->ring_slots = g.ring_slots;
    r->mask = g.ring_slots - 1;
    r->lap_headroom = g.ring_slots / QILIN_LAP_HEADROOM_DIVISOR;
    r->instrument_capacity = g.instrument_capacity;
    r->directory_offset = g.directory_offset;
    r->lvc_offset = g.lvc_offset;
    r->ring_offset = g.ring_offset;
    r->total_size = g.total_size;
    r->bars = bars;
    r->epoch = qilin_current_epoch(r);
    qilin_seek_newest(r);
#ifdef MADV_POPULATE_READ
    if (madvise((void *)r->base, r->map_len, MADV_POPULATE_READ) != 0)
#endif
        qilin__prefault(r->base, r->map_len);
    return 0;
fail:
    qilin_close(r);
    return -1;
}

/* Opens a tick segment (qilin_open_bars for a bar segment, which this refuses with "segment <path> is a
 * bar segment, not a tick segment: open it with the bar reader"). */
static inline int qilin_open(const char *path, qilin_reader_t *r, char *err, size_t err_len) {
    return qilin__open_kind(path, r, err, err_len, 0);
}

/* Opens a bar segment (written by qilin-bars: magic QILINBAR) as qilin_open does a tick segment; read
 * it with qilin_try_next_bar and qilin_latest_bar (every other function works on both kinds). A tick
 * segment is refused with "segment <path> is a tick segment, not a bar segment: open it with the tick
 * reader". */
static inline int qilin_open_bars(const char *path, qilin_reader_t *r, char *err, size_t err_len) {
    return qilin__open_kind(path, r, err, err_len, 1);
}

/* The read protocol of qilin_try_next and qilin_try_next_bar, for slots of slot_size bytes holding
 * n record words: QILIN_TICK with the record copied into words[] (a private copy: no race), or
 * QILIN_EMPTY, QILIN_GAP, QILIN_NEW_EPOCH as qilin_try_next says. Same steps as
 * crate::Reader::try_next. */
static inline int qilin__try_next_words(qilin_reader_t *r, size_t slot_size, uint64_t *words, size_t n,
                                        uint64_t *first, uint64_t *last) {
    uint64_t epoch = qilin__load_acquire(qilin__word(r, QILIN__EPOCH));
    uint64_t want, seen, done, cursor, resume;
    const uint64_t *stamp;
    if (epoch != r->epoch) {
        *first = r->epoch;
        *last = epoch;
        r->epoch = epoch;
        return QILIN_NEW_EPOCH;
    }
    want = r->next;
    stamp = (const uint64_t *)(const void *)(r->base + r->ring_offset + (want & r->mask) * slot_size);
    seen = __atomic_load_n(stamp, __ATOMIC_ACQUIRE); /* SYNC S-done (reader side) */
    done = 2 * want;
    if (seen < done) return QILIN_EMPTY; /* not written yet, or being written */
    if (seen == done && qilin__copy_validated(stamp, seen, stamp + 1, words, n)) {
        r->next = want + 1;
        return QILIN_TICK;
    }
    /* Lapped (overwritten before or during the copy): resume the lap headroom past the oldest
     * sequence still in the ring, never past cursor + 1, never before want + 1 (Rust lap_resume).
     * SYNC C-cursor. */
    cursor = qilin_write_cursor(r);
    resume = qilin__oldest_available(r, cursor) + r->lap_headroom;
    if (resume > cursor + 1) resume = cursor + 1;
    if (resume < want + 1) resume = want + 1;
    r->next = resume;
    *first = want;
    *last = resume - 1;
    return QILIN_GAP;
}

/* Reads the next tick into *out if there is one. Never blocks, never returns a torn record. Returns
 * QILIN_TICK, QILIN_EMPTY, QILIN_GAP (*first..=*last lost; reading resumes the lap headroom past the
 * oldest sequence still in the ring) or QILIN_NEW_EPOCH (*first = previous epoch, *last = current; reported once).
 * Same steps as crate::Reader::try_next. */
static inline int qilin_try_next(qilin_reader_t *r, qilin_tick_record_t *out, uint64_t *first, uint64_t *last) {
    uint64_t words[QILIN_RECORD_WORDS];
    int rc = qilin__try_next_words(r, sizeof(qilin_slot_t), words, QILIN_RECORD_WORDS, first, last);
    if (rc == QILIN_TICK) memcpy(out, words, sizeof *out);
    return rc;
}

/* qilin_try_next for a reader opened with qilin_open_bars: the next bar into *out, the same outcomes
 * (QILIN_TICK: a whole bar was copied). */
static inline int qilin_try_next_bar(qilin_reader_t *r, qilin_bar_record_t *out, uint64_t *first, uint64_t *last) {
    uint64_t words[QILIN_BAR_RECORD_WORDS];
    int rc = qilin__try_next_words(r, sizeof(qilin_bar_slot_t), words, QILIN_BAR_RECORD_WORDS, first, last);
    if (rc == QILIN_TICK) memcpy(out, words, sizeof *out);
    return rc;
}

/* Number of instruments in the directory. */
static inline uint32_t qilin_directory_len(const qilin_reader_t *r) {
    uint64_t len = qilin__load_acquire(qilin__word(r, QILIN__DIRECTORY_LEN)); /* SYNC D-len */
    return len < r->instrument_capacity ? (uint32_t)len : r->instrument_capacity;
}

/* Directory entry `index` (entries are written before they are published and never change), or
 * NULL if not published. */
static inline const qilin_directory_entry_t *qilin_instrument(const qilin_reader_t *r, uint32_t index) {
    if (index >= qilin_directory_len(r)) return NULL;
    return (const qilin_directory_entry_t *)(const void *)(r->base + r->directory_offset +
                                                           (uint64_t)index * sizeof(qilin_directory_entry_t));
}

/* Index of an InstrumentID ("rb2605"), or -1 if it is not in the directory (or is not ASCII, contains
 * no room for its NUL in 32 bytes). Linear scan: resolve once, then use the index. */
static inline int64_t qilin_find_instrument(const qilin_reader_t *r, const char *instrument_id) {
    uint8_t id[QILIN_INSTRUMENT_ID_LEN];
    size_t n = strlen(instrument_id), i;
    uint32_t len, k;
    if (n >= QILIN_INSTRUMENT_ID_LEN) return -1;
    for (i = 0; i < n; i++)
        if ((unsigned char)instrument_id[i] >= 0x80) return -1;
    memset(id, 0, sizeof id);
    memcpy(id, instrument_id, n);
    len = qilin_directory_len(r);
    for (k = 0; k < len; k++) {
        const qilin_directory_entry_t *e = qilin_instrument(r, k);
        if (e != NULL && memcmp(e->instrument_id, id, sizeof id) == 0) return (int64_t)k;
    }
    return -1;
}

/* Reads a versioned record (even = whole, odd = being written, 0 = never written) with bounded
 * retries: 1 found, 0 never written, -2 contended. Same as crate::seqlock::read_versioned. */
static inline int qilin__read_versioned(const uint64_t *stamp, uint64_t *out, size_t n) {
    unsigned attempt;
    for (attempt = 0; attempt < QILIN_VERSIONED_ATTEMPTS; attempt++) {
        uint64_t seen = __atomic_load_n(stamp, __ATOMIC_ACQUIRE);
        if (seen == 0) return QILIN_LATEST_NONE;
        if (seen % 2 == 0 && qilin__copy_validated(stamp, seen, stamp + 1, out, n)) return QILIN_LATEST_FOUND;
        qilin__spin_pause();
    }
    return QILIN_LATEST_CONTENDED;
}

/* Copies the last value of instrument `index` into *out: QILIN_LATEST_FOUND, QILIN_LATEST_NONE (no
 * tick yet), QILIN_LATEST_UNKNOWN_INSTRUMENT or QILIN_LATEST_CONTENDED. Never returns a torn record. */
static inline int qilin_latest(const qilin_reader_t *r, uint32_t index, qilin_tick_record_t *out) {
    uint64_t words[QILIN_RECORD_WORDS];
    const uint64_t *version;
    int rc;
    if (index >= qilin_directory_len(r)) return QILIN_LATEST_UNKNOWN_INSTRUMENT;
    version = (const uint64_t *)(const void *)(r->base + r->lvc_offset + (uint64_t)index * sizeof(qilin_lvc_entry_t));
    rc = qilin__read_versioned(version, words, QILIN_RECORD_WORDS);
    if (rc == QILIN_LATEST_FOUND) memcpy(out, words, sizeof *out);
    return rc;
}

/* The last closed bar of instrument `index` and `period` (QILIN_BAR_PERIOD_*) of a reader opened with
 * qilin_open_bars: QILIN_LATEST_FOUND, QILIN_LATEST_NONE (none yet), QILIN_LATEST_UNKNOWN_INSTRUMENT
 * (index or period out of range) or QILIN_LATEST_CONTENDED. */
static inline int qilin_latest_bar(const qilin_reader_t *r, uint32_t index, unsigned period, qilin_bar_record_t *out) {
    uint64_t words[QILIN_BAR_RECORD_WORDS];
    const uint64_t *version;
    uint64_t entry;
    int rc;
    if (index >= qilin_directory_len(r) || period < 1 || period > QILIN_BAR_LVC_PER_INSTRUMENT)
        return QILIN_LATEST_UNKNOWN_INSTRUMENT;
    entry = (uint64_t)index * QILIN_BAR_LVC_PER_INSTRUMENT + (period - 1);
    version = (const uint64_t *)(const void *)(r->base + r->lvc_offset + entry * sizeof(qilin_bar_lvc_entry_t));
    rc = qilin__read_versioned(version, words, QILIN_BAR_RECORD_WORDS);
    if (rc == QILIN_LATEST_FOUND) memcpy(out, words, sizeof *out);
    return rc;
}

/* The link status, consistent: QILIN_LATEST_FOUND, QILIN_LATEST_NONE or QILIN_LATEST_CONTENDED. */
static inline int qilin_status(const qilin_reader_t *r, qilin_status_record_t *out) {
    uint64_t words[QILIN_STATUS_WORDS];
    const uint64_t *version = qilin__word(r, offsetof(qilin_header_t, status.version));
    int rc = qilin__read_versioned(version, words, QILIN_STATUS_WORDS);
    if (rc == QILIN_LATEST_FOUND) memcpy(out, words, sizeof *out);
    return rc;
}

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* QILIN_SHM_H */
"#;

#[cfg(test)]
mod tests {
    use crate::descriptor::FieldDesc;

    use super::*;

    #[test]
    fn names_convert() {
        assert_eq!(c_struct_name("TickRecord"), "qilin_tick_record");
        assert_eq!(c_struct_name("Header"), "qilin_header");
        assert_eq!(upper_snake("FailedOver"), "FAILED_OVER");
        assert_eq!(upper_snake("ticks_received"), "TICKS_RECEIVED");
        assert_eq!(upper_snake("LoggedIn"), "LOGGED_IN");
    }

    #[test]
    fn every_field_has_a_type_and_the_header_generates() {
        let header = c_header();
        assert!(header.starts_with("/* qilin_shm.h"));
        assert!(header.contains("typedef struct qilin_tick_record {"));
        assert!(header.contains(&format!("UINT64_C({})", crate::layout::fingerprint_text(FINGERPRINT))));
    }

    #[test]
    fn wrongly_sized_or_unknown_types_are_refused() {
        use crate::encoding::Encoding;
        const fn field(name: &'static str, offset: usize, size: usize, ty: FieldType) -> FieldDesc {
            FieldDesc { name, offset, size, ty, encoding: Encoding::Reserved, doc: "" }
        }
        const OK: &[FieldDesc] =
            &[field("a", 0, 8, FieldType::Scalar(Scalar::U64)), field("b", 8, 4, FieldType::Scalar(Scalar::U32))];
        assert!(try_c_header(&[StructDesc { name: "S", size: 12, fields: OK }]).is_ok());
        const WRONG: &[FieldDesc] =
            &[field("a", 0, 8, FieldType::Scalar(Scalar::U64)), field("b", 8, 4, FieldType::Array(Scalar::U32, 2))];
        let e = try_c_header(&[StructDesc { name: "S", size: 12, fields: WRONG }]).unwrap_err();
        assert!(e.contains("S.b") && e.contains("u32[2] is 8 bytes"), "{e}");
        const UNKNOWN: &[FieldDesc] = &[field("a", 0, 8, FieldType::Struct("Nope"))];
        let e = try_c_header(&[StructDesc { name: "S", size: 8, fields: UNKNOWN }]).unwrap_err();
        assert!(e.contains("unknown type Nope"), "{e}");
    }
}
