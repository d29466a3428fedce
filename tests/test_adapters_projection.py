"""Projection rules: A-GEM's half-space with margin, OGD's first-order invariance of anchors."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.lora import attach_lora, lora_params
from adapters.projection import agem_project, ogd_basis, ogd_project
from adapters.update import UpdateSettings, _output_jacobian, run_update
from tests.adapters_support import drift_window, small_base, suite

vec = st.lists(st.floats(-10, 10, allow_nan=False, width=32), min_size=6, max_size=6)


@settings(max_examples=200, deadline=None)
@given(g=vec, r=vec, margin=st.floats(0.0, 0.9))
def test_agem_projection_satisfies_half_space(g, r, margin):
    g_t, r_t = torch.tensor(g, dtype=torch.float64), torch.tensor(r, dtype=torch.float64)
    out, changed = agem_project(g_t, r_t, margin)
    if float(r_t.norm()) <= 1e-12:
        assert not changed and torch.equal(out, g_t)
        return
    r_hat = r_t / r_t.norm()
    assert float(out @ r_hat) >= margin * float(g_t.norm()) - 1e-9
    if not changed:
        assert torch.equal(out, g_t)


def test_agem_reference_zero_at_first_step_is_the_trap():
    """The teacher-MSE gradient is exactly zero before the first step."""
    base = small_base()
    res = run_update(base, None, drift_window(), suite(base),
                     UpdateSettings(projection="agem", steps=1))
    assert res.projection_stats["reference_zero_steps"] == 1


def test_ogd_leaves_anchor_outputs_unchanged_to_first_order():
    base = small_base()
    anchors = suite(base, n=20)
    model = attach_lora(base, 4, 8.0)
    # Move off B = 0 so that every LoRA parameter has an output gradient.
    with torch.no_grad():
        for _, p in lora_params(model):
            p.add_(torch.randn_like(p) * 0.05)
    named = lora_params(model)
    names, params = [n for n, _ in named], [p for _, p in named]
    xm = torch.from_numpy(anchors.inputs)
    jac = _output_jacobian(model, names, params, xm)
    basis = ogd_basis(jac, k=jac.shape[0])
    g = torch.randn(jac.shape[1])
    g_tilde = ogd_project(g, basis)
    # First-order change of anchor outputs along the projected step: J·g̃ ≈ 0.
    assert float((jac @ g_tilde).abs().max()) < 1e-4 * float((jac @ g).abs().max())
    # And a small real step moves the anchor outputs only at second order.
    eps = 1e-3
    with torch.no_grad():
        before = model(xm).clone()
        offset = 0
        for p in params:
            n = p.numel()
            p.add_(eps * g_tilde[offset:offset + n].view_as(p))
            offset += n
        moved = float((model(xm) - before).abs().max())
    naive_move = eps * float((jac @ g).abs().max())
    assert moved < 0.05 * naive_move


def test_update_is_deterministic_for_a_seed_and_window():
    base = small_base()
    anchors, window = suite(base), drift_window()
    s = UpdateSettings(projection="ogd", steps=20)
    a = run_update(base, None, window, anchors, s)
    b = run_update(base, None, window, anchors, s)
    assert a.checksum == b.checksum
    c = run_update(base, None, window, anchors, UpdateSettings(projection="ogd", steps=20,
                                                               seed=1))
    assert c.checksum != a.checksum


def test_projected_update_regresses_anchors_less_than_naive_at_matched_gain():
    from adapters.update import run_matched

    base = small_base()
    anchors = suite(base)
    chosen, naive = run_matched(base, None, drift_window(), anchors,
                                UpdateSettings(projection="agem", steps=60, max_steps=300))
    assert naive is not None
    assert chosen.stress_mse < 0.5 * naive.stress_mse
    assert set(chosen.stress_mse_by_label) == {"crash", "vol_spike"}
    assert np.isfinite(chosen.drift_gain)
