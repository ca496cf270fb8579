"""Per-subaccount state exported for the subaccounts named by --subaccounts, and its families."""

from __future__ import annotations

from collections.abc import Sequence

from exporter.metrics import catalog as c
from exporter.metrics.histogram import escape, fmt
from exporter.metrics.registry import MetricSource, renders


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

    @renders(c.SUBACCOUNT_EQUITY)
    def _equity(self, name: str, out: list[str], now: float) -> None:
        accounts = self._accounts.values()
        out.extend(f"{name}{{{sub.label}}} {fmt(sub.equity)}\n" for sub in accounts if sub.equity is not None)

    @renders(c.SUBACCOUNT_FREE_COLLATERAL)
    def _free_collateral(self, name: str, out: list[str], now: float) -> None:
        out.extend(
            f"{name}{{{sub.label}}} {fmt(sub.free_collateral)}\n"
            for sub in self._accounts.values()
            if sub.free_collateral is not None
        )

    @renders(c.SUBACCOUNT_OPEN_POSITIONS)
    def _open_positions(self, name: str, out: list[str], now: float) -> None:
        out.extend(f"{name}{{{sub.label}}} {sub.open_positions}\n" for sub in self._accounts.values())

    @renders(c.SUBACCOUNT_OPEN_ORDERS)
    def _open_orders(self, name: str, out: list[str], now: float) -> None:
        out.extend(f"{name}{{{sub.label}}} {sub.open_orders}\n" for sub in self._accounts.values())

    @renders(c.SUBACCOUNT_FILLS)
    def _fills(self, name: str, out: list[str], now: float) -> None:
        buy, sell = c.TRADE_SIDE_LABELS
        for sub in self._accounts.values():
            out.append(f'{name}{{{sub.label},side="{buy}"}} {sub.fills[0]}\n')
            out.append(f'{name}{{{sub.label},side="{sell}"}} {sub.fills[1]}\n')
