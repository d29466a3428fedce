"""Wiring of the pipeline into a running daemon: `attach_pipeline(daemon)`.

Pins thread pools (`[threads]`), loads and verifies the artifact set at `[artifacts].dir`
(ArtifactError, exit 2, if it is altered; no pipeline, with a warning, if there is none),
builds the `Pipeline` with limits and parameters from the config, and registers: the status
provider `pipeline` (latency p99 and monitors for `ctl status`), prometheus exporters, a reload
check (the calendar file is read before a reload applies anything), the off-path after-bar
task, and the periodic `latency` / `monitor` log events and journal records (also every
`journal_every_bars` bars, so a fast replay leaves them too).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import anyio

from daemon.config import RuntimeConfig
from daemon.errors import ConfigError
from daemon.pipeline.decision import DecisionParams
from daemon.risk import RiskLimits, load_calendar, parse_session

if TYPE_CHECKING:  # the heavy imports (torch, faiss) happen only when there is a set to serve
    from daemon.pipeline.pipeline import Pipeline, PipelineParams


def limits_from_config(cfg: RuntimeConfig) -> RiskLimits:
    """The gate's limits from `[limits]`."""
    lim = cfg.limits
    return RiskLimits(max_order_size=lim.max_order_size, max_position=lim.max_position,
                      max_daily_loss=lim.max_daily_loss,
                      sessions=tuple(parse_session(s) for s in lim.sessions),
                      stale_bar_s=lim.stale_bar_s, max_price_deviation=lim.max_price_deviation,
                      max_orders_per_minute=lim.max_orders_per_minute)


def budgets_from_config(cfg: RuntimeConfig) -> dict[str, float]:
    """`[pipeline].stage_budgets_us` as {stage: µs}."""
    out = {}
    for item in cfg.pipeline.stage_budgets_us:
        name, _, value = item.partition("=")
        out[name.strip()] = float(value)
    return out


# The PipelineParams fields that reloadable keys set (`reconfigure` copies these).
RELOADABLE_PARAMS = ("decision", "tyler_weight", "tyler_iterations", "recall_fraction",
                     "ece_target", "recalibrate")


def params_from_config(cfg: RuntimeConfig, arts: Any) -> PipelineParams:
    """Serving parameters from `[pipeline]`, `[limits]`, `[tyler]` and the artifact set."""
    from daemon.pipeline.pipeline import PipelineParams

    pc = cfg.pipeline
    ap = getattr(arts, "params", {}) or {}
    index_params = getattr(getattr(arts, "index", None), "params", None)
    window = int(ap.get("window") or getattr(index_params, "window", 8))
    k = int(ap.get("k") or getattr(index_params, "k", 20))
    decision = DecisionParams(min_edge=pc.min_edge, full_edge=pc.full_edge,
                              vol_target=pc.vol_target, point_value=pc.point_value,
                              max_position=cfg.limits.max_position,
                              max_order_size=cfg.limits.max_order_size)
    return PipelineParams(
        decision=decision, k=k, window=window, vol_halflife=pc.vol_halflife_bars,
        tyler_every=pc.tyler_every, tyler_weight=cfg.tyler.live_weight,
        tyler_iterations=cfg.tyler.live_iterations, recall_fraction=pc.recall_fraction,
        recall_window=pc.recall_window, horizon=int(ap.get("horizon") or cfg.training.horizon),
        ece_window=pc.ece_window, ece_target=pc.ece_target,
        ece_min_samples=pc.ece_min_samples,
        replay=not cfg.data.source.startswith("projectx"), recalibrate=pc.recalibrate)


def attach_pipeline(daemon: Any) -> Pipeline | None:
    """Load the artifact set and attach a warm pipeline to `daemon` (sets `daemon.pipeline`).

    Returns None (and logs `pipeline_disabled`) when `[artifacts].dir` does not exist; raises
    ArtifactError when it exists but does not verify, ConfigError for a bad calendar file."""
    from daemon.threads import apply_thread_limits, pin_blas

    cfg: RuntimeConfig = daemon.cfg
    log = daemon.log
    daemon.pipeline = None
    folder = cfg.path(cfg.artifacts.dir)
    if not folder.exists():
        log.info("threads_set", **pin_blas(cfg.threads.blas))
        log.warning("pipeline_disabled", reason=f"no artifact set at {folder}")
        return None
    threads = apply_thread_limits(cfg.threads.blas, cfg.threads.torch, cfg.threads.faiss)
    log.info("threads_set", **threads)
    from daemon.pipeline.latency import LatencyRecorder
    from daemon.pipeline.pipeline import Pipeline
    from daemon.training.artifacts import load_artifact_set

    t0 = time.perf_counter()
    arts = load_artifact_set(folder)
    load_calendar_into(daemon, cfg)
    metrics = daemon.metrics

    last_warned: dict[str, float] = {}
    suppressed: dict[str, int] = {}

    def over_budget(stage: str, value_us: float, budget_us: float) -> None:
        # Counted every time; logged at most once per stage every 10 s (with the count since).
        metrics.pipeline_over_budget.labels(stage=stage).inc()
        now = time.monotonic()
        if now - last_warned.get(stage, -1e9) < 10.0:
            suppressed[stage] = suppressed.get(stage, 0) + 1
            return
        last_warned[stage] = now
        log.warning("latency_over_budget", stage=stage, value_us=round(value_us, 1),
                    budget_us=budget_us, suppressed_since_last=suppressed.pop(stage, 0))

    def export(stage: str, seconds: float) -> None:
        metrics.pipeline_stage.labels(stage=stage).observe(seconds)

    recorder = LatencyRecorder(budgets_from_config(cfg), on_over_budget=over_budget,
                               exporters=[export])
    pipe = Pipeline(arts, params_from_config(cfg, arts), limits_from_config(cfg),
                    risk=daemon.risk, recorder=recorder, metrics=metrics, log=log,
                    store=daemon.store, clock=daemon.clock)
    pipe.recal_dir = daemon.state_dir / "calibration"
    log.info("pipeline_loaded", artifact_dir=str(arts.dir), load_s=round(time.perf_counter() - t0,
                                                                          2),
             index_size=len(arts.index), forecaster_path=pipe.forecaster.kind,
             scorer_path=pipe.scorer.kind)
    from daemon.pipeline import state as pipeline_state

    pipeline_state.attach(pipe, daemon.store, lambda: run_identity(daemon), log)
    daemon.pipeline = pipe
    daemon.status_providers["pipeline"] = pipe.status
    daemon.reload_checks.append(lambda new, _changes: prepare_reconfigure(daemon, pipe, new))
    _add_tasks(daemon, pipe)
    return pipe


