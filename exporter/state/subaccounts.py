"""What a subscribed subaccount holds: open perpetual positions, open orders and the fills already counted.

The v4_subaccounts snapshot carries everything (equity, free collateral, open positions, and the orders
that are open, untriggered or best-effort opened, plus best-effort-canceled ones of the last 20 blocks).
Updates carry `perpetualPositions`, `orders` and `fills` (and transfers, asset positions), but never equity
or free collateral: the indexer computes those only for a snapshot, so they are as of the latest one, and
the feed re-snapshots every --subaccounts.refresh-interval.
"""

from __future__ import annotations

from typing import Final

from exporter.state.trades import RecentIds

#: Order statuses that leave an order resting (or waiting for its trigger) on the book.
OPEN_ORDER_STATUSES: Final = frozenset({"OPEN", "UNTRIGGERED", "BEST_EFFORT_OPENED"})
#: A subaccount never tracks more open orders than this (a runaway or a market maker's full book).
MAX_OPEN_ORDERS: Final = 10_000


class Subaccount:
    __slots__ = ("fills", "orders", "positions")

    def __init__(self) -> None:
        self.positions: set[str] = set()  # markets with an open position
        self.orders: set[str] = set()  # ids of open orders
        self.fills = RecentIds()

    def load_snapshot(self, open_positions: dict[str, str], orders: dict[str, str]) -> None:
        """`open_positions` market → status, `orders` id → status, as the snapshot lists them."""
        self.positions = {market for market, status in open_positions.items() if status == "OPEN"}
        self.orders = set()
        for order_id, status in orders.items():
            self.apply_order(order_id, status)

    def forget(self) -> None:
        """The indexer does not know the subaccount (an empty snapshot)."""
        self.positions = set()
        self.orders = set()

    def apply_position(self, market: str, status: str, size: float | None) -> None:
        if status == "OPEN" and size != 0.0:
            self.positions.add(market)
        else:
            self.positions.discard(market)

    def apply_order(self, order_id: str, status: str) -> None:
        if status in OPEN_ORDER_STATUSES:
            if len(self.orders) < MAX_OPEN_ORDERS:
                self.orders.add(order_id)
        else:
            self.orders.discard(order_id)
