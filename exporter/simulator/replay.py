"""Replay: `ReplaySource` is an `EventSource` (see source.py) that re-publishes the recorded channel_data and
channel_batch_data contents of a capture (capture.py) through the simulator's Publisher at the recorded pace
times speed, so every subscriber gets fresh connection ids and its own message ids. Snapshots and REST
answers come from the recorded `subscribed` snapshots brought up to date with the updates replayed so far
(replay_state.py).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Generator, Mapping
from pathlib import Path
from typing import Any, Final

import orjson

from exporter import logs
from exporter.protocol import channels as ch
from exporter.simulator import formats
from exporter.simulator.capture import (
    DATA_PREFIXES,
    FrameRecord,
    Record,
    channel_of,
    read_header,
    read_records,
)
from exporter.simulator.levels import price_key
from exporter.simulator.replay_state import ReplayState, retimed
from exporter.simulator.source import Publisher, valid_market_subscription

log = logs.get_logger(__name__)


class _Scan:
    """What one pass over a capture tells before replaying it: the first snapshot of every subscription,
    the tickers it holds and its time span."""

    def __init__(self, path: str | Path) -> None:
        self.first: dict[tuple[str, str | None], Any] = {}
        self.tickers: list[str] = []
        self.first_t: float | None = None
        self.last_t = 0.0
        self.frames = 0
        seen: set[str] = set()
        for record in read_records(path):
            if not isinstance(record, FrameRecord):
                continue
            self.frames += 1
            if self.first_t is None:
                self.first_t = record.t
            self.last_t = max(self.last_t, record.t)
            if record.raw.startswith(DATA_PREFIXES):
                self._note_ticker(record.raw, seen)
                continue
            try:
                msg = orjson.loads(record.raw)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(msg, dict):
                continue
            channel, key = msg.get("channel"), msg.get("id")
            if not isinstance(channel, str):
                continue
            key = key if isinstance(key, str) else None
            self._add_ticker(channel, key, seen)
            if msg.get("type") == ch.T_SUBSCRIBED and (channel, key) not in self.first:
                self.first[(channel, key)] = msg.get("contents")

    def _note_ticker(self, raw: bytes, seen: set[str]) -> None:
        """The ticker of a data frame, cheaply: its `id` precedes `contents`."""
        start = raw.find(b'"id":"')
        if start < 0:
            return
        end = raw.find(b'"', start + 6)
        channel = channel_of(raw)
        if channel is not None and end > 0:
            self._add_ticker(channel, raw[start + 6 : end].decode(errors="replace"), seen)

    def _add_ticker(self, channel: str, key: str | None, seen: set[str]) -> None:
        if key is None or channel not in (ch.ORDERBOOK, ch.TRADES, ch.CANDLES):
            return
        ticker = key.rpartition("/")[0] if channel == ch.CANDLES else key
        if ticker and ticker not in seen:
            seen.add(ticker)
            self.tickers.append(ticker)


def _check_speed(speed: float) -> None:
    if speed < 0 or speed != speed:  # NaN too
        raise ValueError(f"replay speed must be >= 0 (0 = as fast as possible), not {speed}")


class ReplaySource:
    """An EventSource serving a capture. `speed` multiplies the recorded pace; 0 replays as fast as the
    server can publish (MAX_FRAMES_PER_TICK per tick). With `loop`, the capture starts over at its end (the
    state goes back to the first snapshots; heights and trade ids repeat). With `retime`, exchange
    timestamps are moved by (exchange clock now - the frame's receive time), so data looks as fresh (or as
    late, under a `lag` fault) as it was when recorded, instead of as old as the capture."""

    #: Seconds between two `advance` calls.
    tick_interval: float = 0.02
    #: Upper bound of recorded frames published per tick (speed 0, or a capture denser than that).
    MAX_FRAMES_PER_TICK: Final = 1000
    #: A longer gap between two ticks (the server paused, or the loop stalled) is replayed as this.
    MAX_STEP_S: Final = 0.1

    def __init__(
        self,
        path: str | Path,
        publisher: Publisher,
        *,
        speed: float = 1.0,
        loop: bool = False,
        retime: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _check_speed(speed)
        self.path = Path(path)
        self.header = read_header(self.path)
        self._pub = publisher
        self.speed = speed
        self.loop = loop
        self.retime = retime
        self._clock = clock
        self._exchange_now: float | None = None
        self._scan = _Scan(self.path)
        self.state = ReplayState()
        self._owner: dict[tuple[str, str | None], str] = {}
        self._records: Generator[Record, None, None] | None = None
        self._next: FrameRecord | None = None
        self._position = 0.0
        self._last_tick: float | None = None
        self._crossed: dict[str, str] = {}
        #: Markets a `cross` fault with `recross` keeps crossed → the crossed ask last published for it.
        self._kept_crossed: dict[str, str | None] = {}
        self._delisted: set[str] = set()
        self.finished = False
        self.published = 0
        self.passes = 0
        self.skipped = 0
        self._restart()
        log.info(
            "replay_loaded",
            path=str(self.path),
            source=self.header.get("source"),
            frames=self._scan.frames,
            seconds=round(self.duration, 3),
            tickers=len(self._scan.tickers),
            speed=speed,
            loop=loop,
            retime=retime,
        )

    @property
    def duration(self) -> float:
        """Seconds from the first to the last recorded frame."""
        return 0.0 if self._scan.first_t is None else self._scan.last_t - self._scan.first_t

    @property
    def position(self) -> float:
        """Seconds of the capture replayed so far (in recorded time)."""
        return 0.0 if self._scan.first_t is None else self._position - self._scan.first_t

    def _restart(self) -> None:
        self.state = ReplayState()
        start = self._scan.first_t or 0.0
        offset = (time.time() if self._exchange_now is None else self._exchange_now) - start
        for (channel, key), contents in self._scan.first.items():
            self.state.reset(channel, key, retimed(channel, contents, offset) if self.retime else contents)
        self._owner.clear()
        self._crossed.clear()
        if self._records is not None:
            self._records.close()
        self._records = read_records(self.path)
        self._next = self._pull()
        self._position = self._scan.first_t or 0.0
        self.passes += 1

    def _pull(self) -> FrameRecord | None:
        for record in self._records or ():
            if isinstance(record, FrameRecord):
                return record
        return None

    # ---- EventSource: time ----
    def advance(self, exchange_now: float) -> None:
        self._replay(exchange_now)
        for ticker in self._kept_crossed:
            self._cross_again(ticker, force=False)

    def _replay(self, exchange_now: float) -> None:
        now = self._clock()
        step = 0.0 if self._last_tick is None else min(max(0.0, now - self._last_tick), self.MAX_STEP_S)
        self._last_tick = now
        self._exchange_now = exchange_now
        if self.finished:
            return
        fast = self.speed == 0
        self._position += step * self.speed
        budget = self.MAX_FRAMES_PER_TICK
        while budget > 0:
            record = self._next
            if record is None:
                if not self.loop:
                    self.finished = True
                    if self._records is not None:
                        self._records.close()  # the file is not needed any more
                    log.info("replay_finished", path=str(self.path), published=self.published)
                    return
                log.info("replay_looped", path=str(self.path), passes=self.passes)
                self._restart()
                return
            if not fast and record.t > self._position:
                return
            self._play(record)
            self._next = self._pull()
            budget -= 1

    def _play(self, record: FrameRecord) -> None:
        try:
            msg = orjson.loads(record.raw)
        except orjson.JSONDecodeError:
            self.skipped += 1
            return
        if not isinstance(msg, dict):
            self.skipped += 1
            return
        kind = msg.get("type")
        channel = msg.get("channel")
        if not isinstance(channel, str) or channel not in ch.VERSIONS:
            return  # connected, ping-less control frames, errors without a channel
        raw_key = msg.get("id")
        key = raw_key if isinstance(raw_key, str) else None
        offset = (self._exchange_now or record.t) - record.t
        if kind == ch.T_SUBSCRIBED:
            self._owner[(channel, key)] = record.link
            contents = msg.get("contents")
            self.state.reset(channel, key, retimed(channel, contents, offset) if self.retime else contents)
            return
        if kind not in (ch.T_CHANNEL_DATA, ch.T_CHANNEL_BATCH_DATA):
            return
        owner = self._owner.setdefault((channel, key), record.link)
        if owner != record.link:
            return  # the same subscription recorded twice (on two connections): publish it once
        contents = msg.get("contents")
        items = contents if kind == ch.T_CHANNEL_BATCH_DATA and isinstance(contents, list) else [contents]
        number = msg.get("subaccountNumber")
        extra = b',"subaccountNumber":%d' % number if isinstance(number, int) else b""
        for item in items:
            if not isinstance(item, dict) or (
                channel == ch.TRADES and not isinstance(item.get("trades"), list)
            ):
                self.skipped += 1
                continue
            if self.retime:
                item = retimed(channel, item, offset)
            self.state.apply(channel, key, item)
            self._pub.publish(channel, key, item, extra)
            self.published += 1

    # ---- EventSource: subscriptions ----
    def tickers(self) -> list[str]:
        """The markets the capture holds data for; the markets snapshot's if it holds none."""
        tickers = self._scan.tickers or list(self.state.markets)
        return [t for t in tickers if t not in self._delisted]

    def valid(self, channel: str, key: str | None) -> bool:
        verdict = valid_market_subscription(channel, key, self.tickers())
        return (channel, key) in self.state.subaccounts if verdict is None else verdict

    def snapshot(self, channel: str, key: str | None) -> Any:
        if channel == ch.MARKETS:
            return {"markets": self._market_objects(None)}
        if channel == ch.BLOCK_HEIGHT:
            return {"height": str(self.state.height), "time": self.state.height_time}
        assert key is not None
        if channel == ch.ORDERBOOK:
            return self.rest_orderbook(key) or {"bids": [], "asks": []}
        if channel == ch.TRADES:
            return {"trades": self.rest_trades(key) or []}
        if channel == ch.CANDLES:
            ticker, _, resolution = key.rpartition("/")
            return {"candles": self.rest_candles(ticker, resolution) or []}
        return self.state.subaccounts.get((channel, key), {})

    # ---- EventSource: REST ----
    def _market_objects(self, limit: int | None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for index, ticker in enumerate(self.tickers()):
            if limit is not None and len(out) >= limit:
                break
            out[ticker] = self.state.markets.get(ticker) or self._stand_in_market(ticker, index)
        return out

    def _stand_in_market(self, ticker: str, index: int) -> dict[str, Any]:
        """A capture without v4_markets still needs a market list for discovery: the essentials, with the
        last traded (or best bid) price as the oracle price."""
        trades = self.state.trades.get(ticker)
        book = self.state.books.get(ticker)
        price = "1"
        if trades:
            price = str(trades[0].get("price") or price)
        elif book is not None and book.bids:
            price = max(book.bids, key=price_key)
        return {"clobPairId": str(index), "ticker": ticker, "status": "ACTIVE", "oraclePrice": price}

    def rest_markets(self, ticker: str | None, limit: int) -> Mapping[str, Any] | None:
        if ticker is not None:
            if ticker not in self.tickers():
                return None
            return {"markets": {ticker: self._market_objects(None)[ticker]}}
        return {"markets": self._market_objects(limit)}

    def rest_orderbook(self, ticker: str) -> Mapping[str, Any] | None:
        if ticker not in self.tickers():
            return None
        book = self.state.books.get(ticker)
        return book.view() if book is not None else {"bids": [], "asks": []}

    def rest_trades(self, ticker: str) -> list[dict[str, Any]] | None:
        if ticker not in self.tickers():
            return None
        return list(self.state.trades.get(ticker, ()))

    def rest_candles(self, ticker: str, resolution: str) -> list[dict[str, Any]] | None:
        if ticker not in self.tickers():
            return None
        return list(self.state.candles.get(ch.candle_id(ticker, resolution), ()))

    def height(self) -> tuple[int, float]:
        when = 0.0
        if self.state.height_time:
            with contextlib.suppress(ValueError):
                when = formats.parse_iso(self.state.height_time)
        return self.state.height, when

    # ---- control API ----
    def list_market(self, ticker: str, price: float | None) -> dict[str, Any]:
        raise ValueError("markets cannot be listed while replaying a capture")

    def delist_market(self, ticker: str) -> None:
        if ticker not in self.tickers():
            raise KeyError(ticker)
        self._delisted.add(ticker)
        self._pub.publish(ch.MARKETS, None, {"trading": {ticker: {"status": "FINAL_SETTLEMENT"}}})

    def start_cross(self, ticker: str, keep: bool = False) -> None:
        """A bid at the second-best ask price: crossed in the stream, uncrossed in REST views. With `keep`,
        crossed again whenever the replayed updates uncross it, and after every new snapshot."""
        if keep:
            self._kept_crossed.setdefault(ticker, None)
        book = self.state.books.get(ticker)
        if book is None or not book.asks or ticker in self._crossed:
            return
        asks = sorted(book.asks, key=price_key)[:2]
        price = asks[-1]
        size = book.asks[price]
        self._crossed[ticker] = price
        update = {"bids": [[price, size]]}
        book.apply(update)
        self._pub.publish(ch.ORDERBOOK, ticker, update)

    def recross(self, ticker: str) -> None:
        self._cross_again(ticker, force=True)

    def _cross_again(self, ticker: str, *, force: bool) -> None:
        """Snapshots leave out the asks at or under the crossing bid, and replayed updates take them away (or
        the bid itself): publish the best of them again when it changed (or when `force`d, for a fresh
        snapshot); when the replay has uncrossed the book, cross it anew and publish that best ask too."""
        price = self._crossed.get(ticker)
        book = self.state.books.get(ticker)
        if price is None or book is None or not book.asks:
            return
        best = min(book.asks, key=price_key)
        if price not in book.bids or price_key(best) > price_key(price):
            self._end_crossing_bid(ticker)
            self.start_cross(ticker)
            force = True
        if force or self._kept_crossed.get(ticker) != best:
            self._pub.publish(ch.ORDERBOOK, ticker, {"asks": [[best, book.asks[best]]]})
        if ticker in self._kept_crossed:
            self._kept_crossed[ticker] = best

    def end_cross(self, ticker: str) -> None:
        self._kept_crossed.pop(ticker, None)
        self._end_crossing_bid(ticker)

    def _end_crossing_bid(self, ticker: str) -> None:
        price = self._crossed.pop(ticker, None)
        book = self.state.books.get(ticker)
        if price is None or book is None or price not in book.bids:
            return
        update = {"bids": [[price, "0"]]}
        book.apply(update)
        self._pub.publish(ch.ORDERBOOK, ticker, update)


def replay_source(
    path: str | Path, *, speed: float = 1.0, loop: bool = False, retime: bool = False
) -> Callable[[Publisher], ReplaySource]:
    """The `source_factory` of a Simulator serving the capture at `path`:

        Simulator(SimulatorConfig(port=0), source_factory=replay_source("cap.jsonl.gz", speed=0))

    The header is checked now, so a bad file fails before a server is built."""
    read_header(path)
    _check_speed(speed)
    return lambda publisher: ReplaySource(path, publisher, speed=speed, loop=loop, retime=retime)
