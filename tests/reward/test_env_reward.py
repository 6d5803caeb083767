"""The full reward in the simulator: the reported terms sum exactly to the env's reward."""

from __future__ import annotations

import numpy as np
import pytest

import envs
from envs.feed_env import INFO_FEEDBACK, INFO_REWARD_TERMS
from reward import terms as T
from reward.composite import build_reward
from reward.config import OptionalTerms, RewardConfig, load_reward_config
from reward.feedback import Feedback

CONFIGS = {
    "retention": RewardConfig(),
    "all_terms": RewardConfig(optional=OptionalTerms(diversity=1.0, new_creator=0.5)),
    "engagement": load_reward_config("engagement"),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_vector_env_terms_sum_to_the_reward(small_world, random_slates, name):
    cfg = CONFIGS[name]
    B = 12
    # A 1-day horizon so that episodes end (churn, horizon) and slots autoreset.
    venv = envs.FeedVectorEnv(num_envs=B, overrides={**small_world, "horizon_days": 1.0}, reward=build_reward(cfg))
    rng = np.random.default_rng(11)
    obs, _ = venv.reset(seed=11)
    K = venv.config.slate_size
    seen_nonzero: set[str] = set()
    ended = 0
    for _ in range(120):
        obs, reward, terminated, truncated, info = venv.step(random_slates(rng, obs["mask"], K))
        terms = info[INFO_REWARD_TERMS]
        assert tuple(terms) == cfg.active_terms
        total = np.zeros(B, np.float64)
        for term, value in terms.items():
            assert value.shape == (B,) and value.dtype == np.float32, term
            assert np.all(np.isfinite(value)), term
            total += value
            if np.any(value != 0.0):
                seen_nonzero.add(term)
        np.testing.assert_allclose(total, reward, rtol=0, atol=1e-5)
        ended += int(info[INFO_FEEDBACK]["session_ended"].sum())
    assert ended > 0
    # Every active term paid something at some step (the rollout reaches session ends).
    missing = set(cfg.active_terms) - seen_nonzero
    assert missing <= {T.TERM_CHURN}, missing  # churn is rare in a day


def test_single_env_terms_sum_to_the_reward_and_match_the_feedback(small_world, random_slates):
    cfg = CONFIGS["all_terms"]
    reward_fn = build_reward(cfg)
    env = envs.FeedEnv(overrides={**small_world, "horizon_days": 0.5}, reward=reward_fn)
    rng = np.random.default_rng(2)
    obs, _ = env.reset(seed=2)
    for _ in range(60):
        obs, reward, terminated, truncated, info = env.step(random_slates(rng, obs["mask"], 4)[0])
        terms = info[INFO_REWARD_TERMS]
        assert all(isinstance(v, float) for v in terms.values())
        assert sum(terms.values()) == pytest.approx(reward, abs=1e-5)
        # The stateless terms are a pure function of the reported feedback.
        fb = Feedback(*(np.asarray(info[INFO_FEEDBACK][k])[None] for k in Feedback._fields))
        again = build_reward(RewardConfig(optional=cfg.optional, disabled_terms=(T.TERM_SHAPING,)))(fb)
        for term, value in again.items():
            assert terms[term] == pytest.approx(float(value[0]), abs=1e-6), term
        if terminated or truncated:
            obs, _ = env.reset()


def test_the_feedback_carries_what_the_platform_sees_of_the_shown_videos(small_world, random_slates):
    venv = envs.FeedVectorEnv(num_envs=6, overrides=small_world)
    rng = np.random.default_rng(4)
    obs, _ = venv.reset(seed=4)
    cat = venv.sim.catalog
    d, K = venv.config.catalog.latent_dim, venv.config.slate_size
    for _ in range(20):
        slates = random_slates(rng, obs["mask"], K)
        items = np.take_along_axis(venv.sim.obs.item_ids, slates, axis=1)
        # Read before the step: uploads may replace catalog rows during it.
        emb, followers = cat.emb[items].copy(), cat.creator_followers[cat.creator[items]].copy()
        obs, reward, terminated, truncated, info = venv.step(slates)
        fb = info[INFO_FEEDBACK]
        seen = fb["seen"]
        assert fb["emb"].shape == (6, K, d) and fb["emb"].dtype == np.float32
        assert fb["creator_followers"].shape == (6, K) and fb["creator_followers"].dtype == np.float32
        np.testing.assert_array_equal(fb["emb"][seen], emb[seen])
        np.testing.assert_array_equal(fb["creator_followers"][seen], followers[seen])
        assert not np.any(fb["emb"][~seen]) and not np.any(fb["creator_followers"][~seen])
