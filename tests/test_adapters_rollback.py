"""Rollback with corrupted versions in the history: the registry walks back to the newest
version that verifies (else the base), and a monitor breach never ends the bar loop."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from adapters.lora import attach_lora, build_serving_model, lora_state
from adapters.model import Forecaster
from adapters.registry import AdapterRegistry, RegistryError
from tests.adapters_support import D, small_base
from tests.test_adapters_worker import Harness

RANK, ALPHA = 4, 8.0  # UpdateSettings' defaults, so the worker can train on top of them


def adapter_state(base: Forecaster, seed: int) -> dict[str, torch.Tensor]:
    """A small, distinct adapter that fits `base` (no training needed)."""
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=gen) * 0.05
            for k, v in lora_state(attach_lora(base, RANK, ALPHA)).items()}


def corrupt(root: Path, version: str) -> None:
    """Flip bits inside the tensor data of a stored version (its file still parses)."""
    f = root / version / "adapter_model.safetensors"
    raw = bytearray(f.read_bytes())
    raw[-3] ^= 0xFF
    f.write_bytes(bytes(raw))


def three_versions(root: Path, base: Forecaster) -> tuple[AdapterRegistry, list[str]]:
    """A registry whose history is v1, v2 and v3 (active), each activated in turn."""
    reg = AdapterRegistry(root, base)
    versions = []
    for seed in (1, 2, 3):
        versions.append(reg.save(adapter_state(base, seed), RANK, ALPHA))
        reg.activate(versions[-1])
    return reg, versions


@pytest.fixture(scope="module")
def base() -> Forecaster:
    return small_base()


def test_rollback_skips_a_corrupted_previous_version(tmp_path, base):
    reg, (v1, v2, v3) = three_versions(tmp_path / "a", base)
    corrupt(tmp_path / "a", v2)
    assert reg.rollback() == v1
    assert reg.active() == v1 and reg.history()[-1] == v3
    # What was passed over, and why, is reported by the plan the rollback follows.
    reg, (v1, v2, v3) = three_versions(tmp_path / "b", base)
    corrupt(tmp_path / "b", v2)
    plan = reg.plan_rollback()
    assert plan.version == v1 and plan.left == v3
    assert [v for v, _ in plan.skipped] == [v2] and "corrupted" in plan.skipped[0][1]
    assert reg.active() == v3  # planning changes nothing


def test_rollback_with_every_previous_version_corrupted_goes_to_the_base(tmp_path, base):
    reg, (v1, v2, _v3) = three_versions(tmp_path / "a", base)
    for v in (v1, v2):
        corrupt(tmp_path / "a", v)
    assert reg.rollback() is None
    assert reg.active() is None  # never left at the breaching v3
    reg, (v1, v2, _v3) = three_versions(tmp_path / "b", base)
    for v in (v1, v2):
        corrupt(tmp_path / "b", v)
    assert [v for v, _ in reg.plan_rollback().skipped] == [v2, v1]


def test_an_explicit_corrupted_target_is_refused_and_nothing_changes(tmp_path, base):
    reg, (_v1, v2, v3) = three_versions(tmp_path / "adapters", base)
    corrupt(tmp_path / "adapters", v2)
    with pytest.raises(RegistryError, match="corrupted"):
        reg.rollback(to=v2)
    assert reg.active() == v3 and reg.history()[-1] == v2


BREACH = {"adapters": {"window_bars": 60, "every_n_bars": 1000, "steps": 30,
                       "max_steps": 300, "projection": "agem"},
          "promotion": {"stress_mse_limit": 1.0, "tolerance": 1.0,
                        "rollback_stress_mse": 1e-12}}


async def _promote_then_breach(h: Harness, before_breach) -> None:
    """Replay until the cycle at bar 60 is promoted, call `before_breach()` once, then make
    the post-promotion monitor breach (tightened stress limit) at its next check."""
    def tighten(_i: int) -> None:
        if h.kinds("promotion") and h.worker.policy.rollback_stress_mse > 1e-9:
            before_breach()
            h.worker.apply_config(BREACH)

    await h.replay(0, 80, after=tighten)  # an exception from the bar path fails the test here
    assert h.kinds("promotion") and h.kinds("monitor")


async def test_monitor_breach_with_a_corrupted_previous_version_serves_an_older_one(
        tmp_path, base):
    root = tmp_path / "adapters"
    reg, (v1, v2, v3) = three_versions(root, base)
    del reg
    h = Harness(tmp_path, base=base)
    assert h.worker.active_version == v3
    await _promote_then_breach(h, lambda: corrupt(root, v3))  # v3 is now the previous one
    promoted = h.kinds("promotion")[0]["version"]
    rb = h.kinds("rollback")
    assert rb and rb[0]["from_version"] == promoted and rb[0]["version"] == v2
    assert [s["version"] for s in rb[0]["skipped"]] == [v3]
    assert h.registry.active() == v2 and h.worker.active_version == v2
    # Serving is v2 from its files, not the warm copy of the corrupted v3.
    x = torch.randn(16, D)
    want = build_serving_model(base, h.registry.load(v2)[0], RANK, ALPHA)
    with torch.no_grad():
        assert torch.allclose(h.swaps[-1](x), want(x), atol=1e-6)
    rec = h.audit.records()[-1]
    assert rec["kind"] == "rollback" and rec["version"] == v2
    assert rec["skipped"][0]["version"] == v3 and "corrupted" in rec["skipped"][0]["reason"]
    assert h.alerts and h.alerts[-1][0] == "rollback"
    assert h.alerts[-1][1]["skipped"][0]["version"] == v3


async def test_monitor_breach_with_every_older_version_corrupted_serves_the_base(
        tmp_path, base):
    root = tmp_path / "adapters"
    _reg, versions = three_versions(root, base)
    h = Harness(tmp_path, base=base)

    def corrupt_all() -> None:
        for v in versions:
            corrupt(root, v)

    await _promote_then_breach(h, corrupt_all)
    rb = h.kinds("rollback")
    assert rb and rb[0]["version"] is None
    assert [s["version"] for s in rb[0]["skipped"]] == versions[::-1]
    assert h.registry.active() is None and h.worker.active_version is None
    x = torch.randn(16, D)
    with torch.no_grad():
        assert torch.allclose(h.swaps[-1](x), base(x), atol=1e-6)
    assert h.audit.records()[-1]["kind"] == "rollback"
    assert h.alerts and h.alerts[-1][0] == "rollback"


async def test_monitor_breach_with_an_unreadable_registry_serves_the_base_and_alerts(
        tmp_path, base):
    h = Harness(tmp_path, base=base)
    await _promote_then_breach(h, lambda: (tmp_path / "adapters" / "ACTIVE").write_text("{"))
    failed = h.kinds("rollback_failed")
    assert failed and "unreadable active pointer" in failed[0]["error"]
    assert failed[0]["version"] is None and not failed[0]["pointer_moved"]
    assert h.worker.active_version is None and h.worker.status()["monitoring"] is None
    x = torch.randn(16, D)
    with torch.no_grad():
        assert torch.allclose(h.swaps[-1](x), base(x), atol=1e-6)
    assert h.alerts and h.alerts[-1][0] == "rollback_failed"
    assert "unreadable active pointer" in h.audit.records()[-1]["error"]


async def test_ctl_rollback_refuses_a_named_corrupted_version_and_skips_it_otherwise(
        tmp_path):
    from daemon.adapters_attach import attach_adapters
    from daemon.app import Daemon
    from daemon.config import load_config
    from daemon.control import CommandError
    from tests.helpers import basic_config, write_config
    from tests.test_adapters_attach import ADAPTERS, FakePipeline

    daemon = Daemon(load_config(write_config(tmp_path, basic_config() + ADAPTERS)))
    daemon.pipeline = pipe = FakePipeline()
    root = daemon.state_dir / "adapters"
    _reg, (v1, v2, v3) = three_versions(root, pipe.arts.forecaster)
    (root / v2 / "adapter_model.safetensors").write_bytes(b"\0" * 64)  # unreadable now
    worker = attach_adapters(daemon)
    assert worker is not None and worker.active_version == v3
    with pytest.raises(CommandError, match="rollback refused") as refused:
        await daemon.control.handlers["rollback"]({"version": v2})
    assert "\n" not in str(refused.value) and v2 in str(refused.value)
    assert worker.active_version == v3 and worker.registry.active() == v3
    out = await daemon.control.handlers["rollback"]({})
    assert out["version"] == v1 and [s["version"] for s in out["skipped"]] == [v2]
    assert daemon.store.journal_rows("rollback")[-1]["skipped"][0]["version"] == v2
    daemon.store.close()
