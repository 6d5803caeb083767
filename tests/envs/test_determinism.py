"""Same seed, same trajectory (Gymnasium tests/envs/test_envs.py); a new seed, a new one."""

from __future__ import annotations

import numpy as np
import pytest

import envs
from envs.cohort import run_cohort
from envs.feed_env import make_env_config
from envs.ranking import CAND_VALUE

CATALOG_ARRAYS = ("true_vec", "emb", "topic", "niche", "duration_s", "quality", "creator", "sound",
                  "region", "upload_h", "stage", "impressions", "completions", "niche_start")


def _single_rollout(overrides, seed, steps, policy):
    """Observations, rewards, flags and infos of `steps` steps; the env resets itself
    (without a seed) when an episode ends, which must also be deterministic."""
    env = envs.FeedEnv(overrides=overrides)
    env.action_space.seed(seed)
    obs, info = env.reset(seed=seed)
    out = [(obs, info)]
    for _ in range(steps):
        action = policy(env, obs)
        obs, reward, terminated, truncated, info = env.step(action)
        out.append((obs, reward, terminated, truncated, info))
        if terminated or truncated:
            obs, info = env.reset()
            out.append((obs, info))
    return out


def _sampled(env, obs):
    # SlateSpace.sample: K distinct positions from the seeded action space. The small
    # world always retrieves N valid candidates, so any distinct slate is valid.
    assert obs["mask"].all()
    return env.action_space.sample()


def _greedy(env, obs):
    d, K = env.config.catalog.latent_dim, env.config.slate_size
    value = np.where(obs["mask"] != 0, obs["candidates"][:, d + CAND_VALUE], -np.inf)
    return np.argsort(-value, kind="stable")[:K]


@pytest.mark.parametrize("policy", [_sampled, _greedy], ids=["sampled", "greedy"])
def test_single_env_same_seed_same_rollout(small_overrides, assert_same, policy):
    overrides = {**small_overrides, "horizon_days": 0.5}  # a few episodes in 60 steps
    a = _single_rollout(overrides, 11, 60, policy)
    b = _single_rollout(overrides, 11, 60, policy)
    assert_same(a, b)


def test_single_env_different_seed_differs(small_overrides):
    a = _single_rollout(small_overrides, 11, 5, _greedy)
    b = _single_rollout(small_overrides, 12, 5, _greedy)
    assert not np.array_equal(a[0][0]["user"], b[0][0]["user"]) or not np.array_equal(
        a[0][0]["candidates"], b[0][0]["candidates"]
    )
    assert [x[1] for x in a[1:]] != [x[1] for x in b[1:]]


def _vector_rollout(overrides, seed, steps, B, random_slates):
    venv = envs.FeedVectorEnv(num_envs=B, overrides=overrides)
    rng = np.random.default_rng(seed)
    obs, info = venv.reset(seed=seed)
    out = [(obs, info)]
    for _ in range(steps):
        obs, reward, terminated, truncated, info = venv.step(random_slates(rng, obs["mask"], venv.config.slate_size))
        out.append((obs, reward, terminated, truncated, info))
    return out


def test_vector_env_same_seed_same_rollout(small_overrides, assert_same, random_slates):
    overrides = {**small_overrides, "horizon_days": 0.5}  # autoresets happen along the way
    a = _vector_rollout(overrides, 3, 50, 16, random_slates)
    b = _vector_rollout(overrides, 3, 50, 16, random_slates)
    assert any(np.any(x[2] | x[3]) for x in a[1:]), "no autoreset exercised"
    assert_same(a, b)


def test_vector_env_different_seed_differs(small_overrides, random_slates):
    a = _vector_rollout(small_overrides, 3, 3, 8, random_slates)
    b = _vector_rollout(small_overrides, 4, 3, 8, random_slates)
    assert not np.array_equal(a[0][0]["candidates"], b[0][0]["candidates"])
    assert not np.array_equal(a[-1][1], b[-1][1])


def test_vector_env_seed_list_uses_first_seed(small_overrides, assert_same):
    a = envs.FeedVectorEnv(num_envs=3, overrides=small_overrides)
    b = envs.FeedVectorEnv(num_envs=3, overrides=small_overrides)
    assert_same(a.reset(seed=[7, 8, 9]), b.reset(seed=7))


