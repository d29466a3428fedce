"""The Trader: the bar handler that turns a strategy's decisions into orders.

Per bar: the ledger is marked at the bar's close; the basis is the ledger's position plus what
our orders may still fill (the outbox's working position), so an order the venue may still
fill is never sent twice; `decision = strategy.decide(bar, basis)`; the intent that moves the
basis to the target goes through the canary (an intent that only reduces exposure always goes
live; the canary limits new risk) and the one gate (daemon/execution/gatekeeper.py); accepted
live intents go to the submitter. The shadow book (a paper position that follows every
decision, marked on the same bars) takes the same decision through the same rules on its own
figures and never feeds the live gate. Resting limit orders older than `[execution].
limit_ttl_bars` bars are cancelled before the decision.

In a replay with `pace = 0` the handler returns only when this bar's orders are final and the
venue's fills and order ends are in the ledger (and the ledger is checked against the venue's
position), so the next bar never depends on the venue's timing; live, that sync is requested
and runs beside the bars.

The Trader's state (canary, shadow book, bar count, resting orders' ages) is committed with
each bar (`Store.commit_bar`), like its journal records: `bar` (close, position, equity,
shadow_position, shadow_equity, canary_pct), `order`, and `canary` per health window.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson

from daemon.bars.model import Bar
from daemon.execution import canary as cn
from daemon.execution.gatekeeper import Gatekeeper
from daemon.execution.ledger import Ledger
from daemon.execution.order_states import OutboxRecord, State, make_tag
from daemon.execution.submitter import Submitter
from daemon.intent import OrderIntent, Side, intent_for_target
from daemon.risk import reduces_exposure
from daemon.store import Store

STATE_KEY = "trader"
LEGACY_META_KEY = "trader_state"  # where stores from before the bar commit kept it


@dataclass
class BookState:
    """What the Trader keeps across bars and restarts (committed with each bar)."""

    canary: cn.CanaryState
    bars: int = 0
    last_close: float | None = None
    shadow_position: int = 0
    shadow_equity: float = 0.0
    shadow_day: str = ""
    shadow_day_pnl: float = 0.0
    placed_at_bar: dict[str, int] = field(default_factory=dict)  # resting limit orders

    def to_json(self) -> bytes:
        return orjson.dumps({**vars(self), "canary": self.canary.to_dict()})

    @classmethod
    def from_json(cls, text: str | bytes | None) -> BookState:
        if not text:
            return cls(cn.CanaryState())
        d = orjson.loads(text)
        d["canary"] = cn.CanaryState.from_dict(d.get("canary") or {})
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class OrderPolicy:
    """How intents become orders (`[execution]`): market, or limit at `offset_ticks` from the
    bar's close (positive = passive: a buy below, a sell above), cancelled after `ttl_bars`."""

    order_type: str = "market"
    offset_ticks: int = 0
    ttl_bars: int = 1
    tick_size: Decimal = Decimal("0.25")

    def limit_price(self, side: Side, close: float) -> Decimal | None:
        if self.order_type != "limit":
            return None
        offset = self.tick_size * self.offset_ticks
        price = Decimal(repr(float(close))) + (offset if side == Side.SELL else -offset)
        return (price / self.tick_size).to_integral_value() * self.tick_size


