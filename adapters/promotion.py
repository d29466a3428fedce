"""What the worker serves and how it changes: promotion, shadow, post-promotion monitor, rollback.

`PromotionMixin` is the serving half of `UpdateWorker` (adapters/worker.py, which owns the
state it declares below). Its promises:
- a swap happens between two bars, as one `swap(served)` call;
- a promoted version is watched for `monitor_bars`; a breach rolls back at once;
- an automatic rollback (a monitor breach, or `rollback()` without a target) leaves the
  breaching version whatever happens: it goes to the newest previously active version whose
  files verify (corrupted ones are skipped and recorded), else the bare base, and if even the
  registry fails it serves the base (always in memory), logs `rollback_failed` and alerts. It
  never raises into the bar loop. A rollback to a named version that does not verify is
  refused (RegistryError) with nothing changed.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from adapters.anchors import AnchorSuite
from adapters.audit import AuditLog
from adapters.figures import ScoreSlice
from adapters.figures import predict as _predict
from adapters.gate import PROMOTE, GatePolicy, monitor_breach
from adapters.lora import build_serving_model
from adapters.model import Forecaster
from adapters.registry import AdapterRegistry, RegistryError, RollbackPlan
from adapters.update import DriftBatch, UpdateSettings


@dataclass
class Pending:
    """A finished cycle waiting for `before_bar` to apply it."""

    cycle: int
    decision: str
    model: Forecaster | None
    served: Any
    state: dict[str, torch.Tensor] | None
    version: str | None
    audit_id: str
    gate_output_drift: float | None
    figures: dict[str, Any]


def monitor_figures(model: torch.nn.Module, previous: torch.nn.Module, batch: DriftBatch,
                    base_anchors: AnchorSuite, score_slice: ScoreSlice | None, y_scale: float,
                    gate_output_drift: float | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(live, reference) for `monitor_breach`: the promoted model's stress MSE against the base
    cache and output drift from the previous model on the bars since promotion; with
    `score_slice` and two bars or more, both models' mdd, violations and worst day return."""
    s = y_scale
    live: dict[str, Any] = {
        "stress_mse_base": float(np.mean(((_predict(model, base_anchors.inputs)
                                           - base_anchors.teacher) / s) ** 2)),
        "output_drift": float(np.mean(((_predict(model, batch.inputs)
                                        - _predict(previous, batch.inputs)) / s) ** 2)),
    }
    ref: dict[str, Any] = {"gate_output_drift": gate_output_drift}
    if score_slice is not None and len(batch.dates) >= 2:
        a = score_slice(model, batch.dates[0], batch.dates[-1])
        b = score_slice(previous, batch.dates[0], batch.dates[-1])
        for key in ("mdd", "violations", "worst_day_return"):
            live[key], ref[key] = a.get(key), b.get(key)
    return live, ref


