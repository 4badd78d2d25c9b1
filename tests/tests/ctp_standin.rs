//! The `ctp` source end to end without a broker: a real `qilin-core` with `source.kind = "ctp"`
//! loads qilin's CTP stand-in (`ctp-standin/`, the 6.7.11 ABI) through the same ctp2rs binding and
//! version check as the vendor's library, and the test plays the fronts the stand-in connects to
//! (`qilin_ctp_standin::Front`: logins, subscriptions, depth structs, heartbeat warnings,
//! disconnects with a reason, a stalled callback thread). Readers are the real segment reader and
//! `qilinctl`. One session here; the primary and backup together, with qilin-secrets, are in
//! `ctp_sessions.rs`.
//!
//! The tests run one at a time: each has a busy-polling core on a 2-core machine.

mod common;

use std::{collections::BTreeSet, net::UdpSocket, sync::Mutex, time::Instant};

use common::{
    WATCHDOG,
    ctp::{Options, PASSWORD, Rig, quirky_ticks},
    unique, wait_for, workspace, workspace_bin,
};
use qilin_ctp_standin::{DEPTH_SIZE, INVALID_LOGIN_GB18030, NO_SUCH_INSTRUMENT_GB18030, REASONS};
use qilin_market::Instruments;
use qilin_shm::{Counter, LinkState, Reader, TickRecord};
use qilin_testkit::read_ring;
use zerocopy::IntoBytes;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// A process killed, and its segment removed, when the test ends either way.
struct KillOnDrop(std::process::Child, std::path::PathBuf);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        qilin_testkit::remove_segment(&self.1);
    }
}

#[test]
fn login_trading_day_and_each_link_state_in_the_header_and_qilinctl_status() {
    let _serial = serial();
    let mut rig = Rig::start(&Options::default());
    let front = rig.front("primary");
    let status = rig.await_state(LinkState::Idle);
    assert_eq!(status["link"]["api_version"], qilin_ctp_standin::VERSION, "{status}");
    assert!(rig.log().contains("this is qilin's CTP stand-in"), "the core says it runs on the stand-in");

    // Connecting: the stand-in is connected to the front, which does not answer yet.
    front.script(|s| {
        s.hold_connections = true;
        s.hold_logins = true;
        s.trading_day = "20260303".into();
    });
    rig.credentials("primary", PASSWORD);
    front.wait("a connection", WATCHDOG, |s| s.connections == 1).unwrap();
    rig.await_state(LinkState::Connecting);
    // Connected: the front answered; the login is held.
    front.script(|s| s.hold_connections = false);
    front.wait("the login request", WATCHDOG, |s| s.login_waiting).unwrap();
    rig.await_state(LinkState::Connected);
    // Logged in: the trading day the front reported is in the header and in qilinctl status.
    front.script(|s| s.hold_logins = false);
    let status = rig.await_state(LinkState::LoggedIn);
    assert_eq!(rig.status().trading_day, 20_260_303);
    assert_eq!(status["link"]["trading_day"], 20_260_303, "{status}");
    assert_eq!(status["link"]["front"], front.url(), "{status}");
    let seen = front.seen();
    assert_eq!(seen.logins.len(), 1);
    assert!(
        seen.logins[0].password_ok && seen.logins[0].broker_id == "9999" && seen.logins[0].user_id == "primary-user"
    );
    assert!(seen.flow_path.ends_with("/flow/primary/"), "flow path {:?}", seen.flow_path);
    for file in ["DialogRsp.con", "QueryRsp.con", "TradingDay.con"] {
        assert!(rig.dir.path().join("flow/primary").join(file).is_file(), "flow file {file}");
    }
    let sessions = rig.sessions();
    assert_eq!(sessions["sessions"]["primary"]["trading_day"], 20_260_303, "{sessions}");

    // Disconnected: the front drops the connection and holds the stand-in's reconnection.
    front.script(|s| s.hold_connections = true);
    front.disconnect(0x2001).unwrap();
    let status = rig.await_state(LinkState::Disconnected);
    assert_eq!(status["link"]["state"], "disconnected");
    front.wait("the stand-in reconnecting", WATCHDOG, |s| s.connections == 2).unwrap();
    assert_eq!(rig.link_state(), Some(LinkState::Disconnected), "no OnFrontConnected while the front holds it");
    // The front answers again: reconnected, logged in and subscribed again, with no operator action.
    front.script(|s| s.hold_connections = false);
    rig.await_state(LinkState::LoggedIn);
    rig.await_logged_in("primary", 1);
    assert_eq!(front.seen().logins.len(), 2);

    rig.ctl("shutdown");
    rig.assert_clean_exit();
}

