"""Data for `anchord bench update`: a base forecaster, a stress anchor suite and drift windows
from the real daily sample, built here with a minimal feature set when no artifact set is given.

Minimal equivalent of the artifact builder (stated in the benchmark output as `data.base`):
features per bar t from bars ≤ t — log returns over 1/5/20 bars, high-low range, open-close
body, 20-bar volatility, short/long volatility ratio, volume z-score; label = the forward log
return over `horizon` bars. The base Forecaster is trained on the rows up to `train_end`; the
anchor suite takes the training period's stress days, labelled by a small taxonomy (crash,
rally, vol_spike, gap); drift windows are consecutive `window_bars` blocks after `train_end`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from adapters.anchors import AnchorSuite
from adapters.model import Forecaster, ForecasterSpec, seed_everything
from adapters.update import DriftBatch

FEATURES = ("ret_1", "ret_5", "ret_20", "range_hl", "body_oc", "vol_20", "vol_ratio",
            "volume_z")


@dataclass
class BenchData:
    base: Forecaster
    anchors: AnchorSuite
    windows: list[DriftBatch]
    inputs: np.ndarray  # all labelled rows after warm-up
    targets: np.ndarray
    dates: list[str]
    closes: np.ndarray
    train_end: str
    description: str
    score_slice: Any = None  # the pipeline's replay (artifact-set data only)
    stress_slices: dict[str, tuple[str, str]] | None = None
    serving: Any = None  # update_latency.Serving over the artifact set (artifact-set data only)



def drift_windows(x: np.ndarray, y: np.ndarray, d: list[str], first: int, window_bars: int,
                  windows: int) -> list[DriftBatch]:
    """Consecutive drift windows of `window_bars` rows from row `first`: `windows` of them plus
    one more (the next window of the last is its out-of-sample test), fewer if the data ends."""
    wins = []
    for k in range(windows + 1):
        a = first + k * window_bars
        b = a + window_bars
        if b > len(x):
            break
        wins.append(DriftBatch(x[a:b], y[a:b], d[a:b]))
    return wins

def _features(o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray,
              v: np.ndarray) -> np.ndarray:
    n = len(c)
    lc = np.log(c)
    r1 = np.r_[np.nan, np.diff(lc)]
    out = np.full((n, len(FEATURES)), np.nan)
    lv = np.log1p(v)
    for t in range(21, n):
        rets = r1[t - 19:t + 1]
        vl, vs = np.std(rets), np.std(rets[-5:])
        w = lv[t - 19:t + 1]
        sd = np.std(w)
        out[t] = (r1[t], lc[t] - lc[t - 5], lc[t] - lc[t - 20], np.log(h[t] / lo[t]),
                  np.log(c[t] / o[t]), vl, np.log((vs + 1e-12) / (vl + 1e-12)),
                  (w[-1] - w.mean()) / (sd + 1e-6) if sd > 0 else 0.0)
    return out


def _taxonomy(x: np.ndarray, sd_ret: float) -> list[str | None]:
    labels: list[str | None] = []
    for row in x:
        if row[0] < -2.5 * sd_ret:
            labels.append("crash")
        elif row[0] > 2.5 * sd_ret:
            labels.append("rally")
        elif row[6] > 0.6:
            labels.append("vol_spike")
        elif abs(row[4]) > 2.0 * sd_ret and row[3] > 3.0 * sd_ret:
            labels.append("gap")
        else:
            labels.append(None)
    return labels


def train_base(x: np.ndarray, y: np.ndarray, seed: int = 0, epochs: int = 300) -> Forecaster:
    """A base Forecaster fitted by full-batch Adam with weight decay (frozen, eval)."""
    seed_everything(seed)
    model = Forecaster(ForecasterSpec(n_inputs=x.shape[1], hidden=(64, 32)))
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    model.set_scaling(xt, yt)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-4)
    s = float(model.y_scale)
    for _ in range(epochs):
        opt.zero_grad()
        (((model(xt) - yt) / s) ** 2).mean().backward()
        opt.step()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def load_bench_data(source: str = "sample:sp500", *, train_end: str = "2010-12-31",
                    horizon: int = 5, window_bars: int = 120, windows: int = 10,
                    seed: int = 0) -> BenchData:
    """Build (or rebuild, deterministically) the benchmark's base, anchors and windows."""
    from daemon.bars.replay import load_bars

    bars = load_bars(source, "BENCH")
    o = np.array([float(b.open) for b in bars])
    h = np.array([float(b.high) for b in bars])
    lo = np.array([float(b.low) for b in bars])
    c = np.array([float(b.close) for b in bars])
    v = np.array([float(b.volume) for b in bars])
    dates = [b.ts.date().isoformat() for b in bars]
    feats = _features(o, h, lo, c, v)
    lc = np.log(c)
    fwd = np.full(len(c), np.nan)
    fwd[:-horizon] = lc[horizon:] - lc[:-horizon]
    ok = np.isfinite(feats).all(1) & np.isfinite(fwd)
    idx = np.flatnonzero(ok)
    x = feats[idx].astype(np.float32)
    y = fwd[idx].astype(np.float32)
    d = [dates[i] for i in idx]
    n_train = sum(1 for s in d if s <= train_end)
    # The last `horizon` training rows' labels reach into the drift period: embargo them.
    fit = slice(0, n_train - horizon)
    base = train_base(x[fit], y[fit], seed=seed)
    sd_ret = float(np.std(x[fit, 0]))
    labels = _taxonomy(x[fit], sd_ret)
    rows = [i for i, lab in enumerate(labels) if lab is not None]
    with torch.no_grad():
        teacher = base(torch.from_numpy(x[rows])).numpy()
    anchors = AnchorSuite(x[rows], teacher, y[rows], [str(labels[i]) for i in rows],
                          [d[i] for i in rows])
    wins = drift_windows(x, y, d, n_train, window_bars, windows)
    desc = (f"minimal equivalent of the artifact builder: {len(FEATURES)} bar features, "
            f"horizon {horizon}, base MLP (64,32) trained on {d[0]}..{d[fit.stop - 1]}, "
            f"{len(anchors)} anchor rows from training-period stress days, windows of "
            f"{window_bars} bars after {train_end}")
    return BenchData(base, anchors, wins, x, y, d, c[idx], train_end, desc)


