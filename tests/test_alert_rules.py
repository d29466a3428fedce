"""The shipped Prometheus alert rules name metrics the daemon really exports, and the alert
hook counts every alert by kind (the canary rule pages on that counter)."""

from __future__ import annotations

import re
from pathlib import Path

from daemon.alerts import AlertHook
from daemon.metrics import Metrics

RULES = Path(__file__).resolve().parents[1] / "scripts" / "anchord-alerts.yml"
SUFFIXES = ("", "_total", "_bucket", "_count", "_sum", "_created")


def exported_names() -> set[str]:
    """Every sample name the registry can export (labelled metrics have no samples yet)."""
    return {family.name + suffix for family in Metrics().registry.collect()
            for suffix in SUFFIXES}


def test_every_rule_uses_metrics_of_the_registry() -> None:
    text = RULES.read_text()
    alerts = re.findall(r"^\s*- alert: (\w+)$", text, re.M)
    exprs = re.findall(r"^\s*expr: (.+)$", text, re.M)
    assert len(alerts) == len(exprs) >= 3
    assert {"AnchordKillSwitchEngaged", "AnchordAdapterRollback",
            "AnchordCanaryUnhealthy"} <= set(alerts)
    used = {name for expr in exprs for name in re.findall(r"\banchord_\w+", expr)}
    assert used and used <= exported_names(), used - exported_names()


def test_alert_hook_counts_each_kind_even_without_a_command() -> None:
    metrics = Metrics()
    hook = AlertHook("", counter=metrics.alerts)
    for kind in ("kill", "rollback", "canary", "canary"):
        hook.fire(kind, reason="test")
    assert metrics.value("anchord_alerts_total", {"kind": "canary"}) == 2
    assert metrics.value("anchord_alerts_total", {"kind": "kill"}) == 1
    assert metrics.value("anchord_alerts_total", {"kind": "rollback"}) == 1
    assert hook.sent == 0  # nothing to run


def test_an_unhealthy_canary_window_raises_the_canary_alert(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from daemon.execution import canary as cn
    from daemon.execution.gatekeeper import Gatekeeper
    from daemon.execution.ledger import Ledger
    from daemon.execution.outbox import Outbox
    from daemon.execution.trader import OrderPolicy, Trader
    from daemon.logs import get_logger
    from daemon.risk import RiskLimits, RiskState
    from daemon.store import Store
    from daemon.trading_calendar import ALWAYS_OPEN, TradingCalendar
    from tests.venue_support import sp500

    metrics = Metrics()
    hook = AlertHook("", counter=metrics.alerts)
    store = Store(tmp_path / "store.sqlite")
    log = get_logger("test")
    submitter = SimpleNamespace(outbox=Outbox(store))
    ledger = Ledger(store, TradingCalendar(ALWAYS_OPEN), 50.0, log)
    gatekeeper = Gatekeeper(risk=RiskState(), limits=RiskLimits, ledger=ledger,
                            calendar=ledger.calendar, contract="C", now=lambda ts: ts,
                            store=store, log=log)
    trader = Trader(strategy=None, submitter=submitter, store=store, ledger=ledger,
                    gatekeeper=gatekeeper, contract="C", instance_id="i", epoch=lambda: 1,
                    policy=lambda: cn.CanaryPolicy(steps=(5, 25), window_bars=1),
                    orders=OrderPolicy, replay=True, wait_orders=lambda: False, log=log,
                    ready=None, refused=lambda: "", settle=None, request_sync=lambda: None,
                    monitors=lambda: (None, 0.5), alert=hook.fire)
    trader._end_bar(sp500()[0])  # one-bar window, ANN recall 0.5 < 0.9: unhealthy
    store.close()
    assert metrics.value("anchord_alerts_total", {"kind": "canary"}) == 1
