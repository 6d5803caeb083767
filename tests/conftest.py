"""Shared test set-up for tests/envs, tests/reward and tests/rl_fyp.

The packages are installed editable (``pip install -e .``), so nothing is added to
``sys.path`` here. Package-specific fixtures live in each subdirectory's conftest.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

# One BLAS thread, as `make test` sets: the simulator parallelises with numba, and
# oversubscribed BLAS threads only slow small matrix products down. Subprocesses that
# tests start inherit this too.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


#: A small, fast simulator world (24 niches of ~170 videos, 40 candidates, slates of 4);
#: the 14-day default horizon unless a test overrides it.
SMALL_WORLD: dict[str, Any] = {
    "catalog.n_items": 4000,
    "catalog.n_topics": 6,
    "catalog.niches_per_topic": 4,
    "catalog.n_sounds": 200,
    "retrieval.n_candidates": 40,
    "slate_size": 4,
}


@pytest.fixture(scope="session")
def small_world() -> dict[str, Any]:
    """Dotted env overrides of the small world; copy before changing."""
    return dict(SMALL_WORLD)


def _random_valid_slates(rng: np.random.Generator, mask: np.ndarray, k: int) -> np.ndarray:
    """(B, K) distinct valid positions per row, uniformly at random."""
    mask = np.atleast_2d(mask)
    keys = rng.random(mask.shape)
    keys[mask == 0] = np.inf
    return np.argsort(keys, axis=1, kind="stable")[:, :k].astype(np.int64)


@pytest.fixture(scope="session")
def random_slates() -> Callable[[np.random.Generator, np.ndarray, int], np.ndarray]:
    """``random_slates(rng, mask (B, N) or (N,), K) -> (B, K)`` distinct valid positions."""
    return _random_valid_slates
