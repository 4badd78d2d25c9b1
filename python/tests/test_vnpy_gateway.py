"""The vnpy gateway (python/qilin_shm/vnpy_gateway.py) against a real qilin-core, with vnpy 4.5 from
the package index:

* a vnpy script (vnpy's MainEngine + EventEngine, headless, in its own process) subscribes to three
  instruments of three exchanges and collects the TickData of EVENT_TICK; every one of them must
  equal, field for field, what this test computes with its *own* mapping from the segment's record
  of the same sequence, read independently with the stdlib ``qilin_shm.Reader``: the datetime
  (ActionDay + UpdateTime + ms as Asia/Shanghai, as vnpy_ctp builds it), the exchange, the five
  levels, the limits, NaN prices as 0, ...; no tick of another instrument arrives, and each
  instrument's ticks are all of its records from the first delivered on, in order, none twice;
* orders are refused (send_order returns "" and says why), and a segment that does not exist yet
  is reported with the reader's error while the gateway waits for it;
* a gap (the gateway's process stopped while the core laps the ring), a dead core (stale), a
  restarted core (new epoch), a clean stop and a segment file replaced by a new one (reopened)
  are each logged, and ticks keep coming;
* the example python/examples/vnpy_script.py prints the ticks of what it subscribed to.

The core runs the simulator on a temporary segment from $QILIN_BIN_DIR (scripts/test sets it to the
cargo target's debug directory). Waits have a generous watchdog only; nothing asserts speed.
vnpy writes its ``.vntrader`` directory into a temporary directory (its working directory).
"""

import json
import math
import os
import pickle
import re
import select
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
PYTHON_DIR = os.path.join(REPO, "python")
sys.path.insert(0, PYTHON_DIR)
import qilin_shm  # noqa: E402

WATCHDOG = 180.0  # seconds; a generous bound for a loaded machine, never a speed assertion
GATEWAY = "QILIN"

# The test's own tables (not the gateway's): the segment's exchange codes (LAYOUT.md) and names.
EXCHANGE_CODES = {1: "SHFE", 2: "INE", 3: "DCE", 4: "CZCE", 5: "CFFEX", 6: "GFEX"}
SHANGHAI = ZoneInfo("Asia/Shanghai")
DERIVED_ACTION_DAY = 0x10

# au (SHFE, night to 02:30), m (DCE: night ticks carry the trading day, the core derives the
# calendar day), SR (CZCE) are subscribed; ag, rb, i tick too and must not be delivered.
SIM_INSTRUMENTS = ["au2606", "m2605", "SR605", "rb2605", "ag2606", "i2605"]
SUBSCRIBED = [("au2606", "SHFE"), ("m2605", "DCE"), ("SR605", "CZCE")]


def core_config(tmp, ring_slots, rate, max_ticks, start="2026-03-02 20:59:00", absent_prices=0.2, regressions=0.1):
    """A simulator config: the night session of Monday 2026-03-02 (trading day 2026-03-03), level 5
    absent on a share of ticks (NaN in the segment), a few volume regressions."""
    return f"""
[feed]
ring_slots = {ring_slots}
[core]
lock_memory = false
instruments_file = {json.dumps(os.path.join(REPO, "config", "instruments.toml"))}
calendar_dir = {json.dumps(os.path.join(REPO, "config", "calendar"))}
audit_log = {json.dumps(os.path.join(str(tmp), "audit.jsonl"))}
[source]
kind = "sim"
[source.sim]
ticks_per_second = {rate}
max_ticks = {max_ticks}
instruments = {json.dumps(SIM_INSTRUMENTS)}
start = "{start}"
[source.sim.inject]
absent_prices = {absent_prices}
volume_regression = {regressions}
"""


def bin_dir():
    path = os.environ.get("QILIN_BIN_DIR")
    if not path:
        pytest.fail("QILIN_BIN_DIR is not set: point it at the directory holding qilin-core "
                    "(scripts/test sets it to <cargo target>/debug after `cargo test`)")
    exe = os.path.join(path, "qilin-core")
    if not os.access(exe, os.X_OK):
        pytest.fail(f"QILIN_BIN_DIR={path} has no executable qilin-core (build it: cargo build -p qilin-core)")
    return path


