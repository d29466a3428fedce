"""Single-row fast paths for the two models, each checked against the library at load time.

- `ServingForecaster`: the forecaster's forward pass for one row. A `Forecaster` (or a peft
  LoRA wrapper of one: the adapters are merged into the weights first) is run as a numpy MLP
  on float64 copies of its weights, about 10x cheaper than a torch call per bar. Built once per
  model (at load or swap time, never per bar) and verified against the torch module on probe
  rows to 1e-6; any model it cannot read or that disagrees is served through torch instead
  (`inference_mode`, preallocated input tensor, one thread).
- `TreeScorer`: a CatBoost binary classifier's oblivious trees evaluated in numpy on one row
  (per tree: bits = x[feature] > border, leaf = Σ bit_j·2^j), about 5x cheaper than
  `predict` on a numpy row (which builds a Pool per call). Verified against `predict_proba` on
  probe rows at load; a model with categorical/text features, or any mismatch, falls back to
  `predict(row, prediction_type="Probability", thread_count=1)`.
"""

from __future__ import annotations

import copy
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

TOLERANCE = 1e-6


# -- forecaster --------------------------------------------------------------------------------
def _merged_module(model: nn.Module) -> nn.Module:
    """A copy of `model` with LoRA (peft) adapters merged into the base weights."""
    clone = copy.deepcopy(model)
    if hasattr(clone, "merge_and_unload"):
        clone = clone.merge_and_unload()
    return clone


def _mlp_arrays(module: nn.Module) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray,
                                            np.ndarray, float] | None:
    """(layers [(W, b)...], x_mean, x_std, y_scale) of a Forecaster-shaped module, or None."""
    net = getattr(module, "net", None)
    if not isinstance(net, nn.Sequential):
        return None
    layers: list[tuple[np.ndarray, np.ndarray]] = []
    expect_linear = True
    for child in net:
        if expect_linear and type(child) is nn.Linear:
            w = child.weight.detach().to(torch.float64).numpy().copy()
            b = (child.bias.detach().to(torch.float64).numpy().copy() if child.bias is not None
                 else np.zeros(w.shape[0]))
            layers.append((w, b))
        elif not expect_linear and type(child) is nn.ReLU:
            pass
        else:
            return None
        expect_linear = not expect_linear
    if not layers or expect_linear:  # must end on a Linear
        return None
    try:
        x_mean = module.x_mean.detach().to(torch.float64).numpy().copy()
        x_std = module.x_std.detach().to(torch.float64).numpy().copy()
        y_scale = float(module.y_scale)
    except AttributeError:
        return None
    return layers, x_mean, x_std, y_scale


class ServingForecaster:
    """One model as the pipeline serves it: `predict(x (n_inputs,)) -> float`.

    `kind` is "numpy" (the merged MLP) or "torch" (fallback); `module` is the torch model it
    was built from (batch scoring in `score_slice` uses it); `name` labels it in decisions."""

    def __init__(self, module: nn.Module, name: str = "", *, probe_rows: int = 64,
                 seed: int = 0) -> None:
        self.module = module
        self.name = name or f"{type(module).__name__}@{id(module):x}"
        module.eval()
        self.n_inputs = _n_inputs(module)
        self._x = torch.zeros((1, self.n_inputs), dtype=torch.float32)
        self.kind = "torch"
        self.max_abs_diff = math.nan
        arrays = _mlp_arrays(_merged_module(module))
        if arrays is not None:
            self._layers, self._mean, self._inv_std, self._y = arrays[0], arrays[1], \
                1.0 / arrays[2], arrays[3]
            rng = np.random.default_rng(seed)
            probe = rng.normal(size=(probe_rows, self.n_inputs)).astype(np.float32) * 2.0
            want = self.predict_batch(probe)
            got = np.array([self._numpy(row) for row in probe])
            self.max_abs_diff = float(np.max(np.abs(got - want)))
            if self.max_abs_diff <= TOLERANCE * max(1.0, float(np.max(np.abs(want)))):
                self.kind = "numpy"

    def _numpy(self, x: np.ndarray) -> float:
        h = (x - self._mean) * self._inv_std
        last = len(self._layers) - 1
        for i, (w, b) in enumerate(self._layers):
            h = w @ h + b
            if i < last:
                np.maximum(h, 0.0, out=h)
        return float(h[0]) * self._y

    def _torch(self, x: np.ndarray) -> float:
        self._x[0].copy_(torch.from_numpy(np.asarray(x, dtype=np.float32)))
        with torch.inference_mode():
            return float(self.module(self._x)[0])

    def predict(self, x: np.ndarray) -> float:
        """The forecast for one input row (float32/float64 (n_inputs,))."""
        if self.kind == "numpy":
            return self._numpy(x)
        return self._torch(x)

    def predict_batch(self, x: np.ndarray) -> np.ndarray:
        """Forecasts of many rows (n × n_inputs) through the torch module (float64 out)."""
        with torch.inference_mode():
            t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
            return self.module(t).reshape(-1).to(torch.float64).numpy().copy()


def _n_inputs(module: nn.Module) -> int:
    spec = getattr(module, "spec", None)
    if spec is not None and hasattr(spec, "n_inputs"):
        return int(spec.n_inputs)
    base = getattr(module, "base_model", None)
    inner = getattr(base, "model", None)
    if inner is not None and hasattr(inner, "spec"):
        return int(inner.spec.n_inputs)
    for m in module.modules():
        if isinstance(m, nn.Linear):
            return int(m.in_features)
    raise ValueError("cannot tell the forecaster's number of inputs")


