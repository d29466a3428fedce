"""Online monitors the runbook watches during canary: ANN recall and calibration (ECE).

- `RecallMonitor`: every n-th query (n = round(1/fraction)) is also answered by exact search;
  rolling recall@k (|ANN ∩ exact| / k) and the speed-up (exact time / ANN time). The exact
  search runs after the intent (`Pipeline.after_bar`), never inside a timed stage.
- `CalibrationMonitor`: keeps (raw p, calibrated p, close) per bar; once the label horizon has
  passed, the realised outcome (close went up) resolves the bar. Rolling ECE over the resolved
  window; above `target_ece` it reports drift (the pipeline logs `ece_drift` and schedules a
  recalibration).
- `recalibrate(...)`: refit a calibrator on the first part of the recent window and keep it only
  if it lowers ECE on the held-out rest. Every attempt is written as a versioned file with a
  checksum and recorded in the store (migration 3), applied or not.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from daemon.training.metrics import expected_calibration_error


def ece_of(p: np.ndarray, y: np.ndarray, n_bins: int = 10) -> float:
    """ECE of probabilities p against outcomes y (the training metric, same code); NaN when
    there are no samples."""
    if len(p) == 0:
        return math.nan
    return expected_calibration_error(np.asarray(y), np.asarray(p), n_bins)


# -- ANN recall ----------------------------------------------------------------------------------
# exact_search(query (1×D), k, visible) — `visible` None, or the number of stored ids (a prefix)
# the ANN query was restricted to (outcomes realised by the query's time).
ExactSearch = Callable[[np.ndarray, int, int | None], tuple[np.ndarray, np.ndarray]]


class RecallMonitor:
    """Rolling recall@k of the ANN index against exact search on a sampled fraction of queries."""

    def __init__(self, exact_search: ExactSearch, *, k: int = 10, fraction: float = 0.01,
                 window: int = 200) -> None:
        self.exact_search = exact_search
        self.k = k
        self.every = max(1, round(1.0 / fraction)) if fraction > 0 else 0
        self.recalls: deque[float] = deque(maxlen=window)
        self.ann_ns: deque[int] = deque(maxlen=window)
        self.exact_ns: deque[int] = deque(maxlen=window)
        self.queries = 0
        self.checked = 0
        self._pending: list[tuple[np.ndarray, np.ndarray, int, int | None]] = []

    def offer(self, query: np.ndarray, ann_ids: np.ndarray, ann_ns: int,
              visible: int | None = None) -> None:
        """Called for every ANN query (cheap): keeps a copy of every n-th one for `drain`."""
        self.queries += 1
        if self.every and self.queries % self.every == 0:
            self._pending.append((np.array(query, copy=True), np.array(ann_ids, copy=True),
                                  int(ann_ns), visible))

    def drain(self) -> int:
        """Answer the kept queries exactly and update the rolling figures; returns how many."""
        done = 0
        while self._pending:
            query, ann_ids, ann_ns, visible = self._pending.pop()
            self.check(query, ann_ids, ann_ns, visible)
            done += 1
        return done

    def check(self, query: np.ndarray, ann_ids: np.ndarray, ann_ns: int,
              visible: int | None = None) -> float:
        """Recall@k of one ANN answer against exact search over the same candidates (also
        timed); returns it."""
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
        t0 = time.perf_counter_ns()
        _, exact_ids = self.exact_search(q, self.k, visible)
        exact_ns = time.perf_counter_ns() - t0
        truth = {int(i) for i in np.asarray(exact_ids).ravel()[: self.k] if i >= 0}
        got = {int(i) for i in np.asarray(ann_ids).ravel()[: self.k] if i >= 0}
        recall = len(truth & got) / max(1, len(truth))
        self.recalls.append(recall)
        self.ann_ns.append(max(1, ann_ns))
        self.exact_ns.append(exact_ns)
        self.checked += 1
        return recall

    @property
    def recall(self) -> float | None:
        """Rolling mean recall@k (None before the first check)."""
        return float(np.mean(self.recalls)) if self.recalls else None

    @property
    def speedup(self) -> float | None:
        """Rolling exact-search time / ANN time (None before the first check)."""
        if not self.exact_ns:
            return None
        return float(np.mean(self.exact_ns) / np.mean(self.ann_ns))

    def snapshot(self) -> dict[str, Any]:
        """Rolling recall@k, speed-up and counts (for status and the `monitor` record)."""
        r, s = self.recall, self.speedup
        return {"ann_recall": None if r is None else round(r, 4), "k": self.k,
                "ann_speedup": None if s is None else round(s, 1), "checked": self.checked,
                "queries": self.queries}


# -- calibration -----------------------------------------------------------------------------
@dataclass(frozen=True)
class CalibrationPoint:
    raw: float
    cal: float
    outcome: int


class CalibrationMonitor:
    """Rolling ECE of calibrated probabilities against realised outcomes after `horizon` bars.

    `observe(raw_p, cal_p, close)` once per bar (in bar order). A bar's outcome is 1 when the
    close `horizon` bars later is above its own close.
    """

    def __init__(self, *, horizon: int = 1, window: int = 250, n_bins: int = 10,
                 target_ece: float = 0.08, min_samples: int = 100) -> None:
        self.horizon = max(1, horizon)
        self.n_bins = n_bins
        self.target_ece = target_ece
        self.min_samples = min_samples
        self._waiting: deque[tuple[float, float, float]] = deque()
        self.resolved: deque[CalibrationPoint] = deque(maxlen=window)
        self.in_drift = False

    def observe(self, raw_p: float, cal_p: float | None, close: float) -> bool:
        """Feed one bar (cal_p None: the bar had no prediction yet, only its close counts).
        Returns True when ECE just crossed above the target (the caller logs `ece_drift`)."""
        # Every waiting bar is one bar older; resolve those that reached the horizon.
        self._waiting.append((raw_p, math.nan if cal_p is None else cal_p, close))
        if len(self._waiting) > self.horizon:
            raw0, cal0, close0 = self._waiting.popleft()
            if math.isfinite(cal0):
                self.resolved.append(CalibrationPoint(raw0, cal0, int(close > close0)))
        ece = self.ece
        drifting = ece is not None and ece > self.target_ece
        crossed = drifting and not self.in_drift
        self.in_drift = drifting
        return crossed

    @property
    def ece(self) -> float | None:
        """Rolling ECE (None until `min_samples` bars are resolved)."""
        if len(self.resolved) < self.min_samples:
            return None
        cal = np.fromiter((p.cal for p in self.resolved), np.float64, len(self.resolved))
        y = np.fromiter((p.outcome for p in self.resolved), np.float64, len(self.resolved))
        return ece_of(cal, y, self.n_bins)

    def window_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(raw p, outcome) of the resolved window, oldest first (for a refit)."""
        raw = np.fromiter((p.raw for p in self.resolved), np.float64, len(self.resolved))
        y = np.fromiter((p.outcome for p in self.resolved), np.float64, len(self.resolved))
        return raw, y

    def reset_window(self) -> None:
        """Forget resolved points (after a recalibration is applied: they were scored by the
        old calibrator)."""
        self.resolved.clear()
        self.in_drift = False

    def snapshot(self) -> dict[str, Any]:
        """Rolling ECE, its target, resolved count and drift flag."""
        e = self.ece
        return {"ece": None if e is None else round(e, 4), "target_ece": self.target_ece,
                "resolved": len(self.resolved), "in_drift": self.in_drift}


