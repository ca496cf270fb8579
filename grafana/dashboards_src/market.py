"""dYdX market drilldown: one market's book, trades and price quality (the `market` variable)."""

from __future__ import annotations

from grafana_foundation_sdk.models.dashboard import Dashboard

from grafana.blocks import (
    DEDUP,
    MARKET,
    PanelBuilder,
    Q,
    age,
    build_dashboard,
    event_bars,
    events,
    graph,
    listing,
    query_variable,
    rate,
    sel,
    states,
)

M = 'market=~"$market"'


def _book() -> list[PanelBuilder]:
    return [
        graph(
            "Best bid and ask",
            "Top of the uncrossed book, by side.",
            "none",
            [Q(f"{DEDUP} ({sel('dydx_orderbook_best_price', M)})", "{{market}} {{side}}")],
        ),
        graph(
            "Spread",
            "(best ask - best bid) / mid, from the uncrossed book.",
            "percentunit",
            [Q(f"{DEDUP} ({sel('dydx_orderbook_spread_ratio', M)})", "{{market}}")],
        ),
        states(
            "Crossed book",
            "Whether the book, as the feed delivered it, is crossed (best bid >= best ask). "
            "Brief crossings are normal on dYdX; long ones mean ghost levels.",
            [Q(f"{DEDUP} ({sel('dydx_orderbook_crossed', M)})", "{{market}}")],
            {"0": ("uncrossed", "green"), "1": ("crossed", "orange")},
            width=8,
        ),
        event_bars(
            "Crossed periods started",
            "Times the book became crossed: whole events, one bar per minute (wider bars on long ranges); "
            "the legend totals the range.",
            [Q(events("dydx_orderbook_crossed_total", M, by="market", dedup=True), "{{market}}")],
            width=8,
        ),
        graph(
            "Time spent crossed",
            "Share of the time the book as delivered was crossed (seconds crossed per second).",
            "percentunit",
            [
                Q(
                    f"{DEDUP} ({rate('dydx_orderbook_crossed_seconds_total', M)})",
                    "{{market}}",
                )
            ],
            width=8,
            min_value=0,
        ),
        graph(
            "Book levels",
            "Price levels held per side.",
            "none",
            [Q(f"{DEDUP} ({sel('dydx_orderbook_levels', M)})", "{{market}} {{side}}")],
            width=8,
            integer=True,
        ),
        graph(
            "Book updates",
            "Order-book level updates applied per second (snapshots not counted).",
            "cps",
            [Q(f"sum by (market) ({DEDUP} ({rate('dydx_orderbook_updates_total', M)}))", "{{market}}")],
            width=8,
        ),
        event_bars(
            "Book resyncs by reason",
            "Times the book was rebuilt from a fresh snapshot, by reason: whole events, one bar per minute "
            "(wider bars on long ranges); the legend totals the range.",
            [
                Q(
                    events("dydx_orderbook_resyncs_total", M, by="market, reason", dedup=True),
                    "{{market}} {{reason}}",
                )
            ],
            width=8,
        ),
    ]


def _trades() -> list[PanelBuilder]:
    def by_side(metric: str) -> str:
        return f"sum by (market, side) ({DEDUP} ({rate(metric, M)}))"

    return [
        graph(
            "Trades by side",
            "Live trades per second, by taker side.",
            "cps",
            [Q(by_side("dydx_trades_total"), "{{market}} {{side}}")],
            width=8,
        ),
        graph(
            "Volume by side",
            "Traded size per second in the market's base units (BTC for BTC-USD), by taker side.",
            "count:/s",
            [Q(by_side("dydx_trade_volume_total"), "{{market}} {{side}}")],
            width=8,
        ),
        graph(
            "Notional by side",
            "Traded value per second in quote units (USD), by taker side.",
            "count:USD/s",
            [Q(by_side("dydx_trade_notional_total"), "{{market}} {{side}}")],
            width=8,
        ),
        graph(
            "Last trade vs oracle price",
            "The last traded price and the oracle price.",
            "none",
            [
                Q(f"{DEDUP} ({sel('dydx_last_trade_price', M)})", "{{market}} last trade"),
                Q(f"{DEDUP} ({sel('dydx_oracle_price', M)})", "{{market}} oracle"),
            ],
        ),
        graph(
            "Last trade deviation from oracle",
            "(last trade - oracle) / oracle: a feed that stopped moving drifts away from the oracle.",
            "percentunit",
            [
                Q(
                    f"({DEDUP} ({sel('dydx_last_trade_price', M)}) - on (job, market) "
                    f"{DEDUP} ({sel('dydx_oracle_price', M)})) / on (job, market) "
                    f"{DEDUP} ({sel('dydx_oracle_price', M)})",
                    "{{market}}",
                )
            ],
        ),
    ]


