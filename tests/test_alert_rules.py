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