# -- CatBoost ----------------------------------------------------------------------------------
class TreeScorer:
    """P(up) of one row from a CatBoost binary classifier: `proba(row) -> float`."""

    def __init__(self, model: Any, n_features: int, *, probe_rows: int = 256,
                 seed: int = 0) -> None:
        self.model = model
        self.n_features = n_features
        self.kind = "catboost"
        self.max_abs_diff = math.nan
        try:
            self._load_trees(model)
        except (KeyError, ValueError, OSError, TypeError):
            return
        rng = np.random.default_rng(seed)
        probe = rng.normal(size=(probe_rows, n_features)).astype(np.float32)
        # Probe around the model's own borders too, where an off-by-one would show.
        for j, (f, border) in enumerate(zip(self._feat.ravel()[:probe_rows],
                                            self._border.ravel()[:probe_rows], strict=False)):
            if np.isfinite(border):
                probe[j, f] = np.float32(border)
        want = np.asarray(model.predict_proba(probe, thread_count=1))[:, 1]
        got = np.array([self._numpy(r) for r in probe])
        self.max_abs_diff = float(np.max(np.abs(got - want)))
        if self.max_abs_diff <= TOLERANCE:
            self.kind = "numpy"

    def _load_trees(self, model: Any) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.json"
            model.save_model(str(path), format="json")
            spec = json.loads(path.read_text())
        info = spec["features_info"]
        if set(info) - {"float_features"}:
            raise ValueError("only float features are evaluated in numpy")
        flat = {f["feature_index"]: f["flat_feature_index"] for f in info["float_features"]}
        trees = spec["oblivious_trees"]
        depth = max(len(t["splits"]) for t in trees)
        n = len(trees)
        feat = np.zeros((n, depth), dtype=np.int64)
        border = np.full((n, depth), np.inf, dtype=np.float64)  # padding bits stay 0
        leaves = np.zeros((n, 2 ** depth), dtype=np.float64)
        for i, t in enumerate(trees):
            for j, s in enumerate(t["splits"]):
                if s.get("split_type") != "FloatFeature":
                    raise ValueError(f"unsupported split {s.get('split_type')}")
                feat[i, j] = flat[s["float_feature_index"]]
                border[i, j] = s["border"]
            values = np.asarray(t["leaf_values"], dtype=np.float64)
            if len(values) != 2 ** len(t["splits"]):
                raise ValueError("not a binary classifier")
            leaves[i, : len(values)] = values
        scale, bias = spec["scale_and_bias"]
        self._feat, self._border, self._leaves = feat, border, leaves
        self._powers = (1 << np.arange(depth)).astype(np.int64)
        self._rows = np.arange(n)
        self._scale = float(scale)
        self._bias = float(bias[0] if isinstance(bias, list) else bias)

    def _numpy(self, row: np.ndarray) -> float:
        # CatBoost compares float32 features against float32 borders: do the same.
        x = np.asarray(row, dtype=np.float32).astype(np.float64)
        bits = x[self._feat] > self._border
        idx = bits @ self._powers
        raw = self._scale * float(self._leaves[self._rows, idx].sum()) + self._bias
        return 1.0 / (1.0 + math.exp(-raw))

    def proba(self, row: np.ndarray) -> float:
        """P(class 1) of one row."""
        if self.kind == "numpy":
            return self._numpy(row)
        out = self.model.predict(np.asarray(row, dtype=np.float32),
                                 prediction_type="Probability", thread_count=1)
        return float(np.asarray(out).ravel()[-1])

    def proba_batch(self, rows: np.ndarray) -> np.ndarray:
        """P(class 1) of many rows through CatBoost itself (for slices)."""
        return np.asarray(self.model.predict_proba(np.asarray(rows, dtype=np.float32),
                                                   thread_count=1))[:, 1].astype(np.float64)


# -- calibration -------------------------------------------------------------------------------
class CalibrationPath:
    """`calibrator.predict` for one probability as a float, without array round trips: Platt in
    `math`, isotonic with one scalar `np.interp` on prepared knots. Verified against
    `predict` on probe values to 1e-12 at construction; otherwise `predict` is used."""

    def __init__(self, calibrator: Any, eps: float = 1e-6) -> None:
        self.calibrator = calibrator
        self.kind = "reference"
        self._eps = eps
        kind = getattr(calibrator, "kind", None)
        if kind == "platt":
            self._a, self._b = float(calibrator.a), float(calibrator.b)
        elif kind == "isotonic" and len(calibrator.x) > 0:
            self._x = np.asarray(calibrator.x, dtype=np.float64)
            self._y = np.asarray(calibrator.y, dtype=np.float64)
        else:
            return
        self._fast = self._platt if kind == "platt" else self._isotonic
        probe = np.concatenate([np.linspace(0.0, 1.0, 401), [1e-9, 1 - 1e-9, 0.5]])
        want = np.asarray(calibrator.predict(probe), dtype=np.float64)
        got = np.array([self._fast(float(p)) for p in probe])
        if np.all(np.abs(got - want) <= 1e-12):
            self.kind = "scalar"

    def _clip(self, v: float) -> float:
        lo, hi = self._eps, 1.0 - self._eps
        return lo if v < lo else hi if v > hi else v

    def _platt(self, p: float) -> float:
        q = self._clip(p)
        z = self._a * math.log(q / (1.0 - q)) + self._b
        if z < -700.0:  # exp would overflow; the reference gives 0 here, clipped to eps
            return self._eps
        return self._clip(1.0 / (1.0 + math.exp(-z)))

    def _isotonic(self, p: float) -> float:
        return self._clip(float(np.interp(p, self._x, self._y)))

    def __call__(self, p: float) -> float:
        if self.kind == "scalar":
            return self._fast(p)
        return float(np.asarray(self.calibrator.predict(np.array([p])))[0])
