"""Trade de-duplication by event id, with bounded memory.

Trade ids are unique 24-hex event ids. Duplicates happen around subscribe time (a snapshot row delivered
again as an update, a batched buffer replayed) and across a resubscribe, so each market remembers the ids
of its most recent trades: a window a little larger than a full 1000-row snapshot.
"""

from __future__ import annotations

from collections import deque
from typing import Final

RECENT_IDS_PER_MARKET: Final = 2048


class RecentIds:
    __slots__ = ("_order", "_seen")

    def __init__(self, capacity: int = RECENT_IDS_PER_MARKET) -> None:
        self._seen: set[str] = set()
        self._order: deque[str] = deque(maxlen=capacity)

    def add(self, trade_id: str) -> bool:
        """Remember `trade_id`; False when it was already known (a duplicate)."""
        seen = self._seen
        if trade_id in seen:
            return False
        order = self._order
        if len(order) == order.maxlen:
            seen.discard(order[0])
        order.append(trade_id)
        seen.add(trade_id)
        return True

    def __len__(self) -> int:
        return len(self._seen)
