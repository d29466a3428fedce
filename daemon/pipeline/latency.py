"""LatencyRecorder: per-stage and end-to-end latency in HDR histograms (name from the runbook).

Timing a stage costs two `time.perf_counter_ns()` calls and one list append (well under 2 µs;
`anchord bench pipeline` measures it). The samples are folded into the HDR histograms in
`flush()` (called once per bar, after the intent, i.e. off the timed path), so the ~1 µs that
`hdrh.record_value` costs never lands inside a stage. Values are recorded in nanoseconds and
reported in microseconds.

    rec = LatencyRecorder(budgets_us={"retrieve": 500})
    t0 = rec.start()
    with rec.stage("retrieve"):
        ...
    rec.end_to_end(t0)
    rec.flush()
    rec.snapshot()  # {"stages": {...: {p50_us, p90_us, p99_us, p999_us, max_us, count}}, ...}
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any

from hdrh.histogram import HdrHistogram

END_TO_END = "end_to_end"
PERCENTILES: tuple[tuple[str, float], ...] = (
    ("p50_us", 50.0), ("p90_us", 90.0), ("p99_us", 99.0), ("p999_us", 99.9),
)
_LOWEST_NS = 1
_HIGHEST_NS = 60 * 1_000_000_000  # one minute: anything slower is clamped (and counted as such)
_SIG_DIGITS = 3

_now_ns = time.perf_counter_ns


def new_histogram() -> HdrHistogram:
    """An HDR histogram in ns from 1 ns to 60 s with 3 significant digits (0.1% precision)."""
    return HdrHistogram(_LOWEST_NS, _HIGHEST_NS, _SIG_DIGITS)


def summarise(hist: HdrHistogram) -> dict[str, float]:
    """p50/p90/p99/p99.9/max in µs (rounded to 0.1 µs) and the count of one histogram."""
    n = hist.get_total_count()
    if n == 0:
        return {}
    out = {key: round(hist.get_value_at_percentile(q) / 1000.0, 1) for key, q in PERCENTILES}
    out["max_us"] = round(hist.get_max_value() / 1000.0, 1)
    out["count"] = int(n)
    return out


def buckets(hist: HdrHistogram, per_decade: int = 10) -> list[list[float]]:
    """A compact histogram for the run report: [[upper_us, count], ...] on a log scale."""
    if hist.get_total_count() == 0:
        return []
    counts: dict[int, int] = {}
    for item in hist.get_recorded_iterator():
        us = max(item.value_iterated_to / 1000.0, 1e-3)
        b = math.ceil(math.log10(us) * per_decade)
        counts[b] = counts.get(b, 0) + int(item.count_added_in_this_iter_step)
    return [[round(10 ** (b / per_decade), 2), c] for b, c in sorted(counts.items())]


class _Stage:
    """Context manager timing one stage; preallocated per name so entering allocates nothing."""

    __slots__ = ("t0", "sink")

    def __init__(self, sink: list[int]) -> None:
        self.sink = sink
        self.t0 = 0

    def __enter__(self) -> _Stage:
        self.t0 = _now_ns()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sink.append(_now_ns() - self.t0)


class LatencyRecorder:
    """Per-stage and end-to-end latency histograms with budgets, snapshots and exporters.

    `budgets_us` maps a stage name (or "end_to_end") to its budget; a sample over budget is
    counted and reported through `on_over_budget(stage, value_us, budget_us)` at flush time.
    `exporters` receive (stage, seconds) for every sample at flush time (prometheus histograms).
    """

    def __init__(self, budgets_us: dict[str, float] | None = None, *,
                 on_over_budget: Callable[[str, float, float], None] | None = None,
                 exporters: Iterable[Callable[[str, float], None]] = ()) -> None:
        self.budgets_ns = {k: int(v * 1000) for k, v in (budgets_us or {}).items() if v > 0}
        self.on_over_budget = on_over_budget
        self.exporters = list(exporters)
        self.hists: dict[str, HdrHistogram] = {}
        self._pending: dict[str, list[int]] = {}
        self._stages: dict[str, _Stage] = {}
        self.over_budget: dict[str, int] = {}
        self.clamped = 0
        self.stage(END_TO_END)  # make sure the end-to-end histogram exists

    # -- timing (hot path) -----------------------------------------------------------------
    def stage(self, name: str) -> _Stage:
        """The timer for stage `name` (use as `with rec.stage(name): ...`)."""
        st = self._stages.get(name)
        if st is None:
            sink: list[int] = []
            self._pending[name] = sink
            self.hists[name] = new_histogram()
            st = self._stages[name] = _Stage(sink)
        return st

    @staticmethod
    def start() -> int:
        """A start timestamp (ns, perf counter) for `end_to_end` / `record_since`."""
        return _now_ns()

    def record_since(self, name: str, t0_ns: int) -> int:
        """Record now - t0_ns under `name`; returns the sample in ns."""
        dt = _now_ns() - t0_ns
        self.stage(name).sink.append(dt)
        return dt

    def end_to_end(self, t0_ns: int) -> int:
        """Record the end-to-end time since `t0_ns` (bar arrival); returns it in ns."""
        return self.record_since(END_TO_END, t0_ns)

    def record(self, name: str, value_ns: int) -> None:
        """Record a sample measured elsewhere (ns)."""
        self.stage(name).sink.append(int(value_ns))

    # -- folding into histograms (off the timed path) ------------------------------------------
    def flush(self) -> None:
        """Move pending samples into the HDR histograms, check budgets, feed the exporters."""
        for name, sink in self._pending.items():
            if not sink:
                continue
            hist = self.hists[name]
            budget = self.budgets_ns.get(name)
            for v in sink:
                if v < _LOWEST_NS:
                    v = _LOWEST_NS
                elif v > _HIGHEST_NS:
                    v = _HIGHEST_NS
                    self.clamped += 1
                hist.record_value(v)
                if budget is not None and v > budget:
                    self.over_budget[name] = self.over_budget.get(name, 0) + 1
                    if self.on_over_budget is not None:
                        self.on_over_budget(name, v / 1000.0, budget / 1000.0)
                for export in self.exporters:
                    export(name, v / 1e9)
            sink.clear()

    # -- reading ---------------------------------------------------------------------------
    def summary(self, name: str) -> dict[str, float]:
        """p50/p90/p99/p99.9/max (µs) and count of one stage (flushes first)."""
        self.flush()
        hist = self.hists.get(name)
        return summarise(hist) if hist is not None else {}

    def snapshot(self, *, with_hist: bool = False) -> dict[str, Any]:
        """{"stages": {name: summary}, "end_to_end": summary, "over_budget": {...}} (µs).

        With `with_hist`, also "hist": {"end_to_end": [[upper_us, count], ...]} for the report.
        """
        self.flush()
        stages = {n: summarise(h) for n, h in self.hists.items() if n != END_TO_END}
        snap: dict[str, Any] = {
            "stages": {n: s for n, s in stages.items() if s},
            "end_to_end": summarise(self.hists[END_TO_END]),
            "over_budget": dict(self.over_budget),
        }
        if with_hist:
            snap["hist"] = {END_TO_END: buckets(self.hists[END_TO_END])}
        return snap

    def reset(self) -> None:
        """Forget all samples (histograms keep their names)."""
        self.flush()
        for h in self.hists.values():
            h.reset()
        self.over_budget.clear()
        self.clamped = 0
