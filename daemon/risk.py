"""RiskState: the kill switch and the news embargo (the pre-trade gate builds on a snapshot).

RiskState is plain data plus the rules that change it; persistence goes through the store, so a
kill switch engaged by signal, ctl or config survives a restart and only `resume` releases it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from daemon.store import Store


@dataclass(frozen=True)
class RiskSnapshot:
    """An immutable view of RiskState for one decision (what the gate sees)."""

    kill_switch: bool
    kill_reason: str
    news_marks: tuple[datetime, ...]
    embargo_before: timedelta
    embargo_after: timedelta

    def in_embargo(self, at: datetime) -> bool:
        """True when `at` lies within [news - before, news + after] of any news mark."""
        return any(m - self.embargo_before <= at <= m + self.embargo_after
                   for m in self.news_marks)


@dataclass
class RiskState:
    """The live risk state. Mutations are persisted immediately when a store is attached."""

    kill_switch: bool = False
    kill_reason: str = ""
    news: list[datetime] = field(default_factory=list)
    embargo_before: timedelta = timedelta(minutes=15)
    embargo_after: timedelta = timedelta(minutes=15)
    store: Store | None = None

    @classmethod
    def load(cls, store: Store, before_min: float, after_min: float) -> RiskState:
        """The persisted state (kill switch, news marks) with the configured embargo window."""
        on, reason = store.load_kill_switch()
        return cls(kill_switch=on, kill_reason=reason, news=store.news_marks(),
                   embargo_before=timedelta(minutes=before_min),
                   embargo_after=timedelta(minutes=after_min), store=store)

    def engage_kill(self, reason: str, at: datetime) -> bool:
        """Engage the kill switch (persisted before returning). True if it was off before."""
        was_off = not self.kill_switch
        if self.store is not None:
            self.store.save_kill_switch(True, reason, at)
        self.kill_switch, self.kill_reason = True, reason
        return was_off

    def release_kill(self, at: datetime) -> bool:
        """Release the kill switch (only `anchord ctl resume` calls this). True if it was on."""
        was_on = self.kill_switch
        if self.store is not None:
            self.store.save_kill_switch(False, "", at)
        self.kill_switch, self.kill_reason = False, ""
        return was_on

    def mark_news(self, ts: datetime, source: str = "ctl") -> None:
        """Record a news event: orders are embargoed around `ts`."""
        if self.store is not None:
            self.store.add_news_mark(ts, source)
        if ts not in self.news:
            self.news.append(ts)
            self.news.sort()

    def set_embargo(self, before_min: float, after_min: float) -> None:
        self.embargo_before = timedelta(minutes=before_min)
        self.embargo_after = timedelta(minutes=after_min)

    def snapshot(self) -> RiskSnapshot:
        return RiskSnapshot(self.kill_switch, self.kill_reason, tuple(self.news),
                            self.embargo_before, self.embargo_after)

    def embargo_active(self, at: datetime) -> bool:
        return self.snapshot().in_embargo(at)
