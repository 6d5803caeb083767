"""Confidence intervals for per-user metrics of a simulated A/B test.

The percentile bootstrap over users: resample the cohort with replacement, take the
mean, and read the interval off the quantiles of those means. Resampling is vectorised
(one ``(n_boot, n)`` index array, in chunks when that would be large) and every draw
comes from the ``numpy.random.Generator`` passed in, so the same seed gives the same
interval.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

__all__ = ["CI", "CI_HIGH", "CI_LOW", "MEAN", "bootstrap_ci", "summarise"]

#: Keys of one metric's summary.
MEAN, CI_LOW, CI_HIGH = "mean", "ci_low", "ci_high"

_CHUNK_ELEMS = 1 << 22
"""Most resampled values held at once (4M float64 = 32 MiB, plus the int64 indices)."""


class CI(NamedTuple):
    """A sample mean and its confidence interval."""

    mean: float
    lo: float
    hi: float


def _as_generator(rng: np.random.Generator | int | None) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    # A fixed default seed: a report computed twice must show the same interval.
    return np.random.default_rng(0 if rng is None else rng)


def bootstrap_ci(
    x: np.ndarray,
    n_boot: int = 1000,
    alpha: float = 0.05,
    rng: np.random.Generator | int | None = None,
) -> CI:
    """Percentile-bootstrap confidence interval of the mean.

    Args:
        x: (n,) finite values, one per user.
        n_boot: Number of resamples.
        alpha: 1 - confidence level (0.05 gives a 95% interval).
        rng: Source of the resampling indices; an int seeds a new generator and
            ``None`` means seed 0.

    Returns:
        ``(mean, lo, hi)``: the sample mean and the ``alpha / 2`` and
        ``1 - alpha / 2`` quantiles of the resampled means. A constant ``x`` (or a
        single value) gives ``lo == hi == mean``.

    Raises:
        ValueError: If ``x`` is empty, not 1-D or not finite, ``n_boot < 1`` or
            ``alpha`` is not in (0, 1).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"x must be a non-empty 1-D array, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("x must be finite (found NaN or inf)")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    gen = _as_generator(rng)
    n = x.size
    mean = float(x.mean())
    if np.all(x == x[0]):
        return CI(mean, mean, mean)
    means = np.empty(n_boot, np.float64)
    rows = max(1, _CHUNK_ELEMS // n)
    for start in range(0, n_boot, rows):
        stop = min(n_boot, start + rows)
        idx = gen.integers(0, n, size=(stop - start, n))
        means[start:stop] = x[idx].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2.0, 1.0 - alpha / 2.0])
    return CI(mean, float(lo), float(hi))


def summarise(
    per_user: Mapping[str, np.ndarray],
    rng: np.random.Generator | int | None = None,
    n_boot: int = 1000,
    alpha: float = 0.05,
) -> dict[str, dict[str, float]]:
    """Mean and bootstrap confidence interval of every per-user metric.

    Args:
        per_user: ``{metric: (n_users,) values}``.
        rng: Parent generator (or seed, see :func:`bootstrap_ci`); metric i resamples
            from its i-th spawned child, so two cohorts of the same users summarised
            from the same seed are resampled with the same indices (a paired design).
        n_boot: Resamples per metric.
        alpha: 1 - confidence level.

    Returns:
        ``{metric: {"mean": m, "ci_low": lo, "ci_high": hi}}`` in the same order.
    """
    children = _as_generator(rng).spawn(len(per_user))
    out: dict[str, dict[str, float]] = {}
    for (name, values), child in zip(per_user.items(), children):
        m, lo, hi = bootstrap_ci(values, n_boot=n_boot, alpha=alpha, rng=child)
        out[name] = {MEAN: m, CI_LOW: lo, CI_HIGH: hi}
    return out
