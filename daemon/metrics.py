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

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        """Current value of a sample (0 when absent); for status snapshots and tests."""
        v = self.registry.get_sample_value(name, labels or {})
        return 0.0 if v is None else v
