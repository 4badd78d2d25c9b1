"""A market-data-only vnpy gateway on the qilin-feed segment.

    from vnpy.event import EventEngine
    from vnpy.trader.engine import MainEngine
    from vnpy.trader.constant import Exchange
    from vnpy.trader.object import SubscribeRequest
    from qilin_shm.vnpy_gateway import QilinGateway

    main_engine = MainEngine(EventEngine())
    main_engine.add_gateway(QilinGateway)                    # gateway name "QILIN"
    main_engine.connect({"segment": "/dev/shm/qilin"}, "QILIN")
    main_engine.subscribe(SubscribeRequest("rb2605", Exchange.SHFE), "QILIN")
    # ... TickData arrive as EVENT_TICK / EVENT_TICK + "rb2605.SHFE" on the event engine

This module is the only part of ``qilin_shm`` that imports vnpy (``import qilin_shm`` never does).
It imports only ``vnpy.event`` and ``vnpy.trader.{gateway,object,constant,event}``, none of which
touch Qt or the ``~/.vntrader`` directory. The gateway reads the segment with the stdlib
``qilin_shm.Reader`` on one thread of its own and hands every tick of a subscribed instrument to
vnpy's event engine through ``BaseGateway.on_tick``.

It is a feed, not a broker: ``send_order`` / ``send_quote`` refuse (a log line and ``""``, as vnpy
gateways do for a request they cannot send), ``cancel_order`` / ``cancel_quote`` /
``query_account`` / ``query_position`` only log, ``query_history`` returns ``[]``.

Mapping of a segment ``TickRecord`` to vnpy ``TickData`` (vnpy 4.5 ``vnpy/trader/object.py``),
following vnpy's CTP gateway (vnpy_ctp ``CtpMdApi.onRtnDepthMarketData``) field for field:

==================  =================================================================================
TickData            from the segment
==================  =================================================================================
symbol              the directory entry's InstrumentID (what the SubscribeRequest named)
exchange            ``Exchange(<directory entry's ExchangeID>)``: SHFE, INE, DCE, CZCE, CFFEX, GFEX
                    (vnpy_ctp ``EXCHANGE_CTP2VT``; the segment's exchange names are CTP's)
datetime            ``action_day`` + ``update_time_ms`` as China time, ``tzinfo=ZoneInfo("Asia/Shanghai")``
                    (vnpy_ctp: ActionDay + UpdateTime + UpdateMillisec, ``CHINA_TZ``). Where
                    vnpy_ctp takes the *local* date for DCE (whose ActionDay is the trading day),
                    the segment already carries the calendar day (the core derives it for DCE
                    night ticks, quality bit ``derived_action_day``), so a night tick replayed or
                    received just after midnight gets its own date, not the host's. The
                    milliseconds are exact (vnpy_ctp's ``"%f"`` parse of ``str(UpdateMillisec)``
                    reads DCE's arbitrary 5 ms as 500 ms).
name                the InstrumentID: the segment carries no InstrumentName
volume              ``volume`` (cumulative, an int)
turnover            ``turnover``
open_interest       ``open_interest``
last_price          ``last_price``
last_volume         not sent by CTP (vnpy_ctp leaves 0); derived here: the rise of cumulative
                    ``volume`` since the previous tick of the instrument this gateway delivered,
                    the whole ``volume`` if the trading day changed, 0 for the first tick after
                    subscribing and when the volume went down
limit_up/_down      ``upper_limit_price`` / ``lower_limit_price`` (CTP UpperLimitPrice/LowerLimitPrice)
open/high/low       ``open_price`` / ``highest_price`` / ``lowest_price``
pre_close           ``pre_close_price``
bid/ask_price_1..5  ``bid_price[0..4]`` / ``ask_price[0..4]``
bid/ask_volume_1..5 ``bid_volume[0..4]`` / ``ask_volume[0..4]``
localtime           ``receive_ns`` (when the feed received the tick) as a naive local datetime, the
                    form ``datetime.now()`` has, exact to the microsecond
extra               a dict of what vnpy has no field for, values as in the segment (NaN = absent):
                    ``sequence``, ``trading_day`` (YYYYMMDD int), ``quality`` (bits, see
                    ``qilin_shm.QUALITY``), ``source``, ``exchange_time_ns``, ``receive_ns``,
                    ``publish_ns``, ``pre_settlement_price``, ``settlement_price``, ``close_price``,
                    ``average_price``, ``pre_open_interest``, ``snapshot`` (True for the tick sent
                    on subscribing, see below)
==================  =================================================================================

Absent prices: the segment stores NaN where CTP sent DBL_MAX; vnpy's convention is 0 (vnpy_ctp's
``adjust_price`` turns DBL_MAX into 0, and ``TickData`` defaults every price to 0), so every NaN
float becomes 0.0 here: prices, the limits (which vnpy_ctp passes through unadjusted; NaN would
poison comparisons in a strategy), turnover and open interest. Empty book levels are therefore
price 0, volume 0 -- what vnpy_ctp produces for them (it fills levels 2..5 only when level 2 has a
volume; its other levels are DBL_MAX → 0 or default 0 alike).

On subscribing, CTP pushes the instrument's current snapshot; so does this gateway (setting
``snapshot_on_subscribe``): the segment's last value of the instrument, if it is older than the
reader's position, followed by every newer tick from the ring, none twice (the segment's
late-joiner protocol). An instrument not yet in the segment's directory is remembered and
delivered from the moment the feed adds it (``qilinctl subscribe ID``).

Contracts: on connecting and whenever the directory grows, one ``ContractData`` per directory
entry is published (``on_contract``; vnpy's CtaEngine needs one before it subscribes): symbol,
exchange, ``size`` = VolumeMultiple, ``pricetick`` = PriceTick, ``name`` = the InstrumentID.
The segment does not know the product class, the instrument's name, its listing and expiry dates
or option details beyond what the id says: ``product`` is OPTION when the id has an option form
("cu2606C80000", "SR605C6000", "m2605-C-3000", "IO2612-C-4000"; then ``option_type``,
``option_strike``, ``option_index``, ``option_portfolio`` and ``option_underlying`` come from the
id), SPREAD for combination ids, FUTURES otherwise; ``option_listed`` / ``option_expiry`` stay None.

Gaps (the gateway's reader fell a whole ring behind), a feed restart (new epoch) and liveness
changes (no heartbeat: core dead or stalled; stopped cleanly; live again) are logged with
``write_log``; reading goes on. A segment that cannot be opened is logged with the reader's exact
error and retried every ``retry_interval_s``; a segment file replaced by a new one at the same
path (removed and created again, e.g. with other capacities) is reopened, subscriptions kept.
"""

