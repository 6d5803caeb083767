"""Potential-based shaping: the potential step by step, and telescoping over any trajectory.

Identity checked (per user slot, per episode = the steps between two resets):
``sum_t gamma^t F_t = gamma^T phi(s_T) - phi(s_0)``, where ``s_0`` is the state a reset
puts the slot in, T the number of steps since that reset, and ``phi(s_T) = 0`` once the
user churned (the terminal state is absorbing: F = 0 until the next reset).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import envs
from envs.feed_env import INFO_REWARD_TERMS
from reward import terms as T
from reward.composite import build_reward
from reward.config import RewardConfig, ShapingConfig
from reward.feedback import Feedback
from reward.shaping import PotentialShaping

F, X = False, True

# ---------------------------------------------------------------------------- table
def test_potential_and_shaping_step_by_step(feedback):
    cfg = ShapingConfig(gamma=0.9, weight=1.0, satisfaction_coef=2.0, satisfaction_rate=0.5, satisfaction_init=0.5,
                        engagement_coef=4.0, engagement_rate=0.25, engagement_init=0.0)
    shaping = PotentialShaping(cfg)
    shaping.reset(np.ones(3, np.bool_))
    # phi(s_0) = 1 * (2 * 0.5 + 4 * 0) = 1 for every slot.
    np.testing.assert_allclose(shaping.potential, [1.0, 1.0, 1.0])
    fb = feedback(
        seen=[[X, X, F], [X, F, F], [X, X, X]],
        watch_ratio=[[1.5, 0.2, 0.0], [0.1, 0.0, 0.0], [1.0, 1.0, 1.0]],
        like=[[X, F, F], [F, F, F], [F, F, F]],
        share=[[F, F, F], [F, F, F], [X, X, F]],
        not_interested=[[F, F, F], [X, F, F], [F, F, F]],
        session_ended=[F, X, X],
        churned=[F, F, X],
    )
    # User 0: q = mean(min(1.5, 1), 0.2) = 0.6 -> sat = 0.5 * 0.5 + 0.5 * 0.6 = 0.55;
    #   e = 1/2 liked -> eng = 0.75 * 0 + 0.25 * 0.5 = 0.125;
    #   phi = 2 * 0.55 + 4 * 0.125 = 1.6; F = 0.9 * 1.6 - 1 = 0.44.
    # User 1: left the session: sat restarts at 0.5 (its q = 0.1 - 1 = -0.9 is dropped with
    #   the session); e = 0 -> eng = 0; phi = 1; F = 0.9 * 1 - 1 = -0.1.
    # User 2: churned: phi = 0 (terminal); F = 0.9 * 0 - 1 = -1.
    f1 = shaping(fb)
    assert f1.dtype == np.float32 and f1.shape == (3,)
    np.testing.assert_allclose(f1, [0.44, -0.1, -1.0], rtol=1e-6)
    np.testing.assert_allclose(shaping.potential, [1.6, 1.0, 0.0])
    np.testing.assert_allclose(shaping.satisfaction[:2], [0.55, 0.5])
    # Step 2, same feedback. User 0: sat = 0.5 * 0.55 + 0.5 * 0.6 = 0.575,
    #   eng = 0.75 * 0.125 + 0.25 * 0.5 = 0.21875, phi = 1.15 + 0.875 = 2.025,
    #   F = 0.9 * 2.025 - 1.6 = 0.2225. User 1: as before, F = -0.1.
    #   User 2 is terminal (absorbing): F = 0 and phi stays 0.
    f2 = shaping(fb)
    np.testing.assert_allclose(f2, [0.2225, -0.1, 0.0], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(shaping.potential, [2.025, 1.0, 0.0])
    # A reset puts user 2 back in s_0 (phi = 1); the others keep their memory.
    shaping.reset(np.array([F, F, X]))
    np.testing.assert_allclose(shaping.potential, [2.025, 1.0, 1.0])


def test_a_step_with_nothing_seen_keeps_the_proxies(feedback):
    cfg = ShapingConfig(gamma=0.5, satisfaction_coef=1.0, engagement_coef=0.0)
    shaping = PotentialShaping(cfg)
    # Never reset: the first call starts every slot from s_0 (phi = 0.5 * 1 = 0.5).
    f = shaping(feedback(seen=[[F, F]]))
    # phi(s') = phi(s_0): F = 0.5 * 0.5 - 0.5 = -0.25.
    np.testing.assert_allclose(f, [-0.25])


def test_truncation_keeps_the_potential(feedback):
    # The reward cannot see the horizon; the last state of a truncated episode keeps its
    # potential (only churn zeroes it).
    shaping = PotentialShaping(ShapingConfig(satisfaction_coef=1.0, engagement_coef=0.0, satisfaction_rate=1.0))
    shaping.reset(np.ones(1, np.bool_))
    shaping(feedback(seen=[[X]], watch_ratio=[[0.8]]))
    np.testing.assert_allclose(shaping.potential, [0.8])


# ---------------------------------------------------------------------------- telescoping
def _random_feedback(feedback, rng: np.random.Generator, B: int, K: int, p_end: float, p_churn: float) -> Feedback:
    n_seen = rng.integers(0, K + 1, B)
    seen = np.arange(K)[None, :] < n_seen[:, None]
    flag = lambda p: (rng.random((B, K)) < p) & seen  # noqa: E731
    ended = rng.random(B) < p_end
    churned = ended & (rng.random(B) < p_churn)
    return feedback(
        seen=seen,
        watch_ratio=np.where(seen, rng.uniform(0.0, 3.0, (B, K)), 0.0),
        like=flag(0.3), share=flag(0.1), comment=flag(0.1), follow=flag(0.1),
        not_interested=flag(0.1),
        session_ended=ended,
        churned=churned,
        return_gap_h=np.where(ended & ~churned, rng.uniform(0.1, 48.0, B), 0.0),
    )


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    B=st.integers(1, 5),
    K=st.integers(1, 4),
    steps=st.integers(1, 60),
    gamma=st.floats(0.05, 1.0),
    weight=st.floats(0.0, 10.0),
    sat_coef=st.floats(-10.0, 10.0),
    eng_coef=st.floats(-10.0, 10.0),
    sat_rate=st.floats(0.01, 1.0),
    eng_rate=st.floats(0.01, 1.0),
    sat_init=st.floats(-1.0, 1.0),
    eng_init=st.floats(0.0, 1.0),
    p_end=st.floats(0.0, 1.0),
    p_churn=st.floats(0.0, 1.0),
    p_reset=st.floats(0.0, 0.5),
)
def test_shaping_telescopes_over_random_trajectories(
    feedback, seed, B, K, steps, gamma, weight, sat_coef, eng_coef, sat_rate, eng_rate, sat_init, eng_init,
    p_end, p_churn, p_reset,
):
    cfg = ShapingConfig(gamma=gamma, weight=weight, satisfaction_coef=sat_coef, engagement_coef=eng_coef,
                        satisfaction_rate=sat_rate, engagement_rate=eng_rate, satisfaction_init=sat_init,
                        engagement_init=eng_init)
    rng = np.random.default_rng(seed)
    shaping = PotentialShaping(cfg)
    shaping.reset(np.ones(B, np.bool_))
    phi0 = shaping.potential  # phi(s_0) of each slot's current episode
    disc_sum = np.zeros(B)  # sum_t gamma^t F_t since the slot's last reset
    t = np.zeros(B, np.int64)  # steps since the slot's last reset
    scale = 1.0 + weight * (abs(sat_coef) * 2.0 + abs(eng_coef))  # bound on |phi| + 1

    churned = np.zeros(B, np.bool_)  # the slot's episode reached the terminal state

    def check(slots: np.ndarray) -> None:
        phi_T = shaping.potential[slots]
        assert np.all(phi_T[churned[slots]] == 0.0)
        expected = gamma ** t[slots] * phi_T - phi0[slots]
        # F is float32: a rounding of |F| <= 2 * scale per step.
        np.testing.assert_allclose(disc_sum[slots], expected, rtol=0, atol=4e-7 * scale * (1 + steps))

    for _ in range(steps):
        fb = _random_feedback(feedback, rng, B, K, p_end, p_churn)
        f = shaping(fb)
        disc_sum += gamma**t * f.astype(np.float64)
        t += 1
        churned |= fb.churned
        # Fresh users in some slots: the episode that ends there must have telescoped.
        reset = rng.random(B) < p_reset
        if reset.any():
            check(reset)
            shaping.reset(reset)
            phi0[reset] = shaping.potential[reset]
            disc_sum[reset] = 0.0
            t[reset] = 0
            churned[reset] = False
    check(np.ones(B, np.bool_))


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), steps=st.integers(1, 40))
def test_undiscounted_shaping_sums_to_the_potential_difference(feedback, seed, steps):
    # gamma = 1: sum_t F_t = phi(s_T) - phi(s_0), one episode without resets.
    rng = np.random.default_rng(seed)
    shaping = PotentialShaping(ShapingConfig(gamma=1.0))
    shaping.reset(np.ones(3, np.bool_))
    phi0 = shaping.potential
    total = np.zeros(3)
    for _ in range(steps):
        total += shaping(_random_feedback(feedback, rng, 3, 4, 0.3, 0.2))
    np.testing.assert_allclose(total, shaping.potential - phi0, atol=1e-4)


# ---------------------------------------------------------------------------- in the env
def test_env_shaping_with_gamma_one_sums_to_the_potential_difference_over_an_episode(small_world, random_slates):
    cfg = RewardConfig(shaping=ShapingConfig(gamma=1.0))
    reward = build_reward(cfg)
    env = envs.FeedEnv(overrides={**small_world, "horizon_days": 0.5}, reward=reward)
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=1)
    phi0 = reward.shaping.potential[0]
    assert phi0 == pytest.approx(cfg.shaping.weight * cfg.shaping.satisfaction_coef * cfg.shaping.satisfaction_init)
    total, done, steps = 0.0, False, 0
    while not done:
        obs, r, terminated, truncated, info = env.step(random_slates(rng, obs["mask"], 4)[0])
        total += info[INFO_REWARD_TERMS][T.TERM_SHAPING]
        done, steps = terminated or truncated, steps + 1
    assert steps > 1
    phi_T = reward.shaping.potential[0]
    if terminated:
        assert phi_T == 0.0
    assert total == pytest.approx(phi_T - phi0, abs=1e-4)
    # A new episode starts from s_0 again.
    env.reset()
    assert reward.shaping.potential[0] == pytest.approx(phi0)


def test_vector_env_shaping_telescopes_per_episode_across_autoresets(small_world, random_slates):
    B, gamma = 8, 0.97
    cfg = RewardConfig(shaping=ShapingConfig(gamma=gamma))
    reward = build_reward(cfg)
    venv = envs.FeedVectorEnv(num_envs=B, overrides={**small_world, "horizon_days": 0.3}, reward=reward)
    rng = np.random.default_rng(3)
    obs, _ = venv.reset(seed=3)
    phi0 = reward.shaping.potential  # every new user starts from the same s_0
    disc_sum, t = np.zeros(B), np.zeros(B, np.int64)
    finished = 0
    autoreset = np.zeros(B, np.bool_)
    for _ in range(150):
        obs, r, terminated, truncated, info = venv.step(random_slates(rng, obs["mask"], 4))
        shaping = info[INFO_REWARD_TERMS][T.TERM_SHAPING].astype(np.float64)
        active = ~autoreset
        assert np.all(shaping[~active] == 0.0)  # the autoreset step pays nothing
        disc_sum[active] += gamma ** t[active] * shaping[active]
        t[active] += 1
        done = terminated | truncated
        if done.any():
            expected = gamma ** t[done] * reward.shaping.potential[done] - phi0[done]
            np.testing.assert_allclose(disc_sum[done], expected, atol=1e-4)
            assert np.all(reward.shaping.potential[terminated] == 0.0)
            finished += int(done.sum())
            disc_sum[done], t[done] = 0.0, 0
        autoreset = done
    assert finished > 0


# ---------------------------------------------------------------------------- switches
def test_with_shaping_disabled_there_is_no_shaping_term(feedback):
    cfg = RewardConfig(shaping=ShapingConfig(enabled=False))
    reward = build_reward(cfg)
    assert reward.shaping is None and T.TERM_SHAPING not in reward.terms
    out = reward(feedback(seen=[[X, X]], watch_ratio=[[1.0, 0.5]], session_ended=[X], return_gap_h=[2.0]))
    assert T.TERM_SHAPING not in out
    reward.reset(np.ones(1, np.bool_))  # a no-op, not an error
    # A zero weight also turns the term off.
    assert T.TERM_SHAPING not in build_reward(RewardConfig(shaping=ShapingConfig(weight=0.0))).terms


def test_shaping_rejects_a_batch_of_another_size(feedback):
    shaping = PotentialShaping(ShapingConfig())
    shaping.reset(np.ones(2, np.bool_))
    with pytest.raises(ValueError, match="2 slots"):
        shaping(feedback(seen=[[X], [X], [X]]))
