"""The Trader: the bar handler that turns a strategy's decisions into orders.

Per bar: `decision = strategy.decide(bar)`; for the live book (the outbox's expected
position) and the shadow book (a paper position that follows every decision) the intent
that moves the book to the target; the canary routes the live intent by its id; the strategy's
`check` (the risk gate) judges it; accepted live intents go to the submitter, the shadow intent
goes to the shadow book. In a replay with `pace = 0` the handler returns only when this bar's
orders are final, so the next bar never depends on the venue's timing.

Journal records per bar (`bar`: close, position, equity, shadow_position), per order
(`order`), per risk denial (`deny`) and per canary window (`canary`: step_pct, healthy, reason).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from daemon.bars.model import Bar
from daemon.execution import canary as cn
from daemon.execution.order_states import OutboxRecord, State, make_tag
from daemon.execution.submitter import Submitter
from daemon.intent import OrderIntent, intent_for_target
from daemon.store import Store

STATE_KEY = "trader_state"


@dataclass
class BookState:
    """What the Trader keeps across bars and restarts (persisted once per bar)."""

    canary: cn.CanaryState
    equity: float = 0.0
    last_close: float | None = None
    last_position: int = 0
    shadow_position: int = 0
    shadow_equity: float = 0.0
    last_bar_ts: str = ""

    def to_json(self) -> str:
        return orjson.dumps({**vars(self), "canary": self.canary.to_dict()}).decode()

    @classmethod
    def from_json(cls, text: str | None) -> BookState:
        if not text:
            return cls(cn.CanaryState())
        d = orjson.loads(text)
        d["canary"] = cn.CanaryState.from_dict(d.get("canary") or {})
        return cls(**d)


class Trader:
    """The execution bar handler (register `on_bar` after the venue's and the pipeline's)."""

    def __init__(self, *, strategy: Any, submitter: Submitter, store: Store, contract: str,
                 instance_id: str, epoch: Callable[[], int], policy: Callable[[], cn.CanaryPolicy],
                 replay: bool, wait_orders: Callable[[], bool], log: Any,
                 ready: Callable[[], Awaitable[bool]], refused: Callable[[], str],
                 monitors: Callable[[], tuple[float | None, float | None]] | None = None,
                 alert: Callable[..., None] | None = None,
                 stale: Callable[[Bar], bool] | None = None,
                 after_bar: Callable[[], None] | None = None) -> None:
        self.strategy = strategy
        self.submitter = submitter
        self.outbox = submitter.outbox
        self.store = store
        self.contract = contract
        self.instance_id = instance_id
        self.epoch = epoch
        self.policy = policy
        self.replay = replay
        self.wait_orders = wait_orders
        self.log = log
        self.ready = ready
        self.refused = refused
        self.monitors = monitors or (lambda: (None, None))
        self.alert = alert or (lambda *a, **k: None)
        self.stale = stale or (lambda bar: False)
        self.after_bar = after_bar or (lambda: None)
        self.state = BookState.from_json(store.get_meta(STATE_KEY))
        self.pending_errors: list[OutboxRecord] = []
        self._verdicts: dict[str, Any] = {}
        submitter.on_final.append(self._on_final)

    def tag_for(self, intent: OrderIntent) -> str:
        return make_tag(self.instance_id, self.epoch(), intent.intent_id)

    @property
    def step_pct(self) -> int:
        return cn.step_pct(self.state.canary, self.policy())

    def _on_final(self, rec: OutboxRecord) -> None:
        if rec.state in (State.REJECTED, State.RESOLVED) or rec.attempts > 1:
            self.pending_errors.append(rec)

    async def on_bar(self, bar: Bar) -> None:
        """Handle one bar (see the module docstring)."""
        if not await self.ready():
            return  # stopping: no new orders; in-flight ones are left to reconciliation
        st = self.state
        repeat = st.last_bar_ts == bar.ts.isoformat()  # reprocessed after a crash
        if not repeat and st.last_close is not None:
            move = bar.close - st.last_close
            st.equity += st.last_position * move
            st.shadow_equity += st.shadow_position * move
        decision = self.strategy.decide(bar)
        self._verdicts: dict[str, Any] = {}
        tags: list[str] = []
        if decision is not None:
            target = int(decision.target_position)
            tags = self._live(bar, target, decision.reason, repeat)
            if not repeat:
                self._shadow(bar, target, decision.reason)
        if tags and self.wait_orders():
            for tag in tags:
                await self.submitter.wait_final(tag)
        self._count_errors()
        if not repeat:
            self._end_bar(bar, self.outbox.expected_position(self.contract))

    # -- the live book ---------------------------------------------------------------------
    def _live(self, bar: Bar, target: int, reason: str, repeat: bool) -> list[str]:
        position = self.outbox.expected_position(self.contract)
        intent = intent_for_target(self.contract, bar.ts, position, target, bar.close, reason)
        if intent is None:
            return []
        if not cn.is_live(intent.intent_id, self.step_pct):
            return []
        if self.stale(bar):  # live warm-up on history: decide, but never trade an old bar
            return []
        verdict = self._check(intent, bar)
        if not repeat:
            self.state.canary = cn.count_intent(self.state.canary,
                                                risk_blocked=not verdict.accepted)
        if not verdict.accepted:
            if not repeat:
                self.store.journal("deny", bar.ts, {"reason": verdict.reason,
                                                    "intent_id": intent.intent_id})
            self.log.info("intent_denied", intent_id=intent.intent_id, reason=verdict.reason)
            return []
        refused = self.refused()
        if refused:
            self.log.warning("intent_not_sent", intent_id=intent.intent_id, reason=refused)
            return []
        rec = self.submitter.enqueue(intent, self.tag_for(intent), self.epoch())
        if not repeat:
            self.store.journal("order", bar.ts, {"tag": rec.tag, "side": int(intent.side),
                                                 "size": intent.size, "target": target})
        return [rec.tag]

    # -- the shadow book -------------------------------------------------------------------
    def _shadow(self, bar: Bar, target: int, reason: str) -> None:
        st = self.state
        intent = intent_for_target(self.contract, bar.ts, st.shadow_position, target, bar.close,
                                   reason)
        if intent is None:
            return
        if self._check(intent, bar).accepted:
            st.shadow_position += intent.signed_size

    def _check(self, intent: OrderIntent, bar: Bar) -> Any:
        # One gate call per distinct intent and bar: when both books want the same order the
        # pipeline counts its denial and latency once.
        cached = self._verdicts.get(intent.intent_id)
        if cached is None:
            cached = self._verdicts[intent.intent_id] = self.strategy.check(intent, bar)
        return cached

    # -- canary and accounting ---------------------------------------------------------------
    def _count_errors(self) -> None:
        for rec in self.pending_errors:
            definitive = rec.state == State.REJECTED or (rec.state == State.RESOLVED
                                                         and rec.outcome == "rejected")
            self.state.canary = cn.count_submit_error(self.state.canary,
                                                      timing_dependent=not definitive)
        self.pending_errors.clear()

    def _end_bar(self, bar: Bar, position: int) -> None:
        st = self.state
        policy = self.policy()
        p99, recall = self.monitors()
        if self.replay:
            p99 = None
        st.canary, verdict = cn.end_bar(st.canary, policy, replay=self.replay,
                                        p99_latency_ms=p99, ann_recall=recall)
        if verdict is not None:
            self.store.journal("canary", bar.ts, {"step_pct": verdict.step_pct,
                                                  "healthy": verdict.healthy,
                                                  "reason": verdict.reason,
                                                  "step_pct_before": verdict.step_pct_before})
            if verdict.healthy:
                self.log.info("canary_window", **vars(verdict))
            else:
                self.log.warning("canary_unhealthy", **vars(verdict))
                self.alert("canary", **vars(verdict))
        st.last_close, st.last_position = bar.close, position
        st.last_bar_ts = bar.ts.isoformat()
        self.store.journal("bar", bar.ts, {"close": bar.close, "position": position,
                                           "equity": round(st.equity, 6),
                                           "shadow_position": st.shadow_position,
                                           "shadow_equity": round(st.shadow_equity, 6),
                                           "canary_pct": self.step_pct})
        self.store.set_meta(STATE_KEY, st.to_json())
        self.after_bar()

    def status(self) -> dict[str, Any]:
        """Canary step and books, for `anchord ctl status`."""
        c = self.state.canary
        return {"step_pct": self.step_pct, "step_index": c.step_index,
                "healthy_streak": c.streak, "window_bars": c.bars,
                "position": self.outbox.expected_position(self.contract),
                "shadow_position": self.state.shadow_position,
                "equity": round(self.state.equity, 6)}
