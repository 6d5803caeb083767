"""Strict slate validation, the RepairSlate wrapper / repair_slates, and SlateSpace."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

import envs
from envs.feed_env import validate_slates
from envs.ranking import cand_index
from envs.wrappers import RepairSlate, repair_slates


@pytest.fixture
def env(small_overrides):
    env = envs.FeedEnv(overrides=small_overrides)
    env.reset(seed=0)
    return env


# ---------------------------------------------------------------------------- strict validation
@pytest.mark.parametrize(
    "action, pattern",
    [
        (np.arange(5), r"must have shape \(4,\)"),
        (np.arange(3), r"must have shape \(4,\)"),
        (np.arange(8).reshape(2, 4), r"must have shape \(4,\), got \(2, 4\)"),
        (np.int64(3), r"must have shape \(4,\), got \(\)"),
        (np.array([0, 1, -1, 3]), r"position 2: candidate -1 is out of range \[0, 40\)"),
        (np.array([40, 1, 2, 3]), r"position 0: candidate 40 is out of range \[0, 40\)"),
        (np.array([3, 5, 3, 7]), r"position 2: candidate 3 is a duplicate"),
        (np.array([5, 3, 3, 5]), r"position 2: candidate 3 is a duplicate"),
        (np.array([9, 9, 9, 9]), r"position 1: candidate 9 is a duplicate"),
        (np.array([0.5, 1.0, 2.0, 3.0]), r"integer"),
        (np.array([np.nan, 1.0, 2.0, 3.0]), r"integer"),
        (np.array([True, False, True, False]), r"integer"),
    ],
    ids=["too-long", "too-short", "2d", "scalar", "minus-one", "N", "duplicate", "two-duplicates",
         "all-same", "fractional", "nan", "bool"],
)
def test_bad_action_raises_naming_position_and_value(env, action, pattern):
    with pytest.raises(ValueError, match=pattern):
        env.step(action)


@pytest.mark.parametrize("n", [3, 5])
def test_wrong_length_message_names_the_callers_shape(env, n):
    with pytest.raises(ValueError, match=rf"must have shape \(4,\), got \({n},\)"):
        env.step(np.arange(n))


def test_masked_candidate_raises(env):
    # Every candidate of the small world is valid: mask one by hand (the returned
    # observation's mask is a view of the simulator's, so the policy would see it too).
    env.unwrapped.sim.obs.mask[0, 7] = 0
    with pytest.raises(ValueError, match=r"position 1: candidate 7 is masked"):
        env.step(np.array([2, 7, 4, 5]))


def test_rejected_action_does_not_advance_the_env(small_overrides, assert_same):
    # Validation comes first in step(): a refused slate must leave no trace, so that a
    # caller can catch the error and retry.
    a, b = envs.FeedEnv(overrides=small_overrides), envs.FeedEnv(overrides=small_overrides)
    a.reset(seed=1)
    b.reset(seed=1)
    with pytest.raises(ValueError):
        a.step(np.array([0, 0, 1, 2]))
    with pytest.raises(ValueError):
        a.step(np.array([0, 1, 2, 99]))
    assert_same(a.step(np.array([0, 1, 2, 3])), b.step(np.array([0, 1, 2, 3])))


def test_integral_float_action_is_accepted_like_ints(small_overrides, assert_same):
    a, b = envs.FeedEnv(overrides=small_overrides), envs.FeedEnv(overrides=small_overrides)
    a.reset(seed=2)
    b.reset(seed=2)
    assert_same(a.step(np.array([4.0, 1.0, 0.0, 9.0])), b.step(np.array([4, 1, 0, 9])))
    # Lists and other integer dtypes work too.
    a.step([5, 6, 7, 8])
    a.step(np.array([1, 2, 3, 4], dtype=np.int8))


def test_vector_env_error_names_the_user(small_overrides):
    venv = envs.FeedVectorEnv(num_envs=3, overrides=small_overrides)
    venv.reset(seed=0)
    good = np.tile(np.arange(4), (3, 1))
    bad = good.copy()
    bad[1, 3] = 1
    with pytest.raises(ValueError, match=r"user 1, position 3: candidate 1 is a duplicate"):
        venv.step(bad)
    bad = good.copy()
    bad[2, 0] = 40
    with pytest.raises(ValueError, match=r"user 2, position 0: candidate 40 is out of range"):
        venv.step(bad)
    with pytest.raises(ValueError, match=r"shape \(3, 4\)"):
        venv.step(good[:2])
    venv.sim.obs.mask[0, 2] = 0
    with pytest.raises(ValueError, match=r"user 0, position 2: candidate 2 is masked"):
        venv.step(good)


def test_validate_slates_ignores_rows_outside_rows():
    mask = np.ones((2, 10), np.int8)
    slates = np.array([[0, 1, 2, 3], [10, 10, 10, 10]])
    out = validate_slates(slates, mask, 4, rows=np.array([True, False]))
    np.testing.assert_array_equal(out[0], [0, 1, 2, 3])


def test_validate_slates_ignores_duplicates_and_negatives_outside_rows():
    mask = np.ones((2, 10), np.int8)
    mask[1, :] = 0
    slates = np.array([[0, 1, 2, 3], [-1, -1, 5, 5]])
    out = validate_slates(slates, mask, 4, rows=np.array([True, False]))
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out[0], [0, 1, 2, 3])


# ---------------------------------------------------------------------------- repair
def _brute_force_repair(action, mask, value):
    """One row, step by step: keep each valid first occurrence in its slot; give every
    other slot, left to right, the best unused valid candidate (ties: lower position)."""
    N = len(mask)
    out, kept, bad = [], set(), []
    for k, a in enumerate(action):
        if 0 <= a < N and mask[a] and a not in action[:k]:
            out.append(int(a))
            kept.add(int(a))
        else:
            out.append(None)
            bad.append(k)
    pool = sorted((j for j in range(N) if mask[j] and j not in kept), key=lambda j: (-value[j], j))
    for k, j in zip(bad, pool):
        out[k] = j
    return out


def _adversarial_rows(N, K, rng):
    rows = [
        np.zeros(K, np.int64),  # all the same
        np.full(K, N - 1),
        np.full(K, -1),
        np.full(K, N),
        np.array([-5, N + 3, 2 * N, -N - 1][:K]),  # out of range both ways, beyond -N
        np.arange(K)[::-1],  # valid
        np.array([1, 1, 2, 2][:K]),
    ]
    rows += [rng.integers(-3, N + 3, K) for _ in range(30)]
    rows += [rng.integers(0, 3, K) for _ in range(10)]  # many duplicates
    return np.stack(rows)


@pytest.mark.parametrize("with_ties", [False, True])
def test_repair_slates_matches_brute_force(with_ties):
    rng = np.random.default_rng(0)
    N, K = 12, 4
    actions = _adversarial_rows(N, K, rng)
    B = len(actions)
    mask = (rng.random((B, N)) < 0.6).astype(np.int8)
    mask[np.arange(B)[:, None], np.argsort(rng.random((B, N)), axis=1)[:, :K]] = 1  # >= K valid
    value = rng.integers(0, 3, (B, N)).astype(np.float32) if with_ties else rng.normal(size=(B, N)).astype(np.float32)
    fixed = repair_slates(actions, mask, value)
    assert fixed.shape == (B, K) and fixed.dtype == np.int64
    for b in range(B):
        assert fixed[b].tolist() == _brute_force_repair(actions[b].tolist(), mask[b], value[b]), f"row {b}: {actions[b]}"


def test_repair_slates_leaves_valid_slates_alone():
    mask = np.ones((2, 6), np.int8)
    value = np.arange(12, dtype=np.float32).reshape(2, 6)
    actions = np.array([[0, 1, 2, 3], [5, 4, 0, 1]])
    np.testing.assert_array_equal(repair_slates(actions, mask, value), actions)


def test_repair_slates_worked_example():
    # N = 6, mask hides 4; values rank the positions 5 > 3 > 1 > 0 > 2 (4 is masked).
    mask = np.array([[1, 1, 1, 1, 0, 1]], np.int8)
    value = np.array([[0.3, 0.5, 0.1, 0.8, 9.0, 0.9]], np.float32)
    # Slot 0 keeps 1; slot 1 is a duplicate of 1; slot 2 is masked; slot 3 is out of range.
    # Unused valid by value: 5, 3, 0, 2 -> slots 1, 2, 3 get 5, 3, 0.
    fixed = repair_slates(np.array([[1, 1, 4, 7]]), mask, value)
    np.testing.assert_array_equal(fixed, [[1, 5, 3, 0]])


def _check_valid(slate, mask, K):
    assert slate.shape == (K,)
    assert len(set(slate.tolist())) == K
    assert np.all((slate >= 0) & (slate < len(mask)))
    assert np.all(mask[slate] == 1)


def test_repair_slate_wrapper_always_gives_a_valid_slate(small_overrides):
    env = RepairSlate(gym.make(envs.ENV_ID, overrides={**small_overrides, "horizon_days": 1.0}))
    sim = env.unwrapped.sim
    N, K = env.unwrapped.config.retrieval.n_candidates, env.unwrapped.config.slate_size
    value_col = cand_index(env.unwrapped.config, "value_score")
    plain = spaces.MultiDiscrete([N] * K, seed=0)  # what a generic agent samples
    rng = np.random.default_rng(0)
    adversarial = list(_adversarial_rows(N, K, rng)[:7])
    obs, _ = env.reset(seed=0)
    repaired_total = 0
    for i in range(200):
        # Mask a few candidates by hand so that masked picks get repaired too.
        hide = rng.choice(N, 5, replace=False)
        sim.obs.mask[0, hide] = 0
        mask = obs["mask"].copy()
        action = adversarial[i] if i < len(adversarial) else plain.sample()
        if i % 3 == 0:
            action = action.copy()
            action[rng.integers(K)] = hide[0]
        expected = _brute_force_repair(action.tolist(), mask, obs["candidates"][:, value_col])
        n_bad = sum(1 for k in range(K) if expected[k] != action[k])
        obs, reward, terminated, truncated, info = env.step(action)  # never raises
        _check_valid(np.asarray(expected), mask, K)
        assert info["repaired"] == n_bad
        repaired_total += n_bad
        if terminated or truncated:
            obs, _ = env.reset()
    assert repaired_total > 100


def test_repair_slate_wrapper_passes_valid_slates_through(small_overrides, assert_same):
    wrapped = RepairSlate(envs.FeedEnv(overrides=small_overrides))
    bare = envs.FeedEnv(overrides=small_overrides)
    wrapped.reset(seed=3)
    bare.reset(seed=3)
    action = np.array([3, 0, 2, 1])
    o1, r1, te1, tr1, i1 = wrapped.step(action)
    o2, r2, te2, tr2, i2 = bare.step(action)
    assert i1.pop("repaired") == 0
    assert_same((o1, r1, te1, tr1, i1), (o2, r2, te2, tr2, i2))


# ---------------------------------------------------------------------------- SlateSpace
@pytest.mark.parametrize("batch", [None, 7])
def test_slate_space_samples_distinct_positions(batch):
    space = envs.SlateSpace(40, 4, batch=batch, seed=0)
    for _ in range(100):
        s = space.sample()
        assert s.shape == ((4,) if batch is None else (batch, 4))
        assert space.contains(s)
        rows = np.atleast_2d(s)
        assert all(len(set(r.tolist())) == 4 for r in rows)
    # All positions come up; the space is seeded.
    seen = np.concatenate([np.ravel(space.sample()) for _ in range(200)])
    assert set(seen.tolist()) == set(range(40))
    a, b = envs.SlateSpace(40, 4, seed=3), envs.SlateSpace(40, 4, seed=3)
    np.testing.assert_array_equal([a.sample() for _ in range(5)], [b.sample() for _ in range(5)])


def test_slate_space_full_slate_is_a_permutation():
    space = envs.SlateSpace(8, 8, seed=1)
    assert sorted(space.sample().tolist()) == list(range(8))
