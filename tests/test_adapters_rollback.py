"""Rollback with corrupted versions in the history: the registry walks back to the newest
version that verifies (else the base), and a monitor breach never ends the bar loop."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from adapters.lora import attach_lora, lora_state
from adapters.model import Forecaster
from adapters.registry import AdapterRegistry, RegistryError
from tests.adapters_support import small_base

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
