#!/usr/bin/env python3
"""Subscribes to instruments through vnpy and prints their ticks as vnpy's event engine delivers them.

    python python/examples/vnpy_script.py rb2605.SHFE m2605.DCE            # /dev/shm/qilin, until Ctrl-C
    python python/examples/vnpy_script.py --segment /dev/shm/other --count 20 SR605.CZCE

A headless vnpy script: vnpy's MainEngine and EventEngine, the qilin gateway
(qilin_shm.vnpy_gateway.QilinGateway) added like any other gateway, ticks handled on EVENT_TICK.
Strategies (CtaStrategy and friends) get the same TickData through their apps. The gateway's
log lines (connection, subscriptions, gaps, feed restarts) go through vnpy's log engine, which
prints them to the console and writes them to .vntrader/log. Needs vnpy
(pip install vnpy); vnpy's MainEngine works in (and changes to) the directory holding its
.vntrader folder: the current one if it has one, else your home.
"""

import argparse
import os
import signal
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from vnpy.event import Event, EventEngine  # noqa: E402
from vnpy.trader.constant import Exchange  # noqa: E402
from vnpy.trader.engine import MainEngine  # noqa: E402
from vnpy.trader.event import EVENT_TICK  # noqa: E402
from vnpy.trader.object import SubscribeRequest, TickData  # noqa: E402

from qilin_shm.vnpy_gateway import QilinGateway  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("vt_symbols", nargs="+", help="instruments as vnpy names them: SYMBOL.EXCHANGE (rb2605.SHFE)")
    parser.add_argument("--segment", default="/dev/shm/qilin", help="segment file (default /dev/shm/qilin)")
    parser.add_argument("--count", type=int, default=0, help="stop after this many ticks (0: run until Ctrl-C)")
    args = parser.parse_args()

    requests = []
    for vt_symbol in args.vt_symbols:
        symbol, _, exchange = vt_symbol.rpartition(".")
        try:
            requests.append(SubscribeRequest(symbol=symbol, exchange=Exchange(exchange)))
        except ValueError:
            parser.error(f"{vt_symbol}: expected SYMBOL.EXCHANGE with a vnpy exchange (SHFE, INE, DCE, CZCE, CFFEX, GFEX)")

    main_engine = MainEngine(EventEngine())
    gateway = main_engine.add_gateway(QilinGateway)
    printed = 0
    done = threading.Event()

    def on_tick(event: Event) -> None:
        nonlocal printed
        tick: TickData = event.data
        if done.is_set():
            return
        print(f"tick {tick.vt_symbol} {tick.datetime.isoformat()} last {tick.last_price} vol {tick.volume} "
              f"bid {tick.bid_price_1} x {tick.bid_volume_1} ask {tick.ask_price_1} x {tick.ask_volume_1}",
              flush=True)
        printed += 1
        if args.count and printed >= args.count:
            done.set()

    main_engine.event_engine.register(EVENT_TICK, on_tick)
    main_engine.connect({"segment": args.segment}, gateway.gateway_name)
    for req in requests:
        main_engine.subscribe(req, gateway.gateway_name)

    signal.signal(signal.SIGINT, lambda *_: done.set())
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    while not done.wait(0.5):
        pass
    main_engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