def wait_for(what, probe, timeout=WATCHDOG):
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"watchdog: {timeout:.0f} s passed waiting for {what}")
        time.sleep(0.01)


class Core:
    """qilin-core on the simulator, SIGKILLed by pid on stop(); the test's fixture removes the segment."""

    def __init__(self, tmp, segment, config_text):
        self.tmp = str(tmp)
        self.segment = segment
        self.config = os.path.join(self.tmp, f"core-{uuid.uuid4().hex[:6]}.toml")
        with open(self.config, "w") as f:
            f.write(config_text)
        self.proc = None

    def start(self):
        self.log = open(os.path.join(self.tmp, "core.log"), "ab")
        self.proc = subprocess.Popen(
            [os.path.join(bin_dir(), "qilin-core"), "--config", self.config, "--segment", self.segment,
             "--control-socket", os.path.join(self.tmp, "core.sock")],
            stdout=self.log, stderr=self.log, cwd=REPO)
        pid = self.proc.pid

        def running():
            if self.proc.poll() is not None:
                raise AssertionError(f"qilin-core exited with {self.proc.returncode}; log: {self.read_log()}")
            try:
                with qilin_shm.Reader(self.segment) as r:
                    return r.writer_pid() == pid and r.run_state() == "running"
            except qilin_shm.SegmentError:
                return False

        wait_for("qilin-core running in the segment", running)
        return self

    def read_log(self):
        with open(os.path.join(self.tmp, "core.log"), "rb") as f:
            return f.read().decode(errors="replace")[-4000:]

    def signal(self, sig):
        os.kill(self.proc.pid, sig)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()
            self.log.close()


@pytest.fixture
def segment():
    """A fresh segment path under /dev/shm; the segment and its lock file are removed afterwards."""
    path = f"/dev/shm/qilin-vnpy-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    yield path
    for p in (path, path + ".lock"):
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass


@pytest.fixture
def cores():
    started = []
    yield started
    for core in started:
        core.stop()


@pytest.fixture
def procs():
    """Child processes of a test: killed by pid (SIGKILL) if still running at teardown."""
    started = []
    yield started
    for p in started:
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
            p.kill()
        p.wait()


def vnpy_env(tmp):
    """vnpy's MainEngine chdirs into its .vntrader's parent and writes logs there: give it a
    temporary working directory holding .vntrader (and a temporary HOME)."""
    run = os.path.join(str(tmp), "vnpy-run")
    os.makedirs(os.path.join(run, ".vntrader"), exist_ok=True)
    env = dict(os.environ)
    env.update(HOME=run, PYTHONPATH=PYTHON_DIR, PYTHONDONTWRITEBYTECODE="1", QT_QPA_PLATFORM="offscreen")
    return run, env


