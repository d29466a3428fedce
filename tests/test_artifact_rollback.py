"""`anchord ctl rollback-artifacts` in a daemon: the next decisions come from the previous set,
and an altered previous set is refused in one line while serving carries on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from daemon.app import Daemon
from daemon.clock import ManualClock
from daemon.config import load_config
from daemon.control import CommandError
from daemon.features import FeatureState
from daemon.pipeline.pipeline import Pipeline, load_bars
from daemon.pipeline.tyler import whiten
from daemon.training.artifacts import install_artifact_set, load_artifact_set
from tests.helpers import basic_config, write_config
from tests.training_support import tyler_variant, variant

BARS = load_bars("sample:sp500", "CON.F.US.EP.Z26")[3500:3600]  # after the sets' train_end


def decide_all(pipe: Pipeline, bars) -> list[tuple[float, float, float]]:
    out = []
    for bar in bars:
        d = pipe.decide(bar)
        if d is not None:
            out.append((d.forecast, d.p_raw, d.p_up))
        pipe.after_bar()
    return out


@pytest.fixture
def two_sets(tmp_path: Path, trained_set) -> tuple[Path, Path, Path]:
    """An artifacts root with the trained set installed first and a variant installed over it
    (so `previous` = trained set, `current` = variant)."""
    set_dir, _ = trained_set
    root = tmp_path / "artifacts"
    first = install_artifact_set(set_dir, root)
    second = install_artifact_set(variant(set_dir, tmp_path / "variant"), root)
    return root, first, second


def make_daemon(tmp_path: Path) -> Daemon:
    text = basic_config(metrics='listen = ""') + '[artifacts]\ndir = "artifacts"\n'
    return Daemon(load_config(write_config(tmp_path, text)), clock=ManualClock())


async def test_rollback_artifacts_serves_the_previous_set_from_the_next_bar(
        tmp_path: Path, two_sets) -> None:
    root, first, second = two_sets
    daemon = make_daemon(tmp_path)
    pipe = daemon.pipeline
    assert pipe.arts.dir == second.resolve()
    # references: each set alone over the same bars (bar state does not depend on the set)
    limits = pipe.limits
    ref_first = decide_all(Pipeline(load_artifact_set(first), pipe.params, limits), BARS)
    ref_second = decide_all(Pipeline(load_artifact_set(second), pipe.params, limits), BARS)
    assert ref_first != ref_second
    before = decide_all(pipe, BARS[:50])
    result = await daemon.control.handlers["rollback-artifacts"]({})
    assert result["applied"] and result["current"] == str(first.resolve())
    after = decide_all(pipe, BARS[50:])
    n = len(before)
    assert before == ref_second[:n] and after == ref_first[n:]
    assert pipe.arts.dir == first.resolve()
    assert pipe.previous_warm is not None and pipe.previous_warm.arts.dir == second.resolve()
    assert daemon.status()["pipeline"]["artifact_dir"] == str(first.resolve())
    assert daemon.adapters.paused and "rolled back" in daemon.adapters.paused
    daemon.store.close()


async def test_an_altered_previous_set_is_refused_and_serving_continues(
        tmp_path: Path, two_sets) -> None:
    root, first, second = two_sets
    daemon = make_daemon(tmp_path)
    pipe = daemon.pipeline
    cal = first / "calibrator.json"
    cal.write_text(json.dumps({**json.loads(cal.read_text()), "b": 9.0}))
    with pytest.raises(CommandError) as err:
        await daemon.control.handlers["rollback-artifacts"]({})
    message = str(err.value)
    assert "\n" not in message and "calibrator.json" in message
    assert (root / "current").resolve() == second.resolve()
    assert pipe.arts.dir == second.resolve() and len(decide_all(pipe, BARS[:60])) > 0
    daemon.store.close()


async def test_after_a_rollback_the_whitened_window_is_entirely_the_new_sets(
        tmp_path: Path, trained_set) -> None:
    # The sets whiten differently: the window of the last bars must be re-whitened with the
    # set that serves, so that no query mixes two whiteners and no warm-up is lost.
    set_dir, _ = trained_set
    root = tmp_path / "artifacts"
    first = install_artifact_set(set_dir, root)
    install_artifact_set(tyler_variant(set_dir, tmp_path / "tyler_variant"), root)
    daemon = make_daemon(tmp_path)
    pipe = daemon.pipeline
    ref_first = decide_all(Pipeline(load_artifact_set(first), pipe.params, pipe.limits), BARS)
    before = decide_all(pipe, BARS[:50])
    await daemon.control.handlers["rollback-artifacts"]({})
    features = FeatureState()
    raw = [f for f in (features.update(bar) for bar in BARS[:50]) if f is not None]
    window = pipe.state.window
    assert len(window) == window.maxlen
    for got, feats in zip(window, raw[-window.maxlen:], strict=True):
        np.testing.assert_array_equal(got, whiten(feats, pipe.tyler))
    assert decide_all(pipe, BARS[50:]) == ref_first[len(before):]
    daemon.store.close()
