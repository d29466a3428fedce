"""The one rule for a Gateway base URL: https, or plain http only to a loopback host."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

LOOPBACK_NAMES = ("localhost", "localhost.localdomain")


def is_loopback(host: str) -> bool:
    """True for localhost and any loopback IPv4/IPv6 address."""
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def base_url_problem(url: str) -> str | None:
    """Why `url` may not be used as the Gateway base URL, or None when it may."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError as err:
        return f"not a URL: {err}"
    if not host:
        return f"not an absolute URL: {url!r}"
    if parts.scheme == "https":
        return None
    if parts.scheme == "http" and is_loopback(host):
        return None
    return f"must be https (plain http is allowed only to loopback), got {url!r}"