# The vnpy script: MainEngine + the gateway, subscribes, collects EVENT_TICK / EVENT_LOG /
# EVENT_CONTRACT. Mode "collect": until each subscribed symbol has `count` ticks, then tries an
# order, a cancel and an account query, closes and pickles what it got. Mode "logs": prints every
# log line as "LOG <msg>" and every tick as "TICK <vt_symbol> <sequence>" until its stdin closes.
DRIVER = r'''
import json, os, pickle, sys, threading, time, traceback
from vnpy.trader.setting import SETTINGS
SETTINGS["log.console"] = False  # vnpy's loguru console lines would interleave with ours (its file log stays)
from vnpy.event import EventEngine
from vnpy.trader.engine import MainEngine
from vnpy.trader.constant import Direction, Exchange, Offset, OrderType
from vnpy.trader.event import EVENT_CONTRACT, EVENT_LOG, EVENT_TICK
from vnpy.trader.object import CancelRequest, OrderRequest, SubscribeRequest
from qilin_shm.vnpy_gateway import QilinGateway

args = json.loads(sys.argv[1])
ticks, logs, contracts = [], [], []
lock = threading.Lock()
done = threading.Event()
wanted = {s for s, _ in args["subscribe"]}


def say(line):
    """One line to the test, in one write(2) (a pipe keeps it whole)."""
    os.write(1, (line + "\n").encode())


def main(main_engine):
    gateway = main_engine.add_gateway(QilinGateway)
    name = gateway.gateway_name

    def on_tick(event):
        with lock:
            ticks.append(event.data)
            if args["mode"] == "logs":
                say(f"TICK {event.data.vt_symbol} {event.data.extra['sequence']}")
            counts = {}
            for t in ticks:
                counts[t.symbol] = counts.get(t.symbol, 0) + 1
            if all(counts.get(s, 0) >= args["count"] for s in wanted):
                done.set()

    def on_log(event):
        if event.data.gateway_name != name:
            return
        with lock:
            logs.append(event.data.msg)
        if args["mode"] == "logs":
            say("LOG " + event.data.msg.replace("\n", " | "))

    main_engine.event_engine.register(EVENT_TICK, on_tick)
    main_engine.event_engine.register(EVENT_LOG, on_log)
    main_engine.event_engine.register(EVENT_CONTRACT, lambda e: contracts.append(e.data))
    main_engine.connect(args["setting"], name)
    for symbol, exchange in args["subscribe"]:
        main_engine.subscribe(SubscribeRequest(symbol=symbol, exchange=Exchange(exchange)), name)
    say("READY")

    if args["mode"] == "logs":
        sys.stdin.read()
        return 0

    if not done.wait(args["watchdog"]):
        with lock:
            got = {s: sum(1 for t in ticks if t.symbol == s) for s in wanted}
        print(f"watchdog: {args['watchdog']} s without {args['count']} ticks of each of {sorted(wanted)}: "
              f"{got}; logs: {logs}", file=sys.stderr)
        return 3

    symbol, exchange = args["subscribe"][0]
    order = OrderRequest(symbol=symbol, exchange=Exchange(exchange), direction=Direction.LONG,
                         type=OrderType.LIMIT, volume=1, price=1.0, offset=Offset.OPEN)
    order_result = main_engine.send_order(order, name)
    main_engine.cancel_order(CancelRequest(orderid="1", symbol=symbol, exchange=Exchange(exchange)), name)
    gateway.query_account()
    deadline = time.monotonic() + args["watchdog"]
    while not any("no account to query" in m for m in list(logs)) and time.monotonic() < deadline:
        time.sleep(0.01)
    main_engine.close()
    with lock, open(args["out"], "wb") as f:
        pickle.dump({"ticks": ticks, "logs": logs, "contracts": contracts, "order_result": order_result}, f)
    return 0


main_engine = MainEngine(EventEngine())
code = 4
try:
    code = main(main_engine)
except BaseException:
    traceback.print_exc()
finally:
    try:
        main_engine.close()  # stops the event engine's threads and the gateway (again: harmless)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # never hang on a thread left running
'''


