"""`anchord bench update`'s latency figure: the whole per-bar serving path (the real Pipeline)
idle vs while update cycles train in the child process. Structure and semantics only: speed is
shown by the benchmark, not asserted here."""

from __future__ import annotations

import numpy as np
import pytest

from adapters.train_job import TrainProcess
from adapters.update import UpdateSettings
from daemon.bench.update import latency_ratio
from daemon.bench.update_data import BenchData
from daemon.bench.update_latency import Serving, Training, repeat_bars
from tests.adapters_support import drift_window, small_base, suite
from tests.pipeline_support import make_pipeline, sample_bars


def _bench_data() -> BenchData:
    base = small_base()
    wins = [drift_window(seed=2), drift_window(seed=3, start_day=80)]
    x = np.vstack([w.inputs for w in wins])
    y = np.concatenate([w.targets for w in wins])
    dates = [d for w in wins for d in w.dates]
    return BenchData(base, suite(base), wins, x, y, dates, np.ones(len(x)), "2011-12-31",
                     "tiny synthetic bench data")


def test_repeat_bars_cycles_later_in_time():
    bars = list(sample_bars()[:50])
    it = repeat_bars(bars)
    got = [next(it) for _ in range(120)]
    assert got[:50] == bars
    assert all(a.ts < b.ts for a, b in zip(got, got[1:], strict=False))
    assert got[50].close == bars[0].close and got[100].close == bars[0].close


@pytest.fixture()
def trainer():
    t = TrainProcess()
    t.start()
    yield t
    t.close()


def test_latency_ratio_measures_the_whole_pipeline_while_the_child_trains(trainer):
    calls = {"n": 0}

    def make():  # counts bars through the real Pipeline's decide()
        pipe = make_pipeline(window=8, k=20)
        decide = pipe.decide

        def counted(bar, position=0):
            calls["n"] += 1
            return decide(bar, position)

        pipe.decide = counted
        return pipe

    serving = Serving(make, list(sample_bars()), "test: small quick set, sample bars")
    settings = UpdateSettings(steps=5, max_steps=20)
    n = 300
    lat = latency_ratio(_bench_data(), settings, trainer, n, serving)

    assert "Pipeline.decide + check" in lat["path"] and "after_bar" in lat["path"]
    assert lat["serving"] == serving.description
    warm = lat["warmup_bars"]
    assert calls["n"] == warm + 3 * (n + 1)  # idle, training, idle (+1 closing bar each)
    for phase in ("idle_before", "training", "idle_after"):
        fig = lat[phase]
        # one end-to-end sample per bar run in the phase (a no-order bar's closes at the next
        # decide, so the phase's opening bar may count and its last one go to the next phase)
        assert fig["count"] in (n, n + 1)
        assert 0 < fig["p50_us"] <= fig["p99_us"]
        assert 0 < fig["per_bar"]["p50_us"] <= fig["per_bar"]["p99_us"]
    assert lat["idle_p99_us"] == pytest.approx(
        (lat["idle_before_p99_us"] + lat["idle_after_p99_us"]) / 2)
    assert lat["ratio"] == pytest.approx(lat["training_p99_us"] / lat["idle_p99_us"])
    # the child trained (cycles back to back) during the whole busy measurement
    assert lat["training_was_running_throughout"] is True
    assert lat["training_coverage"] >= 0.99 and lat["cycles_in_window"] >= 1
    assert lat["child_pid"] == trainer.pid and lat["child_cpu_s"] > 0
    assert not lat["training_errors"]
    assert lat["threads"]["torch"] == 1 and lat["threads"]["faiss"] == 1
    fo = lat["forecaster_only"]
    assert "ServingForecaster.predict" in fo["path"] and fo["idle_p99_us"] > 0
    assert fo["training_was_running_throughout"] is True


def test_training_coverage_counts_the_cycle_in_flight(trainer):
    bd = _bench_data()
    from adapters.train_job import pack_job

    job = pack_job(bd.base, None, bd.windows[0], bd.anchors,
                   UpdateSettings(steps=5, max_steps=20).to_dict(), True)
    training = Training(trainer, job)
    assert training.coverage(0, 10) == 0.0  # nothing ran yet
    training.start(settle_s=0.0)
    assert training.running()
    training.stop()
    assert not training.running() and training.spans and not training.errors
    a, b = training.spans[0]
    assert training.coverage(a, b) == pytest.approx(1.0)