class Trader:
    """The execution bar handler (register `on_bar` after the venue's and the pipeline's)."""

    def __init__(self, *, strategy: Any, submitter: Submitter, store: Store, ledger: Ledger,
                 gatekeeper: Gatekeeper, contract: str, instance_id: str,
                 epoch: Callable[[], int], policy: Callable[[], cn.CanaryPolicy],
                 orders: Callable[[], OrderPolicy], replay: bool,
                 wait_orders: Callable[[], bool], log: Any,
                 ready: Callable[[], Awaitable[bool]], refused: Callable[[], str],
                 settle: Callable[[], Awaitable[dict[str, Any]]], request_sync: Callable[[], None],
                 monitors: Callable[[], tuple[float | None, float | None]] | None = None,
                 alert: Callable[..., None] | None = None,
                 stale: Callable[[Bar], bool] | None = None,
                 after_bar: Callable[[], None] | None = None) -> None:
        self.strategy = strategy
        self.submitter = submitter
        self.outbox = submitter.outbox
        self.store = store
        self.ledger = ledger
        self.gatekeeper = gatekeeper
        self.contract = contract
        self.instance_id = instance_id
        self.epoch = epoch
        self.policy = policy
        self.orders = orders
        self.replay = replay
        self.wait_orders = wait_orders
        self.log = log
        self.ready = ready
        self.refused = refused
        self.settle = settle
        self.request_sync = request_sync
        self.monitors = monitors or (lambda: (None, None))
        self.alert = alert or (lambda *a, **k: None)
        self.stale = stale or (lambda bar: False)
        self.after_bar = after_bar or (lambda: None)
        saved = store.bar_state(STATE_KEY) or store.get_meta(LEGACY_META_KEY)
        self.state = BookState.from_json(saved)
        self.pending_errors: list[OutboxRecord] = []
        self.outbox.on_final.append(self._on_final)
        store.bar_writers[STATE_KEY] = self.state_json

    def state_json(self) -> bytes:
        return self.state.to_json()

    def tag_for(self, intent: OrderIntent) -> str:
        return make_tag(self.instance_id, self.epoch(), intent.intent_id)

    @property
    def step_pct(self) -> int:
        return cn.step_pct(self.state.canary, self.policy())

    def basis(self) -> int:
        """The position new intents are sized from: the ledger's, plus what our orders may
        still fill."""
        return self.ledger.position(self.contract) + self.outbox.working_position(self.contract)

    def _on_final(self, rec: OutboxRecord) -> None:
        if rec.state in (State.REJECTED, State.RESOLVED) or rec.attempts > 1:
            self.pending_errors.append(rec)

    async def on_bar(self, bar: Bar) -> None:
        """Handle one bar (see the module docstring)."""
        if not await self.ready():
            return  # stopping: no new orders; in-flight ones are left to reconciliation
        st = self.state
        st.bars += 1
        self.gatekeeper.on_bar(bar)
        self.ledger.mark(self.contract, bar.close, self.gatekeeper.now(bar.ts))
        self._mark_shadow(bar)
        await self._cancel_expired()
        decision = self.strategy.decide(bar, self.basis())
        tags: list[str] = []
        if decision is not None:
            target = int(decision.target_position)
            tags = self._live(bar, target, decision.reason)
            self._shadow(bar, target, decision.reason)
        checked: dict[str, Any] = {}
        if self.wait_orders():
            for tag in tags:
                await self.submitter.wait_final(tag)
            checked = await self.settle()
        elif tags:
            self.request_sync()
        self._count_errors()
        self._end_bar(bar, checked.get("venue_position") if checked.get("checked") else None)

    # -- the live book ---------------------------------------------------------------------
    def _live(self, bar: Bar, target: int, reason: str) -> list[str]:
        position = self.basis()
        side = Side.BUY if target > position else Side.SELL
        orders = self.orders()
        intent = intent_for_target(self.contract, bar.ts, position, target, bar.close, reason,
                                   orders.limit_price(side, bar.close))
        if intent is None:
            return []
        # The canary limits new risk; taking risk off always goes live.
        if not (reduces_exposure(position, target) or cn.is_live(intent.intent_id,
                                                                 self.step_pct)):
            return []
        if self.stale(bar):  # live warm-up on history: decide, but never trade an old bar
            return []
        verdict = self.strategy.check(intent, bar, self.gatekeeper.check)
        self.state.canary = cn.count_intent(self.state.canary, risk_blocked=not verdict.accepted)
        if not verdict.accepted:
            return []
        refused = self.refused()
        if refused:
            self.log.warning("intent_not_sent", intent_id=intent.intent_id, reason=refused)
            return []
        rec = self.submitter.enqueue(intent, self.tag_for(intent), self.epoch())
        if intent.limit_price is not None:
            self.state.placed_at_bar.setdefault(rec.tag, self.state.bars)
        self.store.journal_bar("order", bar.ts, {"tag": rec.tag, "side": int(intent.side),
                                                 "size": intent.size, "target": target,
                                                 "limit_price": intent.limit_price})
        return [rec.tag]

    async def _cancel_expired(self) -> None:
        """Cancel our resting orders placed `ttl_bars` or more bars ago (the rest of each is
        no longer what the strategy wants); their records end when the venue says so."""
        placed = self.state.placed_at_bar
        if not placed:
            return
        ttl = self.orders().ttl_bars
        due = []
        for tag, at_bar in list(placed.items()):
            rec = self.outbox.get(tag)
            if rec is None or not rec.open:
                placed.pop(tag, None)
            elif rec.accepted and self.state.bars - at_bar >= ttl:
                due.append(rec)
        for rec in due:
            if await self.submitter.cancel(rec, "limit_ttl"):
                placed.pop(rec.tag, None)
        if due and self.wait_orders():
            await self.settle()

    # -- the shadow book -------------------------------------------------------------------
    def _mark_shadow(self, bar: Bar) -> None:
        st = self.state
        day = self.ledger.calendar.trading_day(self.gatekeeper.now(bar.ts)).isoformat()
        if day != st.shadow_day:
            st.shadow_day, st.shadow_day_pnl = day, 0.0
        if st.last_close is not None:
            move = (bar.close - st.last_close) * self.ledger.book(self.contract).point_value
            st.shadow_equity += st.shadow_position * move
            st.shadow_day_pnl += st.shadow_position * move
        st.last_close = bar.close

    def _shadow(self, bar: Bar, target: int, reason: str) -> None:
        st = self.state
        intent = intent_for_target(self.contract, bar.ts, st.shadow_position, target, bar.close,
                                   reason)
        if intent is None:
            return
        if self.gatekeeper.check_shadow(intent, bar, st.shadow_day_pnl).accepted:
            st.shadow_position += intent.signed_size

    # -- canary and accounting ---------------------------------------------------------------
    def _count_errors(self) -> None:
        for rec in self.pending_errors:
            definitive = rec.state == State.REJECTED or (rec.state == State.RESOLVED
                                                         and rec.outcome == "rejected")
            self.state.canary = cn.count_submit_error(self.state.canary,
                                                      timing_dependent=not definitive)
        self.pending_errors.clear()

    def _end_bar(self, bar: Bar, venue_position: int | None = None) -> None:
        st = self.state
        policy = self.policy()
        p99, recall = self.monitors()
        if self.replay:
            p99 = None
        st.canary, verdict = cn.end_bar(st.canary, policy, replay=self.replay,
                                        p99_latency_ms=p99, ann_recall=recall)
        if verdict is not None:
            self.store.journal_bar("canary", bar.ts, {"step_pct": verdict.step_pct,
                                                      "healthy": verdict.healthy,
                                                      "reason": verdict.reason,
                                                      "step_pct_before":
                                                      verdict.step_pct_before})
            if verdict.healthy:
                self.log.info("canary_window", **vars(verdict))
            else:
                self.log.warning("canary_unhealthy", **vars(verdict))
                self.alert("canary", **vars(verdict))
        self.store.journal_bar("bar", bar.ts, {
            "close": bar.close, "position": self.ledger.position(self.contract),
            "working": self.outbox.working_position(self.contract),
            "in_flight": len(self.outbox.in_flight()),
            "equity": round(self.ledger.equity(self.contract), 6),
            "day_pnl": round(self.ledger.day_pnl(self.contract, self.gatekeeper.now(bar.ts)), 6),
            "shadow_position": st.shadow_position, "shadow_equity": round(st.shadow_equity, 6),
            "canary_pct": self.step_pct, "venue_position": venue_position})
        self.after_bar()

    def status(self) -> dict[str, Any]:
        """Canary step and books, for `anchord ctl status`."""
        c = self.state.canary
        return {"step_pct": self.step_pct, "step_index": c.step_index,
                "healthy_streak": c.streak, "window_bars": c.bars,
                "position": self.ledger.position(self.contract),
                "basis": self.basis(),
                "shadow_position": self.state.shadow_position,
                "equity": round(self.ledger.equity(self.contract), 2)}

