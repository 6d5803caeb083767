"""rl-fyp simulation: catalog, user-behaviour model, retrieval + ranking funnel, gymnasium envs.

Importing ``envs`` registers ``rl_fyp/ShortVideoFeed-v0`` with a single-user entry point
(:class:`FeedEnv`) and a native ``vector_entry_point`` (:class:`FeedVectorEnv`):

    gymnasium.make("rl_fyp/ShortVideoFeed-v0", overrides={"catalog.n_items": 100_000})
    gymnasium.make_vec("rl_fyp/ShortVideoFeed-v0", num_envs=1024,
                       vectorization_mode="vector_entry_point", overrides={...})
"""

from __future__ import annotations

import gymnasium as gym

from envs.config import EnvConfig
from envs.core import FeedSimulator, Observation
from envs.feed_env import FeedEnv, FeedVectorEnv, SlateSpace, make_env_config

__all__ = [
    "ENV_ID",
    "EnvConfig",
    "FeedEnv",
    "FeedSimulator",
    "FeedVectorEnv",
    "Observation",
    "SlateSpace",
    "make_env_config",
    "register_envs",
]

ENV_ID = "rl_fyp/ShortVideoFeed-v0"


def register_envs() -> None:
    """Register the feed env with gymnasium (idempotent)."""
    if ENV_ID in gym.registry:
        return
    gym.register(
        id=ENV_ID,
        entry_point="envs.feed_env:FeedEnv",
        vector_entry_point="envs.feed_env:FeedVectorEnv",
        disable_env_checker=False,
    )


register_envs()
