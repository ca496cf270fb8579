"""v4_block_height: every link's latest block (each link subscribes it), the freshest live link's as
dydx_block_height, and the feed's latency per block."""

from __future__ import annotations

from typing import Any

from exporter.protocol.frames import integer
from exporter.state.context import ChannelHandler, FrameContext


class BlockHeightHandler(ChannelHandler):
    def snapshot(self, ctx: FrameContext, sub_id: str | None, contents: Any) -> None:
        self._block(ctx, contents, "height", "bad_number")

    def update(self, ctx: FrameContext, sub_id: Any, contents: Any) -> None:
        stamp = self._block(ctx, contents, "blockHeight", "missing_field")
        if stamp is not None:
            self.shared.exchange.observe(ctx.cm.latency, stamp, ctx.received_at)  # type: ignore[arg-type]

    def _block(self, ctx: FrameContext, contents: Any, field: str, missing: str) -> float | None:
        """The block a snapshot (`height`) or an update (`blockHeight`) names; its time, or None (counted
        under `missing` when `field` is absent)."""
        if contents.__class__ is not dict:
            ctx.invalid("wrong_type", contents)
            return None
        height = integer(contents.get(field))
        stamp = self.shared.timestamp(contents.get("time"))
        if height is None or stamp is None:
            ctx.invalid("bad_number" if field in contents else missing, contents)
            return None
        collector = self.shared.collector
        collector.block_height, collector.block_timestamp = collector.heads.link_block(
            ctx.link, height, stamp
        )
        return stamp

    def link_closed(self, link: str, now: float) -> None:
        self.shared.collector.heads.link_closed(link)
