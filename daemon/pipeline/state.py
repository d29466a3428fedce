"""The pipeline's rolling state across restarts: committed with every bar, restored at start.

What a decision depends on besides the artifact set and the serving model: the feature windows,
the whitened window (and its raw features), the volatility estimate, the live Tyler shape, the
number of bars decided (the Tyler update's cadence), the calibration monitor's window and the
serving calibrator once a recalibration replaced the set's; and the rolling ANN recall (the
canary's health reads it). It is pickled (our own state, in our own store) as one value of the
bar commit, after the bar's off-path work has run (`flush`, before any part of the bar is
written), so a restarted daemon resumes from the last committed bar exactly as an
uninterrupted one goes on.

It is restored only where it belongs: a replay that resumes with the same run epoch, or live
trading; a replay that starts over, or another artifact set, starts fresh (logged).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

KEY = "pipeline"


RECALL_FIELDS = ("recalls", "ann_ns", "exact_ns", "queries", "checked")  # the canary reads it


def flush(pipe: Any) -> None:
    """Run the bar's off-path work now (before the bar is committed: it changes what is)."""
    if pipe._after_pending:
        pipe.after_bar()


def snapshot(pipe: Any, identity: str) -> bytes:
    """The pipeline's rolling state as of the bar just handled (`flush` ran before)."""
    warm = pipe._warm
    recalibrated = warm.cal.calibrator is not warm.arts.calibrator
    return pickle.dumps({
        "identity": identity, "artifact_dir": str(getattr(warm.arts, "dir", "")),
        "bar": pipe.state, "live_shape": warm.live_shape, "bars_decided": pipe.bars_decided,
        "calibration": pipe.calibration,
        "calibrator": warm.cal.calibrator if recalibrated else None,
        "recall": {name: getattr(pipe.recall, name) for name in RECALL_FIELDS},
    }, protocol=pickle.HIGHEST_PROTOCOL)


def restore(pipe: Any, raw: bytes | None, identity: str, log: Any) -> bool:
    """Put a committed state back into `pipe`; True when it was taken. A state of another
    run or artifact set, or one that cannot be read, is not taken (logged)."""
    if raw is None:
        return False
    try:
        state = pickle.loads(raw)
    except Exception as err:  # a damaged value must not stop the daemon: start fresh, loudly
        log.error("pipeline_state_unreadable", error=repr(err), kept="a fresh start")
        return False
    here = str(getattr(pipe.arts, "dir", ""))
    if state.get("identity") != identity or state.get("artifact_dir") != here:
        log.info("pipeline_state_not_restored", reason="another run or artifact set",
                 saved=state.get("identity"), now=identity)
        return False
    pipe.state = state["bar"]
    pipe._warm.live_shape = state["live_shape"]
    pipe.bars_decided = int(state["bars_decided"])
    pipe.calibration = state["calibration"]
    if state["calibrator"] is not None:
        pipe.calibrator = state["calibrator"]
    for name, value in state["recall"].items():
        setattr(pipe.recall, name, value)
    log.info("pipeline_state_restored", bars_decided=pipe.bars_decided,
             recalibrated=state["calibrator"] is not None)
    return True


def attach(pipe: Any, store: Any, identity: Callable[[], str], log: Any) -> None:
    """Restore the committed state into `pipe` and commit it with every bar from now on."""
    restore(pipe, store.bar_state(KEY), identity(), log)
    store.before_commit.append(lambda: flush(pipe))
    store.bar_writers[KEY] = lambda: snapshot(pipe, identity())
