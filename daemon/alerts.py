"""The alert hook: a command from config run on kill, rollback and unhealthy canary.

The alert is one JSON object on the command's stdin (`kind`, `ts`, fields). It runs in the
background; a failing or missing command is logged, never raised into the caller.
"""

from __future__ import annotations

import shlex
import subprocess
import threading
from datetime import UTC, datetime
from typing import Any

import orjson

from daemon.logs import get_logger, redact_value

ALERT_TIMEOUT_S = 10.0


class AlertHook:
    """Runs `command` (argv, shell-style quoting) with the alert as JSON on stdin."""

    def __init__(self, command: str = "", counter: Any = None) -> None:
        self.command = command
        self.counter = counter  # a labelled Counter ("kind"), e.g. Metrics.alerts
        self.log = get_logger("alerts")
        self.sent = 0

    def fire(self, kind: str, **fields: Any) -> None:
        """Count the alert and send it without blocking the caller."""
        if self.counter is not None:
            self.counter.labels(kind=kind).inc()
        if not self.command:
            return
        payload = {"kind": kind, "ts": datetime.now(UTC).isoformat(), **fields}
        body = orjson.dumps(redact_value(payload), default=str)
        self.sent += 1
        threading.Thread(target=self._run, args=(kind, body), daemon=True).start()

    def _run(self, kind: str, body: bytes) -> None:
        try:
            done = subprocess.run(shlex.split(self.command), input=body, capture_output=True,
                                  timeout=ALERT_TIMEOUT_S, check=False)
            if done.returncode != 0:
                self.log.error("alert_failed", kind=kind, returncode=done.returncode)
            else:
                self.log.info("alert_sent", kind=kind)
        except (OSError, subprocess.TimeoutExpired, ValueError) as err:
            self.log.error("alert_failed", kind=kind, error=str(err))
