"""v4_subaccounts: what a subscribed subaccount holds (open positions, open orders, fills counted).

The v4_subaccounts snapshot carries everything (equity, free collateral, open positions, and the orders
that are open, untriggered or best-effort opened, plus best-effort-canceled ones of the last 20 blocks).
Updates carry `perpetualPositions`, `orders` and `fills` (and transfers, asset positions), but never equity
or free collateral: the indexer computes those only for a snapshot, so they are as of the latest one, and
the feed re-snapshots every --subaccounts.refresh-interval.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

from exporter.metrics.subaccounts import SubaccountMetrics
from exporter.protocol.frames import finite
from exporter.state.context import ChannelHandler, FrameContext, Shared
from exporter.state.trades import MAX_ID_LENGTH, SIDE_INDEX, RecentIds

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


class SubaccountsHandler(ChannelHandler):
    """v4_subaccounts, for the subaccounts named by --subaccounts only (the label stays bounded)."""

    def __init__(self, shared: Shared) -> None:
        super().__init__(shared)
        self._accounts: dict[str, tuple[Subaccount, SubaccountMetrics]] = {}

    def _account(
        self, ctx: FrameContext, sub_id: Any, contents: Any
    ) -> tuple[Subaccount, SubaccountMetrics] | None:
        """The configured subaccount a frame is for, when its contents are an object (else counted)."""
        entry = self._accounts.get(sub_id) if sub_id.__class__ is str else None
        if entry is None:
            metrics = self.shared.collector.subaccount(sub_id) if sub_id.__class__ is str else None
            if metrics is None:
                ctx.invalid("unknown_subaccount", sub_id)
                return None
            entry = self._accounts[sub_id] = (Subaccount(), metrics)
        if contents.__class__ is not dict:
            ctx.invalid("wrong_type", contents)
            return None
        return entry

    def snapshot(self, ctx: FrameContext, sub_id: str | None, contents: Any) -> None:
        entry = self._account(ctx, sub_id, contents)
        if entry is None:
            return
        state, metrics = entry
        account = contents.get("subaccount")
        if account is None:  # `{}`: the indexer does not know this subaccount
            state.forget()
            metrics.equity = metrics.free_collateral = None
            metrics.open_positions = metrics.open_orders = 0
            return
        if account.__class__ is not dict:
            ctx.invalid("wrong_type", account)
            return
        equity = finite(account.get("equity"))
        free_collateral = finite(account.get("freeCollateral"))
        if equity is None or free_collateral is None:
            ctx.invalid("bad_number", account)
        metrics.equity = equity
        metrics.free_collateral = free_collateral
        positions: dict[str, str] = {}
        open_positions = account.get("openPerpetualPositions")
        if open_positions.__class__ is dict:
            for market, position in open_positions.items():
                status = position.get("status", "OPEN") if position.__class__ is dict else None
                if status.__class__ is str:
                    positions[market] = status
                else:
                    ctx.invalid("wrong_type", position)
        elif open_positions is not None:
            ctx.invalid("wrong_type", open_positions)
        rows = _rows(ctx, contents.get("orders"), "id", "status", lists_only=True)
        orders = {order_id: status for order_id, status, _ in rows}
        state.load_snapshot(positions, orders)
        metrics.open_positions = len(state.positions)
        metrics.open_orders = len(state.orders)

    def update(self, ctx: FrameContext, sub_id: Any, contents: Any) -> None:
        entry = self._account(ctx, sub_id, contents)
        if entry is None:
            return
        state, metrics = entry
        positions = contents.get("perpetualPositions")
        if positions is not None:
            for market, status, row in _rows(ctx, positions, "market", "status"):
                state.apply_position(market, status, finite(row.get("size")))
            metrics.open_positions = len(state.positions)
        orders = contents.get("orders")
        if orders is not None:
            for order_id, status, _ in _rows(ctx, orders, "id", "status"):
                state.apply_order(order_id, status)
            metrics.open_orders = len(state.orders)
        fills = contents.get("fills")
        if fills is not None:
            for row in fills if fills.__class__ is list else (fills,):
                fill_id = row.get("id") if row.__class__ is dict else None
                side = row.get("side") if row.__class__ is dict else None
                index = SIDE_INDEX.get(side) if side.__class__ is str else None
                if fill_id.__class__ is not str or len(fill_id) > MAX_ID_LENGTH or index is None:
                    ctx.invalid("wrong_type", row)
                elif state.fills.add(fill_id):
                    metrics.fills[index] += 1


def _rows(
    ctx: FrameContext, value: Any, key: str, field: str, *, lists_only: bool = False
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(row[key], row[field], row) of each row of a list (or of a lone row unless `lists_only`) whose two
    fields are strings; any other row is counted invalid."""
    rows = value if value.__class__ is list else () if lists_only else (value,)
    for row in rows:
        first = row.get(key) if row.__class__ is dict else None
        second = row.get(field) if row.__class__ is dict else None
        if first.__class__ is str and second.__class__ is str:
            yield first, second, row
        else:
            ctx.invalid("wrong_type", row)
