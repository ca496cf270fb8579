"""The benchmark's synthetic feed: markets, subscriptions, snapshots and a cycle of pre-serialized frames.

Everything is deterministic from a seed, so the source process and any consumer can rebuild the same
workload independently. Data frames are byte-faithful to the indexer's key order (§2 of the protocol
reference) and carry correct per-connection message ids: each frame is pre-serialized once as a bytes
%-format whose holes all take the frame's message_id (the message_id itself, a trade id's height part, a
block height), so a chunk of 256 WebSocket frames costs one `%` operation to produce.

The channel mix is by updates (batched contents counted one by one), modelled on §5 of the reference:
mostly orderbook level updates, then oracle prices, trades, candles and block height.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Final

import orjson

from exporter.protocol import channels as ch

#: Fraction of updates per kind for the "realistic" mix.
REALISTIC_MIX: Final[dict[str, float]] = {
    "orderbook": 0.80,
    "oracle": 0.10,
    "trades": 0.05,
    "candles": 0.045,
    "block_height": 0.005,
}
#: One-trade frames only: the calibration workload the issue quotes (bare ~480k/s, naive ~85k/s).
TRADES1_MIX: Final[dict[str, float]] = {"trades": 1.0}
MIXES: Final[dict[str, dict[str, float]]] = {"realistic": REALISTIC_MIX, "trades1": TRADES1_MIX}

#: Tickers of the most liquid markets first; the rest are synthetic but valid tickers.
_KNOWN_TICKERS: Final = (
    "BTC-USD", "ETH-USD", "SOL-USD", "DOGE-USD", "XRP-USD", "LINK-USD", "AVAX-USD", "SUI-USD",
    "PEPE-USD", "WIF-USD", "LTC-USD", "NEAR-USD", "ARB-USD", "OP-USD", "APT-USD", "TIA-USD",
)  # fmt: skip
_MID_SENTINEL: Final = 987654321987
_TRADE_SENTINEL: Final = "@@TRADE@@"
_HEIGHT_SENTINEL: Final = "@@HEIGHT@@"
CONNECTION_ID: Final = "5f0c6a1e-3b7d-4c2a-9e8f-0d1b2c3a4b5c"
CANDLE_RESOLUTION: Final = "1MIN"
TIMESTAMP: Final = "2026-03-04T19:21:07.512Z"
CHUNK_FRAMES: Final = 256


def tickers(count: int) -> list[str]:
    names = list(_KNOWN_TICKERS[:count])
    names.extend(f"TKN{i:03d}-USD" for i in range(len(names), count))
    return names


def ws_header(payload_len: int) -> bytes:
    """Header of an unmasked, final, text WebSocket frame (server to client)."""
    if payload_len < 126:
        return bytes((0x81, payload_len))
    if payload_len < 65536:
        return struct.pack("!BBH", 0x81, 126, payload_len)
    return struct.pack("!BBQ", 0x81, 127, payload_len)


@dataclass(frozen=True, slots=True)
class FrameTemplate:
    """One data frame with its message_id holes: `fmt % ((mid,) * holes)` is the JSON payload."""

    fmt: bytes
    decimal_holes: int
    hex_holes: int
    channel: str
    updates: int

    @property
    def holes(self) -> int:
        return self.decimal_holes + self.hex_holes

    def payload_len(self, digits: int) -> int:
        # Each hole's "%d"/"%08x" (2 or 4 chars) becomes `digits` or 8 chars; "%%" becomes "%".
        return (
            len(self.fmt)
            - self.fmt.count(b"%%")
            - 2 * self.decimal_holes
            - 4 * self.hex_holes
            + (digits * self.decimal_holes + 8 * self.hex_holes)
        )

    def render(self, message_id: int) -> bytes:
        return self.fmt % ((message_id,) * self.holes)


@dataclass(frozen=True, slots=True)
class Subscription:
    channel: str
    sub_id: str | None

    def request(self, batched: bool) -> dict[str, Any]:
        msg: dict[str, Any] = {"type": "subscribe", "channel": self.channel}
        if self.sub_id is not None:
            msg["id"] = self.sub_id
        if self.channel != ch.BLOCK_HEIGHT:
            msg["batched"] = batched
        return msg

    @property
    def key(self) -> tuple[str, str | None]:
        # The server keys block height under its fixed id even though the client sends none.
        if self.channel == ch.BLOCK_HEIGHT:
            return (self.channel, ch.BLOCK_HEIGHT_ID)
        return (self.channel, self.sub_id)


@dataclass(frozen=True)
class Workload:
    """What the source sends and the consumers subscribe to."""

    markets: int = 32
    batched: bool = False
    mix: str = "realistic"
    seed: int = 1
    cycle_updates: int = 16_384
    book_levels: int = 50

    def __post_init__(self) -> None:
        if self.mix not in MIXES:
            raise ValueError(f"mix must be one of {', '.join(MIXES)}, not {self.mix!r}")

    @cached_property
    def tickers(self) -> list[str]:
        return tickers(self.markets)

    @cached_property
    def mid_prices(self) -> dict[str, int]:
        rng = random.Random(self.seed)
        return {t: rng.randrange(1_000, 100_000) for t in self.tickers}

    @cached_property
    def market_weights(self) -> list[float]:
        # Zipf-like: BTC and ETH carry most of the activity, the tail is near idle.
        return [1.0 / (rank + 1) ** 1.2 for rank in range(self.markets)]

    @cached_property
    def subscriptions(self) -> list[Subscription]:
        subs = [Subscription(ch.MARKETS, None), Subscription(ch.BLOCK_HEIGHT, None)]
        for ticker in self.tickers:
            subs.append(Subscription(ch.ORDERBOOK, ticker))
            subs.append(Subscription(ch.TRADES, ticker))
            subs.append(Subscription(ch.CANDLES, ch.candle_id(ticker, CANDLE_RESOLUTION)))
        return subs

    @cached_property
    def perpetual_markets(self) -> dict[str, dict[str, Any]]:
        """The REST /v4/perpetualMarkets `markets` object (also the v4_markets snapshot)."""
        out: dict[str, dict[str, Any]] = {}
        for i, ticker in enumerate(self.tickers):
            mid = self.mid_prices[ticker]
            out[ticker] = {
                "clobPairId": str(i),
                "ticker": ticker,
                "status": "ACTIVE",
                "oraclePrice": str(mid),
                "priceChange24H": "12.5",
                "volume24H": "1234567.8",
                "trades24H": 4321,
                "nextFundingRate": "0.0000125",
                "initialMarginFraction": "0.05",
                "maintenanceMarginFraction": "0.03",
                "openInterest": "1234.5",
                "atomicResolution": -10,
                "quantumConversionExponent": -9,
                "tickSize": "1",
                "stepSize": "0.0001",
                "stepBaseQuantums": 1_000_000,
                "subticksPerTick": 100_000,
                "marketType": "CROSS",
                "baseOpenInterest": "1000",
            }
        return out

    # -- snapshots -------------------------------------------------------------------------------

    def snapshot(self, sub: Subscription) -> dict[str, Any]:
        if sub.channel == ch.MARKETS:
            return {"markets": self.perpetual_markets}
        if sub.channel == ch.BLOCK_HEIGHT:
            return {"height": "5", "time": TIMESTAMP}
        assert sub.sub_id is not None
        ticker = sub.sub_id.split("/")[0]
        mid = self.mid_prices[ticker]
        if sub.channel == ch.ORDERBOOK:
            return {
                "bids": [{"price": str(mid - k), "size": "1.5"} for k in range(1, self.book_levels + 1)],
                "asks": [{"price": str(mid + k), "size": "1.5"} for k in range(1, self.book_levels + 1)],
            }
        if sub.channel == ch.TRADES:
            return {
                "trades": [
                    {
                        "id": f"{4:08x}{k + 2:08x}{0:08x}",
                        "side": "BUY" if k % 2 else "SELL",
                        "size": "0.01",
                        "price": str(mid),
                        "type": "LIMIT",
                        "createdAt": TIMESTAMP,
                        "createdAtHeight": "4",
                    }
                    for k in range(20)
                ]
            }
        if sub.channel == ch.CANDLES:
            return {"candles": [self._candle(ticker, mid)]}
        raise ValueError(f"no snapshot for {sub}")

    def subscribed_frame(self, sub: Subscription, message_id: int) -> bytes:
        frame: dict[str, Any] = {
            "type": ch.T_SUBSCRIBED,
            "connection_id": CONNECTION_ID,
            "message_id": message_id,
            "channel": sub.channel,
        }
        if sub.channel != ch.MARKETS:
            frame["id"] = sub.key[1]
        frame["contents"] = self.snapshot(sub)
        return orjson.dumps(frame)

    @staticmethod
    def connected_frame() -> bytes:
        return orjson.dumps({"type": ch.T_CONNECTED, "connection_id": CONNECTION_ID, "message_id": 0})

    # -- data frames -----------------------------------------------------------------------------

    @cached_property
    def cycle(self) -> list[FrameTemplate]:
        """Frame templates whose updates add up to about `cycle_updates`, in the mix's proportions.

        The cycle starts with one update of every (kind, market) so that every series exists after one
        pass; the rest is drawn at random with the market weights.
        """
        rng = random.Random(self.seed + 1)
        mix = MIXES[self.mix]
        kinds = list(mix)
        weights = [mix[k] for k in kinds]
        frames: list[FrameTemplate] = []
        for kind in kinds:
            if kind == "block_height":
                frames.append(self._frame(kind, [self.tickers[0]], rng, single=not self.batched))
                continue
            frames.extend(
                self._frame(kind, [t], rng, single=not self.batched, coverage=True) for t in self.tickers
            )
        total = sum(f.updates for f in frames)
        while total < self.cycle_updates:
            kind = rng.choices(kinds, weights)[0]
            ticker = rng.choices(self.tickers, self.market_weights)[0]
            frame = self._frame(kind, [ticker], rng, single=not self.batched)
            frames.append(frame)
            total += frame.updates
        # Pad to whole chunks so a chunk never straddles the cycle's end.
        while len(frames) % CHUNK_FRAMES:
            frames.append(self._frame("orderbook", [self.tickers[0]], rng, single=not self.batched))
        return frames

    @cached_property
    def cycle_update_total(self) -> int:
        return sum(f.updates for f in self.cycle)

    def _frame(
        self, kind: str, markets: Sequence[str], rng: random.Random, single: bool, coverage: bool = False
    ) -> FrameTemplate:
        ticker = markets[0]
        mid = self.mid_prices[ticker]
        contents: list[dict[str, Any]]
        if kind == "orderbook":
            channel, sub_id = ch.ORDERBOOK, ticker
            count = 1 if single else rng.randint(1, 16)
            contents = [self._level_update(mid, rng) for _ in range(count)]
        elif kind == "trades":
            channel, sub_id = ch.TRADES, ticker
            count = 1 if single else rng.randint(1, 3)
            # A coverage frame trades both sides, so every trade series exists after one cycle.
            per_frame = 1 if self.mix == "trades1" else 2 if coverage else rng.randint(1, 3)
            contents = [self._trades(mid, per_frame, rng) for _ in range(count)]
            for i, c in enumerate(contents):
                for j, trade in enumerate(c["trades"]):
                    trade["id"] = f"{_TRADE_SENTINEL}{i:04x}{j + 2:04x}{0:08x}"
        elif kind == "candles":
            channel, sub_id = ch.CANDLES, ch.candle_id(ticker, CANDLE_RESOLUTION)
            count = 1 if single else rng.randint(1, 2)
            contents = [self._candle(ticker, mid) for _ in range(count)]
        elif kind == "oracle":
            channel, sub_id = ch.MARKETS, None
            count = 1 if single else rng.randint(1, 30)
            names = [ticker, *rng.choices(self.tickers, k=count - 1)]
            contents = [{"oraclePrices": {t: self._oracle(t, rng)}} for t in names]
        elif kind == "block_height":
            channel, sub_id = ch.BLOCK_HEIGHT, ch.BLOCK_HEIGHT_ID
            # Block height subscriptions are never batched.
            single = True
            contents = [{"blockHeight": _HEIGHT_SENTINEL, "time": TIMESTAMP}]
        else:
            raise ValueError(f"unknown update kind {kind!r}")
        frame: dict[str, Any] = {
            "type": ch.T_CHANNEL_DATA if single else ch.T_CHANNEL_BATCH_DATA,
            "connection_id": CONNECTION_ID,
            "message_id": _MID_SENTINEL,
        }
        if sub_id is not None:
            frame["id"] = sub_id
        frame["channel"] = channel
        frame["version"] = ch.VERSIONS[channel]
        frame["contents"] = contents[0] if single else contents
        raw = orjson.dumps(frame).replace(b"%", b"%%")
        decimal_holes = raw.count(str(_MID_SENTINEL).encode()) + raw.count(_HEIGHT_SENTINEL.encode())
        hex_holes = raw.count(_TRADE_SENTINEL.encode())
        raw = raw.replace(str(_MID_SENTINEL).encode(), b"%d")
        raw = raw.replace(_HEIGHT_SENTINEL.encode(), b"5%d")  # "5" + message_id: strictly increasing
        raw = raw.replace(_TRADE_SENTINEL.encode(), b"%08x")
        return FrameTemplate(raw, decimal_holes, hex_holes, channel, len(contents))

    def _level_update(self, mid: int, rng: random.Random) -> dict[str, Any]:
        side = rng.choice(("bids", "asks"))
        depth = min(int(rng.expovariate(0.15)) + 1, 2 * self.book_levels)
        price = mid - depth if side == "bids" else mid + depth
        size = "0" if rng.random() < 0.15 else f"{rng.randint(1, 99999) / 1000:g}"
        return {side: [[str(price), size]]}

    def _trades(self, mid: int, count: int, rng: random.Random) -> dict[str, Any]:
        return {
            "trades": [
                {
                    "id": "",
                    "size": f"{rng.randint(1, 5000) / 1000:g}",
                    "price": str(mid + rng.randint(-3, 3)),
                    "side": ch.TRADE_SIDES[k] if k < 2 else rng.choice(ch.TRADE_SIDES),
                    "createdAt": TIMESTAMP,
                    "type": "LIMIT",
                }
                for k in range(count)
            ]
        }

    def _oracle(self, ticker: str, rng: random.Random) -> dict[str, Any]:
        mid = self.mid_prices[ticker]
        return {
            "oraclePrice": f"{mid + rng.randint(-50, 50) / 10:g}",
            "effectiveAt": TIMESTAMP,
            "effectiveAtHeight": "5",
            "marketId": self.tickers.index(ticker),
        }

    @staticmethod
    def _candle(ticker: str, mid: int) -> dict[str, Any]:
        return {
            "startedAt": "2026-03-04T19:21:00.000Z",
            "ticker": ticker,
            "resolution": CANDLE_RESOLUTION,
            "low": str(mid - 5),
            "high": str(mid + 5),
            "open": str(mid),
            "close": str(mid + 1),
            "baseTokenVolume": "0.4521",
            "usdVolume": "30295.41",
            "trades": 17,
            "startingOpenInterest": "1234.5678",
            "orderbookMidPriceOpen": str(mid),
            "orderbookMidPriceClose": None,
        }


class FrameStream:
    """Renders the workload's cycle, from a starting message_id, as ready-to-write WebSocket bytes."""

    def __init__(self, workload: Workload, first_message_id: int) -> None:
        self._cycle = workload.cycle
        self._next_id = first_message_id
        self._pos = 0
        self._chunks: dict[tuple[int, int], bytes] = {}
        self.frames = 0
        self.updates = 0
        self.bytes = 0
        self._chunk_updates = [
            sum(f.updates for f in self._cycle[i : i + CHUNK_FRAMES])
            for i in range(0, len(self._cycle), CHUNK_FRAMES)
        ]
        self._chunk_holes = [
            tuple(o for o, f in enumerate(self._cycle[i : i + CHUNK_FRAMES]) for _ in range(f.holes))
            for i in range(0, len(self._cycle), CHUNK_FRAMES)
        ]

    def _chunk_format(self, index: int, digits: int) -> bytes:
        key = (index, digits)
        fmt = self._chunks.get(key)
        if fmt is None:
            start = index * CHUNK_FRAMES
            parts = []
            for f in self._cycle[start : start + CHUNK_FRAMES]:
                parts.append(ws_header(f.payload_len(digits)).replace(b"%", b"%%"))
                parts.append(f.fmt)
            fmt = self._chunks[key] = b"".join(parts)
        return fmt

    def next_chunk(self) -> bytes:
        """The next CHUNK_FRAMES frames of the cycle: one `%` when aligned to a chunk of the cycle and
        the ids keep their digit count, frame by frame otherwise."""
        if self._pos % CHUNK_FRAMES:
            return b"".join(self.next_frames_exactly(CHUNK_FRAMES))
        base = self._next_id
        index = self._pos // CHUNK_FRAMES
        digits = len(str(base))
        if len(str(base + CHUNK_FRAMES - 1)) == digits:
            data = self._chunk_format(index, digits) % tuple([base + o for o in self._chunk_holes[index]])
        else:
            data = b"".join(self.render_frame(base + i, self._pos + i) for i in range(CHUNK_FRAMES))
        self._next_id += CHUNK_FRAMES
        self._pos = (self._pos + CHUNK_FRAMES) % len(self._cycle)
        self.frames += CHUNK_FRAMES
        self.updates += self._chunk_updates[index]
        self.bytes += len(data)
        return data

    def render_frame(self, message_id: int, pos: int) -> bytes:
        payload = self._cycle[pos].render(message_id)
        return ws_header(len(payload)) + payload

    def next_frames(self, updates: int) -> Iterator[bytes]:
        """Single frames until at least `updates` updates have been produced (paced sending)."""
        produced = 0
        while produced < updates:
            produced += self._cycle[self._pos].updates
            yield self._next_frame()

    def next_frames_exactly(self, frames: int) -> Iterator[bytes]:
        for _ in range(frames):
            yield self._next_frame()

    def _next_frame(self) -> bytes:
        template = self._cycle[self._pos]
        data = self.render_frame(self._next_id, self._pos)
        self._next_id += 1
        self._pos = (self._pos + 1) % len(self._cycle)
        self.frames += 1
        self.updates += template.updates
        self.bytes += len(data)
        return data


