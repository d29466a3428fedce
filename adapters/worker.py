"""The background update cycle: trigger → train (child process) → gate → promote or audit only
→ post-promotion monitor (rollback on breach; adapters/promotion.py).

The daemon drives it with three calls and one task:
- `await worker.before_bar()` at the start of each bar: applies finished cycles (the hot swap
  happens here, between two bars, as one `swap(model)` call) and, in a deterministic replay,
  waits for a cycle that is due at this bar;
- `worker.on_bar(features_row, target, ts=...)` once the label of a row is known: feeds D_t,
  the trigger and the monitor;
- `run()` as a background task: runs requested cycles. Training happens in a spawned child
  process with a timeout; a failed or timed-out cycle is logged and leaves serving untouched.
`adapters/` imports nothing from the daemon: the daemon passes `score_slice(model, start, end)`
(figures from the real decision rule and risk gate), `swap(model)`, `events(kind, payload)`
(journal + log), `alert(kind, fields)` and `slices` (named replay date ranges).
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import numpy as np
import torch

from adapters.anchors import AnchorSuite
from adapters.audit import AuditLog
from adapters.drift import PageHinkley, Trigger
from adapters.figures import ScoreSlice, diagnostics, slice_figures
from adapters.figures import predict as _predict
from adapters.gate import PROMOTE, REJECT, GatePolicy, evaluate
from adapters.lora import build_serving_model, tensor_checksum
from adapters.model import Forecaster
from adapters.promotion import Pending, PromotionMixin
from adapters.registry import AdapterRegistry, RegistryError, base_checksum
from adapters.train_job import TrainFailed, TrainProcess, TrainTimeout, pack_job, run_job
from adapters.update import DriftBatch, UpdateError, UpdateSettings, check_window


@dataclass(frozen=True)
class WorkerSettings:
    """`[adapters]` keys the worker itself uses (the update's keys are UpdateSettings)."""

    enabled: bool = True
    trigger: str = "schedule"
    window_bars: int = 120
    every_n_bars: int = 60
    min_spacing_bars: int = 20
    drift_threshold: float = 5.0
    timeout_s: float = 120.0
    shadow_bars: int = 0
    shadow_naive: bool = True
    apply_after_bars: int = 1
    gate_holdout_bars: int = 20
    monitor_bars: int = 60
    monitor_every_bars: int = 5
    subprocess: bool = True

    @classmethod
    def from_mapping(cls, raw: dict[str, Any]) -> WorkerSettings:
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in raw.items() if k in names})


# Worker keys a reload may change; the trigger's shape (window, schedule) needs a restart.
RELOADABLE_WORKER_KEYS = ("enabled", "timeout_s", "shadow_bars", "shadow_naive",
                          "monitor_bars", "monitor_every_bars")


