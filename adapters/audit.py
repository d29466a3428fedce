"""Audit trail: one record per evaluated candidate (and per rollback), appended and fsynced.

`<state_dir>/audit/records.jsonl` holds one JSON object per line, each chained to the previous
line by `prev_sha256`. The inputs of a cycle are kept content-addressed beside it, so `verify`
can re-run the cycle: `batches/drift-<sha>.npz` (D_t), `batches/anchors-<sha>/` (M_t with its
teacher cache), `states/<checksum>.safetensors` (the deployed adapter the update started from),
`base/<checksum>/` (the frozen base forecaster).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from adapters.anchors import AnchorSuite
from adapters.gate import GatePolicy, evaluate
from adapters.model import Forecaster, load_forecaster, save_forecaster
from adapters.registry import base_checksum, fsync_dir
from adapters.update import (
    DriftBatch,
    UpdateError,
    UpdateSettings,
    check_window,
    run_matched,
    run_update,
    select_device,
)

RECORDS = "records.jsonl"


class AuditError(Exception):
    """An audit record or one of its kept inputs is missing or unreadable."""


class AuditLog:
    """Append-only audit records plus the content-addressed inputs needed to re-run them.

    `on_append(record)` (optional) is called after each append, e.g. to index it in the store.
    """

    def __init__(self, root: Path, on_append: Callable[[dict[str, Any]], None] | None = None
                 ) -> None:
        self.root = Path(root)
        (self.root / "batches").mkdir(parents=True, exist_ok=True)
        (self.root / "states").mkdir(parents=True, exist_ok=True)
        (self.root / "base").mkdir(parents=True, exist_ok=True)
        self.on_append = on_append

    # -- kept inputs ------------------------------------------------------------------------
    def keep_drift(self, batch: DriftBatch) -> str:
        """Store D_t under its content hash (once); returns the hash."""
        sha = batch.content_hash()
        path = self.root / "batches" / f"drift-{sha}.npz"
        if not path.exists():
            tmp = path.with_name(f".{path.name}.tmp")
            with tmp.open("wb") as fh:
                np.savez(fh, inputs=batch.inputs, targets=batch.targets,
                         dates=np.asarray(batch.dates, dtype=str))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        return sha

    def load_drift(self, sha: str) -> DriftBatch:
        path = self.root / "batches" / f"drift-{sha}.npz"
        try:
            with np.load(path, allow_pickle=False) as z:
                batch = DriftBatch(z["inputs"], z["targets"], [str(d) for d in z["dates"]])
        except (OSError, ValueError, KeyError) as err:
            raise AuditError(f"{path}: cannot read drift batch ({err})") from None
        if batch.content_hash() != sha:
            raise AuditError(f"{path}: contents do not match their hash")
        return batch

    def keep_anchors(self, suite: AnchorSuite) -> str:
        sha = suite.content_hash()
        folder = self.root / "batches" / f"anchors-{sha}"
        if not folder.exists():
            suite.save(folder)
        return sha

    def load_anchors(self, sha: str) -> AnchorSuite:
        from adapters.anchors import AnchorSuiteError

        try:
            suite = AnchorSuite.load(self.root / "batches" / f"anchors-{sha}")
        except AnchorSuiteError as err:
            raise AuditError(str(err)) from None
        if suite.content_hash() != sha:
            raise AuditError(f"anchors-{sha}: contents do not match their hash")
        return suite

    def keep_state(self, state: dict[str, torch.Tensor] | None, checksum: str | None) -> None:
        if state is None or checksum is None:
            return
        path = self.root / "states" / f"{checksum}.safetensors"
        if not path.exists():
            save_file({k: v.contiguous() for k, v in state.items()}, str(path))

    def load_state(self, checksum: str | None) -> dict[str, torch.Tensor] | None:
        if checksum is None:
            return None
        path = self.root / "states" / f"{checksum}.safetensors"
        try:
            return load_file(str(path))
        except Exception as err:  # safetensors raises several types on a bad file
            raise AuditError(f"{path}: cannot read adapter state ({err})") from None

    def keep_base(self, base: Forecaster) -> str:
        sha = base_checksum(base)
        folder = self.root / "base" / sha
        if not folder.exists():
            save_forecaster(base, folder)
        return sha

    def load_base(self, sha: str) -> Forecaster:
        try:
            base = load_forecaster(self.root / "base" / sha)
        except (OSError, ValueError, KeyError, RuntimeError) as err:
            raise AuditError(f"base/{sha}: cannot load base forecaster ({err})") from None
        if base_checksum(base) != sha:
            raise AuditError(f"base/{sha}: contents do not match their checksum")
        return base

    # -- records ----------------------------------------------------------------------------
    def _lines(self) -> list[bytes]:
        path = self.root / RECORDS
        if not path.exists():
            return []
        return [ln for ln in path.read_bytes().splitlines() if ln.strip()]

    def append(self, record: dict[str, Any]) -> dict[str, Any]:
        """Give the record its id, sequence and chain hash, append it and fsync; returns it."""
        lines = self._lines()
        seq = len(lines) + 1
        prev = hashlib.sha256(lines[-1]).hexdigest() if lines else None
        full = {"id": f"{seq:06d}", "seq": seq, "ts": datetime.now(UTC).isoformat(),
                "prev_sha256": prev, **record}
        line = json.dumps(full, sort_keys=True, default=str).encode() + b"\n"
        path = self.root / RECORDS
        fresh = not path.exists()
        with path.open("ab") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        if fresh:
            fsync_dir(self.root)
        if self.on_append is not None:
            self.on_append(full)
        return full

    def records(self) -> list[dict[str, Any]]:
        """All records, oldest first."""
        return [json.loads(ln) for ln in self._lines()]

    def get(self, record_id: str) -> dict[str, Any]:
        """One record by id (leading zeros optional); AuditError if absent."""
        want = record_id.lstrip("0") or "0"
        for rec in self.records():
            if rec["id"].lstrip("0") == want:
                return rec
        raise AuditError(f"no audit record {record_id!r}")

    def chain_ok(self) -> bool:
        """True when every record's prev_sha256 matches the line before it."""
        prev = None
        for ln in self._lines():
            if json.loads(ln).get("prev_sha256") != prev:
                return False
            prev = hashlib.sha256(ln).hexdigest()
        return True


