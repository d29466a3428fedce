"""The per-bar pipeline: the path of one bar, top to bottom, every stage timed.

    features → whiten (artifact whitener, same as the indexed vectors) → retrieve (FAISS k-NN)
    → neighbours (stats of the neighbours' outcomes) → forecast (serving model) → score
    (CatBoost) → calibrate → decide (target position)            ... `decide(bar)`
    → the caller's gate on the intent it built, timed               ... `check(intent, bar, judge)`
    then, off the timed path: live Tyler shape update, recall checks, calibration monitor,
    periodic latency record                                        ... `after_bar()`

Everything heavy is warm-loaded once from a verified artifact set; nothing is loaded per bar.
Everything that comes from the artifact set (Tyler whitener, index, scorer, calibrator, serving
forecaster, neighbour stats) lives in one `WarmStages` object that `decide` reads once per bar.
`swap_forecaster` and `swap_artifacts` prepare a new one and replace it in one assignment, so a
bar sees the old model/set or the new one, never a mix; the previous set stays warm.
Replay and live use this same code; `score_slice` replays a date range through the same
stages, decision rule and risk gate with a candidate forecaster (the adapters' promotion gate).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from daemon.bars.model import Bar
from daemon.bars.replay import load_bars  # (callers import it from here too)
from daemon.features import FeatureState
from daemon.intent import OrderIntent
from daemon.pipeline.decision import Decision, DecisionParams, EwmaVol, target_position
from daemon.pipeline.fastpath import (
    CalibrationPath,
    ServingForecaster,
    TreeScorer,
)
from daemon.pipeline.latency import END_TO_END, LatencyRecorder
from daemon.pipeline.monitors import CalibrationMonitor, RecallMonitor
from daemon.pipeline.neighbours import forecaster_input, neighbour_stats, scorer_row
from daemon.pipeline.retrieval import index_vector
from daemon.pipeline.tyler import tyler_incremental, whiten
from daemon.risk import NO_RISK, MarketView, RiskLimits, Verdict, gate

STAGES = ("features", "whiten", "retrieve", "neighbours", "forecast", "score", "calibrate",
          "decide", "gate")


@dataclass(frozen=True)
class PipelineParams:
    """Serving parameters (from `[pipeline]` and the artifact set's params)."""

    decision: DecisionParams = DecisionParams()
    k: int = 20
    window: int = 8
    vol_halflife: float = 20.0
    tyler_every: int = 1
    tyler_weight: float = 0.01
    tyler_iterations: int = 1
    recall_fraction: float = 0.01
    recall_window: int = 200
    recall_k: int = 10
    horizon: int = 1
    ece_window: int = 250
    ece_target: float = 0.08
    ece_min_samples: int = 100
    replay: bool = True  # market time = bar time (replay); False: the injected clock (live)
    recalibrate: bool = True
    journal_every_bars: int = 500


class _BarState:
    """The rolling state one replay of bars needs (features, whitened window, volatility).
    `Pipeline` has one for serving; `score_slice` makes fresh ones. The pipeline keeps no book:
    the position it steps from is the ledger's, handed to `decide`."""

    def __init__(self, window: int, vol_halflife: float) -> None:
        self.features = FeatureState()
        self.window: deque[np.ndarray] = deque(maxlen=window)
        self.raw: deque[np.ndarray] = deque(maxlen=window)  # the window's unwhitened features
        self.vol = EwmaVol(vol_halflife)
        self.prev_close = math.nan


class WarmStages:
    """The warm, artifact-derived serving state of one artifact set. Built off the event loop
    (`prepare`); the pipeline swaps it as a whole. `live_shape` and the lazy exact index are
    per-set state too, so a swapped-in set starts from its own Tyler shape."""

    def __init__(self, arts: Any, serving: ServingForecaster | None = None,
                 cal: CalibrationPath | None = None) -> None:
        from daemon.pipeline.neighbours import NEIGHBOUR_STAT_NAMES

        self.arts = arts
        self.tyler = arts.tyler
        self.index = arts.index
        self.cal = cal or CalibrationPath(arts.calibrator)
        n_features = len(arts.params.get("feature_names") or ()) or int(self.tyler.dim)
        self.scorer = TreeScorer(arts.scorer, n_features + len(NEIGHBOUR_STAT_NAMES) + 1)
        self.serving = serving or ServingForecaster(arts.forecaster, "base")
        self.realised = np.asarray(getattr(self.index, "realised_ts", np.zeros(0)))
        self.realised_max = int(self.realised.max()) if self.realised.size else 0
        self.live_shape = np.array(self.tyler.shape, copy=True)
        self.exact_index: Any = None
        self.slice_cache: dict[tuple[str, str], Any] = {}

    def with_(self, **changes: Any) -> WarmStages:
        """A shallow copy with some parts replaced (the swap of one part is still one
        assignment of the whole)."""
        import copy

        new = copy.copy(self)
        for key, value in changes.items():
            setattr(new, key, value)
        return new


class Pipeline:
    """Warm-loaded stages over one artifact set. See the module docstring for the flow."""

    def __init__(self, arts: Any, params: PipelineParams, limits: RiskLimits, *,
                 risk: Any = None, recorder: LatencyRecorder | None = None,
                 metrics: Any = None, log: Any = None, store: Any = None,
                 clock: Any = None) -> None:
        self.params = params
        self.limits = limits
        self.risk = risk
        self.metrics = metrics
        self.log = log
        self.store = store
        self.clock = clock
        self.recorder = recorder or LatencyRecorder()
        self._warm = WarmStages(arts)
        self.previous_warm: WarmStages | None = None
        self.state = _BarState(params.window, params.vol_halflife)
        self.recall = RecallMonitor(self._exact, k=params.recall_k,
                                    fraction=params.recall_fraction, window=params.recall_window)
        self.calibration = CalibrationMonitor(horizon=params.horizon, window=params.ece_window,
                                              target_ece=params.ece_target,
                                              min_samples=params.ece_min_samples)
        self.bars_decided = 0
        # per-bar hand-over from decide() to check()/after_bar()
        self._t0 = 0
        self._pending_bar: Bar | None = None
        self._e2e_done = True
        self._last_feats: np.ndarray | None = None
        self._last_p: tuple[float, float | None] = (math.nan, None)
        self._after_pending = False
        self.on_ece_drift: Callable[[float], None] | None = None
        self.on_bar_done: Callable[[], None] | None = None
        self.on_decided: Callable[[], None] | None = None
        self._decided_ns = 0
        self.recal_dir: Path | None = None
        self.recalibrations: list[Any] = []
        self.bars_provider: Callable[[], list[Bar]] | None = None
        self._bars: list[Bar] | None = None

    # -- the warm artifact-derived state (read through one reference) ---------------------------
    @property
    def arts(self) -> Any:
        """The artifact set being served."""
        return self._warm.arts

    @property
    def tyler(self) -> Any:
        """The serving set's Tyler artifacts."""
        return self._warm.tyler

    @property
    def index(self) -> Any:
        """The serving set's neighbour index."""
        return self._warm.index

    @property
    def scorer(self) -> TreeScorer:
        """The serving set's scorer (fast path)."""
        return self._warm.scorer

    @property
    def _cal(self) -> CalibrationPath:
        return self._warm.cal

    @property
    def live_shape(self) -> np.ndarray:
        """The live (incrementally updated) Tyler shape of the serving set."""
        return self._warm.live_shape

    @property
    def calibrator(self) -> Any:
        """The serving calibrator (replaced as a whole by an applied recalibration)."""
        return self._warm.cal.calibrator

    @calibrator.setter
    def calibrator(self, calibrator: Any) -> None:
        # prepared first, then one assignment
        self._warm = self._warm.with_(cal=CalibrationPath(calibrator))

    def prepare_artifacts(self, arts: Any) -> WarmStages:
        """Build the warm stages of another artifact set (safe off the event loop; touches no
        serving state). ArtifactError if the set cannot serve this pipeline's bar state."""
        from daemon.errors import ArtifactError

        def shape(a: Any) -> tuple[Any, ...]:
            p = a.params
            return (tuple(p.get("feature_names") or ()), p.get("window"), p.get("dim"))

        if shape(arts) != shape(self.arts):
            raise ArtifactError(f"{getattr(arts, 'dir', arts)}: feature names, window or "
                                "dimension differ from the serving set's")
        return WarmStages(arts)

    def swap_artifacts(self, arts: Any) -> WarmStages:
        """Serve another artifact set (an ArtifactSet, or `WarmStages` from
        `prepare_artifacts`) from the next bar on: one reference assignment. The previous warm
        stages are kept (`previous_warm`) and returned. The bar state (features, volatility,
        book) carries over; the whitened window is rebuilt from the same bars' features with the
        new set's whitener (a query never mixes two whiteners, no warm-up is lost); the
        calibration monitor's window restarts."""
        warm = arts if isinstance(arts, WarmStages) else self.prepare_artifacts(arts)
        st = self.state
        window = [whiten(f, warm.tyler) for f in st.raw]  # as `decide` does: same bits
        old, self._warm = self._warm, warm
        st.window.clear()
        st.window.extend(window)
        self.previous_warm = old
        self.calibration.reset_window()
        return old

    # -- the serving model ---------------------------------------------------------------------
    @property
    def forecaster(self) -> ServingForecaster:
        """The serving forecaster (`.module` is the torch model, `.kind` its path)."""
        return self._warm.serving

    def swap_forecaster(self, model: Any, name: str = "") -> ServingForecaster:
        """Serve `model` from the next bar on. The fast path is prepared first; the swap itself
        is one reference assignment, so a bar never sees a half-swapped model. Returns the
        previous serving model (keep it for an instant rollback)."""
        serving = model if isinstance(model, ServingForecaster) else ServingForecaster(
            model, name)
        old = self._warm.serving
        self._warm = self._warm.with_(serving=serving)
        return old

    # -- the bar path ----------------------------------------------------------------------------
    def decide(self, bar: Bar, position: int = 0) -> Decision | None:
        """Run every model stage on one bar (timed) and return the decision, stepping from
        `position` (the ledger's, with what our orders may still fill); None while the
        features or the whitened window are warming up."""
        out = self._decide(bar, position)
        if self.on_decided is not None:
            self.on_decided()
        return out

    def _decide(self, bar: Bar, position: int) -> Decision | None:
        if self._after_pending:  # the previous bar's off-path work did not run yet
            self.after_bar()
        self._close_previous()
        rec = self.recorder
        t0 = rec.start()
        self._after_pending = True
        warm = self._warm  # read once: this bar uses this set and model throughout
        serving, cal = warm.serving, warm.cal
        st = self.state
        with rec.stage("features"):
            sigma = st.vol.update(bar.close)
            feats = st.features.update(bar)
        st.prev_close = bar.close
        self._last_feats = None
        if feats is None:
            self.calibration.observe(math.nan, None, bar.close)
            return None
        with rec.stage("whiten"):
            w = whiten(feats, warm.tyler)
            st.window.append(w)
            st.raw.append(feats)
        self._last_feats = feats
        if len(st.window) < st.window.maxlen:
            self.calibration.observe(math.nan, None, bar.close)
            return None
        with rec.stage("retrieve"):
            q = index_vector(np.stack(st.window))
            t_ann = rec.start()
            dist, ids, visible = self._search(warm, q, bar.ts)
            ann_ns = rec.start() - t_ann
        self.recall.offer(q, ids[0], ann_ns, visible)
        with rec.stage("neighbours"):
            nstats = neighbour_stats(dist[0], warm.index.neighbour_outcomes(ids[0]))
        with rec.stage("forecast"):
            forecast = serving.predict(forecaster_input(w, nstats))
        with rec.stage("score"):
            p_raw = warm.scorer.proba(scorer_row(feats, nstats, forecast))
        with rec.stage("calibrate"):
            p_up = cal(p_raw)
        with rec.stage("decide"):
            target, edge, reason = target_position(p_up, forecast, sigma, bar.close,
                                                   self.params.decision, position)
        self._t0, self._pending_bar, self._e2e_done = t0, bar, False
        self._decided_ns = rec.start()
        self._last_p = (p_raw, p_up)
        self.bars_decided += 1
        if self.metrics is not None:
            self.metrics.decisions.inc()
        return Decision(bar, target, p_up, edge, forecast, reason, p_raw, serving.name)

    def check(self, intent: OrderIntent, bar: Bar,
              judge: Callable[[OrderIntent, Bar], Verdict] | None = None) -> Verdict:
        """Run the daemon's gate (`judge`) on an intent built from this bar's decision, timed
        as the "gate" stage; the first check of a bar closes its end-to-end latency. Without
        a judge (benchmarks, tests of the pipeline alone) the pure gate runs on the
        pipeline's limits and risk state with a flat book."""
        with self.recorder.stage("gate"):
            verdict = (judge or self._standalone_gate)(intent, bar)
        if not self._e2e_done and self._pending_bar is bar:
            self.recorder.end_to_end(self._t0)
            self._e2e_done = True
        return verdict

    def after_bar(self) -> None:
        """Work kept off the timed path: close the bar's latency, update the live Tyler shape,
        answer sampled queries exactly, feed the calibration monitor, flush histograms."""
        self._after_pending = False
        bar = self._pending_bar
        feats = self._last_feats
        warm = self._warm
        if feats is not None and self.params.tyler_every and \
                self.bars_decided % self.params.tyler_every == 0:
            warm.live_shape = tyler_incremental(warm.live_shape, warm.tyler.standardise(feats),
                                                shrinkage=warm.tyler.shrinkage,
                                                n_iter=self.params.tyler_iterations,
                                                weight=self.params.tyler_weight)
        if self.recall.drain() and self.metrics is not None:
            self.metrics.ann_recall.set(self.recall.recall or 0.0)
            self.metrics.ann_speedup.set(self.recall.speedup or 0.0)
        if bar is not None and self._last_p[1] is not None:
            crossed = self.calibration.observe(self._last_p[0], self._last_p[1], bar.close)
            self._last_p = (math.nan, None)
            ece = self.calibration.ece
            if ece is not None and self.metrics is not None:
                self.metrics.calibration_ece.set(ece)
            if crossed and ece is not None:
                if self.log is not None:
                    self.log.warning("ece_drift", ece=round(ece, 4),
                                     target=self.calibration.target_ece)
                if self.on_ece_drift is not None:
                    self.on_ece_drift(ece)
                if self.params.recalibrate and self.store is not None and self.recal_dir:
                    self.recalibrate_now(bar.ts, f"ece_drift {ece:.4f}")
        self.recorder.flush()
        if self.on_bar_done is not None:
            self.on_bar_done()

    # -- recalibration ---------------------------------------------------------------------------
    def recalibrate_now(self, at: datetime, reason: str) -> Any:
        """Refit the calibrator on the monitor's resolved window; applied (one assignment) only
        if it improves ECE on the held-out newest bars. Every attempt is versioned (file +
        sha256 + store row) and journalled as `recalibration`. Returns the result."""
        from daemon.pipeline.monitors import recalibrate
        from daemon.training.calibration import fit_isotonic, fit_platt

        raw, y = self.calibration.window_arrays()
        if len(raw) < 20 or self.store is None or self.recal_dir is None:
            return None
        fit = fit_isotonic if getattr(self.calibrator, "kind", "") == "isotonic" else fit_platt
        result = recalibrate(raw, y, self.calibrator, fit, store=self.store,
                             folder=self.recal_dir, at=at,
                             artifact_dir=str(getattr(self.arts, "dir", "")))
        if result.applied:
            self.calibrator = result.calibrator
            self.calibration.reset_window()
        self.recalibrations.append(result)
        record = {"version": result.version, "applied": result.applied,
                  "reason": reason, "decision": result.reason,
                  "ece_before": result.ece_before, "ece_after": result.ece_after,
                  "path": str(result.path), "sha256": result.sha256}
        if self.metrics is not None:
            self.metrics.recalibrations.labels(applied=str(result.applied).lower()).inc()
        if self.log is not None:
            self.log.warning("recalibration", **record)
        self.store.journal("recalibration", at, record)
        return result

    # -- replaying a slice with a candidate model (the adapters' promotion gate) ----------------
    def score_slice(self, model: Any, start: str, end: str) -> dict[str, Any]:
        """Replay bars dated [start, end] (ISO dates/times) with forecaster `model` through the
        real stages, decision rule and risk gate; returns `mdd` (≤ 0), `violations` (denials +
        limit breaches), `worst_day_return`, `mse`, `returns` (per bar) and a few more. Does not
        touch the serving state; safe to call from a worker thread."""
        from daemon.pipeline.slices import backtest_snapshot, prepare_slice, score_inputs

        key = (start, end)
        cache = self._warm.slice_cache
        inputs = cache.get(key)
        if inputs is None:
            inputs = prepare_slice(self, self.slice_bars(), start, end)
            cache[key] = inputs
        return score_inputs(self, inputs, model, backtest_snapshot(self.risk))

    def slice_bars(self) -> list[Bar]:
        """All bars `score_slice` can replay (loaded once, from the artifact set's source)."""
        if self._bars is None:
            self._bars = self.bars_provider() if self.bars_provider else load_bars(
                str(self.arts.params.get("source", "sample:sp500")),
                str(self.arts.params.get("contract", "SLICE")))
        return self._bars

    # -- status --------------------------------------------------------------------------------
    def shape_drift(self) -> float:
        """Relative Frobenius distance of the live Tyler shape from the artifact's."""
        base = self.tyler.shape
        return float(np.linalg.norm(self.live_shape - base) / np.linalg.norm(base))

    def status(self) -> dict[str, Any]:
        """Latency percentiles, monitors and the serving model, for `ctl status`."""
        lat = self.recorder.snapshot()
        serving = self._warm.serving
        return {"bars_decided": self.bars_decided, "forecaster": serving.name,
                "forecaster_path": serving.kind, "scorer_path": self.scorer.kind,
                "artifact_dir": str(getattr(self.arts, "dir", "")),
                "calibration_path": self._cal.kind,
                "latency_end_to_end": lat["end_to_end"],
                "latency_p99_us": {n: s.get("p99_us") for n, s in lat["stages"].items()},
                **self.recall.snapshot(), **self.calibration.snapshot(),
                "tyler_shape_drift": round(self.shape_drift(), 5)}

    # -- helpers ---------------------------------------------------------------------------------
    def _standalone_gate(self, intent: OrderIntent, bar: Bar) -> Verdict:
        snapshot = self.risk.snapshot() if self.risk is not None else NO_RISK
        return gate(intent, snapshot, self.limits, MarketView(bar.ts, bar.ts, 0.0))

    def _close_previous(self) -> None:
        """A bar that produced no intent ends at its decision: record its end-to-end then."""
        if not self._e2e_done:
            self.recorder.record(END_TO_END, self._decided_ns - self._t0)
            self._e2e_done = True

    def _search(self, warm: WarmStages, q: np.ndarray,
                ts: datetime) -> tuple[np.ndarray, np.ndarray, int | None]:
        """(dists, ids, visible): `visible` is the id prefix searched when replaying history
        (only outcomes realised by the bar's time), None when everything is visible."""
        epoch = int(ts.timestamp())
        if epoch < warm.realised_max:  # replaying history: only outcomes known by then
            dist, ids = warm.index.search(q, self.params.k, realised_by=epoch)
            return dist, ids, int(warm.index.visible(epoch))
        dist, ids = warm.index.search(q, self.params.k)
        return dist, ids, None

    def _exact(self, q: np.ndarray, k: int,
               visible: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Exact search over the same stored vectors (a flat index built once, lazily),
        restricted to the first `visible` ids when the ANN query was."""
        warm = self._warm
        if warm.exact_index is None:
            import faiss

            inner = warm.index.index
            flat = faiss.IndexFlatL2(inner.d)
            flat.add(inner.reconstruct_n(0, inner.ntotal))
            warm.exact_index = flat
        exact = warm.exact_index
        q = np.ascontiguousarray(q, dtype=np.float32)
        if visible is None:
            return exact.search(q, k)
        import faiss

        if visible <= 0:
            return np.full((1, k), np.inf, np.float32), np.full((1, k), -1, np.int64)
        params = faiss.SearchParameters(sel=faiss.IDSelectorRange(0, int(visible)))
        return exact.search(q, k, params=params)
