//! Optional baseline (`--features iceoryx2`): iceoryx2 publish/subscribe between two processes, what
//! a user would pick instead of a segment. The payload is the 376-byte `TickRecord` as 47 words
//! (`[u64; 47]`, which iceoryx2 can send without a derive); the publisher (this process, writer CPU)
//! copies it into a loaned sample at the due time with `receive_ns` = due; the subscriber
//! (`qilin-bench iceoryx2-sub`, reader CPU) spins on `receive()` and records `now_ns() − receive_ns`.
//! Word 0 carries the tick's index, so a sample the subscriber's buffer dropped shows as lost.

use std::{process::Command, time::Instant};

use anyhow::{Context, anyhow, bail};
use iceoryx2::{port::update_connections::UpdateConnections, prelude::*};
use zerocopy::{FromBytes, IntoBytes};

use super::{Plan, Schedule, Series, WATCHDOG, child::Peer, new_histogram, pin_cpu, record};
use crate::sample_record;

/// The payload: one `TickRecord`.
type Payload = [u64; 47];
/// Word of `receive_ns` in the record (sequence, exchange_time_ns, receive_ns …).
const RECEIVE_NS_WORD: usize = 2;

fn service(
    name: &str,
) -> anyhow::Result<(
    Node<ipc::Service>,
    iceoryx2::service::port_factory::publish_subscribe::PortFactory<ipc::Service, Payload, ()>,
)> {
    let node = NodeBuilder::new().create::<ipc::Service>().map_err(|e| anyhow!("iceoryx2 node: {e:?}"))?;
    let name: ServiceName = name.try_into().map_err(|e| anyhow!("iceoryx2 service name: {e:?}"))?;
    let service = node
        .service_builder(&name)
        .publish_subscribe::<Payload>()
        .subscriber_max_buffer_size(1024)
        .history_size(0)
        .open_or_create()
        .map_err(|e| anyhow!("iceoryx2 service: {e:?}"))?;
    Ok((node, service))
}

/// The subscriber role.
pub fn run_subscriber(name: &str, cpu: usize, warmup: u64, count: u64) -> anyhow::Result<()> {
    pin_cpu(cpu);
    let (_node, service) = service(name)?;
    let subscriber = service.subscriber_builder().create().map_err(|e| anyhow!("iceoryx2 subscriber: {e:?}"))?;
    super::child::ready()?;
    let total = warmup + count;
    let (mut hist, mut seen, mut last) = (new_histogram(), 0u64, 0u64);
    let deadline = Instant::now() + WATCHDOG;
    let mut spins = 0u32;
    while last + 1 < total {
        match subscriber.receive().map_err(|e| anyhow!("iceoryx2 receive: {e:?}"))? {
            Some(sample) => {
                let now = qilin_shm::now_ns();
                let words = sample.payload();
                last = words[0];
                if last >= warmup {
                    record(&mut hist, now - words[RECEIVE_NS_WORD] as i64);
                    seen += 1;
                }
            }
            None => {
                spins = spins.wrapping_add(1);
                if spins.is_multiple_of(1 << 16) && Instant::now() > deadline {
                    bail!("iceoryx2 subscriber: watchdog at tick {last} of {total}");
                }
                core::hint::spin_loop();
            }
        }
    }
    super::child::done(&hist, seen, count - seen)
}

/// The publisher side, paced, and the series.
pub fn measure(plan: &Plan) -> anyhow::Result<Series> {
    let name = format!("qilin-bench/{}", std::process::id());
    let (_node, service) = service(&name)?;
    let publisher = service.publisher_builder().create().map_err(|e| anyhow!("iceoryx2 publisher: {e:?}"))?;
    let mut command = Command::new(&plan.self_bin);
    command.args(["iceoryx2-sub", "--service", &name, "--cpu", &plan.reader_cpu().to_string()]).args([
        "--warmup",
        &plan.warmup.to_string(),
        "--count",
        &plan.samples.to_string(),
    ]);
    let mut peer = Peer::spawn(command, "iceoryx2 subscriber")?;
    peer.wait_ready()?;
    publisher.update_connections().map_err(|e| anyhow!("iceoryx2 connections: {e:?}"))?;
    pin_cpu(plan.writer_cpu());
    let mut words = Payload::read_from_bytes(sample_record(0).as_bytes()).map_err(|_| anyhow!("record size"))?;
    let schedule = Schedule::starting_soon(plan.interval_ns());
    for i in 0..plan.warmup + plan.samples {
        let (due, _) = schedule.wait(i);
        words[0] = i;
        words[RECEIVE_NS_WORD] = due as u64;
        let sample = publisher.loan_uninit().map_err(|e| anyhow!("iceoryx2 loan: {e:?}"))?;
        sample.write_payload(words).send().map_err(|e| anyhow!("iceoryx2 send: {e:?}"))?;
    }
    let result = peer.finish().context("iceoryx2 subscriber")?;
    Ok(Series::new(
        "baseline/iceoryx2",
        format!(
            "iceoryx2 0.7 publish/subscribe (ipc), [u64; 47] payload (= TickRecord), loan + write + send on CPU {} → \
             receive() spinning in another process on CPU {}",
            plan.writer_cpu(),
            plan.reader_cpu()
        ),
        result.hist,
    )
    .note(format!(
        "{} samples recorded, {} lost (the subscriber buffer holds 1024 samples; safe overflow drops the oldest)",
        result.ticks, result.lost
    )))
}

