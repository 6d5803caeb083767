"""Tests for rl_fyp.stats: bootstrap confidence intervals of per-user means."""

from __future__ import annotations

import numpy as np
import pytest

from rl_fyp.stats import PairedBootstrap, bootstrap_ci, summarise


def test_ci_contains_the_mean() -> None:
    x = np.random.default_rng(1).exponential(3.0, size=500)
    mean, lo, hi = bootstrap_ci(x, rng=np.random.default_rng(0))
    assert mean == pytest.approx(x.mean())
    assert lo < mean < hi


def test_ci_is_about_the_normal_interval() -> None:
    # For n = 4000 the bootstrap interval of a mean is close to mean +- 1.96 * sd / sqrt(n).
    x = np.random.default_rng(2).normal(10.0, 2.0, size=4000)
    mean, lo, hi = bootstrap_ci(x, n_boot=4000, rng=np.random.default_rng(0))
    half = 1.96 * x.std(ddof=1) / np.sqrt(x.size)  # about 0.062
    assert hi - lo == pytest.approx(2 * half, rel=0.1)
    assert (lo + hi) / 2 == pytest.approx(mean, abs=0.1 * half)


def test_ci_narrows_with_more_users() -> None:
    gen = np.random.default_rng(3)
    widths = []
    for n in (50, 500, 5000):
        _, lo, hi = bootstrap_ci(gen.normal(size=n), rng=np.random.default_rng(0))
        widths.append(hi - lo)
    # Width ~ 1 / sqrt(n): each 10x more users shrinks it about 3.2x.
    assert widths[0] > 2 * widths[1] > 4 * widths[2]


def test_ci_narrows_with_confidence() -> None:
    x = np.random.default_rng(4).normal(size=300)
    _, lo95, hi95 = bootstrap_ci(x, alpha=0.05, rng=np.random.default_rng(0))
    _, lo50, hi50 = bootstrap_ci(x, alpha=0.5, rng=np.random.default_rng(0))
    assert lo95 < lo50 < hi50 < hi95


def test_same_seed_same_interval() -> None:
    x = np.random.default_rng(5).poisson(2.0, size=300).astype(float)
    a = bootstrap_ci(x, rng=np.random.default_rng(42))
    b = bootstrap_ci(x, rng=np.random.default_rng(42))
    c = bootstrap_ci(x, rng=np.random.default_rng(43))
    assert a == b
    assert a != c
    assert bootstrap_ci(x, rng=42) == a  # an int seeds a generator


def test_chunked_resampling_matches_its_own_seed() -> None:
    # n_boot * n well above the chunk size: still deterministic and sensible.
    x = np.random.default_rng(6).normal(size=20_000)
    a = bootstrap_ci(x, n_boot=500, rng=np.random.default_rng(0))
    b = bootstrap_ci(x, n_boot=500, rng=np.random.default_rng(0))
    assert a == b
    assert a.lo < a.mean < a.hi


@pytest.mark.parametrize("value", [0.0, 1.0, 0.1, 7.25])
def test_constant_input_gives_a_zero_width_interval(value: float) -> None:
    mean, lo, hi = bootstrap_ci(np.full(100, value), rng=np.random.default_rng(0))
    assert mean == lo == hi == pytest.approx(value)


def test_single_value() -> None:
    assert bootstrap_ci(np.array([3.0]), rng=0) == (3.0, 3.0, 3.0)