from __future__ import annotations

import collections
import os
import re
import threading
import time
import traceback
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from vnpy.event import EventEngine
from vnpy.trader.constant import Exchange, OptionType, Product
from vnpy.trader.gateway import BaseGateway
from vnpy.trader.object import (
    BarData,
    CancelRequest,
    ContractData,
    HistoryRequest,
    OrderRequest,
    QuoteRequest,
    SubscribeRequest,
    TickData,
)

import qilin_shm

__all__ = ["QilinGateway", "EXCHANGE_QILIN2VT", "CHINA_TZ", "MARKET_DATA_ONLY"]

CHINA_TZ = ZoneInfo("Asia/Shanghai")

# The segment's exchange names (directory entry ExchangeID, CTP's spelling) → vnpy (vnpy_ctp EXCHANGE_CTP2VT).
EXCHANGE_QILIN2VT: dict[str, Exchange] = {
    "SHFE": Exchange.SHFE,
    "INE": Exchange.INE,
    "DCE": Exchange.DCE,
    "CZCE": Exchange.CZCE,
    "CFFEX": Exchange.CFFEX,
    "GFEX": Exchange.GFEX,
}

MARKET_DATA_ONLY = "qilin is a market-data feed: it cannot send or cancel orders or quotes"

_UTC_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

# Option and spread id forms (config/instruments.toml `id_form`): compact "cu2606C80000",
# "SR605C6000"; dash "m2605-C-3000", "IO2612-C-4000".
_FUTURE_ID = re.compile(r"^[A-Za-z]{1,3}\d{3,4}$")
_OPTION_ID = re.compile(r"^([A-Za-z]{1,3})(\d{3,4})(?:-([CP])-|([CP]))(\d+(?:\.\d+)?)$")
# CFFEX index options and their futures.
_OPTION_UNDERLYING_CODE = {"IO": "IF", "HO": "IH", "MO": "IM"}


