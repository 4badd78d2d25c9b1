//! The parts of a scrape that do not come from the segment: the sidecars' status files, the
//! journal as its source reports it, the tick latency histograms and the managed keys' schedule.

use std::{
    fmt,
    path::Path,
    sync::{Mutex, PoisonError},
};

use qilin_market::secrets::schedule::KeySchedule;

use serde_json::Value;

use super::{
    encode::{BYTES, Labels, Out, SECONDS, age_s, flag, label},
    journal::{FSYNC_BOUNDS_S, JournalReading, JournalSource},
    latency::{EXCHANGE_TO_RECEIVE_BOUNDS_S, LatencyHistograms, RECEIVE_TO_PUBLISH_BOUNDS_S, Skip},
};

/// Every sidecar status file beside the segment.
pub(crate) fn encode_sidecars(out: &mut Out, segment: &Path, stale_ns: i64, now: i64) -> fmt::Result {
    let statuses = qilin_market::status::read_all(segment);
    let by = |name: &str| label("sidecar", name);
    let num = |v: &Value, key: &str| v.get(key).and_then(Value::as_u64);
    out.gauges(
        "sidecar_info",
        "One per sidecar status file, labelled with the program that writes it.",
        None,
        statuses.iter().map(|(name, v)| {
            let program = v.get("sidecar").and_then(Value::as_str).unwrap_or("unknown");
            (vec![("sidecar", name.clone()), ("program", program.to_string())], 1u32)
        }),
    )?;
    out.gauges(
        "sidecar_up",
        "1 while the sidecar rewrites its status file (younger than metrics.sidecar_stale_ms), else 0.",
        None,
        statuses.iter().map(|(name, v)| {
            let updated = v.get("updated_ns").and_then(Value::as_i64);
            (by(name), flag(updated.is_some_and(|u| now - u <= stale_ns)))
        }),
    )?;
    out.gauges(
        "sidecar_status_age",
        "Age of the sidecar's status file (when it was last rewritten).",
        Some(&SECONDS),
        statuses
            .iter()
            .filter_map(|(name, v)| v.get("updated_ns").and_then(Value::as_i64).map(|u| (by(name), age_s(now, u)))),
    )?;
    out.gauges(
        "sidecar_position",
        "Last sequence the sidecar confirmed downstream (its durable position).",
        None,
        statuses.iter().filter_map(|(name, v)| num(v, "position").map(|p| (by(name), p))),
    )?;
    out.gauges(
        "sidecar_lag_sequences",
        "Sequences the sidecar is behind the core's write cursor (when it wrote its status).",
        None,
        statuses.iter().filter_map(|(name, v)| num(v, "lag_sequences").map(|p| (by(name), p))),
    )?;
    out.gauges(
        "sidecar_lag",
        "Age of the newest tick the sidecar confirmed, while it is behind (0 when caught up).",
        Some(&SECONDS),
        statuses
            .iter()
            .filter_map(|(name, v)| v.get("lag_ns").and_then(Value::as_i64).map(|l| (by(name), l as f64 / 1e9))),
    )?;
    let counters: Vec<(Labels, u64)> = statuses
        .iter()
        .flat_map(|(name, v)| {
            let fields = v.get("counters").and_then(Value::as_object).into_iter().flatten();
            fields.filter_map(move |(counter, value)| {
                let labels = vec![("sidecar", name.clone()), ("counter", counter.clone())];
                value.as_u64().map(|value| (labels, value))
            })
        })
        .collect();
    out.counters(
        "sidecar_counts",
        "The sidecar's own counters from its status file (see each sidecar's docs).",
        counters,
    )
}

/// The journal, as its source reads.
pub(crate) fn encode_journal(out: &mut Out, journal: &dyn JournalSource) -> fmt::Result {
    let mut result = Ok(());
    journal.read(&mut |r| result = encode_journal_reading(out, r));
    result
}

