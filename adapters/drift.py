"""Update triggers: a schedule (every N bars) or a drift detector, with a minimum spacing.

Pure state machines fed one number per bar; no I/O, no clock.
- `PageHinkley` on squared forecaster residuals (normalised by the output scale): fires when the
  cumulative excess of the residual over its running mean, minus an allowance `delta`, rises
  more than `threshold` above its running minimum (a sustained increase in error).
- `Trigger` combines it with the schedule and enforces `min_spacing_bars` between updates;
  `Trigger.signal(name)` takes a drift signal from outside (the daemon's calibration monitor,
  which owns the ECE, reports `ece_drift` through it), held until the spacing allows a cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PageHinkley:
    """Page–Hinkley test for an upward shift in the mean of a stream."""

    delta: float = 0.05
    threshold: float = 5.0
    warmup: int = 30
    n: int = 0
    mean: float = 0.0
    cum: float = 0.0
    cum_min: float = 0.0

    def update(self, x: float) -> bool:
        """Feed one value; True when a shift is detected (the test then restarts)."""
        self.n += 1
        self.mean += (x - self.mean) / self.n
        self.cum += x - self.mean - self.delta
        self.cum_min = min(self.cum_min, self.cum)
        if self.n >= self.warmup and self.cum - self.cum_min > self.threshold:
            self.reset()
            return True
        return False

    def reset(self) -> None:
        self.n, self.mean, self.cum, self.cum_min = 0, 0.0, 0.0, 0.0


@dataclass
class Trigger:
    """Decides, bar by bar, whether an update cycle should start.

    mode: "schedule" (every `every_n_bars`), "drift" (Page–Hinkley on residuals, plus drift
    signals from outside such as the calibration monitor's `ece_drift`) or "both".
    Nothing fires before `window_bars` labelled rows exist or within `min_spacing_bars` of the
    previous cycle; a drift detected meanwhile stays pending until then."""

    mode: str = "schedule"
    every_n_bars: int = 60
    min_spacing_bars: int = 20
    window_bars: int = 120
    detector: PageHinkley = field(default_factory=PageHinkley)
    bars: int = 0
    last_fire: int | None = None
    pending_drift: bool = False
    pending_signal: str | None = None

    def signal(self, name: str) -> bool:
        """A drift signal from outside (e.g. "ece_drift"): the next `on_bar` that the spacing
        allows fires with `name` as the reason. Ignored (False) in "schedule" mode."""
        if self.mode not in ("drift", "both"):
            return False
        if self.pending_signal is None:
            self.pending_signal = name
        return True

    def on_bar(self, residual: float | None = None, scale: float = 1.0) -> str | None:
        """Feed one labelled bar (its forecaster residual, if known); returns the trigger reason
        ("schedule" / "drift" / a signal's name) when a cycle should start now, else None."""
        self.bars += 1
        if residual is not None and self.mode in ("drift", "both"):
            z2 = (residual / scale) ** 2 if scale > 0 else residual ** 2
            if self.detector.update(z2):
                self.pending_drift = True
        if self.bars < self.window_bars:
            return None
        since = self.bars - (self.last_fire if self.last_fire is not None else 0)
        if self.last_fire is not None and since < self.min_spacing_bars:
            return None
        reason = None
        if self.pending_drift:
            reason = "drift"
        elif self.pending_signal is not None:
            reason = self.pending_signal
        elif self.mode in ("schedule", "both") and since >= self.every_n_bars:
            reason = "schedule"
        if reason is not None:
            self.last_fire = self.bars
            self.pending_drift = False
            self.pending_signal = None
        return reason
