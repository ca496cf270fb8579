"""Encoding of server → client frames, byte for byte as the indexer (socks) emits them.

Key order is the server's; keys whose value would be undefined are omitted. Data frames are split in two so
a fan-out encodes each update once: the per-connection *prefix* (type, connection_id, message_id) and the
per-update *body* (id, channel, version, contents, closing brace), concatenated per subscriber.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from exporter.protocol.channels import (
    T_CHANNEL_BATCH_DATA,
    T_CHANNEL_DATA,
    T_CONNECTED,
    T_ERROR,
    T_SUBSCRIBED,
    T_UNSUBSCRIBED,
)


def js_str(value: object) -> str:
    """`${value}` in JavaScript: how socks renders a client's value inside an error text."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        return repr(value)
    if isinstance(value, list):
        return ",".join("" if v is None else js_str(v) for v in value)
    return "[object Object]"


def js_falsy(value: object) -> bool:
    """JavaScript falsiness (`!value`) for parsed JSON values."""
    return value is None or value is False or value == "" or (isinstance(value, int | float) and value == 0)


def connected(connection_id: str) -> bytes:
    return orjson.dumps({"type": T_CONNECTED, "connection_id": connection_id, "message_id": 0})


def data_prefix(connection_id: str, batched: bool = False) -> bytes:
    """`{"type":"channel_data","connection_id":"…","message_id":` — the message id and a body follow."""
    frame_type = T_CHANNEL_BATCH_DATA if batched else T_CHANNEL_DATA
    return b'{"type":"%s","connection_id":%s,"message_id":' % (
        frame_type.encode(),
        orjson.dumps(connection_id),
    )


def data_head(channel: str, sub_id: str | None, version: str) -> bytes:
    """`,"id":…,"channel":…,"version":…,"contents":` — the encoded contents and `}` follow.

    `sub_id` is None for v4_markets updates, which carry no `id`.
    """
    id_part = b'"id":%s,' % orjson.dumps(sub_id) if sub_id is not None else b""
    return b',%s"channel":%s,"version":%s,"contents":' % (
        id_part,
        orjson.dumps(channel),
        orjson.dumps(version),
    )


def data_body(head: bytes, contents: bytes, extra: bytes = b"") -> bytes:
    """The per-update part of a data frame. `extra` is e.g. `,"subaccountNumber":128` for parents."""
    return head + contents + extra + b"}"


def data_frame(prefix: bytes, message_id: int, body: bytes) -> bytes:
    return b"%s%d%s" % (prefix, message_id, body)


def batch_contents(items: list[bytes]) -> bytes:
    """`contents` of a channel_batch_data frame: the encoded per-update contents, in arrival order."""
    return b"[" + b",".join(items) + b"]"


def _addressed(frame: dict[str, Any], channel: str | None, sub_id: str | None) -> dict[str, Any]:
    """`frame` with `channel` and `id` appended, each only when it is defined (socks omits undefined keys)."""
    if channel is not None:
        frame["channel"] = channel
    if sub_id is not None:
        frame["id"] = sub_id
    return frame


def _channel_frame(
    frame_type: str, connection_id: str, message_id: int, channel: str, sub_id: str | None
) -> dict[str, Any]:
    frame = {"type": frame_type, "connection_id": connection_id, "message_id": message_id}
    return _addressed(frame, channel, sub_id)


def subscribed(connection_id: str, message_id: int, channel: str, sub_id: str | None, contents: Any) -> bytes:
    frame = _channel_frame(T_SUBSCRIBED, connection_id, message_id, channel, sub_id)
    frame["contents"] = contents
    return orjson.dumps(frame)


def unsubscribed(connection_id: str, message_id: int, channel: str, sub_id: str | None) -> bytes:
    return orjson.dumps(_channel_frame(T_UNSUBSCRIBED, connection_id, message_id, channel, sub_id))


def error(
    connection_id: str,
    message_id: int,
    message: str,
    channel: str | None = None,
    sub_id: str | None = None,
) -> bytes:
    frame = {"type": T_ERROR, "message": message, "connection_id": connection_id, "message_id": message_id}
    return orjson.dumps(_addressed(frame, channel, sub_id))
