"""MovingAverageCrossover: the stand-in strategy with the Pipeline's `decide`/`check` methods.

Long `size` contracts while the fast simple moving average of the close is above the slow one,
short `size` while it is below (flat while they are equal), so the target changes exactly at
a crossover. Like the Pipeline, it decides a target and keeps no book; its intents go through
the one gate every strategy's intents go through (`check` hands them to the judge it is given).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from daemon.bars.model import Bar
from daemon.errors import AnchordError
from daemon.intent import OrderIntent
from daemon.pipeline.decision import Decision
from daemon.risk import Verdict


class MovingAverageCrossover:
    """Target +size / -size / 0 from a fast and a slow simple moving average of the close."""

    def __init__(self, fast: int, slow: int, size: int) -> None:
        if not 1 <= fast < slow:
            raise AnchordError(f"ma_crossover: need 1 <= fast < slow, got {fast}, {slow}")
        if size < 1:
            raise AnchordError(f"ma_crossover: size must be >= 1, got {size}")
        self.fast, self.slow, self.size = fast, slow, size
        self.closes: deque[float] = deque(maxlen=slow)

    def observe(self, bar: Bar) -> None:
        """Take one bar into the averages without deciding (warm-up)."""
        self.closes.append(bar.close)

    def decide(self, bar: Bar, position: int = 0) -> Decision | None:
        """The target after `bar`, or None until `slow` bars have been seen (`position`, the
        basis, does not change this rule's target)."""
        self.observe(bar)
        if len(self.closes) < self.slow:
            return None
        closes = list(self.closes)
        fast = sum(closes[-self.fast:]) / self.fast
        slow = sum(closes) / self.slow
        edge = (fast - slow) / slow
        target = self.size if fast > slow else -self.size if fast < slow else 0
        return Decision(bar=bar, target_position=target, p_up=1.0 if edge > 0 else 0.0,
                        edge=edge, forecast=fast, reason=f"sma{self.fast}-sma{self.slow}")

    def check(self, intent: OrderIntent, bar: Bar,
              judge: Callable[[OrderIntent, Bar], Verdict]) -> Verdict:
        """The gate's verdict on `intent` (`judge` is the daemon's one gate)."""
        return judge(intent, bar)
