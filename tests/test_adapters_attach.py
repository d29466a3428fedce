"""The daemon wiring: bar handlers, background cycle, journal, status, `ctl rollback`."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import anyio
import numpy as np
import pytest

from adapters.anchors import AnchorSuite
from daemon.adapters_attach import attach_adapters
from daemon.app import Daemon
from daemon.config import load_config
from daemon.control import CommandError
from tests.adapters_support import D, small_base, suite
from tests.helpers import basic_config, write_config

ADAPTERS = """
[adapters]
window_bars = 20
every_n_bars = 20
min_spacing_bars = 5
steps = 10
max_steps = 100
subprocess = false
[promotion]
stress_mse_limit = 10.0
tolerance = 1.0
rollback_stress_mse = 100.0
"""


class FakePipeline:
    def __init__(self) -> None:
        base = small_base()
        self.arts = SimpleNamespace(forecaster=base, anchors=suite(base), slices={},
                                    params={"horizon": 1})
        self.served = []
        self.last_forecaster_input = None
        self.rng = np.random.default_rng(0)

    def swap_forecaster(self, model, name=""):
        self.served.append((model, name))

    def score_slice(self, model, start, end):
        return {"mse": 1e-4, "mdd": -0.01, "violations": 0, "worst_day_return": -0.01,
                "returns": []}



async def _run_bars(daemon: Any, n: int) -> None:
    """Run the daemon's background tasks while its ingest loop processes the first `n` rows."""
    async with anyio.create_task_group() as tg:
        for task in daemon.tasks:
            tg.start_soon(task)
        for raw in daemon.ingest.data.rows[:n]:
            await daemon.ingest.process(raw)
        tg.cancel_scope.cancel()

async def test_attach_runs_cycles_journals_and_rolls_back(tmp_path):
    cfg_path = write_config(tmp_path, basic_config(
        extra='start = "2010-01-01"\nend = "2010-04-30"\n') + ADAPTERS)
    daemon = Daemon(load_config(cfg_path))
    pipe = FakePipeline()
    daemon.pipeline = pipe
    worker = attach_adapters(daemon)
    assert worker is not None and isinstance(pipe.arts.anchors, AnchorSuite)
    assert "rollback" in daemon.control.handlers and "adapters" in daemon.status_providers

    async def trader(bar):  # stands in for the pipeline's decide()
        pipe.last_forecaster_input = pipe.rng.normal(size=D).astype(np.float32)

    daemon.ingest.handlers.insert(1, trader)
    await _run_bars(daemon, 40)
    cycles = daemon.store.journal_rows("cycle")
    assert cycles and cycles[0]["decision"] == "promote", cycles[0]
    assert daemon.store.journal_rows("promotion")
    served = pipe.served[-1][0]  # the pipeline's fast serving form, prepared off the loop
    assert served is worker.served and served.module is worker.model
    assert served.name.startswith("adapter:v")
    assert daemon.store.audit_index() and daemon.store.audit_index()[0]["kind"] == "candidate"
    status = daemon.status()["adapters"]
    assert status["cycles"] >= 1 and status["last"]["decision"] == cycles[-1]["decision"]
    with pytest.raises(CommandError, match="rollback refused"):
        await daemon.control.handlers["rollback"]({"version": "v999999"})
    served = worker.served
    assert worker.served is served
    out = await daemon.control.handlers["rollback"]({})
    assert out["version"] is None and out["from_version"] is not None
    assert daemon.store.journal_rows("rollback")
    daemon.store.close()


async def test_ece_drift_from_the_pipeline_requests_cycles_min_spacing_apart(tmp_path):
    cfg_path = write_config(tmp_path, basic_config(
        extra='start = "2010-01-01"\nend = "2010-04-30"\n') + ADAPTERS.replace(
        "every_n_bars = 20", 'every_n_bars = 20\ntrigger = "drift"\ndrift_threshold = 1e9'
    ).replace("min_spacing_bars = 5", "min_spacing_bars = 10"))
    daemon = Daemon(load_config(cfg_path))
    pipe = FakePipeline()
    pipe.on_ece_drift = None  # the real Pipeline's hook (called by its calibration monitor)
    daemon.pipeline = pipe
    worker = attach_adapters(daemon)
    assert worker is not None and pipe.on_ece_drift is not None
    seen = {"bar": 0}

    async def trader(bar):  # stands in for decide() + after_bar(); ECE drifts at bars 30, 32
        seen["bar"] += 1
        pipe.last_forecaster_input = pipe.rng.normal(size=D).astype(np.float32)
        if seen["bar"] in (30, 32):
            pipe.on_ece_drift(0.2)

    daemon.ingest.handlers.insert(1, trader)
    await _run_bars(daemon, 60)
    records = [r for r in worker.audit.records() if r.get("kind") == "candidate"]
    assert [r["trigger"] for r in records] == ["ece_drift", "ece_drift"]
    assert records[1]["bar"] - records[0]["bar"] == 10  # the second waited for the spacing
    assert len(daemon.store.journal_rows("cycle")) == 2
    daemon.store.close()


async def _replay_with_real_pipeline(folder):
    from tests.pipeline_support import make_pipeline

    cfg_path = write_config(folder, basic_config(
        extra='start = "1999-01-01"\nend = "2001-06-30"\n') + ADAPTERS.replace(
        "window_bars = 20", "window_bars = 60").replace("every_n_bars = 20",
                                                           "every_n_bars = 60"))
    daemon = Daemon(load_config(cfg_path))
    pipe = make_pipeline()
    daemon.pipeline = pipe
    worker = attach_adapters(daemon, anchors=_anchors_for(pipe))
    assert worker is not None

    async def trader(bar):  # the Trader's use of the pipeline
        pipe.decide(bar)
        pipe.after_bar()

    daemon.ingest.handlers.append(trader)
    await _run_bars(daemon, 400)
    cycles = daemon.store.journal_rows("cycle")
    audit = [(r["decision"], r.get("adapter_checksum")) for r in worker.audit.records()]
    daemon.store.close()
    return cycles, audit


async def test_real_pipeline_cycles_are_gated_on_score_slice_and_replays_agree(tmp_path):
    first, audit1 = await _replay_with_real_pipeline(tmp_path / "a")
    assert len(first) >= 2
    for c in first:
        assert c["decision"] in ("promote", "reject", "hold"), c
        assert c["mdd"] is not None and isinstance(c["violations"], int)
    second, audit2 = await _replay_with_real_pipeline(tmp_path / "b")
    assert [c["decision"] for c in first] == [c["decision"] for c in second]
    assert audit1 == audit2  # same data, pace 0: same decisions and adapter checksums


def _anchors_for(pipe):
    """Stress rows for the quick set (it has none): its forecaster inputs on the largest moves."""
    import torch

    from daemon.pipeline.slices import prepare_slice

    inp = prepare_slice(pipe, pipe.slice_bars(), "1999-03-01", "2000-12-31")
    order = np.argsort(-np.abs(inp.labels))[:30]
    x = inp.x[order]
    with torch.no_grad():
        teacher = pipe.arts.forecaster(torch.from_numpy(x)).numpy()
    labels = ["crash" if inp.labels[i] < 0 else "rally" for i in order]
    dates = [inp.bars[i].ts.date().isoformat() for i in order]
    return AnchorSuite(x, teacher, inp.labels[order], labels, dates)
