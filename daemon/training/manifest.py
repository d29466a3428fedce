"""The manifest of an artifact set: every file's sha256, the input data's hash, the config, the
data window, git SHA and environment (`collect_metadata()`, the runbook's name).

Files listed under `volatile` (timings and the human report page) are hashed for integrity but
are expected to differ between two otherwise identical builds; everything else is
byte-identical for the same data, config and seed.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

MANIFEST_FILE = "manifest.json"
MANIFEST_VERSION = 1
_PACKAGES = ("numpy", "torch", "faiss-cpu", "faiss-gpu", "catboost", "safetensors", "anchord",
             "matplotlib", "threadpoolctl", "pandas", "arch")


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_json(value: Any) -> str:
    """Hex sha256 of a value's canonical JSON (sorted keys, no spaces)."""
    return hashlib.sha256(canonical_json(value)).hexdigest()


def canonical_json(value: Any) -> bytes:
    """Canonical, byte-stable JSON encoding (sorted keys, fixed separators, newline)."""
    return (json.dumps(value, sort_keys=True, separators=(",", ":"), default=str) + "\n").encode()


def git_sha(repo: Path | None = None) -> str:
    """The checkout's commit SHA (with `-dirty` when there are local changes), or "unknown"."""
    where = repo or Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=where, capture_output=True, text=True, timeout=5).stdout
        return sha + ("-dirty" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def collect_metadata() -> dict[str, Any]:
    """Python, platform, package versions, git SHA and an environment hash over them."""
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    env = {"python": sys.version.split()[0], "implementation": platform.python_implementation(),
           "platform": platform.platform(), "machine": platform.machine(), "packages": versions}
    return {"git_sha": git_sha(), "env": env, "env_hash": sha256_json(env)}


def file_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder` except the manifest, keyed by relative path."""
    return {p.relative_to(folder).as_posix(): sha256_file(p)
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST_FILE}


def write_manifest(folder: Path, info: dict[str, Any], volatile: list[str]) -> Path:
    """Hash every file in the set and write manifest.json with `info` and the hashes."""
    manifest = {"version": MANIFEST_VERSION, **info, "files": file_hashes(folder),
                "volatile": sorted(volatile)}
    path = folder / MANIFEST_FILE
    path.write_text(json.dumps(manifest, sort_keys=True, indent=1, default=str) + "\n")
    return path
