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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.config_schema import (  # noqa: F401  (re-exported: the sections are daemon.config's)
    AdaptersSection,
    ArtifactsSection,
    CanarySection,
    Check,
    DaemonSection,
    DataSection,
    ExecutionSection,
    IndexSection,
    LimitsSection,
    MetricsSection,
    PipelineSection,
    ProjectXSection,
    PromotionSection,
    QualityGatesSection,
    RiskSection,
    RuntimeConfig,
    ThreadsSection,
    TrainingSection,
    TylerSection,
    at_least,
    between,
    non_empty,
    one_of,
    setting,
)
from daemon.errors import ConfigError

# Keys that existed once, and what replaced them (a file that still has one is refused with it).
REPLACED_KEYS = {
    "[execution].adopt_venue_position": 'replaced by [execution].on_mismatch = "adopt" '
                                        '(or "halt", the default)',
}


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
            qualified = f"[{name}].{key}"
            if qualified in REPLACED_KEYS:
                raise ConfigError(path, qualified, REPLACED_KEYS[qualified])
            known = ", ".join(sorted(fields))
            raise ConfigError(path, qualified, f"unknown key (known keys: {known})")
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
