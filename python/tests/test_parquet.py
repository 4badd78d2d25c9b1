"""`qilinctl export --parquet` (docs/PARQUET.md) read back by pyarrow, pandas and polars, against
`qilinctl export --csv` of the same journal; and the one-minute bars example.

The journals are made with the binaries: a CSV in the feed's own format (a `quality` column, so
every cell is taken as written) is imported with `qilinctl import --csv` (two trading days, three
instruments, absent prices, unknown publish times and sources, a volume regression). The binaries
come from $QILIN_BIN_DIR (scripts/test sets it to <target>/debug).
"""

import calendar
import csv
import datetime as dt
import json
import math
import os
import subprocess
import sys

import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(HERE, "..", "examples", "bars_from_parquet.py")
TZ = "Asia/Shanghai"
DAYS = [20250512, 20250513]
INSTRUMENTS = [("rb2605", "SHFE", 3100.0), ("m2609", "DCE", 2900.0), ("IF2606", "CFFEX", 3850.2)]
TICKS_PER_DAY = 1500
PRICES = ["LastPrice", "PreSettlementPrice", "PreClosePrice", "PreOpenInterest", "OpenPrice", "HighestPrice",
          "LowestPrice", "Turnover", "OpenInterest", "ClosePrice", "SettlementPrice", "UpperLimitPrice",
          "LowerLimitPrice", "PreDelta", "CurrDelta", "BidPrice1", "AskPrice1", "BidPrice2", "AskPrice2",
          "BidPrice3", "AskPrice3", "BidPrice4", "AskPrice4", "BidPrice5", "AskPrice5", "AveragePrice",
          "BandingUpperPrice", "BandingLowerPrice"]
INTS = ["Volume", "BidVolume1", "AskVolume1", "BidVolume2", "AskVolume2", "BidVolume3", "AskVolume3",
        "BidVolume4", "AskVolume4", "BidVolume5", "AskVolume5", "UpdateMillisec", "sequence", "instrument_index"]
TIMES = ["exchange_time_ns", "receive_ns", "publish_ns"]


def qilinctl():
    path = os.environ.get("QILIN_BIN_DIR")
    if not path:
        pytest.fail("QILIN_BIN_DIR is not set: point it at the directory holding qilinctl "
                    "(scripts/test sets it to <target>/debug)")
    exe = os.path.join(path, "qilinctl")
    if not os.access(exe, os.X_OK):
        pytest.fail(f"QILIN_BIN_DIR={path} has no executable qilinctl (build it: cargo build -p qilin-tools)")
    return exe


def run(*args, ok=True):
    p = subprocess.run([qilinctl(), *args], capture_output=True, text=True, env={**os.environ, "QILIN_AUDIT_LOG": ""})
    if ok:
        assert p.returncode == 0, f"qilinctl {args}: {p.returncode}\n{p.stderr}"
    return p


def utc_ns(day, ms_of_day):
    """China-local (UTC+8) day + milliseconds since midnight → UTC nanoseconds."""
    y, m, d = day // 10000, day // 100 % 100, day % 100
    secs = calendar.timegm((y, m, d, 0, 0, 0)) + ms_of_day // 1000 - 8 * 3600
    return secs * 1_000_000_000 + (ms_of_day % 1000) * 1_000_000