def _freshness() -> list[PanelBuilder]:
    return [
        graph(
            "Data age",
            "Age of the market's last snapshot or update when last scraped, per channel (v4_orderbook, "
            "v4_trades, v4_candles; v4_markets is its oracle price), freshest replica. A market that ages "
            "while the link is up is stale; an illiquid one ages on the wire too, so compare with its usual "
            "level.",
            "s",
            [
                Q(
                    f"min by (market, channel) ({age('dydx_market_last_update_timestamp_seconds', M)})",
                    "{{market}} {{channel}}",
                )
            ],
            min_value=0,
        ),
        listing(
            "Market status",
            "Status of the selected markets as the indexer lists them (ACTIVE, PAUSED, FINAL_SETTLEMENT...).",
            [Q(f"{DEDUP} ({sel('dydx_market_info', M)})")],
        ),
    ]


def _quality() -> list[PanelBuilder]:
    """Whether the book and the oracle price can be trusted: the exporter's audits of the held book
    against REST snapshots (every --orderbook.audit-interval), and the oracle against the book."""
    return [
        event_bars(
            "Book audits",
            "Audits of the held book against a fresh REST snapshot (every --orderbook.audit-interval, "
            "books in turn): whole audits, one bar per minute (wider bars on long ranges).",
            [Q(events("dydx_orderbook_audits_total", M, by="market", dedup=True), "{{market}}")],
            width=8,
        ),
        event_bars(
            "Audit mismatched levels by kind",
            "Levels an audit found wrong (missing: in the snapshot only; extra: held only; size: sizes "
            "differ), leaving out levels updated in the race window: whole levels per minute.",
            [
                Q(
                    events("dydx_orderbook_audit_mismatched_levels_total", M, by="market, kind", dedup=True),
                    "{{market}} {{kind}}",
                )
            ],
            width=8,
        ),
        event_bars(
            "Candle gaps by resolution",
            "Candle periods skipped (a subscribed candle's start jumped by more than one period), by "
            "resolution: whole periods per minute. Empty without --candles.resolutions.",
            [
                Q(
                    events("dydx_candle_gaps_total", M, by="market, resolution", dedup=True),
                    "{{market}} {{resolution}}",
                )
            ],
            width=8,
        ),
        graph(
            "Audit mismatch ratio",
            "Mismatched levels over levels compared, in the market's latest audit (0 is a right book).",
            "percentunit",
            [Q(f"{DEDUP} ({sel('dydx_orderbook_audit_mismatch_ratio', M)})", "{{market}}")],
            width=8,
            min_value=0,
        ),
        graph(
            "Oracle vs book mid",
            "Distance of the oracle price from the mid of the uncrossed two-sided book, over the mid.",
            "percentunit",
            [Q(f"{DEDUP} ({sel('dydx_oracle_mid_deviation_ratio', M)})", "{{market}}")],
            width=8,
            min_value=0,
        ),
        graph(
            "Oracle price age",
            "Exchange time of the latest oracle price (effectiveAt) to the scrape, freshest replica: an "
            "oracle that stops updating while the market trades is stale.",
            "s",
            [
                Q(
                    f"min by (market) ({age('dydx_oracle_price_timestamp_seconds', M)})",
                    "{{market}}",
                )
            ],
            width=8,
            min_value=0,
        ),
    ]


def build() -> Dashboard:
    return build_dashboard(
        MARKET,
        "One market at a time: order book top, spread and crossings, trades and volume by side, last trade "
        "against the oracle price, and how fresh the market's data is.",
        [
            ("Order book", _book()),
            ("Trades and prices", _trades()),
            ("Data quality", _quality()),
            ("Freshness", _freshness()),
        ],
        variables=[
            query_variable(
                "market",
                "Market",
                'label_values(dydx_market_info{job=~"$job", instance=~"$instance"}, market)',
                include_all=False,
            )
        ],
    )
