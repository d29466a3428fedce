"""The per-bar pipeline: determinism, atomic model swaps, monitors, score_slice, fast paths."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from adapters.model import LORA_TARGET_MODULES, Forecaster, ForecasterSpec
from daemon.pipeline.fastpath import ServingForecaster, TreeScorer
from tests.pipeline_support import make_pipeline, replay, sample_bars, small_set


def other_model(seed: int = 5) -> Forecaster:
    torch.manual_seed(seed)
    base = small_set().forecaster
    m = Forecaster(base.spec)
    m.load_state_dict(base.state_dict())
    with torch.no_grad():
        for p in m.net.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return m.eval()


def test_replaying_the_same_bars_twice_gives_identical_intents() -> None:
    bars = sample_bars()
    first = replay(make_pipeline(), bars)
    second = replay(make_pipeline(), bars)
    assert len(first) > 500
    assert [r[5] for r in first] == [r[5] for r in second]
    assert first == second
    assert any(r[5] for r in first)  # it did trade


def test_swap_mid_replay_uses_old_or_new_model_per_bar_never_a_mix() -> None:
    bars = sample_bars()
    new = other_model()
    only_old = {r[0]: r[2] for r in replay(make_pipeline(), bars)}
    pipe_new = make_pipeline()
    pipe_new.swap_forecaster(new, "new")
    only_new = {r[0]: r[2] for r in replay(pipe_new, bars)}
    pipe = make_pipeline()
    swap_at = 400
    rows = replay(pipe, bars, on_bar=lambda i: i == swap_at and pipe.swap_forecaster(new, "new"))
    names = [r[1] for r in rows]
    first_new = names.index("new")
    assert set(names[:first_new]) == {"base"} and set(names[first_new:]) == {"new"}
    for ts, name, forecast, *_ in rows:
        ref = only_old[ts] if name == "base" else only_new[ts]
        assert forecast == ref  # exactly the one model's output for this bar
        assert only_old[ts] != only_new[ts]


def test_swap_from_another_thread_never_mixes() -> None:
    bars = sample_bars()[:400]
    models = {"base": small_set().forecaster, "new": other_model()}
    refs = {}
    for name, model in models.items():
        p = make_pipeline()
        p.swap_forecaster(model, name)
        refs[name] = {r[0]: r[2] for r in replay(p, bars)}
    pipe = make_pipeline()
    servings = [ServingForecaster(models["base"], "base"), ServingForecaster(models["new"], "new")]
    stop = threading.Event()

    def flipper() -> None:
        i = 0
        while not stop.is_set():
            pipe.swap_forecaster(servings[i % 2])
            i += 1

    t = threading.Thread(target=flipper)
    t.start()
    try:
        rows = replay(pipe, bars)
    finally:
        stop.set()
        t.join()
    assert {r[1] for r in rows} == {"base", "new"}
    for ts, name, forecast, *_ in rows:
        assert forecast == refs[name][ts]


def test_recall_monitor_reports_one_on_an_exact_index() -> None:
    pipe = make_pipeline(recall_fraction=0.5)
    replay(pipe, sample_bars()[:300])
    snap = pipe.recall.snapshot()
    assert snap["checked"] > 50
    assert snap["ann_recall"] == 1.0


def test_score_slice_figures() -> None:
    pipe = make_pipeline()
    out = pipe.score_slice(small_set().forecaster, "1999-06-01", "2000-06-30")
    assert set(out) >= {"mdd", "violations", "worst_day_return", "mse", "returns"}
    assert out["bars"] == len(out["returns"]) > 200
    assert out["mdd"] <= 0.0 and out["worst_day_return"] <= max(out["returns"])
    assert out["violations"] >= 0 and np.isfinite(out["mse"])
    again = pipe.score_slice(small_set().forecaster, "1999-06-01", "2000-06-30")
    assert again == out
    other = pipe.score_slice(other_model(), "1999-06-01", "2000-06-30")
    assert other["mse"] != out["mse"]


def test_status_reports_latency_and_fast_paths() -> None:
    pipe = make_pipeline()
    replay(pipe, sample_bars()[:200])
    st = pipe.status()
    assert st["forecaster_path"] == "numpy" and st["scorer_path"] == "numpy"
    assert st["calibration_path"] == "scalar"
    assert st["latency_end_to_end"]["count"] == st["bars_decided"] > 100
    assert {"retrieve", "forecast", "score"} <= set(st["latency_p99_us"])


def test_numpy_forecaster_matches_torch_including_peft_lora() -> None:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(1)
    base = Forecaster(ForecasterSpec(n_inputs=16))
    wrapped = get_peft_model(base, LoraConfig(r=4, target_modules=list(LORA_TARGET_MODULES),
                                              init_lora_weights=False))
    x = np.random.default_rng(0).normal(size=(50, 16)).astype(np.float32)
    for module in (Forecaster(ForecasterSpec(n_inputs=16)), wrapped):
        serving = ServingForecaster(module)
        assert serving.kind == "numpy"
        with torch.inference_mode():
            want = module(torch.from_numpy(x)).numpy()
        got = np.array([serving.predict(row) for row in x])
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_numpy_tree_scorer_matches_catboost() -> None:
    scorer = small_set().scorer
    n = scorer.feature_count_ if hasattr(scorer, "feature_count_") else 17
    fast = TreeScorer(scorer, n)
    assert fast.kind == "numpy"
    rows = np.random.default_rng(3).normal(size=(100, n)).astype(np.float32) * 0.05
    want = scorer.predict_proba(rows)[:, 1]
    got = np.array([fast.proba(r) for r in rows])
    np.testing.assert_allclose(got, want, atol=1e-9)


@pytest.mark.parametrize("kind", ["torch"])
def test_unreadable_model_falls_back_to_torch(kind: str) -> None:
    class Odd(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.tanh(self.lin(x)).squeeze(-1)

    s = ServingForecaster(Odd())
    assert s.kind == kind
    x = np.ones(4, dtype=np.float32)
    with torch.no_grad():
        want = float(s.module(torch.ones(1, 4))[0])
    assert s.predict(x) == pytest.approx(want)


def test_scalar_calibration_matches_predict_for_both_kinds() -> None:
    from daemon.pipeline.fastpath import CalibrationPath
    from daemon.training.calibration import fit_isotonic, fit_platt

    rng = np.random.default_rng(4)
    p = rng.uniform(0, 1, 400)
    y = (rng.random(400) < p ** 2).astype(float)
    for cal in (fit_platt(p, y), fit_isotonic(p, y)):
        path = CalibrationPath(cal)
        assert path.kind == "scalar"
        probe = rng.uniform(0, 1, 100)
        np.testing.assert_allclose([path(float(v)) for v in probe], cal.predict(probe),
                                   atol=1e-12)


def test_scalar_platt_survives_extreme_slopes() -> None:
    from daemon.pipeline.fastpath import CalibrationPath
    from daemon.training.calibration import Calibrator

    cal = Calibrator("platt", a=80.0, b=-5.0)
    path = CalibrationPath(cal)
    for p in (0.0, 1e-9, 0.2, 0.5, 0.9, 1.0):
        assert path(p) == pytest.approx(float(cal.predict(np.array([p]))[0]), abs=1e-12)