#[test]
fn a_refused_login_is_reported_decoded_and_retried_and_the_password_shows_nowhere() {
    let _serial = serial();
    let mut rig = Rig::start(&Options::default());
    let front = rig.front("primary");
    front.script(|s| s.password = Some("the-right-one-9Qx".into()));
    rig.credentials("primary", PASSWORD);
    // Refused (ErrorID 3, "不合法的登录" in GB18030), and retried after login_retry_ms.
    front.wait("three refused logins", WATCHDOG, |s| s.logins.len() >= 3).unwrap();
    assert!(front.seen().logins.iter().all(|l| !l.password_ok && !l.accepted));
    let sessions = rig.wait("the refusals in sessions", || {
        let s = rig.sessions();
        (s["sessions"]["primary"]["login_failures"].as_u64() >= Some(3)).then_some(s)
    });
    let primary = &sessions["sessions"]["primary"];
    assert_eq!(primary["state"], "login_failed", "{sessions}");
    let error = primary["last_error"].as_str().unwrap();
    assert!(error.contains("ErrorID 3") && error.contains("不合法的登录"), "{error}");
    assert!(INVALID_LOGIN_GB18030.len() == 12, "the message went over the wire in GB18030");
    let log = rig.log();
    assert!(log.contains("不合法的登录") && log.contains("error_id=3"), "{log}");
    assert_eq!(rig.reader().counter(Counter::TicksPublished), 0);

    // The right password: logged in on the next attempt.
    rig.credentials("primary", "the-right-one-9Qx");
    rig.await_logged_in("primary", 1);
    rig.ctl("shutdown");
    rig.assert_clean_exit();
    rig.assert_no_password("the-right-one-9Qx");
}

/// 520 instruments: futures of the product table and option ids of its series.
fn many_instruments() -> Vec<String> {
    let products = Instruments::load(&workspace().join("config/instruments.toml")).unwrap();
    let mut ids: Vec<String> =
        products.products().iter().flat_map(|p| p.instruments.iter().map(|i| i.to_string())).collect();
    let mut strike = 2000;
    while ids.len() < 520 {
        ids.push(format!("m2605-C-{strike}"));
        ids.push(format!("m2605-P-{strike}"));
        strike += 50;
    }
    ids.truncate(520);
    ids
}

#[test]
fn five_hundred_instruments_are_subscribed_in_batches_and_a_refused_one_is_named() {
    let _serial = serial();
    let ids = many_instruments();
    let mut rig = Rig::start(&Options { subscribe: ids.clone(), ..Options::default() });
    let front = rig.front("primary");
    front.script(|s| {
        s.refuse_instruments.insert("m2605-C-2050".into(), (16, NO_SUCH_INSTRUMENT_GB18030.to_vec()));
        s.refuse_instruments.insert(ids[3].clone(), (16, NO_SUCH_INSTRUMENT_GB18030.to_vec()));
    });
    rig.credentials("primary", PASSWORD);
    rig.await_logged_in("primary", ids.len() - 2);
    let seen = front.seen();
    let batches = &seen.subscribe_batches;
    assert_eq!(batches.iter().sum::<usize>(), ids.len(), "every id once: {batches:?}");
    assert!(batches.len() >= 6 && batches.iter().all(|b| *b <= 100), "batches of at most 100: {batches:?}");
    let expected: BTreeSet<String> = ids.iter().filter(|i| *i != "m2605-C-2050" && **i != ids[3]).cloned().collect();
    assert_eq!(seen.subscribed, expected);
    let sessions = rig.wait("both refusals reported", || {
        let s = rig.sessions();
        (s["sessions"]["primary"]["refused_instruments"].as_object().map(|m| m.len()) == Some(2)).then_some(s)
    });
    let refused = &sessions["sessions"]["primary"]["refused_instruments"];
    assert!(refused["m2605-C-2050"].as_str().unwrap().contains("ErrorID 16: 合约不存在"), "{refused}");
    assert!(refused[&ids[3]].is_string(), "{refused}");
    let log = rig.log();
    assert!(log.contains("instrument=m2605-C-2050") && log.contains("refused to subscribe"), "{log}");
    rig.ctl("shutdown");
    rig.assert_clean_exit();
}

