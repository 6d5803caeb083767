"""Shared fixtures of the simulator tests: a small, fast world and slate helpers.

The numba kernels compile once (about 20 s) and are cached in ``envs/__pycache__``;
every test uses the small config below so that a step costs milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pytest

import envs  # noqa: F401 - registers rl_fyp/ShortVideoFeed-v0
from envs.config import EnvConfig
from envs.feed_env import make_env_config
from envs.ranking import CAND_VALUE, candidate_feature_names
from envs.retrieval import N_SOURCES, SOURCE_NAMES

@pytest.fixture(scope="session")
def small_overrides(small_world: dict[str, Any]) -> dict[str, Any]:
    """Dotted overrides of the small test world. Shared: copy before changing
    (``{**small_overrides, "horizon_days": 0.3}``)."""
    return {**small_world, "horizon_days": 3}


@pytest.fixture(scope="session")
def small_config(small_overrides: Mapping[str, Any]) -> EnvConfig:
    """The small test world as a typed config."""
    return make_env_config(None, small_overrides)


def _greedy_slates(obs: Mapping[str, np.ndarray], latent_dim: int, k: int) -> np.ndarray:
    """(B, K) or (K,) top-K valid positions by the ranker's value score."""
    cands, mask = obs["candidates"], obs["mask"]
    value = np.where(mask != 0, cands[..., latent_dim + CAND_VALUE], -np.inf)
    return np.argsort(-value, axis=-1, kind="stable")[..., :k].astype(np.int64)


@pytest.fixture(scope="session")
def greedy_slates() -> Callable[[Mapping[str, np.ndarray], int, int], np.ndarray]:
    """``greedy_slates(obs, latent_dim, K)``: the top-K valid candidates by value score."""
    return _greedy_slates


def _assert_same(a: Any, b: Any, path: str = "") -> None:
    """Exact equality of nested dicts / tuples / arrays / scalars, with the failing path."""
    if isinstance(a, Mapping):
        assert isinstance(b, Mapping), path
        assert set(a) == set(b), f"{path}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            _assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{path}[{i}]")
    else:
        x, y = np.asarray(a), np.asarray(b)
        assert x.dtype == y.dtype, f"{path}: dtype {x.dtype} != {y.dtype}"
        assert x.shape == y.shape, f"{path}: shape {x.shape} != {y.shape}"
        assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), f"{path}: values differ"


@pytest.fixture(scope="session")
def assert_same() -> Callable[[Any, Any], None]:
    """``assert_same(a, b)``: exact (bitwise-value) equality of nested outputs."""
    return _assert_same


def _candidate_sources(cfg: EnvConfig, candidates: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Source ids (..., N) decoded from the candidate features, checking their encoding.

    The observation carries the retrieval source either as one categorical column
    ``source`` (an id for an embedding layer) or as a one-hot block ``source_<name>``;
    either way it must name exactly one source per valid candidate.
    """
    names = candidate_feature_names(cfg)
    valid = mask != 0
    if "source" in names:
        col = candidates[..., names.index("source")]
        assert np.all(col == np.round(col)), "source ids must be integral"
        assert np.all((col[valid] >= 0) & (col[valid] < N_SOURCES))
        return col.astype(np.int64)
    first = names.index(f"source_{SOURCE_NAMES[0]}")
    onehot = candidates[..., first : first + N_SOURCES]
    assert np.all(np.isin(onehot, (0.0, 1.0)))
    assert np.all(onehot.sum(axis=-1)[valid] == 1.0), "one-hot source must sum to 1 on valid rows"
    assert np.all(onehot.sum(axis=-1)[~valid] == 0.0)
    return onehot.argmax(axis=-1)


@pytest.fixture(scope="session")
def candidate_sources() -> Callable[[EnvConfig, np.ndarray, np.ndarray], np.ndarray]:
    """``candidate_sources(cfg, candidates, mask)``: decoded (and checked) source ids."""
    return _candidate_sources
