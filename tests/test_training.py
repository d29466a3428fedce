"""A small but real `anchord train` run: the set loads back, is deterministic, every altered
byte is refused, the gates read its report, and shuffled labels fail them."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from daemon.config import RuntimeConfig
from daemon.errors import ArtifactError
from daemon.training.artifacts import (
    install_artifact_set,
    load_artifact_set,
    rollback_artifacts,
)
from tests.helpers import run_cli
from tests.training_support import TRAIN_END, build


@pytest.fixture
def artifact_set(trained_set: tuple[Path, dict]) -> tuple[Path, dict]:
    """The session's small trained set (tests/conftest.py)."""
    return trained_set


def stable_hashes(folder: Path) -> dict[str, str]:
    manifest = json.loads((folder / "manifest.json").read_text())
    return {k: v for k, v in manifest["files"].items() if k not in manifest["volatile"]}


def test_train_then_load_round_trips(artifact_set) -> None:
    out, summary = artifact_set
    aset = load_artifact_set(out)
    p = aset.params
    assert p["dim"] == 64 == aset.index.dim and p["window"] * len(p["feature_names"]) == 64
    assert p["train_end"] == TRAIN_END and aset.manifest["data_window"]["last_bar"] <= TRAIN_END
    assert len(aset.index) == summary["rows"] and aset.forecaster.spec.n_inputs == 16
    assert len(aset.anchors) == summary["anchors"] > 0
    assert all(d <= TRAIN_END for d in aset.anchors.dates)
    assert {"crash", "flash_crash", "tail_loss", "vol_spike"} <= set(aset.anchors.labels)
    assert "2008-10-15" in aset.anchors.dates and "2015-08-24" not in aset.anchors.dates
    assert aset.slices["heldout_2013_2015"] == ("2013-01-01", "2015-12-31")
    assert aset.manifest["bars_sha256"] and aset.manifest["env_hash"]
    assert aset.manifest["git_sha"]
    prob = aset.scorer.predict_proba(np.zeros((1, len(p["scorer_feature_names"]))))[0, 1]
    assert 0.0 < float(aset.calibrator.predict(np.array([prob]))[0]) < 1.0
    # the anchor teacher cache is the saved base forecaster's output
    import torch
    with torch.no_grad():
        again = aset.forecaster(torch.from_numpy(aset.anchors.inputs)).numpy()
    assert np.allclose(again, aset.anchors.teacher, atol=1e-6)
    report = aset.report
    assert report["cpcv"]["n_paths"] == 1 and report["cpcv"]["n_splits"] == 4
    for key in ("auc", "log_loss", "brier", "expected_calibration_error", "sharpe",
                "max_drawdown"):
        assert key in report["cpcv"]["paths"][0]
    assert (out / "report" / "report.md").is_file() and (out / "report" / "ann.png").is_file()


def test_same_data_config_and_seed_give_identical_files(artifact_set, tmp_path: Path) -> None:
    out, _ = artifact_set
    build(tmp_path / "again")
    assert stable_hashes(tmp_path / "again") == stable_hashes(out)
    assert "scorer.cbm" in stable_hashes(out) and "tyler.npz" in stable_hashes(out)


def test_a_flipped_byte_in_any_artifact_is_refused(artifact_set, tmp_path: Path) -> None:
    out, _ = artifact_set
    files = json.loads((out / "manifest.json").read_text())["files"]
    assert len(files) >= 14
    for rel in files:
        copy = tmp_path / rel.replace("/", "_")
        shutil.copytree(out, copy)
        target = copy / rel
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0x01
        target.write_bytes(bytes(data))
        with pytest.raises(ArtifactError) as err:
            load_artifact_set(copy)
        assert str(target) in str(err.value) and "\n" not in str(err.value)
        shutil.rmtree(copy)


def test_missing_file_and_unknown_version_are_refused(artifact_set, tmp_path: Path) -> None:
    out, _ = artifact_set
    shutil.copytree(out, tmp_path / "a")
    (tmp_path / "a" / "scorer.cbm").unlink()
    with pytest.raises(ArtifactError, match="scorer.cbm: missing"):
        load_artifact_set(tmp_path / "a")
    shutil.copytree(out, tmp_path / "b")
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    manifest["version"] = 99
    (tmp_path / "b" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="unknown manifest version 99"):
        load_artifact_set(tmp_path / "b")


def test_gates_cli_passes_fails_when_tightened_and_exits_2_on_bad_artifacts(
        artifact_set, tmp_path: Path) -> None:
    from daemon.training.gates import run_gates

    out, _ = artifact_set
    measured = json.loads((out / "report" / "validation.json").read_text())["cpcv"]["summary"]
    auc = measured["auc"]["mean"]
    loose = tmp_path / "loose.toml"
    loose.write_text(f"[quality_gates]\nmin_auc = {auc - 0.001}\nmax_ece = 0.5\n"
                     "max_worst_path_drawdown = 0.99\n")
    code, table = run_gates(out, str(loose))
    assert code == 0, table
    assert "cpcv_auc_mean" in table and "SKIP" in table  # speed-up: small index
    tight = tmp_path / "tight.toml"
    tight.write_text(f"[quality_gates]\nmin_auc = {auc + 0.001}\nmax_ece = 0.5\n"
                     "max_worst_path_drawdown = 0.99\n")
    bad = run_cli("gates", "--artifacts", str(out), "--config", str(tight))
    assert bad.returncode == 1 and "FAIL" in bad.stdout
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    (broken / "index" / "index.faiss").write_bytes(b"junk")
    gone = run_cli("gates", "--artifacts", str(broken))
    assert gone.returncode == 2 and "Traceback" not in gone.stderr
    assert gone.stderr.strip().count("\n") == 0 and "index.faiss" in gone.stderr