/// A record's fields as the struct carried them, read from the struct with ctp2rs's own layout
/// (not qilin's parser): DBL_MAX is absent, NaN in the record.
fn assert_as_pushed(i: usize, raw: &[u8; DEPTH_SIZE], t: &TickRecord) {
    use ctp2rs::v1alpha1::CThostFtdcDepthMarketDataField as F;
    use std::mem::offset_of;
    let f64_at = |o: usize| {
        let v = f64::from_le_bytes(raw[o..o + 8].try_into().unwrap());
        if v == f64::MAX { f64::NAN } else { v }
    };
    let i32_at = |o: usize| i32::from_le_bytes(raw[o..o + 4].try_into().unwrap());
    let same = |what: &str, a: f64, b: f64| {
        assert!(a == b || (a.is_nan() && b.is_nan()), "tick {i}: {what} pushed {a}, in the segment {b}");
    };
    let id_at = offset_of!(F, InstrumentID);
    let id = raw[id_at..id_at + 81].split(|b| *b == 0).next().unwrap();
    assert_eq!(t.instrument_id_str().unwrap().as_bytes(), id, "tick {i}");
    same("LastPrice", f64_at(offset_of!(F, LastPrice)), t.last_price);
    same("PreSettlementPrice", f64_at(offset_of!(F, PreSettlementPrice)), t.pre_settlement_price);
    same("OpenPrice", f64_at(offset_of!(F, OpenPrice)), t.open_price);
    same("HighestPrice", f64_at(offset_of!(F, HighestPrice)), t.highest_price);
    same("LowestPrice", f64_at(offset_of!(F, LowestPrice)), t.lowest_price);
    same("Turnover", f64_at(offset_of!(F, Turnover)), t.turnover);
    same("OpenInterest", f64_at(offset_of!(F, OpenInterest)), t.open_interest);
    same("UpperLimitPrice", f64_at(offset_of!(F, UpperLimitPrice)), t.upper_limit_price);
    same("LowerLimitPrice", f64_at(offset_of!(F, LowerLimitPrice)), t.lower_limit_price);
    same("SettlementPrice", f64_at(offset_of!(F, SettlementPrice)), t.settlement_price);
    same("ClosePrice", f64_at(offset_of!(F, ClosePrice)), t.close_price);
    assert_eq!(i64::from(i32_at(offset_of!(F, Volume))), t.volume, "tick {i}: Volume");
    let bids = [
        offset_of!(F, BidPrice1),
        offset_of!(F, BidPrice2),
        offset_of!(F, BidPrice3),
        offset_of!(F, BidPrice4),
        offset_of!(F, BidPrice5),
    ];
    let asks = [
        offset_of!(F, AskPrice1),
        offset_of!(F, AskPrice2),
        offset_of!(F, AskPrice3),
        offset_of!(F, AskPrice4),
        offset_of!(F, AskPrice5),
    ];
    let bid_volumes = [
        offset_of!(F, BidVolume1),
        offset_of!(F, BidVolume2),
        offset_of!(F, BidVolume3),
        offset_of!(F, BidVolume4),
        offset_of!(F, BidVolume5),
    ];
    let ask_volumes = [
        offset_of!(F, AskVolume1),
        offset_of!(F, AskVolume2),
        offset_of!(F, AskVolume3),
        offset_of!(F, AskVolume4),
        offset_of!(F, AskVolume5),
    ];
    for level in 0..5 {
        same("BidPrice", f64_at(bids[level]), t.bid_price[level]);
        same("AskPrice", f64_at(asks[level]), t.ask_price[level]);
        assert_eq!(i32_at(bid_volumes[level]), t.bid_volume[level], "tick {i}: BidVolume{}", level + 1);
        assert_eq!(i32_at(ask_volumes[level]), t.ask_volume[level], "tick {i}: AskVolume{}", level + 1);
    }
}

