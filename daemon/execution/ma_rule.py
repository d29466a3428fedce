"""MovingAverageCrossover: the stand-in strategy with the Pipeline's `decide`/`check` methods.

Long `size` contracts while the fast simple moving average of the close is above the slow one,
short `size` while it is below (flat while they are equal), so the target changes exactly at
a crossover. `check` applies only the kill switch and the news embargo; the Pipeline replaces
this with the full risk gate.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from daemon.bars.model import Bar
from daemon.errors import AnchordError
from daemon.intent import OrderIntent
from daemon.pipeline.decision import Decision
from daemon.risk import RiskState


@dataclass(frozen=True)
class Verdict:
    """The risk gate's answer for one intent."""

    accepted: bool
    reason: str


class MovingAverageCrossover:
    """Target +size / -size / 0 from a fast and a slow simple moving average of the close."""

    def __init__(self, fast: int, slow: int, size: int, risk: RiskState) -> None:
        if not 1 <= fast < slow:
            raise AnchordError(f"ma_crossover: need 1 <= fast < slow, got {fast}, {slow}")
        if size < 1:
            raise AnchordError(f"ma_crossover: size must be >= 1, got {size}")
        self.fast, self.slow, self.size = fast, slow, size
        self.risk = risk
        self.closes: deque[float] = deque(maxlen=slow)

    def decide(self, bar: Bar) -> Decision | None:
        """The target after `bar`, or None until `slow` bars have been seen."""
        self.closes.append(bar.close)
        if len(self.closes) < self.slow:
            return None
        closes = list(self.closes)
        fast = sum(closes[-self.fast:]) / self.fast
        slow = sum(closes) / self.slow
        edge = (fast - slow) / slow
        target = self.size if fast > slow else -self.size if fast < slow else 0
        return Decision(bar=bar, target_position=target, p_up=1.0 if edge > 0 else 0.0,
                        edge=edge, forecast=fast, reason=f"sma{self.fast}-sma{self.slow}")

    def check(self, intent: OrderIntent, bar: Bar) -> Verdict:
        """Kill switch and news embargo only."""
        if self.risk.kill_switch:
            return Verdict(False, "kill_switch")
        if self.risk.embargo_active(bar.ts):
            return Verdict(False, "news_embargo")
        return Verdict(True, "ok")
