//! Writer → readers in other processes through a real segment. The writer (this process, pinned to
//! the writer CPU) publishes on a paced schedule with `receive_ns` = the tick's due time; each
//! reader (`qilin-bench reader`, pinned) records `now_ns() − receive_ns`. Alongside, the writer's own
//! cost per publish (`now_ns` before and after `Writer::publish`, so one clock read included), for
//! each reader count: the design wants it flat as readers are added.

use std::process::Command;

use anyhow::Context;

use super::{
    Plan, Schedule, Series,
    child::{Peer, PeerResult},
    new_histogram, pin_cpu, record,
};
use crate::{RING_SLOTS, open_writer, sample_record};

/// Runs the series for `readers` reader processes: (one-way latency of every reader merged, the
/// writer's per-publish cost).
pub fn measure(plan: &Plan, readers: usize) -> anyhow::Result<(Series, Series)> {
    pin_cpu(plan.writer_cpu());
    let (segment, mut writer) = open_writer(&format!("seg{readers}"), RING_SLOTS);
    let total = plan.warmup + plan.samples;
    let mut peers = Vec::new();
    for i in 0..readers {
        let mut command = Command::new(&plan.self_bin);
        command
            .arg("reader")
            .arg("--segment")
            .arg(segment.path())
            .args(["--cpu", &plan.reader_cpu_of(i).to_string(), "--from", "first"])
            .args(["--warmup", &plan.warmup.to_string(), "--count", &plan.samples.to_string()]);
        peers.push(Peer::spawn(command, format!("segment reader {i}"))?);
    }
    for peer in &mut peers {
        if let Err(e) = peer.wait_ready() {
            peers.into_iter().for_each(Peer::kill);
            return Err(e);
        }
    }

    let (mut cost, mut late) = (new_histogram(), new_histogram());
    let schedule = Schedule::starting_soon(plan.interval_ns());
    let mut records: Vec<_> = (0..crate::INSTRUMENTS).map(sample_record).collect();
    for i in 0..total {
        let rec = &mut records[(i % u64::from(crate::INSTRUMENTS)) as usize];
        let (due, now) = schedule.wait(i);
        rec.receive_ns = due;
        writer.publish(rec).context("publishing")?;
        let after = qilin_shm::now_ns();
        if i >= plan.warmup {
            record(&mut cost, after - now);
            record(&mut late, now - due);
        }
    }

    let mut merged = new_histogram();
    let (mut ticks, mut lost) = (0, 0);
    let mut per_reader_p50 = Vec::new();
    for peer in peers {
        let PeerResult { hist, ticks: t, lost: l } = peer.finish()?;
        per_reader_p50.push(hist.value_at_quantile(0.5));
        merged.add(&hist).expect("same bounds");
        ticks += t;
        lost += l;
    }
    drop(segment);
    let plural = if readers == 1 { "reader" } else { "readers" };
    let sharing = if readers > plan.cores.len() - 1 {
        format!(
            "{readers} busy-spinning reader processes share {} CPU(s): they take turns on the scheduler, \
             so this measures time-slicing, not cache traffic to {readers} cores",
            plan.cores.len() - 1
        )
    } else {
        "each reader has a CPU of its own".to_string()
    };
    let latency = Series::new(
        format!("segment/{readers}_{plural}"),
        format!(
            "Writer::publish (CPU {}) → Reader::try_next in {readers} other process(es), one-way, from the due time; \
             all readers' samples merged",
            plan.writer_cpu()
        ),
        merged,
    )
    .note(format!("{ticks} ticks recorded, {lost} lost (lapped); per-reader p50 {per_reader_p50:?} ns"))
    .note(format!(
        "the writer itself published late by p50 {} / p99 {} / max {} ns (its CPU was taken): that lateness is in the figure",
        late.value_at_quantile(0.5),
        late.value_at_quantile(0.99),
        late.max()
    ))
    .note(sharing.clone());
    let cost = Series::new(
        format!("writer_cost/{readers}_{plural}"),
        format!("the writer's cost per publish with {readers} {plural} following (includes one now_ns read)"),
        cost,
    )
    .note(sharing);
    Ok((latency, cost))
}