# -- recalibration ---------------------------------------------------------------------------
@dataclass(frozen=True)
class RecalibrationResult:
    """One recalibration attempt: its version, whether it was applied, and the evidence."""

    version: int
    applied: bool
    reason: str
    ece_before: float
    ece_after: float
    n_fit: int
    n_holdout: int
    path: Path
    sha256: str
    calibrator: Any


def recalibrate(raw_p: np.ndarray, y: np.ndarray, current: Any,
                fit: Callable[[np.ndarray, np.ndarray], Any], *, store: Any, folder: Path,
                at: datetime, holdout_fraction: float = 0.3, n_bins: int = 10,
                artifact_dir: str = "") -> RecalibrationResult:
    """Refit a calibrator on the older (1 − holdout_fraction) of the window with `fit(raw, y)`,
    compare ECE of `current` and the refit on the held-out newest bars, and apply (return it as
    `calibrator`) only when it is strictly better. Every attempt is saved as
    `folder/calibrator-v{version}.json` (the refit's `to_dict()` plus the evidence) with its
    sha256, and recorded with `store.add_recalibration`."""
    n = len(raw_p)
    n_hold = max(1, int(round(n * holdout_fraction)))
    n_fit = n - n_hold
    raw_fit, y_fit = raw_p[:n_fit], y[:n_fit]
    raw_hold, y_hold = raw_p[n_fit:], y[n_fit:]
    candidate = fit(raw_fit, y_fit)
    before = ece_of(np.asarray(current.predict(raw_hold)), y_hold, n_bins)
    after = ece_of(np.asarray(candidate.predict(raw_hold)), y_hold, n_bins)
    applied = bool(math.isfinite(after) and (not math.isfinite(before) or after < before))
    reason = "improved held-out ECE" if applied else "no held-out improvement"
    version = store.next_recalibration_version()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"calibrator-v{version}.json"
    body = {"version": version, "ts": at.isoformat(), "applied": applied, "reason": reason,
            "ece_before": before, "ece_after": after, "n_fit": n_fit, "n_holdout": n_hold,
            "artifact_dir": artifact_dir, "calibrator": candidate.to_dict()}
    data = orjson.dumps(body, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    digest = hashlib.sha256(data).hexdigest()
    store.add_recalibration(ts=at, reason=reason, applied=applied,
                            ece_before=_finite_or_none(before), ece_after=_finite_or_none(after),
                            n_fit=n_fit, n_holdout=n_hold, path=str(path), sha256=digest,
                            artifact_dir=artifact_dir)
    return RecalibrationResult(version, applied, reason, before, after, n_fit, n_hold, path,
                               digest, candidate if applied else current)


def verify_recalibration(record: dict[str, Any]) -> bool:
    """True when the file of a stored recalibration record still has its recorded checksum."""
    try:
        data = Path(record["path"]).read_bytes()
    except OSError:
        return False
    return hashlib.sha256(data).hexdigest() == record["sha256"]


def _finite_or_none(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None
