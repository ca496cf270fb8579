"""Who is at fault: the chain, the indexer, one of its WebSocket servers, or its REST read replicas.

The overview's top row puts the four heads side by side (README "Is it the chain or the indexer?"): the
age of each head's newest block, the blocks each trails by (the same differences as the recording rules of
prometheus/rules/dydx-chain.yml, computed from the exporter's own series), and one stat naming the likely
culprit from the attribution alerts that fire. The internals dashboard gets the per-link view and the
chain RPC polls.
"""

from __future__ import annotations

from grafana.blocks import PanelBuilder, Q, graph, latency, per_second, sel, single, states

FIRING = 'alertstate="firing"'
USABLE = {"0": ("unusable", "red"), "1": ("usable", "green")}

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


def _trusted(metric: str) -> str:
    """`metric` of the chain nodes that answer on the indexer's network and are not catching up."""
    return f"({sel(metric)} and {sel('dydx_chain_rpc_up')} == 1 and {sel('dydx_chain_catching_up')} == 0)"


def _age(metric: str) -> str:
    """Seconds from the block time in `metric` to the scrape that read it (0 means none yet)."""
    return f"timestamp({sel(metric)}) - ({sel(metric)} > 0)"


def _behind_freshest_link(metric: str) -> str:
    """Each link's `metric` behind the best of its exporter's links."""
    best, each = f"max by (instance) ({sel(metric)})", f"max by (instance, connection) ({sel(metric)})"
    return f"{best} - on (instance) group_right {each}"


def who_is_at_fault_row() -> list[PanelBuilder]:
    mappings = {"0": "nothing: all heads agree"} | {
        str(number): text for number, (_, text) in enumerate(CULPRITS, start=1)
    }
    ws = f"max by (instance) ({sel('dydx_block_height')} > 0)"
    return [
        single(
            "Likely culprit",
            "Which attribution alert fires, the most fundamental first: the chain (DydxChainHalted), the "
            "indexer (DydxIndexerBehindChain), one WebSocket server (DydxLinkBehind), REST read replicas "
            "(DydxRestBehindWebSocket). 'unknown' while no chain RPC is usable (DydxChainRpcDown). The "
            "chain's head needs --chain.rpc-url.",
            "none",
            Q(_culprit_query()),
            width=6,
            height=8,
            thresholds=((None, "green"), (1, "red"), (5, "orange")),
            mappings=mappings,
            integer=True,
        ),
        graph(
            "Age of each head's newest block",
            "The time of each scrape minus the newest block's time as each source knows it: each chain node "
            "(CometBFT /status), the WebSocket (freshest link), REST (/v4/height) and every link. All "
            "rising together: the chain halted. The chain flat and the others rising: the indexer. One "
            "link or REST rising alone: that socks instance, or the read replicas.",
            "s",
            [
                Q(f"min by (rpc) ({_age('dydx_chain_block_timestamp_seconds')})", "chain {{rpc}}"),
                Q(f"min by (instance) ({_age('dydx_block_timestamp_seconds')})", "WebSocket"),
                Q(f"min by (instance) ({_age('dydx_rest_block_timestamp_seconds')})", "REST"),
                Q(
                    f"min by (instance, connection) ({_age('dydx_link_block_timestamp_seconds')})",
                    "link {{connection}} {{instance}}",
                ),
            ],
            width=9,
            height=8,
            min_value=0,
        ),
        graph(
            "Blocks behind",
            "The WebSocket head behind the chain's trusted head (DydxIndexerBehindChain: 30 blocks for 2 m "
            "warns, 100 for 10 m pages), REST behind the WebSocket (DydxRestBehindWebSocket: 30 for 5 m), "
            "each link behind its exporter's freshest link (DydxLinkBehind: 10 blocks or 10 s for 2 m).",
            "none",
            [
                Q(
                    f"max by (instance) {_trusted('dydx_chain_block_height')} - {ws}",
                    "WebSocket behind chain {{instance}}",
                ),
                Q(
                    f"{ws} - max by (instance) ({sel('dydx_rest_block_height')})",
                    "REST behind WebSocket {{instance}}",
                ),
                Q(_behind_freshest_link("dydx_link_block_height"), "{{connection}} behind {{instance}}"),
            ],
            width=9,
            height=8,
            integer=True,
        ),
    ]


def per_link_row() -> list[PanelBuilder]:
    return [
        graph(
            "Link behind the freshest link",
            "Seconds of block time each WebSocket link (`dydx_link_block_timestamp_seconds`) trails the "
            "freshest link of its exporter: a saturated socks instance shows as one link falling behind "
            "while staying connected (DydxLinkBehind: above 10 s or 10 blocks for 2 minutes).",
            "s",
            [Q(_behind_freshest_link("dydx_link_block_timestamp_seconds"), "{{instance}} {{connection}}")],
            width=6,
            min_value=0,
        ),
        states(
            "Chain RPC nodes",
            "Each --chain.rpc-url node: usable when its last /status poll succeeded on the indexer's network "
            "(`dydx_chain_rpc_up`) and it is not catching up (`dydx_chain_catching_up`).",
            [
                Q(
                    f"{sel('dydx_chain_rpc_up')} * (1 - {sel('dydx_chain_catching_up')})",
                    "{{instance}} {{rpc}}",
                )
            ],
            USABLE,
            width=6,
        ),
        per_second(
            "Chain RPC polls",
            "CometBFT /status polls per second by node and outcome (HTTP status, timeout, "
            "connection_error, invalid_body).",
            "reqps",
            "dydx_chain_rpc_requests_total",
            by="rpc, code",
            width=6,
        ),
        latency(
            "Chain RPC poll duration",
            "90th percentile of the duration of a /status poll, by node.",
            "dydx_chain_rpc_request_duration_seconds",
            by="rpc",
            qs=[0.9],
            width=6,
        ),
    ]
