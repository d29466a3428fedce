"""`anchord ctl rollback-artifacts`: the daemon side.

`attach_artifact_control(daemon)` registers the control command. Off the event loop it verifies
and loads the `previous` set under `[artifacts].dir` and builds its warm pipeline stages
(`pipeline.prepare_artifacts`); only then does it swap the `current` and `previous` links and,
back on the loop, hand the set to the pipeline (`pipeline.swap_artifacts`: one reference
assignment between two bars; the set it replaces stays warm). An altered or missing previous set
is refused with a one-line error and nothing changes: links, serving set and adapters stay.

The adapter worker is paused after a swap (logged, `ctl status` shows why): its adapters and
anchor teacher cache were trained against the old set's base forecaster, so none of them may be
served on top of the new one. The new set's bare base forecaster serves; a restart builds a
fresh worker over it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from daemon.control import CommandError
from daemon.errors import ArtifactError
from daemon.training.artifacts import ArtifactSet, load_artifact_set, rollback_artifacts


def attach_artifact_control(daemon: Any,
                            on_swap: Callable[[ArtifactSet], None] | None = None) -> None:
    """Register `rollback-artifacts` on the daemon's control server."""

    def load_and_switch() -> dict[str, Any]:
        root = daemon.cfg.path(daemon.cfg.artifacts.dir)
        previous = Path(root) / "previous"
        if not previous.exists():
            raise ArtifactError(f"{previous}: no previous artifact set to roll back to")
        aset = load_artifact_set(previous.resolve())  # verifies every file
        pipeline = getattr(daemon, "pipeline", None)
        prepare = getattr(pipeline, "prepare_artifacts", None)
        staged = prepare(aset) if on_swap is None and prepare is not None else aset
        current, before = rollback_artifacts(root)
        return {"aset": aset, "staged": staged, "current": str(current),
                "previous": str(before)}

    async def rollback(_args: dict[str, Any]) -> dict[str, Any]:
        try:
            done = await anyio.to_thread.run_sync(load_and_switch)
        except ArtifactError as err:
            daemon.log.error("artifacts_rollback_refused", error=str(err))
            raise CommandError(f"rollback-artifacts refused: {err}") from None
        aset, staged = done.pop("aset"), done.pop("staged")
        pipeline = getattr(daemon, "pipeline", None)
        if on_swap is not None:
            on_swap(aset)
        elif getattr(pipeline, "swap_artifacts", None) is not None:
            pipeline.swap_artifacts(staged)
        applied = on_swap is not None or getattr(pipeline, "swap_artifacts", None) is not None
        worker = getattr(daemon, "adapters", None)
        if applied and worker is not None and hasattr(worker, "pause"):
            worker.pause(f"artifact set rolled back to {done['current']}; adapters were "
                         "trained against the previous base forecaster")
        daemon.log.warning("artifacts_rolled_back", current=done["current"],
                           previous=done["previous"], applied=applied)
        return {**done, "applied": applied}

    daemon.control.register("rollback-artifacts", rollback)
