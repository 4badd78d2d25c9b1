#!/usr/bin/env python3
"""One-minute OHLCV bars per instrument, in pandas, from a `qilinctl export --parquet` file.

    qilinctl export --parquet --journal-dir /var/lib/qilin/journal --feed qilin --day 20250512 -o day.parquet
    python3 python/examples/bars_from_parquet.py day.parquet                    # every instrument, printed
    python3 python/examples/bars_from_parquet.py day.parquet --instrument rb2605 --out bars.csv

Needs pandas and pyarrow (`pip install pandas pyarrow`). The file's format is docs/PARQUET.md.

How the bars are made:

- Time: `exchange_time_ns`, the exchange's time of the tick, a tz-aware `Asia/Shanghai` timestamp;
  a bar is [HH:MM:00, HH:MM+1:00) China time, labelled by its start. Minutes without a tick have no
  bar (no forward fill). The night session's bars carry their calendar time (the evening before
  the trading day); the trading day is a column.
- Prices: `LastPrice`. An absent price (null in the file) is left out of open/high/low/close; a
  minute whose ticks all lack a price has NaN prices (its volume still counts).
- Volume: CTP's `Volume` is cumulative over the trading day, so a tick's traded volume is the
  difference from the instrument's previous tick of the same trading day; the first tick of a
  day counts its whole cumulative volume (what traded before it, the opening auction included).
  A decrease (the feed flags it `volume_regression`, quality bit 1: a correction or a bad tick)
  is not negative volume: it counts 0, and later differences are taken from the lower value.
- Rows in the file are grouped by instrument within row groups; the script sorts by
  (InstrumentID, sequence) itself, so it does not depend on that.
"""

import argparse
import sys

import pandas as pd

COLUMNS = ["TradingDay", "InstrumentID", "LastPrice", "Volume", "exchange_time_ns", "sequence"]


def load_ticks(path, instruments=None):
    """The columns the bars need, as a DataFrame sorted by (InstrumentID, sequence)."""
    filters = [("InstrumentID", "in", list(instruments))] if instruments else None
    df = pd.read_parquet(path, columns=COLUMNS, filters=filters)
    df["InstrumentID"] = df["InstrumentID"].astype(str)
    return df.sort_values(["InstrumentID", "sequence"], kind="stable").reset_index(drop=True)


def traded_volume(df):
    """Per-tick traded volume from CTP's cumulative Volume (see the module doc)."""
    first = df["InstrumentID"].ne(df["InstrumentID"].shift()) | df["TradingDay"].ne(df["TradingDay"].shift())
    delta = df["Volume"].diff()
    delta[first] = df["Volume"][first]
    return delta.clip(lower=0).astype("int64")


def minute_bars(df):
    """One-minute OHLCV bars: one row per (InstrumentID, minute with ticks)."""
    df = df.assign(traded=traded_volume(df))
    df = df[df["exchange_time_ns"].notna()]
    grouped = df.set_index("exchange_time_ns").groupby("InstrumentID", sort=True)
    bars = grouped.resample("1min", label="left", closed="left").agg(
        TradingDay=("TradingDay", "last"),
        open=("LastPrice", "first"),
        high=("LastPrice", "max"),
        low=("LastPrice", "min"),
        close=("LastPrice", "last"),
        volume=("traded", "sum"),
        ticks=("sequence", "count"),
    )
    bars = bars[bars["ticks"] > 0].reset_index().rename(columns={"exchange_time_ns": "bar_start"})
    return bars[["InstrumentID", "TradingDay", "bar_start", "open", "high", "low", "close", "volume", "ticks"]]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parquet", help="a file written by qilinctl export --parquet")
    parser.add_argument("--instrument", action="append", help="only this instrument (repeatable)")
    parser.add_argument("--out", help="write the bars as CSV to this file instead of printing them")
    args = parser.parse_args()
    bars = minute_bars(load_ticks(args.parquet, args.instrument))
    if args.out:
        bars.to_csv(args.out, index=False)
        print(f"{len(bars)} bars of {bars['InstrumentID'].nunique()} instrument(s) written to {args.out}",
              file=sys.stderr)
    else:
        with pd.option_context("display.max_rows", None, "display.width", 200):
            print(bars.to_string(index=False))


if __name__ == "__main__":
    main()
