"""Which strategy the Trader runs: the model pipeline (attached first) or the moving-average
rule, warmed on the bars before a resumed replay's cursor."""

from __future__ import annotations

from typing import Any

from daemon.bars.model import BarRejected, BarValidator
from daemon.errors import AnchordError
from daemon.execution.ma_rule import MovingAverageCrossover


def choose_strategy(daemon: Any) -> Any:
    """The strategy `[execution].strategy` names (an AnchordError if it cannot run)."""
    ex = daemon.cfg.execution
    if ex.strategy == "ma_crossover":
        rule = MovingAverageCrossover(ex.ma_fast, ex.ma_slow, ex.ma_size)
        warm_up(rule, daemon)
        return rule
    pipeline = getattr(daemon, "pipeline", None)
    if pipeline is None:
        raise AnchordError('[execution].strategy = "pipeline" but no pipeline is attached '
                           '(attach_pipeline must run before attach_execution; or set '
                           'strategy = "ma_crossover")')
    return pipeline


def warm_up(rule: MovingAverageCrossover, daemon: Any) -> None:
    """A resumed replay feeds the bars before its cursor to the rule (no orders), so its
    averages are the same as in an uninterrupted run."""
    cursor = getattr(daemon.ingest, "cursor", None)
    if cursor is None or not cursor.start:
        return
    validator = BarValidator()
    for raw in daemon.ingest.data.rows[max(0, cursor.start - 4 * rule.slow):cursor.start]:
        try:
            rule.observe(validator.check(raw, daemon.cfg.data.contract))
        except (BarRejected, ValueError, TypeError):
            continue
