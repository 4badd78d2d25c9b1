//! The layout contract for readers in other languages, rendered from qilin-shm's own tables (field
//! tables with types, encodings and descriptions, code tables, the lap-headroom default): as JSON
//! (`qilinctl layout --json`) and as the Markdown tables LAYOUT.md carries (checked by
//! tools/tests/layout_doc.rs). Nothing here is a second description: every word comes from qilin-shm.

use std::fmt::Write as _;

use qilin_shm::{
    BarPeriod, Counter, Exchange, LAP_HEADROOM_DIVISOR, LinkState, RunState, Source, bar_flags,
    descriptor::{FieldDesc, StructDesc, doc_text},
    encoding::Encoding,
    layout::{self, MAGIC},
    quality,
};
use serde_json::{Value, json};

fn field_json(f: &FieldDesc) -> Value {
    json!({
        "name": f.name,
        "offset": f.offset,
        "size": f.size,
        "type": f.ty.name(),
        "encoding": f.encoding.token(),
        "unit": f.encoding.unit(),
        "description": f.description(),
    })
}

/// The code tables: exchange, source, run state, link state (each `code`, `name`, `description`),
/// the quality bits (`bit`, `name`, `kind`, `meaning`) and the counters (`index`, `name`,
/// `description`).
fn codes_json() -> Value {
    let exchange: Vec<Value> = Exchange::ALL
        .iter()
        .map(|e| json!({"code": *e as u8, "name": e.as_str(), "description": e.full_name()}))
        .collect();
    let source: Vec<Value> = Source::ALL
        .iter()
        .map(|s| json!({"code": *s as u8, "name": s.as_str(), "description": s.description()}))
        .collect();
    let run_state: Vec<Value> = RunState::ALL
        .iter()
        .map(|s| json!({"code": *s as u64, "name": s.as_str(), "description": s.description()}))
        .collect();
    let link_state: Vec<Value> = LinkState::ALL
        .iter()
        .map(|s| json!({"code": *s as u32, "name": s.as_str(), "description": s.description()}))
        .collect();
    let quality: Vec<Value> = quality::BITS
        .iter()
        .map(|b| json!({"bit": b.bit, "name": b.name, "kind": b.kind(), "meaning": b.meaning}))
        .collect();
    let counters: Vec<Value> = Counter::NAMES
        .iter()
        .zip(Counter::DOCS)
        .enumerate()
        .map(|(i, (name, doc))| json!({"index": i, "name": name, "description": doc_text(doc)}))
        .collect();
    json!({
        "exchange": exchange,
        "source": source,
        "run_state": run_state,
        "link_state": link_state,
        "quality": quality,
        "counters": counters,
    })
}

/// The structs a bar segment has of its own (the header and directory are a tick segment's).
const BAR_OWN_STRUCTS: [&str; 3] = ["BarLvcEntry", "BarSlot", "BarRecord"];

/// The bar segment (docs/BARS.md, LAYOUT.md "Bar segments"): its magic, version, fingerprint, the
/// structs it does not share with a tick segment, last values per instrument, and its code tables.
fn bar_segment_json() -> Value {
    let structs: Vec<Value> = layout::BAR_STRUCTS
        .iter()
        .filter(|s| BAR_OWN_STRUCTS.contains(&s.name))
        .map(|s| json!({"name": s.name, "size": s.size, "fields": s.fields.iter().map(field_json).collect::<Vec<_>>()}))
        .collect();
    json!({
        "layout_version": layout::BAR_LAYOUT_VERSION,
        "fingerprint": layout::fingerprint_text(layout::BAR_FINGERPRINT),
        "magic": "QILINBAR",
        "magic_bytes": layout::BAR_MAGIC,
        "record": "BarRecord",
        "slot": "BarSlot",
        "lvc_entry": "BarLvcEntry",
        "lvc_per_instrument": layout::BAR_LVC_PER_INSTRUMENT,
        "structs": structs,
        "codes": {
            "bar_period": BarPeriod::ALL.iter().map(|p| json!({"code": *p as u8, "name": p.as_str()})).collect::<Vec<_>>(),
            "bar_flags": bar_flags::BITS.iter().map(|(bit, name, meaning)| json!({"bit": bit, "name": name, "meaning": meaning})).collect::<Vec<_>>(),
        },
    })
}

