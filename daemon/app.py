"""The supervisor: one anyio task group with the ingest loop, the control plane and timers.

Signals: SIGTERM/SIGINT stop gracefully (finish the current bar, flush the store, exit 0);
SIGHUP reloads runtime.toml (all or nothing: the file, its keys and every `reload_checks`
entry are validated before anything is applied; a refusal keeps the old config); SIGUSR1
engages the kill switch (persisted before the next bar); SIGUSR2 logs a status snapshot.
Later components (pipeline, submitter, update worker) attach through `Daemon`'s hooks:
`ingest.handlers`, `tasks`, `control.register`, `status_providers`, `reload_checks`,
`reload_hooks`.
"""

from __future__ import annotations

import signal
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

from daemon.alerts import AlertHook
from daemon.bars.replay import ReplayData, open_replay
from daemon.clock import Clock, WallClock
from daemon.config import Change, RuntimeConfig, apply_reload, load_config
from daemon.control import CommandError, ControlServer
from daemon.errors import AnchordError
from daemon.ingest import IngestLoop
from daemon.logs import configure_logging, get_logger
from daemon.metrics import Metrics
from daemon.metrics_http import serve_metrics
from daemon.notify import Notifier
from daemon.risk import RiskState
from daemon.store import Store
from daemon.timeutil import iso, parse_utc

STOP_GRACE_S = 3.0
RISK_RETRY_S = 0.5  # how often a risk write that failed is tried again
RISK_WARN_EVERY_S = 10.0
LIVE_SOURCE = "projectx:live"
ReloadHook = Callable[[RuntimeConfig, list[Change]], None]
# Validates what a reload would apply (AnchordError refuses the whole reload) and returns the
# step that applies it, which must not fail.
ReloadCheck = Callable[[RuntimeConfig, list[Change]], Callable[[], None]]
DrainHook = Callable[[], Awaitable[None]]


