"""Fixtures shared by the test suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Keep numeric libraries to one thread in tests: the machine has 2 cores and tests run beside
# other work; numbers do not depend on thread counts here.
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")


@pytest.fixture(scope="session")
def trained_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """(set directory, training summary) of one small real `anchord train` run, shared by the
    whole session (the suite trains it once)."""
    from tests.training_support import build

    out = tmp_path_factory.mktemp("trained") / "set"
    return out, build(out)