class PromotionMixin:
    """Promotion, shadow, monitor and rollback over the state `UpdateWorker` sets up."""

    base: Forecaster
    registry: AdapterRegistry
    audit: AuditLog
    policy: GatePolicy
    settings: Any  # WorkerSettings
    update_settings: UpdateSettings
    score_slice: ScoreSlice | None
    swap: Callable[[Any], None]
    prepare: Callable[[Forecaster, str | None], Any]
    events: Callable[[str, dict[str, Any]], None]
    alert: Callable[[str, dict[str, Any]], None]
    base_anchors: AnchorSuite
    anchors: AnchorSuite
    window: deque[tuple[np.ndarray, float, str]]
    bar_index: int
    cycle: int
    last: dict[str, Any]
    paused: str | None
    model: Forecaster
    served: Any
    active_version: str | None
    active_state: dict[str, torch.Tensor] | None
    previous: Forecaster | None
    previous_version: str | None
    previous_served: Any
    _requests: deque[Any]
    _pending: deque[Pending]
    _due: dict[int, int]
    _done: dict[int, Any]
    _shadow: dict[str, Any] | None
    _monitor: dict[str, Any] | None

    def _apply(self, p: Pending) -> None:
        if p.decision == "shadow":
            self._shadow = {"pending": p, "bars": 0, "diff": 0.0}
            self.events("shadow_start", {"cycle": p.cycle, "version": p.version,
                                         "shadow_bars": self.settings.shadow_bars})
            return
        self._promote(p)

    def _promote(self, p: Pending) -> None:
        assert p.model is not None
        try:
            self.registry.activate(p.version, reason=f"promoted by cycle {p.cycle}")
        except RegistryError as err:
            self.events("promotion_refused", {"cycle": p.cycle, "version": p.version,
                                              "reason": str(err)})
            return
        pause_us = self._serve(p.model, p.served, p.version, p.state)
        self._monitor = {"cycle": p.cycle, "version": p.version, "since": self.bar_index,
                         "gate_output_drift": p.gate_output_drift, "figures": p.figures}
        self.events("promotion", {"cycle": p.cycle, "version": p.version,
                                  "reason": "gate passed", "audit_id": p.audit_id,
                                  "swap_us": round(pause_us, 2),
                                  "anchor_suite_hash": self.anchors.content_hash()})

    def _serve(self, model: Forecaster, served: Any, version: str | None,
               state: dict[str, torch.Tensor] | None) -> float:
        """Swap serving to `model`, keep the one it replaces warm as `previous`; returns the
        swap's duration in µs."""
        self.previous, self.previous_version = self.model, self.active_version
        self.previous_served = self.served
        self.model, self.active_version, self.active_state = model, version, state
        self.served = served
        t0 = time.perf_counter_ns()
        self.swap(served)
        pause_us = (time.perf_counter_ns() - t0) / 1000
        # The teacher cache follows the deployed checkpoint (re-hashed); the base one is kept.
        self.anchors = self.base_anchors.with_teacher(lambda x: _predict(self.model, x)) \
            if state is not None else self.base_anchors
        return pause_us

    def _feed_shadow(self, row: np.ndarray) -> None:
        sh = self._shadow
        if sh is None:
            return
        p = sh["pending"]
        live = float(_predict(self.model, row[None, :])[0])
        cand = float(_predict(p.model, row[None, :])[0])
        sh["bars"] += 1
        sh["diff"] += abs(cand - live) / float(self.base.y_scale)
        if sh["bars"] >= self.settings.shadow_bars:
            self._shadow = None
            self.events("shadow_done", {"cycle": p.cycle, "version": p.version,
                                        "bars": sh["bars"],
                                        "mean_abs_diff": sh["diff"] / sh["bars"]})
            p.decision = PROMOTE
            self._pending.append(p)

    def _tick_monitor(self) -> None:
        mon = self._monitor
        if mon is None or self.previous is None:
            return
        since = self.bar_index - mon["since"]
        if since > self.settings.monitor_bars:
            self._monitor = None
            return
        if since == 0 or since % max(self.settings.monitor_every_bars, 1):
            return
        rows = list(self.window)[-since:]
        batch = DriftBatch(np.stack([r for r, _, _ in rows]),
                           np.array([t for _, t, _ in rows], dtype=np.float32),
                           [d for _, _, d in rows])
        live, ref = monitor_figures(self.model, self.previous, batch, self.base_anchors,
                                    self.score_slice, float(self.base.y_scale),
                                    mon["gate_output_drift"])
        reason = monitor_breach(live, ref, self.policy)
        self.events("monitor", {"cycle": mon["cycle"], "version": mon["version"],
                                "bars_since": since, **live, "breach": reason})
        if reason is not None:
            self.rollback(reason=reason)  # automatic: never raises while a version is served

    def pause(self, reason: str) -> None:
        """Stop adapting for good in this process: no new cycles, pending candidates, shadow
        and post-promotion monitor are dropped, and `rollback` is refused. Used when the
        serving base forecaster is replaced under the worker (an artifact-set rollback): its
        adapters and anchors were trained against the old base, so nothing of it may be swapped
        onto the new one. A restart builds a fresh worker over the new base."""
        self.paused = reason
        self._requests.clear()
        self._pending.clear()
        self._due.clear()
        for done in self._done.values():
            done.set()  # nobody waits for a cycle that will never be applied
        self._shadow = None
        self._monitor = None
        self.events("paused", {"reason": reason})

    def rollback(self, to: str | None = None, reason: str = "manual") -> dict[str, Any]:
        """Roll serving back at once; returns version, from_version, reason, skipped (the
        versions passed over as corrupted, with why) and audit_id.

        `to` (a version, "base" = bare base): exactly that one; RegistryError, with pointer and
        serving unchanged, when it is missing or corrupted. Without `to`: the newest previously
        active version that verifies, else the bare base; while an adapter is served this never
        raises: if the registry fails, the base is served and `rollback_failed` is logged and
        alerted. RegistryError when paused, or when nothing is left to roll back to; on the
        operator's paths an I/O error writing the pointer is raised as it is."""
        if self.paused is not None:
            raise RegistryError(f"the adapter worker is paused ({self.paused})")
        left = self.active_version
        if to is not None or left is None:  # asked for by an operator: refusals reach them
            plan = self.registry.plan_rollback(to)
            self.registry.activate(plan.version, reason=reason, rolled_back=plan.left)
            model, served = self._rollback_model(plan)
        else:
            try:
                plan = self.registry.plan_rollback()
                self.registry.activate(plan.version, reason=reason, rolled_back=plan.left)
                model, served = self._rollback_model(plan)
            except Exception as err:  # the breaching adapter must go and the bar loop live on
                return self._fall_back_to_base(err, reason, left)
        self._serve(model, served, plan.version, plan.state)
        self._monitor = None
        skipped = [{"version": v, "reason": why} for v, why in plan.skipped]
        return self._report("rollback", {"version": plan.version, "from_version": left,
                                         "reason": reason, "skipped": skipped})

    def _rollback_model(self, plan: RollbackPlan) -> tuple[Forecaster, Any]:
        """(model, served form) for a verified plan."""
        if self.previous is not None and plan.version == self.previous_version:
            return self.previous, self.previous_served  # warm; the plan verified its files
        meta = plan.meta or {}
        model = build_serving_model(self.base, plan.state,
                                    int(meta.get("rank", self.update_settings.rank)),
                                    float(meta.get("alpha", self.update_settings.alpha)))
        return model, self.prepare(model, plan.version)

    def _fall_back_to_base(self, err: Exception, reason: str, left: str | None
                           ) -> dict[str, Any]:
        error = f"{type(err).__name__}: {err}"
        model = build_serving_model(self.base, None, self.update_settings.rank,
                                    self.update_settings.alpha)  # the base: needs no file
        try:
            served = self.prepare(model, None)
        except Exception:  # the pipeline's fast form is an optimisation; the module serves too
            served = model
        self._serve(model, served, None, None)
        self._monitor = None
        try:  # so that a restart does not serve the breaching version again
            self.registry.activate(None, reason=f"{reason} (after: {error})", rolled_back=left)
            moved = True
        except Exception:  # reported in the event: the operator has to fix the registry
            moved = False
        return self._report("rollback_failed", {"version": None, "from_version": left,
                                                "reason": reason, "error": error,
                                                "pointer_moved": moved, "skipped": []})

    def _report(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Audit, log and alert a rollback that has happened; a failing audit write is logged
        (`audit_failed`), never raised: serving has already changed."""
        try:
            rec = self.audit.append({"kind": "rollback", "from_version": payload["from_version"],
                                     "version": payload["version"], "rollback_reason":
                                     payload["reason"], "skipped": payload["skipped"],
                                     "error": payload.get("error"), "decision": "rollback",
                                     "reason": payload["reason"]})
            payload["audit_id"] = rec["id"]
        except Exception as err:  # disk full, store index down: the rollback stands
            payload["audit_id"] = None
            self.events("audit_failed", {"kind": "rollback", "error": f"{err}"})
        self.last = {"decision": "rollback", "reason": payload["reason"], "cycle": self.cycle,
                     "audit_id": payload["audit_id"]}
        self.events(kind, payload)
        self.alert(kind, payload)
        return payload

    def active_state_of(self, version: str | None) -> dict[str, torch.Tensor] | None:
        """The verified tensors of `version` (None for the bare base); RegistryError if not."""
        if version is None:
            return None
        state, _meta = self.registry.load(version)
        return state
