"""Any client message, however shaped, gets the protocol's answer and never hurts the connection or the
server (property-based, over a real socket)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.protocol import channels as ch
from exporter.simulator.server import Simulator, SimulatorConfig
from tests.simulator.probe import Probe

pytestmark = pytest.mark.timeout(60)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
messages = (
    st.fixed_dictionaries(
        {},
        optional={
            "type": st.sampled_from(["subscribe", "unsubscribe", "ping", "pong", ""]) | json_values,
            "channel": st.sampled_from(ch.ALL_CHANNELS) | json_values,
            "id": st.sampled_from(["BTC-USD", "ETH-USD/1MIN", "NOPE-USD", ""]) | json_values,
            "batched": json_values,
        },
    )
    | json_values
)


@pytest.fixture(scope="module")
def loop_sim() -> Iterator[tuple[asyncio.AbstractEventLoop, Simulator]]:
    """One simulator for all examples (hypothesis re-runs the test body, not the fixtures)."""
    loop = asyncio.new_event_loop()
    sim = Simulator(SimulatorConfig(port=0, markets=3, block_time=0.5, snapshot_delay=0.0))
    loop.run_until_complete(sim.start())
    try:
        yield loop, sim
    finally:
        loop.run_until_complete(sim.stop())
        loop.close()


async def exchange(sim: Simulator, message: Any) -> Probe:
    probe = await Probe.open(sim.ws_url)
    try:
        await probe.next_type("connected")
        await probe.send(orjson.dumps(message).decode())
        await probe.send({"type": "subscribe", "channel": ch.BLOCK_HEIGHT, "id": "fuzz-sentinel"})
        await probe.next(
            lambda f: f.get("id") == "fuzz-sentinel" or (f.get("type") == "error" and "limit" in f["message"])
        )
        return probe
    finally:
        await probe.close()


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(message=messages)
def test_any_message_gets_a_protocol_answer(
    loop_sim: tuple[asyncio.AbstractEventLoop, Simulator], message: Any
) -> None:
    loop, sim = loop_sim
    probe = loop.run_until_complete(asyncio.wait_for(exchange(sim, message), 10))
    replies = [f for f in probe.frames[1:-1] if f["type"] not in ("channel_data", "channel_batch_data")]
    assert len(replies) <= 1, replies
    for reply in replies:
        assert reply["type"] in ("error", "subscribed", "unsubscribed")
        if reply["type"] == "error":
            assert ch.classify_error(reply["message"]) != ch.ERROR_REASON_OTHER, reply["message"]
    if isinstance(message, dict) and message.get("type") == "ping":
        assert replies == [], "a JSON ping gets no answer"
    assert probe.close_code in (None, 1000)
