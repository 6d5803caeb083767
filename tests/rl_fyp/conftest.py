"""Shared fixtures of the framework tests: an exported re-ranker of a small world."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from envs.feed_env import FeedVectorEnv
from rl_fyp.config import Config, load_config
from rl_fyp.export import export_policy
from rl_fyp.slate_module import SlateRLModule, module_config


def trained_like_module(cfg: Config, seed: int = 0) -> SlateRLModule:
    """A slate module whose candidate scorer matters (as after training), in eval mode."""
    env = FeedVectorEnv(num_envs=1, config=cfg.env)
    torch.manual_seed(seed)
    m = SlateRLModule(
        observation_space=env.single_observation_space,
        action_space=env.single_action_space,
        model_config=module_config(cfg.model, cfg.env),
    )
    with torch.no_grad():  # move the zero-initialised output layer so the scorer matters
        m.pi.cand_out.weight.normal_(0.0, 0.5)
    return m.eval()


def export_small(out: Path, variant: str = "sequential", overrides: list[str] | None = None) -> tuple[Config, SlateRLModule, dict]:
    """Exports a trained-like module of ``configs/small.yaml`` (plus overrides) into ``out``."""
    cfg = load_config("small", [f"model.variant={variant}", *(overrides or [])])
    module = trained_like_module(cfg)
    return cfg, module, export_policy(module, cfg, out)


def observations(n: int, batch: int = 32, seed: int = 5, overrides: list[str] | None = None) -> dict[str, np.ndarray]:
    """A batch of first observations of the small world with N = n candidates."""
    c = load_config("small", [f"env.retrieval.n_candidates={n}", *(overrides or [])])
    env = FeedVectorEnv(num_envs=batch, config=c.env)
    obs, _ = env.reset(seed=seed)
    return obs


@pytest.fixture(scope="session")
def make_export():
    """:func:`export_small`, for tests that export their own model."""
    return export_small


@pytest.fixture(scope="session")
def make_observations():
    """:func:`observations`."""
    return observations


@pytest.fixture(scope="session")
def small_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, SlateRLModule, Path]:
    """(config, module, export directory) of a sequential small-world re-ranker, shared by the session."""
    out = tmp_path_factory.mktemp("small-export")
    cfg, module, _ = export_small(out)
    return cfg, module, out