fn encode_journal_reading(out: &mut Out, r: &JournalReading<'_>) -> fmt::Result {
    let t = &r.totals;
    out.counter("journal_written", "Bytes written to journal files.", Some(&BYTES), t.bytes)?;
    out.counter("journal_records", "Tick records written to the journal.", None, t.records)?;
    out.counter(
        "journal_gap_records",
        "Gap records written (sequences the recorder could not get).",
        None,
        t.gap_records,
    )?;
    out.counter("journal_gap_sequences", "Sequences covered by gap records.", None, t.gap_sequences)?;
    out.counter("journal_blocks", "Checksummed blocks written.", None, t.blocks)?;
    out.counter("journal_fsyncs", "fdatasync calls on journal files.", None, t.fsyncs)?;
    out.counter("journal_files", "Journal files created.", None, t.files)?;
    out.counter("journal_errors", "Journal write, sync and open failures (disk full included).", None, t.errors)?;
    out.counter(
        "journal_disk_full_events",
        "Times the journal's disk filled up (one per episode).",
        None,
        t.disk_full_events,
    )?;
    out.gauge("journal_position", "Last sequence in a written journal block.", None, t.position)?;
    out.gauge("journal_synced_position", "Last sequence fdatasynced to the journal.", None, t.synced)?;
    out.gauge("journal_writable", "1 while the journal is open and writes succeed.", None, flag(r.writable))?;
    out.gauge(
        "journal_disk_full",
        "1 while the journal's disk is full (recording paused, retried).",
        None,
        flag(r.disk_full),
    )?;
    out.gauge(
        "journal_fsync_last",
        "Duration of the last fdatasync of a journal file.",
        Some(&SECONDS),
        r.last_fsync_s,
    )?;
    out.gauge(
        "journal_fsync_max",
        "Longest fdatasync of a journal file since the recorder started.",
        Some(&SECONDS),
        r.max_fsync_s,
    )?;
    if let Some(fsync) = r.fsync {
        out.histogram(
            "journal_fsync_duration",
            "Duration of each fdatasync of a journal file.",
            fsync,
            &FSYNC_BOUNDS_S,
        )?;
    }
    Ok(())
}

/// The tick latency histograms.
pub(crate) fn encode_latency(out: &mut Out, latency: &LatencyHistograms) -> fmt::Result {
    latency.with(|p| {
        out.histogram(
            "latency_exchange_to_receive",
            "Exchange timestamp to local receive, per tick (stale snapshots and negative values left out).",
            &p.exchange_to_receive.hist,
            &EXCHANGE_TO_RECEIVE_BOUNDS_S,
        )?;
        out.histogram(
            "latency_receive_to_publish",
            "Local receive to publication in the ring (the core's own path), per tick.",
            &p.receive_to_publish.hist,
            &RECEIVE_TO_PUBLISH_BOUNDS_S,
        )?;
        let skipped = [("exchange_to_receive", &p.exchange_to_receive), ("receive_to_publish", &p.receive_to_publish)]
            .into_iter()
            .flat_map(|(path, data)| {
                Skip::ALL.map(move |s| {
                    (vec![("path", path.to_string()), ("reason", s.as_str().to_string())], data.skipped[s as usize])
                })
            });
        out.counters("latency_not_recorded", "Ticks left out of a latency histogram, by path and reason.", skipped)
    })
}

/// The managed keys' schedule file (`metrics.keys_schedule`), read at every scrape: each key's next
/// due date and whether it is past it, the file's age. A file that cannot be used gives
/// `keys_schedule_up 0` and is logged with what is wrong, once per distinct error.
pub(crate) fn encode_keys(out: &mut Out, path: &Path, last_error: &Mutex<Option<String>>, now_ns: i64) -> fmt::Result {
    let loaded = KeySchedule::load(path);
    {
        let mut last = last_error.lock().unwrap_or_else(PoisonError::into_inner);
        let error = loaded.as_ref().err().map(ToString::to_string);
        if *last != error {
            match &error {
                Some(e) => tracing::warn!(error = %e, "metrics: the key schedule cannot be used"),
                None => tracing::info!(file = %path.display(), "metrics: the key schedule is readable again"),
            }
            *last = error;
        }
    }
    out.gauge(
        "keys_schedule_up",
        "1 when metrics.keys_schedule (written by `qilinctl keys rotate --schedule-out`) could be read.",
        None,
        flag(loaded.is_ok()),
    )?;
    let Ok(schedule) = loaded else { return Ok(()) };
    let now_s = now_ns.div_euclid(1_000_000_000);
    out.gauge(
        "keys_schedule_age",
        "Time since qilinctl wrote the key schedule: the rotation timer runs while it stays small.",
        Some(&SECONDS),
        now_s.saturating_sub(schedule.written_unix_s).max(0),
    )?;
    let labels = |k: &qilin_market::secrets::schedule::KeyDue| -> Labels {
        vec![("key", k.name.clone()), ("type", k.key_type.clone())]
    };
    out.gauges(
        "key_next_due_timestamp",
        "When each managed key's active version is due for rotation (Unix time).",
        Some(&SECONDS),
        schedule.keys.iter().filter_map(|k| Some((labels(k), k.next_due_unix_s?))),
    )?;
    out.gauges(
        "key_overdue",
        "1 when a managed key is past its due date and was not rotated (the timer stopped or failed).",
        None,
        schedule.keys.iter().map(|k| (labels(k), flag(k.overdue(now_s)))),
    )
}