def test_with_shuffled_labels_the_gates_fail(tmp_path: Path) -> None:
    from daemon.training.gates import evaluate_gates

    out = tmp_path / "shuffled"
    build(out, shuffle_labels=1)
    aset = load_artifact_set(out)
    timings = json.loads((out / "report" / "timings.json").read_text())
    results = {r.name: r for r in evaluate_gates(aset.report, timings,
                                                 RuntimeConfig().quality_gates)}
    assert results["cpcv_auc_mean"].status == "fail"
    assert abs(results["cpcv_auc_mean"].value - 0.5) < 0.01  # no leak: chance level


def test_a_leak_would_let_shuffled_labels_pass(tmp_path: Path, monkeypatch) -> None:
    """The control for the test above: train on the test rows too (no purging at all) and
    the shuffled labels are "predicted" well enough to pass the AUC gate."""
    from daemon.training import train as train_module
    from daemon.training.cpcv import Split, cpcv_splits

    def leaky(n: int, *args, **kwargs) -> list[Split]:
        return [Split(s.index, s.test_groups, np.arange(n), s.test)
                for s in cpcv_splits(n, *args, **kwargs)]

    monkeypatch.setattr(train_module, "cpcv_splits", leaky)
    summary = build(tmp_path / "leaky", shuffle_labels=1)
    assert summary["auc_mean"] > RuntimeConfig().quality_gates.min_auc + 0.03


def test_rollback_swaps_current_and_previous(artifact_set, tmp_path: Path) -> None:
    out, _ = artifact_set
    root = tmp_path / "artifacts"
    first = install_artifact_set(out, root)
    with pytest.raises(ArtifactError, match="no previous"):
        rollback_artifacts(root)
    other = tmp_path / "other"
    shutil.copytree(out, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["created_at"] = "another build"
    (other / "manifest.json").write_text(json.dumps(manifest))
    second = install_artifact_set(other, root)
    assert second != first and load_artifact_set(root).dir == second.resolve()
    now, before = rollback_artifacts(root)
    assert now == first.resolve() and before == second.resolve()
    assert load_artifact_set(root).dir == first.resolve()


async def test_ctl_rollback_artifacts_swaps_and_hands_the_set_over(artifact_set,
                                                                    tmp_path: Path) -> None:
    import types

    from daemon.training.control import attach_artifact_control

    out, _ = artifact_set
    root = tmp_path / "artifacts"
    first = install_artifact_set(out, root)
    other = tmp_path / "other"
    shutil.copytree(out, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["created_at"] = "later"
    (other / "manifest.json").write_text(json.dumps(manifest))
    install_artifact_set(other, root)
    handlers, swapped = {}, []
    cfg = dataclasses.replace(RuntimeConfig(), source_path=str(tmp_path / "runtime.toml"))
    cfg = dataclasses.replace(cfg, artifacts=dataclasses.replace(cfg.artifacts, dir="artifacts"))
    fake = types.SimpleNamespace(
        cfg=cfg, control=types.SimpleNamespace(register=handlers.__setitem__),
        log=types.SimpleNamespace(warning=lambda *a, **k: None),
        pipeline=types.SimpleNamespace(swap_artifacts=swapped.append))
    attach_artifact_control(fake)
    result = await handlers["rollback-artifacts"]({})
    assert result["applied"] and result["current"] == str(first.resolve())
    assert swapped[0].dir == first.resolve()


def test_train_refuses_a_window_too_short_in_one_line(tmp_path: Path) -> None:
    done = run_cli("train", "--data", "sample:sp500", "--out", str(tmp_path / "x"),
                   "--train-end", "1999-05-20")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "usable bars" in done.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "x").exists()


def test_a_rehashed_file_of_an_unknown_version_is_refused(artifact_set, tmp_path: Path) -> None:
    from daemon.pipeline.tyler import TylerArtifacts
    from daemon.training.manifest import sha256_file

    out, _ = artifact_set
    copy = tmp_path / "set"
    shutil.copytree(out, copy)
    art = TylerArtifacts.load(copy / "tyler.npz")
    with (copy / "tyler.npz").open("wb") as fh:
        np.savez(fh, shape=art.shape, whitener=art.whitener, center=art.center,
                 scale=art.scale, shrinkage=art.shrinkage, iterations=art.iterations,
                 version=np.int64(2))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"]["tyler.npz"] = sha256_file(copy / "tyler.npz")
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=r"tyler\.npz: cannot load .*unknown tyler"):
        load_artifact_set(copy)
