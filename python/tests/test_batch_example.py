"""python/examples/mid_price_strategy.py against a real qilin-core ($QILIN_BIN_DIR/qilin-core, its
default simulator): its signals and summary equal the same rule computed tick by tick from the
stdlib reader's view of the same segment; joining late, it starts from the snapshot's mids.

And the keep-up command's batch mode (``python -m qilin_shm keepup PATH SECONDS --batch``) on a
live core: it reports no sequence error and accounts for the ticks it read (no speed asserted)."""

import math
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

import qilin_shm as q

from conftest import PYTHON_DIR, REPO, qilin_bin

EXAMPLE = os.path.join(REPO, "python", "examples", "mid_price_strategy.py")
WATCHDOG = 120.0  # seconds: a hang fails the test, it is not a speed check


class Core:
    """A qilin-core on its own segment: SIGTERMed (then SIGKILLed) and its files removed at the end."""

    def __init__(self, tmp_path, *args):
        self.segment = f"/dev/shm/qilin-pytest-{uuid.uuid4().hex[:12]}"
        self.proc = subprocess.Popen(
            [qilin_bin("qilin-core"), "--segment", self.segment, "--control-socket", str(tmp_path / "c.sock"), *args],
            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "core.log", "wb"))
        self.log = tmp_path / "core.log"
        self.wait(lambda r: r.writer_pid() == self.proc.pid and r.run_state() == "running", "the core running")

    def wait(self, ready, what):
        deadline = time.monotonic() + WATCHDOG
        while True:
            assert self.proc.poll() is None or what.startswith("stop"), \
                f"qilin-core exited ({self.proc.returncode}): {self.log.read_text()[-2000:]}"
            try:
                with q.Reader(self.segment) as r:
                    if ready(r):
                        return
            except q.SegmentError:
                pass
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.01)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(WATCHDOG)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def close(self):
        self.stop()
        for path in (self.segment, self.segment + ".lock"):
            try:
                os.remove(path)
            except FileNotFoundError:
                pass


@pytest.fixture
def stopped_core(tmp_path):
    core = Core(tmp_path, "--sim-rate", "50000", "--sim-max-ticks", "6000")
    try:
        core.wait(lambda r: r.write_cursor() >= 6000, "6000 ticks published")
        core.stop()
        yield core
    finally:
        core.close()


def run_example(segment, *args):
    out = subprocess.run([sys.executable, EXAMPLE, segment, *args], capture_output=True, text=True,
                         timeout=WATCHDOG, env=dict(os.environ, PYTHONPATH=PYTHON_DIR), cwd="/")
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def expected_lines(segment, total, batch, threshold):
    """The example's rule, tick by tick, from the stdlib reader: batches of `batch` sequences from
    the oldest; at each batch's end, each instrument's last mid against its mid at the previous end."""
    r = q.Reader(segment)
    r.seek_oldest()
    ticks = []
    while len(ticks) < total:
        ev = r.try_next()
        assert isinstance(ev, q.Tick), f"a stopped core's ring of 65536 holds every tick: {ev}"
        ticks.append(ev)
    price_tick = {i.index: i.price_tick for i in r.instruments()}
    names = {i.index: i.instrument_id for i in r.instruments()}
    mid, count, lines = {}, {}, []
    for start in range(0, total, batch):
        last = {}
        for t in ticks[start:start + batch]:
            count[t.instrument_index] = count.get(t.instrument_index, 0) + 1
            m = (t.bid_price[0] + t.ask_price[0]) / 2
            if not math.isnan(m):
                last[t.instrument_index] = (t.sequence, m)
        for index in sorted(last):
            seq, after = last[index]
            before = mid.get(index, math.nan)
            moved = (after - before) / price_tick[index]
            if abs(moved) >= threshold:
                side = "buy" if moved > 0 else "sell"
                lines.append(f"signal {seq} {names[index]} {side} {before:.4f} {after:.4f}")
            mid[index] = after
    for index in sorted(mid):
        lines.append(f"{names[index]} ticks {count[index]} mid {mid[index]:.4f}")
    return lines


def test_mid_price_strategy_prints_the_signals_of_its_rule(stopped_core):
    lines = run_example(stopped_core.segment, "--oldest", "--count", "6000", "--batch", "500", "--threshold", "1")
    expected = expected_lines(stopped_core.segment, 6000, 500, 1)
    assert sum(1 for line in expected if line.startswith("signal ")) > 0, "the simulator's prices move"
    assert lines == expected


def test_mid_price_strategy_joins_late_from_the_snapshot(stopped_core):
    # Nothing new on a stopped core: the summary is the snapshot's mids, with no tick read.
    lines = run_example(stopped_core.segment, "--seconds", "0.2")
    with q.Reader(stopped_core.segment) as r:
        snap = r.snapshot()
    expected = []
    for t in snap.ticks:
        m = (t.bid_price[0] + t.ask_price[0]) / 2
        if not math.isnan(m):
            expected.append(f"{t.instrument_id} ticks 0 mid {m:.4f}")
    assert expected and lines == expected


def test_keepup_batch_mode_accounts_for_every_tick(tmp_path):
    core = Core(tmp_path, "--sim-rate", "20000")
    try:
        out = subprocess.run([sys.executable, "-m", "qilin_shm", "keepup", core.segment, "2", "--batch", "1024"],
                             capture_output=True, text=True, timeout=WATCHDOG,
                             env=dict(os.environ, PYTHONPATH=PYTHON_DIR), cwd="/")
    finally:
        core.close()
    assert "sequence error" not in out.stdout, out.stdout
    assert out.returncode in (0, 1), out.stdout + out.stderr  # 1: a gap on a starved machine, reported
    words = out.stdout.split()
    read = int(words[words.index("read") + 1])
    assert read > 0, out.stdout
