"""The canary: which intents go live, and when the live fraction steps up or back.

Pure logic over plain data. An intent goes live when its id's bucket (a number in [0, 100)
taken from the id's hex digits) lies below the current step's percentage, so the same intent
is always routed the same way at the same step, and a larger step keeps every intent a smaller
step sent live.

Health is judged per window of `window_bars` bars: healthy = no submit errors, a risk-block
rate within `max_risk_block_rate`, p99 latency within `max_p99_latency_ms` and ANN recall at or
above `min_ann_recall` (the last two only when a measurement is given). After
`healthy_windows` healthy windows in a row the step goes up; an unhealthy window steps back
and says why. In a replay only what does not depend on venue timing counts: definitive
rejections are submit errors, lost answers (timeouts, 5xx, resets) and latency are not.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CanaryPolicy:
    """The [canary] settings the logic needs."""

    steps: tuple[int, ...] = (5, 25, 50, 100)
    healthy_windows: int = 2
    window_bars: int = 50
    max_risk_block_rate: float = 0.5
    max_p99_latency_ms: float = 50.0
    min_ann_recall: float = 0.9


@dataclass(frozen=True)
class CanaryState:
    """Where the canary stands (persisted) and the counts of the current window."""

    step_index: int = 0
    streak: int = 0  # healthy windows in a row at this step
    bars: int = 0
    intents: int = 0
    risk_blocks: int = 0
    submit_errors: int = 0
    timing_errors: int = 0  # errors that depend on venue timing (ignored in a replay)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CanaryState:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: int(v) for k, v in d.items() if k in names})


@dataclass(frozen=True)
class WindowVerdict:
    """The end of one health window: healthy or not, why, and the step before and after."""

    healthy: bool
    reason: str
    step_pct_before: int
    step_pct: int


def bucket(intent_id: str) -> float:
    """The intent's routing bucket in [0, 100), a pure function of its id."""
    return int(intent_id[:8], 16) % 10_000 / 100.0


def step_pct(state: CanaryState, policy: CanaryPolicy) -> int:
    return policy.steps[min(state.step_index, len(policy.steps) - 1)]


def is_live(intent_id: str, pct: float) -> bool:
    """True when an intent goes live at a step of `pct` percent."""
    return pct >= 100 or bucket(intent_id) < pct


def clamp(state: CanaryState, policy: CanaryPolicy) -> CanaryState:
    """`state` with its step index inside the policy's steps (after a config change)."""
    index = max(0, min(state.step_index, len(policy.steps) - 1))
    return state if index == state.step_index else dataclasses.replace(state, step_index=index)


def count_intent(state: CanaryState, *, risk_blocked: bool) -> CanaryState:
    """Count one intent of the window (and whether the risk gate blocked it)."""
    return dataclasses.replace(state, intents=state.intents + 1,
                               risk_blocks=state.risk_blocks + int(risk_blocked))


def count_submit_error(state: CanaryState, *, timing_dependent: bool) -> CanaryState:
    """Count a submit error: a definitive rejection, or a lost answer (timing-dependent)."""
    if timing_dependent:
        return dataclasses.replace(state, timing_errors=state.timing_errors + 1)
    return dataclasses.replace(state, submit_errors=state.submit_errors + 1)


def judge(state: CanaryState, policy: CanaryPolicy, *, replay: bool,
          p99_latency_ms: float | None = None, ann_recall: float | None = None) -> str:
    """Why the window is unhealthy ("" when it is healthy)."""
    problems = []
    errors = state.submit_errors + (0 if replay else state.timing_errors)
    if errors:
        problems.append(f"{errors} submit error(s)")
    if state.intents:
        rate = state.risk_blocks / state.intents
        if rate > policy.max_risk_block_rate:
            problems.append(f"risk-block rate {rate:.2f} > {policy.max_risk_block_rate:g}")
    if not replay and p99_latency_ms is not None and p99_latency_ms > policy.max_p99_latency_ms:
        problems.append(f"p99 latency {p99_latency_ms:.1f} ms > {policy.max_p99_latency_ms:g}")
    if ann_recall is not None and ann_recall < policy.min_ann_recall:
        problems.append(f"ANN recall {ann_recall:.3f} < {policy.min_ann_recall:g}")
    return "; ".join(problems)


def end_bar(state: CanaryState, policy: CanaryPolicy, *, replay: bool,
            p99_latency_ms: float | None = None, ann_recall: float | None = None
            ) -> tuple[CanaryState, WindowVerdict | None]:
    """Count a bar; at the end of a window judge it and step up, hold or step back."""
    state = dataclasses.replace(clamp(state, policy), bars=state.bars + 1)
    if state.bars < policy.window_bars:
        return state, None
    before = step_pct(state, policy)
    problem = judge(state, policy, replay=replay, p99_latency_ms=p99_latency_ms,
                    ann_recall=ann_recall)
    last = len(policy.steps) - 1
    if problem:
        index, streak = max(0, state.step_index - 1), 0
        reason = problem + ("; stepping back" if index < state.step_index else "; at lowest step")
    else:
        streak = state.streak + 1
        index = state.step_index
        if streak >= policy.healthy_windows and index < last:
            index, streak = index + 1, 0
            reason = "healthy; stepping up"
        else:
            reason = "healthy"
    new = CanaryState(step_index=index, streak=streak)
    return new, WindowVerdict(not problem, reason, before, step_pct(new, policy))
