"""Per-connection message-id tracking as the indexer really numbers frames.

message_id is one counter per connection, not per channel. Arrival is not monotonic (a `subscribed` frame
waits up to the 5 s snapshot fetch while data frames with higher ids flow), error frames reuse the current
id, and one subscription's ids are not contiguous. Every id of 0..N does arrive on a healthy connection,
though, so a hole that is still open after a grace window longer than the snapshot timeout is a lost frame.

The common case (the next id in order) costs one comparison; an id that jumps ahead records the ids it
skipped with the time they went missing, a late frame clears its id, and expired holes are counted.
"""

from __future__ import annotations

from typing import Final

#: An id further ahead than this cannot come from a healthy connection (that many frames would have been
#: lost without a disconnect): it is refused as corrupt, which also bounds the memory of the hole table.
MAX_TRACKED_HOLES: Final = 100_000
#: How often, at most, the open holes are checked for expiry.
SWEEP_INTERVAL_S: Final = 1.0


class MessageIds:
    __slots__ = ("_fresh", "_grace", "_last_sweep", "_missing", "_next", "fast_next", "lost")

    def __init__(self, grace_seconds: float) -> None:
        self._grace = grace_seconds
        self._next = 0
        #: The next id in order while there is nothing else to do (counting has started, no hole is open),
        #: else None. The hot path may do `if mid == ids.fast_next: ids.fast_next = mid + 1` and call see()
        #: only otherwise: the same bookkeeping without a call per frame.
        self.fast_next: int | None = None
        self._fresh = True  # nothing seen since the connection (re)started
        self._missing: dict[int, float] = {}
        self._last_sweep = 0.0
        self.lost = 0  # ids given up on; the caller exports the running total

    def reset(self) -> None:
        """A new connection: ids restart at 0; holes of the old one are forgotten, not counted (frames in
        flight when a link drops are lost by the disconnect, which is counted on its own)."""
        self._next = 0
        self.fast_next = None
        self._fresh = True
        self._missing.clear()

    def see(self, message_id: int, now: float) -> bool:
        """Record `message_id`; False when it is implausibly far ahead (the frame should be refused)."""
        expected = self.fast_next
        if expected is None:
            expected = self._next
        else:
            self._next = expected
        if message_id == expected:
            self._next = expected + 1
            self._fresh = False
        elif message_id > expected:
            if self._fresh:
                # Joined mid-stream (no `connected` frame seen): start counting from here.
                self._next = message_id + 1
                self._fresh = False
                self.fast_next = self._next
                return True
            if message_id - expected > MAX_TRACKED_HOLES:
                self.fast_next = None if self._missing else expected
                return False
            missing = self._missing
            for hole in range(expected, message_id):
                missing[hole] = now
            self._next = message_id + 1
        elif self._missing:
            # A late frame (typically `subscribed`) or a duplicate (errors reuse the current id).
            self._missing.pop(message_id, None)
        if self._missing and now - self._last_sweep >= SWEEP_INTERVAL_S:
            self.sweep(now)
        self.fast_next = None if self._missing or self._fresh else self._next
        return True

    def sweep(self, now: float) -> None:
        self._last_sweep = now
        deadline = now - self._grace
        missing = self._missing
        expired = []
        # Holes are recorded in arrival order, so the oldest come first.
        for hole, since in missing.items():
            if since > deadline:
                break
            expired.append(hole)
        for hole in expired:
            del missing[hole]
        self.lost += len(expired)

    @property
    def open_holes(self) -> int:
        return len(self._missing)
