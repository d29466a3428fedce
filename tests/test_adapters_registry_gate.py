"""Gate policy, drift triggers, registry (checksums, corrupted versions, atomic pointer)."""

from __future__ import annotations

import math
import os

import pytest
import torch

from adapters.drift import PageHinkley, Trigger
from adapters.gate import GatePolicy, evaluate, monitor_breach
from adapters.lora import attach_lora, build_serving_model, lora_state
from adapters.registry import AdapterRegistry, RegistryError
from adapters.update import UpdateSettings, run_update
from tests.adapters_support import drift_window, small_base, suite

BASE_FIG = {"drift_mse": 1.0, "mdd": -0.10, "violations": 2}


def test_gate_passes_only_when_every_check_holds():
    p = GatePolicy(stress_mse_limit=0.01, delta=0.05, tolerance=0.01)
    ok = evaluate({"stress_mse": 0.005, "drift_mse": 1.04, "mdd": -0.105, "violations": 2},
                  BASE_FIG, p)
    assert ok.decision == "promote"
    assert {c["name"] for c in ok.checks} == {"stress_mse", "drift_mse", "mdd", "violations"}
    for bad, name in [({"stress_mse": 0.02}, "stress_mse"), ({"drift_mse": 1.06}, "drift_mse"),
                      ({"mdd": -0.12}, "mdd"), ({"violations": 3}, "violations")]:
        cand = {"stress_mse": 0.005, "drift_mse": 1.0, "mdd": -0.1, "violations": 2, **bad}
        d = evaluate(cand, BASE_FIG, p)
        assert d.decision == "reject" and name in d.reason
    nan = evaluate({"stress_mse": 0.005, "drift_mse": math.nan, "mdd": -0.1, "violations": 2},
                   BASE_FIG, p)
    assert nan.decision == "hold"


def test_monitor_names_each_breach():
    p = GatePolicy(rollback_stress_mse=0.05, rollback_tail_tolerance=0.01,
                   rollback_violation_spike=1, rollback_output_shift=3.0)
    ref = {"worst_day_return": -0.03, "mdd": -0.1, "violations": 1, "gate_output_drift": 0.01}
    assert monitor_breach({"stress_mse_base": 0.01}, ref, p) is None
    assert "stress-regression" in monitor_breach({"stress_mse_base": 0.2}, ref, p)
    assert "tail-risk" in monitor_breach({"worst_day_return": -0.05}, ref, p)
    assert "violation spike" in monitor_breach({"violations": 3}, ref, p)
    assert "output shift" in monitor_breach({"output_drift": 0.05}, ref, p)


def test_page_hinkley_fires_on_a_shift_and_trigger_keeps_spacing():
    ph = PageHinkley(delta=0.05, threshold=3.0, warmup=10)
    assert not any(ph.update(1.0) for _ in range(100))
    assert any(ph.update(3.0) for _ in range(20))
    t = Trigger(mode="schedule", every_n_bars=10, min_spacing_bars=5, window_bars=20)
    fired = [i for i in range(1, 61) if t.on_bar() is not None]
    assert fired == [20, 30, 40, 50, 60]
    d = Trigger(mode="drift", min_spacing_bars=15, window_bars=5,
                detector=PageHinkley(delta=0.0, threshold=1.0, warmup=5))
    fires = [i for i in range(1, 80) if d.on_bar(residual=1.0 if i < 20 else 5.0)]
    assert fires and all(b - a >= 15 for a, b in zip(fires, fires[1:], strict=False))


@pytest.fixture()
def trained():
    base = small_base()
    res = run_update(base, None, drift_window(), suite(base), UpdateSettings(steps=20))
    return base, res


def test_registry_round_trip_and_serving_model(tmp_path, trained):
    base, res = trained
    reg = AdapterRegistry(tmp_path / "adapters", base)
    v = reg.save(res.state, 4, 8.0, {"audit_id": "000001"})
    assert (tmp_path / "adapters" / v / "adapter_model.safetensors").exists()
    assert (tmp_path / "adapters" / v / "adapter_config.json").exists()
    reg.activate(v)
    version, state, meta, refusal = reg.load_active()
    assert version == v and refusal is None and meta["checksum"] == res.checksum
    served = build_serving_model(base, state, 4, 8.0)
    peft_model = attach_lora(base, 4, 8.0, init=state)
    x = torch.randn(5, base.spec.n_inputs)
    assert torch.allclose(served(x), peft_model(x), atol=1e-6)
    assert lora_state(peft_model).keys() == state.keys()


def test_corrupted_adapter_is_refused_and_pointer_kept(tmp_path, trained):
    base, res = trained
    reg = AdapterRegistry(tmp_path / "adapters", base)
    v1 = reg.save(res.state, 4, 8.0)
    reg.activate(v1)
    bad = {k: v.clone() for k, v in res.state.items()}
    v2 = reg.save(bad, 4, 8.0)
    f = tmp_path / "adapters" / v2 / "adapter_model.safetensors"
    raw = bytearray(f.read_bytes())
    raw[-3] ^= 0xFF  # flip bits inside the last tensor's data
    f.write_bytes(bytes(raw))
    with pytest.raises(RegistryError, match="checksum|cannot read"):
        reg.activate(v2)
    assert reg.active() == v1
    # Start-up with a corrupted active version: refused with a reason, base served.
    v3 = reg.save(res.state, 4, 8.0)
    reg.activate(v3)
    (tmp_path / "adapters" / v3 / "adapter_model.safetensors").write_bytes(b"garbage")
    version, state, _meta, refusal = reg.load_active()
    assert version is None and state is None and "cannot read" in refusal


def test_pointer_update_is_atomic(tmp_path, trained, monkeypatch):
    base, res = trained
    reg = AdapterRegistry(tmp_path / "adapters", base)
    v1 = reg.save(res.state, 4, 8.0)
    v2 = reg.save(res.state, 4, 8.0)
    reg.activate(v1)

    def crash(*_a, **_k):
        raise OSError("power cut")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        reg.activate(v2)
    monkeypatch.undo()
    assert reg.active() == v1  # the old pointer is intact; the temp file never became ACTIVE
    reg.activate(v2)
    assert reg.active() == v2
    assert reg.rollback() == v1
    assert reg.rollback() is None  # then the bare base, never back to the rolled-back v2
    assert reg.rollback(to=v2) == v2


def test_external_drift_signal_fires_a_cycle_no_sooner_than_the_min_spacing():
    quiet = PageHinkley(threshold=1e9)
    t = Trigger(mode="drift", min_spacing_bars=10, window_bars=5, detector=quiet)
    assert [t.on_bar(0.0) for _ in range(6)] == [None] * 6  # no signal, no cycle
    assert t.signal("ece_drift")
    assert t.on_bar(0.0) == "ece_drift"  # bar 7
    assert t.signal("ece_drift")  # at once again: held until the spacing allows
    fired = [i for i in range(8, 30) if t.on_bar(0.0) is not None]
    assert fired == [17]
    sched = Trigger(mode="schedule", every_n_bars=1000, window_bars=5)
    assert not sched.signal("ece_drift")
    assert all(sched.on_bar() is None for _ in range(50))
