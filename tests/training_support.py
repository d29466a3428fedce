"""One small artifact set trained per test session (reduced config, sample data through 2012),
shared by every test that needs a real trained set, and a helper that derives a second,
distinguishable set from it without training again."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
from pathlib import Path

from daemon.config import RuntimeConfig
from daemon.training.progress import Progress
from daemon.training.train import train_artifacts

TRAIN_END = "2012-12-31"


def small_config() -> RuntimeConfig:
    """The default config with a cheaper CPCV (4 groups, 1 test group) and fewer trees."""
    cfg = RuntimeConfig()
    return dataclasses.replace(cfg, training=dataclasses.replace(
        cfg.training, cpcv_groups=4, cpcv_test_groups=1, catboost_iterations=100))


def build(out: Path, **kw) -> dict:
    """Train the small set into `out`; returns the training summary."""
    return train_artifacts(small_config(), "sample:sp500", out, train_end=TRAIN_END,
                           progress=Progress(io.StringIO(), tty=False), **kw)


def variant(set_dir: Path, out: Path, *, slope: float = 3.0) -> Path:
    """A copy of `set_dir` with a different (steeper) calibrator, re-hashed so it verifies:
    a second valid set whose decisions differ from the first's."""
    from daemon.training.manifest import sha256_file

    shutil.copytree(set_dir, out)
    cal = json.loads((out / "calibrator.json").read_text())
    cal["a"] = float(cal["a"]) * slope + 1.0
    (out / "calibrator.json").write_text(json.dumps(cal))
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["files"]["calibrator.json"] = sha256_file(out / "calibrator.json")
    manifest["created_at"] = f"variant {slope}"
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def tyler_variant(set_dir: Path, out: Path) -> Path:
    """A copy of `set_dir` whose Tyler whitener differs (another shape, same dimension),
    re-hashed so it verifies: a second valid set that whitens the same features differently."""
    import numpy as np

    from daemon.pipeline.tyler import TylerArtifacts
    from daemon.training.manifest import sha256_file

    shutil.copytree(set_dir, out)
    tyler = TylerArtifacts.load(out / "tyler.npz")
    d = tyler.dim
    tyler.with_shape(tyler.shape + np.diag(np.linspace(0.5, 2.0, d))).save(out / "tyler.npz")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["files"]["tyler.npz"] = sha256_file(out / "tyler.npz")
    manifest["created_at"] = "tyler variant"
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out
