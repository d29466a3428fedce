"""The projection rules on flattened gradient vectors (pure torch, no model).

- `agem_project`: the A-GEM half-space rule with a positive margin: the returned g̃ satisfies
  g̃·r̂ ≥ margin·‖g‖ (r̂ = r/‖r‖), i.e. every step also descends the anchor loss by a fixed
  fraction of its size. With margin 0 it is A-GEM's g̃ = g − (g·r/r·r) r when g·r < 0. The margin
  exists because r (the teacher-MSE gradient) is exactly zero at the first step, so the plain
  rule passes trivially until the anchors have already moved.
- `ogd_basis` / `ogd_project`: orthogonal gradient descent: remove the components of g in the
  span of the top-k right singular vectors of the anchors' output Jacobian, so that the anchor
  outputs do not move to first order along the protected directions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

EPS = 1e-12


@dataclass
class ProjectionStats:
    """Running statistics of the projection over one update."""

    steps: int = 0
    conflicts: int = 0  # steps where g_new·g_anchor < 0 (or below the A-GEM margin)
    projected: int = 0  # steps where the projection changed g_new
    reference_zero: int = 0  # steps where the anchor reference gradient was (numerically) zero
    cos_sum: float = 0.0
    ratio_sum: float = 0.0  # Σ ‖g̃_new‖/‖g_new‖
    g_new_norm_sum: float = 0.0
    g_anchor_norm_sum: float = 0.0
    min_cos: float = 1.0

    def add(self, g_new: torch.Tensor, g_anchor: torch.Tensor, g_tilde: torch.Tensor,
            conflict: bool, projected: bool) -> None:
        """Record one step."""
        n_new, n_anc = float(g_new.norm()), float(g_anchor.norm())
        self.steps += 1
        self.conflicts += int(conflict)
        self.projected += int(projected)
        if n_anc <= EPS or n_new <= EPS:
            self.reference_zero += int(n_anc <= EPS)
            cos = 0.0
        else:
            cos = float(g_new @ g_anchor) / (n_new * n_anc)
        self.cos_sum += cos
        self.min_cos = min(self.min_cos, cos)
        self.ratio_sum += float(g_tilde.norm()) / max(n_new, EPS)
        self.g_new_norm_sum += n_new
        self.g_anchor_norm_sum += n_anc

    def summary(self) -> dict[str, float | int]:
        """Plain numbers for the audit record and logs."""
        n = max(self.steps, 1)
        return {"steps": self.steps, "conflicts": self.conflicts, "projected": self.projected,
                "reference_zero_steps": self.reference_zero,
                "mean_cos_new_anchor": round(self.cos_sum / n, 6),
                "min_cos_new_anchor": round(self.min_cos, 6),
                "mean_norm_ratio": round(self.ratio_sum / n, 6),
                "mean_g_new_norm": self.g_new_norm_sum / n,
                "mean_g_anchor_norm": self.g_anchor_norm_sum / n}


def agem_project(g: torch.Tensor, r: torch.Tensor, margin: float) -> tuple[torch.Tensor, bool]:
    """Project g into the half-space {x: x·r̂ ≥ margin·‖g‖}; returns (g̃, changed).

    When r is zero the constraint is undefined and g is returned unchanged (the first-step
    trap: the caller counts it)."""
    r_norm = r.norm()
    if float(r_norm) <= EPS:
        return g, False
    r_hat = r / r_norm
    need = margin * g.norm()
    have = g @ r_hat
    if float(have) >= float(need):
        return g, False
    return g + (need - have) * r_hat, True


def ogd_basis(jacobian: torch.Tensor, k: int, rel_tol: float = 1e-6) -> torch.Tensor:
    """Orthonormal basis (P × k') of the top-k right singular directions of J (n × P), dropping
    directions with singular value below rel_tol·σ_max."""
    if jacobian.numel() == 0 or k <= 0:
        return jacobian.new_zeros((jacobian.shape[1], 0))
    _, s, vh = torch.linalg.svd(jacobian, full_matrices=False)
    if s.numel() == 0 or float(s[0]) <= EPS:
        return jacobian.new_zeros((jacobian.shape[1], 0))
    keep = int(min(k, int((s > rel_tol * s[0]).sum())))
    return vh[:keep].T.contiguous()


def ogd_project(g: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """g minus its components in span(basis) (basis columns orthonormal)."""
    if basis.shape[1] == 0:
        return g
    return g - basis @ (basis.T @ g)
