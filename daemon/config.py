"""runtime.toml: the one configuration file.

Each section is a frozen dataclass; each key is declared with `setting(...)`, which says whether
SIGHUP / `anchord ctl reload` may change it at run time (`reloadable=True`) and how it is checked.
Unknown sections and keys are refused; every error names the file, the key and what is wrong.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon.errors import ConfigError

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
        "info", reloadable=True, check=one_of("debug", "info", "warning", "error")
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
    at_end: str = setting("idle", check=one_of("idle", "exit"))
    contract: str = setting("CON.F.US.EP.Z26", check=non_empty, doc="ProjectX contract id")
    start: str = setting("", doc="replay only bars at or after this ISO date (empty = all)")
    end: str = setting("", doc="replay only bars at or before this ISO date (empty = all)")


@dataclass(frozen=True)
class RiskSection:
    kill_switch: bool = setting(
        False, reloadable=True, doc="true engages the kill switch; false never releases it"
    )
    embargo_before_min: float = setting(15.0, reloadable=True, check=at_least(0.0))
    embargo_after_min: float = setting(15.0, reloadable=True, check=at_least(0.0))


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
        "", reloadable=True, doc="command run on kill, rollback and unhealthy canary (argv split"
        " on spaces; the alert is passed as JSON on stdin); empty = none",
    )


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
    adopt_venue_position: bool = setting(
        False, doc="at start, adopt a venue position the outbox cannot explain (else refuse)")
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


@dataclass(frozen=True)
class RuntimeConfig:
    daemon: DaemonSection = field(default_factory=DaemonSection)
    data: DataSection = field(default_factory=DataSection)
    risk: RiskSection = field(default_factory=RiskSection)
    metrics: MetricsSection = field(default_factory=MetricsSection)
    projectx: ProjectXSection = field(default_factory=ProjectXSection)
    execution: ExecutionSection = field(default_factory=ExecutionSection)
    canary: CanarySection = field(default_factory=CanarySection)
    # Where the file was read from; relative paths in the file are relative to its folder.
    source_path: str = field(default="runtime.toml", metadata={"internal": True})

    def path(self, value: str) -> Path:
        """Resolve a path from the config relative to the config file's folder."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else (Path(self.source_path).resolve().parent / p).resolve()


def _sections(cls: type) -> dict[str, type]:
    hints = typing.get_type_hints(cls)
    return {
        f.name: hints[f.name]
        for f in dataclasses.fields(cls)
        if not f.metadata.get("internal")
    }


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, path: str, key: str) -> Any:
    """Check `value` against the annotation `tp`; ints are accepted where floats are."""
    origin = typing.get_origin(tp)
    if origin in (list, tuple):
        (item_tp, *_) = typing.get_args(tp) or (Any,)
        if not isinstance(value, list):
            raise ConfigError(path, key, f"expected a list, got {type(value).__name__}")
        return [_coerce(v, item_tp, path, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin in (types.UnionType, typing.Union):
        errors = []
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, path, key)
            except ConfigError as err:
                errors.append(err.problem)
        raise ConfigError(path, key, " or ".join(errors))
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(path, key, f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, key, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(path, key, f"expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(path, key, f"expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(path, key, f"expected a string, got {value!r}")
        return value
    raise ConfigError(path, key, f"unsupported type {_type_name(tp)}")


def _build_section(cls: type, raw: Any, path: str, name: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(path, f"[{name}]", "expected a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(path, f"[{name}].{key}", f"unknown key (known keys: {known})")
    values = {}
    for key, value in raw.items():
        qualified = f"[{name}].{key}"
        coerced = _coerce(value, hints[key], path, qualified)
        check = fields[key].metadata.get("check")
        problem = check(coerced) if check else None
        if problem:
            raise ConfigError(path, qualified, problem)
        values[key] = coerced
    return cls(**values)


def parse_config(data: dict[str, Any], path: str = "runtime.toml") -> RuntimeConfig:
    """Validate a parsed TOML document into a RuntimeConfig, or raise ConfigError naming the key."""
    sections = _sections(RuntimeConfig)
    for name in data:
        if name not in sections:
            known = ", ".join(f"[{s}]" for s in sorted(sections))
            raise ConfigError(path, f"[{name}]", f"unknown section (known sections: {known})")
    built = {name: _build_section(cls, data.get(name, {}), path, name)
             for name, cls in sections.items()}
    cfg = RuntimeConfig(**built, source_path=str(path))
    return validate_cross(cfg)


def validate_cross(cfg: RuntimeConfig) -> RuntimeConfig:
    """Checks that involve more than one key; raises ConfigError naming the first key involved."""
    for key in ("start", "end"):
        value = getattr(cfg.data, key)
        if value:
            from daemon.timeutil import parse_utc

            try:
                parse_utc(value)
            except ValueError as err:
                raise ConfigError(cfg.source_path, f"[data].{key}", str(err)) from None
    steps = cfg.canary.steps
    if any(not 0 < p <= 100 for p in steps) or list(steps) != sorted(steps):
        raise ConfigError(cfg.source_path, "[canary].steps",
                          f"must be ascending percentages in (0, 100], got {steps!r}")
    if cfg.execution.ma_fast >= cfg.execution.ma_slow:
        raise ConfigError(cfg.source_path, "[execution].ma_fast",
                          f"must be below ma_slow ({cfg.execution.ma_slow})")
    return cfg


def load_config(path: str | Path) -> RuntimeConfig:
    """Read and validate runtime.toml; raise ConfigError (file, key, problem) when it is bad."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), None, "file not found") from None
    except OSError as err:
        raise ConfigError(str(path), None, f"cannot read: {err.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(str(path), None, f"not valid TOML: {err}") from None
    return parse_config(data, str(path))


@dataclass(frozen=True)
class Change:
    key: str
    old: Any
    new: Any
    reloadable: bool


def diff_configs(old: RuntimeConfig, new: RuntimeConfig) -> list[Change]:
    """Every key whose value differs between two configs, with whether it may be reloaded."""
    changes = []
    for name in _sections(RuntimeConfig):
        a, b = getattr(old, name), getattr(new, name)
        for f in dataclasses.fields(a):
            va, vb = getattr(a, f.name), getattr(b, f.name)
            if va != vb:
                changes.append(Change(f"[{name}].{f.name}", va, vb, f.metadata["reloadable"]))
    return changes


def apply_reload(old: RuntimeConfig, new: RuntimeConfig) -> tuple[RuntimeConfig, list[Change]]:
    """The config in force after a reload: `old` with only the reloadable changes of `new`.

    Returns it with the full list of changes (non-reloadable ones are kept at their old value
    and need a restart).
    """
    changes = diff_configs(old, new)
    sections = {}
    for name in _sections(RuntimeConfig):
        a, b = getattr(old, name), getattr(new, name)
        updates = {
            f.name: getattr(b, f.name)
            for f in dataclasses.fields(a)
            if f.metadata["reloadable"] and getattr(a, f.name) != getattr(b, f.name)
        }
        sections[name] = dataclasses.replace(a, **updates) if updates else a
    return dataclasses.replace(old, **sections), changes


def reloadable_keys() -> list[str]:
    """All keys that SIGHUP may change without a restart (for docs and tests)."""
    keys = []
    for name, cls in _sections(RuntimeConfig).items():
        keys += [f"[{name}].{f.name}" for f in dataclasses.fields(cls) if f.metadata["reloadable"]]
    return keys
