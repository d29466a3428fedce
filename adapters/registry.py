"""The adapter registry under `<state_dir>/adapters/`: one immutable folder per version.

Layout: `v000001/` holds peft's `adapter_model.safetensors` + `adapter_config.json` and our
`meta.json` (tensor checksum, base checksum, parent, rank/alpha, when, audit id). `ACTIVE` is the
pointer (JSON: version, checksum, history of previously active versions), replaced atomically:
written to a temp file, fsynced, renamed over the old one, directory fsynced. A version whose
tensors do not hash to its recorded checksum, or that was trained on another base, is refused
with a reason (RegistryError) and the pointer is left alone. An automatic rollback passes
over such versions to the newest one that verifies, or to the bare base.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from adapters.lora import (
    AdapterError,
    attach_lora,
    load_adapter_state,
    save_adapter,
    tensor_checksum,
)
from adapters.model import Forecaster

POINTER = "ACTIVE"
META = "meta.json"


class RegistryError(Exception):
    """A version is missing, corrupted, or does not fit the base model; the message says why."""


def base_checksum(base: Forecaster) -> str:
    """Checksum of the frozen base forecaster's tensors (adapters are only valid on it)."""
    return tensor_checksum(dict(base.state_dict()))


def fsync_dir(path: Path) -> None:
    """fsync a directory (so a rename or a new file in it survives a power cut)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so a crash leaves the old or the new file, never a mix."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


@dataclass(frozen=True)
class RollbackPlan:
    """Where a rollback goes: `version` (None = the bare base) with its verified tensors and
    meta, the version it leaves, and the versions passed over as (version, reason)."""

    version: str | None
    left: str | None
    skipped: tuple[tuple[str, str], ...] = ()
    state: dict[str, torch.Tensor] | None = None
    meta: dict[str, Any] | None = None


class AdapterRegistry:
    """Versions of the forecaster's LoRA adapter and the active pointer."""

    def __init__(self, root: Path, base: Forecaster) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.base = base
        self.base_sum = base_checksum(base)

    # -- versions ------------------------------------------------------------------------
    def versions(self) -> list[str]:
        """Stored versions, oldest first."""
        return sorted(p.name for p in self.root.glob("v[0-9]*") if p.is_dir())

    def save(self, state: dict[str, torch.Tensor], rank: int, alpha: float,
             meta: dict[str, Any] | None = None) -> str:
        """Store a new version (written aside, then renamed into place); returns its name."""
        existing = self.versions()
        number = int(existing[-1][1:]) + 1 if existing else 1
        version = f"v{number:06d}"
        tmp = self.root / f".{version}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        model = attach_lora(self.base, rank, alpha, init=state)
        save_adapter(model, tmp)
        record = {"version": version, "checksum": tensor_checksum(state),
                  "base_checksum": self.base_sum, "rank": int(rank), "alpha": float(alpha),
                  "created": datetime.now(UTC).isoformat(), "parent": self.active(),
                  **(meta or {})}
        (tmp / META).write_text(json.dumps(record, sort_keys=True, default=str))
        for f in tmp.iterdir():
            with f.open("rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, self.root / version)
        fsync_dir(self.root)
        return version

    def meta(self, version: str) -> dict[str, Any]:
        """A version's meta.json; RegistryError if absent or unreadable."""
        try:
            return json.loads((self.root / version / META).read_text())
        except (OSError, ValueError) as err:
            raise RegistryError(f"adapter {version}: no readable {META} ({err})") from None

    def load(self, version: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """(tensors, meta) of a version after checking its checksum and base; RegistryError
        with the reason otherwise."""
        folder = self.root / version
        if not folder.is_dir():
            raise RegistryError(f"adapter {version}: no such version")
        meta = self.meta(version)
        if meta.get("base_checksum") != self.base_sum:
            raise RegistryError(f"adapter {version}: trained on another base checkpoint "
                                f"({str(meta.get('base_checksum'))[:12]} != {self.base_sum[:12]})")
        try:
            state, _cfg = load_adapter_state(folder)
        except AdapterError as err:
            raise RegistryError(f"adapter {version}: {err}") from None
        got = tensor_checksum(state)
        if got != meta.get("checksum"):
            raise RegistryError(f"adapter {version}: tensor checksum {got[:12]} does not match "
                                f"the recorded {str(meta.get('checksum'))[:12]} (corrupted)")
        try:  # also proves the tensors fit the base's target modules
            attach_lora(self.base, int(meta["rank"]), float(meta["alpha"]), init=state)
        except (AdapterError, KeyError, ValueError, RuntimeError) as err:
            raise RegistryError(f"adapter {version}: does not fit the base model ({err})") \
                from None
        return state, meta

    # -- the active pointer --------------------------------------------------------------
    def _pointer(self) -> dict[str, Any]:
        path = self.root / POINTER
        if not path.exists():
            return {"version": None, "history": []}
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise RegistryError(f"{path}: unreadable active pointer ({err})") from None

    def active(self) -> str | None:
        """The active version (None = the bare base model)."""
        return self._pointer().get("version")

    def history(self) -> list[str | None]:
        """Previously active versions, most recent last."""
        return list(self._pointer().get("history", []))

    def activate(self, version: str | None, reason: str = "", *,
                 rolled_back: str | None = None) -> None:
        """Point ACTIVE at `version` (None = bare base) after verifying it loads; atomic.
        `rolled_back` marks the version being left as one never to return to automatically."""
        if version is not None:
            self.load(version)
        ptr = self._pointer()
        history = list(ptr.get("history", []))
        if ptr.get("version") != version:
            history.append(ptr.get("version"))
        skipped = list(ptr.get("rolled_back", []))
        if rolled_back is not None:
            skipped.append(rolled_back)
        checksum = self.meta(version)["checksum"] if version else None
        body = {"version": version, "checksum": checksum, "history": history[-50:],
                "rolled_back": skipped[-50:], "reason": reason,
                "at": datetime.now(UTC).isoformat()}
        atomic_write(self.root / POINTER, json.dumps(body, sort_keys=True).encode())

    def plan_rollback(self, to: str | None = None) -> RollbackPlan:
        """Choose a rollback target without changing anything.

        With `to` (a version, or "base" for the bare base) that target, verified: RegistryError
        with the reason if it is missing or corrupted (an operator asked for that exact one).
        Without it, walk back through the previously active versions, newest first, passing
        over the current one and those already rolled back from: the first that verifies is
        the target, each one that does not is reported in `skipped` with its reason, and a
        base entry in the history (or running out of candidates) means the bare base, which
        always verifies. RegistryError only when the bare base is active already or the
        pointer is unreadable."""
        ptr = self._pointer()
        current = ptr.get("version")
        if to is not None:
            if to == "base":
                return RollbackPlan(None, current)
            state, meta = self.load(to)
            return RollbackPlan(to, current, state=state, meta=meta)
        if current is None:
            raise RegistryError("nothing to roll back to (the bare base is active)")
        passed = set(ptr.get("rolled_back", [])) | {current}
        skipped: list[tuple[str, str]] = []
        for version in reversed(ptr.get("history", [])):
            if version is None:  # the base served at that point of the history
                break
            if version in passed:
                continue
            passed.add(version)
            try:
                state, meta = self.load(version)
            except RegistryError as err:
                skipped.append((version, str(err)))
                continue
            return RollbackPlan(version, current, tuple(skipped), state, meta)
        return RollbackPlan(None, current, tuple(skipped))

    def rollback(self, to: str | None = None, reason: str = "rollback") -> str | None:
        """Activate the target `plan_rollback(to)` chooses and return it (None = bare base).
        The version left is marked never to return to automatically. RegistryError when the
        plan is refused; the pointer then stays as it was."""
        plan = self.plan_rollback(to)
        self.activate(plan.version, reason=reason, rolled_back=plan.left)
        return plan.version

    def load_active(self) -> tuple[str | None, dict[str, torch.Tensor] | None,
                                   dict[str, Any] | None, str | None]:
        """(version, tensors, meta, refusal) for start-up: a corrupted active version is
        refused with its reason and (None, None, None, reason) tells the caller to serve the
        base."""
        version = self.active()
        if version is None:
            return None, None, None, None
        try:
            state, meta = self.load(version)
        except RegistryError as err:
            return None, None, None, str(err)
        return version, state, meta, None