/// The same record from two sources: everything but what the feed adds per source and moment, and
/// the instrument's index in its segment's directory (the ctp core admits its subscriptions at
/// start, the udp core each instrument as it first arrives).
fn market_fields(t: &TickRecord) -> TickRecord {
    let mut t = *t;
    t.source = 0;
    t.instrument_index = 0;
    t.receive_ns = 0;
    t.publish_ns = 0;
    t
}

#[test]
fn a_hundred_thousand_quirky_ticks_reach_the_segment_as_pushed_and_as_the_udp_source_makes_them() {
    let _serial = serial();
    const N: u64 = 100_000;
    const BURST: usize = 8_192; // well under the hand-off's capacity: nothing can be dropped
    let instruments = ["rb2605", "cu2605", "au2606", "sc2605", "m2605", "i2605", "SR605", "TA605", "IF2606", "lc2605"];
    let ticks = quirky_ticks(N, &instruments);
    assert_eq!(ticks.len() as u64, N);
    let options = Options {
        subscribe: instruments.iter().map(|s| s.to_string()).collect(),
        ring_slots: 1 << 17,
        ..Options::default()
    };
    let mut rig = Rig::start(&options);
    let front = rig.front("primary");
    rig.credentials("primary", PASSWORD);
    rig.await_logged_in("primary", instruments.len());
    let reader = rig.reader();
    let started = Instant::now();
    for (n, burst) in ticks.chunks(BURST).enumerate() {
        front.push(burst.as_flattened()).unwrap();
        // Each burst is in the segment before the next is sent: the hand-off never holds more
        // than one burst, by construction.
        let upto = ((n + 1) * BURST).min(ticks.len()) as u64;
        wait_for("the burst in the segment", || (reader.counter(Counter::TicksReceived) >= upto).then_some(()));
    }
    let elapsed = started.elapsed();
    let delivery = front.sync(WATCHDOG).unwrap();
    assert_eq!((delivery.delivered, delivery.undelivered), (N, 0));
    assert_eq!(reader.counter(Counter::HandoffFull), 0);
    assert_eq!(reader.counter(Counter::TicksPublished), N, "the simulator's quirks are all admissible");
    let records = read_ring(reader.path(), N);
    for (i, (raw, t)) in ticks.iter().zip(&records).enumerate() {
        assert_eq!(t.sequence, i as u64 + 1);
        assert_as_pushed(i, raw, t);
    }
    let flagged = records.iter().filter(|t| t.quality != 0).count();
    assert!(flagged > 1000, "quirks were in the sample: {flagged} flagged records");
    eprintln!(
        "{N} ticks pushed through the stand-in in bursts of {BURST} in {elapsed:?} ({:.0} ticks/s, each burst waited for in the segment)",
        N as f64 / elapsed.as_secs_f64()
    );
    rig.ctl("shutdown");
    rig.assert_clean_exit();

    // The same structs through the udp source: the same records but for the source and the
    // feed's own timestamps.
    let udp_segment = std::path::PathBuf::from(format!("/dev/shm/{}", unique("ctp-udp")));
    let port = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("udp.toml");
    std::fs::write(
        &config,
        format!(
            "[feed]\nring_slots = {}\n[core]\nlock_memory = false\ninstruments_file = {:?}\ncalendar_dir = {:?}\n\
             [source]\nkind = \"udp\"\n[source.udp]\nbind = \"127.0.0.1:{port}\"\n",
            1 << 17,
            workspace().join("config/instruments.toml").display().to_string(),
            workspace().join("config/calendar").display().to_string(),
        ),
    )
    .unwrap();
    let udp_core = KillOnDrop(
        std::process::Command::new(workspace_bin("qilin-core"))
            .arg("--config")
            .arg(&config)
            .arg("--segment")
            .arg(&udp_segment)
            .arg("--control-socket")
            .arg(dir.path().join("control.sock"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
        udp_segment.clone(),
    );
    let udp_reader = wait_for("the udp core's segment", || Reader::open(&udp_segment).ok());
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    // The segment exists before the socket is bound: a 3-byte datagram (refused, counted) until
    // the core has received one says it is.
    let probes = wait_for("the udp core's socket", || {
        sender.send_to(&[1, 2, 3], ("127.0.0.1", port)).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let n = udp_reader.counter(Counter::UdpDatagrams);
        (n > 0).then_some(n)
    });
    let mut sent = 0;
    let probes = wait_for("every probe counted", || {
        let n = udp_reader.counter(Counter::UdpDatagrams);
        (n >= probes && udp_reader.counter(Counter::RejectSize) == n).then_some(n)
    });
    for burst in ticks.chunks(64) {
        for raw in burst {
            sender.send_to(raw, ("127.0.0.1", port)).unwrap();
        }
        sent += burst.len() as u64;
        // 64 datagrams at a time, each received before the next burst: the socket's buffer never
        // overflows, by construction.
        wait_for("the datagrams received", || {
            (udp_reader.counter(Counter::UdpDatagrams) >= probes + sent).then_some(())
        });
    }
    let udp_records = read_ring(udp_reader.path(), N);
    drop(udp_core);
    for (i, (a, b)) in records.iter().zip(&udp_records).enumerate() {
        // Byte for byte (NaN included): the same normalization of the same struct.
        let (a, b) = (market_fields(a), market_fields(b));
        assert!(a.as_bytes() == b.as_bytes(), "record {i}: the ctp and udp sources differ:\n{a:?}\n{b:?}");
    }
}

#[test]
fn each_disconnect_reason_reconnects_relogs_and_resubscribes_with_nothing_invented() {
    let _serial = serial();
    let instruments = ["rb2605", "m2605", "SR605"];
    let ticks = quirky_ticks(2_200, &instruments);
    let options = Options { subscribe: instruments.iter().map(|s| s.to_string()).collect(), ..Options::default() };
    let mut rig = Rig::start(&options);
    let front = rig.front("primary");
    rig.credentials("primary", PASSWORD);
    rig.await_logged_in("primary", 3);
    let reader = rig.reader();
    let mut chunks = ticks.chunks(200);
    // The stand-in's counts are its API object's, since its creation: compare differences.
    let mut last = front.sync(WATCHDOG).unwrap();
    let mut delivered = 0;
    for (k, (reason, words)) in REASONS.iter().enumerate() {
        // Ticks while logged in reach the segment.
        front.push(chunks.next().unwrap().as_flattened()).unwrap();
        let now = front.sync(WATCHDOG).unwrap();
        assert_eq!((now.delivered - last.delivered, now.undelivered - last.undelivered), (200, 0));
        delivered += 200;
        last = now;
        // The front drops the connection with this reason, and holds the reconnection while it
        // sends more: the stand-in is not logged in, so those are not delivered.
        front.script(|s| s.hold_connections = true);
        front.disconnect(*reason).unwrap();
        rig.await_state(LinkState::Disconnected);
        let sessions = rig.sessions();
        let reasons = &sessions["sessions"]["primary"]["disconnect_reasons"];
        let key = format!("{reason:#x} {}", qilin_core::session::disconnect_reason(*reason));
        assert_eq!(reasons[&key], 1, "{words}: {sessions}");
        front.wait("the stand-in's reconnection", WATCHDOG, |s| s.connections == k as u64 + 2).unwrap();
        front.push(chunks.next().unwrap().as_flattened()).unwrap();
        let held = front.sync(WATCHDOG).unwrap();
        assert_eq!(
            (held.delivered - last.delivered, held.undelivered - last.undelivered),
            (0, 200),
            "what the front sent to a connection that is not logged in is not delivered"
        );
        last = held;
        // The front answers: reconnect, re-login and re-subscription, with no operator action.
        front.script(|s| s.hold_connections = false);
        rig.await_logged_in("primary", 3);
        assert_eq!(front.seen().logins.len(), k + 2);
        rig.wait("the disconnect counted in the header", || {
            (rig.counter(Counter::FrontDisconnects) == k as u64 + 1).then_some(())
        });
    }
    front.push(chunks.next().unwrap().as_flattened()).unwrap();
    assert_eq!(front.sync(WATCHDOG).unwrap().delivered - last.delivered, 200);
    delivered += 200;
    // Exactly what was delivered is in the segment: nothing lost, nothing invented.
    rig.wait("every delivered tick in the segment", || {
        (reader.counter(Counter::TicksReceived) >= delivered).then_some(())
    });
    assert_eq!(reader.counter(Counter::TicksPublished), delivered);
    assert_eq!(reader.write_cursor(), delivered);
    let sessions = rig.sessions();
    assert_eq!(sessions["sessions"]["primary"]["disconnects"], 5, "{sessions}");
    rig.ctl("shutdown");
    rig.assert_clean_exit();
}

#[test]
fn a_stalled_callback_thread_never_blocks_the_hot_thread_and_drops_are_counted() {
    let _serial = serial();
    let instruments = ["rb2605", "m2605", "SR605", "IF2606"];
    let ticks = quirky_ticks(20_000, &instruments);
    let options = Options {
        subscribe: instruments.iter().map(|s| s.to_string()).collect(),
        handoff_capacity: 1024,
        ring_slots: 1 << 15,
        ..Options::default()
    };
    let mut rig = Rig::start(&options);
    let front = rig.front("primary");
    rig.credentials("primary", PASSWORD);
    rig.await_logged_in("primary", 4);
    let reader = rig.reader();
    // The callback thread sleeps 2 s; meanwhile the front sends 20 000 ticks, which the stand-in
    // queues and then hands over in one burst, far more than the 1 024-slot hand-off holds.
    front.stall(2_000).unwrap();
    front.push(ticks.as_flattened()).unwrap();
    // While the SDK's thread is stalled the hot thread keeps beating (a positive signal: the
    // header's heartbeat moves on while the stand-in has not answered the sync queued behind).
    let beat = reader.heartbeat_ns();
    rig.wait("the hot thread's heartbeat moving on during the stall", || (reader.heartbeat_ns() > beat).then_some(()));
    let delivery = front.sync(WATCHDOG).unwrap();
    assert_eq!(delivery.delivered, 20_000);
    let dropped = rig.wait("the hand-off's drops counted", || {
        let published = reader.counter(Counter::TicksReceived);
        let dropped = reader.counter(Counter::HandoffFull);
        (published + dropped == 20_000).then_some(dropped)
    });
    eprintln!("stalled burst: {dropped} of 20000 dropped at the full hand-off, the rest published");
    assert_eq!(reader.write_cursor(), 20_000 - dropped, "what was not dropped is in the segment, once");
    rig.ctl("shutdown");
    rig.assert_clean_exit();
}

#[test]
fn shutdown_in_every_session_state_is_clean() {
    let _serial = serial();
    for state in ["waiting_credentials", "connecting", "connected", "logged_in", "disconnected", "stalled"] {
        let mut rig = Rig::start(&Options::default());
        let front = rig.front("primary");
        match state {
            "waiting_credentials" => {}
            "connecting" => {
                front.script(|s| s.hold_connections = true);
                rig.credentials("primary", PASSWORD);
                front.wait("a connection", WATCHDOG, |s| s.connections == 1).unwrap();
            }
            "connected" => {
                front.script(|s| s.hold_logins = true);
                rig.credentials("primary", PASSWORD);
                front.wait("the login", WATCHDOG, |s| s.login_waiting).unwrap();
            }
            "logged_in" => {
                rig.credentials("primary", PASSWORD);
                rig.await_logged_in("primary", 1);
            }
            "disconnected" => {
                rig.credentials("primary", PASSWORD);
                rig.await_logged_in("primary", 1);
                front.script(|s| s.hold_connections = true);
                front.disconnect(0x1002).unwrap();
                rig.await_state(LinkState::Disconnected);
            }
            _ => {
                // The callback thread asleep in a callback-free stall: Release waits for it.
                rig.credentials("primary", PASSWORD);
                rig.await_logged_in("primary", 1);
                front.stall(1_500).unwrap();
            }
        }
        rig.signal(nix::sys::signal::Signal::SIGTERM);
        rig.assert_clean_exit();
        let sessions_line = rig.log().lines().filter(|l| l.contains("CTP API released")).count();
        assert!(sessions_line <= 2, "{state}: each session released at most once");
        eprintln!("shutdown while {state}: clean");
    }
}