class Daemon:
    """One running anchord: config, store, risk state, ingest loop and control plane."""

    def __init__(self, cfg: RuntimeConfig, *, clock: Clock | None = None,
                 notifier: Notifier | None = None) -> None:
        self.cfg = cfg
        self.clock = clock or WallClock()
        self.notifier = notifier or Notifier()
        self.log = get_logger("daemon")
        self.metrics = Metrics()
        self.alerts = AlertHook(cfg.metrics.alert_command, counter=self.metrics.alerts)
        state_dir = cfg.path(cfg.daemon.state_dir)
        state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir = state_dir
        self.store = Store(state_dir / "store.sqlite")
        self.risk = RiskState.load(self.store, cfg.risk.embargo_before_min,
                                   cfg.risk.embargo_after_min)
        self.risk.on_persist_error = self._risk_not_persisted
        self._persist_warned_at = -1e9
        if cfg.risk.kill_switch and not self.risk.kill_switch:
            self._engage_kill("config")
        self.metrics.kill_switch.set(int(self.risk.kill_switch))
        # [data].source = "projectx:live" polls History/retrieveBars (issue 5); else a replay.
        self.live_bars: Any = None
        live = cfg.data.source == LIVE_SOURCE
        data = ReplayData(LIVE_SOURCE, []) if live else open_replay(cfg.data.source,
                                                                    cfg.data.start, cfg.data.end)
        self.ingest = IngestLoop(data=data, contract=cfg.data.contract, store=self.store,
                                 metrics=self.metrics, clock=self.clock, log=self.log,
                                 pace=lambda: self.cfg.data.pace)
        self.control = ControlServer(cfg.path(cfg.daemon.control_socket), self.log)
        self.tasks: list[Callable[[], Awaitable[None]]] = []
        self.status_providers: dict[str, Callable[[], Any]] = {}
        # A reload runs every check first; only when none refused are their steps applied, then
        # the hooks (which cannot refuse: the config they get is validated).
        self.reload_checks: list[ReloadCheck] = []
        self.reload_hooks: list[ReloadHook] = [self._apply_core_reload]
        # Awaited when a replay ends with `at_end = exit`, before the stop (e.g. the outbox).
        self.drain_hooks: list[DrainHook] = []
        self.started = time.monotonic()
        self._stopping = anyio.Event()
        self._ingest_done = anyio.Event()
        self._register_commands()
        if live:
            from daemon.bars.live import attach_live_bars

            self.live_bars = attach_live_bars(self)
        # issue 4: the per-bar pipeline (None when there is no artifact set at [artifacts].dir)
        from daemon.pipeline.attach import attach_pipeline

        self.pipeline: Any = None
        attach_pipeline(self)
        from daemon.training.control import attach_artifact_control

        attach_artifact_control(self)  # `ctl rollback-artifacts` (swaps daemon.pipeline's set)
        # Continual adapter updates (issue 6): needs the pipeline (attach it before this line).
        if getattr(self, "pipeline", None) is not None:
            from daemon.adapters_attach import attach_adapters

            attach_adapters(self)

    def event_time(self) -> Any:
        """The time to journal an event at: the last bar's close in a replay (so that run
        reports line events up with bars), the clock's now otherwise."""
        last = self.ingest.last_bar
        if last is not None and self.cfg.data.source != LIVE_SOURCE:
            return last.ts
        return self.clock.now()

    # -- kill switch, news, reload, status ------------------------------------------------
    def _engage_kill(self, source: str) -> None:
        if self.risk.engage_kill(source, self.clock.now()):
            self.log.warning("kill_switch_engaged", source=source)
            self.alerts.fire("kill", source=source)
        self.metrics.kill_switch.set(1)

    def _risk_not_persisted(self, what: str, error: str) -> None:
        # In force in memory, not yet on disk: loud (at most every 10 s while it lasts), and
        # retried by `_persist_risk` until it is written.
        now = time.monotonic()
        if now - self._persist_warned_at >= RISK_WARN_EVERY_S:
            self._persist_warned_at = now
            self.log.error("risk_state_not_persisted", what=what, error=error,
                           in_force=True, retry_every_s=RISK_RETRY_S)
            self.alerts.fire("risk_state_not_persisted", what=what, error=error)

    async def _persist_risk(self) -> None:
        """Write what the risk state could not write when it changed, until it is written."""
        while True:
            await anyio.sleep(RISK_RETRY_S)
            if self.risk.unsaved and self.risk.retry_persist():
                self.log.warning("risk_state_persisted", after="retry")

    def reload(self, source: str) -> bool:
        """Re-read runtime.toml and apply its reloadable keys (`refused_reload`); False when
        the reload was refused and nothing changed."""
        return self.refused_reload(source) is None

    def refused_reload(self, source: str) -> str | None:
        """Reload all or nothing: the file and its keys are validated and every reload check
        runs (e.g. the calendar file is read) before anything is applied. Returns None when
        applied (the diff is logged), else the reason it was refused (logged as
        `config_reload_failed`): then the previous config stays in force, unchanged."""
        self.notifier.reloading()
        try:
            effective, changes = apply_reload(self.cfg, load_config(self.cfg.source_path))
            steps = [check(effective, changes) for check in self.reload_checks]
        except AnchordError as err:
            self.metrics.config_reloads.labels(result="invalid").inc()
            self.log.error("config_reload_failed", source=source, error=str(err),
                           kept="previous config")
            self.notifier.ready("running (reload refused)")
            return str(err)
        self.cfg = effective
        for step in steps:
            step()
        for hook in self.reload_hooks:
            hook(effective, changes)
        applied = [c for c in changes if c.reloadable]
        pending = [c for c in changes if not c.reloadable]
        self.metrics.config_reloads.labels(result="ok").inc()
        self.log.info("config_reloaded", source=source,
                      diff=[{"key": c.key, "old": c.old, "new": c.new} for c in applied])
        if pending:
            self.log.warning("config_change_needs_restart",
                             diff=[{"key": c.key, "old": c.old, "new": c.new} for c in pending])
        self.notifier.ready("running")
        return None

    def _apply_core_reload(self, cfg: RuntimeConfig, changes: list[Change]) -> None:
        keys = {c.key for c in changes}
        if "[daemon].log_level" in keys:
            configure_logging(cfg.daemon.log_level)
        self.alerts.command = cfg.metrics.alert_command
        self.risk.set_embargo(cfg.risk.embargo_before_min, cfg.risk.embargo_after_min)
        if cfg.risk.kill_switch and not self.risk.kill_switch:
            self._engage_kill("config")

    def status(self) -> dict[str, Any]:
        """The status snapshot shown by `ctl status`, SIGUSR2 and the heartbeat log."""
        now = self.clock.now()
        last = self.ingest.last_bar
        snap: dict[str, Any] = {
            "kill_switch": self.risk.kill_switch,
            "kill_reason": self.risk.kill_reason,
            "risk_unsaved": self.risk.unsaved,
            "risk_persist_error": self.risk.persist_error,
            "embargo_active": self.risk.embargo_active(last.ts if last else now),
            "news_marks": [iso(t) for t in self.risk.news[-5:]],
            "bars_processed": self.ingest.bars_seen,
            "bars_quarantined": self.store.quarantine_count(),
            "last_bar_ts": iso(last.ts) if last else None,
            "replay_epoch": self.ingest.cursor.epoch,
            "replay_position": f"{self.ingest.cursor.start}/{self.ingest.cursor.total}",
            "uptime_s": round(time.monotonic() - self.started, 1),
            "config": str(self.cfg.source_path),
        }
        for name, provider in self.status_providers.items():
            snap[name] = provider()
        return snap

    def _register_commands(self) -> None:
        async def status(_args: dict[str, Any]) -> dict[str, Any]:
            return self.status()

        async def kill(args: dict[str, Any]) -> dict[str, Any]:
            self._engage_kill(str(args.get("reason") or "ctl"))
            return {"kill_switch": self.risk.kill_switch,
                    "persisted": "kill_switch" not in self.risk.unsaved,
                    "persist_error": self.risk.persist_error}

        async def resume(_args: dict[str, Any]) -> dict[str, Any]:
            try:
                released = self.risk.release_kill(self.clock.now())
            except sqlite3.Error as err:
                raise CommandError(f"resume refused: the release could not be written ({err}); "
                                   "the kill switch stays on") from None
            if released:
                self.log.warning("kill_switch_released", source="ctl")
            self.metrics.kill_switch.set(0)
            return {"kill_switch": self.risk.kill_switch}

        async def news(args: dict[str, Any]) -> dict[str, Any]:
            try:
                ts = parse_utc(str(args.get("ts", "")))
            except ValueError as err:
                raise CommandError(f"news: {err}") from None
            self.risk.mark_news(ts, "ctl")
            self.log.warning("news_marked", ts=iso(ts),
                             embargo_before_min=self.cfg.risk.embargo_before_min,
                             embargo_after_min=self.cfg.risk.embargo_after_min)
            return {"news": iso(ts)}

        async def reload(_args: dict[str, Any]) -> dict[str, Any]:
            refused = self.refused_reload("ctl")
            if refused is not None:
                raise CommandError(f"reload refused: {refused}")
            return {"reloaded": True}

        for name, handler in (("status", status), ("kill", kill), ("resume", resume),
                              ("news", news), ("reload", reload)):
            self.control.register(name, handler)

    # -- tasks ---------------------------------------------------------------------------
    def request_stop(self, reason: str) -> None:
        if not self._stopping.is_set():
            self.log.info("stopping", reason=reason)
            self.notifier.stopping()
            self._stopping.set()
        self.ingest.stop()

    async def _signals(self, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP,
                                        signal.SIGUSR1, signal.SIGUSR2) as signals:
            task_status.started()
            async for signum in signals:
                if signum in (signal.SIGTERM, signal.SIGINT):
                    self.request_stop(signal.Signals(signum).name)
                elif signum == signal.SIGHUP:
                    self.reload("SIGHUP")
                elif signum == signal.SIGUSR1:
                    self._engage_kill("SIGUSR1")
                elif signum == signal.SIGUSR2:
                    self.log.info("status", **self.status())

    async def _watchdog(self) -> None:
        """Feed systemd's watchdog from a timer at half its period, only while the loop is
        healthy (a timer that fires late means the loop was blocked)."""
        period = self.notifier.watchdog_s
        if not period:
            return
        interval = period / 2
        while True:
            t0 = time.monotonic()
            await anyio.sleep(interval)
            lag = time.monotonic() - t0 - interval
            if lag < interval:
                self.notifier.watchdog()
            else:
                self.log.warning("event_loop_lag", lag_s=round(lag, 3))

    async def _heartbeat(self) -> None:
        while True:
            await anyio.sleep(self.cfg.daemon.status_interval_s)
            self.log.info("heartbeat", **self.status())

    async def _ingest(self) -> None:
        try:
            if self.live_bars is not None:
                completed = await self.ingest.run_stream(self.live_bars.rows())
                self.live_bars.checkpoint()
            else:
                completed = await self.ingest.run()
        finally:
            self._ingest_done.set()
        if completed:
            self.log.info("replay_end", bars=self.ingest.bars_seen,
                          quarantined=self.store.quarantine_count(),
                          at_end=self.cfg.data.at_end)
            if self.cfg.data.at_end == "exit":
                for hook in self.drain_hooks:
                    await hook()
                self.request_stop("replay finished")

    async def run(self) -> int:
        """Run until stopped; returns the process exit code."""
        self.log.info("starting", config=self.cfg.source_path, state_dir=str(self.state_dir),
                      kill_switch=self.risk.kill_switch, instance_id=self.store.instance_id())
        metrics_server = None
        if self.cfg.metrics.listen:
            metrics_server, port = serve_metrics(self.metrics, self.cfg.metrics.listen)
            self.log.info("metrics_listening", url=f"http://{metrics_server.server_address[0]}"
                                                   f":{port}/metrics")
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(self.control.serve)
                await tg.start(self._signals)
                tg.start_soon(self._watchdog)
                tg.start_soon(self._heartbeat)
                tg.start_soon(self._persist_risk)
                for task in self.tasks:
                    tg.start_soon(task)
                self.notifier.ready("running")
                self.log.info("ready", control_socket=str(self.control.path))
                tg.start_soon(self._ingest)
                await self._stopping.wait()
                # Let the current bar finish (bounded: a stop never waits on the network).
                with anyio.move_on_after(STOP_GRACE_S):
                    await self._ingest_done.wait()
                tg.cancel_scope.cancel()
        finally:
            self.store.close()
            if metrics_server is not None:
                metrics_server.shutdown()
        self.log.info("stopped")
        return 0


def run_daemon(config_path: str | Path) -> int:
    """Load the config (ConfigError on a bad file), set up logs, and run the daemon."""
    from daemon.execution.attach import attach_execution

    cfg = load_config(config_path)
    configure_logging(cfg.daemon.log_level)
    daemon = Daemon(cfg)
    attach_execution(daemon)  # after attach_pipeline (the Trader drives daemon.pipeline)
    return anyio.run(daemon.run)