def frames_for_updates(workload: Workload, updates: int) -> int:
    """Data frames (a whole number of chunks) that carry at least `updates` updates."""
    per_chunk = workload.cycle_update_total / (len(workload.cycle) / CHUNK_FRAMES)
    chunks = max(1, -(-updates // int(per_chunk)))
    return chunks * CHUNK_FRAMES


def decoded_cycle(workload: Workload, first_message_id: int = 1) -> list[bytes]:
    """The cycle's payloads without WebSocket framing (for in-process feeding)."""
    return [t.render(first_message_id + i) for i, t in enumerate(workload.cycle)]


def market_objects(workload: Workload) -> Mapping[str, Mapping[str, object]]:
    return workload.perpetual_markets


def expected_books(workload: Workload, data_frames: int) -> dict[str, tuple[dict[str, str], dict[str, str]]]:
    """The order books (price → size, as published) a consumer holds after the snapshots and the first
    `data_frames` data frames of a connection's stream (the cycle from its start, repeated).

    Sizes are absolute, so the books after any whole number (>= 1) of cycles are those after one.
    """
    books: dict[str, tuple[dict[str, str], dict[str, str]]] = {}
    for ticker in workload.tickers:
        snapshot = workload.snapshot(Subscription(ch.ORDERBOOK, ticker))
        books[ticker] = (
            {level["price"]: level["size"] for level in snapshot["bids"]},
            {level["price"]: level["size"] for level in snapshot["asks"]},
        )
    cycle = workload.cycle
    whole, rest = divmod(data_frames, len(cycle))
    positions = [*(range(len(cycle)) if whole else ()), *range(rest)]
    parsed: dict[int, tuple[str, list[dict[str, Any]]]] = {}
    for pos in positions:
        template = cycle[pos]
        if template.channel != ch.ORDERBOOK:
            continue
        entry = parsed.get(pos)
        if entry is None:
            frame = orjson.loads(template.render(1))
            contents = frame["contents"]
            entry = parsed[pos] = (frame["id"], contents if isinstance(contents, list) else [contents])
        ticker, updates = entry
        bids, asks = books[ticker]
        for update in updates:
            for side, book in (("bids", bids), ("asks", asks)):
                for price, size in update.get(side, ()):
                    if float(size) == 0.0:
                        book.pop(price, None)
                    else:
                        book[price] = size
    return books
