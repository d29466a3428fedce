"""The Prometheus endpoint: the daemon's metrics registry served over HTTP on loopback."""

from __future__ import annotations

import ipaddress
from typing import Any

from prometheus_client import start_http_server

from daemon.metrics import Metrics


def is_loopback(host: str) -> bool:
    """True for localhost and 127.0.0.0/8 or ::1 literals."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_listen(value: str) -> tuple[str, int]:
    """`host:port` → (host, port); raises ValueError with a readable message."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected host:port, got {value!r}")
    host = host.strip("[]")
    if not is_loopback(host):
        raise ValueError(f"metrics must listen on a loopback address, got {host!r}")
    return host, int(port)


def serve_metrics(metrics: Metrics, listen: str) -> tuple[Any, int]:
    """Start the endpoint in a background thread; returns (server, bound port)."""
    host, port = parse_listen(listen)
    server, _thread = start_http_server(port, addr=host, registry=metrics.registry)
    return server, server.server_address[1]
