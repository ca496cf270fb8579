"""A typed decoder (msgspec) for the data frames the protocol sends, in the shapes it sends them.

The frame router tries this decoder first (exporter.state.fastpath): a `channel_data` /
`channel_batch_data` frame whose envelope and (for order book and oracle price frames) contents have
exactly the protocol's shape decodes to the Structs below in C, with its shape already checked. Anything
else (control frames, wrong types, missing fields, an order book update with more than one level, a
`trading` diff, invalid JSON) raises `TypedDecodeError` and takes the dict (orjson) path, which does every
check and counts every reason: the typed decoder only ever accepts what the dict path would handle the
same way.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec

#: What the typed decoders raise for a frame they refuse. msgspec reports invalid UTF-8 inside a string as
#: the builtin UnicodeDecodeError, not as one of its own errors.
TypedDecodeError: Final = (msgspec.MsgspecError, UnicodeDecodeError)

#: Prices and sizes are decoded from their decimal strings by msgspec (non-strict mode), which refuses
#: NaN, "Infinity", underscores, spaces, signs and anything else Python's float() would take but the indexer
#: never sends: those frames take the dict path. It does take "inf", so callers still check `< inf`.
Price = Annotated[float, msgspec.Meta(gt=0.0)]
Size = Annotated[float, msgspec.Meta(ge=0.0)]


class Levels(msgspec.Struct, gc=False):
    """One order book update: one `[price, size]` pair on a side (both sides: still valid, rare)."""

    bids: tuple[tuple[Price, Size]] | None = None
    asks: tuple[tuple[Price, Size]] | None = None


class OraclePriceRow(msgspec.Struct, gc=False):
    oraclePrice: str
    effectiveAt: str


class OraclePrices(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    """A v4_markets update holding oracle prices only; one with `trading` (a listing or a status change)
    is refused and takes the dict path."""

    oraclePrices: dict[str, OraclePriceRow]


class Envelope(msgspec.Struct, gc=False):
    """A data frame; its contents are decoded in a second step, by channel."""

    type: Literal["channel_data", "channel_batch_data"]
    message_id: int
    channel: str
    contents: msgspec.Raw
    id: str | None = None


def envelope_decoder() -> msgspec.json.Decoder[Envelope]:
    return msgspec.json.Decoder(Envelope)


def levels_decoder() -> msgspec.json.Decoder[Levels | list[Levels]]:
    # Non-strict only here: it is what turns decimal strings into floats. The envelope stays strict (a
    # message_id sent as a string must stay invalid).
    return msgspec.json.Decoder(Levels | list[Levels], strict=False)


def oracle_decoder() -> msgspec.json.Decoder[OraclePrices | list[OraclePrices]]:
    return msgspec.json.Decoder(OraclePrices | list[OraclePrices])


def to_builtins(value: object) -> object:
    """A Struct as the dicts and lists the dict path would have logged (only for invalid-frame samples)."""
    return msgspec.to_builtins(value)
