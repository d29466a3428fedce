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
