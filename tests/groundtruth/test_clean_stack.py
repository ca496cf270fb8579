"""A clean stack fires nothing: the simulator with no fault (its chain's CometBFT RPC too), the real
`dydx-exporter` CLI (every channel, candles and subaccounts included, the chain's and REST's heads polled;
one exporter unbatched, one batched), the real Prometheus running the project's rules and the real
Alertmanager with the project's routes. Over the whole run no alert but `Watchdog` fires in Prometheus,
is held by Alertmanager or is notified at the webhook; once every series has a full range window of
history (a channel with one sample has "not changed", and a channel silent since the exporter started is
meant to be pending from the first evaluation), none is even pending; and the exporters count no invalid
frame, no server error and no reconnect.

Durations of the rules are scaled by 1/30, as in tests/alerts/test_alerts_e2e.py (`for: 5m` -> 10 s), and the
simulator's blocks come every 0.2 s, so the exporter polls the chain and REST heads proportionally faster
(as tests/alerts/test_fault_attribution.py does: a 5 s REST poll would trail by 25 blocks here, 5 in
production). The clean window lasts WINDOW seconds, the scaled equivalent of 20 minutes in production:
every `for:` and every rate window of the rules fits in it several times. Prometheus' own record
(max_over_time of ALERTS) is what is checked, so no evaluation between two polls can be missed.

It found a real false positive: DydxFeedStale fired on v4_subaccounts, a channel that only speaks when the
account trades; the rule now leaves the account channels out.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.prom import (
    AlertmanagerFactory,
    PrometheusFactory,
    alertmanager_test_config,
    scrape_config,
)
from tests.fixtures.rules import write_scaled_rules
from tests.fixtures.simulator import SimulatorFactory
from tests.fixtures.webhook import WebhookReceiver
from tests.groundtruth.support import CliExporter
from tests.helpers import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(180)]

FACTOR = 1 / 30
SCRAPE_INTERVAL = 1.0
MIN_RANGE = 4 * SCRAPE_INTERVAL
WINDOW = 40.0
#: History every scaled range selector needs before "no change in the window" means anything.
WARMUP = MIN_RANGE + 2 * SCRAPE_INTERVAL


async def test_a_clean_stack_fires_nothing_but_the_watchdog(
    tmp_path: Path,
    simulator_factory: SimulatorFactory,
    prometheus_factory: PrometheusFactory,
    alertmanager_factory: AlertmanagerFactory,
    webhook_receiver: WebhookReceiver,
) -> None:
    exporters: list[CliExporter] = []
    try:
        for seed, batched in ((7, False), (8, True)):
            sim = await simulator_factory(
                markets=4, block_time=0.2, rate=1.0, seed=seed, ping_interval=1.0, chain_rpc_port=0
            )
            sub = sim.source.subaccounts[0]  # type: ignore[attr-defined]
            flags = [
                "--candles.resolutions=1MIN,5MINS",
                f"--subaccounts={sub.address}/{sub.number}",
                f"--chain.rpc-url={sim.chain_rpc_url}",
                "--chain.poll-interval=250ms",
                "--rest.height-interval=500ms",
            ]
            exporters.append(await CliExporter.start(sim, *flags, *(["--feed.batched"] if batched else [])))
        am = await alertmanager_factory(alertmanager_test_config(webhook_receiver.url))
        groups = [
            ([e.url.removeprefix("http://")], {"shard": "0/1", "replica": name})
            for e, name in zip(exporters, ("unbatched", "batched"), strict=True)
        ]
        prom = await prometheus_factory(
            scrape_configs=[scrape_config("dydx-exporter", groups=groups)],
            rule_files=write_scaled_rules(tmp_path / "rules", FACTOR, MIN_RANGE),
            alertmanager_urls=[am.url],
            scrape_interval=SCRAPE_INTERVAL,
            evaluation_interval=SCRAPE_INTERVAL,
        )
        began = time.monotonic()
        await prom.wait_targets_up("dydx-exporter", timeout=20)
        await am.wait_for_alert(
            "Watchdog", timeout=20
        )  # the alerting path works: silence below means something
        await webhook_receiver.wait_for_alert("Watchdog", path="/watchdog", timeout=20)

        async def flowing() -> bool:
            moving = await prom.query("instance:dydx_block_height:deriv1m > 0")
            rates = await prom.query("instance:dydx_ws_messages:rate5m > 0")
            # The chain rules judge real data: the chain's head against the WebSocket's, REST's too.
            chain = await prom.query("instance:dydx_block_height:behind_chain")
            rest = await prom.query("instance:dydx_rest_block_height:behind_ws")
            return len(moving) == len(rates) == len(chain) == len(rest) == len(exporters)

        await wait_for(flowing, 30, interval=0.5, message="both exporters' data in Prometheus")
        window_from = time.monotonic() + WARMUP
        await wait_for(lambda: time.monotonic() - window_from >= WINDOW, WARMUP + WINDOW + 5, interval=0.5)

        def described(result: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
            return sorted(
                (m["alertname"], m["alertstate"], m.get("replica", ""), m.get("channel", ""))
                for m in (r["metric"] for r in result)
            )

        run = f"{int(time.monotonic() - began) + 2}s"
        fired = await prom.query(
            f'max_over_time(ALERTS{{alertname!="Watchdog", alertstate="firing"}}[{run}])'
        )
        assert described(fired) == [], "fired on a clean feed"
        window = f"{int(time.monotonic() - window_from)}s"
        raised = await prom.query(f'max_over_time(ALERTS{{alertname!="Watchdog"}}[{window}])')
        assert described(raised) == [], "pending or firing on a clean feed"
        held = [a["labels"]["alertname"] for a in await am.alerts()]
        assert held == ["Watchdog"], held
        notified = {a["labels"]["alertname"] for note in webhook_receiver.notifications for a in note.alerts}
        assert notified == {"Watchdog"}, notified
        assert await prom.query("sum by (replica) (dydx_messages_invalid_total) > 0") == []
        assert await prom.query("sum by (replica) (dydx_ws_errors_total) > 0") == []
        assert await prom.query("sum by (replica) (dydx_ws_reconnects_total) > 0") == []
        for exporter in exporters:
            assert exporter.invalid_logs() == []
    finally:
        for exporter in exporters:
            await exporter.stop()
