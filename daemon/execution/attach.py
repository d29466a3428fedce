"""`attach_execution(daemon)`: wire trading into the daemon with one call.

It builds the Gateway client and its rate limiter, the exchange calendar, the ledger, the one
gate (Gatekeeper), the outbox, the submitter, the venue sync, the reconciler, the canary and the
Trader; adds the Trader as a bar handler (after the venue's and the pipeline's), a task that
logs in and reconciles before the first bar and then runs the submitter and the periodic
checks, a drain hook for `at_end = exit`, the control commands `adopt`, and status providers
("execution", "ledger", "canary").

With `[execution].enabled = false` it does nothing (the daemon only ingests). With
`strategy = "pipeline"` the pipeline must already be attached (`attach_pipeline(daemon)`
first); otherwise start-up stops with a one-line AnchordError.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import anyio

from daemon.control import CommandError
from daemon.execution import canary as cn
from daemon.execution.errors import GatewayError
from daemon.execution.execution_metrics import canary_monitors, wire_metrics
from daemon.execution.gatekeeper import Gatekeeper
from daemon.execution.kill_watch import KillWatch
from daemon.execution.ledger import Ledger, Mismatch
from daemon.execution.order_states import OutboxRecord
from daemon.execution.outbox import Outbox
from daemon.execution.reconcile import Reconciler, ReconcileReport
from daemon.execution.strategy_choice import choose_strategy
from daemon.execution.submitter import SubmitSettings, Submitter
from daemon.execution.trader import OrderPolicy, Trader
from daemon.execution.venue_sync import VenueSync
from daemon.intent import OrderIntent
from daemon.logs import get_logger
from daemon.pipeline.attach import limits_from_config
from daemon.store import checkpoint_loop
from daemon.trading_calendar import TradingCalendar

ACCOUNT_KEY = "execution_account"
DRAIN_FILL_ATTEMPTS = 5
CLOSE_GRACE_S = 1.0


def _client(daemon: Any) -> Any:
    # The daemon's one Gateway session (shared with live bars).
    from daemon.execution.attach_client import get_client

    return get_client(daemon)


class Execution:
    """Start-up (login, account, reconciliation), the submitter worker, periodic checks."""

    def __init__(self, daemon: Any, strategy: Any, client: Any) -> None:
        self.daemon = daemon
        self.client = client
        cfg = daemon.cfg
        self.log = get_logger("execution")
        self.contract = cfg.data.contract
        self.replay = not cfg.data.source.startswith("projectx:")
        store = daemon.store
        self.calendar = TradingCalendar(cfg.limits.exchange_calendar)
        self.ledger = Ledger(store, self.calendar, cfg.pipeline.point_value, self.log)
        self.ledger.on_mismatch.append(self._mismatch_raised)
        self.outbox = Outbox(store, fsync_pending=cfg.execution.fsync_before_send)
        self.instance_id = store.instance_id()
        self.tag_prefix = f"ax-{self.instance_id}-"
        self.account_id: int | None = None
        self.tick_size = Decimal("0.25")
        self.phase = "starting"
        self.refused_reason = ""
        self.report: ReconcileReport | None = None
        self.last_check: dict[str, Any] = {}
        self.stopping = False
        self._ready = anyio.Event()
        self._sync_wanted = anyio.Event()
        self._checkpoint_scope: anyio.CancelScope | None = None
        self.on_bar_done: list[Any] = []
        self.foreign_account = False  # the outbox is another account's: touch nothing
        if self.replay:  # the paper venue's market follows the replay's bars
            client.market_time = self._last_bar_time
        self.gatekeeper = Gatekeeper(risk=daemon.risk, limits=lambda: limits_from_config(
            self.daemon.cfg), ledger=self.ledger, calendar=self.calendar,
            contract=self.contract, now=self.market_now, store=store, log=self.log,
            metrics=daemon.metrics)
        self.submitter = Submitter(client=client, outbox=self.outbox, risk=daemon.risk,
                                   clock=daemon.clock, log=self.log, settings=self.settings,
                                   account_id=self._account)
        self.submitter.cancel_on_kill = lambda: self.daemon.cfg.execution.cancel_open_on_kill
        self.sync = VenueSync(client=client, outbox=self.outbox, ledger=self.ledger,
                              clock=daemon.clock, account_id=self._account,
                              market_time=self._last_bar_time if self.replay
                              else (lambda: None), tag_prefix=self.tag_prefix,
                              log=self.log)
        self.reconciler = Reconciler(
            submitter=self.submitter, outbox=self.outbox, sync=self.sync, ledger=self.ledger,
            contract=self.contract, instance_id=self.instance_id, log=self.log,
            on_mismatch=lambda: self.daemon.cfg.execution.on_mismatch,
            recheck=self.recheck_pending,
            journal=lambda kind, payload: store.journal(kind, daemon.event_time(), payload))
        self.kill_watch = KillWatch(daemon.risk, self.submitter, self.outbox, self.tag_prefix,
                                    lambda: self.daemon.cfg.execution.cancel_open_on_kill,
                                    self.log)
        self.trader = Trader(
            strategy=strategy, submitter=self.submitter, store=store, ledger=self.ledger,
            gatekeeper=self.gatekeeper, contract=self.contract, instance_id=self.instance_id,
            epoch=self._epoch, policy=self.policy, orders=self.order_policy,
            replay=self.replay,
            wait_orders=lambda: self.replay and self.daemon.cfg.data.pace <= 0, log=self.log,
            ready=self.ready, refused=lambda: self.refused_reason, settle=self.settle,
            request_sync=self.request_sync, monitors=lambda: canary_monitors(daemon),
            alert=daemon.alerts.fire, stale=self._stale, after_bar=self._after_bar)

    # -- config views -------------------------------------------------------------------
    def settings(self) -> SubmitSettings:
        ex = self.daemon.cfg.execution
        return SubmitSettings(settle_s=ex.settle_s, unknown_checks=ex.unknown_checks,
                              lookup_retry_s=ex.lookup_retry_s)

    def policy(self) -> cn.CanaryPolicy:
        c = self.daemon.cfg.canary
        return cn.CanaryPolicy(steps=tuple(c.steps), healthy_windows=c.healthy_windows,
                               window_bars=c.window_bars,
                               max_risk_block_rate=c.max_risk_block_rate,
                               max_p99_latency_ms=c.max_p99_latency_ms,
                               min_ann_recall=c.min_ann_recall)

    def order_policy(self) -> OrderPolicy:
        ex = self.daemon.cfg.execution
        return OrderPolicy(ex.order_type, ex.limit_offset_ticks, ex.limit_ttl_bars,
                           self.tick_size)

    def market_now(self, bar_ts: datetime) -> datetime:
        """Market time for a decision on the bar of `bar_ts`: the bar's time in a replay, the
        clock's now live."""
        return bar_ts if self.replay else self.daemon.clock.now()

    def _last_bar_time(self) -> datetime | None:
        last = self.daemon.ingest.last_bar
        return last.ts if last is not None else None

    def _epoch(self) -> int:
        """The replay's run epoch (live trading has no replay to start over: 0)."""
        cursor = getattr(self.daemon.ingest, "cursor", None)
        if not self.replay:
            return 0
        return int(cursor.epoch) if cursor is not None else 0

    def _after_bar(self) -> None:
        for hook in self.on_bar_done:
            hook()

    def _stale(self, bar: Any) -> bool:
        """Live only: a bar older than `max_bar_age_s` (history at start-up) is not traded."""
        if self.replay:
            return False
        age = (self.daemon.clock.now() - bar.ts).total_seconds()
        return age > self.daemon.cfg.execution.max_bar_age_s

    def _account(self) -> int:
        if self.account_id is None:
            raise GatewayError("no account resolved yet")
        return self.account_id

    def recheck_pending(self, rec: OutboxRecord) -> str:
        """Why a PENDING found at start must not be sent now ("" = send it): older than
        `max_pending_age_s`, or denied by the gate with the state of now."""
        age = (self.daemon.clock.now() - rec.created_at).total_seconds()
        if age > self.daemon.cfg.execution.max_pending_age_s:
            return f"aged_out ({age:.0f} s > max_pending_age_s)"
        intent = OrderIntent(rec.intent_id, rec.contract, rec.bar_ts, rec.side, rec.size,
                             rec.target_position, rec.ref_price, rec.limit_price)
        verdict = self.gatekeeper.check_at(intent, rec.bar_ts)
        return "" if verdict.accepted else verdict.reason

    def _mismatch_raised(self, mismatch: Mismatch) -> None:
        self.daemon.alerts.fire("position_mismatch", mismatch_kind=mismatch.kind,
                                reason=mismatch.reason)
        if mismatch.kind != "position" and self.daemon.cfg.execution.on_mismatch == "adopt":
            self.ledger.clear_mismatch("[execution].on_mismatch = adopt")

    # -- lifecycle -------------------------------------------------------------------------
    async def ready(self) -> bool:
        """Wait until start-up reconciliation is done; False when the daemon is stopping."""
        await self._ready.wait()
        return not self.stopping

    def stop(self) -> None:
        """SIGTERM: release every waiter now; nothing waits for the network."""
        self.stopping = True
        self.submitter.stop()
        if self._checkpoint_scope is not None:
            self._checkpoint_scope.cancel()
        self._sync_wanted.set()
        self._ready.set()

    async def _checkpoints(self) -> None:
        # WAL checkpoints in a worker thread, never inside an order's commit; until stopped.
        with anyio.CancelScope() as self._checkpoint_scope:
            if not self.stopping:
                await checkpoint_loop(self.daemon.store)

    async def run(self) -> None:
        """The daemon task: start up, then run the submitter and the checks until stopped."""
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._watch_stop)
                await self._start()
                if not self.stopping and not self.foreign_account:
                    tg.start_soon(self.submitter.run)
                    tg.start_soon(self._checkpoints)
                    tg.start_soon(self._periodic)
                    tg.start_soon(self._synced_on_request)
                    tg.start_soon(self.kill_watch.run)
        finally:
            with anyio.move_on_after(CLOSE_GRACE_S, shield=True):
                await self.client.aclose()

    async def _watch_stop(self) -> None:
        await self.daemon._stopping.wait()
        self.stop()

    async def _start(self) -> None:
        ex = self.daemon.cfg.execution
        while not self.stopping:
            try:
                await self.client.login()
                account = await self.client.resolve_account()
                self.account_id = int(getattr(account, "id", account))
                await self._contract_facts()
                self.phase = "reconciling"
                owner = self.daemon.store.get_meta(ACCOUNT_KEY)
                if owner and owner != str(self.account_id):
                    # Never look up or resend this outbox's orders on another account.
                    self.report = ReconcileReport(ok=False, reason=(
                        f"the outbox belongs to account {owner}, this run resolved account "
                        f"{self.account_id} (use a new state_dir for another account)"))
                    self.log.error("reconcile_mismatch_refusing_to_trade",
                                   reason=self.report.reason)
                    self.foreign_account = True
                    break
                self.daemon.store.set_meta(ACCOUNT_KEY, str(self.account_id))
                self.report = await self.reconciler.at_start()
            except (GatewayError, OSError) as err:
                self.phase = f"starting (retrying: {err})"
                self.log.error("execution_start_failed", error=str(err),
                               retry_in_s=ex.startup_retry_s)
                await self.daemon.clock.sleep(ex.startup_retry_s)
                continue
            break
        if self.report is not None:
            self.refused_reason = "" if self.report.ok else self.report.reason
            self.phase = "trading" if self.report.ok else "refused"
            self.log.info("execution_ready", phase=self.phase, account_id=self.account_id,
                          instance_id=self.instance_id, epoch=self._epoch(),
                          step_pct=self.trader.step_pct,
                          position=self.ledger.position(self.contract),
                          mismatch=vars(self.ledger.mismatch) if self.ledger.mismatch
                          else None)
        self._ready.set()

    async def _contract_facts(self) -> None:
        """Tick size and point value from the venue's contract (the ledger's P&L unit)."""
        contract = await self.client.resolve_contract(self.contract)
        self.tick_size = contract.tick_size
        if contract.tick_value > 0 and contract.tick_size > 0:
            point_value = float(contract.tick_value / contract.tick_size)
            configured = self.daemon.cfg.pipeline.point_value
            if abs(point_value - configured) > 1e-9:
                self.log.warning("point_value_from_venue", venue=point_value,
                                 configured=configured, used="venue")
            self.ledger.set_point_value(self.contract, point_value)

    async def settle(self) -> dict[str, Any]:
        """Fills and order ends into the ledger, then the position check (a replay runs it
        after each bar's orders are final); returns what the check saw."""
        if self.account_id is None or self.foreign_account or self.stopping:
            return {}
        self.last_check = await self.reconciler.periodic()
        return self.last_check

    async def _periodic(self) -> None:
        while not self.stopping:
            await self.daemon.clock.sleep(self.daemon.cfg.execution.check_interval_s)
            await self.check()

    def request_sync(self) -> None:
        """Ask for a sync with the venue soon (live: after a bar that sent orders)."""
        self._sync_wanted.set()

    async def _synced_on_request(self) -> None:
        """Runs the syncs `request_sync` asks for, off the bar path."""
        while not self.stopping:
            await self._sync_wanted.wait()
            self._sync_wanted = anyio.Event()
            await self.settle()

    async def check(self) -> dict[str, Any]:
        """One in-flight / fill / position check (also run at the end of a replay)."""
        await self.settle()
        try:
            opened = await self.client.search_open_orders(self._account())
            self.last_check["open_orders"] = sum(
                1 for o in opened if str(o.get("customTag") or "").startswith(self.tag_prefix))
        except (GatewayError, OSError, AttributeError):
            pass
        return self.last_check

    async def adopt(self, _args: dict[str, Any]) -> dict[str, Any]:
        """`anchord ctl adopt`: take the venue's position into the ledger and trust it again
        (refused while an order of ours is in flight or working). After fills we did not
        place the ledger already holds the venue's position: adopting acknowledges them."""
        now = self.daemon.clock.now()
        mismatch = self.ledger.mismatch
        if mismatch is not None and not mismatch.blocks_all:
            self.ledger.clear_mismatch(f"ctl adopt: {mismatch.reason} acknowledged")
            return self.ledger.status(self.contract, now)
        if self.outbox.in_flight() or self.outbox.unfilled():
            raise CommandError("adopt refused: an order of ours is in flight or working")
        try:
            positions = await self.client.search_open_positions(self._account())
        except (GatewayError, OSError) as err:
            raise CommandError(f"adopt refused: cannot read the venue's position: {err}") \
                from None
        from daemon.execution.reconcile import venue_position_of

        venue, avg = venue_position_of(positions, self.contract)
        self.ledger.adopt(self.contract, venue, avg, now, "ctl adopt")
        return self.ledger.status(self.contract, now)

    async def drain(self) -> None:
        """`at_end = exit`: drive every queued record to a final state and record fills."""
        await self.ready()
        if self.foreign_account:
            return
        await self.submitter.drain()
        while self.outbox.in_flight() and not self.stopping:
            self.submitter.requeue_in_flight()
            await self.submitter.drain()
            await anyio.sleep(0.05)
        for _ in range(DRAIN_FILL_ATTEMPTS):  # a failed Trade/search must not leave fills out
            if self.stopping:
                break
            await self.check()
            if not any(r.limit_price is None for r in self.outbox.unfilled()):
                break
            await anyio.sleep(0.2)
        self.log.info("execution_drained", outbox=self.outbox.counts(),
                      position=self.ledger.position(self.contract),
                      working=self.outbox.working_position(self.contract),
                      **{k: v for k, v in self.last_check.items() if k != "requeued"})

    def status(self) -> dict[str, Any]:
        """The "execution" block of `anchord ctl status`."""
        return {"phase": self.phase, "trading": self.phase == "trading",
                "refused_reason": self.refused_reason, "account_id": self.account_id,
                "strategy": self.daemon.cfg.execution.strategy,
                "outbox": self.outbox.counts(),
                "position": self.ledger.position(self.contract),
                "working": self.outbox.working_position(self.contract),
                "open_orders": self.last_check.get("open_orders"),
                "venue_position": self.last_check.get("venue_position"),
                "mismatch": vars(self.ledger.mismatch) if self.ledger.mismatch else None,
                "queued": len(self.submitter.queue), "sync": self.sync.counts,
                "reconcile": self.report.to_dict() if self.report else None}

    def ledger_status(self) -> dict[str, Any]:
        """The "ledger" block of `anchord ctl status`."""
        last = self._last_bar_time()
        at = self.market_now(last) if last is not None else self.daemon.clock.now()
        return self.ledger.status(self.contract, at)


def attach_execution(daemon: Any, *, client: Any = None) -> Execution | None:
    """Wire execution into `daemon` (see the module docstring); None when disabled."""
    if not daemon.cfg.execution.enabled:
        return None
    strategy = choose_strategy(daemon)
    execution = Execution(daemon, strategy, client if client is not None else _client(daemon))
    daemon.execution = execution
    daemon.ingest.handlers.append(execution.trader.on_bar)
    daemon.tasks.append(execution.run)
    daemon.drain_hooks.append(execution.drain)
    daemon.control.register("adopt", execution.adopt)
    daemon.status_providers["execution"] = execution.status
    daemon.status_providers["ledger"] = execution.ledger_status
    daemon.status_providers["canary"] = execution.trader.status
    wire_metrics(execution, daemon.metrics)
    return execution
