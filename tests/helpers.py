"""Shared test helpers: run the CLI as a real subprocess and read its JSON log lines."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]


def cli_env(**extra: str) -> dict[str, str]:
    """Environment for a CLI subprocess that runs this checkout's code."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    env.update(extra)
    return env


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 120,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m daemon ARGS` to completion and return the result (text mode)."""
    return subprocess.run([sys.executable, "-m", "daemon", *args], cwd=cwd or ROOT,
                          env=env or cli_env(), capture_output=True, text=True, timeout=timeout)


def write_config(folder: Path, text: str, name: str = "runtime.toml") -> Path:
    """Write a runtime.toml into `folder` (state and socket inside it) and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def basic_config(source: str = "sample:sp500", at_end: str = "idle", pace: float = 0.0,
                 extra: str = "", metrics: str = 'listen = "127.0.0.1:0"') -> str:
    """A small runtime.toml whose state lives next to it; `extra` continues the [data] table."""
    return (
        "[daemon]\nstate_dir = \"state\"\ncontrol_socket = \"state/ctl.sock\"\n"
        f"status_interval_s = 60.0\n[metrics]\n{metrics}\n"
        f"[data]\nsource = \"{source}\"\npace = {pace}\nat_end = \"{at_end}\"\n" + extra
    )


class DaemonProcess:
    """`anchord run` as a real subprocess; collects its stdout lines as parsed JSON."""

    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daemon", "run", "--config", str(config)],
            cwd=ROOT, env=env or cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self.raw_lines: list[bytes] = []
        self.events: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.raw_lines.append(line)
                try:
                    self.events.append(orjson.loads(line))
                except orjson.JSONDecodeError:
                    raw = line.decode(errors="replace")
                    self.events.append({"event": "<not json>", "raw": raw})
                self._cond.notify_all()

    def wait_for(self, event: str, timeout: float = 30.0, after: int = 0,
                 **fields: Any) -> dict[str, Any]:
        """The first log event named `event` (index >= after) whose fields match."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for rec in self.events[after:]:
                    if rec.get("event") == event and all(rec.get(k) == v
                                                         for k, v in fields.items()):
                        return rec
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None and not self._reader.is_alive():
                    names = [e.get("event") for e in self.events[-20:]]
                    raise AssertionError(f"no {event!r} event within {timeout}s; last: {names}")
                self._cond.wait(min(left, 0.2))

    def mark(self) -> int:
        with self._cond:
            return len(self.events)

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self._reader.join(timeout=2)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def exit_code(self, timeout: float) -> int:
        """Wait for the process to end; a non-zero code prints its last events and stderr (the
        test's report then says why it ended)."""
        code = self.proc.wait(timeout)
        self._reader.join(timeout=2)
        if code != 0:
            assert self.proc.stderr is not None
            print("last events:", *self.events[-15:], sep="\n  ")
            print("stderr:", self.proc.stderr.read().decode(errors="replace")[-3000:])
        return code

    def assert_running(self) -> None:
        """Fail (with the process's last events and stderr) if it has ended."""
        if self.proc.poll() is not None:
            raise AssertionError(f"the daemon ended early (exit {self.exit_code(1)})")
