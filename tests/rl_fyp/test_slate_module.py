"""Tests for the slate RLModule on real simulator observations (no Ray cluster needed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns

from envs.feed_env import FeedVectorEnv
from rl_fyp.baselines import GreedyPolicy
from rl_fyp.config import Config, load_config
from rl_fyp.policy import ModulePolicy
from rl_fyp.slate_module import SlateRLModule, greedy_slates, module_config


def small_cfg(*overrides: str) -> Config:
    return load_config("small", list(overrides))


def make_module(cfg: Config, env: FeedVectorEnv) -> SlateRLModule:
    torch.manual_seed(0)
    return SlateRLModule(
        observation_space=env.single_observation_space,
        action_space=env.single_action_space,
        model_config=module_config(cfg.model, cfg.env),
    )


def observe(cfg: Config, n: int = 16, seed: int = 0) -> tuple[FeedVectorEnv, dict[str, np.ndarray]]:
    env = FeedVectorEnv(num_envs=n, config=cfg.env)
    obs, _ = env.reset(seed=seed)
    return env, obs


def as_batch(obs: dict[str, np.ndarray]) -> dict:
    return {Columns.OBS: {k: torch.from_numpy(v) for k, v in obs.items()}}


@pytest.fixture(params=["pointwise", "sequential"])
def variant(request: pytest.FixtureRequest) -> str:
    return request.param


def test_forward_shapes_and_valid_slates(variant: str) -> None:
    cfg = small_cfg(f"model.variant={variant}")
    env, obs = observe(cfg)
    m = make_module(cfg, env)
    out = m.forward_exploration(as_batch(obs))
    dist = m.get_exploration_action_dist_cls().from_logits(out[Columns.ACTION_DIST_INPUTS])
    slates = dist.sample()
    assert slates.shape == (16, cfg.env.slate_size)
    logp = dist.logp(slates)
    assert logp.shape == (16,) and torch.isfinite(logp).all() and (logp <= 0).all()
    values = m.compute_values(as_batch(obs))
    assert values.shape == (16,)
    # The env accepts the slates (distinct, valid, in range).
    env.step(slates.numpy())


def test_masked_candidates_are_never_picked(variant: str) -> None:
    cfg = small_cfg(f"model.variant={variant}")
    env, obs = observe(cfg)
    n = obs["mask"].shape[1]
    obs = {k: v.copy() for k, v in obs.items()}
    obs["mask"][:, : n // 2] = 0  # hide the first half, where the best candidates may sit
    m = make_module(cfg, env)
    dist = m.action_dist_cls.from_logits(m.forward_exploration(as_batch(obs))[Columns.ACTION_DIST_INPUTS])
    torch.manual_seed(0)
    for _ in range(20):
        assert (dist.sample() >= n // 2).all()
    assert (greedy_slates(m, as_batch(obs)[Columns.OBS]) >= n // 2).all()


def test_untrained_pointwise_inference_is_greedy_by_value() -> None:
    # The scorer's last layer starts at zero: the scores are prior_scale * value score.
    cfg = small_cfg("model.variant=pointwise")
    env, obs = observe(cfg)
    m = make_module(cfg, env)
    value = obs["candidates"][..., GreedyPolicy(cfg.env).value_col]
    mine, greedy = ModulePolicy(m)(obs), GreedyPolicy(cfg.env)(obs)
    # Slot by slot the same value score (candidates with tied scores may swap).
    np.testing.assert_array_equal(np.take_along_axis(value, mine, 1), np.take_along_axis(value, greedy, 1))


def test_one_module_runs_at_any_number_of_candidates(variant: str) -> None:
    cfg = small_cfg(f"model.variant={variant}")
    env, _ = observe(cfg)
    m = make_module(cfg, env)
    bigger = small_cfg(f"model.variant={variant}", "env.retrieval.n_candidates=90")
    _, obs = observe(bigger)
    slates = ModulePolicy(m)(obs)
    assert slates.shape == (16, cfg.env.slate_size)
    assert slates.max() < 90 and slates.max() >= 0


def test_values_from_train_embeddings_match_a_direct_call(variant: str) -> None:
    cfg = small_cfg(f"model.variant={variant}")
    env, obs = observe(cfg)
    m = make_module(cfg, env)
    out = m.forward_train(as_batch(obs))
    direct = m.compute_values(as_batch(obs))
    via = m.compute_values(as_batch(obs), embeddings=out[Columns.EMBEDDINGS])
    assert torch.allclose(direct, via)


def test_target_network_starts_equal_and_then_lags() -> None:
    from ray.rllib.core.rl_module.apis.target_network_api import TARGET_NETWORK_ACTION_DIST_INPUTS

    cfg = small_cfg()
    env, obs = observe(cfg)
    m = make_module(cfg, env)
    m.make_target_networks()
    main = m.forward_train(as_batch(obs))[Columns.ACTION_DIST_INPUTS]
    target = m.forward_target(as_batch(obs))[TARGET_NETWORK_ACTION_DIST_INPUTS]
    assert torch.allclose(main, target)
    ((main_net, target_net),) = m.get_target_network_pairs()
    with torch.no_grad():
        for p in main_net.parameters():
            p.add_(0.1)
    moved = m.forward_train(as_batch(obs))[Columns.ACTION_DIST_INPUTS]
    assert torch.allclose(m.forward_target(as_batch(obs))[TARGET_NETWORK_ACTION_DIST_INPUTS], target)
    assert not torch.allclose(moved, target)


def test_gradients_reach_every_policy_parameter(variant: str) -> None:
    cfg = small_cfg(f"model.variant={variant}")
    env, obs = observe(cfg)
    m = make_module(cfg, env)
    # Move the zero-initialised output layer so gradients flow through the whole scorer.
    with torch.no_grad():
        m.pi.cand_out.weight.normal_(0, 0.1)
    out = m.forward_train(as_batch(obs))
    dist = m.action_dist_cls.from_logits(out[Columns.ACTION_DIST_INPUTS])
    slates = GreedyPolicy(cfg.env)(obs)
    loss = -dist.logp(torch.from_numpy(slates)).mean() + m.compute_values(as_batch(obs), out[Columns.EMBEDDINGS]).pow(2).mean()
    loss.backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