def _yes(value) -> bool:
    """A setting that is a bool, or the text the vnpy connect dialog returns for a list setting."""
    if isinstance(value, list):  # the default itself: its first choice
        value = value[0] if value else ""
    if isinstance(value, str):
        return value.strip().lower() in ("yes", "true", "1", "on", "y")
    return bool(value)


def _absent_to_zero(value: float) -> float:
    """vnpy's convention for an absent price (vnpy_ctp `adjust_price`: DBL_MAX → 0): NaN → 0."""
    return 0.0 if value != value else value


def _china_datetime(action_day: int, update_time_ms: int, exchange_time_ns: int) -> datetime:
    """ActionDay + UpdateTime + UpdateMillisec as China time (vnpy_ctp's tick datetime). Falls back
    on the record's exchange time if the day or time fields do not form a date."""
    try:
        return datetime(
            action_day // 10000, action_day // 100 % 100, action_day % 100,
            update_time_ms // 3_600_000, update_time_ms // 60_000 % 60, update_time_ms // 1000 % 60,
            update_time_ms % 1000 * 1000, tzinfo=CHINA_TZ)
    except ValueError:
        return (_UTC_EPOCH + timedelta(microseconds=exchange_time_ns // 1000)).astimezone(CHINA_TZ)


def _file_id(path: str):
    """(device, inode) of the file at path, None if there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _local_naive(ns: int) -> datetime | None:
    """UTC nanoseconds as a naive local datetime (the form datetime.now() has), to the microsecond."""
    if ns <= 0:
        return None
    return datetime.fromtimestamp(ns // 1_000_000_000).replace(microsecond=ns // 1000 % 1_000_000)


class _Subscription:
    __slots__ = ("symbol", "exchange", "index", "last_sequence", "last_trading_day", "last_volume")

    def __init__(self, symbol: str, exchange: Exchange, index: int):
        self.symbol = symbol
        self.exchange = exchange
        self.index = index
        self.last_sequence = 0        # ticks at or below it were delivered (or precede the subscription)
        self.last_trading_day = None  # of the previous delivered tick: last_volume's baseline
        self.last_volume = 0


class QilinGateway(BaseGateway):
    """vnpy gateway reading ticks from a qilin-feed shared-memory segment (market data only)."""

    default_name: str = "QILIN"

    # Values' types drive vnpy's connect dialog: a list is a choice (its first item the default).
    default_setting: dict[str, str | int | float | bool | list] = {
        "segment": "/dev/shm/qilin",
        "idle_sleep_ms": 0.2,            # sleep when nothing new is in the ring; 0 = spin (a whole core)
        "snapshot_on_subscribe": ["yes", "no"],
        "publish_contracts": ["yes", "no"],
        "retry_interval_s": 1.0,         # reopening a segment that could not be opened
        "stale_after_ms": 2000,          # heartbeat age past which the feed is reported stale
    }

    exchanges: list[Exchange] = list(EXCHANGE_QILIN2VT.values())

    def __init__(self, event_engine: EventEngine, gateway_name: str = "") -> None:
        super().__init__(event_engine, gateway_name or self.default_name)
        self._requests: collections.deque = collections.deque()  # SubscribeRequests, any thread → reader thread
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reader: qilin_shm.Reader | None = None
        self._subs: dict[int, _Subscription] = {}        # directory index → subscription (reader thread only)
        self._wanted: dict[str, Exchange] = {}           # symbol → exchange asked for, resolved or not
        self._pending: dict[str, Exchange] = {}          # asked for, not in the directory yet
        self._entries: dict[str, qilin_shm.Instrument] = {}
        self._directory_seen = 0
        self._contract_logged: set[str] = set()
        self._liveness = None
        self._last_open_error = None
        self._file = None       # (device, inode) of the mapped segment file
        self._file_seen = None  # of the file at the segment path when last looked
        self.connected = False
        self.segment_path = ""

    # -- vnpy interface -------------------------------------------------------------------------
    def connect(self, setting: dict) -> None:
        """Opens the segment (retrying in the background if it cannot) and starts the reader thread."""
        if self._thread is not None:
            self.write_log("already connected; close() first to connect again")
            return
        merged = {k: (v[0] if isinstance(v, list) else v) for k, v in self.default_setting.items()}
        merged.update(setting or {})
        self.segment_path = str(merged["segment"])
        self._idle_sleep = max(float(merged["idle_sleep_ms"]), 0.0) / 1000.0
        self._snapshot_on_subscribe = _yes(merged["snapshot_on_subscribe"])
        self._publish_contracts = _yes(merged["publish_contracts"])
        self._retry_interval = max(float(merged["retry_interval_s"]), 0.01)
        self._stale_after_ns = int(float(merged["stale_after_ms"]) * 1_000_000)
        self._stop.clear()
        self._open()  # the first attempt here, so a bad path is reported at once
        self._thread = threading.Thread(target=self._run, name=f"{self.gateway_name}-reader", daemon=True)
        self._thread.start()

    def subscribe(self, req: SubscribeRequest) -> None:
        """Delivers the ticks of req.symbol on req.exchange from now on (and its current snapshot)."""
        self._requests.append(req)

    def send_order(self, req: OrderRequest) -> str:
        direction = req.direction.value if req.direction else ""
        self.write_log(f"order refused ({req.vt_symbol} {direction} {req.volume} @ {req.price}): "
                       f"{MARKET_DATA_ONLY}; send it through a trading gateway")
        return ""

    def cancel_order(self, req: CancelRequest) -> None:
        self.write_log(f"cancel refused ({req.orderid} on {req.vt_symbol}): {MARKET_DATA_ONLY}")

    def send_quote(self, req: QuoteRequest) -> str:
        self.write_log(f"quote refused ({req.vt_symbol}): {MARKET_DATA_ONLY}")
        return ""

    def cancel_quote(self, req: CancelRequest) -> None:
        self.write_log(f"quote cancel refused ({req.orderid} on {req.vt_symbol}): {MARKET_DATA_ONLY}")

    def query_account(self) -> None:
        self.write_log("no account to query: qilin is a market-data feed")

    def query_position(self) -> None:
        self.write_log("no positions to query: qilin is a market-data feed")

    def query_history(self, req: HistoryRequest) -> list[BarData]:
        self.write_log("no bar history from the segment (use the journal: qilinctl export)")
        return []

    def close(self) -> None:
        """Stops the reader thread and unmaps the segment."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self._close_reader()

    # -- reader thread --------------------------------------------------------------------------
    def _open(self) -> bool:
        try:
            reader = qilin_shm.Reader(self.segment_path)
        except qilin_shm.SegmentError as e:
            message = str(e)
            if message != self._last_open_error:
                self._last_open_error = message
                self.write_log(f"cannot open the qilin segment: {message}; retrying every "
                               f"{self._retry_interval:g} s")
            return False
        self._last_open_error = None
        self._reader = reader
        self._file = self._file_seen = _file_id(self.segment_path)
        self._directory_seen = 0
        self._entries = {}
        # Ticks from now on (as a CTP front after SubscribeMarketData); snapshots on subscribing.
        reader.seek_newest()
        # Subscriptions made earlier (or before a reopen) are resolved again on this segment.
        self._pending.update(self._wanted)
        self._subs = {}
        self.connected = True
        live = reader.liveness(stale_after_ns=self._stale_after_ns)
        self._liveness = live.state
        self.write_log(
            f"qilin segment {self.segment_path} open: feed {reader.feed_name!r}, {reader.ring_slots} ring slots, "
            f"{reader.directory_len()} instruments, epoch {reader.epoch}, writer pid {reader.writer_pid()}, "
            f"feed {live.state}; reading from sequence {reader.next_sequence}")
        self._refresh_directory()
        return True

    def _close_reader(self) -> None:
        reader, self._reader = self._reader, None
        self.connected = False
        if reader is not None:
            reader.close()

    def _run(self) -> None:
        check_every = 4096
        since_check = check_every
        last_check = 0.0
        while not self._stop.is_set():
            reader = self._reader
            try:
                if reader is None:
                    if not self._open():
                        self._stop.wait(self._retry_interval)
                    continue
                if self._requests:
                    self._take_requests()
                event = reader.try_next()
                if event is qilin_shm.Empty:
                    now = time.monotonic()
                    if now - last_check > 0.2:
                        last_check = now
                        since_check = 0
                        self._housekeeping()
                    if self._idle_sleep:
                        self._stop.wait(self._idle_sleep)
                    continue
                since_check += 1
                if since_check >= check_every:  # a ring that is never empty: still look around
                    since_check = 0
                    self._housekeeping()
                if event.__class__ is qilin_shm.Tick:
                    sub = self._subs.get(event.instrument_index)
                    if sub is not None and event.sequence > sub.last_sequence:
                        self._deliver(sub, event, False)
                elif event.__class__ is qilin_shm.Gap:
                    self.write_log(
                        f"gap: sequences {event.first}..{event.last} ({event.last - event.first + 1} ticks) "
                        f"were overwritten before this gateway read them (it fell a whole ring of "
                        f"{reader.ring_slots} behind); ticks of subscribed instruments among them are lost")
                elif event.__class__ is qilin_shm.NewEpoch:
                    self.write_log(f"the feed restarted (epoch {event.previous} -> {event.current}); "
                                   f"sequences continue, reading goes on")
            except Exception:  # a bug or a vanished mapping: say it, reopen, go on
                self.write_log(f"reader thread error, reopening the segment in {self._retry_interval:g} s:\n"
                               f"{traceback.format_exc()}")
                self._close_reader()
                self._stop.wait(self._retry_interval)

    def _housekeeping(self) -> None:
        reader = self._reader
        file = _file_id(self.segment_path)
        if file != self._file_seen:
            self._file_seen = file
            if file is None:
                self.write_log(f"the segment file {self.segment_path} was removed; reading the old mapping "
                               f"until a new segment appears there")
            elif file != self._file:
                self.write_log(f"the segment file {self.segment_path} was replaced by a new one; reopening "
                               f"(subscriptions are kept)")
                self._close_reader()
                return
        if reader.directory_len() != self._directory_seen:
            self._refresh_directory()
        state = reader.liveness(stale_after_ns=self._stale_after_ns)
        if state.state != self._liveness:
            self._liveness = state.state
            if state.state == "stale":
                self.write_log(f"the feed is stale: no heartbeat for {state.age_ns / 1e9:.1f} s "
                               f"(qilin-core dead or stalled, writer pid {reader.writer_pid()})")
            elif state.state == "stopped":
                self.write_log("the feed stopped cleanly (qilin-core shut down); waiting for it to restart")
            else:
                self.write_log("the feed is live again")

    def _refresh_directory(self) -> None:
        reader = self._reader
        n = reader.directory_len()
        for index in range(self._directory_seen, n):
            entry = reader.instrument(index)
            self._entries[entry.instrument_id] = entry
            exchange = EXCHANGE_QILIN2VT.get(entry.exchange_id)
            if exchange is None:
                self.write_log(f"instrument {entry.instrument_id}: exchange {entry.exchange_id!r} has no vnpy "
                               f"Exchange here; not published")
                continue
            if self._publish_contracts:
                self.on_contract(self._contract(entry, exchange))
        if n != self._directory_seen:
            self._directory_seen = n
            for symbol in [s for s in self._pending if s in self._entries]:
                self._resolve(symbol, self._pending.pop(symbol))

    def _take_requests(self) -> None:
        while self._requests:
            req = self._requests.popleft()
            previous = self._wanted.get(req.symbol)
            if previous is not None and previous != req.exchange:
                self.write_log(f"{req.vt_symbol}: already subscribed on {previous.value}; ignored")
                continue
            if previous is not None:
                continue  # subscribing twice changes nothing
            self._wanted[req.symbol] = req.exchange
            if self._reader is None:
                self._pending[req.symbol] = req.exchange
                continue
            if req.symbol in self._entries:
                self._resolve(req.symbol, req.exchange)
            else:
                self._pending[req.symbol] = req.exchange
                self.write_log(f"{req.vt_symbol} is not in the segment's directory (yet): it is delivered "
                               f"once the feed adds it (qilinctl subscribe {req.symbol})")

    def _resolve(self, symbol: str, exchange: Exchange) -> None:
        entry = self._entries[symbol]
        if EXCHANGE_QILIN2VT.get(entry.exchange_id) != exchange:
            self._wanted.pop(symbol, None)
            self.write_log(f"{symbol}.{exchange.value} not subscribed: the segment has {symbol} on "
                           f"{entry.exchange_id}")
            return
        reader = self._reader
        sub = _Subscription(symbol, exchange, entry.index)
        sub.last_sequence = reader.next_sequence - 1  # ring ticks from here on
        snapshot = None
        if self._snapshot_on_subscribe:
            for _ in range(64):
                try:
                    snapshot = reader.latest(entry.index)
                    break
                except qilin_shm.Contended:
                    time.sleep(0)
        self._subs[entry.index] = sub
        self.write_log(f"subscribed {symbol}.{exchange.value} (directory index {entry.index})")
        # The last value is the newest tick of the instrument: if the ring cursor has not reached it,
        # the ring delivers it; otherwise it is sent now, as CTP's snapshot on subscribing.
        if snapshot is not None and snapshot.sequence <= sub.last_sequence:
            self._deliver(sub, snapshot, True)

    def _deliver(self, sub: _Subscription, t: qilin_shm.Tick, snapshot: bool) -> None:
        if sub.last_trading_day is None:
            last_volume = 0
        elif t.trading_day != sub.last_trading_day:
            last_volume = t.volume
        else:
            last_volume = max(t.volume - sub.last_volume, 0)
        sub.last_sequence = t.sequence
        sub.last_trading_day = t.trading_day
        sub.last_volume = t.volume
        z = _absent_to_zero
        bp, ap, bv, av = t.bid_price, t.ask_price, t.bid_volume, t.ask_volume
        tick = TickData(
            gateway_name=self.gateway_name,
            symbol=sub.symbol,
            exchange=sub.exchange,
            datetime=_china_datetime(t.action_day, t.update_time_ms, t.exchange_time_ns),
            name=sub.symbol,
            volume=t.volume,
            turnover=z(t.turnover),
            open_interest=z(t.open_interest),
            last_price=z(t.last_price),
            last_volume=last_volume,
            limit_up=z(t.upper_limit_price),
            limit_down=z(t.lower_limit_price),
            open_price=z(t.open_price),
            high_price=z(t.highest_price),
            low_price=z(t.lowest_price),
            pre_close=z(t.pre_close_price),
            bid_price_1=z(bp[0]), bid_price_2=z(bp[1]), bid_price_3=z(bp[2]), bid_price_4=z(bp[3]),
            bid_price_5=z(bp[4]),
            ask_price_1=z(ap[0]), ask_price_2=z(ap[1]), ask_price_3=z(ap[2]), ask_price_4=z(ap[3]),
            ask_price_5=z(ap[4]),
            bid_volume_1=bv[0], bid_volume_2=bv[1], bid_volume_3=bv[2], bid_volume_4=bv[3], bid_volume_5=bv[4],
            ask_volume_1=av[0], ask_volume_2=av[1], ask_volume_3=av[2], ask_volume_4=av[3], ask_volume_5=av[4],
            localtime=_local_naive(t.receive_ns),
        )
        tick.extra = {
            "sequence": t.sequence,
            "trading_day": t.trading_day,
            "quality": t.quality,
            "source": qilin_shm.SOURCES.get(t.source, str(t.source)),
            "exchange_time_ns": t.exchange_time_ns,
            "receive_ns": t.receive_ns,
            "publish_ns": t.publish_ns,
            "pre_settlement_price": t.pre_settlement_price,
            "settlement_price": t.settlement_price,
            "close_price": t.close_price,
            "average_price": t.average_price,
            "pre_open_interest": t.pre_open_interest,
            "snapshot": snapshot,
        }
        self.on_tick(tick)

    def _contract(self, entry: qilin_shm.Instrument, exchange: Exchange) -> ContractData:
        symbol = entry.instrument_id
        contract = ContractData(
            gateway_name=self.gateway_name,
            symbol=symbol,
            exchange=exchange,
            name=symbol,
            product=Product.FUTURES,
            size=entry.volume_multiple,
            pricetick=_absent_to_zero(entry.price_tick),
        )
        option = _OPTION_ID.match(symbol)
        if option:
            code, month, dash_kind, compact_kind, strike = option.groups()
            kind = dash_kind or compact_kind
            contract.product = Product.OPTION
            contract.option_type = OptionType.CALL if kind == "C" else OptionType.PUT
            contract.option_strike = float(strike)
            contract.option_index = strike
            contract.option_portfolio = code
            underlying = _OPTION_UNDERLYING_CODE.get(code, code) + month
            contract.option_underlying = f"{underlying}.{exchange.value}"
        elif not _FUTURE_ID.match(symbol):
            if "&" in symbol or " " in symbol:
                contract.product = Product.SPREAD
            elif symbol not in self._contract_logged:
                self._contract_logged.add(symbol)
                self.write_log(f"instrument {symbol}: id form not recognised, published as FUTURES")
        return contract
