"""`anchord ctl rollback-artifacts`: the daemon side.

`attach_artifact_control(daemon)` registers the control command. It swaps the `current` and
`previous` links under `[artifacts].dir` (after checking the previous set verifies), loads the
now-current set off the event loop, and hands it to the pipeline (`daemon.pipeline
.swap_artifacts(aset)` when the pipeline offers it, or the `on_swap` callback given here).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio

from daemon.control import CommandError
from daemon.errors import ArtifactError
from daemon.training.artifacts import ArtifactSet, load_artifact_set, rollback_artifacts


def attach_artifact_control(daemon: Any,
                            on_swap: Callable[[ArtifactSet], None] | None = None) -> None:
    """Register `rollback-artifacts` on the daemon's control server."""

    def swap() -> dict[str, Any]:
        root = daemon.cfg.path(daemon.cfg.artifacts.dir)
        current, previous = rollback_artifacts(root)
        aset = load_artifact_set(root)
        return {"aset": aset, "current": str(current), "previous": str(previous)}

    async def rollback(_args: dict[str, Any]) -> dict[str, Any]:
        try:
            done = await anyio.to_thread.run_sync(swap)
        except ArtifactError as err:
            raise CommandError(f"rollback-artifacts: {err}") from None
        aset = done.pop("aset")
        pipeline = getattr(daemon, "pipeline", None)
        target = on_swap or getattr(pipeline, "swap_artifacts", None)
        if target is not None:
            target(aset)
        daemon.log.warning("artifacts_rolled_back", current=done["current"],
                           previous=done["previous"], applied=target is not None)
        return {**done, "applied": target is not None}

    daemon.control.register("rollback-artifacts", rollback)
