"""Replay sources: CSV and Parquet files in the common layouts, and the bundled real sample.

`sample:sp500` and `sample:nasdaq` are the daily OHLCV bars 1999-2018 that the `arch` package
ships. Rows are handed out raw (dicts); validation happens in the ingest loop so that a bad row
is quarantined rather than dropped.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from daemon.bars.model import Bar, BarRejected, BarValidator
from daemon.errors import AnchordError
from daemon.timeutil import parse_utc

SAMPLES = ("sample:sp500", "sample:nasdaq")


class SourceError(AnchordError):
    """A bar source cannot be opened (missing file, unknown sample, unreadable format)."""


def _sample_rows(name: str) -> list[dict[str, Any]]:
    if name == "sample:sp500":
        from arch.data import sp500 as module
    elif name == "sample:nasdaq":
        from arch.data import nasdaq as module
    else:
        raise SourceError(f"unknown sample {name!r} (known: {', '.join(SAMPLES)})")
    frame = module.load()
    rows = []
    for ts, rec in zip(frame.index, frame.to_dict("records"), strict=True):
        rows.append({"date": ts.strftime("%Y-%m-%d"), "open": rec["Open"], "high": rec["High"],
                     "low": rec["Low"], "close": rec["Close"], "volume": rec["Volume"]})
    return rows


def _csv_rows(path: Path) -> list[dict[str, Any]]:
    with path.open(newline="", encoding="utf-8", errors="replace") as fh:
        return [dict(r) for r in csv.DictReader(fh)]


def _parquet_rows(path: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()
    except Exception as err:  # pyarrow raises many types for a bad file
        raise SourceError(f"{path}: not a readable Parquet file ({err})") from None


def load_rows(source: str) -> list[dict[str, Any]]:
    """All raw rows of a source, in file order."""
    if source.startswith("sample:"):
        return _sample_rows(source)
    path = Path(source).expanduser()
    if not path.is_file():
        raise SourceError(f"{source}: no such file")
    if path.suffix.lower() in (".parquet", ".pq"):
        return _parquet_rows(path)
    return _csv_rows(path)


def _row_ts(row: dict[str, Any]) -> datetime | None:
    for key, value in row.items():
        if str(key).strip().lower() in ("timestamp", "ts", "time", "datetime", "date", "t"):
            try:
                return value if isinstance(value, datetime) else parse_utc(str(value))
            except ValueError:
                return None
    return None


def window(rows: list[dict[str, Any]], start: str = "", end: str = "") -> list[dict[str, Any]]:
    """Rows whose time lies in [start, end]; rows with unreadable times are kept (and will be
    quarantined by validation), so nothing bad disappears silently."""
    lo = parse_utc(start) if start else None
    hi = parse_utc(end) if end else None
    if lo is None and hi is None:
        return rows
    kept = []
    for row in rows:
        ts = _row_ts(row)
        if ts is not None and ts.tzinfo is None:
            ts = parse_utc(ts.isoformat())
        if ts is None or ((lo is None or ts >= lo) and (hi is None or ts <= hi)):
            kept.append(row)
    return kept


@dataclass(frozen=True)
class ReplayData:
    """The rows of one replay and an id that changes when the data or window changes."""

    source_id: str
    rows: list[dict[str, Any]]


def open_replay(source: str, start: str = "", end: str = "") -> ReplayData:
    """Load a replay's rows for the configured window and give it a stable id."""
    rows = window(load_rows(source), start, end)
    digest = hashlib.sha256(f"{source}|{start}|{end}|{len(rows)}".encode())
    if rows:
        digest.update(repr(sorted(rows[0].items())).encode())
        digest.update(repr(sorted(rows[-1].items())).encode())
    return ReplayData(source_id=digest.hexdigest()[:16], rows=rows)


def load_bars(source: str, contract: str, start: str = "", end: str = "") -> list[Bar]:
    """The valid bars of a source (offline tools); invalid rows are skipped here, and counted
    by the caller if it wants through `load_bars_counted`."""
    return load_bars_counted(source, contract, start, end)[0]


def load_bars_counted(
    source: str, contract: str, start: str = "", end: str = ""
) -> tuple[list[Bar], int]:
    """Valid bars of a source plus how many rows were refused by validation."""
    validator = BarValidator()
    bars, refused = [], 0
    for row in window(load_rows(source), start, end):
        try:
            bars.append(validator.check(row, contract))
        except BarRejected:
            refused += 1
    return bars, refused
