"""The runtime.toml schema: one frozen dataclass per section, each key declared with `setting(...)`
(its default, whether SIGHUP / `anchord ctl reload` may change it, its check and its doc).

daemon/config.py reads, validates and diffs files against this schema.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Check = Callable[[Any], str | None]


def setting(default: Any, *, reloadable: bool = False, check: Check | None = None, doc: str = ""):
    """Declare one config key: its default, whether it is reloadable, and its validity check."""
    meta = {"reloadable": reloadable, "check": check, "doc": doc}
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def one_of(*choices: str) -> Check:
    """A check that accepts only the given strings."""
    return lambda v: None if v in choices else f"must be one of {', '.join(choices)}, got {v!r}"


def at_least(low: float) -> Check:
    """A check for numbers >= low."""
    return lambda v: None if v >= low else f"must be >= {low}, got {v!r}"


def between(low: float, high: float) -> Check:
    """A check for numbers in [low, high]."""
    return lambda v: None if low <= v <= high else f"must be between {low} and {high}, got {v!r}"


def non_empty(v: Any) -> str | None:
    """A check for non-empty strings and lists."""
    return None if len(v) > 0 else "must not be empty"


@dataclass(frozen=True)
class DaemonSection:
    state_dir: str = setting("state", doc="store.sqlite, adapters/, audit/, reports/ live here")
    control_socket: str = setting("state/anchord.sock", doc="Unix socket for `anchord ctl`")
    log_level: str = setting(
        "info", reloadable=True, check=one_of("debug", "info", "warning", "error"),
        doc="debug | info | warning | error",
    )
    status_interval_s: float = setting(
        60.0, reloadable=True, check=at_least(1.0), doc="period of the `status` heartbeat log"
    )


@dataclass(frozen=True)
class DataSection:
    source: str = setting(
        "sample:sp500",
        check=non_empty,
        doc="sample:sp500, sample:nasdaq, a CSV/Parquet path, or projectx:live",
    )
    pace: float = setting(0.0, reloadable=True, check=at_least(0.0), doc="bars/s; 0 = max")
    at_end: str = setting("idle", check=one_of("idle", "exit"),
                          doc="idle: keep serving signals and ctl | exit: stop when the data ends")
    contract: str = setting("CON.F.US.EP.Z26", check=non_empty, doc="ProjectX contract id")
    start: str = setting("", doc="replay only bars at or after this ISO date (empty = all)")
    end: str = setting("", doc="replay only bars at or before this ISO date (empty = all)")


@dataclass(frozen=True)
class RiskSection:
    kill_switch: bool = setting(
        False, reloadable=True, doc="true engages the kill switch; false never releases it"
    )
    embargo_before_min: float = setting(15.0, reloadable=True, check=at_least(0.0),
                                        doc="news embargo before a news mark, minutes")
    embargo_after_min: float = setting(15.0, reloadable=True, check=at_least(0.0),
                                       doc="news embargo after a news mark, minutes")


def _listen_check(value: str) -> str | None:
    if not value:
        return None
    from daemon.metrics_http import parse_listen

    try:
        parse_listen(value)
    except ValueError as err:
        return str(err)
    return None


@dataclass(frozen=True)
class MetricsSection:
    listen: str = setting(
        "127.0.0.1:9464", check=_listen_check,
        doc="Prometheus endpoint host:port on loopback; empty = off (port 0 = any free port)",
    )
    alert_command: str = setting(
        "", reloadable=True, doc="command run on kill, rollback and unhealthy canary (argv, "
        "shell-style quoting; the alert is passed as JSON on stdin); empty = none",
    )


# --- [adapters] and [promotion] (issue 6) ---
@dataclass(frozen=True)
class AdaptersSection:
    enabled: bool = setting(True, reloadable=True, doc="run continual LoRA update cycles")
    projection: str = setting("agem", reloadable=True, check=one_of("naive", "agem", "ogd"),
                              doc="naive (baseline) | agem (half-space, margin) | ogd")
    anchor_weight: float = setting(10.0, reloadable=True, check=at_least(0.0),
                                   doc="weight of the anchors' teacher-MSE gradient in a step")
    target_weight: float = setting(0.0, reloadable=True, check=at_least(0.0),
                                   doc="weight of the anchors' realised-target MSE in g_anchor")
    rank: int = setting(4, check=at_least(1), doc="LoRA rank")
    alpha: float = setting(8.0, check=at_least(0.0), doc="LoRA alpha (scale alpha/rank)")
    lr: float = setting(0.02, reloadable=True, check=at_least(0.0), doc="SGD step size")
    clip_norm: float = setting(1.0, reloadable=True, check=at_least(0.0),
                               doc="step norm clip (keeps the direction); 0 = off")
    steps: int = setting(100, reloadable=True, check=at_least(1),
                         doc="steps of the naive update (sets the drift gain to match)")
    max_steps: int = setting(2000, reloadable=True, check=at_least(1),
                             doc="step budget of the projected update at matched drift gain")
    margin: float = setting(0.1, reloadable=True, check=between(0.0, 1.0),
                            doc="A-GEM half-space margin (cosine with the anchor gradient)")
    ogd_directions: int = setting(16, reloadable=True, check=at_least(0),
                                  doc="protected anchor output-gradient directions (OGD)")
    ogd_refresh: int = setting(10, reloadable=True, check=at_least(1),
                               doc="steps between recomputations of the OGD basis")
    seed: int = setting(0, reloadable=True, doc="training seed (updates are deterministic)")
    max_abs_target_z: float = setting(12.0, reloadable=True, check=at_least(1.0),
                                      doc="refuse a window whose targets exceed this robust z")
    trigger: str = setting("schedule", check=one_of("schedule", "drift", "both"),
                           doc="schedule (every_n_bars) | drift (Page-Hinkley, ece_drift) | both")
    window_bars: int = setting(120, check=at_least(8), doc="rows in the drift batch D_t")
    every_n_bars: int = setting(60, check=at_least(1), doc="schedule period in bars")
    min_spacing_bars: int = setting(20, check=at_least(0), doc="minimum bars between cycles")
    drift_threshold: float = setting(5.0, check=at_least(0.0),
                                     doc="Page-Hinkley threshold on squared residuals")
    timeout_s: float = setting(120.0, reloadable=True, check=at_least(0.1),
                               doc="a training cycle slower than this is killed and logged")
    shadow_bars: int = setting(0, reloadable=True, check=at_least(0),
                               doc="bars a passing candidate runs in shadow before going live")
    shadow_naive: bool = setting(True, reloadable=True,
                                 doc="also run naive on the window (matched gain + shadow)")
    apply_after_bars: int = setting(1, check=at_least(1),
                                    doc="replay with pace 0: bars after the trigger at which "
                                        "the cycle's result is applied (the replay waits)")
    gate_holdout_bars: int = setting(20, check=at_least(0),
                                     doc="most recent rows of the window kept out of training; "
                                         "the gate's drift_mse is measured on them")
    monitor_bars: int = setting(60, reloadable=True, check=at_least(0),
                                doc="bars after a promotion that the rollback monitor runs")
    monitor_every_bars: int = setting(5, reloadable=True, check=at_least(1),
                                      doc="monitor check period in bars")
    subprocess: bool = setting(True, doc="train in a child process (false: in-process, tests)")


@dataclass(frozen=True)
class PromotionSection:
    stress_mse_limit: float = setting(0.02, reloadable=True, check=at_least(0.0),
                                      doc="max anchor MSE vs the deployed teacher cache "
                                          "(units: y_scale^2)")
    delta: float = setting(0.0, reloadable=True, check=at_least(0.0),
                           doc="drift_mse <= deployed drift_mse * (1 + delta)")
    tolerance: float = setting(0.0, reloadable=True, check=at_least(0.0),
                               doc="mdd >= deployed mdd - tolerance (returns units)")
    rollback_stress_mse: float = setting(0.05, reloadable=True, check=at_least(0.0),
                                         doc="monitor: roll back when anchor MSE vs the base "
                                             "cache exceeds this")
    rollback_tail_tolerance: float = setting(0.02, reloadable=True, check=at_least(0.0),
                                             doc="monitor: worst-day return / mdd may fall "
                                                 "this far below the previous model's")
    rollback_violation_spike: int = setting(2, reloadable=True, check=at_least(0),
                                            doc="monitor: violations above the previous "
                                                "model's + this roll back")
    rollback_output_shift: float = setting(3.0, reloadable=True, check=at_least(1.0),
                                           doc="monitor: output drift above this x the gate's "
                                               "roll back (unexplained shift)")
# --- [tyler] [index] [training] [quality_gates] [artifacts] (issue 3) ---
def _iso_date(value: str) -> str | None:
    from datetime import date

    try:
        date.fromisoformat(value)
    except ValueError:
        return f"expected an ISO date YYYY-MM-DD, got {value!r}"
    return None


def _dated_entries(min_parts: int) -> Check:
    """Entries `"YYYY-MM-DD rest..."` (stress days) or `"name start end"` (slices)."""

    def check(values: list[str]) -> str | None:
        for entry in values:
            parts = entry.split()
            if len(parts) < min_parts:
                return f"entry {entry!r} needs {min_parts} space-separated parts"
            dates = parts[:1] if min_parts == 2 else parts[1:3]
            for d in dates:
                problem = _iso_date(d)
                if problem:
                    return f"entry {entry!r}: {problem}"
        return None

    return check


@dataclass(frozen=True)
class TylerSection:
    shrinkage: float = setting(0.05, check=between(0.0, 0.99),
                               doc="shrinkage toward the identity (Chen-Wiesel-Hero rho)")
    tol: float = setting(1e-6, check=between(1e-14, 1e-1), doc="batch fixed-point tolerance")
    max_iter: int = setting(200, check=at_least(1), doc="batch fixed-point iteration cap")
    live_iterations: int = setting(2, reloadable=True, check=at_least(1),
                                   doc="warm-started fixed-point steps per live bar")
    live_weight: float = setting(0.01, reloadable=True, check=between(1e-6, 1.0),
                                 doc="weight of the newest bar in the live shape update")


@dataclass(frozen=True)
class IndexSection:
    kind: str = setting("hnsw", check=one_of("hnsw", "ivf", "flat"), doc="FAISS index type")
    window: int = setting(8, check=at_least(1), doc="L: whitened feature vectors per ANN vector")
    k: int = setting(20, check=at_least(1), doc="neighbours retrieved per bar")
    hnsw_m: int = setting(32, check=at_least(4), doc="HNSW graph degree")
    hnsw_ef_construction: int = setting(80, check=at_least(8), doc="HNSW build beam width")
    hnsw_ef_search: int = setting(64, check=at_least(1),
                                  doc="HNSW search beam width (recall vs speed)")
    ivf_nlist: int = setting(64, check=at_least(1), doc="IVF cells")
    ivf_nprobe: int = setting(8, check=at_least(1), doc="IVF cells visited per query")
    seed: int = setting(1234, doc="IVF k-means seed")
    gpu: str = setting("auto", check=one_of("auto", "never"),
                       doc="build IVF/flat on a GPU when faiss-gpu and CUDA are present")


_DEFAULT_STRESS_DAYS = [
    "2000-04-14 crash", "2001-09-17 event_shock", "2002-07-19 crash", "2008-09-29 crash",
    "2008-10-15 crash", "2010-05-06 flash_crash", "2011-08-08 downgrade_shock",
    "2015-08-24 flash_crash", "2018-02-05 vol_spike",
]
_DEFAULT_SLICES = [
    "heldout_2013_2015 2013-01-01 2015-12-31", "heldout_2016_2018 2016-01-01 2018-12-31",
    "stress_2015_08 2015-08-17 2015-09-04", "stress_2018_02 2018-01-29 2018-02-16",
]


@dataclass(frozen=True)
class TrainingSection:
    train_end: str = setting("2012-12-31", check=_iso_date,
                             doc="last bar date any training step may use")
    train_start: str = setting("", doc="first bar date (empty = from the first)")
    horizon: int = setting(1, check=at_least(1), doc="label: forward log return over N bars")
    seed: int = setting(7, doc="one seed for torch, CatBoost and shuffles")
    threads: int = setting(1, check=at_least(1), doc="BLAS/torch/faiss/CatBoost threads")
    cpcv_groups: int = setting(6, check=at_least(2),
                               doc="combinatorial purged CV: N contiguous groups")
    cpcv_test_groups: int = setting(2, check=at_least(1),
                                    doc="k test groups per split: C(N,k) splits, C(N-1,k-1) paths")
    embargo_bars: int = setting(5, check=at_least(0),
                                doc="bars dropped from training after each test group")
    catboost_iterations: int = setting(200, check=at_least(1),
                                       doc="CatBoost trees (task_type GPU only when CUDA is "
                                           "present)")
    catboost_depth: int = setting(3, check=between(1, 16),
                                  doc="tree depth: shallow, deep trees overfit daily data")
    catboost_learning_rate: float = setting(0.03, check=between(1e-4, 1.0),
                                            doc="CatBoost learning rate")
    catboost_l2: float = setting(10.0, check=at_least(0.0), doc="CatBoost leaf L2 regularisation")
    forecaster_hidden: list[int] = setting([64, 32], check=non_empty,
                                           doc="MLP hidden widths of the base forecaster")
    forecaster_epochs: int = setting(3, check=at_least(1),
                                   doc="few epochs: a longer fit overfits the noise")
    forecaster_lr: float = setting(1e-3, check=between(1e-6, 1.0),
                                   doc="base forecaster learning rate")
    forecaster_batch: int = setting(128, check=at_least(1), doc="base forecaster batch size")
    forecaster_weight_decay: float = setting(1e-3, check=at_least(0.0),
                                             doc="base forecaster weight decay")
    strategy_band: float = setting(0.005, check=between(0.0, 0.5),
                                   doc="no position while |p - base rate| <= band")
    stress_days: list[str] = setting(_DEFAULT_STRESS_DAYS, check=_dated_entries(2),
                                     doc='"YYYY-MM-DD taxonomy_label" named stress days')
    stress_worst_days: int = setting(8, check=at_least(0), doc="rule: N worst daily returns")
    stress_vol_spikes: int = setting(4, check=at_least(0), doc="rule: N largest vol jumps")
    anchor_span: int = setting(3, check=at_least(1), doc="anchor rows per stress day")
    slices: list[str] = setting(_DEFAULT_SLICES, check=_dated_entries(3),
                                doc='"name start end" held-out and stress date ranges')


@dataclass(frozen=True)
class QualityGatesSection:
    min_auc: float = setting(0.51, check=between(0.0, 1.0),
                             doc="mean CPCV-path AUC, out-of-fold (the sample scores ~0.52)")
    max_ece: float = setting(0.02, check=between(0.0, 1.0),
                             doc="mean CPCV-path expected_calibration_error of calibrated P(up)")
    min_ann_recall: float = setting(0.90, check=between(0.0, 1.0),
                                    doc="ANN recall@10 against exact search on held-out queries")
    min_ann_speedup: float = setting(2.0, check=at_least(0.0),
                                     doc="ANN speed-up over exact search (large indexes only)")
    speedup_min_vectors: int = setting(100_000, check=at_least(1),
                                       doc="min_ann_speedup is checked only from this index size")
    max_worst_path_drawdown: float = setting(0.55, check=between(0.0, 1.0),
                                             doc="worst CPCV-path max drawdown of the validation "
                                                 "strategy (fraction)")


@dataclass(frozen=True)
class ArtifactsSection:
    dir: str = setting("artifacts", check=non_empty,
                       doc="artifact set the daemon loads (a set, or a root with current/)")
# --- [projectx] (issue 5) ---
def _base_url_check(value: str) -> str | None:
    from daemon.execution.urls import base_url_problem

    return base_url_problem(value)


def _order_qps_check(value: float) -> str | None:
    from daemon.execution.ratelimit import MAX_ORDER_QPS

    if 0 < value <= MAX_ORDER_QPS:
        return None
    return f"must be > 0 and <= {MAX_ORDER_QPS:g} (the runbook's ceiling), got {value!r}"


def _window_check(value: str) -> str | None:
    from daemon.execution.ratelimit import RateLimitError, parse_window

    try:
        parse_window(value)
    except RateLimitError as err:
        return str(err)
    return None


@dataclass(frozen=True)
class ProjectXSection:
    base_url: str = setting(
        "https://api.topstepx.com", check=_base_url_check,
        doc="REST base of the Gateway (paths are /api/...); https, or http on loopback only",
    )
    username: str = setting("", doc="platform login name for Auth/loginKey ($PROJECTX_USERNAME "
                                    "when empty)")
    account: str = setting("", doc="account name or id; empty = the only active account")
    live: bool = setting(False, doc="`live` flag of Contract/search and History (false on "
                                    "simulated accounts)")
    connect_timeout_s: float = setting(5.0, check=at_least(0.1), doc="TCP/TLS connect timeout")
    request_timeout_s: float = setting(10.0, check=at_least(0.1),
                                       doc="read/write timeout of one request")
    rate_limit_qps: float = setting(2.0, reloadable=True, check=_order_qps_check,
                                    doc="Order/place per second (<= 5)")
    history_limit: str = setting("50/30", check=_window_check,
                                 doc="History/retrieveBars budget N/SECONDS")
    general_limit: str = setting("200/60", check=_window_check,
                                 doc="budget of every other endpoint N/SECONDS")
    token_refresh_margin_s: float = setting(300.0, check=at_least(0.0),
                                            doc="refresh the session token this long before exp")
    read_retries: int = setting(4, check=between(1, 10),
                                doc="attempts of a read on 429/5xx/transport errors")
    max_backoff_s: float = setting(30.0, check=at_least(0.1),
                                   doc="longest single wait between read attempts")
    bar_unit: int = setting(2, check=between(1, 5), doc="live bars: 1 s, 2 min, 3 h, 4 day, 5 "
                                                        "week, 6 month")
    bar_unit_number: int = setting(1, check=at_least(1), doc="live bars: units per bar")
    bar_poll_s: float = setting(2.0, check=at_least(0.1),
                                doc="live bars: settle time after a bar closes before polling")
    bar_lookback: int = setting(500, check=between(1, 20_000),
                                doc="live bars: history fetched on a first start")
# --- [execution] and [canary] (issue 5) ---
@dataclass(frozen=True)
class ExecutionSection:
    enabled: bool = setting(False, doc="true: trade through [projectx] (outbox, submitter, "
                                       "reconciliation, canary); false: ingest only")
    strategy: str = setting("pipeline", check=one_of("pipeline", "ma_crossover"),
                            doc="what the Trader drives: the model pipeline or the MA stand-in")
    cancel_open_on_kill: bool = setting(True, reloadable=True,
                                        doc="cancel our open orders when the kill switch engages")
    on_mismatch: str = setting(
        "halt", reloadable=True, check=one_of("halt", "adopt"),
        doc="a venue position the ledger cannot explain, or fills we did not place: halt "
            "(block new risk until `anchord ctl adopt`) or adopt the venue's and trade on")
    max_pending_age_s: float = setting(
        120.0, reloadable=True, check=at_least(0.0),
        doc="an intent found PENDING at start that is older than this is not sent")
    order_type: str = setting("market", reloadable=True, check=one_of("market", "limit"),
                              doc="orders for intents: market, or limit at the bar's close")
    limit_offset_ticks: int = setting(0, reloadable=True,
                                      doc="limit orders: ticks from the close, positive = "
                                          "passive (a buy below, a sell above)")
    limit_ttl_bars: int = setting(1, reloadable=True, check=at_least(1),
                                  doc="limit orders: cancel what is unfilled after this many "
                                      "bars")
    fsync_before_send: bool = setting(
        False, doc="fsync each order's outbox record before Order/place (one fsync per order); "
                   "off, a power cut may lose the record of an order that went out, and "
                   "start-up reconciliation recovers it from the venue by its customTag")
    settle_s: float = setting(0.5, reloadable=True, check=at_least(0.0),
                              doc="wait before looking up an order whose answer was lost")
    unknown_checks: int = setting(3, reloadable=True, check=between(1, 100),
                                  doc="lookups without the tag before resending it")
    lookup_retry_s: float = setting(1.0, reloadable=True, check=at_least(0.0),
                                    doc="wait after a failed lookup before the next")
    check_interval_s: float = setting(10.0, reloadable=True, check=at_least(0.05),
                                      doc="period of the in-flight/fill/position check")
    startup_retry_s: float = setting(5.0, check=at_least(0.05),
                                     doc="wait between start-up attempts (login, reconcile)")
    max_bar_age_s: float = setting(120.0, reloadable=True, check=at_least(0.0),
                                   doc="live: bars older than this (start-up history) are "
                                       "decided on but never traded")
    ma_fast: int = setting(5, check=at_least(1), doc="ma_crossover: fast SMA length (bars)")
    ma_slow: int = setting(20, check=at_least(2), doc="ma_crossover: slow SMA length (bars)")
    ma_size: int = setting(1, check=at_least(1), doc="ma_crossover: contracts long or short")


@dataclass(frozen=True)
class CanarySection:
    steps: list[int] = setting([5, 25, 50, 100], check=non_empty,
                               doc="percent of intents live at each step, ascending")
    healthy_windows: int = setting(2, check=at_least(1),
                                   doc="healthy windows in a row before stepping up")
    window_bars: int = setting(50, check=at_least(1), doc="bars per health window")
    max_risk_block_rate: float = setting(0.5, reloadable=True, check=between(0.0, 1.0),
                                         doc="a window is unhealthy above this block rate")
    max_p99_latency_ms: float = setting(50.0, reloadable=True, check=at_least(0.0),
                                        doc="unhealthy above this p99 latency (live only)")
    min_ann_recall: float = setting(0.9, reloadable=True, check=between(0.0, 1.0),
                                    doc="unhealthy below this ANN recall@k")


# --- [pipeline] [limits] [threads] (issue 4) ---
def _sessions_check(value: list[str]) -> str | None:
    from daemon.risk import parse_session

    for item in value:
        try:
            parse_session(item)
        except ValueError as err:
            return str(err)
    return None


def _calendar_check(value: str) -> str | None:
    from daemon.trading_calendar import check_calendar_name

    return check_calendar_name(value)


def _budgets_check(value: list[str]) -> str | None:
    for item in value:
        name, sep, num = item.partition("=")
        try:
            ok = bool(sep and name.strip() and float(num) > 0)
        except ValueError:
            ok = False
        if not ok:
            return f"expected entries like 'retrieve=500' (stage=µs), got {item!r}"
    return None


@dataclass(frozen=True)
class PipelineSection:
    min_edge: float = setting(0.04, reloadable=True, check=between(0.0, 1.0),
                              doc="|2·p_up−1| below this → flat")
    full_edge: float = setting(0.3, reloadable=True, check=between(0.0, 1.0),
                               doc="edge at which the position reaches the volatility target")
    vol_target: float = setting(2000.0, reloadable=True, check=at_least(0.0),
                                doc="target P&L std per bar at full edge (currency)")
    point_value: float = setting(50.0, check=at_least(0.0), doc="currency per point per contract")
    vol_halflife_bars: float = setting(20.0, check=at_least(1.0),
                                       doc="half-life of the EWMA volatility used for sizing")
    stage_budgets_us: list[str] = setting(
        ["end_to_end=1000", "retrieve=500", "forecast=150", "score=150"], reloadable=True,
        check=_budgets_check, doc="stage=µs; a sample over its budget logs a warning",
    )
    latency_log_interval_s: float = setting(60.0, reloadable=True, check=at_least(1.0),
                                            doc="period of the `latency` log event and journal "
                                                "record")
    recall_fraction: float = setting(0.01, reloadable=True, check=between(0.0, 1.0),
                                     doc="fraction of queries also answered by exact search")
    recall_window: int = setting(200, check=at_least(1),
                                 doc="rolling window of the recall monitor (checked queries)")
    ece_window: int = setting(250, check=at_least(10),
                              doc="rolling window of the calibration monitor (resolved bars)")
    ece_target: float = setting(0.08, reloadable=True, check=between(0.0, 1.0),
                                doc="rolling ECE above this logs `ece_drift`")
    ece_min_samples: int = setting(100, check=at_least(10),
                                   doc="resolved bars needed before ECE is reported")
    recalibrate: bool = setting(True, reloadable=True,
                                doc="refit the calibrator on ece_drift (applied only if better)")
    tyler_every: int = setting(1, check=at_least(0),
                               doc="update the live Tyler shape every N bars (0 = never)")


@dataclass(frozen=True)
class LimitsSection:
    max_order_size: int = setting(2, reloadable=True, check=at_least(1),
                                  doc="contracts per order")
    max_position: int = setting(4, reloadable=True, check=at_least(0),
                                doc="|position| after the order, contracts")
    max_daily_loss: float = setting(5000.0, reloadable=True, check=at_least(0.0),
                                    doc="currency per exchange trading day, realised + "
                                        "unrealised - fees; 0 = off; reducing orders pass")
    sessions: list[str] = setting([], reloadable=True, check=_sessions_check,
                                  doc="extra restriction beside the exchange calendar: "
                                      "'Mon-Fri 13:30-20:00' (UTC); empty = none")
    stale_bar_s: float = setting(0.0, reloadable=True, check=at_least(0.0),
                                 doc="deny when the bar is older than this (0 = off)")
    max_price_deviation: float = setting(0.1, reloadable=True, check=at_least(0.0),
                                         doc="fraction from the last bar's close (0 = off)")
    max_orders_per_minute: int = setting(5, reloadable=True, check=at_least(0),
                                         doc="accepted orders per 60 s; 0 = off")
    exchange_calendar: str = setting(
        "CME_Equity", check=_calendar_check,
        doc="the exchange's sessions and trading day (pandas_market_calendars name; "
            "'24/7' = always open, UTC days); orders are denied while it is closed")
    calendar_file: str = setting("", reloadable=True,
                                 doc="scheduled events, one 'ISO-time[,name]' per line")


@dataclass(frozen=True)
class ThreadsSection:
    blas: int = setting(1, check=at_least(1), doc="OpenBLAS/MKL/OpenMP pool size")
    torch: int = setting(1, check=at_least(1), doc="torch intra-op threads")
    faiss: int = setting(1, check=at_least(1), doc="FAISS OpenMP threads")


@dataclass(frozen=True)
class RuntimeConfig:
    daemon: DaemonSection = field(default_factory=DaemonSection)
    data: DataSection = field(default_factory=DataSection)
    risk: RiskSection = field(default_factory=RiskSection)
    metrics: MetricsSection = field(default_factory=MetricsSection)
    adapters: AdaptersSection = field(default_factory=AdaptersSection)
    promotion: PromotionSection = field(default_factory=PromotionSection)
    tyler: TylerSection = field(default_factory=TylerSection)
    index: IndexSection = field(default_factory=IndexSection)
    training: TrainingSection = field(default_factory=TrainingSection)
    quality_gates: QualityGatesSection = field(default_factory=QualityGatesSection)
    artifacts: ArtifactsSection = field(default_factory=ArtifactsSection)
    projectx: ProjectXSection = field(default_factory=ProjectXSection)
    execution: ExecutionSection = field(default_factory=ExecutionSection)
    canary: CanarySection = field(default_factory=CanarySection)
    pipeline: PipelineSection = field(default_factory=PipelineSection)
    limits: LimitsSection = field(default_factory=LimitsSection)
    threads: ThreadsSection = field(default_factory=ThreadsSection)
    # Where the file was read from; relative paths in the file are relative to its folder.
    source_path: str = field(default="runtime.toml", metadata={"internal": True})

    def path(self, value: str) -> Path:
        """Resolve a path from the config relative to the config file's folder."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else (Path(self.source_path).resolve().parent / p).resolve()
