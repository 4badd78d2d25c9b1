//! Beyond one host (issue 11): qilin-nats publishing into a three-node JetStream cluster on
//! loopback (real nats-server processes, routes between three ports), its stream with three
//! replicas. One node is SIGKILLed under load and restarted. Afterwards, a consumer on each of
//! the two nodes that stayed up sees every sequence exactly once, in order, with no gap; the
//! restarted node has caught up and serves the same.

mod common;

use std::time::Duration;

use async_nats::jetstream;
use common::*;
use nix::sys::signal::Signal;

#[test]
fn a_node_of_a_three_replica_cluster_dies_under_load_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let feed = unique("cluster");
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let routes: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut nodes: Vec<NatsServer> = (0..3)
        .map(|i| NatsServer::start_cluster_node(dir.path(), &format!("n{i}"), ports[i], routes[i], &routes))
        .collect();
    let urls: Vec<String> = nodes.iter().map(NatsServer::url).collect();
    let stream = stream_name(&feed);

    // The stream, three replicas, created as soon as the cluster has a JetStream leader (the
    // sidecar would retry as well; creating it here keeps the test's timing out of its logs).
    let rt = runtime();
    rt.block_on(async {
        let addrs: Vec<async_nats::ServerAddr> = urls.iter().map(|u| u.parse().unwrap()).collect();
        let client = async_nats::connect(addrs).await.unwrap();
        let js = jetstream::new(client);
        wait_for_async("the cluster to elect a JetStream leader and create the stream", || {
            let js = js.clone();
            let config = jetstream::stream::Config {
                name: stream.clone(),
                subjects: vec![format!("qilin.{feed}.>")],
                num_replicas: 3,
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            };
            async move { js.get_or_create_stream(config).await.ok().map(|_| ()) }
        })
        .await;
    });

    const TICKS: u64 = 80_000;
    let core = Core::start(dir.path(), &feed, 1 << 17, 5_000, TICKS);
    let config = dir.path().join("nats.toml");
    std::fs::write(
        &config,
        format!(
            "name = \"nats\"\nsegment = {:?}\nstate_dir = {:?}\nstatus_interval_ms = 50\n\
             [nats]\nurls = {urls:?}\nreconnect_max_delay_ms = 200\nrequest_timeout_ms = 2000\n\
             [jetstream]\nreplicas = 3\n",
            core.segment.display().to_string(),
            dir.path().join("state").display().to_string(),
        ),
    )
    .unwrap();
    let mut sidecar = Sidecar::start(&config, &dir.path().join("nats.log"));
    let mut watch = CoreWatch::new(&core);

    // Kill the node the sidecar is most likely talking to (the first URL) a third of the way in.
    wait_for("a third of the ticks confirmed", || {
        watch.sample();
        status(&core.segment, "nats").filter(|s| s["position"].as_u64() > Some(TICKS / 3))
    });
    nodes[0].stop(Signal::SIGKILL);
    let position = |segment| status(segment, "nats").and_then(|s| s["position"].as_u64()).unwrap_or(0);
    let at_kill = position(&core.segment);
    // The two others carry the load once the stream has a leader among them (an election takes
    // nats-server seconds, more on a loaded machine): wait for the positive signal, a confirmation
    // while n0 is still down, not for a fixed time. The ring (2^17 slots) holds every tick, so the
    // sidecar has something to confirm however long that takes; the watchdog bounds it.
    let while_down = wait_for("a tick confirmed by the cluster while n0 is down", || {
        watch.sample();
        let now = position(&core.segment);
        (now > at_kill).then_some(now)
    });
    println!("confirmed while n0 was down: {at_kill} → {while_down}");
    nodes[0].restart();

    watch.wait_published(TICKS);
    wait_for("qilin-nats to confirm every sequence", || {
        watch.sample();
        status(&core.segment, "nats").filter(|s| s["position"] == TICKS)
    });
    assert_eq!(sidecar.signal(Signal::SIGTERM).code(), Some(0), "clean stop:\n{}", sidecar.log());

    for (i, url) in urls.iter().enumerate() {
        // The restarted node (0) may still be catching up: read it last and wait for it.
        let stored = wait_for(&format!("node n{i} to hold all {TICKS} messages"), || {
            let stored = rt.block_on(stream_contents(url, &stream));
            (stored.len() as u64 >= TICKS).then_some(stored)
        });
        let gaps = assert_exactly_once(&stored, TICKS);
        assert!(gaps.is_empty(), "node n{i}: gap events {gaps:?}");
        println!("node n{i}: {} messages, 1..={TICKS} once each, in order", stored.len());
    }
    watch.assert_no_stall_or_drop(TICKS);
}

/// Polls an async condition every 100 ms until it yields, failing after the watchdog.
async fn wait_for_async<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + WATCHDOG;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "timed out after {WATCHDOG:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
