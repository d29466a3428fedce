"""The one pre-trade gate every strategy's live intents go through.

It builds what the pure gate (daemon/risk.py `gate`) needs from the one book: the ledger's
trading-day P&L and mismatch, the exchange calendar's session, the orders accepted in the last
minute (market time), the previous bar's close; then judges the intent against `[limits]` and
the risk state. A denial is counted, logged and journalled once, here, whatever the strategy.
The shadow book's intents are judged by the same rules against the shadow book's own figures
(`check_shadow`), with no side effects, so they never feed the live gate.

Its own state (recent orders, the previous close) is committed with each bar.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import orjson

from daemon.bars.model import Bar
from daemon.execution.ledger import Ledger
from daemon.intent import OrderIntent
from daemon.risk import POSITION_MISMATCH, MarketView, RiskLimits, RiskState, Verdict, gate
from daemon.store import Store
from daemon.timeutil import iso, parse_utc
from daemon.trading_calendar import TradingCalendar

STATE_KEY = "gatekeeper"
_MINUTE = timedelta(seconds=60)


class Gatekeeper:
    """Judges intents against the risk state, `[limits]`, the calendar and the ledger."""

    def __init__(self, *, risk: RiskState, limits: Callable[[], RiskLimits], ledger: Ledger,
                 calendar: TradingCalendar, contract: str,
                 now: Callable[[datetime], datetime],
                 store: Store, log: Any, metrics: Any = None) -> None:
        self.risk = risk
        self.limits = limits
        self.ledger = ledger
        self.calendar = calendar
        self.contract = contract
        self.now = now
        self.store = store
        self.log = log
        self.metrics = metrics
        self.recent: deque[datetime] = deque()  # market times of accepted live intents
        self.last_close = math.nan  # the close of the bar before the current one
        self._close = math.nan
        raw = store.bar_state(STATE_KEY)
        if raw is not None:
            state = orjson.loads(raw)
            self.recent = deque(parse_utc(t) for t in state["recent"])
            self.last_close = _float(state["last_close"])
            self._close = _float(state["close"])
        store.bar_writers[STATE_KEY] = self.snapshot

    def snapshot(self) -> bytes:
        return orjson.dumps({"recent": [iso(t) for t in self.recent],
                             "last_close": None if math.isnan(self.last_close)
                             else self.last_close,
                             "close": None if math.isnan(self._close) else self._close})

    def on_bar(self, bar: Bar) -> None:
        """A new bar: its predecessor's close becomes the price-deviation reference."""
        self.last_close, self._close = self._close, float(bar.close)

    def orders_last_minute(self, now: datetime) -> int:
        """Live intents accepted in the 60 s before `now` (older ones are dropped, and all
        of them when the market went back: a replay that starts over)."""
        if self.recent and self.recent[-1] > now:
            self.recent.clear()
        cutoff = now - _MINUTE
        while self.recent and self.recent[0] <= cutoff:
            self.recent.popleft()
        return len(self.recent)

    def market_view(self, bar_ts: datetime, daily_pnl: float | None = None,
                    with_orders: bool = True) -> MarketView:
        """What the gate sees for an intent of the bar of `bar_ts` (the ledger's figures
        unless `daily_pnl` is given)."""
        now = self.now(bar_ts)
        mismatch = self.ledger.mismatch
        pnl = self.ledger.day_pnl(self.contract, now) if daily_pnl is None else daily_pnl
        return MarketView(now, bar_ts, self.last_close if math.isfinite(self.last_close)
                          else 0.0, pnl, self.orders_last_minute(now) if with_orders else 0,
                          market_open=self.calendar.is_open(now),
                          blocked=POSITION_MISMATCH if mismatch else "",
                          block_all=bool(mismatch and mismatch.blocks_all))

    def check(self, intent: OrderIntent, bar: Bar) -> Verdict:
        """Judge a live intent of `bar`; an accepted one counts toward the orders per
        minute, a denied one is counted, logged and journalled."""
        return self.check_at(intent, bar.ts)

    def check_at(self, intent: OrderIntent, bar_ts: datetime) -> Verdict:
        """`check` for an intent of the bar of `bar_ts` (also one found PENDING at start)."""
        market = self.market_view(bar_ts)
        verdict = gate(intent, self.risk.snapshot(), self.limits(), market)
        if verdict.accepted:
            self.recent.append(market.now)
            if self.metrics is not None:
                self.metrics.risk_accepts.inc()
            return verdict
        fields = {"reason": verdict.reason, "intent_id": intent.intent_id,
                  "side": int(intent.side), "size": intent.size,
                  "target_position": intent.target_position, "bar_ts": bar_ts.isoformat(),
                  "daily_pnl": round(market.daily_pnl, 2)}
        if self.metrics is not None:
            self.metrics.risk_denials.labels(reason=verdict.reason).inc()
        self.log.warning("risk_denied", **fields)
        self.store.journal_bar("deny", bar_ts, fields)
        return verdict

    def check_shadow(self, intent: OrderIntent, bar: Bar, daily_pnl: float) -> Verdict:
        """Judge a shadow-book intent by the same rules on the shadow book's P&L (no side
        effects)."""
        return gate(intent, self.risk.snapshot(), self.limits(),
                    self.market_view(bar.ts, daily_pnl, with_orders=False))


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)
