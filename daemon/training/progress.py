"""Progress of a long offline run: a bar on a terminal, JSON events (one per line) otherwise."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

import orjson


class Progress:
    """Reports stages and steps; `tty` defaults to whether `stream` is a terminal."""

    def __init__(self, stream: TextIO | None = None, tty: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.start = time.monotonic()
        self.stage_times: dict[str, float] = {}
        self._stage = ""
        self._stage_start = self.start

    def _emit(self, event: str, **fields: Any) -> None:
        rec = {"event": event, "elapsed_s": round(time.monotonic() - self.start, 3), **fields}
        self.stream.write(orjson.dumps(rec, default=str).decode() + "\n")
        self.stream.flush()

    def stage(self, name: str, **fields: Any) -> None:
        """A new stage begins (the previous one ends)."""
        self._close_stage()
        self._stage, self._stage_start = name, time.monotonic()
        if self.tty:
            self.stream.write(f"\r\033[K{name} …")
            self.stream.flush()
        else:
            self._emit("train_stage", stage=name, **fields)

    def step(self, done: int, total: int, **fields: Any) -> None:
        """`done` of `total` steps of the current stage are finished."""
        if self.tty:
            width = 30
            filled = int(width * done / max(total, 1))
            bar = "█" * filled + "·" * (width - filled)
            self.stream.write(f"\r\033[K{self._stage} [{bar}] {done}/{total}")
            self.stream.flush()
        else:
            self._emit("train_progress", stage=self._stage, done=done, total=total, **fields)

    def _close_stage(self) -> None:
        if self._stage:
            self.stage_times[self._stage] = round(time.monotonic() - self._stage_start, 3)

    def finish(self, **fields: Any) -> None:
        """The run is over; report the total time."""
        self._close_stage()
        self._stage = ""
        if self.tty:
            self.stream.write(f"\r\033[Kdone in {time.monotonic() - self.start:.1f} s\n")
            self.stream.flush()
        else:
            self._emit("train_done", **fields)