def _sections(cfg: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """([adapters], [promotion]) as dicts from a RuntimeConfig-like object or a mapping."""
    def as_dict(x: Any) -> dict[str, Any]:
        if x is None:
            return {}
        return dataclasses.asdict(x) if dataclasses.is_dataclass(x) else dict(x)

    if isinstance(cfg, dict):
        return as_dict(cfg.get("adapters")), as_dict(cfg.get("promotion"))
    return as_dict(getattr(cfg, "adapters", None)), as_dict(getattr(cfg, "promotion", None))


class UpdateWorker(PromotionMixin):
    """The continual-update cycle for one serving forecaster (what it serves and how that
    changes: adapters/promotion.py)."""

    def __init__(self, cfg: Any, base_model: Forecaster, anchors: AnchorSuite,
                 registry: AdapterRegistry, audit: AuditLog, score_slice: ScoreSlice | None,
                 swap: Callable[[torch.nn.Module], None], clock: Any = None, *,
                 slices: dict[str, tuple[str, str]] | None = None,
                 events: Callable[[str, dict[str, Any]], None] | None = None,
                 alert: Callable[[str, dict[str, Any]], None] | None = None,
                 deterministic: Callable[[], bool] | bool = False,
                 prepare: Callable[[Forecaster, str | None], Any] | None = None) -> None:
        adapters_cfg, promotion_cfg = _sections(cfg)
        self.settings = WorkerSettings.from_mapping(adapters_cfg)
        self.update_settings = UpdateSettings.from_mapping(adapters_cfg)
        self.policy = GatePolicy.from_mapping(promotion_cfg)
        self.base = base_model
        self.registry = registry
        self.audit = audit
        self.score_slice = score_slice
        self.swap = swap
        # prepare(model, version) -> what `swap` takes (e.g. the pipeline's fast serving form);
        # it runs off the event loop for candidates, so the swap itself is one assignment.
        self.prepare = prepare or (lambda model, version: model)
        self.clock = clock
        self.slices = dict(slices or {})
        self.events = events or (lambda kind, payload: None)
        self.alert = alert or (lambda kind, fields: None)
        self._deterministic = deterministic
        self.base_anchors = anchors  # the base checkpoint's teacher cache (kept)
        self.trigger = Trigger(mode=self.settings.trigger,
                               every_n_bars=self.settings.every_n_bars,
                               min_spacing_bars=self.settings.min_spacing_bars,
                               window_bars=self.settings.window_bars,
                               detector=PageHinkley(threshold=self.settings.drift_threshold))
        self.window: deque[tuple[np.ndarray, float, str]] = deque(
            maxlen=self.settings.window_bars)
        self.trainer = TrainProcess() if self.settings.subprocess else None
        self.bar_index = 0
        self.cycle = 0
        self.last: dict[str, Any] = {"decision": None, "reason": None, "cycle": 0}
        self.last_metrics: dict[str, Any] = {}
        self._requests: deque[tuple[int, DriftBatch, str, int]] = deque()
        self._wake = anyio.Event()
        self._done: dict[int, anyio.Event] = {}
        self._pending: deque[Pending] = deque()
        self._due: dict[int, int] = {}  # cycle -> bar index at which it must be applied
        self._shadow: dict[str, Any] | None = None
        self._monitor: dict[str, Any] | None = None
        self.paused: str | None = None  # why the worker stopped adapting (see `pause`)
        # Start-up: load the active adapter (a corrupted one is refused, the base served).
        self.active_version, self.active_state, meta, refusal = registry.load_active()
        if refusal:
            self.events("adapter_refused", {"reason": refusal, "serving": "base"})
        rank = int(meta["rank"]) if meta else self.update_settings.rank
        alpha = float(meta["alpha"]) if meta else self.update_settings.alpha
        self.model = build_serving_model(base_model, self.active_state, rank, alpha)
        self.previous: Forecaster | None = None
        self.previous_version: str | None = None
        self.previous_served: Any = None
        self.anchors = anchors.with_teacher(lambda x: _predict(self.model, x)) \
            if self.active_state is not None else anchors
        self.served = self.prepare(self.model, self.active_version)
        swap(self.served)

    # -- settings ---------------------------------------------------------------------------
    def apply_config(self, cfg: Any) -> None:
        """Take new `[adapters]`/`[promotion]` values (reload): policy and update knobs."""
        self.prepare_config(cfg)()

    def prepare_config(self, cfg: Any) -> Callable[[], None]:
        """Build the policy and update knobs of new `[adapters]`/`[promotion]` values without
        applying them (UpdateError when they are refused); returns the step that applies them
        (one that cannot fail), so a reload can check everything before it changes anything."""
        adapters_cfg, promotion_cfg = _sections(cfg)
        policy = GatePolicy.from_mapping(promotion_cfg)
        update_settings = UpdateSettings.from_mapping(adapters_cfg)
        live = {k: adapters_cfg[k] for k in RELOADABLE_WORKER_KEYS if k in adapters_cfg}

        def apply() -> None:
            self.policy, self.update_settings = policy, update_settings
            self.settings = dataclasses.replace(self.settings, **live)

        return apply

    @property
    def deterministic(self) -> bool:
        d = self._deterministic
        return bool(d() if callable(d) else d)

    # -- bar hooks --------------------------------------------------------------------------
    def on_bar(self, features_row: np.ndarray, target: float, ts: str | None = None,
               residual: float | None = None) -> str | None:
        """Feed one labelled row (its realised target) of the serving data; returns the trigger
        reason when this bar requested a cycle."""
        if self.paused is not None:
            return None
        self.bar_index += 1
        row = np.asarray(features_row, dtype=np.float32).reshape(-1)
        self.window.append((row, float(target), ts or str(self.bar_index)))
        if residual is None:
            residual = float(_predict(self.model, row[None, :])[0]) - float(target)
        reason = self.trigger.on_bar(residual, float(self.base.y_scale))
        self._feed_shadow(row)
        self._tick_monitor()
        if reason is None or not self.settings.enabled:
            return None
        if self._requests or self._due:
            self.events("cycle_skipped", {"reason": "a cycle is already running",
                                          "bar": self.bar_index})
            return None
        self.cycle += 1
        batch = DriftBatch(np.stack([r for r, _, _ in self.window]),
                           np.array([t for _, t, _ in self.window], dtype=np.float32),
                           [d for _, _, d in self.window])
        self._requests.append((self.cycle, batch, reason, self.bar_index))
        self._done[self.cycle] = anyio.Event()
        self._due[self.cycle] = self.bar_index + self.settings.apply_after_bars
        self._wake.set()
        return reason

    def signal_drift(self, name: str, value: float | None = None) -> bool:
        """A drift signal from the daemon (e.g. the calibration monitor's "ece_drift" with the
        ECE as `value`): requests a cycle at the next labelled bar the trigger's minimum
        spacing allows, with `name` as its trigger. Logged as a `drift_signal` event; returns
        whether it was taken (not in "schedule" mode, nor while disabled or paused)."""
        taken = (self.paused is None and self.settings.enabled
                 and self.trigger.signal(name))
        self.events("drift_signal", {"trigger": name, "value": value, "taken": taken,
                                     "bar": self.bar_index, "mode": self.trigger.mode})
        return taken

    async def before_bar(self) -> None:
        """Call at the start of each bar: apply finished cycles; in a deterministic replay wait
        for a cycle due at this bar first (so two replays make the same decisions)."""
        if self.paused is not None:
            return
        upcoming = self.bar_index + 1
        if self.deterministic:
            for cycle, due in sorted(self._due.items()):
                if due <= upcoming:
                    await self._done[cycle].wait()
        while self._pending:
            p = self._pending[0]
            if self.deterministic and self._due.get(p.cycle, 0) > upcoming:
                break
            self._pending.popleft()
            self._due.pop(p.cycle, None)
            self._done.pop(p.cycle, None)
            self._apply(p)
        if not self.deterministic:
            for cycle in [c for c in self._due if self._done[c].is_set()]:
                self._due.pop(cycle, None)
        else:  # a finished cycle with nothing to apply (rejected, failed) is done with too
            queued = {p.cycle for p in self._pending}
            for cycle in [c for c, due in self._due.items()
                          if due <= upcoming and c not in queued and self._done[c].is_set()]:
                self._due.pop(cycle, None)
                self._done.pop(cycle, None)

    # -- the cycle --------------------------------------------------------------------------
    async def run(self) -> None:
        """Background task: run requested cycles one after the other, forever."""
        if self.trainer is not None:
            await anyio.to_thread.run_sync(self.trainer.start)
        try:
            while True:
                await self._wake.wait()
                self._wake = anyio.Event()
                while self._requests:
                    # left in the queue while it runs: a committed state then still holds it
                    cycle, batch, reason, bar = self._requests[0]
                    try:
                        await self.run_cycle(cycle, batch, reason, bar)
                    finally:
                        if self._requests and self._requests[0][0] == cycle:
                            self._requests.popleft()
                        self._done[cycle].set()
        finally:
            if self.trainer is not None:
                self.trainer.close()

    def split_window(self, window: DriftBatch) -> tuple[DriftBatch, DriftBatch]:
        """(D_t to train on, the held-out most recent rows the gate's drift_mse uses)."""
        h = self.settings.gate_holdout_bars
        if h <= 0 or len(window) < h + 8:
            return window, window
        n = len(window) - h
        return (DriftBatch(window.inputs[:n], window.targets[:n], window.dates[:n]),
                DriftBatch(window.inputs[n:], window.targets[n:], window.dates[n:]))

    async def run_cycle(self, cycle: int, window: DriftBatch, reason: str, bar: int) -> None:
        """One cycle: train, gate, audit; a passing candidate is queued for `before_bar`."""
        t0 = time.perf_counter()
        batch, holdout = self.split_window(window)
        settings = self.update_settings
        matched = settings.projection != "naive" and self.settings.shadow_naive
        init = self.active_state
        init_sum = tensor_checksum(init) if init is not None else None
        base_sum = self.audit.keep_base(self.base)
        drift_sha = self.audit.keep_drift(batch)
        window_sha = self.audit.keep_drift(window)
        anchor_sha = self.audit.keep_anchors(self.anchors)
        self.audit.keep_state(init, init_sum)
        record: dict[str, Any] = {
            "kind": "candidate", "cycle": cycle, "trigger": reason, "bar": bar,
            "anchor_suite_hash": anchor_sha, "base_anchor_suite_hash":
            self.base_anchors.content_hash(), "drift_batch_hash": drift_sha,
            "base_checksum": base_sum, "init_checksum": init_sum,
            "parent_version": self.active_version, "settings": settings.to_dict(),
            "matched": matched, "policy": self.policy.to_dict(), "window": batch.window(),
            "gate_window": holdout.window(), "full_window_hash": window_sha,
            "worker": dataclasses.asdict(self.settings),
            "versions": {"torch": torch.__version__},
        }
        self.events("cycle_start", {"cycle": cycle, "trigger": reason, **batch.window()})
        try:
            check_window(window, settings.max_abs_target_z)  # the held-out rows too
            job = pack_job(self.base, init, batch, self.anchors, settings.to_dict(), matched)
            if self.trainer is not None:
                out = await anyio.to_thread.run_sync(self.trainer.run, job,
                                                     self.settings.timeout_s)
            else:
                out = run_job(job)
        except UpdateError as err:
            self._finish(record, cycle, REJECT, str(err), error=str(err), seconds=t0)
            return
        except (TrainTimeout, TrainFailed) as err:
            self._finish(record, cycle, "failed", str(err), error=str(err), seconds=t0,
                         audit=False)
            return
        chosen = out["chosen"]
        state = {k: torch.from_numpy(np.array(v)) for k, v in chosen["state"].items()}
        upd = chosen["metrics"]
        candidate = build_serving_model(self.base, state, settings.rank, settings.alpha)
        cand_fig, base_fig = await anyio.to_thread.run_sync(self._figures, candidate, holdout)
        cand_fig["stress_mse"] = upd["stress_mse"]
        record.update({
            "adapter_checksum": upd["checksum"], "device": upd["device"], "update": upd,
            "projection_stats": upd["projection_stats"],
            "candidate_metrics": cand_fig, "baseline_metrics": base_fig,
        })
        if out.get("naive") is not None:
            naive_state = {k: torch.from_numpy(np.array(v))
                           for k, v in out["naive"]["state"].items()}
            naive_model = build_serving_model(self.base, naive_state, settings.rank,
                                              settings.alpha)
            naive_fig, _ = await anyio.to_thread.run_sync(self._figures, naive_model, holdout,
                                                          False)
            naive_fig["stress_mse"] = out["naive"]["metrics"]["stress_mse"]
            naive_gate = evaluate(naive_fig, base_fig, self.policy)
            record["naive_shadow"] = {"update": out["naive"]["metrics"], "metrics": naive_fig,
                                      "would_be_decision": naive_gate.decision,
                                      "would_be_reason": naive_gate.reason}
        gate = evaluate(cand_fig, base_fig, self.policy)
        record["gate_decision"] = gate.decision
        record["gate"] = gate.to_dict()
        version = None
        decision = gate.decision
        if gate.passed:
            try:
                version = self.registry.save(state, settings.rank, settings.alpha,
                                             {"cycle": cycle, "drift_batch_hash": drift_sha})
            except (OSError, RegistryError) as err:
                decision, gate.reason = REJECT, f"could not store the adapter: {err}"
        if gate.passed and self.settings.shadow_bars > 0 and decision == PROMOTE:
            decision = "shadow"
        record["version"] = version
        rec = self._finish(record, cycle, decision, gate.reason, seconds=t0, figures=cand_fig)
        if decision in (PROMOTE, "shadow"):
            served = await anyio.to_thread.run_sync(self.prepare, candidate, version)
            self._pending.append(Pending(cycle, decision, candidate, served, state, version,
                                         rec["id"] if rec else "",
                                         cand_fig.get("output_drift"), cand_fig))

    def _finish(self, record: dict[str, Any], cycle: int, decision: str, reason: str, *,
                error: str | None = None, seconds: float, audit: bool = True,
                figures: dict[str, Any] | None = None) -> dict[str, Any] | None:
        record.update({"decision": decision, "reason": reason,
                       "cycle_s": round(time.perf_counter() - seconds, 3)})
        if error is not None:
            record["error"] = error
        rec = self.audit.append(record) if audit else None
        fig = figures or {}
        upd = record.get("update") or {}
        payload = {"cycle": cycle, "decision": decision, "reason": reason,
                   "audit_id": rec["id"] if rec else None,
                   "drift_mse": fig.get("drift_mse"), "stress_mse": fig.get("stress_mse"),
                   "mdd": fig.get("mdd"), "worst_day_return": fig.get("worst_day_return"),
                   "violations": fig.get("violations"), "output_drift": fig.get("output_drift"),
                   "attribution_shift": fig.get("attribution_shift"),
                   "drift_gain": upd.get("drift_gain"), "steps": upd.get("steps"),
                   "cycle_s": record["cycle_s"],
                   "naive_would_be": (record.get("naive_shadow") or {}).get(
                       "would_be_decision")}
        self.last = {"decision": decision, "reason": reason, "cycle": cycle,
                     "audit_id": payload["audit_id"]}
        self.last_metrics = payload
        self.events("cycle", payload)
        return rec

    # -- figures ----------------------------------------------------------------------------
    def _figures(self, model: Forecaster, batch: DriftBatch,
                 with_baseline: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
        """Gate figures of `model` and (optionally) of the serving model on the same slices."""
        s = float(self.base.y_scale)
        cand = slice_figures(model, batch, self.slices, self.score_slice, s)
        base = slice_figures(self.model, batch, self.slices, self.score_slice, s) \
            if with_baseline else {}
        cand.update(diagnostics(model, self.model, batch, self.anchors, self.base_anchors, s))
        return cand, base

    def status(self) -> dict[str, Any]:
        """For `ctl status`: active adapter, last gate decision, what is running."""
        return {"enabled": self.settings.enabled, "paused": self.paused,
                "active_version": self.active_version,
                "active_checksum": tensor_checksum(self.active_state)
                if self.active_state is not None else None,
                "base_checksum": base_checksum(self.base)[:16],
                "projection": self.update_settings.projection,
                "cycles": self.cycle, "last": self.last,
                "running": bool(self._requests or self._due),
                "shadow": None if self._shadow is None else {
                    "version": self._shadow["pending"].version,
                    "bars": self._shadow["bars"]},
                "monitoring": None if self._monitor is None else self._monitor["version"]}

