"""Prints a bar segment the way shm-layout/tests/common/bars.rs `rust_lines` does (every bar from the
oldest, then the last bar of every instrument and period; every field, doubles as their bits), or the
error a reader gives. Run by shm-layout/tests/python_bars.rs:

    python3 bars_dump.py bars  PATH    the stdlib BarReader
    python  bars_dump.py numpy PATH    qilin_shm.batch.read_bars (numpy), last bars from the stdlib reader
    python3 bars_dump.py tick  PATH    qilin_shm.Reader on PATH: prints its error (it must refuse)
"""

import struct
import sys

import qilin_shm
from qilin_shm.bars import BAR_PERIODS, BarReader


def bits(x):
    return f"{struct.unpack('<Q', struct.pack('<d', x))[0]:016x}"


def line(what, b):
    return (f"{what} {b.sequence} {b.start_ns} {b.end_ns} {b.instrument_index} {b.trading_day} {b.flags} "
            f"{b.ticks} {b.exchange} {b.period} {b.instrument_id} {bits(b.open)} {bits(b.high)} {bits(b.low)} "
            f"{bits(b.close)} {b.volume} {bits(b.turnover)} {bits(b.open_interest)} "
            f"{bits(b.open_interest_change)} {b.first_sequence} {b.last_sequence}")


def last_bars(reader):
    for index in range(reader.directory_len()):
        for code in BAR_PERIODS:
            bar = reader.latest(index, code)
            if bar is not None:
                print(line("last", bar))


def main(mode, path):
    if mode == "tick":
        try:
            qilin_shm.Reader(path)
        except qilin_shm.SegmentError as e:
            print(e)
            return 0
        return 3
    try:
        reader = BarReader(path)
    except qilin_shm.SegmentError as e:
        print(e)
        return 0
    reader.seek_oldest()
    if mode == "numpy":
        from qilin_shm import batch
        from qilin_shm.bars import Bar

        bars = batch.read_bars(reader, 1 << 20)
        assert not reader.events, reader.events
        for row in bars:
            values = {name: row[name] for name in batch.BAR_DTYPE.names}
            values["instrument_id"] = values["instrument_id"].decode("ascii")
            values = {k: (v.item() if hasattr(v, "item") and k != "reserved1" else v) for k, v in values.items()}
            print(line("bar", Bar(**values)))
    else:
        while True:
            event = reader.try_next()
            if not event:
                break
            assert event.__class__.__name__ == "Bar", event
            print(line("bar", event))
    last_bars(reader)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
