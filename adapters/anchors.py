"""The stress anchor suite `M_t`: inputs from labelled stress days, the teacher outputs of the
deployed checkpoint, and the realised targets.

Continual updates must keep the forecaster's behaviour on these rows (retention is measured as
the MSE of a candidate's outputs against the teacher cache). The suite has a content hash over
its arrays and labels, recorded in every audit record, so a decision can be tied to exactly the
anchors it was made on. The teacher cache is recomputed from the deployed checkpoint at each
promotion (`with_teacher`); the suite built from the base checkpoint is kept beside it.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SUITE_FILE = "anchors.npz"
META_FILE = "anchors.json"
FORMAT_VERSION = 1


class AnchorSuiteError(Exception):
    """An anchor suite on disk is missing, malformed or does not match its recorded hash."""


@dataclass(frozen=True)
class AnchorSuite:
    """Rows of the stress suite: `inputs` (n × forecaster inputs), `teacher` and `targets` (n,),
    one taxonomy `label` and ISO `date` per row."""

    inputs: np.ndarray
    teacher: np.ndarray
    targets: np.ndarray
    labels: list[str]
    dates: list[str]
    _hash: str = field(default="", compare=False, repr=False)

    def __post_init__(self) -> None:
        n = len(self.inputs)
        object.__setattr__(self, "inputs", np.ascontiguousarray(self.inputs, dtype=np.float32))
        object.__setattr__(self, "teacher", np.ascontiguousarray(self.teacher, dtype=np.float32))
        object.__setattr__(self, "targets", np.ascontiguousarray(self.targets, dtype=np.float32))
        if self.inputs.ndim != 2:
            raise AnchorSuiteError(f"inputs must be 2-D, got shape {self.inputs.shape}")
        for name in ("teacher", "targets", "labels", "dates"):
            if len(getattr(self, name)) != n:
                raise AnchorSuiteError(f"{name} has {len(getattr(self, name))} rows, inputs {n}")
        object.__setattr__(self, "labels", [str(x) for x in self.labels])
        object.__setattr__(self, "dates", [str(x) for x in self.dates])

    def __len__(self) -> int:
        return len(self.inputs)

    def content_hash(self) -> str:
        """sha256 over the arrays' bytes and shapes and the labels and dates."""
        if not self._hash:
            h = hashlib.sha256(f"anchors/v{FORMAT_VERSION}".encode())
            for arr in (self.inputs, self.teacher, self.targets):
                h.update(str(arr.shape).encode())
                h.update(arr.tobytes())
            h.update(json.dumps([self.labels, self.dates]).encode())
            object.__setattr__(self, "_hash", h.hexdigest())
        return self._hash

    def taxonomy(self) -> dict[str, np.ndarray]:
        """Row indices per taxonomy label (for stress MSE per label)."""
        labels = np.asarray(self.labels)
        return {lab: np.flatnonzero(labels == lab) for lab in sorted(set(self.labels))}

    def with_teacher(self, predict: Callable[[np.ndarray], np.ndarray]) -> AnchorSuite:
        """The same suite with its teacher cache recomputed by `predict` (a deployed model's
        forward pass over `inputs`)."""
        teacher = np.asarray(predict(self.inputs), dtype=np.float32).reshape(-1)
        return AnchorSuite(self.inputs, teacher, self.targets, self.labels, self.dates)

    def save(self, folder: Path) -> list[Path]:
        """Write the arrays (npz, uncompressed: byte-identical for equal contents) and the
        labels, dates and hash (JSON); returns the files written."""
        folder.mkdir(parents=True, exist_ok=True)
        arrays = folder / SUITE_FILE
        with arrays.open("wb") as fh:
            np.savez(fh, inputs=self.inputs, teacher=self.teacher, targets=self.targets)
        meta = folder / META_FILE
        meta.write_text(json.dumps({"version": FORMAT_VERSION, "labels": self.labels,
                                    "dates": self.dates, "sha256": self.content_hash()},
                                   sort_keys=True))
        return [arrays, meta]

    @classmethod
    def load(cls, folder: Path) -> AnchorSuite:
        """Read a saved suite; AnchorSuiteError if it is missing, malformed or its contents do
        not hash to the recorded value."""
        try:
            meta = json.loads((folder / META_FILE).read_text())
            with np.load(folder / SUITE_FILE, allow_pickle=False) as z:
                inputs, teacher, targets = z["inputs"], z["teacher"], z["targets"]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
            raise AnchorSuiteError(f"{folder}: cannot read anchor suite ({err})") from None
        if meta.get("version") != FORMAT_VERSION:
            raise AnchorSuiteError(f"{folder / META_FILE}: unknown version {meta.get('version')}")
        suite = cls(inputs, teacher, targets, meta["labels"], meta["dates"])
        if suite.content_hash() != meta.get("sha256"):
            raise AnchorSuiteError(f"{folder / SUITE_FILE}: contents do not match its hash")
        return suite
