"""Wiring of the continual-update worker into `anchord run` (issue 6).

`attach_adapters(daemon)` builds the registry (`<state_dir>/adapters/`), the audit log
(`<state_dir>/audit/`, indexed in the store), and the `UpdateWorker` over the pipeline's frozen
base forecaster and anchor suite, with the pipeline's `score_slice` and `swap_forecaster`. It
adds: a bar handler before the others (`before_bar`: the hot swap happens there, between two
bars; a deterministic replay waits there for a due cycle) and one after them (feeds the worker
the row whose label has just been realised), the background task, `ctl rollback [VERSION]`,
the `adapters` status provider, metrics and a reload hook. The pipeline's calibration monitor
is a drift trigger too: its `on_ece_drift` hook hands `worker.signal_drift("ece_drift", ece)`
(a cycle at the next bar the minimum spacing allows; `[adapters].trigger` "drift" or "both").

What it needs from the pipeline (`daemon.pipeline`): `.arts` (ArtifactSet: `forecaster`,
`anchors`, `slices`, `params["horizon"]`), `swap_forecaster(model, name)`,
`score_slice(model, start, end)`, and `last_forecaster_input` (the forecaster input vector of
the bar just decided, None while warming up).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np

from adapters.audit import AuditLog
from adapters.registry import AdapterRegistry, RegistryError
from adapters.update import UpdateError
from adapters.worker import UpdateWorker
from daemon.control import CommandError
from daemon.errors import ConfigError

# Log level of the worker's events that are not plain information.
EVENT_LEVELS = {"rollback": "warning", "adapter_refused": "warning",
                "promotion_refused": "warning", "rollback_failed": "error",
                "audit_failed": "error"}


def attach_adapters(daemon: Any, *, base: Any = None, anchors: Any = None,
                    slices: dict[str, tuple[str, str]] | None = None, score_slice: Any = None,
                    swap: Any = None, horizon: int | None = None) -> UpdateWorker | None:
    """Create and attach the update worker; None (and a log line) when there is no pipeline to
    adapt. Keyword arguments override what is taken from `daemon.pipeline`."""
    pipe = getattr(daemon, "pipeline", None)
    arts = getattr(pipe, "arts", None)
    base = base if base is not None else getattr(arts, "forecaster", None)
    anchors = anchors if anchors is not None else getattr(arts, "anchors", None)
    if base is None or anchors is None:
        daemon.log.info("adapters_not_attached", reason="no pipeline / artifact set loaded")
        return None
    if slices is None:  # the gate replays the stress slices (plus the drift hold-out)
        slices = {k: v for k, v in (getattr(arts, "slices", {}) or {}).items()
                  if k.startswith("stress")}
    score_slice = score_slice or getattr(pipe, "score_slice", None)
    if swap is None:
        def swap(served: Any) -> None:
            pipe.swap_forecaster(served)
            _record_inputs(pipe, box)

    def prepare(model: Any, version: str | None) -> Any:
        # The pipeline's serving form (numpy fast path), built off the event loop for
        # candidates, so that the swap between two bars is one reference assignment.
        try:
            from daemon.pipeline.fastpath import ServingForecaster
        except ImportError:
            return model
        return ServingForecaster(model, f"adapter:{version or 'base'}")

    params = getattr(arts, "params", {}) or {}
    horizon = int(horizon or params.get("horizon", 1))
    cfg = daemon.cfg
    store = daemon.store
    registry = AdapterRegistry(daemon.state_dir / "adapters", base)
    audit = AuditLog(daemon.state_dir / "audit", on_append=store.index_audit)
    box: dict[str, Any] = {}

    def events(kind: str, payload: dict[str, Any]) -> None:
        level = EVENT_LEVELS.get(kind, "info")
        getattr(daemon.log, level)(f"adapters_{kind}", **payload)
        if kind in ("cycle", "promotion", "rollback", "rollback_failed"):
            store.journal(kind, daemon.event_time(), payload)
        _metrics(daemon, kind, payload)

    def alert(kind: str, fields: dict[str, Any]) -> None:
        daemon.alerts.fire(kind, **fields)

    worker = UpdateWorker(cfg, base, anchors, registry, audit, score_slice, swap, daemon.clock,
                          slices=slices, events=events, alert=alert,
                          deterministic=lambda: daemon.cfg.data.pace <= 0,
                          prepare=prepare if pipe is not None else None)
    # Rows wait here until their label (log return over `horizon` bars) is realised.
    pending: deque[tuple[Any, float, str, int]] = deque()
    prev: dict[str, Any] = {"idx": 0, "close": None, "date": None}

    async def before(bar: Any) -> None:
        # Runs first in each bar: the forecaster input of the previous bar (whatever handler
        # decided it) becomes a pending row; rows whose horizon has passed feed the worker;
        # then finished cycles are applied (the swap happens here, between two bars).
        idx = prev["idx"] + 1
        x = getattr(pipe, "last_forecaster_input", None) if hasattr(
            pipe, "last_forecaster_input") else box.pop("x", None)
        if x is not None and prev["close"] is not None:
            pending.append((x, prev["close"], prev["date"], prev["idx"]))
        while pending and pending[0][3] <= idx - horizon:
            row, close0, date0, i0 = pending.popleft()
            if i0 == idx - horizon:
                worker.on_bar(row, math.log(float(bar.close) / close0), ts=date0)
        prev.update(idx=idx, close=float(bar.close), date=bar.ts.date().isoformat())
        await worker.before_bar()

    if pipe is not None and hasattr(pipe, "on_ece_drift"):
        _chain_ece_drift(pipe, worker)
    _persist(daemon, worker, pending, prev, box)
    daemon.ingest.handlers.insert(0, before)
    daemon.tasks.append(worker.run)
    daemon.status_providers["adapters"] = worker.status
    set_adapter_version(daemon, worker.active_version)
    daemon.reload_checks.append(lambda new_cfg, _changes: _prepare_reload(worker, new_cfg))

    async def rollback(args: dict[str, Any]) -> dict[str, Any]:
        # Without a version the worker picks the newest one that verifies (else the base);
        # a named version that does not verify is refused, and the operator is told why.
        try:
            return worker.rollback(to=args.get("version") or None, reason="ctl rollback")
        except RegistryError as err:
            raise CommandError(f"rollback refused: {_one_line(err)}") from None
        except OSError as err:
            raise CommandError(f"rollback failed: {_one_line(err)}") from None

    daemon.control.register("rollback", rollback)
    daemon.adapters = worker
    return worker


def _prepare_reload(worker: UpdateWorker, cfg: Any) -> Any:
    # A reload check: values the worker refuses refuse the whole reload (nothing is applied).
    try:
        return worker.prepare_config(cfg)
    except UpdateError as err:
        raise ConfigError(cfg.source_path, "[adapters]", str(err)) from None


STATE_KEY = "adapters"


def _persist(daemon: Any, worker: UpdateWorker, pending: deque[Any], prev: dict[str, Any],
             box: dict[str, Any]) -> None:
    """Restore the worker (and the rows waiting for their labels, and the last forecaster
    input) from the last bar's commit of the same run, and commit them with every bar from
    now on (adapters/worker_state.py)."""
    import pickle

    from adapters.worker_state import restore_worker, worker_state
    from daemon.pipeline.attach import run_identity

    raw = daemon.store.bar_state(STATE_KEY)
    if raw is not None:
        try:
            saved = pickle.loads(raw)
            if saved["identity"] == run_identity(daemon):
                restore_worker(worker, saved["worker"])
                pending.extend(saved["rows"])
                prev.update(saved["prev"])
                box.update(saved["box"])
                daemon.log.info("adapters_state_restored", cycles=worker.cycle,
                                bar=worker.bar_index, active_version=worker.active_version)
        except (RegistryError, pickle.UnpicklingError, KeyError, EOFError, TypeError) as err:
            daemon.log.error("adapters_state_not_restored", error=repr(err),
                             kept="the worker as it started")
    daemon.store.bar_writers[STATE_KEY] = lambda: pickle.dumps(
        {"identity": run_identity(daemon), "worker": worker_state(worker),
         "rows": list(pending), "prev": dict(prev), "box": dict(box)},
        protocol=pickle.HIGHEST_PROTOCOL)


def _chain_ece_drift(pipe: Any, worker: UpdateWorker) -> None:
    """Route the pipeline's `ece_drift` (calibration monitor) to the worker's trigger, keeping
    any hook already installed."""
    previous = pipe.on_ece_drift

    def on_ece_drift(ece: float) -> None:
        if previous is not None:
            previous(ece)
        worker.signal_drift("ece_drift", float(ece))

    pipe.on_ece_drift = on_ece_drift


def _metrics(daemon: Any, kind: str, payload: dict[str, Any]) -> None:
    m = getattr(daemon.metrics, "adapter_cycles", None)
    if m is None:
        return
    if kind == "cycle":
        m.labels(decision=str(payload.get("decision"))).inc()
        for key, gauge in daemon.metrics.adapter_gauges.items():
            value = payload.get(key)
            if isinstance(value, int | float) and math.isfinite(value):
                gauge.set(value)
    elif kind in ("rollback", "rollback_failed"):
        daemon.metrics.adapter_rollbacks.inc()
    if kind in ("promotion", "rollback", "rollback_failed"):
        set_adapter_version(daemon, payload.get("version"))


def _one_line(err: Exception) -> str:
    """An error as one line (a safetensors reason may span several)."""
    return " ".join(str(err).split()) or type(err).__name__


def set_adapter_version(daemon: Any, version: str | None) -> None:
    """`anchord_adapter_version`: the number of `version` ("v000003" -> 3), 0 for the base."""
    gauge = getattr(daemon.metrics, "adapter_version", None)
    if gauge is None:
        return
    digits = "".join(ch for ch in str(version or "") if ch.isdigit())
    gauge.set(int(digits) if version and digits else 0)


def _record_inputs(pipe: Any, box: dict[str, Any]) -> None:
    """Keep a copy of the forecaster input of each served prediction in `box["x"]` (used when
    the pipeline does not expose `last_forecaster_input`)."""
    serving = getattr(pipe, "forecaster", None)
    if serving is None or getattr(serving, "_anchord_recording", False):
        return
    predict = serving.predict

    def recording(x: Any) -> float:
        box["x"] = np.array(x, dtype=np.float32, copy=True)
        return predict(x)

    serving.predict = recording
    serving._anchord_recording = True
