"""Who is at fault: the chain, the indexer, one of its WebSocket servers, or its REST read replicas.

The overview's top row puts the four heads side by side (README "Is it the chain or the indexer?"): the
age of each head's newest block, the lags the recording rules of prometheus/rules/dydx-chain.yml compute,
and one stat naming the likely culprit from the attribution alerts that fire. The internals dashboard gets
the per-link view and the chain RPC polls.
"""

from __future__ import annotations

from grafana.blocks import PanelBuilder, Q, graph, quantile, rate, sel, single

FIRING = 'alertstate="firing"'

#: The culprit stat's value → what it says, most fundamental cause first (a halted chain explains a
#: stalled indexer, which explains its links and REST).
CULPRITS: tuple[tuple[str, str], ...] = (
    ("DydxChainHalted", "the chain (halted)"),
    ("DydxIndexerBehindChain", "the indexer (behind the chain)"),
    ("DydxLinkBehind", "one WebSocket server (a link behind)"),
    ("DydxRestBehindWebSocket", "REST read replicas (behind)"),
    ("DydxChainRpcDown", "unknown: no usable chain RPC"),
)


def _culprit_query() -> str:
    """The first firing attribution alert in CULPRITS order as its number (1..5), else 0."""
    parts = []
    for number, (alert, _) in enumerate(CULPRITS, start=1):
        firing = sel("ALERTS", f'alertname="{alert}"', FIRING)
        parts.append(f"(max({firing}) * 0 + {number})")
    return " or ".join([*parts, "vector(0)"])


def who_is_at_fault_row() -> list[PanelBuilder]:
    mappings = {"0": "nothing: all heads agree"} | {
        str(number): text for number, (_, text) in enumerate(CULPRITS, start=1)
    }
    behind_chain = "instance:dydx_block_height:behind_chain"
    rest_behind = "instance:dydx_rest_block_height:behind_ws"
    link_behind = "instance_connection:dydx_link_block_height:behind_freshest"
    return [
        single(
            "Likely culprit",
            "Which attribution alert fires, the most fundamental first: the chain (DydxChainHalted), the "
            "indexer (DydxIndexerBehindChain), one WebSocket server (DydxLinkBehind), REST read replicas "
            "(DydxRestBehindWebSocket). 'unknown' while no chain RPC is usable (DydxChainRpcDown). Needs "
            "--chain.rpc-url for the chain's head.",
            "none",
            Q(_culprit_query()),
            width=6,
            height=8,
            thresholds=((None, "green"), (1, "red"), (5, "orange")),
            mappings=mappings,
        ),
        graph(
            "Age of each head's newest block",
            "Wall clock minus the time of the newest block as each source knows it: the chain "
            "(trusted full nodes), the WebSocket (freshest link), REST (/v4/height) and every link. All "
            "rising together: the chain halted. The chain flat and the others rising: the indexer. One "
            "link or REST alone: that socks instance, or the read replicas.",
            "s",
            [
                Q(f"time() - {sel('instance:dydx_chain_block_timestamp_seconds:max_trusted')}", "chain"),
                Q(f"time() - ({sel('dydx_block_timestamp_seconds')} > 0)", "WebSocket {{instance}}"),
                Q(f"time() - {sel('dydx_rest_block_timestamp_seconds')}", "REST {{instance}}"),
                Q(
                    f"time() - ({sel('dydx_link_block_timestamp_seconds')} > 0)",
                    "link {{connection}} {{instance}}",
                ),
            ],
            width=9,
            height=8,
            min_value=0,
        ),
        graph(
            "Blocks behind",
            "The WebSocket head behind the chain's (DydxIndexerBehindChain: 30 blocks for 2 m warns, 100 "
            "for 10 m pages), REST behind the WebSocket (DydxRestBehindWebSocket: 30 for 5 m), each link "
            "behind the freshest link (DydxLinkBehind: 10 blocks or 10 s for 2 m).",
            "none",
            [
                Q(sel(behind_chain), "WebSocket behind chain {{instance}}"),
                Q(sel(rest_behind), "REST behind WebSocket {{instance}}"),
                Q(sel(link_behind), "{{connection}} behind freshest {{instance}}"),
            ],
            width=9,
            height=8,
            integer=True,
        ),
    ]


def per_link_row() -> list[PanelBuilder]:
    seconds_behind = "instance_connection:dydx_link_block_timestamp_seconds:behind_freshest"
    return [
        graph(
            "Block height by link",
            "Each WebSocket link's own v4_block_height (`dydx_link_block_height`): a saturated socks "
            "instance shows as one link falling behind while staying connected.",
            "none",
            [Q(sel("dydx_link_block_height"), "{{instance}} {{connection}}")],
            width=8,
            integer=True,
        ),
        graph(
            "Link behind the freshest link",
            "Seconds of block time each connected link trails the freshest link of its exporter "
            "(DydxLinkBehind fires above 10 s or 10 blocks for 2 minutes).",
            "s",
            [Q(sel(seconds_behind), "{{instance}} {{connection}}")],
            width=8,
            min_value=0,
        ),
        graph(
            "Chain RPC polls",
            "CometBFT /status polls per second by node and outcome (HTTP status, timeout, "
            "connection_error, invalid_body).",
            "reqps",
            [Q(f"sum by (rpc, code) ({rate('dydx_chain_rpc_requests_total')})", "{{rpc}} {{code}}")],
            width=4,
        ),
        graph(
            "Chain RPC poll duration",
            "90th percentile of the duration of a /status poll, by node.",
            "s",
            [Q(quantile(0.9, "dydx_chain_rpc_request_duration_seconds", "rpc"), "p90 {{rpc}}")],
            width=4,
        ),
    ]
