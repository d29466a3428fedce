"""runtime.toml: validation with errors naming the key, reload semantics, CLI exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.config import apply_reload, load_config, parse_config, reloadable_keys
from daemon.errors import ConfigError
from tests.helpers import ROOT, basic_config, run_cli, write_config


def test_shipped_runtime_toml_is_valid() -> None:
    cfg = load_config(ROOT / "runtime.toml")
    assert cfg.data.source == "sample:sp500"
    assert cfg.daemon.log_level == "info"


@pytest.mark.parametrize(
    ("doc", "key"),
    [
        ({"data": {"pace": "fast"}}, "[data].pace"),
        ({"data": {"at_end": "sometimes"}}, "[data].at_end"),
        ({"data": {"colour": "blue"}}, "[data].colour"),
        ({"daemon": {"log_level": 3}}, "[daemon].log_level"),
        ({"risk": {"kill_switch": "yes"}}, "[risk].kill_switch"),
        ({"risk": {"embargo_after_min": -1}}, "[risk].embargo_after_min"),
        ({"nonsense": {}}, "[nonsense]"),
        ({"data": {"start": "yesterday"}}, "[data].start"),
    ],
)
def test_invalid_values_name_the_key(doc: dict, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(doc, "x.toml")
    assert err.value.key == key
    assert str(err.value).startswith(f"x.toml: {key}: ")


def test_config_is_immutable() -> None:
    cfg = parse_config({})
    with pytest.raises(AttributeError):
        cfg.data.pace = 3.0  # type: ignore[misc]


def test_reload_applies_only_reloadable_keys() -> None:
    old = parse_config({"data": {"pace": 0.0, "source": "sample:sp500"}})
    new = parse_config({"data": {"pace": 5.0, "source": "sample:nasdaq"},
                        "daemon": {"log_level": "debug"}})
    effective, changes = apply_reload(old, new)
    assert effective.data.pace == 5.0
    assert effective.daemon.log_level == "debug"
    assert effective.data.source == "sample:sp500"  # needs a restart
    by_key = {c.key: c for c in changes}
    assert by_key["[data].source"].reloadable is False
    assert by_key["[data].pace"].reloadable is True
    assert "[data].pace" in reloadable_keys() and "[data].source" not in reloadable_keys()


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[data]\npace = 'fast'\n", "[data].pace"),
        ("[data]\nbogus = 1\n", "[data].bogus"),
        ("[daemon\n", "not valid TOML"),
    ],
)
def test_run_refuses_bad_config_with_one_line(tmp_path: Path, text: str, needle: str) -> None:
    cfg = write_config(tmp_path, text)
    result = run_cli("run", "--config", str(cfg))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert needle in lines[0] and str(cfg) in lines[0]
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_run_refuses_missing_config(tmp_path: Path) -> None:
    result = run_cli("run", "--config", str(tmp_path / "nope.toml"))
    assert result.returncode == 2
    assert "nope.toml" in result.stderr and "file not found" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_run_refuses_missing_data_file(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, basic_config(source=str(tmp_path / "missing.csv")))
    result = run_cli("run", "--config", str(cfg))
    assert result.returncode == 2
    assert "missing.csv" in result.stderr and "Traceback" not in result.stderr
