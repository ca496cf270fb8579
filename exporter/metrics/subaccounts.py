"""Per-subaccount state exported for the subaccounts named by --subaccounts, and its families."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from exporter.metrics import catalog as c
from exporter.metrics.histogram import escape
from exporter.metrics.registry import MetricSource, per_row, renders


class SubaccountMetrics:
    """Everything exported per subaccount named by --subaccounts (the label value is that id)."""

    __slots__ = ("equity", "fills", "free_collateral", "label", "open_orders", "open_positions", "sub_id")

    def __init__(self, sub_id: str) -> None:
        self.sub_id = sub_id
        self.label = f'subaccount="{escape(sub_id)}"'
        self.equity: float | None = None
        self.free_collateral: float | None = None
        self.open_positions = 0
        self.open_orders = 0
        self.fills = [0, 0]  # index 0 buy, 1 sell


class SubaccountTable(MetricSource):
    def __init__(self, subaccounts: Sequence[str]) -> None:
        self._accounts = {s: SubaccountMetrics(s) for s in sorted(subaccounts)}

    def subaccount(self, sub_id: str) -> SubaccountMetrics | None:
        """The metrics of a configured subaccount; None for any other id (the label stays bounded)."""
        return self._accounts.get(sub_id)

    def _rows(self) -> Iterable[SubaccountMetrics]:
        return self._accounts.values()

    _equity = per_row(c.SUBACCOUNT_EQUITY, _rows, lambda sub: sub.equity)
    _free_collateral = per_row(c.SUBACCOUNT_FREE_COLLATERAL, _rows, lambda sub: sub.free_collateral)
    _open_positions = per_row(c.SUBACCOUNT_OPEN_POSITIONS, _rows, lambda sub: sub.open_positions)
    _open_orders = per_row(c.SUBACCOUNT_OPEN_ORDERS, _rows, lambda sub: sub.open_orders)

    @renders(c.SUBACCOUNT_FILLS)
    def _fills(self, name: str, out: list[str], now: float) -> None:
        buy, sell = c.TRADE_SIDE_LABELS
        for sub in self._accounts.values():
            out.append(f'{name}{{{sub.label},side="{buy}"}} {sub.fills[0]}\n')
            out.append(f'{name}{{{sub.label},side="{sell}"}} {sub.fills[1]}\n')
