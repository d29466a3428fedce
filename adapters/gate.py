"""The promotion gate and the post-promotion monitor: pure policy over plain numbers.

Gate (all must hold; baselines are the deployed model's figures on the same slices in the same
cycle): stress_mse ≤ stress_mse_limit, drift_mse ≤ drift_mse_baseline·(1+delta),
mdd ≥ mdd_baseline − tolerance (mdd ≤ 0: a drawdown), violations ≤ violations_baseline.
A NaN or missing figure makes the decision `hold` (inconclusive: neither promote nor reject).
Recorded but not gating: worst stress-day return, output drift, attribution shift.

Monitor (after a promotion, on fresh bars): roll back at once on a stress-regression breach
(cumulative, against the base teacher cache), a tail-risk breach, a violation spike or an
unexplained output shift.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

PROMOTE, REJECT, HOLD = "promote", "reject", "hold"


@dataclass(frozen=True)
class GatePolicy:
    """`[promotion]`: thresholds of the gate and of the rollback monitor."""

    stress_mse_limit: float = 0.02
    delta: float = 0.0
    tolerance: float = 0.0
    rollback_stress_mse: float = 0.05
    rollback_tail_tolerance: float = 0.02
    rollback_violation_spike: int = 2
    rollback_output_shift: float = 3.0

    @classmethod
    def from_mapping(cls, raw: dict[str, Any]) -> GatePolicy:
        """Pick this dataclass's keys out of a larger mapping (e.g. the `[promotion]` section)."""
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in raw.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GateDecision:
    """The gate's verdict with every check (value, threshold, baseline, ok)."""

    decision: str
    reason: str
    checks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.decision == PROMOTE

    def to_dict(self) -> dict[str, Any]:
        return {"decision": self.decision, "reason": self.reason, "checks": self.checks}


def _bad(x: Any) -> bool:
    return x is None or (isinstance(x, float) and not math.isfinite(x))


def evaluate(candidate: dict[str, Any], baseline: dict[str, Any],
             policy: GatePolicy) -> GateDecision:
    """Apply the gate to a candidate's figures and the deployed model's figures."""
    rows = [
        ("stress_mse", candidate.get("stress_mse"), None, policy.stress_mse_limit, "<="),
        ("drift_mse", candidate.get("drift_mse"), baseline.get("drift_mse"),
         None if _bad(baseline.get("drift_mse")) else
         baseline["drift_mse"] * (1 + policy.delta), "<="),
        ("mdd", candidate.get("mdd"), baseline.get("mdd"),
         None if _bad(baseline.get("mdd")) else baseline["mdd"] - policy.tolerance, ">="),
        ("violations", candidate.get("violations"), baseline.get("violations"),
         baseline.get("violations"), "<="),
    ]
    checks, failed, missing = [], [], []
    for name, value, base, threshold, op in rows:
        if _bad(value) or _bad(threshold):
            missing.append(name)
            ok = None
        else:
            ok = bool(value <= threshold) if op == "<=" else bool(value >= threshold)
            if not ok:
                failed.append(f"{name} {value:.6g} {'>' if op == '<=' else '<'} "
                              f"{threshold:.6g}")
        checks.append({"name": name, "value": value, "baseline": base,
                       "threshold": threshold, "op": op, "ok": ok})
    if failed:
        return GateDecision(REJECT, "; ".join(failed), checks)
    if missing:
        return GateDecision(HOLD, f"inconclusive: no figure for {', '.join(missing)}", checks)
    return GateDecision(PROMOTE, "all gate checks passed", checks)


def monitor_breach(live: dict[str, Any], reference: dict[str, Any],
                   policy: GatePolicy) -> str | None:
    """The rollback reason when a promoted model's fresh figures breach the monitor policy,
    else None. `live` is the promoted model's figures, `reference` those of the previous
    (warm) model on the same bars plus `gate_output_drift` (the output drift the gate saw)."""
    stress = live.get("stress_mse_base")
    if not _bad(stress) and stress > policy.rollback_stress_mse:
        return (f"stress-regression breach: stress_mse vs base cache {stress:.6g} > "
                f"{policy.rollback_stress_mse:.6g}")
    wr, wr_ref = live.get("worst_day_return"), reference.get("worst_day_return")
    if not _bad(wr) and not _bad(wr_ref) and wr < wr_ref - policy.rollback_tail_tolerance:
        return (f"tail-risk breach: worst day return {wr:.6g} < previous model's "
                f"{wr_ref:.6g} - {policy.rollback_tail_tolerance:.6g}")
    mdd, mdd_ref = live.get("mdd"), reference.get("mdd")
    if not _bad(mdd) and not _bad(mdd_ref) and mdd < mdd_ref - policy.rollback_tail_tolerance:
        return (f"tail-risk breach: max drawdown {mdd:.6g} < previous model's {mdd_ref:.6g} - "
                f"{policy.rollback_tail_tolerance:.6g}")
    v, v_ref = live.get("violations"), reference.get("violations")
    if not _bad(v) and not _bad(v_ref) and v > v_ref + policy.rollback_violation_spike:
        return (f"violation spike: {v} > previous model's {v_ref} + "
                f"{policy.rollback_violation_spike}")
    shift, seen = live.get("output_drift"), reference.get("gate_output_drift")
    if not _bad(shift) and not _bad(seen) and shift > policy.rollback_output_shift * max(
            seen, 1e-12):
        return (f"unexplained output shift: output drift {shift:.6g} > "
                f"{policy.rollback_output_shift:g} x the gate's {seen:.6g}")
    return None
