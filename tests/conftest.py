"""Shared test set-up for tests/envs, tests/reward and tests/rl_fyp.

The packages are installed editable (``pip install -e .``), so nothing is added to
``sys.path`` here. Package-specific fixtures live in each subdirectory's conftest.
"""

from __future__ import annotations

import os

# One BLAS thread, as `make test` sets: the simulator parallelises with numba, and
# oversubscribed BLAS threads only slow small matrix products down. Subprocesses that
# tests start inherit this too.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
