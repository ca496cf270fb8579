"""The market universe: which markets the indexer lists and their status, and who follows it.

It is fed by REST discovery (`/v4/perpetualMarkets`, a full list: whatever is absent is delisted) and by
the v4_markets channel (its snapshot is a full list too; its `trading` diffs list a new market when a full
market object arrives and change a status in place). Statuses outside the protocol's enum read as UNKNOWN,
so the `status` label stays bounded. Listeners (the pool: what to subscribe; the state: what to keep and
export) are told every change as a `MarketsChanged`, synchronously, in the order they subscribed; a full
list is always announced, even when nothing changed, so a REST refresh reaches its listeners.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from exporter.logs import get_logger
from exporter.protocol.channels import MARKET_STATUSES, TICKER_RE

log = get_logger(__name__)

UNKNOWN_STATUS: Final = "UNKNOWN"
#: Listed, but no longer traded: not subscribed (its series stay while the indexer lists it).
DELISTED_STATUSES: Final = frozenset({"FINAL_SETTLEMENT"})
_STATUSES: Final = frozenset(MARKET_STATUSES)
#: Fields only a full market object carries (a listing), never a 30 s trading diff.
_FULL_OBJECT_FIELDS: Final = ("ticker", "clobPairId")
MAX_MARKETS: Final = 5000


def status_of(market: Mapping[str, object]) -> str:
    status = market.get("status")
    return status if status.__class__ is str and status in _STATUSES else UNKNOWN_STATUS


def valid_ticker(ticker: object) -> bool:
    return ticker.__class__ is str and len(ticker) <= 64 and TICKER_RE.match(ticker) is not None


@dataclass(frozen=True, slots=True)
class MarketsChanged:
    """What changed in the universe. `markets` is every listed ticker → status after the change;
    `full_list` the market objects of a full list (REST or the channel snapshot) that caused it, else
    empty; `received_at` the receipt time of the frame that carried it (None for REST)."""

    markets: Mapping[str, str]
    listed: tuple[str, ...] = ()
    delisted: tuple[str, ...] = ()
    status_changed: tuple[str, ...] = ()
    full_list: Mapping[str, object] = field(default_factory=dict)
    received_at: float | None = None

    def __bool__(self) -> bool:
        return bool(self.listed or self.delisted or self.status_changed)


MarketsListener = Callable[[MarketsChanged], None]


class MarketUniverse:
    """`wants(ticker)` is the --markets / --shard filter: which listed markets this exporter follows."""

    def __init__(self, wants: Callable[[str], bool] | None = None) -> None:
        self._wants = wants
        self.statuses: dict[str, str] = {}
        self._listeners: list[MarketsListener] = []

    def subscribe(self, listener: MarketsListener) -> None:
        self._listeners.append(listener)

    def wants(self, ticker: str) -> bool:
        return self._wants is None or self._wants(ticker)

    def wanted(self) -> frozenset[str]:
        """The markets to subscribe: listed, still traded, and passing the filter."""
        return frozenset(
            ticker
            for ticker, status in self.statuses.items()
            if status not in DELISTED_STATUSES and self.wants(ticker)
        )

    def load(self, markets: Mapping[str, object], received_at: float | None = None) -> MarketsChanged:
        """A full list: whatever is absent from it is delisted. Entries that are not market objects or
        have a malformed ticker are skipped."""
        fresh: dict[str, str] = {}
        for ticker, market in markets.items():
            if isinstance(market, Mapping) and valid_ticker(ticker) and len(fresh) < MAX_MARKETS:
                fresh[ticker] = status_of(market)
        old = self.statuses
        listed = [ticker for ticker in fresh if ticker not in old]
        changed = [ticker for ticker, status in fresh.items() if old.get(ticker, status) != status]
        delisted = [ticker for ticker in old if ticker not in fresh]
        self.statuses = fresh
        change = MarketsChanged(
            dict(fresh), tuple(listed), tuple(delisted), tuple(changed), markets, received_at
        )
        self._announce(change)
        return change

    def apply_trading(self, trading: Mapping[str, object], received_at: float) -> MarketsChanged:
        """A v4_markets `trading` diff: status changes in place; a full object for a new ticker lists it."""
        listed: list[str] = []
        changed: list[str] = []
        statuses = self.statuses
        for ticker, diff in trading.items():
            if not isinstance(diff, Mapping):
                continue
            known = statuses.get(ticker)
            if known is None:
                if (
                    valid_ticker(ticker)
                    and all(key in diff for key in _FULL_OBJECT_FIELDS)
                    and len(statuses) < MAX_MARKETS
                ):
                    statuses[ticker] = status_of(diff)
                    listed.append(ticker)
            elif "status" in diff:
                status = status_of(diff)
                if status != known:
                    statuses[ticker] = status
                    changed.append(ticker)
        change = MarketsChanged(dict(statuses), tuple(listed), (), tuple(changed), received_at=received_at)
        if change:
            self._announce(change)
        return change

    def _announce(self, change: MarketsChanged) -> None:
        if change.listed or change.delisted:
            log.info("markets_changed", listed=list(change.listed[:20]), delisted=list(change.delisted[:20]),
                     listed_count=len(change.listed), delisted_count=len(change.delisted))  # fmt: skip
        for listener in self._listeners:
            listener(change)