def make_rows():
    """Rows of the feed's CSV format (only some columns: import fills the rest)."""
    rows, seq = [], 0
    for day in DAYS:
        volume = {i: 0 for i, _, _ in INSTRUMENTS}
        last = {i: p for i, _, p in INSTRUMENTS}
        for n in range(TICKS_PER_DAY):
            k = n % len(INSTRUMENTS)
            iid, exch, _ = INSTRUMENTS[k]
            seq += 1
            ms = 9 * 3_600_000 + (n // 3) * 500 + (n % 3) * 7          # 09:00:00 onwards, 750 ms apart
            if n >= 900:
                ms += 180_000                                          # then three minutes without a tick
            volume[iid] += (n * 7) % 11
            regression = n == 700
            if regression:
                volume[iid] -= 25                                      # a correction: volume goes down
            last[iid] += ((n * 13) % 5 - 2) * 0.2
            absent = n % 17 == 0
            quality = []
            if absent:
                quality.append("absent_price")
            if regression:
                quality.append("volume_regression")
            if n % 23 == 0:
                quality.append("stale_snapshot")
            ex_ns = utc_ns(day, ms)
            rows.append({
                "TradingDay": day, "InstrumentID": iid, "ExchangeID": exch,
                "LastPrice": "" if absent else repr(round(last[iid], 1)),
                "PreSettlementPrice": repr(INSTRUMENTS[k][2]), "Volume": volume[iid],
                "Turnover": repr(volume[iid] * last[iid] * 10.0), "OpenInterest": repr(float(100000 + n)),
                "UpperLimitPrice": "4200.5", "LowerLimitPrice": "", "PreDelta": "-0",
                "UpdateTime": f"{ms // 3_600_000:02}:{ms // 60_000 % 60:02}:{ms // 1000 % 60:02}",
                "UpdateMillisec": ms % 1000,
                "BidPrice1": repr(round(last[iid] - 0.2, 1)), "BidVolume1": n % 9 + 1,
                "AskPrice1": "" if n % 5 == 0 else repr(round(last[iid] + 0.2, 1)), "AskVolume1": n % 4,
                "AveragePrice": repr(last[iid] - 0.05), "ActionDay": day,
                "sequence": seq, "instrument_index": k,
                "exchange_time_ns": ex_ns, "receive_ns": ex_ns + 1_500_000 + n,
                "publish_ns": 0 if n % 4 == 0 else ex_ns + 1_500_900 + n,
                "source": "" if n % 6 == 0 else ["primary", "backup", "sim"][n % 3],
                "quality": "|".join(quality),
            })
    return rows


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("parquet")
    rows = make_rows()
    src = d / "in.csv"
    with open(src, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    journals = d / "journal"
    run("import", "--csv", str(src), "--journal-dir", str(journals), "--feed", "pt",
        "--audit-log", str(d / "audit.jsonl"))
    out = d / "out"
    out.mkdir()
    p = run("export", "--parquet", "--journal-dir", str(journals), "--feed", "pt", "-o", str(out))
    assert f"exported {len(rows)} ticks from 2 journal file(s)" in p.stderr, p.stderr
    run("export", "--csv", "--journal-dir", str(journals), "--feed", "pt", "-o", str(d / "all.csv"))
    with open(d / "all.csv", newline="") as f:
        csv_rows = list(csv.DictReader(f))
    files = [out / f"pt-{day}.parquet" for day in DAYS]
    assert sorted(os.listdir(out)) == [f.name for f in files], "one file per trading day, nothing else"
    return {"dir": d, "journals": journals, "files": files, "csv": csv_rows}


def csv_day(row, day):
    return [r for r in row if int(r["TradingDay"]) == day]


def quality_bits(path):
    meta = pq.read_metadata(path).metadata
    return {e["name"]: e["bit"] for e in json.loads(meta[b"qilin.quality_bits"])}


def expect_cell(name, cell, bits):
    """The Python value a CSV cell of column `name` must read back as from the Parquet file."""
    if name in PRICES:
        return None if cell == "" else float(cell)
    if name in INTS:
        return int(cell)
    if name in ("TradingDay", "ActionDay"):
        return dt.date(int(cell[:4]), int(cell[4:6]), int(cell[6:]))
    if name == "UpdateTime":
        h, m, s = map(int, cell.split(":"))
        return dt.time(h, m, s)
    if name in TIMES:
        return None if int(cell) == 0 else int(cell)
    if name == "quality":
        return sum(bits[n] for n in cell.split("|")) if cell else 0
    return None if cell == "" else cell                                  # ids, ExchangeID, source


def test_pyarrow_types_and_every_value_equal_to_the_csv_export(exported):
    for day, path in zip(DAYS, exported["files"]):
        table = pq.read_table(path)
        s = table.schema
        assert s.names == list(exported["csv"][0].keys()), "the CSV's columns, in its order"
        for name in PRICES:
            assert s.field(name).type == pa.float64(), name
        for name in TIMES:
            assert s.field(name).type == pa.timestamp("ns", tz=TZ), name
        assert s.field("TradingDay").type == pa.date32() and s.field("ActionDay").type == pa.date32()
        assert s.field("UpdateTime").type == pa.time32("ms")
        assert s.field("Volume").type == pa.int64() and s.field("BidVolume1").type == pa.int32()
        assert s.field("quality").type == pa.uint32() and s.field("sequence").type == pa.uint64()
        for name in ("InstrumentID", "ExchangeID", "source"):
            assert pa.types.is_dictionary(s.field(name).type) and s.field(name).type.value_type == pa.string(), name

        # Timestamps as integers, so the comparison is exact to the nanosecond.
        cols = {n: (pc.cast(table[n], pa.int64()) if n in TIMES else table[n]) for n in table.column_names}
        got = pa.table(cols).sort_by("sequence").to_pylist()
        want = csv_day(exported["csv"], day)
        assert len(got) == len(want) == TICKS_PER_DAY
        bits = quality_bits(path)
        nulls = 0
        for g, w in zip(got, want):
            for name, cell in w.items():
                e = expect_cell(name, cell, bits)
                if name in PRICES and e is not None:
                    assert math.copysign(1, g[name]) == math.copysign(1, e), (name, w["sequence"])  # -0 stays -0
                assert g[name] == e, (name, w["sequence"], g[name], cell)
                nulls += e is None
        assert nulls > 0


def test_absent_prices_are_null_and_times_tz_aware_in_pandas(exported):
    path = exported["files"][0]
    df = pd.read_parquet(path).sort_values("sequence").reset_index(drop=True)
    want = csv_day(exported["csv"], DAYS[0])
    assert str(df["exchange_time_ns"].dtype) == f"datetime64[ns, {TZ}]"
    assert str(df["publish_ns"].dtype) == f"datetime64[ns, {TZ}]"
    assert df["LastPrice"].dtype == "float64" and df["Volume"].dtype == "int64"
    assert isinstance(df["InstrumentID"].dtype, pd.CategoricalDtype)
    assert df["TradingDay"].iloc[0] == dt.date(2025, 5, 12)
    # Nulls exactly where the CSV cell is empty.
    for name in ("LastPrice", "AskPrice1", "LowerLimitPrice", "ClosePrice"):
        assert list(df[name].isna()) == [r[name] == "" for r in want], name
    assert list(df["publish_ns"].isna()) == [r["publish_ns"] == "0" for r in want]
    # The exchange time, in China time, is ActionDay + UpdateTime + UpdateMillisec of the CSV.
    for (_, g), w in zip(df.iterrows(), want):
        t = g["exchange_time_ns"]
        assert t.strftime("%Y%m%d %H:%M:%S") == f"{w['ActionDay']} {w['UpdateTime']}"
        assert t.microsecond // 1000 == int(w["UpdateMillisec"])
        assert t.utcoffset() == dt.timedelta(hours=8)
        assert g["InstrumentID"] == w["InstrumentID"] and g["Volume"] == int(w["Volume"])


def test_polars_reads_the_same_values(exported):
    path = exported["files"][1]
    df = pl.read_parquet(path).sort("sequence")
    want = csv_day(exported["csv"], DAYS[1])
    assert df.schema["exchange_time_ns"] == pl.Datetime("ns", TZ)
    assert df.schema["TradingDay"] == pl.Date and df.schema["LastPrice"] == pl.Float64
    assert df.schema["Volume"] == pl.Int64 and df.schema["quality"] == pl.UInt32
    assert df.height == len(want)
    assert df["InstrumentID"].cast(pl.String).to_list() == [r["InstrumentID"] for r in want]
    assert df["LastPrice"].to_list() == [None if r["LastPrice"] == "" else float(r["LastPrice"]) for r in want]
    assert df["exchange_time_ns"].dt.epoch("ns").to_list() == [int(r["exchange_time_ns"]) for r in want]
    assert df["ExchangeID"].cast(pl.String).to_list() == [r["ExchangeID"] for r in want]
    assert df["source"].cast(pl.String).to_list() == [r["source"] or None for r in want]
    # A time filter, as a reader uses the row-group statistics for it.
    lo = dt.datetime(2025, 5, 13, 9, 5, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    since = pl.lit(lo).cast(pl.Datetime("ns", TZ))
    n = pl.scan_parquet(path).filter(pl.col("exchange_time_ns") >= since).select(pl.len()).collect().item()
    assert n == sum(1 for r in want if int(r["exchange_time_ns"]) >= int(lo.timestamp()) * 1_000_000_000)


def test_refusals_exit_2_and_name_the_problem(exported):
    d = exported["dir"]
    p = run("export", "--parquet", "--journal-dir", str(d / "nowhere"), "--feed", "pt", "-o", str(d), ok=False)
    assert p.returncode == 2 and "no journal of feed" in p.stderr and str(d / "nowhere") in p.stderr, p.stderr
    target = d / "no-such-dir" / "x.parquet"
    p = run("export", "--parquet", "--journal-dir", str(exported["journals"]), "--feed", "pt", "--day", "20250512",
            "-o", str(target), ok=False)
    assert p.returncode == 2 and "creating" in p.stderr and str(target) in p.stderr, p.stderr
    one = d / "both.parquet"
    p = run("export", "--parquet", "--journal-dir", str(exported["journals"]), "--feed", "pt", "-o", str(one), ok=False)
    assert p.returncode == 2 and "2 journal files" in p.stderr and not one.exists(), p.stderr


def direct_bars(path):
    """The bars computed tick by tick, without pandas: {(id, bar start ns): (o, h, l, c, v, n)}."""
    t = pq.read_table(path, columns=["InstrumentID", "TradingDay", "LastPrice", "Volume", "exchange_time_ns",
                                     "sequence"])
    t = t.set_column(4, "exchange_time_ns", pc.cast(t["exchange_time_ns"], pa.int64()))
    rows = sorted(t.to_pylist(), key=lambda r: (r["InstrumentID"], r["sequence"]))
    bars, prev = {}, {}
    for r in rows:
        key = (r["InstrumentID"], r["TradingDay"])
        before = prev.get(key)
        traded = r["Volume"] if before is None else max(0, r["Volume"] - before)
        prev[key] = r["Volume"]
        start = r["exchange_time_ns"] // 60_000_000_000 * 60_000_000_000      # UTC+8: whole minutes agree
        o, h, lo, c, v, n = bars.get((r["InstrumentID"], start), (None, None, None, None, 0, 0))
        p = r["LastPrice"]
        if p is not None:
            o = p if o is None else o
            h = p if h is None else max(h, p)
            lo = p if lo is None else min(lo, p)
            c = p
        bars[(r["InstrumentID"], start)] = (o, h, lo, c, v + traded, n + 1)
    return bars


def test_bars_example_matches_a_direct_computation(exported):
    path = exported["files"][0]
    out = exported["dir"] / "bars.csv"
    p = subprocess.run([sys.executable, EXAMPLE, str(path), "--out", str(out)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    bars = pd.read_csv(out)
    want = direct_bars(path)
    assert len(bars) == len(want) and len(want) >= 3 * 5
    for _, b in bars.iterrows():
        start = pd.Timestamp(b["bar_start"])
        assert start.utcoffset() == dt.timedelta(hours=8), b["bar_start"]
        o, h, lo, c, v, n = want[(b["InstrumentID"], start.value)]
        got = [None if pd.isna(x) else x for x in (b["open"], b["high"], b["low"], b["close"])]
        assert got == [o, h, lo, c], (b.to_dict(), (o, h, lo, c))
        assert (b["volume"], b["ticks"]) == (v, n), b.to_dict()
    # The regression tick (volume down by 25) counts 0, never negative; the day's volume adds up.
    assert bars["volume"].min() >= 0
    minutes = sorted({k[1] for k in want})
    assert max(b - a for a, b in zip(minutes, minutes[1:])) == 3 * 60_000_000_000, "the two empty minutes have no bar"
    rb = bars[bars["InstrumentID"] == "rb2605"]
    want_rb = [r for r in csv_day(exported["csv"], DAYS[0]) if r["InstrumentID"] == "rb2605"]
    vols = [int(r["Volume"]) for r in want_rb]
    assert rb["volume"].sum() == vols[0] + sum(max(0, b - a) for a, b in zip(vols, vols[1:]))

    # --instrument: only that instrument's bars, the same values.
    p = subprocess.run([sys.executable, EXAMPLE, str(path), "--instrument", "m2609", "--out", str(out)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    only = pd.read_csv(out)
    assert set(only["InstrumentID"]) == {"m2609"}
    assert only.reset_index(drop=True).equals(bars[bars["InstrumentID"] == "m2609"].reset_index(drop=True))
