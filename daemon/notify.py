"""systemd's notify protocol (READY, WATCHDOG, STATUS, RELOADING, STOPPING) without a library.

A no-op when NOTIFY_SOCKET is not set, so the daemon runs the same outside systemd.
"""

from __future__ import annotations

import os
import socket
import time


class Notifier:
    """Sends sd_notify datagrams to $NOTIFY_SOCKET."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = env.get("NOTIFY_SOCKET") or None
        usec = env.get("WATCHDOG_USEC")
        pid = env.get("WATCHDOG_PID")
        ok_pid = pid is None or pid == str(os.getpid())
        self.watchdog_s = int(usec) / 1e6 if usec and usec.isdigit() and ok_pid else None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, **fields: str) -> bool:
        """Send `KEY=value` lines; returns False (never raises) when it cannot."""
        if not self.address:
            return False
        addr = self.address
        if addr.startswith("@"):
            addr = "\0" + addr[1:]
        payload = "\n".join(f"{k}={v}" for k, v in fields.items()).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(payload, addr)
            return True
        except OSError:
            return False

    def ready(self, status: str = "") -> None:
        self.send(READY="1", STATUS=status or "running")

    def reloading(self) -> None:
        # MONOTONIC_USEC lets systemd >= 253 (Type=notify-reload) match the reload to us.
        self.send(RELOADING="1", MONOTONIC_USEC=str(time.monotonic_ns() // 1000))

    def stopping(self) -> None:
        self.send(STOPPING="1")

    def watchdog(self) -> None:
        self.send(WATCHDOG="1")

    def status(self, text: str) -> None:
        self.send(STATUS=text)
