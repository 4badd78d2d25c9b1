"""python/examples/nats_consumer.py against real processes: a nats-server with JetStream (temporary
store, free port), a qilin-core on the simulator writing a known number of ticks, and a qilin-nats
publishing them; binaries from $QILIN_BIN_DIR (scripts/test sets it to <target>/debug).

    QILIN_BIN_DIR=target/debug .venv/bin/python -m pytest -q python/tests/test_nats_consumer.py

The consumer must read every sequence exactly once (none missing, none repeated, no gap event: the
ring holds them all) and its numpy decoding of the raw bodies must equal, field by field, what the
stdlib `qilin_shm.Reader` reads from the segment for the same sequences. Every process is killed
by its pid in the fixtures' teardown; the segment, its lock file and status directory are removed.
"""

import asyncio
import importlib.util
import itertools
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "python"))
import qilin_shm  # noqa: E402

_spec = importlib.util.spec_from_file_location(
    "nats_consumer", os.path.join(REPO, "python", "examples", "nats_consumer.py"))
consumer = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(consumer)

#: Hang guard for every wait, never a performance bound.
WATCHDOG = 120.0
TICKS = 20_000
_FEEDS = itertools.count()


def binary(name):
    bin_dir = os.environ.get("QILIN_BIN_DIR")
    assert bin_dir, "set QILIN_BIN_DIR to the cargo target's debug directory (scripts/test does)"
    path = os.path.join(bin_dir, name)
    assert os.access(path, os.X_OK), f"{path} is missing: cargo build --workspace --bins"
    return path


