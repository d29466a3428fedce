"""The Bar type, parsing of raw rows, and the validation rules every bar must pass.

A bar is valid when its prices are finite and positive, `low <= open, close <= high`, its
volume is finite and >= 0, and its time is strictly later than the previous valid bar of the
same contract. Anything else is rejected with a reason code and quarantined by the caller.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from daemon.timeutil import parse_utc

_TS_KEYS = ("timestamp", "ts", "time", "datetime", "date", "t")
_FIELD_KEYS = {
    "open": ("open", "o"),
    "high": ("high", "h"),
    "low": ("low", "l"),
    "close": ("close", "c"),
    "volume": ("volume", "v", "vol"),
}


@dataclass(frozen=True, slots=True)
class Bar:
    """One OHLCV bar; `ts` is the bar's close time, timezone-aware UTC."""

    contract: str
    ts: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float


class BarRejected(Exception):
    """A raw row or bar that must not reach later stages; `reason` is a short code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


def _norm(key: Any) -> str:
    return str(key).strip().lower().replace(" ", "_")


def _number(row: dict[str, Any], names: tuple[str, ...], field: str) -> float:
    for name in names:
        if name in row:
            value = row[name]
            if value is None or (isinstance(value, str) and not value.strip()):
                raise BarRejected("missing_value", field)
            try:
                return float(value)
            except (TypeError, ValueError):
                raise BarRejected("not_a_number", f"{field}={value!r}") from None
    raise BarRejected("missing_column", field)


def parse_row(raw: dict[str, Any], contract: str) -> Bar:
    """Turn one raw row (any of the common CSV/Parquet/Gateway layouts) into a Bar.

    Raises BarRejected for a missing column, an unparseable number or time. Does not validate
    the prices: that is `validate_bar`'s job.
    """
    if not isinstance(raw, dict):
        raise BarRejected("not_a_row", type(raw).__name__)
    row = {_norm(k): v for k, v in raw.items()}
    ts_value = next((row[k] for k in _TS_KEYS if k in row), None)
    if ts_value is None:
        raise BarRejected("missing_column", "timestamp")
    try:
        ts = ts_value if isinstance(ts_value, datetime) else parse_utc(str(ts_value))
        if ts.tzinfo is None:
            ts = parse_utc(ts.isoformat())
    except ValueError as err:
        raise BarRejected("bad_timestamp", str(err)) from None
    values = {f: _number(row, names, f) for f, names in _FIELD_KEYS.items()}
    return Bar(contract=contract, ts=parse_utc(ts.isoformat()), **values)


def validate_bar(bar: Bar, last_ts: datetime | None) -> str | None:
    """The reason code a bar is invalid for, or None when it is valid."""
    prices = (bar.open, bar.high, bar.low, bar.close)
    if not all(math.isfinite(p) for p in prices) or not math.isfinite(bar.volume):
        return "non_finite"
    if any(p <= 0 for p in prices):
        return "non_positive_price"
    if bar.low > min(bar.open, bar.close):
        return "low_above_open_or_close"
    if bar.high < max(bar.open, bar.close):
        return "high_below_open_or_close"
    if bar.volume < 0:
        return "negative_volume"
    if last_ts is not None and bar.ts <= last_ts:
        return "time_not_increasing"
    return None


class BarValidator:
    """Parses and validates raw rows, remembering the last valid time per contract."""

    def __init__(self) -> None:
        self.last_ts: dict[str, datetime] = {}

    def check(self, raw: Any, contract: str) -> Bar:
        """The valid Bar for `raw`, or BarRejected. Only valid bars advance the clock."""
        bar = raw if isinstance(raw, Bar) else parse_row(raw, contract)
        reason = validate_bar(bar, self.last_ts.get(bar.contract))
        if reason:
            raise BarRejected(reason, f"ts={bar.ts.isoformat()}")
        self.last_ts[bar.contract] = bar.ts
        return bar