def verify(log: AuditLog, record_id: str) -> dict[str, Any]:
    """Re-run a recorded cycle from its kept inputs and compare checksum and decision.

    The update (and so the adapter checksum and the anchor figures) is recomputed; the figures
    that come from the daemon's replay slices (drift_mse, mdd, violations) are taken from the
    record, and the recorded gate policy is applied again to the recomputed candidate."""
    rec = log.get(record_id)
    if rec.get("kind", "candidate") != "candidate":
        raise AuditError(f"record {rec['id']} is a {rec.get('kind')} record, not a candidate")
    device = select_device()
    out: dict[str, Any] = {"id": rec["id"], "recorded_decision": rec.get("decision"),
                           "recorded_checksum": rec.get("adapter_checksum"),
                           "device": device.type, "recorded_device": rec.get("device")}
    if rec.get("device") and rec["device"] != device.type:
        return {**out, "ok": False,
                "reason": f"recorded on {rec['device']}, this machine runs {device.type}"}
    base = log.load_base(rec["base_checksum"])
    drift = log.load_drift(rec["drift_batch_hash"])
    anchors = log.load_anchors(rec["anchor_suite_hash"])
    init = log.load_state(rec.get("init_checksum"))
    settings = UpdateSettings(**rec["settings"])
    try:
        if rec.get("full_window_hash"):
            check_window(log.load_drift(rec["full_window_hash"]), settings.max_abs_target_z)
        if rec.get("matched"):
            result, _naive = run_matched(base, init, drift, anchors, settings)
        else:
            result = run_update(base, init, drift, anchors, settings, device=device)
    except UpdateError as err:
        same = rec.get("error") == str(err) and rec.get("decision") == "reject"
        return {**out, "ok": same, "checksum": None, "decision": "reject", "error": str(err),
                "checksum_match": rec.get("adapter_checksum") is None,
                "decision_match": rec.get("decision") == "reject"}
    candidate = dict(rec.get("candidate_metrics") or {})
    candidate["stress_mse"] = result.stress_mse
    policy = GatePolicy(**rec["policy"])
    decision = evaluate(candidate, rec.get("baseline_metrics") or {}, policy)
    checksum_match = result.checksum == rec.get("adapter_checksum")
    decision_match = decision.decision == rec.get("gate_decision", rec.get("decision"))
    return {**out, "ok": checksum_match and decision_match, "checksum": result.checksum,
            "decision": decision.decision, "reason": decision.reason,
            "checksum_match": checksum_match, "decision_match": decision_match,
            "stress_mse": result.stress_mse, "recorded_stress_mse":
            (rec.get("candidate_metrics") or {}).get("stress_mse")}
