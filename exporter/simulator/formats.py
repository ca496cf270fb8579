"""Number and time formatting as the indexer writes them: decimal strings with no exponent and no trailing
zeros, ISO-8601 UTC timestamps with milliseconds."""

from __future__ import annotations

import datetime as dt


def fixed(units: int, decimals: int) -> str:
    """`units * 10^-decimals` as a decimal string: fixed(671234, 1) == "67123.4", fixed(1500, 3) == "1.5".

    A negative `decimals` scales up: fixed(3, -1) == "30".
    """
    if decimals <= 0:
        return str(units * 10**-decimals)
    sign = "-" if units < 0 else ""
    digits = str(-units if units < 0 else units)
    if len(digits) <= decimals:
        digits = "0" * (decimals + 1 - len(digits)) + digits
    whole, frac = digits[:-decimals], digits[-decimals:].rstrip("0")
    return f"{sign}{whole}.{frac}" if frac else f"{sign}{whole}"


def decimal(value: float, decimals: int) -> str:
    """A float as a decimal string with at most `decimals` places, trailing zeros dropped."""
    text = f"{value:.{max(decimals, 0)}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def iso_ms(epoch: float) -> str:
    """2026-03-04T19:21:07.512Z."""
    moment = dt.datetime.fromtimestamp(epoch, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_iso(text: str) -> float:
    """Inverse of iso_ms (accepts any ISO-8601 timestamp Python understands; naive means UTC)."""
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()
