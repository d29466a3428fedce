"""The Gateway's wire format: the response envelope, decimals with 9 fractional digits,
ISO timestamps, ProblemDetails for HTTP 400, and typed reads of request fields.

Every Gateway response is `{<payload>, success, errorCode, errorMessage}`; a business failure
is HTTP 200 with `success: false` and the endpoint's own error code. Prices go out as JSON
numbers with exactly 9 fractional digits (`6335.250000000`), as the real Gateway sends them.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from daemon.timeutil import parse_utc

NINE = Decimal("0.000000001")


class BadRequest(Exception):
    """A request the Gateway refuses with HTTP 400 (missing or mistyped field, bad JSON)."""


def dec(value: float | int | str | Decimal) -> Decimal:
    """A price as a Decimal with 9 fractional digits (floats via their shortest repr)."""
    d = value if isinstance(value, Decimal) else Decimal(repr(value) if isinstance(value, float)
                                                        else str(value))
    return d.quantize(NINE)


def ts_out(dt: datetime) -> str:
    """A timestamp as the Gateway writes it: ISO 8601, microseconds, `+00:00`."""
    return dt.astimezone(UTC).isoformat(timespec="microseconds")


# Prefixes a rendered Decimal (orjson writes the NUL as \u0000). The random part keeps a
# client's string (a customTag, say) from ever looking like one.
_NONCE = secrets.token_hex(8)
_MARK = "\x00" + _NONCE
_MARKED = re.compile(rb'"\\u0000' + _NONCE.encode() + rb'(-?[0-9]+\.[0-9]+)"')


def _default(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        return _MARK + format(obj.quantize(NINE), "f")
    if isinstance(obj, datetime):
        return ts_out(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def dumps(obj: Any) -> bytes:
    """JSON where Decimals are numbers with 9 fractional digits and times are ISO with
    microseconds. orjson cannot write such numbers, so Decimals are rendered into marked
    strings and unquoted afterwards."""
    raw = orjson.dumps(obj, default=_default, option=orjson.OPT_PASSTHROUGH_DATETIME)
    return _MARKED.sub(rb"\1", raw)


def envelope(payload: dict[str, Any] | None = None, code: int = 0,
             message: str | None = None) -> dict[str, Any]:
    """The response body: payload fields first, then success/errorCode/errorMessage."""
    body = dict(payload or {})
    body.update(success=code == 0, errorCode=code, errorMessage=message)
    return body


def problem(detail: str, status: int = 400, title: str = "Bad Request") -> dict[str, Any]:
    """An RFC 7807 ProblemDetails body, as ASP.NET returns for a request it cannot bind."""
    return {"type": "https://tools.ietf.org/html/rfc9110#section-15.5.1", "title": title,
            "status": status, "detail": detail, "instance": None}


def _get(body: dict[str, Any], name: str, required: bool) -> Any:
    value = body.get(name)
    if value is None and required:
        raise BadRequest(f"The {name} field is required.")
    return value


def get_int(body: dict[str, Any], name: str, required: bool = True) -> int | None:
    """An integer field (JSON number without fraction); BadRequest when absent or mistyped."""
    value = _get(body, name, required)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise BadRequest(f"The JSON value of {name} could not be converted to an integer.")
    return int(value)


def get_bool(body: dict[str, Any], name: str, required: bool = True) -> bool | None:
    value = _get(body, name, required)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise BadRequest(f"The JSON value of {name} could not be converted to a boolean.")
    return value


def get_str(body: dict[str, Any], name: str, required: bool = True) -> str | None:
    value = _get(body, name, required)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"The JSON value of {name} could not be converted to a string.")
    return value


def get_dec(body: dict[str, Any], name: str, required: bool = False) -> Decimal | None:
    """A decimal field; numbers and numeric strings are accepted, as System.Text.Json does."""
    value = _get(body, name, required)
    if value is None:
        return None
    if isinstance(value, bool):
        raise BadRequest(f"The JSON value of {name} could not be converted to a decimal.")
    try:
        d = Decimal(repr(value) if isinstance(value, float) else str(value))
    except InvalidOperation:
        raise BadRequest(f"The JSON value of {name} could not be converted to a decimal.") from None
    if not d.is_finite():
        raise BadRequest(f"The JSON value of {name} could not be converted to a decimal.")
    return d


def get_time(body: dict[str, Any], name: str, required: bool = True) -> datetime | None:
    value = get_str(body, name, required)
    if value is None:
        return None
    try:
        return parse_utc(value)
    except ValueError:
        raise BadRequest(f"The JSON value of {name} could not be converted to a date.") from None
