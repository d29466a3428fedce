"""The in-process metrics registry (prometheus-client types, one registry per daemon).

Using prometheus-client's own types means the operator endpoint exposes this registry as is.
Components create their metrics through `Metrics` so names and help texts live in one place.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """All metrics of one daemon instance."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.bars_total = Counter("anchord_bars_total", "Bars accepted by validation", registry=r)
        self.bars_quarantined = Counter(
            "anchord_bars_quarantined_total", "Bars refused by validation", ["reason"], registry=r
        )
        self.kill_switch = Gauge("anchord_kill_switch", "1 while the kill switch is on",
                                 registry=r)
        self.config_reloads = Counter(
            "anchord_config_reloads_total", "Reload attempts", ["result"], registry=r
        )
        self.bar_lag = Histogram(
            "anchord_bar_processing_seconds", "Time to process one bar in the ingest loop",
            registry=r, buckets=(1e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 0.1, 1.0),
        )
        # issue 6: continual adapter updates
        self.adapter_cycles = Counter("anchord_adapter_cycles_total",
                                      "Update cycles by decision", ["decision"], registry=r)
        self.adapter_rollbacks = Counter("anchord_adapter_rollbacks_total",
                                         "Adapter rollbacks (monitor or ctl)", registry=r)
        self.adapter_gauges = {
            key: Gauge(f"anchord_adapter_{key}", f"Last update cycle: {key}", registry=r)
            for key in ("drift_mse", "stress_mse", "mdd", "worst_day_return", "violations",
                        "output_drift", "attribution_shift", "drift_gain", "cycle_s")
        }
        self.adapter_version = Gauge("anchord_adapter_version",
                                     "Number of the active adapter version (0 = bare base)",
                                     registry=r)
        # Alerts by kind (kill, rollback, canary), counted whether or not a command is set:
        # the Prometheus rules in scripts/anchord-alerts.yml page on these.
        self.alerts = Counter("anchord_alerts_total", "Alerts raised, by kind", ["kind"],
                              registry=r)
        # -- issue 4: the per-bar pipeline, its monitors and the risk gate --------------------
        self.pipeline_stage = Histogram(
            "anchord_pipeline_stage_seconds", "Per-stage and end-to-end pipeline latency",
            ["stage"], registry=r,
            buckets=(5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2,
                     0.1),
        )
        self.pipeline_over_budget = Counter(
            "anchord_pipeline_over_budget_total", "Stage samples over their budget", ["stage"],
            registry=r,
        )
        self.decisions = Counter("anchord_decisions_total", "Pipeline decisions", registry=r)
        self.risk_denials = Counter(
            "anchord_risk_denials_total", "Intents denied by the risk gate", ["reason"],
            registry=r,
        )
        self.risk_accepts = Counter("anchord_risk_accepts_total", "Intents accepted by the gate",
                                    registry=r)
        self.ann_recall = Gauge("anchord_ann_recall", "Rolling ANN recall@k vs exact search",
                                registry=r)
        self.ann_speedup = Gauge("anchord_ann_speedup", "Rolling exact/ANN search time ratio",
                                 registry=r)
        self.calibration_ece = Gauge("anchord_calibration_ece", "Rolling ECE of p_up",
                                     registry=r)
        self.recalibrations = Counter("anchord_recalibrations_total", "Recalibration attempts",
                                      ["applied"], registry=r)

        # --- execution: outbox, submitter, canary (issue 5) ---
        self.orders_final = Counter("anchord_orders_final_total",
                                    "Outbox records that reached a final state", ["state"],
                                    registry=r)
        self.orders_unknown = Counter("anchord_orders_unknown_total",
                                      "Order/place answers lost (timeout, 5xx, reset, 429, tag "
                                      "in use): resolved by lookup", registry=r)
        self.canary_step = Gauge("anchord_canary_step_pct", "Percent of intents sent live",
                                 registry=r)
        self.trading = Gauge("anchord_execution_trading",
                             "1 while reconciled and trading, 0 while starting or refused",
                             registry=r)

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        """Current value of a sample (0 when absent); for status snapshots and tests."""
        v = self.registry.get_sample_value(name, labels or {})
        return 0.0 if v is None else v
