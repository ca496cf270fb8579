"""The shipped alertmanager.yml in the real Alertmanager: routes by severity and inhibition.

Alerts are posted the way Prometheus posts them; the webhook receiver records what comes out, by path
(one path per receiver), so the test sees the route each alert took.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.fixtures.prom import AlertmanagerFactory, alertmanager_test_config
from tests.fixtures.webhook import WebhookReceiver

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

TARGET = {"job": "dydx-exporter", "shard": "0/1", "replica": "a"}


def alert(name: str, severity: str, **labels: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "labels": {"alertname": name, "severity": severity, **labels},
        "annotations": {"summary": f"{name} test"},
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(hours=1)).isoformat(),
    }


async def test_routes_by_severity_and_watchdog_has_its_own_receiver(
    alertmanager_factory: AlertmanagerFactory, webhook_receiver: WebhookReceiver
) -> None:
    am = await alertmanager_factory(alertmanager_test_config(webhook_receiver.url))
    await am.post_alerts(
        [
            alert("Watchdog", "info"),
            alert("DydxBlockHeightStalled", "critical", instance="a:9741", **TARGET),
            alert("DydxOrderbookCrossed", "warning", instance="a:9741", market="BTC-USD", **TARGET),
        ]
    )
    await webhook_receiver.wait_for_alert("Watchdog", path="/watchdog", timeout=15)
    await webhook_receiver.wait_for_alert("DydxBlockHeightStalled", path="/critical", timeout=15)
    await webhook_receiver.wait_for_alert(
        "DydxOrderbookCrossed", path="/warning", timeout=15, market="BTC-USD"
    )
    paths = {(n.path, a["labels"]["alertname"]) for n in webhook_receiver.notifications for a in n.alerts}
    assert paths == {
        ("/watchdog", "Watchdog"),
        ("/critical", "DydxBlockHeightStalled"),
        ("/warning", "DydxOrderbookCrossed"),
    }


async def test_exporter_down_inhibits_the_feed_alerts_of_its_instance_only(
    alertmanager_factory: AlertmanagerFactory, webhook_receiver: WebhookReceiver
) -> None:
    am = await alertmanager_factory(alertmanager_test_config(webhook_receiver.url))
    down = alert("DydxExporterDown", "critical", instance="a:9741", **TARGET)
    await am.post_alerts([down])
    await am.wait_for_alert("DydxExporterDown", timeout=10)
    await am.post_alerts(
        [
            alert("DydxFeedStale", "warning", instance="a:9741", channel="v4_trades", **TARGET),
            alert("DydxFeedStale", "warning", instance="b:9741", channel="v4_trades", **TARGET),
        ]
    )

    # b is notified; a is held back by the inhibition, and Alertmanager says by which alert.
    await webhook_receiver.wait_for_alert("DydxFeedStale", path="/warning", timeout=15, instance="b:9741")
    [stale_a] = await am.wait_for_alert("DydxFeedStale", timeout=10, instance="a:9741")
    assert stale_a["status"]["state"] == "suppressed"
    assert stale_a["status"]["inhibitedBy"]
    [stale_b] = await am.alerts("DydxFeedStale", {"instance": "b:9741"})
    assert stale_b["status"]["state"] == "active"
    assert not webhook_receiver.received("DydxFeedStale", instance="a:9741")

    # The exporter is back: the feed alert it was hiding is delivered.
    resolved = dict(down, endsAt=datetime.now(UTC).isoformat())
    await am.post_alerts([resolved])
    await webhook_receiver.wait_for_alert("DydxFeedStale", path="/warning", timeout=15, instance="a:9741")
    await webhook_receiver.wait_for_alert("DydxExporterDown", status="resolved", path="/critical", timeout=15)


async def test_a_crossed_book_inhibits_its_own_resync_loop_only(
    alertmanager_factory: AlertmanagerFactory, webhook_receiver: WebhookReceiver
) -> None:
    am = await alertmanager_factory(alertmanager_test_config(webhook_receiver.url))
    await am.post_alerts(
        [alert("DydxOrderbookCrossed", "warning", instance="a:9741", market="BTC-USD", **TARGET)]
    )
    await am.wait_for_alert("DydxOrderbookCrossed", timeout=10)
    await am.post_alerts(
        [
            alert("DydxOrderbookResyncLoop", "warning", instance="a:9741", market="BTC-USD", **TARGET),
            alert("DydxOrderbookResyncLoop", "warning", instance="a:9741", market="ETH-USD", **TARGET),
        ]
    )

    # ETH-USD's loop is news; BTC-USD's is already told by its crossed-book alert.
    await webhook_receiver.wait_for_alert(
        "DydxOrderbookResyncLoop", path="/warning", timeout=15, market="ETH-USD"
    )
    [loop_btc] = await am.wait_for_alert("DydxOrderbookResyncLoop", timeout=10, market="BTC-USD")
    assert loop_btc["status"]["state"] == "suppressed"
    assert loop_btc["status"]["inhibitedBy"]
    assert not webhook_receiver.received("DydxOrderbookResyncLoop", market="BTC-USD")
