"""A small in-memory artifact set over real sample bars, shared by the pipeline tests."""

from __future__ import annotations

from functools import cache
from typing import Any

from daemon.bars.model import Bar
from daemon.intent import intent_for_target
from daemon.pipeline.pipeline import Pipeline, PipelineParams, load_bars
from daemon.risk import RiskLimits

N_BARS = 700


@cache
def sample_bars() -> tuple[Bar, ...]:
    return tuple(load_bars("sample:sp500", "CON.F.US.EP.Z26")[:N_BARS])


@cache
def small_set() -> Any:
    from daemon.bench.quickset import quick_artifact_set

    return quick_artifact_set(list(sample_bars()), kind="flat", scorer_iterations=30)


def make_pipeline(**params: Any) -> Pipeline:
    pipe = Pipeline(small_set(), PipelineParams(**params), RiskLimits())
    pipe.bars_provider = lambda: list(sample_bars())
    return pipe


def replay(pipe: Pipeline, bars: Any, on_bar: Any = None) -> list[tuple]:
    """Drive the pipeline like the Trader: decide, intent against the book, check."""
    out = []
    position = 0
    for i, bar in enumerate(bars):
        if on_bar is not None:
            on_bar(i)
        d = pipe.decide(bar, position)
        if d is not None:
            intent = intent_for_target(bar.contract, bar.ts, position, d.target_position,
                                       bar.close, d.reason)
            verdict = pipe.check(intent, bar) if intent is not None else None
            if verdict is not None and verdict.accepted:
                position = d.target_position
            out.append((bar.ts, d.model, d.forecast, d.p_up, d.target_position,
                        intent.intent_id if intent else None,
                        verdict.reason if verdict else None))
        pipe.after_bar()
    return out
