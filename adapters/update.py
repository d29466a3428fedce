"""One continual update on window t: drift batch D_t, anchor batch M_t, projected LoRA steps.

Losses are in the forecaster's output units divided by its `y_scale` (the training target std),
so learning rates and the gate's stress limit do not depend on the market's volatility:
- drift loss  L_new = mean(((f(x) − y)/s)²) over D_t,
- anchor loss L_anc = mean(((f(x) − teacher)/s)²) + target_weight·mean(((f(x) − y)/s)²) over M_t.
Each full-batch SGD step (norm clipped to `clip_norm`, which keeps its direction and so the
projection's guarantees) uses g_new = ∇L_new and g_anchor = ∇L_anc:
- `naive`: the step is g_new (the baseline: no anchors at all);
- `agem`:  g_new projected into the half-space with a positive margin around g_anchor, then
  + anchor_weight·g_anchor;
- `ogd`:   g_new made orthogonal to the top `ogd_directions` anchor output-gradient directions,
  then + anchor_weight·g_anchor.
With `target_gain` the update runs until its drift gain (L_new at start − L_new now, in MSE of
the raw outputs) reaches it or `max_steps` is spent: this is the "matched drift gain" with which
projected updates are compared to naive. Deterministic for a seed and window on one device class
(single-threaded, deterministic algorithms).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from adapters.anchors import AnchorSuite
from adapters.lora import attach_lora, lora_params, lora_state, merged_forecaster, tensor_checksum
from adapters.model import Forecaster
from adapters.projection import ProjectionStats, agem_project, ogd_basis, ogd_project

PROJECTIONS = ("naive", "agem", "ogd")


class UpdateError(Exception):
    """The update cannot run on this window (bad data, bad settings)."""


@dataclass(frozen=True)
class UpdateSettings:
    """Everything that decides an update's result (recorded in the audit record)."""

    projection: str = "agem"
    anchor_weight: float = 10.0
    target_weight: float = 0.0
    rank: int = 4
    alpha: float = 8.0
    lr: float = 0.02
    clip_norm: float = 1.0
    steps: int = 100
    max_steps: int = 2000
    margin: float = 0.1
    ogd_directions: int = 16
    ogd_refresh: int = 10
    seed: int = 0
    max_abs_target_z: float = 12.0

    def __post_init__(self) -> None:
        if self.projection not in PROJECTIONS:
            raise UpdateError(f"projection must be one of {PROJECTIONS}, got {self.projection!r}")

    @classmethod
    def from_mapping(cls, raw: dict[str, Any]) -> UpdateSettings:
        """Pick this dataclass's keys out of a larger mapping (e.g. the `[adapters]` section)."""
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in raw.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DriftBatch:
    """D_t: forecaster inputs (n × d), realised targets (n,), and the bars' ISO dates."""

    inputs: np.ndarray
    targets: np.ndarray
    dates: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", np.ascontiguousarray(self.inputs, dtype=np.float32))
        object.__setattr__(self, "targets",
                           np.ascontiguousarray(self.targets, dtype=np.float32).reshape(-1))
        if self.inputs.ndim != 2 or len(self.inputs) != len(self.targets):
            raise UpdateError(f"drift batch shapes {self.inputs.shape} / {self.targets.shape}")

    def __len__(self) -> int:
        return len(self.targets)

    def content_hash(self) -> str:
        """sha256 over the arrays and the dates."""
        h = hashlib.sha256(b"drift/v1")
        for arr in (self.inputs, self.targets):
            h.update(str(arr.shape).encode())
            h.update(arr.tobytes())
        h.update("|".join(self.dates).encode())
        return h.hexdigest()

    def window(self) -> dict[str, Any]:
        """Data-window metadata for the audit record."""
        return {"rows": len(self), "start": self.dates[0] if self.dates else None,
                "end": self.dates[-1] if self.dates else None, "sha256": self.content_hash()}


