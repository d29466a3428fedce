"""LatencyRecorder: percentiles match numpy on known samples (within HDR precision)."""

from __future__ import annotations

import numpy as np

from daemon.pipeline.latency import END_TO_END, LatencyRecorder


def test_percentiles_match_numpy_within_hdr_precision() -> None:
    rng = np.random.default_rng(7)
    samples = (rng.lognormal(mean=11.0, sigma=0.8, size=20_000)).astype(np.int64)  # ns
    rec = LatencyRecorder()
    for v in samples:
        rec.record("retrieve", int(v))
    s = rec.summary("retrieve")
    assert s["count"] == len(samples)
    for key, q in (("p50_us", 50), ("p90_us", 90), ("p99_us", 99), ("p999_us", 99.9)):
        # the smallest sample with at least q% of samples at or below it (HDR's definition)
        rank = int(np.ceil(q / 100.0 * len(samples) - 1e-9))
        expected = np.sort(samples)[rank - 1] / 1000.0
        assert abs(s[key] - expected) <= 0.002 * expected + 0.1, (key, s[key], expected)
    assert abs(s["max_us"] - samples.max() / 1000.0) <= 0.002 * samples.max() / 1000.0 + 0.1


def test_stage_timer_records_and_budget_warns() -> None:
    over: list[tuple[str, float, float]] = []
    exported: list[tuple[str, float]] = []
    rec = LatencyRecorder({"slow": 1.0}, on_over_budget=lambda *a: over.append(a),
                          exporters=[lambda n, s: exported.append((n, s))])
    t0 = rec.start()
    with rec.stage("fast"):
        pass
    with rec.stage("slow"):
        sum(range(20_000))
    rec.end_to_end(t0)
    assert over == []  # budgets are checked at flush, off the timed path
    snap = rec.snapshot(with_hist=True)
    assert set(snap["stages"]) == {"fast", "slow"}
    assert snap["stages"]["slow"]["count"] == 1
    assert snap["end_to_end"]["count"] == 1
    assert snap["end_to_end"]["p50_us"] >= snap["stages"]["slow"]["p50_us"]
    assert over and over[0][0] == "slow" and over[0][2] == 1.0
    assert snap["over_budget"] == {"slow": 1}
    assert {n for n, _ in exported} == {"fast", "slow", END_TO_END}
    hist = snap["hist"][END_TO_END]
    assert sum(c for _, c in hist) == 1


def test_empty_recorder_snapshot() -> None:
    snap = LatencyRecorder().snapshot()
    assert snap["stages"] == {} and snap["end_to_end"] == {}