def load_artifact_bench_data(folder: str, *, window_bars: int = 120, windows: int = 10,
                             config: str = "runtime.toml") -> BenchData:
    """Benchmark data from a trained artifact set (T's `anchord train` output): its frozen base
    forecaster and anchor suite; drift rows are the pipeline's own forecaster inputs (whitened
    window + neighbour statistics) for the bars after the set's `train_end`; `score_slice` is
    the pipeline's replay through the real decision rule and risk gate."""
    from pathlib import Path

    from daemon.bench.update_latency import Serving
    from daemon.config import RuntimeConfig, load_config
    from daemon.pipeline.attach import limits_from_config, params_from_config
    from daemon.pipeline.pipeline import Pipeline
    from daemon.pipeline.slices import prepare_slice
    from daemon.training.artifacts import load_artifact_set

    arts = load_artifact_set(Path(folder))
    cfg = load_config(config) if Path(config).exists() else RuntimeConfig()
    params, limits = params_from_config(cfg, arts), limits_from_config(cfg)
    pipe = Pipeline(arts, params, limits)
    train_end = str(arts.params.get("train_end"))
    bars = pipe.slice_bars()
    start = str(np.datetime64(train_end) + 1)
    inputs = prepare_slice(pipe, bars, start, bars[-1].ts.date().isoformat())
    ok = np.isfinite(inputs.labels)
    x = inputs.x[ok].astype(np.float32)
    y = inputs.labels[ok].astype(np.float32)
    kept = [b for b, keep in zip(inputs.bars, ok, strict=True) if keep]
    d = [b.ts.date().isoformat() for b in kept]
    closes = np.array([float(b.close) for b in kept])
    wins = drift_windows(x, y, d, 0, window_bars, windows)
    desc = (f"artifact set {folder} (train_end {train_end}, horizon "
            f"{arts.params.get('horizon')}, forecaster inputs {x.shape[1]}: whitened window + "
            f"neighbour stats, via the pipeline), {len(arts.anchors)} anchor rows, windows of "
            f"{window_bars} bars after train_end")
    stress = {k: v for k, v in arts.slices.items() if k.startswith("stress")}
    # The latency figure serves the set itself (a fresh pipeline) on the drift-period bars.
    serving = Serving(lambda: Pipeline(arts, params, limits), list(inputs.bars),
                      f"artifact set {folder}, {len(inputs.bars)} bars after train_end, cycled")
    return BenchData(arts.forecaster, arts.anchors, wins, x, y, d, closes, train_end, desc,
                     score_slice=pipe.score_slice, stress_slices=stress, serving=serving)
