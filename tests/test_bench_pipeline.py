"""`anchord bench pipeline` runs end to end on a tiny index (figures only; no timed asserts)."""

from __future__ import annotations

from daemon.bench.pipeline import format_text, run_bench
from daemon.cli import build_parser


def test_bench_pipeline_smoke() -> None:
    r = run_bench(index_size=3000, dim=64, n_bars=420, data="sample:sp500", naive_bars=100,
                  ef_search=64, hnsw_m=16, cache=None, base_bars=600, scorer_iterations=20)
    for key in ("p50_us", "p99_us", "p999_us"):
        assert r["end_to_end"][key] > 0
        assert all(s[key] > 0 for s in r["stages"].values())
    assert {"retrieve", "forecast", "score", "neighbours"} <= set(r["stages"])
    assert 0.0 <= r["ann_recall_at_10"] <= 1.0 and r["ann_speedup"] > 0
    assert r["naive_p99_ratio"] > 0 and r["index_size"] == 3000
    assert r["rss_mb"]["start"] > 0 and r["timer_overhead_ns_per_stage"] < 2000
    assert "END-TO-END" in format_text(r)


def test_bench_pipeline_cli_parses() -> None:
    args = build_parser().parse_args(["bench", "pipeline", "--index-size", "1000000", "--json"])
    assert args.index_size == 1_000_000 and args.json and args.dim == 64
