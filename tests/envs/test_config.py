"""EnvConfig: defaults, dotted overrides, and ConfigError naming the offending key."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import pytest

import envs
from envs.config import ConfigError, EnvConfig
from envs.feed_env import make_env_config


def test_defaults_and_overrides(small_overrides):
    assert make_env_config() == EnvConfig()
    cfg = make_env_config(None, small_overrides)
    assert cfg.catalog.n_items == 4000 and cfg.catalog.n_niches == 24
    assert cfg.retrieval.n_candidates == 40 and cfg.slate_size == 4
    assert cfg.horizon_h == 72.0
    assert isinstance(cfg.horizon_days, float)  # an int widens to the declared float
    # Nested mappings, a config instance as the base, and "key=value" strings all work.
    assert make_env_config({"catalog": {"n_items": 4000, "n_topics": 6, "niches_per_topic": 4}}).catalog.n_niches == 24
    assert make_env_config(cfg, {"slate_size": 5}).slate_size == 5
    assert make_env_config(cfg, {"slate_size": 5}).catalog.n_items == 4000
    assert make_env_config(None, ["slate_size=6", "retrieval.n_candidates=50"]).slate_size == 6


def test_config_is_frozen():
    cfg = EnvConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.slate_size = 3  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.catalog.n_items = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    "overrides, key, reason",
    [
        # Unknown keys, with a suggestion for a near miss.
        ({"catalog.n_itemz": 5}, "catalog.n_itemz", "unknown key.*n_items"),
        ({"slate_sise": 5}, "slate_sise", "unknown key"),
        ({"retrieval.n_candidates.x": 5}, "retrieval.n_candidates", "expected int"),
        # Wrong types: no silent coercion of strings, floats or bools into ints.
        ({"slate_size": "eight"}, "slate_size", "expected int"),
        ({"slate_size": 4.0}, "slate_size", "expected int"),
        ({"slate_size": True}, "slate_size", "expected int"),
        ({"catalog.n_items": 1e5}, "catalog.n_items", "expected int"),
        ({"horizon_days": "3"}, "horizon_days", "expected float"),
        ({"catalog": 5}, "catalog", "mapping"),
        # Out of range.
        ({"slate_size": 0}, "slate_size", ">= 1"),
        ({"catalog.n_items": 10}, "catalog.n_items", ">= 1000"),
        ({"horizon_days": 0.0}, "horizon_days", "> 0"),
        ({"retrieval.n_candidates": 5000}, "retrieval.n_candidates", "<= 4096"),
        ({"response.return_gap_sigma": -0.1}, "response.return_gap_sigma", ">= 0"),
        ({"user.signup_prob": 1.5}, "user.signup_prob", "<= 1"),
        # Cross-field checks.
        ({"retrieval.embedding_share": 0.9, "retrieval.i2i_share": 0.5}, "retrieval.embedding_share", "sum to 1.800 > 1"),
        ({"retrieval.n_candidates": 8, "slate_size": 9}, "retrieval.n_candidates", r"slate_size \(9\)"),
        ({"catalog.n_items": 1000, "catalog.n_topics": 64, "catalog.niches_per_topic": 64}, "catalog.n_items",
         "4 videos per niche"),
        ({"catalog.min_duration_s": 10.0, "catalog.max_duration_s": 10.0}, "catalog.max_duration_s", "exceed"),
    ],
)
def test_bad_config_raises_config_error_naming_the_key(overrides, key, reason):
    with pytest.raises(ConfigError, match=reason) as err:
        make_env_config(None, overrides)
    assert err.value.key == key
    assert str(err.value).startswith(f"{key}: ")
    assert isinstance(err.value, ValueError)


def test_shares_summing_to_exactly_one_are_fine():
    cfg = make_env_config(None, {"retrieval.embedding_share": 0.5, "retrieval.i2i_share": 0.2,
                                 "retrieval.trending_share": 0.1, "retrieval.fresh_share": 0.1,
                                 "retrieval.followed_share": 0.05, "retrieval.explore_share": 0.05})
    assert cfg.retrieval.embedding_share == 0.5


def test_n_candidates_equal_to_slate_size_is_fine():
    assert make_env_config(None, {"retrieval.n_candidates": 8, "slate_size": 8}).slate_size == 8


def test_bad_base_config_type():
    with pytest.raises(ConfigError, match="expected an EnvConfig or a mapping"):
        make_env_config(42)  # type: ignore[arg-type]


def test_malformed_string_override():
    with pytest.raises(ConfigError, match="key=value"):
        make_env_config(None, ["slate_size"])


def test_gymnasium_make_passes_overrides_through(small_overrides):
    env = gym.make(envs.ENV_ID, overrides=small_overrides)
    assert env.unwrapped.config == make_env_config(None, small_overrides)
    venv = gym.make_vec(envs.ENV_ID, num_envs=2, vectorization_mode="vector_entry_point", overrides=small_overrides)
    assert venv.unwrapped.config == make_env_config(None, small_overrides)
    # A typed config can be handed over too.
    env = gym.make(envs.ENV_ID, config=make_env_config(None, small_overrides))
    assert env.unwrapped.config.catalog.n_items == 4000


@pytest.mark.parametrize("vector", [False, True], ids=["make", "make_vec"])
def test_gymnasium_make_rejects_bad_overrides(vector):
    with pytest.raises(ConfigError) as err:
        if vector:
            gym.make_vec(envs.ENV_ID, num_envs=2, vectorization_mode="vector_entry_point",
                         overrides={"catalog.n_itemz": 5})
        else:
            gym.make(envs.ENV_ID, overrides={"catalog.n_itemz": 5})
    assert err.value.key == "catalog.n_itemz"
    with pytest.raises(ConfigError, match="slate_size"):
        gym.make(envs.ENV_ID, overrides={"slate_size": -1})


def test_register_envs_is_idempotent():
    envs.register_envs()
    envs.register_envs()
    spec = gym.spec(envs.ENV_ID)
    assert spec.entry_point == "envs.feed_env:FeedEnv"
    assert spec.vector_entry_point == "envs.feed_env:FeedVectorEnv"
