"""The fault registry (exporter.simulator.faults.KINDS) is the one list of fault kinds: the control API
validates every request against each kind's typed schema and lists it at /control/ and /, the fault matrix
and the soak cover every kind, and `cross` with `recross` keeps crossing the book after every resync."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from exporter.protocol import channels as ch
from exporter.simulator.faults import KINDS, FaultKind, parse
from exporter.simulator.faults.base import lasting
from exporter.simulator.server import Simulator
from tests.fixtures.simulator import SimulatorFactory, control
from tests.fixtures.support import metrics
from tests.helpers import metric_sum, metric_value, wait_for
from tests.simulator.conftest import ProbeFactory
from tests.simulator.test_faults import crossed

pytestmark = pytest.mark.timeout(30)
FAULTS = "/control/faults"
#: A JSON value of the wrong type for every field type the schemas use.
WRONG = {"string": 7, "integer": "7", "number": "7", "boolean": "yes"}


@pytest.fixture
async def sim(simulator_factory: SimulatorFactory) -> Simulator:
    return await simulator_factory(markets=3, block_time=0.05, rate=2)


def test_every_kind_is_in_the_fault_matrix_and_the_soak() -> None:
    from tests.reliability.test_fault_matrix import CASES
    from tests.soak import draw_fault

    matrix = [request for case in CASES.values() for request in case.faults]
    in_matrix = {request["kind"] for request in matrix}
    assert set(KINDS) <= in_matrix, f"no fault-matrix case for {sorted(set(KINDS) - in_matrix)}"
    rng = random.Random(1)
    soak = [r for _ in range(2000) for r in draw_fault(rng, ["BTC-USD"]).requests]
    drawn = {r["kind"] for r in soak}
    assert drawn == set(KINDS), f"the soak draws {sorted(drawn)}, the registry has {sorted(KINDS)}"
    for request in matrix + soak:  # and every request they make is one the control API accepts
        parse(request)


async def test_every_field_of_every_kind_is_checked_by_type_and_presence(sim: Simulator) -> None:
    """For each kind: an unknown field, each field with a value of the wrong type, and each required field
    left out are refused with 400 naming the kind and the field; nothing is left in force."""
    for name, kind in KINDS.items():
        required = {f.name: _valid(f.json_type, f.name) for f in kind.fields if f.required}
        answer = await control(sim, "POST", FAULTS, {"kind": name, **required, "colour": 1}, expect=400)
        assert f"unknown field(s) for {name}: colour" in answer["error"]
        for field in kind.fields:
            body = {"kind": name, **required, field.name: WRONG[field.json_type]}
            answer = await control(sim, "POST", FAULTS, body, expect=400)
            assert f"{name}.{field.name} must be" in answer["error"], answer
            if field.required:
                body = {"kind": name, **{k: v for k, v in required.items() if k != field.name}}
                answer = await control(sim, "POST", FAULTS, body, expect=400)
                assert answer["error"] == f"{name} needs {field.name!r}"
    assert (await control(sim, "GET", FAULTS))["faults"] == []


def test_a_kind_is_documented_by_its_parameters_docstring() -> None:
    """The help GET /control/ lists is the parameters' docstring on one line; a kind whose parameters have
    none (dataclass would put its signature there) fails when it is declared, not at a request."""
    assert KINDS["ghost_level"].help.startswith("an order book level in the stream that the indexer's book")
    assert all(kind.help and "\n" not in kind.help for kind in KINDS.values())

    @dataclass(frozen=True)
    class Undocumented:
        seconds: float | None = lasting()

    with pytest.raises(TypeError, match="Undocumented needs a docstring"):
        FaultKind("undocumented", Undocumented)


def test_a_kind_has_at_most_one_lasting_field() -> None:
    """Which of two durations bounds the fault would be a guess: refused where the kind is declared."""

    @dataclass(frozen=True)
    class TwoLengths:
        """two durations"""

        seconds: float | None = lasting()
        duration: float | None = lasting()

    with pytest.raises(TypeError, match="more than one lasting"):
        FaultKind("two_lengths", TwoLengths)


def _valid(json_type: str, name: str) -> Any:
    return {"string": "BTC-USD", "integer": 1, "number": 1.0, "boolean": True}[json_type]


async def test_control_index_lists_every_endpoint_and_kind_with_its_parameters(sim: Simulator) -> None:
    index = await control(sim, "GET", "/control/")
    paths = {e["path"]: e for e in index["endpoints"]}
    for path in ("/", "/v4/ws", "/v4/perpetualMarkets", "/metrics", "/control/", FAULTS, "/control/truth"):
        assert path in paths, path
    undocumented = sorted(path for path, entry in paths.items() if not entry["help"])
    assert not undocumented, f"add these to control.ENDPOINT_HELP: {undocumented}"
    assert set(paths[FAULTS]["methods"]) == {"GET", "POST", "DELETE"}
    listed = {k["kind"]: k for k in index["fault_kinds"]}
    assert list(listed) == list(KINDS)
    for name, kind in KINDS.items():
        assert set(listed[name]["params"]) == {f.name for f in kind.fields}
        assert all(p["help"] for p in listed[name]["params"].values())
    assert listed["cross"]["params"]["market"] == {
        "type": "string",
        "required": True,
        "help": "the market whose order book crosses",
    }
    assert listed["cross"]["params"]["recross"]["default"] is False
    async with aiohttp.ClientSession() as session, session.get(sim.base_url + "/") as resp:
        assert resp.status == 200 and resp.content_type == "text/html"
        page = await resp.text()
    for name, kind in KINDS.items():
        assert f"<code>{name}</code>" in page
        for field in kind.fields:
            assert f"<code>{field.name}</code>" in page
    assert '<a href="/control/">/control/</a>' in page and f"ws://127.0.0.1:{sim.port}/v4/ws" in page
    # Every endpoint the index names answers something other than 404 (templated ones with a ticker).
    async with aiohttp.ClientSession() as session:
        for path, entry in paths.items():
            if "GET" in entry["methods"] and path != "/v4/ws":
                url = sim.base_url + re.sub(r"\{ticker\}", "BTC-USD", path)
                async with session.get(url) as resp:
                    assert resp.status != 404, path


async def test_recross_crosses_every_new_snapshot_again(sim: Simulator, probes: ProbeFactory) -> None:
    """A resubscribe (what the exporter does to a book that stays crossed) gets an uncrossed snapshot, and
    right after it the crossing level again, while the fault lasts; without recross it stays uncrossed."""
    market = "ETH-USD"
    await control(sim, "POST", "/control/pause")  # only faults publish: every update below is theirs
    probe = await probes(sim)
    await probe.subscribe(ch.ORDERBOOK, market)
    await probe.next_type("subscribed")
    await control(sim, "POST", FAULTS, {"kind": "cross", "market": market, "recross": True})
    await wait_for(lambda: crossed(probe, market), message="crossed by the fault")
    await probe.send({"type": "unsubscribe", "channel": ch.ORDERBOOK, "id": market})
    await probe.next_type("unsubscribed")
    await probe.subscribe(ch.ORDERBOOK, market)  # (a third subscribe within 1 s would be rate limited)
    snapshot = await probe.next_type("subscribed")
    bids, asks = snapshot["contents"]["bids"], snapshot["contents"]["asks"]
    assert float(bids[0]["price"]) < float(asks[0]["price"]), "the snapshot itself is uncrossed"
    await wait_for(lambda: crossed(probe, market), message="crossed again after the snapshot")
    other = await probes(sim)  # and a new connection's snapshot
    await other.subscribe(ch.ORDERBOOK, market)
    await other.next_type("subscribed")
    await wait_for(lambda: crossed(other, market), message="a new subscriber's book crosses too")
    await control(sim, "DELETE", FAULTS)
    await wait_for(lambda: not crossed(probe, market), message="uncrossed once cleared")
    # Without recross, a new snapshot is followed by nothing (the market is paused).
    await control(sim, "POST", FAULTS, {"kind": "cross", "market": market})
    published = sim.stats.updates[ch.ORDERBOOK]
    third = await probes(sim)
    await third.subscribe(ch.ORDERBOOK, market)
    await third.next_type("subscribed")
    assert sim.stats.updates[ch.ORDERBOOK] == published and not crossed(third, market)


async def test_exporter_book_stays_crossed_across_its_crossed_resyncs(
    sim: Simulator, exporter_factory: Any
) -> None:
    """The README's `cross` drill: the exporter resubscribes a book crossed for longer than
    --orderbook.crossed-resync-after, and with recross the book is crossed again after each resync, so the
    time spent crossed (what DydxOrderbookCrossed is defined on) keeps growing."""
    market = "BTC-USD"
    exp = await exporter_factory(sim, markets=(market,), crossed_resync_after=0.3)
    await wait_for(lambda: sim.hub.counts().get(ch.ORDERBOOK, 0) >= 1, message="exporter subscribed")
    await control(sim, "POST", FAULTS, {"kind": "cross", "market": market, "recross": True})

    async def resyncs_and_crossed() -> bool:
        samples = await metrics(exp)
        resyncs = metric_sum(samples, "dydx_orderbook_resyncs_total", market=market, reason="crossed")
        return resyncs >= 3 and metric_value(samples, "dydx_orderbook_crossed", market=market) == 1

    await wait_for(resyncs_and_crossed, timeout=15, message="three crossed resyncs, crossed after each")
    samples = await metrics(exp)
    first = metric_sum(samples, "dydx_orderbook_crossed_seconds_total", market=market)
    resyncs = metric_sum(samples, "dydx_orderbook_resyncs_total", market=market, reason="crossed")

    async def accrued() -> bool:  # over two more resyncs (without recross it would stop at the first)
        samples = await metrics(exp)
        return (
            metric_sum(samples, "dydx_orderbook_resyncs_total", market=market, reason="crossed")
            >= resyncs + 2
            and metric_sum(samples, "dydx_orderbook_crossed_seconds_total", market=market) >= first + 0.5
        )

    await wait_for(accrued, timeout=15, message="crossed time keeps accruing across resyncs")