@dataclass
class UpdateResult:
    """What one update produced (tensors stay on CPU)."""

    state: dict[str, torch.Tensor]
    checksum: str
    settings: dict[str, Any]
    steps: int
    drift_mse_before: float
    drift_mse_after: float
    drift_gain: float
    stress_mse: float
    stress_mse_by_label: dict[str, float]
    anchor_target_mse: float
    projection_stats: dict[str, Any]
    device: str
    seconds: float
    reached_target: bool | None = None

    def metrics(self) -> dict[str, Any]:
        """The update's own numbers (no tensors), for logs and the audit record."""
        d = {k: v for k, v in asdict(self).items() if k != "state"}
        return d


def select_device() -> torch.device:
    """CUDA when present, else CPU (chosen at run time)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def check_window(batch: DriftBatch, max_abs_z: float) -> None:
    """Refuse a window with non-finite values or targets far outside a robust scale (a
    corrupted feed); raises UpdateError naming what is wrong."""
    if len(batch) < 8:
        raise UpdateError(f"drift window too short ({len(batch)} rows)")
    if not np.isfinite(batch.inputs).all() or not np.isfinite(batch.targets).all():
        raise UpdateError("drift window has non-finite inputs or targets")
    y = batch.targets.astype(np.float64)
    mad = float(np.median(np.abs(y - np.median(y)))) * 1.4826
    if mad > 0:
        z = np.abs(y - np.median(y)) / mad
        if float(z.max()) > max_abs_z:
            raise UpdateError(f"drift window targets look corrupted (robust |z| up to "
                              f"{float(z.max()):.1f} > {max_abs_z})")


def _flat_grad(loss: torch.Tensor, params: list[torch.nn.Parameter]) -> torch.Tensor:
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                      for g, p in zip(grads, params, strict=True)])


def _output_jacobian(model: torch.nn.Module, names: list[str], params: list[torch.nn.Parameter],
                     x: torch.Tensor) -> torch.Tensor:
    """Per-anchor output gradients w.r.t. the LoRA parameters, as an n × P matrix."""
    from torch.func import functional_call, jacrev

    fixed = {k: v.detach() for k, v in model.named_parameters() if k not in set(names)}
    fixed.update({k: v.detach() for k, v in model.named_buffers()})

    def out(ps: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return functional_call(model, {**fixed, **dict(zip(names, ps, strict=True))}, (x,))

    jac = jacrev(out)(tuple(p.detach() for p in params))
    return torch.cat([j.reshape(x.shape[0], -1) for j in jac], dim=1)


class _Threads:
    """Single-threaded torch for the duration (bit-reproducible sums on CPU)."""

    def __enter__(self) -> None:
        self.prev = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self.prev)


def run_update(base: Forecaster, init_state: dict[str, torch.Tensor] | None, drift: DriftBatch,
               anchors: AnchorSuite, settings: UpdateSettings, *,
               target_gain: float | None = None, device: torch.device | None = None,
               check: bool = True) -> UpdateResult:
    """Train one candidate adapter on (D_t, M_t) and return it with its statistics.

    `init_state` is the deployed adapter (None = start from the bare base). The anchors' teacher
    cache must be the deployed model's outputs. Without `target_gain` the update takes
    `settings.steps` steps; with it, it stops as soon as the drift gain reaches it (at most
    `settings.max_steps`)."""
    if check:
        check_window(drift, settings.max_abs_target_z)
    device = device or select_device()
    t0 = time.perf_counter()
    with _Threads():
        torch.manual_seed(settings.seed)
        model = attach_lora(base, settings.rank, settings.alpha, init=init_state).to(device)
        named = lora_params(model)
        names, params = [n for n, _ in named], [p for _, p in named]
        s = float(base.y_scale)
        xd = torch.from_numpy(drift.inputs).to(device)
        yd = torch.from_numpy(drift.targets).to(device)
        xm = torch.from_numpy(anchors.inputs).to(device)
        tm = torch.from_numpy(anchors.teacher).to(device)
        ym = torch.from_numpy(anchors.targets).to(device)
        stats = ProjectionStats()

        def drift_mse() -> float:
            with torch.no_grad():
                return float(((model(xd) - yd) ** 2).mean())

        before = drift_mse()
        budget = settings.steps if target_gain is None else settings.max_steps
        basis = None
        steps = 0
        reached = None if target_gain is None else before - drift_mse() >= target_gain
        while steps < budget and not reached:
            loss_new = (((model(xd) - yd) / s) ** 2).mean()
            g_new = _flat_grad(loss_new, params)
            if settings.projection == "naive":
                g_anc = torch.zeros_like(g_new)
                step, conflict, changed = g_new, False, False
            else:
                out_m = model(xm)
                loss_anc = (((out_m - tm) / s) ** 2).mean()
                if settings.target_weight:
                    loss_anc = loss_anc + settings.target_weight * (((out_m - ym) / s) ** 2).mean()
                g_anc = _flat_grad(loss_anc, params)
                if settings.projection == "agem":
                    g_tilde, changed = agem_project(g_new, g_anc, settings.margin)
                    conflict = changed
                else:
                    if basis is None or steps % max(settings.ogd_refresh, 1) == 0:
                        jac = _output_jacobian(model, names, params, xm)
                        basis = ogd_basis(jac / s, settings.ogd_directions)
                    g_tilde = ogd_project(g_new, basis)
                    changed = basis.shape[1] > 0
                    conflict = float(g_new @ g_anc) < 0
                step = g_tilde + settings.anchor_weight * g_anc
            stats.add(g_new, g_anc, step - settings.anchor_weight * g_anc
                      if settings.projection != "naive" else step, conflict, changed)
            if not bool(torch.isfinite(step).all()):
                raise UpdateError(f"update diverged at step {steps} (non-finite gradient)")
            norm = float(step.norm())
            if settings.clip_norm > 0 and norm > settings.clip_norm:
                step = step * (settings.clip_norm / norm)  # keeps the direction (and projection)
            with torch.no_grad():
                offset = 0
                for p in params:
                    n = p.numel()
                    p.sub_(settings.lr * step[offset:offset + n].view_as(p))
                    offset += n
            steps += 1
            if target_gain is not None:
                reached = before - drift_mse() >= target_gain
        after = drift_mse()
        with torch.no_grad():
            out_m = model(xm)
            sq = ((out_m - tm) / s) ** 2
            stress = float(sq.mean())
            by_label = {lab: float(sq[torch.from_numpy(idx).to(device)].mean())
                        for lab, idx in anchors.taxonomy().items()}
            anchor_target = float((((out_m - ym) / s) ** 2).mean())
        model = model.to("cpu")
        state = lora_state(model)
    return UpdateResult(
        state=state, checksum=tensor_checksum(state), settings=settings.to_dict(), steps=steps,
        drift_mse_before=before, drift_mse_after=after, drift_gain=before - after,
        stress_mse=stress, stress_mse_by_label=by_label, anchor_target_mse=anchor_target,
        projection_stats=stats.summary(), device=device.type,
        seconds=time.perf_counter() - t0, reached_target=reached)


def candidate_model(base: Forecaster, result: UpdateResult) -> Forecaster:
    """The serving form (merged plain Forecaster) of an update's adapter."""
    s = result.settings
    return merged_forecaster(attach_lora(base, int(s["rank"]), float(s["alpha"]),
                                         init=result.state))


def run_matched(base: Forecaster, init_state: dict[str, torch.Tensor] | None,
                drift: DriftBatch, anchors: AnchorSuite, settings: UpdateSettings,
                ) -> tuple[UpdateResult, UpdateResult | None]:
    """The naive update on the window, then (if the mode is not naive) the projected one trained
    to the naive drift gain. Returns (chosen, naive-shadow-or-None)."""
    naive_settings = UpdateSettings(**{**settings.to_dict(), "projection": "naive"})
    naive = run_update(base, init_state, drift, anchors, naive_settings)
    if settings.projection == "naive":
        return naive, None
    target = max(naive.drift_gain, 0.0)
    projected = run_update(base, init_state, drift, anchors, settings, target_gain=target,
                           check=False)
    return projected, naive
