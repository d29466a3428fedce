"""Fixtures shared by the test suite."""

from __future__ import annotations

import os

# Keep numeric libraries to one thread in tests: the machine has 2 cores and tests run beside
# other work; numbers do not depend on thread counts here.
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")
