"""The update worker's state across restarts: what `worker_state` returns is committed with every
bar by the daemon, and `restore_worker` puts it back at start.

A decision depends on the worker through what it serves and when it swaps: the trigger (its
bar count, the Page–Hinkley detector, pending signals), the drift window, the cycle count, the
cycles requested or finished but not yet applied (a requested one is run again from its kept
batch: training is deterministic for its inputs), the shadow and the post-promotion monitor,
and the active and previous versions. Models are not kept: they are rebuilt from the registry
by version (their files are verified on load).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import anyio

from adapters.figures import predict as _predict
from adapters.lora import build_serving_model
from adapters.promotion import Pending


def worker_state(w: Any) -> dict[str, Any]:
    """Plain data (and numpy arrays) that `restore_worker` rebuilds the worker from."""
    shadow = None
    if w._shadow is not None:
        shadow = {"pending": _pending_data(w._shadow["pending"]), "bars": w._shadow["bars"],
                  "diff": w._shadow["diff"]}
    return {"bar_index": w.bar_index, "cycle": w.cycle, "last": dict(w.last),
            "last_metrics": dict(w.last_metrics), "trigger": w.trigger,
            "window": list(w.window), "requests": list(w._requests), "due": dict(w._due),
            "pending": [_pending_data(p) for p in w._pending], "shadow": shadow,
            "monitor": None if w._monitor is None else dict(w._monitor),
            "active_version": w.active_version, "previous": w.previous is not None,
            "previous_version": w.previous_version, "paused": w.paused}


def _pending_data(p: Pending) -> dict[str, Any]:
    return {"cycle": p.cycle, "decision": p.decision, "version": p.version,
            "audit_id": p.audit_id, "gate_output_drift": p.gate_output_drift,
            "figures": p.figures}


def _model_of(w: Any, version: str | None) -> tuple[Any, Any, Any]:
    """(model, served form, adapter tensors) of a registry version (None: the bare base)."""
    if version is None:
        model = build_serving_model(w.base, None, w.update_settings.rank,
                                    w.update_settings.alpha)
        return model, w.prepare(model, None), None
    state, meta = w.registry.load(version)
    model = build_serving_model(w.base, state, int(meta["rank"]), float(meta["alpha"]))
    return model, w.prepare(model, version), state


def _pending(w: Any, d: dict[str, Any]) -> Pending:
    model, served, state = _model_of(w, d["version"])
    return Pending(d["cycle"], d["decision"], model, served, state, d["version"],
                   d["audit_id"], d["gate_output_drift"], d["figures"])


def restore_worker(w: Any, state: dict[str, Any]) -> None:
    """Put a committed state back (RegistryError when a version it names does not verify;
    the caller then keeps the worker as it started)."""
    if state["active_version"] != w.active_version:
        model, served, tensors = _model_of(w, state["active_version"])
        w.registry.activate(state["active_version"], reason="restored at start")
        w.model, w.served, w.active_state = model, served, tensors
        w.active_version = state["active_version"]
        w.swap(served)
        w.anchors = w.base_anchors.with_teacher(lambda x: _predict(w.model, x)) \
            if tensors is not None else w.base_anchors
    if state["previous"]:
        w.previous, w.previous_served, _ = _model_of(w, state["previous_version"])
        w.previous_version = state["previous_version"]
    pending = [_pending(w, d) for d in state["pending"]]
    shadow = state["shadow"]
    w.bar_index, w.cycle = state["bar_index"], state["cycle"]
    w.last, w.last_metrics = state["last"], state["last_metrics"]
    w.trigger = state["trigger"]
    w.window = deque(state["window"], maxlen=w.window.maxlen)
    w._requests = deque(state["requests"])
    w._due = dict(state["due"])
    w._pending = deque(pending)
    w._shadow = None if shadow is None else {"pending": _pending(w, shadow["pending"]),
                                             "bars": shadow["bars"], "diff": shadow["diff"]}
    w._monitor = state["monitor"]
    w.paused = state["paused"]
    asked = {r[0] for r in w._requests}
    w._done = {c: anyio.Event() for c in w._due}
    for cycle, done in w._done.items():
        if cycle not in asked:
            done.set()  # finished before the restart: applied (pending) or dropped
    if w._requests:
        w._wake.set()
