"""`anchord preflight` against a real setup (a small trained artifact set, a migrated store, the
paper venue on loopback, a key in the environment): every row passes, and breaking any one
checklist item fails that row (and only the rows that depend on it)."""

from __future__ import annotations

import shutil
import socket
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from daemon.preflight import METADATA_FILE, run_checks
from daemon.store import Store
from daemon.venue import venue_in_thread
from tests.execution_support import API_KEY, CONTRACT, execution_doc, toml_text
from tests.helpers import cli_env, run_cli
from tests.venue_support import sp500

ROWS = ["config valid", "artifact manifest verified", "quality gates pass", "metadata collected",
        "kill switch off", "state store healthy", "credentials present", "venue reachable"]


@pytest.fixture(scope="module")
def trained(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small trained set: the session's shared one when the suite has it (`trained_set`),
    else trained here (reduced config, sample:sp500 through 2012, ~10 s)."""
    try:
        return request.getfixturevalue("trained_set")[0]
    except pytest.FixtureLookupError:
        pass
    try:
        from tests.training_support import build
    except ImportError:
        from tests.test_training import build
    out = tmp_path_factory.mktemp("preflight_train") / "set"
    build(out)
    return out


@pytest.fixture(scope="module")
def venue_url() -> Iterator[str]:
    with venue_in_thread(sp500(), contract=CONTRACT, username="paper", api_key=API_KEY) as v:
        yield v.base_url


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setup(tmp: Path, artifacts: Path, base_url: str, *, extra: dict[str, Any] | None = None,
          bad_key: bool = False) -> Path:
    """A deployable folder: runtime.toml, a migrated store, the artifact set; returns the
    config path."""
    # Gates a small set passes (as in test_training): the default thresholds are for a full set.
    gates = {"min_auc": 0.5, "max_ece": 0.5, "max_worst_path_drawdown": 0.99}
    more: dict[str, Any] = {"artifacts": {"dir": str(artifacts)},
                            "quality_gates": {**gates, **(extra or {}).get("quality_gates", {})}}
    doc = execution_doc(tmp, base_url, start="2013-01-01", end="2013-02-01", extra=more)
    if bad_key:
        doc["data"]["no_such_key"] = 1
    cfg = tmp / "runtime.toml"
    cfg.write_text(toml_text(doc))
    Store(tmp / "state" / "store.sqlite").close()
    return cfg


def _flip_byte(tmp: Path, artifacts: Path) -> Path:
    copy = tmp / "set"
    shutil.copytree(artifacts, copy)
    target = copy / "calibrator.json"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    return copy


def _kill(cfg: Path) -> None:
    store = Store(cfg.parent / "state" / "store.sqlite")
    store.save_kill_switch(True, "drill", datetime.now(UTC))
    store.close()


def _half_migrated(cfg: Path) -> None:
    conn = sqlite3.connect(cfg.parent / "state" / "store.sqlite")
    conn.executescript("DROP TABLE audit_index; DELETE FROM schema_migrations WHERE version = 4;")
    conn.close()


def _corrupt(cfg: Path) -> None:
    path = cfg.parent / "state" / "store.sqlite"
    path.write_bytes(b"this is not a database" * 100)


# case: (config extras, bad config key, break the artifacts, after set-up, key in env,
#        venue unreachable, the rows that must fail)
Case = tuple[dict[str, Any], bool, bool, Callable[[Path], None] | None, bool, bool, set[str]]
CASES: dict[str, Case] = {
    "bad config key": ({}, True, False, None, True, False, set(ROWS)),
    "flipped artifact byte": ({}, False, True, None, True, False,
                              {"artifact manifest verified", "quality gates pass"}),
    "tightened gate": ({"quality_gates": {"min_auc": 0.99}}, False, False, None, True, False,
                       {"quality gates pass"}),
    "kill switch engaged": ({}, False, False, _kill, True, False, {"kill switch off"}),
    "half-migrated store": ({}, False, False, _half_migrated, True, False,
                            {"state store healthy"}),
    "corrupted store": ({}, False, False, _corrupt, True, False,
                        {"kill switch off", "state store healthy"}),
    "no API key": ({}, False, False, None, False, False,
                   {"credentials present", "venue reachable"}),
    "venue unreachable": ({}, False, False, None, True, True, {"venue reachable"}),
}


def test_every_check_passes_on_a_real_setup(trained: Path, venue_url: str, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = setup(tmp_path, trained, venue_url)
    monkeypatch.setenv("PROJECTX_API_KEY", API_KEY)
    results = run_checks(cfg)
    assert [r.name for r in results] == ROWS
    assert all(r.ok for r in results), [(r.name, r.detail) for r in results if not r.ok]
    meta = orjson.loads((tmp_path / "state" / METADATA_FILE).read_bytes())
    assert meta["git_sha"] and meta["env_hash"] and meta["artifact_set"] == str(trained)
    assert API_KEY not in " ".join(r.detail for r in results)


@pytest.mark.parametrize("case", list(CASES))
def test_each_broken_item_fails_its_row(case: str, trained: Path, venue_url: str,
                                        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    extra, bad_key, flip, after, with_key, unreachable, failing = CASES[case]
    artifacts = _flip_byte(tmp_path, trained) if flip else trained
    url = f"http://127.0.0.1:{_closed_port()}" if unreachable else venue_url
    cfg = setup(tmp_path, artifacts, url, extra=extra, bad_key=bad_key)
    if after is not None:
        after(cfg)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    if with_key:
        monkeypatch.setenv("PROJECTX_API_KEY", API_KEY)
    else:
        monkeypatch.delenv("PROJECTX_API_KEY", raising=False)
    results = run_checks(cfg)
    assert [r.name for r in results] == ROWS  # every row is reported, whatever failed
    assert {r.name for r in results if not r.ok} == failing, \
        [(r.name, r.status, r.detail) for r in results]


def test_cli_table_and_exit_codes(trained: Path, venue_url: str, tmp_path: Path) -> None:
    env = cli_env(PROJECTX_API_KEY=API_KEY)
    cfg = setup(tmp_path, trained, venue_url)
    ok = run_cli("preflight", "--config", str(cfg), env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.count("PASS") == len(ROWS) and "FAIL" not in ok.stdout
    _kill(cfg)
    bad = run_cli("preflight", "--config", str(cfg), "--json", env=env)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    report = orjson.loads(bad.stdout)
    assert report["ok"] is False
    assert [c["name"] for c in report["checks"] if not c["ok"]] == ["kill switch off"]
    assert "kill switch off" in bad.stderr
    usage = run_cli("preflight", "--no-such-flag", env=env)
    assert usage.returncode == 2
