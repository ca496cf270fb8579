"""dYdX market drilldown: one market's book, trades and price quality (the `market` variable)."""

from __future__ import annotations

from grafana_foundation_sdk.models.dashboard import Dashboard

from grafana.blocks import (
    MARKET,
    PanelBuilder,
    Q,
    age,
    build_dashboard,
    event_bars,
    events,
    graph,
    legend,
    listing,
    one_replica,
    per,
    per_second,
    query_variable,
    rate,
    sel,
    states,
)

M = 'market=~"$market"'


def _selected(metric: str, *, by: str = "market") -> Q:
    """`metric` of the selected markets, one replica of each HA pair, a series per value of `by`."""
    return Q(one_replica(sel(metric, M)), legend(by))


def _events(title: str, description: str, counter: str, *, by: str = "market") -> PanelBuilder:
    """Whole events of the selected markets' `counter`, one replica of each HA pair, a series per value of
    the labels `by`; a third of the row wide."""
    return event_bars(title, description, [events(counter, M, by=by, dedup=True)], width=8)


def _book() -> list[PanelBuilder]:
    return [
        graph(
            "Best bid and ask",
            "Top of the uncrossed book, by side.",
            "none",
            [_selected("dydx_orderbook_best_price", by="market, side")],
        ),
        graph(
            "Spread",
            "(best ask - best bid) / mid, from the uncrossed book.",
            "percentunit",
            [_selected("dydx_orderbook_spread_ratio")],
        ),
        states(
            "Crossed book",
            "Whether the book, as the feed delivered it, is crossed (best bid >= best ask). "
            "Brief crossings are normal on dYdX; long ones mean ghost levels.",
            [_selected("dydx_orderbook_crossed")],
            {"0": ("uncrossed", "green"), "1": ("crossed", "orange")},
            width=8,
        ),
        _events(
            "Crossed periods started",
            "Times the book became crossed: whole events, one bar per minute (wider bars on long ranges); "
            "the legend totals the range.",
            "dydx_orderbook_crossed_total",
        ),
        graph(
            "Time spent crossed",
            "Share of the time the book as delivered was crossed (seconds crossed per second).",
            "percentunit",
            [Q(one_replica(rate("dydx_orderbook_crossed_seconds_total", M)), legend("market"))],
            width=8,
            min_value=0,
        ),
        graph(
            "Book levels",
            "Price levels held per side.",
            "none",
            [_selected("dydx_orderbook_levels", by="market, side")],
            width=8,
            integer=True,
        ),
        per_second(
            "Book updates",
            "Order-book level updates applied per second (snapshots not counted).",
            "cps",
            "dydx_orderbook_updates_total",
            M,
            by="market",
            dedup=True,
            width=8,
        ),
        _events(
            "Book resyncs by reason",
            "Times the book was rebuilt from a fresh snapshot, by reason: whole events, one bar per minute "
            "(wider bars on long ranges); the legend totals the range.",
            "dydx_orderbook_resyncs_total",
            by="market, reason",
        ),
    ]


#: The trade counters drawn per second by taker side: (title, description, unit, counter).
BY_SIDE: tuple[tuple[str, str, str, str], ...] = (
    ("Trades by side", "Live trades per second, by taker side.", "cps", "dydx_trades_total"),
    (
        "Volume by side",
        "Traded size per second in the market's base units (BTC for BTC-USD), by taker side.",
        "count:/s",
        "dydx_trade_volume_total",
    ),
    (
        "Notional by side",
        "Traded value per second in quote units (USD), by taker side.",
        "count:USD/s",
        "dydx_trade_notional_total",
    ),
)


def _trades() -> list[PanelBuilder]:
    last, oracle = one_replica(sel("dydx_last_trade_price", M)), one_replica(sel("dydx_oracle_price", M))
    return [
        *(
            per_second(title, description, unit, counter, M, by="market, side", dedup=True, width=8)
            for title, description, unit, counter in BY_SIDE
        ),
        graph(
            "Last trade vs oracle price",
            "The last traded price and the oracle price.",
            "none",
            [Q(last, "{{market}} last trade"), Q(oracle, "{{market}} oracle")],
        ),
        graph(
            "Last trade deviation from oracle",
            "(last trade - oracle) / oracle: a feed that stopped moving drifts away from the oracle.",
            "percentunit",
            [Q(f"({last} - on (job, market) {oracle}) / on (job, market) {oracle}", legend("market"))],
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
            [per("market, channel", age("dydx_market_last_update_timestamp_seconds", M), fn="min")],
            min_value=0,
        ),
        listing(
            "Market status",
            "Status of the selected markets as the indexer lists them (ACTIVE, PAUSED, FINAL_SETTLEMENT...).",
            [Q(one_replica(sel("dydx_market_info", M)))],
        ),
    ]


def _quality() -> list[PanelBuilder]:
    """Whether the book and the oracle price can be trusted: the exporter's audits of the held book
    against REST snapshots (every --orderbook.audit-interval), and the oracle against the book."""
    return [
        _events(
            "Book audits",
            "Audits of the held book against a fresh REST snapshot (every --orderbook.audit-interval, "
            "books in turn): whole audits, one bar per minute (wider bars on long ranges).",
            "dydx_orderbook_audits_total",
        ),
        _events(
            "Audit mismatched levels by kind",
            "Levels an audit found wrong (missing: in the snapshot only; extra: held only; size: sizes "
            "differ), leaving out levels updated in the race window: whole levels per minute.",
            "dydx_orderbook_audit_mismatched_levels_total",
            by="market, kind",
        ),
        _events(
            "Candle gaps by resolution",
            "Candle periods skipped (a subscribed candle's start jumped by more than one period), by "
            "resolution: whole periods per minute. Empty without --candles.resolutions.",
            "dydx_candle_gaps_total",
            by="market, resolution",
        ),
        graph(
            "Audit mismatch ratio",
            "Mismatched levels over levels compared, in the market's latest audit (0 is a right book).",
            "percentunit",
            [_selected("dydx_orderbook_audit_mismatch_ratio")],
            width=8,
            min_value=0,
        ),
        graph(
            "Oracle vs book mid",
            "Distance of the oracle price from the mid of the uncrossed two-sided book, over the mid.",
            "percentunit",
            [_selected("dydx_oracle_mid_deviation_ratio")],
            width=8,
            min_value=0,
        ),
        graph(
            "Oracle price age",
            "Exchange time of the latest oracle price (effectiveAt) to the scrape, freshest replica: an "
            "oracle that stops updating while the market trades is stale.",
            "s",
            [per("market", age("dydx_oracle_price_timestamp_seconds", M), fn="min")],
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
