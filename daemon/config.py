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


# --- [pipeline] [limits] [threads] (issue 4) ---
def _sessions_check(value: list[str]) -> str | None:
    from daemon.risk import parse_session

    for item in value:
        try:
            parse_session(item)
        except ValueError as err:
            return str(err)
    return None


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
    artifacts_dir: str = setting(
        "", doc="artifact set to serve when [artifacts].dir is absent (empty = no pipeline)"
    )
    min_edge: float = setting(0.04, reloadable=True, check=between(0.0, 1.0),
                              doc="|2·p_up−1| below this → flat")
    full_edge: float = setting(0.3, reloadable=True, check=between(0.0, 1.0),
                               doc="edge at which the position reaches the volatility target")
    vol_target: float = setting(2000.0, reloadable=True, check=at_least(0.0),
                                doc="target P&L std per bar at full edge (currency)")
    point_value: float = setting(50.0, check=at_least(0.0), doc="currency per point per contract")
    vol_halflife_bars: float = setting(20.0, check=at_least(1.0))
    stage_budgets_us: list[str] = setting(
        ["end_to_end=1000", "retrieve=500", "forecast=150", "score=150"], reloadable=True,
        check=_budgets_check, doc="stage=µs; a sample over its budget logs a warning",
    )
    latency_log_interval_s: float = setting(60.0, reloadable=True, check=at_least(1.0))
    recall_fraction: float = setting(0.01, reloadable=True, check=between(0.0, 1.0),
                                     doc="fraction of queries also answered by exact search")
    recall_window: int = setting(200, check=at_least(1))
    ece_window: int = setting(250, check=at_least(10))
    ece_target: float = setting(0.08, reloadable=True, check=between(0.0, 1.0))
    ece_min_samples: int = setting(100, check=at_least(10))
    recalibrate: bool = setting(True, reloadable=True,
                                doc="refit the calibrator on ece_drift (applied only if better)")
    tyler_every: int = setting(1, check=at_least(0),
                               doc="update the live Tyler shape every N bars (0 = never)")


@dataclass(frozen=True)
class LimitsSection:
    max_order_size: int = setting(2, reloadable=True, check=at_least(1))
    max_position: int = setting(4, reloadable=True, check=at_least(0))
    max_daily_loss: float = setting(5000.0, reloadable=True, check=at_least(0.0),
                                    doc="currency; 0 = off; reducing orders still pass")
    sessions: list[str] = setting([], reloadable=True, check=_sessions_check,
                                  doc="'Mon-Fri 13:30-20:00' (UTC); empty = always open")
    stale_bar_s: float = setting(0.0, reloadable=True, check=at_least(0.0),
                                 doc="deny when the bar is older than this (0 = off)")
    max_price_deviation: float = setting(0.1, reloadable=True, check=at_least(0.0),
                                         doc="fraction from the last bar's close (0 = off)")
    max_orders_per_minute: int = setting(5, reloadable=True, check=at_least(0))
    calendar_file: str = setting("", reloadable=True,
                                 doc="scheduled events, one 'ISO-time[,name]' per line")


@dataclass(frozen=True)
class ThreadsSection:
    blas: int = setting(1, check=at_least(1), doc="OpenBLAS/MKL/OpenMP pool size")
    torch: int = setting(1, check=at_least(1))
    faiss: int = setting(1, check=at_least(1))


@dataclass(frozen=True)
class RuntimeConfig:
    daemon: DaemonSection = field(default_factory=DaemonSection)
    data: DataSection = field(default_factory=DataSection)
    risk: RiskSection = field(default_factory=RiskSection)
    metrics: MetricsSection = field(default_factory=MetricsSection)
    pipeline: PipelineSection = field(default_factory=PipelineSection)
    limits: LimitsSection = field(default_factory=LimitsSection)
    threads: ThreadsSection = field(default_factory=ThreadsSection)
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