def wait_for(what, f, proc=None, log=None):
    deadline = time.monotonic() + WATCHDOG
    while True:
        value = f()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            text = open(log).read() if log else ""
            pytest.fail(f"{what}: the process exited ({proc.returncode}):\n{text}")
        assert time.monotonic() < deadline, f"timed out after {WATCHDOG} s waiting for {what}"
        time.sleep(0.01)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc, sig=signal.SIGKILL):
    """Signals the process by its pid and reaps it."""
    if proc.poll() is None:
        os.kill(proc.pid, sig)
    try:
        proc.wait(timeout=WATCHDOG)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def spawn(argv, log):
    with open(log, "ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


@pytest.fixture
def nats_server(tmp_path):
    port = free_port()
    conf = tmp_path / "nats-server.conf"
    conf.write_text(f'listen: 127.0.0.1:{port}\njetstream {{ store_dir: "{tmp_path / "jetstream"}" }}\n')
    server = shutil.which("nats-server") or "/usr/sbin/nats-server"
    log = tmp_path / "nats-server.log"
    proc = spawn([server, "-c", str(conf)], log)
    try:
        def listening():
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False
        wait_for("nats-server to listen", listening, proc, log)
        yield f"nats://127.0.0.1:{port}"
    finally:
        stop(proc)


class Core:
    def __init__(self, tmp_path, feed, ticks, rate):
        self.feed = feed
        self.segment = f"/dev/shm/{feed}"
        config = tmp_path / "core.toml"
        config.write_text(
            f'[feed]\nname = "{feed}"\nsegment_path = "{self.segment}"\nring_slots = 65536\n'
            f'[core]\nlock_memory = false\ncontrol_socket = "{tmp_path / "core.sock"}"\n'
            f'instruments_file = "{os.path.join(REPO, "config", "instruments.toml")}"\n'
            f"[source.sim]\nticks_per_second = {rate}\nmax_ticks = {ticks}\n")
        self.log = tmp_path / "core.log"
        self.proc = spawn([binary("qilin-core"), "--config", str(config)], self.log)

        def running():
            try:
                with qilin_shm.Reader(self.segment) as r:
                    return r.writer_pid() == self.proc.pid
            except qilin_shm.SegmentError:
                return False
        wait_for("the core's segment", running, self.proc, self.log)

    def close(self):
        stop(self.proc)
        for path in (self.segment, self.segment + ".lock"):
            if os.path.exists(path):
                os.unlink(path)
        shutil.rmtree(self.segment + ".sidecars", ignore_errors=True)


@pytest.fixture
def core(tmp_path):
    feed = f"qpy-nats-{os.getpid()}-{next(_FEEDS)}"  # at most 31 characters
    c = Core(tmp_path, feed, TICKS, 20_000)
    try:
        yield c
    finally:
        c.close()


class QilinNats:
    """A qilin-nats process; `close` stops it with SIGTERM and checks it exited cleanly."""

    def __init__(self, tmp_path, core, url, payload, mode):
        self.config = tmp_path / "nats.toml"
        self.config.write_text(
            f'name = "nats"\nsegment = "{core.segment}"\nstate_dir = "{tmp_path / "state"}"\n'
            f'status_interval_ms = 50\n[nats]\nurls = ["{url}"]\nmode = "{mode}"\npayload = "{payload}"\n')
        self.status_path = os.path.join(core.segment + ".sidecars", "nats.json")
        self.log = tmp_path / "qilin-nats.log"
        self.proc = spawn([binary("qilin-nats"), "--config", str(self.config)], self.log)

    def status(self):
        try:
            with open(self.status_path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def wait_publishing(self):
        wait_for("qilin-nats to publish", lambda: (self.status() or {}).get("state") == "publishing",
                 self.proc, self.log)

    def close(self):
        stop(self.proc, signal.SIGTERM)
        assert self.proc.returncode == 0, open(self.log).read()


@pytest.fixture
def start_qilin_nats(tmp_path, nats_server, core):
    """Starts qilin-nats processes (payload, mode); each is killed by its pid at teardown."""
    started = []

    def start(payload, mode):
        started.append(QilinNats(tmp_path, core, nats_server, payload, mode))
        return started[-1]
    try:
        yield start
    finally:
        for sidecar in started:
            stop(sidecar.proc)


def segment_ticks(segment, n):
    """Sequences 1..=n as the stdlib reader reads them from the segment."""
    out = []
    with qilin_shm.Reader(segment) as reader:
        reader.seek(1)
        while len(out) < n:
            event = reader.try_next()
            assert isinstance(event, qilin_shm.Tick), f"sequence {len(out) + 1}: {event!r} (the ring holds them all)"
            out.append(event)
    return out


def same(a, b):
    """Equal, NaN equal to NaN (absent prices)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def collect(url, feed, until, **kw):
    decoder = consumer.Decoder()

    async def run():
        got = []
        stop = lambda d: d.next is not None and d.next > until  # noqa: E731
        async for event in consumer.events(url, feed, decoder=decoder, stop=stop, **kw):
            got.append(event)
        return got
    return asyncio.run(asyncio.wait_for(run(), WATCHDOG)), decoder.stats


def qilinctl_fingerprint():
    out = subprocess.run([os.environ.get("QILINCTL") or binary("qilinctl"), "layout", "--json"],
                         check=True, capture_output=True).stdout
    return json.loads(out)["fingerprint"]


def test_jetstream_raw_every_sequence_once_decoded_as_the_segment_holds_it(nats_server, core, start_qilin_nats):
    sidecar = start_qilin_nats("raw", "jetstream")
    sidecar.wait_publishing()  # the stream exists
    events, stats = collect(nats_server, core.feed, TICKS)
    sidecar.close()
    ticks = [e for e in events if isinstance(e, consumer.Tick)]
    assert [e for e in events if not isinstance(e, consumer.Tick)] == [], "no gap event, nothing missing"
    assert [t.sequence for t in ticks] == list(range(1, TICKS + 1)), "every sequence once, in order"
    assert (stats.ticks, stats.duplicates, stats.missing, stats.gap_events) == (TICKS, 0, 0, 0)
    # The header is the package's fingerprint, and both are what `qilinctl layout --json` prints.
    assert stats.layouts == {consumer.FINGERPRINT_TEXT}
    assert consumer.FINGERPRINT_TEXT == qilinctl_fingerprint()
    assert all(t.source == "sim" and t.subject.startswith(f"qilin.{core.feed}.") for t in ticks)

    expected = segment_ticks(core.segment, TICKS)
    names = [n for n in qilin_shm.Tick._fields if not n.startswith("reserved")]  # the bytes check covers those
    for tick, want in zip(ticks, expected):
        record = tick.record
        for name in names:
            if name == "instrument_id":
                got = consumer.instrument_id(record)
            elif record[name].shape:  # the five levels
                got = tuple(x.item() for x in record[name])
            else:
                got = record[name].item()
            w = getattr(want, name)
            if isinstance(w, tuple):
                assert all(same(g, x) for g, x in zip(got, w)) and len(got) == len(w), (tick.sequence, name, got, w)
            else:
                assert same(got, w), (tick.sequence, name, got, w)
        exchange = qilin_shm.EXCHANGES[want.exchange]
        assert tick.subject == f"qilin.{core.feed}.{exchange}.{want.instrument_id}"
    # The whole records too: the bytes of the decoded array are the segment's.
    assert np.array([t.record for t in ticks], dtype=consumer.TICK_DTYPE).tobytes() == b"".join(
        qilin_shm._RECORD.pack(*_flat(w)) for w in expected)

    # A durable consumer resumes where its last run acked: two runs cover 1..=TICKS exactly once.
    first, stats1 = collect(nats_server, core.feed, TICKS // 2, durable="desk")
    k = first[-1].sequence
    assert [t.sequence for t in first] == list(range(1, k + 1)) and k >= TICKS // 2
    second, stats2 = collect(nats_server, core.feed, TICKS, durable="desk")
    assert [t.sequence for t in second] == list(range(k + 1, TICKS + 1)), "resumed after the acked batch"
    assert stats1.duplicates == stats2.duplicates == 0

    # The command line prints the same ticks.
    out = subprocess.run([sys.executable, consumer.__file__, "--url", nats_server, "--feed", core.feed, "--until", "3"],
                         capture_output=True, text=True, timeout=WATCHDOG)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    want = expected[0]
    assert lines[0].split()[:3] == ["1", qilin_shm.EXCHANGES[want.exchange], want.instrument_id], lines[0]
    assert [int(line.split()[0]) for line in lines[:3]] == [1, 2, 3]


def _flat(tick):
    values = []
    for name in qilin_shm.Tick._fields:
        v = getattr(tick, name)
        if name == "instrument_id":
            values.append(v.encode("ascii"))
        elif isinstance(v, tuple):
            values.extend(v)
        else:
            values.append(v)
    return values


def test_core_nats_json_bodies_are_the_segments_ticks(nats_server, core, start_qilin_nats):
    decoder = consumer.Decoder()

    async def run():
        ready = asyncio.Event()
        agen = consumer.events(nats_server, core.feed, core=True, decoder=decoder, ready=ready,
                               stop=lambda d: d.next is not None and d.next > TICKS)
        first = asyncio.ensure_future(agen.__anext__())
        # qilin-nats starts once the server has the subscription (the consumer made a round
        # trip), and publishes from the oldest tick of the ring: sequence 1.
        await asyncio.wait_for(ready.wait(), WATCHDOG)
        sidecar = start_qilin_nats("json", "core")
        got = [await first]
        async for event in agen:
            got.append(event)
        return got, sidecar
    events, sidecar = asyncio.run(asyncio.wait_for(run(), WATCHDOG))
    sidecar.close()
    ticks = [e for e in events if isinstance(e, consumer.Tick)]
    assert [t.sequence for t in ticks] == list(range(1, TICKS + 1)), "every sequence once, in order"
    assert decoder.stats.missing == 0 and decoder.stats.layouts == set()
    for tick, want in zip(ticks, segment_ticks(core.segment, TICKS)):
        j = tick.json
        assert j["sequence"] == want.sequence and j["InstrumentID"] == want.instrument_id
        assert j["ExchangeID"] == qilin_shm.EXCHANGES[want.exchange]
        assert j["Volume"] == want.volume and j["instrument_index"] == want.instrument_index
        assert j["exchange_time_ns"] == want.exchange_time_ns and j["publish_ns"] == want.publish_ns
        for key, value in (("LastPrice", want.last_price), ("BidPrice1", want.bid_price[0]),
                           ("AskPrice5", want.ask_price[4]), ("Turnover", want.turnover)):
            assert j[key] == (None if math.isnan(value) else value), (tick.sequence, key, j[key], value)
        assert j["AskVolume3"] == want.ask_volume[2]
        assert j["TradingDay"] == str(want.trading_day)


def test_a_raw_body_of_another_layout_is_refused():
    class Msg:
        subject = "qilin.x.SHFE.rb2605"
        data = bytes(consumer.RECORD_SIZE)
        headers = {"Qilin-Seq": "1", "Qilin-Epoch": "1", "Qilin-Layout": "0x0000000000000001"}
    with pytest.raises(consumer.LayoutMismatch, match="0x0000000000000001"):
        consumer.Decoder().decode([Msg()])
    Msg.headers = dict(Msg.headers, **{"Qilin-Layout": consumer.FINGERPRINT_TEXT})
    Msg.data = bytes(consumer.RECORD_SIZE - 1)
    with pytest.raises(consumer.LayoutMismatch, match="375-byte body"):
        consumer.Decoder().decode([Msg()])


def test_repeats_are_dropped_and_holes_reported_by_sequence():
    def msg(seq, gap=None):
        class M:
            subject = "qilin.x.SHFE.rb2605"
            data = json.dumps({"sequence": seq, "reason": "lapped", "detected_ns": 5}).encode()
            headers = {"Qilin-Seq": str(seq), "Qilin-Epoch": "1"}
        if gap:
            M.headers = dict(M.headers, **{"Qilin-Gap-First": str(gap[0]), "Qilin-Gap-Last": str(gap[1])})
        return M()
    d = consumer.Decoder()
    events = d.decode([msg(1), msg(2), msg(2), msg(1), msg(5), msg(8, gap=(6, 8)), msg(7), msg(9)])
    assert [type(e).__name__ for e in events] == ["Tick", "Tick", "Missing", "Tick", "Gap", "Tick"]
    assert (events[2].first, events[2].last) == (3, 4)
    assert (events[4].first, events[4].last, events[4].reason) == (6, 8, "lapped")
    assert (d.stats.ticks, d.stats.duplicates, d.stats.missing, d.stats.gap_sequences) == (4, 3, 2, 3)