/// The layout as JSON: version, fingerprint, magic, every struct with its fields' offsets, sizes,
/// types, encodings, units and descriptions, the encodings, the code tables, the counter names in
/// index order, and the reader's lap-headroom default. Foreign-language readers test themselves
/// against this.
pub fn layout_json() -> Value {
    let structs: Vec<Value> = layout::STRUCTS
        .iter()
        .map(|s| json!({"name": s.name, "size": s.size, "fields": s.fields.iter().map(field_json).collect::<Vec<_>>()}))
        .collect();
    let encodings: Vec<Value> = Encoding::ALL
        .iter()
        .map(|e| json!({"name": e.token(), "unit": e.unit(), "description": e.description()}))
        .collect();
    json!({
        "layout_version": layout::LAYOUT_VERSION,
        "fingerprint": layout::fingerprint_text(layout::FINGERPRINT),
        "magic": "QILINSHM",
        "magic_bytes": MAGIC,
        "byte_order": "little",
        "structs": structs,
        "counters": Counter::NAMES,
        "quality": quality::NAMES.iter().map(|(bit, name)| json!({"bit": bit, "name": name})).collect::<Vec<_>>(),
        "quality_anomalies": quality::ANOMALIES,
        "quality_notes": quality::NOTES,
        "encodings": encodings,
        "codes": codes_json(),
        "bar_segment": bar_segment_json(),
        "reader": {
            "lap_headroom_divisor": LAP_HEADROOM_DIVISOR,
            "lap_headroom_default": format!("ring_slots / {LAP_HEADROOM_DIVISOR}"),
        },
    })
}

/// A Markdown table row (`|` in a cell escaped).
fn row(out: &mut String, cells: &[&str]) {
    let cells: Vec<String> = cells.iter().map(|c| c.replace('|', "\\|")).collect();
    let _ = writeln!(out, "| {} |", cells.join(" | "));
}

fn table(out: &mut String, heading: &[&str]) {
    row(out, heading);
    let rule: Vec<&str> = heading.iter().map(|_| "---").collect();
    let _ = writeln!(out, "|{}|", rule.join("|"));
}

/// A struct's heading and its field table (offset, size, name, type, encoding, unit, description).
fn struct_table(out: &mut String, s: &StructDesc) {
    let _ = writeln!(out, "\n### {} ({} bytes)\n", s.name, s.size);
    table(out, &["offset", "size", "field", "type", "encoding", "unit", "description"]);
    for f in s.fields {
        row(
            out,
            &[
                &f.offset.to_string(),
                &f.size.to_string(),
                &format!("`{}`", f.name),
                &format!("`{}`", f.ty.name()),
                &format!("`{}`", f.encoding.token()),
                f.encoding.unit().unwrap_or(""),
                &f.description(),
            ],
        );
    }
}