def _catalog_snapshot(catalog):
    return {name: getattr(catalog, name).copy() for name in CATALOG_ARRAYS}


def test_reset_without_seed_keeps_world_and_brings_new_user(small_overrides, assert_same):
    env = envs.FeedEnv(overrides=small_overrides)
    obs0, _ = env.reset(seed=5)
    sim = env.unwrapped.sim
    catalog = sim.catalog
    world = _catalog_snapshot(catalog)
    user0 = sim.users.interest_vec[0].copy()

    obs1, _ = env.reset()
    assert sim.catalog is catalog
    assert_same(world, _catalog_snapshot(sim.catalog))
    assert not np.array_equal(user0, sim.users.interest_vec[0])  # a new hidden user
    assert not np.array_equal(obs0["user"], obs1["user"])

    # After some steps the world has moved on (uploads, statistics); reset() keeps it as is.
    for _ in range(5):
        env.step(env.action_space.sample())
    moved = _catalog_snapshot(catalog)
    now_h = catalog.now_h
    assert now_h > 0
    env.reset()
    assert sim.catalog is catalog and catalog.now_h == now_h
    assert_same(moved, _catalog_snapshot(sim.catalog))
    assert sim.users.clock_h[0] == 0.0

    # reset(seed=...) rebuilds the world from the seed: the same seed, the same world.
    env.reset(seed=5)
    assert sim.catalog is not catalog
    assert_same(world, _catalog_snapshot(sim.catalog))


def test_vector_reset_without_seed_keeps_world_and_brings_new_users(small_overrides, assert_same):
    venv = envs.FeedVectorEnv(num_envs=4, overrides=small_overrides)
    venv.reset(seed=5)
    catalog = venv.sim.catalog
    world = _catalog_snapshot(catalog)
    users = venv.sim.users.interest_vec.copy()
    venv.reset()
    assert venv.sim.catalog is catalog
    assert_same(world, _catalog_snapshot(catalog))
    assert not np.array_equal(users, venv.sim.users.interest_vec)


def _greedy_policy(latent_dim, k):
    def policy(obs):
        value = np.where(obs["mask"] != 0, obs["candidates"][..., latent_dim + CAND_VALUE], -np.inf)
        return np.argsort(-value, axis=1, kind="stable")[:, :k]

    return policy


def test_run_cohort_same_seed_same_metrics(small_overrides, assert_same):
    cfg = make_env_config(None, {**small_overrides, "horizon_days": 1})
    policy = _greedy_policy(cfg.catalog.latent_dim, cfg.slate_size)
    a = run_cohort(cfg, policy, n_users=12, seed=9, similarity_every=4, similarity_until=12)
    b = run_cohort(cfg, policy, n_users=12, seed=9, similarity_every=4, similarity_until=12)
    assert a.steps == b.steps > 0
    assert set(a.per_user) >= {"days_active", "next_day_return", "sessions", "watch_time_s", "churned"}
    for name, values in a.per_user.items():
        assert values.shape == (12,), name
    assert_same(a.per_user, b.per_user)
    assert_same(a.est_similarity, b.est_similarity)

    c = run_cohort(cfg, policy, n_users=12, seed=10)
    assert not np.array_equal(a.per_user["watch_time_s"], c.per_user["watch_time_s"])


_THREADS_SCRIPT = """
import hashlib, numpy as np
from envs.cohort import run_cohort
from envs.feed_env import make_env_config
from rl_fyp.baselines import GreedyPolicy
cfg = make_env_config(None, {overrides!r})
r = run_cohort(cfg, GreedyPolicy(cfg), 100, seed=3)
print(r.steps, hashlib.sha256(b"".join(np.ascontiguousarray(r.per_user[k]).tobytes() for k in sorted(r.per_user))).hexdigest())
"""


def test_trajectories_do_not_depend_on_the_thread_count(small_overrides):
    # Parallel kernels draw from per-user random streams, so 1 and 2 threads agree exactly.
    import os
    import subprocess
    import sys

    script = _THREADS_SCRIPT.format(overrides=dict(small_overrides))
    outs = []
    for threads in ("1", "2"):
        env = dict(os.environ, NUMBA_NUM_THREADS=threads, OPENBLAS_NUM_THREADS="1")
        res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr
        outs.append(res.stdout.strip())
    assert outs[0] == outs[1]