def read_calendar(cfg: RuntimeConfig) -> list[datetime]:
    """The scheduled events of `[limits].calendar_file` ([] when unset); ConfigError naming the
    key, the file and the line when it cannot be read or parsed."""
    if not cfg.limits.calendar_file:
        return []
    try:
        return load_calendar(cfg.path(cfg.limits.calendar_file))
    except (OSError, ValueError) as err:
        raise ConfigError(cfg.source_path, "[limits].calendar_file", str(err)) from None


def run_identity(daemon: Any) -> str:
    """Which run the rolling state belongs to: live trading, or one replay's run epoch (a
    replay that starts over is another run and starts its state fresh)."""
    if getattr(daemon, "live_bars", None) is not None:
        return "live"
    cursor = daemon.ingest.cursor
    return f"replay:{cursor.source_id}:{cursor.epoch}"


def load_calendar_into(daemon: Any, cfg: RuntimeConfig,
                       events: list[datetime] | None = None) -> None:
    """Set the risk state's scheduled events from `[limits].calendar_file` (or from `events`,
    already read by `read_calendar`); ConfigError when the file is bad."""
    events = read_calendar(cfg) if events is None else events
    daemon.risk.set_calendar(events)
    if cfg.limits.calendar_file:
        daemon.log.info("calendar_loaded", path=str(cfg.path(cfg.limits.calendar_file)),
                        events=len(events))


def prepare_reconfigure(daemon: Any, pipe: Pipeline, cfg: RuntimeConfig) -> Callable[[], None]:
    """The pipeline's reload check: read the calendar file now (ConfigError refuses the whole
    reload) and return the step that applies `cfg` with it (`reconfigure`, which cannot fail)."""
    events = read_calendar(cfg)
    return lambda: reconfigure(daemon, pipe, cfg, events)


def reconfigure(daemon: Any, pipe: Pipeline, cfg: RuntimeConfig,
                events: list[datetime]) -> None:
    """Apply the reloadable `[pipeline]`/`[tyler]`/`[limits]` keys and the calendar's `events`
    to a running pipeline (`[pipeline].latency_log_interval_s` is read from the daemon's config
    by the periodic task)."""
    import dataclasses

    pipe.limits = limits_from_config(cfg)
    new = params_from_config(cfg, pipe.arts)
    # Only the parameters reloadable keys feed: the rest (window, k, horizon...) stay the ones
    # the pipeline was built with.
    pipe.params = dataclasses.replace(pipe.params, **{
        name: getattr(new, name) for name in RELOADABLE_PARAMS})
    pipe.calibration.target_ece = cfg.pipeline.ece_target
    frac = cfg.pipeline.recall_fraction
    pipe.recall.every = max(1, round(1.0 / frac)) if frac > 0 else 0
    pipe.recorder.budgets_ns = {k: int(v * 1000) for k, v in budgets_from_config(cfg).items()}
    load_calendar_into(daemon, cfg, events)


def record_latency(daemon: Any, pipe: Pipeline, source: str) -> None:
    """Log the `latency` event and journal `latency` + `monitor` records (the run report's)."""
    snap = pipe.recorder.snapshot(with_hist=True)
    if not snap["end_to_end"]:
        return
    now = daemon.event_time()
    daemon.log.info("latency", source=source, end_to_end=snap["end_to_end"],
                    stages=snap["stages"], over_budget=snap["over_budget"])
    daemon.store.journal("latency", now, snap)
    status = pipe.status()
    daemon.store.journal("monitor", now, {
        "ann_recall": status["ann_recall"], "ann_speedup": status["ann_speedup"],
        "ece": status["ece"], "tyler_shape_drift": status["tyler_shape_drift"]})


def _add_tasks(daemon: Any, pipe: Pipeline) -> None:
    wake = {"event": anyio.Event()}
    def bar_done() -> None:
        every = max(1, pipe.params.journal_every_bars)  # read per bar: params may be replaced
        if pipe.bars_decided and pipe.bars_decided % every == 0:
            record_latency(daemon, pipe, "bars")

    pipe.on_bar_done = bar_done
    pipe.on_decided = lambda: wake["event"].set()

    async def after_bars() -> None:
        # Runs the off-path work once the loop is free after a bar's handlers.
        while True:
            await wake["event"].wait()
            wake["event"] = anyio.Event()
            if pipe._after_pending:
                pipe.after_bar()

    async def periodic() -> None:
        while True:
            await anyio.sleep(daemon.cfg.pipeline.latency_log_interval_s)
            record_latency(daemon, pipe, "timer")

    daemon.tasks.extend([after_bars, periodic])