/// LAYOUT.md's generated tables: encodings, code tables, counters, and every struct's fields with
/// type, encoding, unit and description.
pub fn layout_markdown() -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Layout version {}, fingerprint `{}`. All numbers little-endian.\n",
        layout::LAYOUT_VERSION,
        layout::fingerprint_text(layout::FINGERPRINT)
    );

    out.push_str("### Encodings\n\nEach field's `encoding` (as in `qilinctl layout --json`) says how to read it.\n\n");
    table(&mut out, &["encoding", "unit", "how to read it"]);
    for e in Encoding::ALL {
        row(&mut out, &[&format!("`{}`", e.token()), e.unit().unwrap_or(""), e.description()]);
    }

    out.push_str("\n### Exchange codes (`TickRecord.exchange`, `DirectoryEntry.exchange`)\n\n");
    table(&mut out, &["code", "ExchangeID", "exchange"]);
    for e in Exchange::ALL {
        row(&mut out, &[&(e as u8).to_string(), &format!("`{}`", e.as_str()), e.full_name()]);
    }
    out.push_str("\n### Source codes (`TickRecord.source`, `StatusRecord.active_source`)\n\n");
    table(&mut out, &["code", "name", "source"]);
    for s in Source::ALL {
        row(&mut out, &[&(s as u8).to_string(), &format!("`{}`", s.as_str()), s.description()]);
    }
    out.push_str("\n### Run states (`Session.run_state`; 0: never started)\n\n");
    table(&mut out, &["code", "name", "meaning"]);
    for s in RunState::ALL {
        row(&mut out, &[&(s as u64).to_string(), &format!("`{}`", s.as_str()), s.description()]);
    }
    out.push_str("\n### Link states (`StatusRecord.link_state`)\n\n");
    table(&mut out, &["code", "name", "meaning"]);
    for s in LinkState::ALL {
        row(&mut out, &[&(s as u32).to_string(), &format!("`{}`", s.as_str()), s.description()]);
    }
    let _ = writeln!(
        out,
        "\n### Quality bits (`TickRecord.quality`; anomalies `{:#04x}`, notes `{:#04x}`)\n",
        quality::ANOMALIES,
        quality::NOTES
    );
    table(&mut out, &["bit", "name", "kind", "meaning"]);
    for b in quality::BITS {
        row(&mut out, &[&format!("{:#04x}", b.bit), &format!("`{}`", b.name), b.kind(), b.meaning]);
    }
    out.push_str("\n### Counters (`Counters.values[index]`, u64 each)\n\n");
    table(&mut out, &["index", "name", "counts"]);
    for (i, (name, doc)) in Counter::NAMES.iter().zip(Counter::DOCS).enumerate() {
        row(&mut out, &[&i.to_string(), &format!("`{name}`"), &doc_text(doc)]);
    }

    for s in layout::STRUCTS {
        struct_table(&mut out, s);
    }
    let _ = writeln!(
        out,
        "\n### Bar segments: magic `QILINBAR`, layout version {}, fingerprint `{}`\n\n\
         The header and directory are a tick segment's; slots and last-value entries hold a `BarRecord`, \
         {} last-value entries per instrument (entry `{} × instrument_index + period − 1`).\n",
        layout::BAR_LAYOUT_VERSION,
        layout::fingerprint_text(layout::BAR_FINGERPRINT),
        layout::BAR_LVC_PER_INSTRUMENT,
        layout::BAR_LVC_PER_INSTRUMENT,
    );
    out.push_str("### Bar periods (`BarRecord.period`)\n\n");
    table(&mut out, &["code", "name"]);
    for p in BarPeriod::ALL {
        row(&mut out, &[&(p as u8).to_string(), &format!("`{}`", p.as_str())]);
    }
    out.push_str("\n### Bar flags (`BarRecord.flags`)\n\n");
    table(&mut out, &["bit", "name", "meaning"]);
    for (bit, name, meaning) in bar_flags::BITS {
        row(&mut out, &[&format!("{bit:#04x}"), &format!("`{name}`"), meaning]);
    }
    for s in layout::BAR_STRUCTS.iter().filter(|s| BAR_OWN_STRUCTS.contains(&s.name)) {
        struct_table(&mut out, s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_carries_types_encodings_and_code_tables() {
        let v = layout_json();
        let tick = v["structs"].as_array().unwrap().iter().find(|s| s["name"] == "TickRecord").unwrap();
        let field = |name: &str| tick["fields"].as_array().unwrap().iter().find(|f| f["name"] == name).unwrap().clone();
        assert_eq!(
            (field("volume")["type"].as_str(), field("volume")["encoding"].as_str()),
            (Some("i64"), Some("lots"))
        );
        assert_eq!(field("turnover")["type"], "f64");
        assert_eq!(field("exchange_time_ns")["unit"], "ns");
        assert_eq!(field("bid_price")["type"], "f64[5]");
        assert_eq!(field("instrument_id")["encoding"], "ascii_nul_padded");
        assert_eq!(
            v["codes"]["exchange"][0],
            json!({"code": 1, "name": "SHFE", "description": "Shanghai Futures Exchange"})
        );
        assert_eq!(v["codes"]["quality"][5]["name"], "absent_price");
        assert_eq!(v["codes"]["quality"][5]["kind"], "anomaly");
        assert_eq!(v["reader"]["lap_headroom_divisor"], 8);
        assert_eq!(v["codes"]["counters"][1]["description"], "Ticks written to the ring.");
        assert_eq!(v["magic_bytes"], json!([0x51, 0x49, 0x4c, 0x49, 0x4e, 0x53, 0x48, 0x4d]));
        let bars = &v["bar_segment"];
        assert_eq!(bars["magic"], "QILINBAR");
        assert_eq!(bars["lvc_per_instrument"], 6);
        let bar = bars["structs"].as_array().unwrap().iter().find(|s| s["name"] == "BarRecord").unwrap();
        assert_eq!(bar["size"], 184);
        assert_eq!(bars["codes"]["bar_period"][5], json!({"code": 6, "name": "1d"}));
        // Every encoding a field names is in the encodings table.
        let known: Vec<&str> = v["encodings"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
        for s in v["structs"].as_array().unwrap() {
            for f in s["fields"].as_array().unwrap() {
                assert!(known.contains(&f["encoding"].as_str().unwrap()), "{f}");
            }
        }
    }

    #[test]
    fn markdown_has_a_row_per_field_and_per_code() {
        let md = layout_markdown();
        let rows = md.lines().filter(|l| l.starts_with("| ")).count();
        let fields: usize = layout::STRUCTS.iter().map(|s| s.fields.len() + 1).sum();
        let codes = Encoding::ALL.len()
            + Exchange::ALL.len()
            + Source::ALL.len()
            + RunState::ALL.len()
            + LinkState::ALL.len()
            + quality::BITS.len()
            + Counter::NAMES.len()
            + 7; // headings of the code tables
        let bar_fields: usize =
            layout::BAR_STRUCTS.iter().filter(|s| BAR_OWN_STRUCTS.contains(&s.name)).map(|s| s.fields.len() + 1).sum();
        let bar_codes = BarPeriod::ALL.len() + bar_flags::BITS.len() + 2;
        assert_eq!(rows, fields + codes + bar_fields + bar_codes, "{md}");
        assert!(md.contains("| 120 | 8 | `volume` | `i64` | `lots` | lots |"), "the bar record's volume: {md}");
        assert!(md.contains("| 144 | 8 | `volume` | `i64` | `lots` | lots |"), "{md}");
    }
}