@pytest.mark.parametrize(
    ("x", "kwargs"),
    [
        (np.array([]), {}),
        (np.ones((3, 3)), {}),
        (np.array([1.0, np.nan]), {}),
        (np.array([1.0, np.inf]), {}),
        (np.array([1.0, 2.0]), {"n_boot": 0}),
        (np.array([1.0, 2.0]), {"alpha": 0.0}),
        (np.array([1.0, 2.0]), {"alpha": 1.0}),
    ],
)
def test_bad_input_raises(x: np.ndarray, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        bootstrap_ci(x, **kwargs)


def test_summarise_shape_and_determinism() -> None:
    gen = np.random.default_rng(7)
    per_user = {"days_active": gen.integers(0, 15, 200).astype(float), "churned": np.zeros(200)}
    a = summarise(per_user, np.random.default_rng(0))
    b = summarise(per_user, np.random.default_rng(0))
    assert a == b
    assert list(a) == ["days_active", "churned"]
    for stats in a.values():
        assert set(stats) == {"mean", "ci_low", "ci_high"}
        assert all(isinstance(v, float) for v in stats.values())
        assert stats["ci_low"] <= stats["mean"] <= stats["ci_high"]
    assert a["churned"] == {"mean": 0.0, "ci_low": 0.0, "ci_high": 0.0}


def test_summarise_resamples_each_metric_independently_of_the_others() -> None:
    # A metric's interval depends only on its position and the seed, not on the other
    # metrics' values: policies compared metric by metric see the same resampled users.
    gen = np.random.default_rng(8)
    x = gen.normal(size=100)
    a = summarise({"a": np.zeros(100), "x": x}, rng=0)
    b = summarise({"a": gen.normal(size=100), "x": x}, rng=0)
    assert a["x"] == b["x"]


# ---------------------------------------------------------------------------- PairedBootstrap
def test_paired_bootstrap_means_are_resampled_user_means() -> None:
    x = np.random.default_rng(9).normal(size=50)
    boot = PairedBootstrap(50, n_boot=200, rng=0)
    (idx,) = list(boot._chunks())  # small: one cached chunk
    np.testing.assert_allclose(boot.means(x), x[idx].mean(axis=1))
    # The same resamples on every call and for every metric: paired.
    np.testing.assert_array_equal(boot.means(x), boot.means(x))
    y = 3.0 * x + 1.0  # an affine metric of the same users moves exactly with x
    np.testing.assert_allclose(boot.means(y), 3.0 * boot.means(x) + 1.0)


def test_paired_bootstrap_ci_is_about_the_normal_interval() -> None:
    x = np.random.default_rng(2).normal(10.0, 2.0, size=4000)
    mean, lo, hi = PairedBootstrap(4000, n_boot=2000, rng=0).ci(x)
    half = 1.96 * x.std(ddof=1) / np.sqrt(x.size)
    assert mean == pytest.approx(x.mean())
    assert hi - lo == pytest.approx(2 * half, rel=0.1)
    assert PairedBootstrap(10, rng=0).ci(np.full(10, 0.1)) == (0.1, 0.1, 0.1)


def test_paired_bootstrap_is_deterministic_and_chunks_when_large(monkeypatch: pytest.MonkeyPatch) -> None:
    import rl_fyp.stats as stats

    x = np.random.default_rng(3).exponential(size=300)
    assert PairedBootstrap(300, 100, rng=5).ci(x) == PairedBootstrap(300, 100, rng=5).ci(x)
    assert PairedBootstrap(300, 100, rng=5).ci(x) != PairedBootstrap(300, 100, rng=6).ci(x)
    # Beyond the cache limit the resamples are drawn again, chunk by chunk, identically.
    monkeypatch.setattr(stats, "_CHUNK_ELEMS", 1000)
    big = PairedBootstrap(300, 100, rng=5)
    assert big._cache is None
    a = big.means(x)
    np.testing.assert_array_equal(a, big.means(x))
    assert a.shape == (100,)
    m, lo, hi = big.ci(x)
    assert lo < m < hi


def test_lift_is_paired() -> None:
    gen = np.random.default_rng(4)
    ref = gen.exponential(5.0, size=400)
    boot = PairedBootstrap(400, 500, rng=0)
    # x = 1.1 * ref on every user: every resample's ratio is exactly 1.1, so the interval
    # collapses to the 10% lift (an unpaired interval would be wide).
    lift = boot.ratio_lift(1.1 * ref, ref)
    assert lift.mean == pytest.approx(10.0)
    assert lift.lo == pytest.approx(10.0) and lift.hi == pytest.approx(10.0)
    assert boot.ratio_lift(ref, ref) == (0.0, 0.0, 0.0)
    noisy = boot.ratio_lift(ref + gen.normal(0.0, 1.0, size=400), ref)
    assert noisy.lo < noisy.mean < noisy.hi
    assert boot.ratio_lift(ref, np.zeros(400)) is None


def test_distinct_counts_match_a_brute_force_count() -> None:
    gen = np.random.default_rng(5)
    n = 30
    users = gen.integers(0, n, 400)
    keys = (gen.pareto(1.0, 400) * 3).astype(np.int64)
    boot = PairedBootstrap(n, 50, rng=1)
    got = boot.distinct_counts(users, keys)
    (idx,) = list(boot._chunks())
    for r in range(50):
        drawn = np.zeros(n, bool)
        drawn[idx[r]] = True
        assert got[r] == len(np.unique(keys[drawn[users]]))
    # Without resampling noise the full cohort's count bounds every resample's.
    assert got.max() <= len(np.unique(keys))
    assert boot.distinct_counts(np.zeros(0, np.int64), np.zeros(0, np.int64)).tolist() == [0] * 50


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"n": 0}, "n must"), ({"n": 5, "n_boot": 0}, "n_boot"), ({"n": 5, "alpha": 1.0}, "alpha")],
)
def test_paired_bootstrap_rejects_bad_settings(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        PairedBootstrap(**kwargs)


def test_paired_bootstrap_rejects_bad_values() -> None:
    boot = PairedBootstrap(3, 10, rng=0)
    with pytest.raises(ValueError, match="shape"):
        boot.means(np.ones(4))
    with pytest.raises(ValueError, match="finite"):
        boot.ci(np.array([1.0, np.nan, 2.0]))
    with pytest.raises(ValueError, match="users must be"):
        boot.distinct_counts(np.array([3]), np.array([1]))
