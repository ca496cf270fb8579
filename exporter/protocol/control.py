"""Control frames (connected, subscribed, unsubscribed, error) as events, the one parser of them, and the
client's subscribe and unsubscribe messages.

The exporter's frame router and the recorder both turn a decoded control frame into one of these events
with `parse_control`, so the two can never disagree on what a frame means. A frame that is not a valid
control frame gives a `Rejected` with the bounded reason the exporter counts it under.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import orjson

from exporter.protocol import channels as ch

#: Longer subscription ids are refused (the longest real one, a candle id, is under 40 characters).
MAX_ID_LENGTH: Final = 128


@dataclass(frozen=True, slots=True)
class Connected:
    """The server's `connected` frame: a new connection_id, message ids restart at 0."""

    link: str
    connection_id: str


@dataclass(frozen=True, slots=True)
class Subscribed:
    """A `subscribed` frame; its snapshot has already been applied to state. sub_id is None for v4_markets."""

    link: str
    channel: str
    sub_id: str | None
    message_id: int


@dataclass(frozen=True, slots=True)
class Unsubscribed:
    link: str
    channel: str
    sub_id: str | None


@dataclass(frozen=True, slots=True)
class ServerError:
    """An `error` frame. `reason` is the bounded label from protocol.channels.classify_error; `channel` is
    None unless the frame names a known channel."""

    link: str
    message: str
    reason: str
    channel: str | None
    sub_id: str | None


Control = Connected | Subscribed | Unsubscribed | ServerError


@dataclass(frozen=True, slots=True)
class Rejected:
    """Not a valid control frame: `reason` is a dydx_messages_invalid_total reason, `channel` the known
    channel it names (None: counted under the `unknown` channel)."""

    reason: str
    channel: str | None = None


def parse_control(link: str, frame: dict[str, Any]) -> Control | Rejected:
    """A decoded frame whose `type` is not channel_data / channel_batch_data → its event."""
    kind = frame.get("type")
    if kind == ch.T_CONNECTED:
        connection_id = frame.get("connection_id")
        if connection_id.__class__ is not str:
            return Rejected("missing_field")
        return Connected(link, connection_id)
    if kind == ch.T_ERROR:
        message = frame.get("message")
        if message.__class__ is not str:
            return Rejected("missing_field")
        channel = frame.get("channel")
        sub_id = frame.get("id")
        return ServerError(
            link,
            message,
            ch.classify_error(message),
            channel if channel.__class__ is str and channel in ch.CHANNELS else None,
            sub_id if sub_id.__class__ is str else None,
        )
    if kind != ch.T_SUBSCRIBED and kind != ch.T_UNSUBSCRIBED:
        return Rejected("missing_field" if kind is None else "unknown_type")
    channel = frame.get("channel")
    spec = ch.CHANNELS.get(channel) if channel.__class__ is str else None
    if spec is None:
        return Rejected("missing_field" if channel is None else "unknown_channel")
    sub_id = frame.get("id")
    if kind == ch.T_UNSUBSCRIBED:
        return Unsubscribed(link, spec.name, sub_id if sub_id.__class__ is str else None)
    if spec.sends_id and (sub_id.__class__ is not str or len(sub_id) > MAX_ID_LENGTH):
        return Rejected("missing_field" if sub_id is None else "wrong_type", spec.name)
    message_id = frame.get("message_id")
    return Subscribed(
        link,
        spec.name,
        sub_id if sub_id.__class__ is str else None,
        message_id if message_id.__class__ is int else -1,
    )


def subscribe_message(channel: str, sub_id: str | None, *, batched: bool) -> str:
    """`sub_id` is None for the feed-wide channels (sending one would key the subscription under it)."""
    msg: dict[str, Any] = {"type": "subscribe", "channel": channel}
    if sub_id is not None:
        msg["id"] = sub_id
    if ch.CHANNELS[channel].batchable:
        msg["batched"] = batched
    return orjson.dumps(msg).decode()


def unsubscribe_message(channel: str, sub_id: str | None) -> str:
    msg: dict[str, Any] = {"type": "unsubscribe", "channel": channel}
    if sub_id is not None:
        msg["id"] = sub_id
    return orjson.dumps(msg).decode()