/// The ping-pong peer role (`iceoryx2-sub --answer PONG`): receives on `ping`, publishes every
/// sample back on `pong`, `total` times.
pub fn run_echo(ping: &str, pong: &str, cpu: usize, total: u64) -> anyhow::Result<()> {
    pin_cpu(cpu);
    let (_node, ping_service) = service(ping)?;
    let (_pong_node, pong_service) = service(pong)?;
    let subscriber = ping_service.subscriber_builder().create().map_err(|e| anyhow!("iceoryx2 subscriber: {e:?}"))?;
    let publisher = pong_service.publisher_builder().create().map_err(|e| anyhow!("iceoryx2 publisher: {e:?}"))?;
    publisher.update_connections().map_err(|e| anyhow!("iceoryx2 connections: {e:?}"))?;
    super::child::ready()?;
    let deadline = Instant::now() + WATCHDOG;
    let mut spins = 0u32;
    let mut answered = 0;
    while answered < total {
        match subscriber.receive().map_err(|e| anyhow!("iceoryx2 receive: {e:?}"))? {
            Some(sample) => {
                let words = *sample.payload();
                drop(sample);
                let answer = publisher.loan_uninit().map_err(|e| anyhow!("iceoryx2 loan: {e:?}"))?;
                answer.write_payload(words).send().map_err(|e| anyhow!("iceoryx2 send: {e:?}"))?;
                answered += 1;
            }
            None => {
                spins = spins.wrapping_add(1);
                if spins.is_multiple_of(1 << 16) && Instant::now() > deadline {
                    bail!("iceoryx2 echo: watchdog after {answered} of {total}");
                }
                core::hint::spin_loop();
            }
        }
    }
    super::child::done(&new_histogram(), total, 0)
}

/// `baseline/iceoryx2_pingpong`: publish on one service, the peer process answers on a second,
/// one-way = round trip / 2 (the method of iceoryx2's own benchmark).
pub fn measure_pingpong(plan: &Plan) -> anyhow::Result<Series> {
    let (ping, pong) =
        (format!("qilin-bench/{}/ping", std::process::id()), format!("qilin-bench/{}/pong", std::process::id()));
    let (_node, ping_service) = service(&ping)?;
    let (_pong_node, pong_service) = service(&pong)?;
    let publisher = ping_service.publisher_builder().create().map_err(|e| anyhow!("iceoryx2 publisher: {e:?}"))?;
    let subscriber = pong_service.subscriber_builder().create().map_err(|e| anyhow!("iceoryx2 subscriber: {e:?}"))?;
    let total = plan.warmup + plan.samples;
    let mut command = Command::new(&plan.self_bin);
    command
        .args(["iceoryx2-sub", "--service", &ping, "--answer", &pong, "--cpu", &plan.reader_cpu().to_string()])
        .args(["--warmup", "0", "--count", &total.to_string()]);
    let mut peer = Peer::spawn(command, "iceoryx2 echo")?;
    peer.wait_ready()?;
    publisher.update_connections().map_err(|e| anyhow!("iceoryx2 connections: {e:?}"))?;
    pin_cpu(plan.writer_cpu());
    let words = Payload::read_from_bytes(sample_record(0).as_bytes()).map_err(|_| anyhow!("record size"))?;
    let deadline = Instant::now() + WATCHDOG;
    let hist = super::pingpong::one_way(plan.warmup, plan.samples, |i| {
        let sample = publisher.loan_uninit().map_err(|e| anyhow!("iceoryx2 loan: {e:?}"))?;
        sample.write_payload(words).send().map_err(|e| anyhow!("iceoryx2 send: {e:?}"))?;
        let mut spins = 0u32;
        loop {
            if subscriber.receive().map_err(|e| anyhow!("iceoryx2 receive: {e:?}"))?.is_some() {
                return Ok(());
            }
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(1 << 16) && Instant::now() > deadline {
                bail!("iceoryx2 ping-pong: no answer to round trip {i} within {WATCHDOG:?}");
            }
            core::hint::spin_loop();
        }
    })?;
    peer.finish().context("iceoryx2 echo")?;
    Ok(Series::new(
        "baseline/iceoryx2_pingpong",
        format!(
            "ping-pong: iceoryx2 0.7 publish/subscribe (ipc), [u64; 47] payload, loan + write + send on CPU {} → \
             receive() in another process on CPU {}, which sends it back on a second service; one-way = round trip / 2",
            plan.writer_cpu(),
            plan.reader_cpu()
        ),
        hist,
    ))
}
