"""The market directory: which markets exist and their status, from REST and the v4_markets channel.

Listings and delistings are found by comparing full lists (REST /v4/perpetualMarkets, the v4_markets
snapshot); the channel's `trading` diffs add a market when a full market object arrives and change a
status in place. Statuses outside the protocol's enum are reported as UNKNOWN so the `status` label stays
bounded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from exporter.protocol.channels import MARKET_STATUSES, TICKER_RE

UNKNOWN_STATUS: Final = "UNKNOWN"
_STATUSES: Final = frozenset(MARKET_STATUSES)
#: Fields only a full market object carries (a listing), never a 30 s trading diff.
_FULL_OBJECT_FIELDS: Final = ("ticker", "clobPairId")
MAX_MARKETS: Final = 5000


def status_of(market: Mapping[str, object]) -> str:
    status = market.get("status")
    return status if status.__class__ is str and status in _STATUSES else UNKNOWN_STATUS


def valid_ticker(ticker: object) -> bool:
    return ticker.__class__ is str and len(ticker) <= 64 and TICKER_RE.match(ticker) is not None


@dataclass(slots=True)
class DirectoryChange:
    listed: list[str] = field(default_factory=list)
    delisted: list[str] = field(default_factory=list)
    status_changed: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.listed or self.delisted or self.status_changed)

    def merge(self, other: DirectoryChange) -> None:
        self.listed.extend(t for t in other.listed if t not in self.listed)
        self.delisted.extend(t for t in other.delisted if t not in self.delisted)
        self.status_changed.extend(t for t in other.status_changed if t not in self.status_changed)


class MarketDirectory:
    __slots__ = ("statuses",)

    def __init__(self) -> None:
        self.statuses: dict[str, str] = {}

    def load(self, markets: Mapping[str, object]) -> DirectoryChange:
        """A full list (REST or the channel's snapshot): whatever is absent from it is delisted. Entries
        that are not market objects or have a malformed ticker are skipped."""
        fresh: dict[str, str] = {}
        for ticker, market in markets.items():
            if isinstance(market, Mapping) and valid_ticker(ticker) and len(fresh) < MAX_MARKETS:
                fresh[ticker] = status_of(market)
        change = DirectoryChange()
        old = self.statuses
        for ticker, status in fresh.items():
            previous = old.get(ticker)
            if previous is None:
                change.listed.append(ticker)
            elif previous != status:
                change.status_changed.append(ticker)
        change.delisted = [ticker for ticker in old if ticker not in fresh]
        self.statuses = fresh
        return change

    def apply_trading(self, trading: Mapping[str, object]) -> DirectoryChange:
        """A v4_markets `trading` diff: status changes in place; a full object for a new ticker lists it."""
        change = DirectoryChange()
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
                    change.listed.append(ticker)
            elif "status" in diff:
                status = status_of(diff)
                if status != known:
                    statuses[ticker] = status
                    change.status_changed.append(ticker)
        return change

    def forget(self, ticker: str) -> None:
        self.statuses.pop(ticker, None)
