//! The UDP source joined to a multicast group, for real: `qilin-core` runs in a network namespace of
//! its own (`unshare --net`, loopback up, 224.0.0.0/4 routed to it), and a sender entered into that
//! namespace (`nsenter`) sends raw CTP structs to the group. Nothing leaves the namespace. The
//! segment lives in /dev/shm, which the namespace shares, so the test reads it as usual.
//! Needs root (CI runs as root) and util-linux's `unshare`/`nsenter` plus iproute2's `ip`.

mod common;

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
};

use common::{unique, wait_for};
use qilin_core::ctp::RawFields;
use qilin_shm::{Counter, Next, Reader, RunState, Start, TickRecord};

const GROUP: &str = "239.255.42.99";
const PORT: u16 = 7411;

struct Netns(Child);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_udp_source_receives_a_multicast_group() {
    let segment = PathBuf::from(format!("/dev/shm/{}", unique("mcast")));
    let socket = std::env::temp_dir().join(format!("{}.sock", unique("mcast")));
    let config = std::env::temp_dir().join(format!("{}.toml", unique("mcast")));
    std::fs::write(
        &config,
        format!(
            "[source]\nkind = \"udp\"\n[source.udp]\nbind = \"0.0.0.0:{PORT}\"\nmulticast_group = \"{GROUP}\"\nmulticast_interface = \"127.0.0.1\"\nallow = [\"127.0.0.1\"]\n"
        ),
    )
    .unwrap();
    let setup = "ip link set lo up && ip link set lo multicast on && ip route add 224.0.0.0/4 dev lo && exec \"$@\"";
    let core = Netns(
        Command::new("unshare")
            .args(["--net", "sh", "-c", setup, "sh", env!("CARGO_BIN_EXE_qilin-core"), "--config"])
            .arg(&config)
            .arg("--segment")
            .arg(&segment)
            .arg("--control-socket")
            .arg(&socket)
            .stdout(Stdio::null())
            .spawn()
            .expect("unshare (util-linux) is needed for this test"),
    );
    let pid = u64::from(core.0.id());
    let reader = wait_for("qilin-core running in its namespace", || {
        Reader::open(&segment).ok().filter(|r| r.writer_pid() == pid && r.run_state() == Some(RunState::Running))
    });

    let mut f = RawFields {
        instrument_id: "rb2605".into(),
        exchange_id: "SHFE".into(),
        trading_day: "20260302".into(),
        action_day: "20260302".into(),
        update_time: "10:00:00".into(),
        last_price: 3100.0,
        volume: 1,
        ..RawFields::default()
    };
    f.bid_price[0] = 3099.0;
    f.ask_price[0] = 3100.0;
    let datagram = std::env::temp_dir().join(format!("{}.bin", unique("mcast")));
    std::fs::write(&datagram, f.to_v67_bytes()).unwrap();
    let send = format!(
        "import socket,sys; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('127.0.0.1',0)); s.sendto(open(sys.argv[1],'rb').read(),('{GROUP}',{PORT}))"
    );
    let status = Command::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .args(["python3", "-c", &send])
        .arg(&datagram)
        .status()
        .expect("nsenter (util-linux) is needed for this test");
    assert!(status.success(), "sending to {GROUP} inside the namespace failed");

    let mut reader = reader;
    reader.seek(Start::Sequence(1));
    let mut tick = TickRecord::ZERO;
    wait_for("the multicast tick in the segment", || (reader.try_next(&mut tick) == Next::Tick).then_some(()));
    assert_eq!(tick.instrument_id_str(), Some("rb2605"));
    assert_eq!(tick.last_price, 3100.0);
    wait_for("the datagram counter", || (reader.counter(Counter::UdpDatagrams) == 1).then_some(()));

    drop(core);
    qilin_testkit::remove_segment(&segment);
    for path in [&socket, &config, &datagram] {
        let _ = std::fs::remove_file(path);
    }
}
