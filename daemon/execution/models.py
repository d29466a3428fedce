"""Gateway data as the client hands it out: accounts, contracts, enums, prices and the wire.

Prices are Decimal everywhere. Incoming JSON numbers are parsed straight into Decimal (never via
float); outgoing Decimals are written as JSON numbers through their shortest float repr, which
is exact for prices with up to 15 significant digits (every tick-aligned futures price).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from enum import IntEnum
from typing import Any

import orjson

from daemon.timeutil import parse_utc


class OrderType(IntEnum):
    LIMIT = 1
    MARKET = 2
    STOP_LIMIT = 3
    STOP = 4
    TRAILING_STOP = 5
    JOIN_BID = 6
    JOIN_ASK = 7


class OrderSide(IntEnum):
    BID = 0  # buy
    ASK = 1  # sell


class OrderStatus(IntEnum):
    NONE = 0
    OPEN = 1
    FILLED = 2
    CANCELLED = 3
    EXPIRED = 4
    REJECTED = 5
    PENDING = 6
    PENDING_CANCELLATION = 7
    SUSPENDED = 8


TERMINAL_STATUSES = frozenset({OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.EXPIRED,
                               OrderStatus.REJECTED})


class BarUnit(IntEnum):
    SECOND = 1
    MINUTE = 2
    HOUR = 3
    DAY = 4
    WEEK = 5
    MONTH = 6


UNIT_SECONDS = {1: 1, 2: 60, 3: 3600, 4: 86400, 5: 7 * 86400}


@dataclass(frozen=True)
class Account:
    id: int
    name: str
    balance: Decimal
    can_trade: bool
    simulated: bool

    @classmethod
    def from_wire(cls, raw: dict[str, Any]) -> Account:
        return cls(id=int(raw["id"]), name=str(raw.get("name") or ""),
                   balance=Decimal(str(raw.get("balance", 0))),
                   can_trade=bool(raw.get("canTrade")), simulated=bool(raw.get("simulated")))


@dataclass(frozen=True)
class Contract:
    id: str
    name: str
    description: str
    tick_size: Decimal
    tick_value: Decimal
    active: bool
    symbol_id: str

    @classmethod
    def from_wire(cls, raw: dict[str, Any]) -> Contract:
        return cls(id=str(raw["id"]), name=str(raw.get("name") or ""),
                   description=str(raw.get("description") or ""),
                   tick_size=Decimal(str(raw["tickSize"])),
                   tick_value=Decimal(str(raw.get("tickValue", 0))),
                   active=bool(raw.get("activeContract", True)),
                   symbol_id=str(raw.get("symbolId") or ""))


def to_decimal(value: Any) -> Decimal:
    """A price from user code or the wire as a Decimal (floats via their shortest repr)."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(str(value))


def tick_align(price: Any, tick: Decimal, mode: str = "nearest") -> Decimal:
    """`price` on the tick grid: "down", "up" or "nearest" (ties to even). An aligned price is
    returned unchanged (as a Decimal with the tick's exponent)."""
    if tick <= 0:
        raise ValueError(f"tick size must be positive, got {tick}")
    p = to_decimal(price)
    rounding = {"down": ROUND_FLOOR, "up": ROUND_CEILING, "nearest": ROUND_HALF_EVEN}[mode]
    ticks = (p / tick).to_integral_value(rounding=rounding)
    return (ticks * tick).quantize(tick)


def _wire_default(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        return float(obj)
    if isinstance(obj, datetime):
        return obj.astimezone(UTC).isoformat()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def dumps(body: dict[str, Any]) -> bytes:
    """A request body as JSON bytes: Decimals as numbers, datetimes as ISO UTC."""
    return orjson.dumps(body, default=_wire_default, option=orjson.OPT_PASSTHROUGH_DATETIME)


def loads(data: bytes) -> Any:
    """A response body: JSON with every non-integer number as a Decimal."""
    return json.loads(data, parse_float=Decimal)


def parse_bar(raw: dict[str, Any]) -> dict[str, Any]:
    """One History bar `{t, o, h, l, c, v}` with `t` as aware UTC and prices as Decimal."""
    return {"t": parse_utc(str(raw["t"])), "o": to_decimal(raw["o"]), "h": to_decimal(raw["h"]),
            "l": to_decimal(raw["l"]), "c": to_decimal(raw["c"]), "v": int(raw.get("v") or 0)}


def jwt_expiry(token: str) -> float | None:
    """The `exp` claim (epoch seconds) of a JWT, read without checking the signature; None
    when the token is not a readable JWT."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, KeyError, TypeError, ValueError):
        return None
