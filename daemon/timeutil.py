"""Parsing and formatting of timestamps: everything inside the daemon is timezone-aware UTC."""

from __future__ import annotations

from datetime import UTC, datetime


def parse_utc(text: str) -> datetime:
    """Parse an ISO date or date-time in any zone (or none: taken as UTC) into aware UTC.

    Raises ValueError with a readable message for anything else.
    """
    s = str(text).strip()
    if not s:
        raise ValueError("empty timestamp")
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise ValueError(f"not an ISO date or time: {text!r}") from None
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def iso(dt: datetime) -> str:
    """Format an aware datetime as ISO 8601 UTC with a Z suffix."""
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")
