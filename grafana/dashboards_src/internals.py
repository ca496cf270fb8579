"""Exporter internals: what the exporter process itself costs and whether scraping it is healthy."""

from __future__ import annotations

from grafana_foundation_sdk.models.dashboard import Dashboard

from grafana.blocks import (
    INTERNALS,
    PanelBuilder,
    Q,
    build_dashboard,
    exporters_only,
    graph,
    latency,
    listing,
    per_second,
    rate,
    sel,
)
from grafana.dashboards_src.fault import per_link_row


def _each_exporter(
    title: str, description: str, unit: str, expr: str, *, legend: str = "{{instance}}", integer: bool = False
) -> PanelBuilder:
    """`expr` of each selected exporter (`exporters_only`: the process and scrape series of the
    Prometheus's other jobs left out), a third of the row wide."""
    return graph(title, description, unit, [Q(exporters_only(expr), legend)], width=8, integer=integer)


def _scrape() -> list[PanelBuilder]:
    return [
        graph(
            "Scrape duration",
            "How long Prometheus took to scrape /metrics, and how long the exporter took to render it.",
            "s",
            [
                Q(exporters_only(sel("scrape_duration_seconds")), "{{instance}} scrape"),
                Q(sel("dydx_exporter_scrape_duration_seconds"), "{{instance}} render"),
            ],
            width=8,
        ),
        graph(
            "Scrape size",
            "Uncompressed size of the /metrics body: grows with markets and channels.",
            "bytes",
            [Q(sel("dydx_exporter_scrape_size_bytes"), "{{instance}}")],
            width=8,
        ),
        _each_exporter(
            "Samples per scrape",
            "Samples Prometheus ingests per scrape of each exporter.",
            "none",
            sel("scrape_samples_scraped"),
            integer=True,
        ),
    ]


def _process() -> list[PanelBuilder]:
    return [
        _each_exporter(
            "CPU",
            "CPU time per second of wall time (100% = one full core).",
            "percentunit",
            rate("process_cpu_seconds_total"),
        ),
        _each_exporter(
            "Memory",
            "Resident memory of the exporter process.",
            "bytes",
            sel("process_resident_memory_bytes"),
        ),
        _each_exporter(
            "Open file descriptors",
            "File descriptors in use, sockets included (the limit is process_max_fds).",
            "none",
            sel("process_open_fds"),
            legend="{{instance}} open",
            integer=True,
        ),
        latency(
            "Event-loop lag",
            "How late the asyncio loop woke a periodic probe (p50, p99): lag delays every frame and scrape.",
            "dydx_exporter_event_loop_lag_seconds",
            by="instance",
            width=8,
        ),
        per_second(
            "Time spent processing frames",
            "Share of wall time the event loop spends decoding and applying frames.",
            "percentunit",
            "dydx_processing_seconds_sum",
            by="instance",
            width=8,
        ),
        _each_exporter(
            "Garbage collections",
            "Python garbage collector runs per second, by generation.",
            "cps",
            f"sum by (job, instance, generation) ({rate('python_gc_collections_total')})",
            legend="{{instance}} gen {{generation}}",
        ),
    ]


def _rest() -> list[PanelBuilder]:
    return [
        per_second(
            "REST requests by endpoint and status",
            "Requests to the indexer's REST API (market discovery), per second, by route and status.",
            "reqps",
            "dydx_rest_requests_total",
            by="endpoint, code",
        ),
        latency(
            "REST latency",
            "p50 and p99 duration of REST requests, by route.",
            "dydx_rest_request_duration_seconds",
            by="endpoint",
        ),
        listing(
            "Build",
            "Version of every selected exporter (`dydx_exporter_build_info`).",
            [Q(sel("dydx_exporter_build_info"))],
            width=24,
            height=5,
        ),
    ]


def build() -> Dashboard:
    return build_dashboard(
        INTERNALS,
        "The exporter process: scrape cost, CPU, memory, file descriptors, event-loop lag, garbage "
        "collection, its REST calls to the indexer, each WebSocket link's head and the chain RPC polls.",
        [
            ("Scrape", _scrape()),
            ("Process", _process()),
            ("REST API", _rest()),
            ("Links and chain RPC", per_link_row()),
        ],
    )
