"""Execution's metrics and the canary's monitors: final order states, unknown outcomes, the
canary step and the trading flag; p99 latency and ANN recall from the pipeline."""

from __future__ import annotations

from typing import Any


def canary_monitors(daemon: Any) -> tuple[float | None, float | None]:
    """(p99 latency ms, ANN recall) from `daemon.canary_monitors` if the pipeline set it."""
    source = getattr(daemon, "canary_monitors", None)
    if source is None:
        return None, None
    try:
        return source()
    except Exception:  # a monitor must never break a bar
        return None, None


def wire_metrics(execution: Any, metrics: Any) -> None:
    """Count final orders and set the canary/trading gauges after every bar."""
    def on_final(rec: Any) -> None:
        state = rec.state.value if rec.state.value != "RESOLVED" else f"RESOLVED_{rec.outcome}"
        metrics.orders_final.labels(state=state).inc()
        if rec.state.value == "RESOLVED" or rec.attempts > 1:
            metrics.orders_unknown.inc()

    execution.outbox.on_final.append(on_final)
    execution.on_bar_done.append(lambda: (
        metrics.canary_step.set(execution.trader.step_pct),
        metrics.trading.set(int(execution.phase == "trading"))))
