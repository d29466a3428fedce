"""The one loader of an artifact set (daemon and tools), and the current/previous pointers.

`load_artifact_set(dir)` verifies the manifest before anything is deserialised: a missing file,
a file whose sha256 differs, or an unknown format version is refused with an `ArtifactError`
whose one line names the file. `dir` is either a set (holds manifest.json) or an artifacts root
holding `current` (and `previous`) links made by `install_artifact_set`; `rollback_artifacts`
swaps the two, so the previous set is always one step away.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.errors import ArtifactError
from daemon.training.manifest import MANIFEST_FILE, MANIFEST_VERSION, sha256_file

TYLER_FILE = "tyler.npz"
INDEX_DIR = "index"
FORECASTER_DIR = "forecaster"
SCORER_FILE = "scorer.cbm"
CALIBRATOR_FILE = "calibrator.json"
ANCHORS_DIR = "anchors"
SLICES_FILE = "slices.json"
PARAMS_FILE = "params.json"
REPORT_DIR = "report"
REQUIRED = (TYLER_FILE, f"{INDEX_DIR}/index.faiss", f"{INDEX_DIR}/index_outcomes.npz",
            f"{INDEX_DIR}/index.json", f"{FORECASTER_DIR}/forecaster.safetensors",
            f"{FORECASTER_DIR}/forecaster.json", SCORER_FILE, CALIBRATOR_FILE,
            f"{ANCHORS_DIR}/anchors.npz", f"{ANCHORS_DIR}/anchors.json", SLICES_FILE,
            PARAMS_FILE, f"{REPORT_DIR}/validation.json")
CURRENT, PREVIOUS, SETS = "current", "previous", "sets"


@dataclass
class ArtifactSet:
    """Everything the pipeline warm-loads, verified against its manifest."""

    dir: Path
    manifest: dict[str, Any]
    tyler: Any  # daemon.pipeline.tyler.TylerArtifacts
    index: Any  # daemon.pipeline.retrieval.NeighbourIndex
    forecaster: Any  # adapters.model.Forecaster (frozen base)
    scorer: Any  # catboost.CatBoostClassifier
    calibrator: Any  # daemon.training.calibration.Calibrator
    anchors: Any  # adapters.anchors.AnchorSuite
    slices: dict[str, tuple[str, str]]
    params: dict[str, Any]

    @property
    def report(self) -> dict[str, Any]:
        """The validation report (JSON) of this set."""
        return json.loads((self.dir / REPORT_DIR / "validation.json").read_text())


def resolve_set_dir(folder: Path) -> Path:
    """The set directory `folder` names: itself if it holds a manifest, else its `current`."""
    folder = Path(folder)
    if (folder / MANIFEST_FILE).is_file():
        return folder
    if (folder / CURRENT).exists():
        return (folder / CURRENT).resolve()
    if not folder.exists():
        raise ArtifactError(f"{folder}: no such artifact directory")
    raise ArtifactError(f"{folder / MANIFEST_FILE}: missing (not an artifact set)")


def read_manifest(folder: Path) -> dict[str, Any]:
    """The parsed manifest of a set; ArtifactError naming the file when unreadable/unknown."""
    path = folder / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise ArtifactError(f"{path}: missing") from None
    except (OSError, ValueError) as err:
        raise ArtifactError(f"{path}: unreadable ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("version") != MANIFEST_VERSION:
        version = manifest.get("version") if isinstance(manifest, dict) else None
        raise ArtifactError(f"{path}: unknown manifest version {version!r}")
    if not isinstance(manifest.get("files"), dict):
        raise ArtifactError(f"{path}: no file list")
    return manifest


def verify_files(folder: Path, manifest: dict[str, Any]) -> None:
    """Every listed file exists with its recorded sha256 and every required file is listed."""
    files: dict[str, str] = manifest["files"]
    for rel in REQUIRED:
        if rel not in files:
            raise ArtifactError(f"{folder / rel}: not listed in the manifest")
    for rel, digest in sorted(files.items()):
        path = folder / rel
        if not path.is_file():
            raise ArtifactError(f"{path}: missing")
        if sha256_file(path) != digest:
            raise ArtifactError(f"{path}: altered (sha256 does not match the manifest)")


def _load_part(path: Path, loader: Any) -> Any:
    try:
        return loader()
    except ArtifactError:
        raise
    except Exception as err:  # a file that hashes right but does not parse: still one line
        raise ArtifactError(f"{path}: cannot load ({type(err).__name__}: {err})") from None


def load_artifact_set(folder: Path) -> ArtifactSet:
    """Verify and load an artifact set (or the `current` set of an artifacts root)."""
    from adapters.anchors import AnchorSuite
    from adapters.model import load_forecaster
    from daemon.pipeline.retrieval import NeighbourIndex
    from daemon.pipeline.tyler import TylerArtifacts
    from daemon.training.calibration import Calibrator

    folder = resolve_set_dir(Path(folder))
    manifest = read_manifest(folder)
    verify_files(folder, manifest)

    def scorer() -> Any:
        from catboost import CatBoostClassifier

        model = CatBoostClassifier()
        model.load_model(str(folder / SCORER_FILE))
        return model

    def json_file(name: str) -> Any:
        return json.loads((folder / name).read_text())

    params = _load_part(folder / PARAMS_FILE, lambda: json_file(PARAMS_FILE))
    if params.get("version") != MANIFEST_VERSION:
        raise ArtifactError(f"{folder / PARAMS_FILE}: unknown version {params.get('version')!r}")
    slices_raw = _load_part(folder / SLICES_FILE, lambda: json_file(SLICES_FILE))
    return ArtifactSet(
        dir=folder,
        manifest=manifest,
        tyler=_load_part(folder / TYLER_FILE, lambda: TylerArtifacts.load(folder / TYLER_FILE)),
        index=_load_part(folder / INDEX_DIR, lambda: NeighbourIndex.load(folder / INDEX_DIR)),
        forecaster=_load_part(folder / FORECASTER_DIR,
                              lambda: load_forecaster(folder / FORECASTER_DIR)),
        scorer=_load_part(folder / SCORER_FILE, scorer),
        calibrator=_load_part(folder / CALIBRATOR_FILE,
                              lambda: Calibrator.from_dict(json_file(CALIBRATOR_FILE))),
        anchors=_load_part(folder / ANCHORS_DIR, lambda: AnchorSuite.load(folder / ANCHORS_DIR)),
        slices={k: (v[0], v[1]) for k, v in slices_raw["slices"].items()},
        params=params,
    )


# --- current / previous: keep the last set loadable for immediate failover ---

def _point(root: Path, name: str, target: Path) -> None:
    link = root / name
    tmp = root / f".{name}.tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(os.path.relpath(target, root))
    os.replace(tmp, link)  # atomic: a reader sees the old or the new link, never none


def install_artifact_set(set_dir: Path, root: Path) -> Path:
    """Copy a verified set under `root/sets/<manifest hash>` and make it `current`; the old
    current becomes `previous`. Returns the installed set's directory."""
    set_dir = resolve_set_dir(Path(set_dir))
    manifest = read_manifest(set_dir)
    verify_files(set_dir, manifest)
    root = Path(root)
    (root / SETS).mkdir(parents=True, exist_ok=True)
    target = root / SETS / sha256_file(set_dir / MANIFEST_FILE)[:16]
    if not target.exists():
        shutil.copytree(set_dir, target)
    old = (root / CURRENT).resolve() if (root / CURRENT).exists() else None
    if old is not None and old != target.resolve():
        _point(root, PREVIOUS, old)
    _point(root, CURRENT, target)
    return target


def rollback_artifacts(root: Path) -> tuple[Path, Path]:
    """Swap `current` and `previous` under an artifacts root after checking the previous set
    loads; returns (new current, new previous). ArtifactError if there is no previous set."""
    root = Path(root)
    if not (root / PREVIOUS).exists():
        raise ArtifactError(f"{root / PREVIOUS}: no previous artifact set to roll back to")
    prev = (root / PREVIOUS).resolve()
    cur = (root / CURRENT).resolve()
    verify_files(prev, read_manifest(prev))
    _point(root, CURRENT, prev)
    _point(root, PREVIOUS, cur)
    return prev, cur
