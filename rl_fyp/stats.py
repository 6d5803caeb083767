"""Confidence intervals for per-user metrics of a simulated A/B test.

The percentile bootstrap over users: resample the cohort with replacement, take the
mean, and read the interval off the quantiles of those means. Resampling is vectorised
(one ``(n_boot, n)`` index array, in chunks when that would be large) and every draw
comes from the ``numpy.random.Generator`` passed in, so the same seed gives the same
interval.

:class:`PairedBootstrap` draws the resampled users once and uses them for every metric
of every policy run on the same cohort: intervals of differences and ratios between
policies (lifts) are then paired, and cohort-level counts (distinct videos shown) are
resampled with the same users as the per-user means.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import NamedTuple

import numba as nb
import numpy as np

__all__ = ["CI", "CI_HIGH", "CI_LOW", "MEAN", "PairedBootstrap", "bootstrap_ci", "summarise"]

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


def _percentile_ci(point: float, boots: np.ndarray, alpha: float) -> CI:
    """The percentile interval of bootstrap replicates around a point estimate."""
    lo, hi = np.quantile(boots, [alpha / 2.0, 1.0 - alpha / 2.0])
    return CI(float(point), float(lo), float(hi))


@nb.njit(cache=True)
def _distinct_counts_kernel(present, users, group_start, out):  # pragma: no cover - numba
    # For each resample, a key counts when any of its users was drawn; the scan of a
    # key's users stops at the first drawn one (about 1.6 reads on average).
    R = present.shape[0]
    G = group_start.shape[0] - 1
    for r in range(R):
        count = 0
        for g in range(G):
            for p in range(group_start[g], group_start[g + 1]):
                if present[r, users[p]]:
                    count += 1
                    break
        out[r] = count


class PairedBootstrap:
    """Percentile bootstrap over the users of one cohort, with one set of resamples.

    Every statistic computed through one instance uses the same ``n_boot`` resampled
    cohorts (the same user indices), whatever the metric or policy: the cohorts of a
    simulated A/B test are the same users, so differences and ratios between policies
    get paired intervals, and cohort-level counts are resampled like the means.

    Args:
        n: users in the cohort.
        n_boot: resamples.
        alpha: 1 - confidence level (0.05 gives 95% intervals).
        rng: source of the resamples; an int seeds a new generator and ``None`` means
            seed 0.

    Raises:
        ValueError: if ``n < 1``, ``n_boot < 1`` or ``alpha`` is not in (0, 1).
    """

    def __init__(
        self, n: int, n_boot: int = 1000, alpha: float = 0.05, rng: np.random.Generator | int | None = None
    ) -> None:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if n_boot < 1:
            raise ValueError(f"n_boot must be >= 1, got {n_boot}")
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        self.n, self.n_boot, self.alpha = n, n_boot, alpha
        # Chunk c of the resamples is drawn from its own seed, so a chunk can be drawn
        # again (identically) when the whole index array is too large to keep.
        self._root = int(_as_generator(rng).integers(0, 2**63 - 1))
        self._rows = max(1, _CHUNK_ELEMS // n)
        # Kept in memory up to 16M indices (64 MiB of int32); beyond that, drawn again per use.
        self._cache = list(self._draw()) if n_boot * n <= 4 * _CHUNK_ELEMS else None

    def _draw(self) -> Iterator[np.ndarray]:
        dtype = np.int32 if self.n < 2**31 else np.int64
        for c, start in enumerate(range(0, self.n_boot, self._rows)):
            rows = min(self.n_boot, start + self._rows) - start
            yield np.random.default_rng([self._root, c]).integers(0, self.n, size=(rows, self.n), dtype=dtype)

    def _chunks(self) -> Iterator[np.ndarray]:
        """(rows, n) resampled user indices, chunk by chunk, the same on every call."""
        return iter(self._cache) if self._cache is not None else self._draw()

    def means(self, x: np.ndarray) -> np.ndarray:
        """(n_boot,) means of ``x`` over the resampled cohorts.

        Args:
            x: (n,) one value per user.
        """
        x = self._check(x)
        out = np.empty(self.n_boot, np.float64)
        start = 0
        for idx in self._chunks():
            out[start : start + len(idx)] = x[idx].mean(axis=1)
            start += len(idx)
        return out

    def ci(self, x: np.ndarray) -> CI:
        """Mean of ``x`` (n,) with its percentile interval; a constant ``x`` gives ``lo == hi``."""
        x = self._check(x)
        mean = float(x.mean())
        if np.all(x == x[0]):
            return CI(mean, mean, mean)
        return _percentile_ci(mean, self.means(x), self.alpha)

    def interval(self, point: float, boots: np.ndarray) -> CI:
        """The percentile interval of replicates computed from this instance's resamples."""
        return _percentile_ci(point, np.asarray(boots, np.float64), self.alpha)

    def ratio_lift(self, x: np.ndarray, ref: np.ndarray) -> CI | None:
        """Relative lift of the mean of ``x`` over the mean of ``ref``, in percent, paired.

        Args:
            x: (n,) values of one policy; ref: (n,) the same users under the reference.

        Returns:
            ``100 * (mean(x) / mean(ref) - 1)`` with the percentile interval of the same
            ratio over the resamples; None if ``mean(ref)`` is 0. Resamples whose
            reference mean is 0 are left out of the interval.
        """
        x, ref = self._check(x), self._check(ref)
        return self.lift_of(float(x.mean()), float(ref.mean()), self.means(x), self.means(ref))

    def lift_of(self, point: float, ref_point: float, boots: np.ndarray, ref_boots: np.ndarray) -> CI | None:
        """:meth:`ratio_lift` from point estimates and replicates computed already."""
        if ref_point == 0.0:
            return None
        ok = ref_boots != 0.0
        lift = 100.0 * (boots[ok] / ref_boots[ok] - 1.0)
        centre = 100.0 * (point / ref_point - 1.0)
        if lift.size == 0:
            return None
        return _percentile_ci(centre, lift, self.alpha)

    def distinct_counts(self, users: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """(n_boot,) distinct keys seen by each resampled cohort.

        A key (a video, a creator) counts in a resample when at least one user who saw
        it is drawn; users drawn twice do not count it twice.

        Args:
            users: (P,) int user of each (user, key) pair, in [0, n).
            keys: (P,) int key of each pair. Pairs may repeat and come in any order.
        """
        users = np.asarray(users, np.int64)
        keys = np.asarray(keys, np.int64)
        if users.shape != keys.shape or users.ndim != 1:
            raise ValueError(f"users and keys must be 1-D of one length, got {users.shape} and {keys.shape}")
        if users.size and (users.min() < 0 or users.max() >= self.n):
            raise ValueError(f"users must be in [0, {self.n})")
        order = np.lexsort((users, keys))
        users, keys = users[order], keys[order]
        group_start = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1], True]) if keys.size else np.zeros(1, np.int64)
        out = np.empty(self.n_boot, np.int64)
        start = 0
        for idx in self._chunks():
            present = np.zeros((len(idx), self.n), np.bool_)
            present[np.arange(len(idx))[:, None], idx] = True
            _distinct_counts_kernel(present, users, group_start.astype(np.int64), out[start : start + len(idx)])
            start += len(idx)
        return out

    def _check(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if x.shape != (self.n,):
            raise ValueError(f"expected shape ({self.n},), got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError("values must be finite (found NaN or inf)")
        return x