def start_driver(tmp, procs, args):
    run, env = vnpy_env(tmp)
    script = os.path.join(str(tmp), "vnpy_driver.py")
    with open(script, "w") as f:
        f.write(DRIVER)
    p = subprocess.Popen([sys.executable, script, json.dumps(args)], cwd=run, env=env, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    procs.append(p)
    return p


class Lines:
    """Lines of a child's stdout, read with a watchdog (select, no thread)."""

    def __init__(self, proc):
        self.proc = proc
        self.seen = []
        self._buf = ""

    def wait(self, what, predicate):
        deadline = time.monotonic() + WATCHDOG
        fd = self.proc.stdout.fileno()
        while True:
            for line in self.seen:
                if predicate(line):
                    return line
            if time.monotonic() > deadline:
                raise AssertionError(f"watchdog: {WATCHDOG:.0f} s passed waiting for {what}; lines so far:\n"
                                     + "\n".join(self.seen[-40:]))
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                chunk = os.read(fd, 65536).decode(errors="replace")
                if not chunk:
                    raise AssertionError(f"the vnpy script exited ({self.proc.wait()}) before {what}; stderr:\n"
                                         f"{self.proc.stderr.read()}\nlines:\n" + "\n".join(self.seen[-40:]))
                self._buf += chunk
                *lines, self._buf = self._buf.split("\n")
                self.seen.extend(lines)


# --------------------------------------------------------------------------------------------
# The test's own mapping, record → the TickData fields vnpy_ctp would produce (see the module doc).
# --------------------------------------------------------------------------------------------

def price(x):
    """vnpy_ctp adjust_price: an absent price (DBL_MAX in CTP, NaN in the segment) is 0."""
    return 0.0 if math.isnan(x) else x


def vnpy_datetime(record):
    """vnpy_ctp: f"{ActionDay} {UpdateTime}.{UpdateMillisec}" parsed as China time (with the
    milliseconds zero-padded to three digits, so 5 ms is 5 ms)."""
    ms = record.update_time_ms
    text = f"{record.action_day} {ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"
    return datetime.strptime(text, "%Y%m%d %H:%M:%S.%f").replace(tzinfo=SHANGHAI)


def expected_fields(record, entry, previous):
    """Every TickData field expected for `record` (`previous`: the record of the same instrument
    delivered just before, or None)."""
    if previous is None:
        last_volume = 0
    elif previous.trading_day != record.trading_day:
        last_volume = record.volume
    else:
        last_volume = max(record.volume - previous.volume, 0)
    utc = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=record.receive_ns // 1000)
    fields = {
        "gateway_name": GATEWAY,
        "symbol": entry.instrument_id,
        "exchange": entry.exchange_id,  # compared with the Exchange member's value, and its type checked
        "datetime": vnpy_datetime(record),
        "name": entry.instrument_id,
        "volume": record.volume,
        "turnover": price(record.turnover),
        "open_interest": price(record.open_interest),
        "last_price": price(record.last_price),
        "last_volume": last_volume,
        "limit_up": price(record.upper_limit_price),
        "limit_down": price(record.lower_limit_price),
        "open_price": price(record.open_price),
        "high_price": price(record.highest_price),
        "low_price": price(record.lowest_price),
        "pre_close": price(record.pre_close_price),
        "localtime": utc.astimezone().replace(tzinfo=None),
    }
    for level in range(5):
        fields[f"bid_price_{level + 1}"] = price(record.bid_price[level])
        fields[f"ask_price_{level + 1}"] = price(record.ask_price[level])
        fields[f"bid_volume_{level + 1}"] = record.bid_volume[level]
        fields[f"ask_volume_{level + 1}"] = record.ask_volume[level]
    extra = {
        "sequence": record.sequence, "trading_day": record.trading_day, "quality": record.quality,
        "source": {1: "primary", 2: "backup", 3: "sim", 4: "replay", 5: "udp"}[record.source],
        "exchange_time_ns": record.exchange_time_ns, "receive_ns": record.receive_ns,
        "publish_ns": record.publish_ns, "pre_settlement_price": record.pre_settlement_price,
        "settlement_price": record.settlement_price, "close_price": record.close_price,
        "average_price": record.average_price, "pre_open_interest": record.pre_open_interest,
    }
    return fields, extra


def same(a, b):
    """Equal, NaN equal to NaN, and a float never equal to a different type's look-alike by accident."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def read_records(segment, first, last):
    """Every record first..=last of the segment, read with the stdlib reader (the core has stopped
    producing or been killed; the ring holds them by construction: max_ticks ≤ ring_slots)."""
    records = {}
    with qilin_shm.Reader(segment) as r:
        r.seek(first)
        while True:
            ev = r.try_next()
            assert ev is not qilin_shm.Empty, f"sequence {r.next_sequence} is not in the segment"
            assert not isinstance(ev, qilin_shm.Gap), f"the ring lost {ev} (it should hold every tick)"
            if isinstance(ev, qilin_shm.NewEpoch):
                continue
            records[ev.sequence] = ev
            if ev.sequence == last:
                return records, {e.index: e for e in r.instruments()}


# --------------------------------------------------------------------------------------------

def test_vnpy_script_receives_the_segment_ticks_field_for_field(tmp_path, segment, cores, procs):
    from vnpy.trader.constant import Exchange  # noqa: the test process needs only vnpy's data classes
    from vnpy.trader.object import ContractData, TickData

    ring = 131072
    count = 40
    out = str(tmp_path / "ticks.pickle")
    # The script connects first: the segment does not exist yet (the gateway says so and retries),
    # then the core creates it.
    driver = start_driver(tmp_path, procs, {
        "mode": "collect", "count": count, "watchdog": WATCHDOG, "out": out, "subscribe": SUBSCRIBED,
        "setting": {"segment": segment, "retry_interval_s": 0.02, "idle_sleep_ms": 0.2}})
    Lines(driver).wait("the vnpy script subscribed", lambda line: line == "READY")
    core = Core(tmp_path, segment, core_config(tmp_path, ring, rate=1000, max_ticks=ring))
    cores.append(core)
    core.start()
    try:
        _stdout, stderr = driver.communicate(timeout=WATCHDOG + 30)  # reading both pipes, so neither fills
    except subprocess.TimeoutExpired:
        raise AssertionError("the vnpy script did not finish") from None
    assert driver.returncode == 0, f"the vnpy script failed ({driver.returncode}):\n{stderr}"
    core.stop()  # the ring is frozen from here on

    with open(out, "rb") as f:
        got = pickle.load(f)
    ticks, logs = got["ticks"], got["logs"]

    # Orders refused, clearly; the missing segment reported with the reader's own error.
    assert got["order_result"] == "", "send_order must return no vt_orderid"
    assert any("order refused" in m and "market-data feed" in m for m in logs), logs
    assert any("cancel refused" in m for m in logs), logs
    assert any("no account to query" in m for m in logs), logs
    missing = [m for m in logs if m.startswith("cannot open the qilin segment")]
    assert missing, f"no log of the missing segment: {logs}"
    assert segment in missing[0] and "No such file or directory" in missing[0], missing[0]
    assert any(m.startswith(f"qilin segment {segment} open") for m in logs), logs

    # Only subscribed instruments, as vnpy TickData.
    assert ticks and all(isinstance(t, TickData) for t in ticks)
    assert {(t.symbol, t.exchange.value) for t in ticks} == set(SUBSCRIBED), "ticks of unsubscribed instruments"

    sequences = [t.extra["sequence"] for t in ticks]
    records, directory = read_records(segment, min(sequences), max(sequences))
    by_id = {e.instrument_id: e for e in directory.values()}
    others = [r for r in records.values() if r.instrument_id not in {s for s, _ in SUBSCRIBED}]
    assert others, "precondition: other instruments ticked while the script listened"

    # Each instrument: exactly its records from the first delivered one on, in order, once each.
    for symbol, _exchange in SUBSCRIBED:
        delivered = [t.extra["sequence"] for t in ticks if t.symbol == symbol]
        index = by_id[symbol].index
        in_segment = [s for s in sorted(records) if s >= delivered[0] and s <= delivered[-1]
                      and records[s].instrument_index == index]
        assert delivered == in_segment, f"{symbol}: delivered {delivered[:20]}..., segment has {in_segment[:20]}..."
        assert len(delivered) >= count
        snapshots = [t.extra["snapshot"] for t in ticks if t.symbol == symbol]
        assert not any(snapshots[1:]), f"{symbol}: only the first tick may be the snapshot on subscribing"

    # Field for field.
    tick_fields = [f.name for f in TickData.__dataclass_fields__.values() if f.name != "extra"]
    previous = {}
    nan_zeroed = derived_days = regressions = 0
    for tick in ticks:
        record = records[tick.extra["sequence"]]
        entry = directory[record.instrument_index]
        assert EXCHANGE_CODES[record.exchange] == entry.exchange_id
        before = previous.get(tick.symbol)
        want, want_extra = expected_fields(record, entry, before)
        previous[tick.symbol] = record
        regressions += before is not None and record.volume < before.volume
        assert set(want) == set(tick_fields), f"TickData fields changed: {set(want) ^ set(tick_fields)}"
        for name in tick_fields:
            value = getattr(tick, name)
            if name == "exchange":
                assert isinstance(value, Exchange) and value.value == want[name], (record.sequence, value)
                continue
            assert same(value, want[name]), (
                f"sequence {record.sequence} {tick.symbol}: {name} is {value!r}, the record gives {want[name]!r}")
        assert tick.vt_symbol == f"{entry.instrument_id}.{entry.exchange_id}"
        assert tick.datetime.tzinfo == SHANGHAI and tick.localtime.tzinfo is None
        # The feed's own exchange time is the same instant (UTC ns).
        assert tick.datetime == datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(
            microseconds=record.exchange_time_ns // 1000), record.sequence
        for name, value in want_extra.items():
            assert same(tick.extra[name], value), f"sequence {record.sequence}: extra[{name}] {tick.extra[name]!r} != {value!r}"
        nan_zeroed += any(math.isnan(p) for p in record.bid_price + record.ask_price)

        derived_days += bool(record.quality & DERIVED_ACTION_DAY) and record.action_day != record.trading_day
    # Preconditions of the comparison (the sim injects an absent level 5 on 20 % of ticks and a
    # volume regression on 10 %, so over 120+ ticks each is all but certain; every DCE tick of
    # the night session carries a derived calendar day).
    assert nan_zeroed, "no delivered tick had an absent (NaN) book price: the NaN → 0 rule was not exercised"
    assert derived_days, "no DCE night tick with a derived calendar day was delivered"
    assert regressions, "no delivered tick had a lower volume than its predecessor: last_volume's clamp was not exercised"

    # Contracts from the directory.
    contracts = {c.vt_symbol: c for c in got["contracts"]}
    assert all(isinstance(c, ContractData) for c in contracts.values())
    for e in directory.values():
        c = contracts[f"{e.instrument_id}.{e.exchange_id}"]
        assert (c.symbol, c.size, c.pricetick, c.name) == (e.instrument_id, e.volume_multiple, e.price_tick,
                                                           e.instrument_id)
        assert c.product.name == "FUTURES"


def test_gaps_dead_restarted_stopped_and_replaced_feeds_are_logged(tmp_path, segment, cores, procs):
    ring = 1024
    config = core_config(tmp_path, ring, rate=5000, max_ticks=0)
    core = Core(tmp_path, segment, config)
    cores.append(core)
    core.start()
    driver = start_driver(tmp_path, procs, {
        "mode": "logs", "count": 0, "watchdog": WATCHDOG, "out": "", "subscribe": SUBSCRIBED[:1],
        "setting": {"segment": segment, "retry_interval_s": 0.02, "stale_after_ms": 300}})
    lines = Lines(driver)
    lines.wait("the segment open", lambda line: line.startswith(f"LOG qilin segment {segment} open"))
    lines.wait("a tick", lambda line: line.startswith("TICK au2606.SHFE"))

    # Lapped: the script's process stopped while the core writes more than two rings.
    with qilin_shm.Reader(segment) as r:
        driver.send_signal(signal.SIGSTOP)
        stopped_at = r.write_cursor()
        wait_for("the core to lap the stopped gateway", lambda: r.write_cursor() > stopped_at + 2 * ring)
        driver.send_signal(signal.SIGCONT)
    def gap_range(line):
        return tuple(map(int, line.split()[3].split(".."))) if line.startswith("LOG gap: sequences") else None

    # (A loaded machine may lap the gateway before the stop too: the gap of the stop is the one
    # that ends past where the core was when the gateway stopped.)
    gap = lines.wait("the gap logged", lambda line: gap_range(line) and gap_range(line)[1] > stopped_at)
    assert "overwritten before this gateway read them" in gap
    first, last = gap_range(gap)
    assert first <= stopped_at + 1 + ring and last >= stopped_at + ring, gap
    count = len([line for line in lines.seen if line.startswith("TICK")])
    lines.wait("ticks after the gap", lambda line: len([x for x in lines.seen if x.startswith("TICK")]) > count + 2)

    # A dead core: stale. A new core on the same segment: a new epoch, live again, ticks again.
    core.stop()
    lines.wait("the dead core reported stale", lambda line: line.startswith("LOG the feed is stale"))
    core = Core(tmp_path, segment, config)
    cores.append(core)
    core.start()
    lines.wait("the restart logged", lambda line: line.startswith("LOG the feed restarted (epoch"))
    lines.wait("live again", lambda line: line == "LOG the feed is live again")
    count = len([line for line in lines.seen if line.startswith("TICK")])
    lines.wait("ticks after the restart", lambda line: len([x for x in lines.seen if x.startswith("TICK")]) > count + 2)

    # A clean stop.
    core.signal(signal.SIGTERM)
    lines.wait("the clean stop logged", lambda line: line.startswith("LOG the feed stopped cleanly"))
    core.stop()

    # The segment removed, and a core with another ring creates a new one at the same path.
    for p in (segment, segment + ".lock"):
        os.unlink(p)
    lines.wait("the removal logged", lambda line: line.startswith(f"LOG the segment file {segment} was removed"))
    core = Core(tmp_path, segment, core_config(tmp_path, 2 * ring, rate=5000, max_ticks=0))
    cores.append(core)
    core.start()
    lines.wait("the new file reopened", lambda line: line.startswith(f"LOG the segment file {segment} was replaced"))
    lines.wait("the new segment open", lambda line: line.startswith(f"LOG qilin segment {segment} open")
               and f"{2 * ring} ring slots" in line)
    count = len([line for line in lines.seen if line.startswith("TICK")])
    lines.wait("ticks from the new segment",
               lambda line: len([x for x in lines.seen if x.startswith("TICK")]) > count + 2)
    driver.stdin.close()
    assert driver.wait(timeout=WATCHDOG) == 0, driver.stderr.read()
    assert not [line for line in lines.seen if line.startswith("LOG reader thread error")], lines.seen


def test_example_script_prints_ticks(tmp_path, segment, cores, procs):
    ring = 65536
    core = Core(tmp_path, segment, core_config(tmp_path, ring, rate=1000, max_ticks=ring))
    cores.append(core)
    core.start()
    run, env = vnpy_env(tmp_path)
    p = subprocess.Popen(
        [sys.executable, os.path.join(PYTHON_DIR, "examples", "vnpy_script.py"), "--segment", segment,
         "--count", "10", "m2605.DCE", "SR605.CZCE"],
        cwd=run, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    procs.append(p)
    try:
        out, err = p.communicate(timeout=WATCHDOG)
    except subprocess.TimeoutExpired:
        raise AssertionError("the example did not print 10 ticks") from None
    assert p.returncode == 0, err
    # vnpy's console log shares stdout (from other threads): find the tick lines' heads anywhere.
    ticks = re.findall(r"tick (\S+) 2026-03-02T\d\d:\d\d:\d\d", out)
    assert len(ticks) == 10, out
    assert set(ticks) <= {"m2605.DCE", "SR605.CZCE"}, out


def test_contracts_say_what_the_instrument_id_says():
    """ContractData from directory entries (no segment needed): the product class and option
    details come from the id forms of config/instruments.toml; size and tick from the entry."""
    from vnpy.event import EventEngine
    from vnpy.trader.constant import Exchange, OptionType, Product
    from qilin_shm.vnpy_gateway import QilinGateway

    gateway = QilinGateway(EventEngine(), GATEWAY)  # the event engine is never started: no thread
    cases = [
        # id, exchange, multiplier, tick → product, option type, strike, underlying
        ("rb2605", "SHFE", 10, 1.0, Product.FUTURES, None, None, None),
        ("SR605", "CZCE", 10, 1.0, Product.FUTURES, None, None, None),
        ("cu2606C80000", "SHFE", 5, 2.0, Product.OPTION, OptionType.CALL, 80000.0, "cu2606.SHFE"),
        ("SR605P6000", "CZCE", 10, 0.5, Product.OPTION, OptionType.PUT, 6000.0, "SR605.CZCE"),
        ("m2605-C-3000", "DCE", 10, 0.5, Product.OPTION, OptionType.CALL, 3000.0, "m2605.DCE"),
        ("IO2612-P-4000", "CFFEX", 100, 0.2, Product.OPTION, OptionType.PUT, 4000.0, "IF2612.CFFEX"),
        ("MO2606-C-6200", "CFFEX", 100, 0.2, Product.OPTION, OptionType.CALL, 6200.0, "IM2606.CFFEX"),
    ]
    for symbol, exchange, size, tick, product, option_type, strike, underlying in cases:
        entry = qilin_shm.Instrument(0, symbol, exchange, 0, size, tick)
        c = gateway._contract(entry, Exchange(exchange))
        got = (c.symbol, c.exchange.value, c.name, c.size, c.pricetick, c.product, c.option_type,
               c.option_strike, c.option_underlying, c.option_listed, c.option_expiry)
        assert got == (symbol, exchange, symbol, size, tick, product, option_type, strike, underlying,
                       None, None), symbol


def test_import_qilin_shm_does_not_import_vnpy():
    code = ("import sys, qilin_shm; loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'vnpy'); "
            "print(loaded); sys.exit(1 if loaded else 0)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=dict(os.environ, PYTHONPATH=PYTHON_DIR),
                         capture_output=True, text=True, timeout=WATCHDOG)
    assert out.returncode == 0, f"import qilin_shm loaded vnpy modules: {out.stdout} {out.stderr}"
