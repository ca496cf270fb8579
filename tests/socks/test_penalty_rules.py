"""The abuse rule's parts on a fake clock (what the socket tests cannot wait for: the 10 s window sliding,
the 60 s edge window, the 300 s block running out), the address socks penalizes, and how the exporter
reads a 4008's reason and a refused handshake. Well under a second of test time."""

from __future__ import annotations

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict, CIMultiDictProxy

from exporter.feed.errors import classify_connect_error, penalty_seconds
from exporter.protocol import channels as ch
from exporter.simulator.penalty import AbuseCounter, PenaltyBox, client_address


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_more_than_five_hits_within_ten_seconds() -> None:
    counter = AbuseCounter()
    assert not any(counter.hit(t) for t in (0.0, 2.0, 4.0, 6.0, 8.0))
    assert counter.hit(9.9), "the 6th hit within 10 s"
    spread = AbuseCounter()
    assert not any(spread.hit(t * 2.5) for t in range(20)), "one hit every 2.5 s never trips it"


def test_penalty_then_edge_block_then_free() -> None:
    clock = Clock()
    box = PenaltyBox(edge_block=True, clock=clock)
    assert box.refusal("10.0.0.1") is None
    box.penalize("10.0.0.1", ch.RECONNECT_PENALTY_S)
    assert box.refusal("10.0.0.2") is None, "per address"
    for n in range(ch.EDGE_BLOCK_REFUSALS):
        clock.now += 1.0
        refused = box.refusal("10.0.0.1")
        assert refused is not None and refused.status == 429
        assert refused.headers["Retry-After"] == str(ch.RECONNECT_PENALTY_S - n - 1)
        assert refused.headers[ch.RATELIMIT_REASON_HEADER] == ch.RATELIMIT_REASON_ABUSE
    clock.now += 100.0  # the 30 s penalty is long over; the edge block is not
    blocked = box.refusal("10.0.0.1")
    assert blocked is not None and blocked.status == 429 and blocked.body is not None
    assert orjson.loads(bytes(blocked.body))["error"] == ch.EDGE_BLOCK_ERROR  # type: ignore[arg-type]
    clock.now += ch.EDGE_BLOCK_S
    assert box.refusal("10.0.0.1") is None


def test_no_edge_block_unless_asked() -> None:
    clock = Clock()
    box = PenaltyBox(clock=clock)
    box.penalize("10.0.0.1", 30)
    for _ in range(10):
        clock.now += 1.0
        refused = box.refusal("10.0.0.1")
        assert refused is not None and ch.RATELIMIT_REASON_HEADER in refused.headers
    clock.now += 30.0
    assert box.refusal("10.0.0.1") is None


@pytest.mark.parametrize(
    ("headers", "address"),
    [
        ({"cf-connecting-ip": "203.0.113.7", "x-forwarded-for": "198.51.100.1"}, "203.0.113.7"),
        ({"x-forwarded-for": "198.51.100.1, 10.0.0.9"}, "198.51.100.1"),
        ({}, "127.0.0.1"),
    ],
)
def test_the_address_socks_penalizes(headers: dict[str, str], address: str) -> None:
    request = make_mocked_request("GET", "/v4/ws", headers=headers)
    if not headers:
        assert client_address(request) == (request.remote or "")
    else:
        assert client_address(request) == address


@pytest.mark.parametrize(
    ("reason", "seconds"),
    [
        (ch.subscription_limit_abuse_reason(30), 30.0),
        (ch.subscription_limit_abuse_reason(7), 7.0),
        ('{"retryAfterSeconds":0}', 30.0),
        ('{"retryAfterSeconds":true}', 30.0),
        ('{"retryAfterSeconds":1e9}', 30.0),
        ("[1]", 30.0),
        ("not json", 30.0),
        ("", 30.0),
    ],
)
def test_penalty_seconds_from_the_close_reason(reason: str, seconds: float) -> None:
    assert penalty_seconds(reason) == seconds


def handshake_error(headers: dict[str, str]) -> aiohttp.WSServerHandshakeError:
    return aiohttp.WSServerHandshakeError(
        None,  # type: ignore[arg-type]
        (),
        status=429,
        message="Too Many Requests",
        headers=CIMultiDictProxy(CIMultiDict(headers)),
    )


def test_a_penalty_429_is_penalized_and_any_other_429_is_http_429() -> None:
    penalty = {"Retry-After": "30", ch.RATELIMIT_REASON_HEADER: ch.RATELIMIT_REASON_ABUSE}
    assert classify_connect_error(handshake_error(penalty)) == ("penalized", 30.0)
    assert classify_connect_error(handshake_error({"Retry-After": "5"})) == ("http_429", 5.0)
