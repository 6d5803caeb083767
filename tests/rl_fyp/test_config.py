"""Tests for rl_fyp.config: the root config, named YAML files and dotted overrides."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from envs.config import EnvConfig
from reward.config import RewardConfig
from rl_fyp.config import (
    CONFIG_DIR,
    Config,
    ConfigError,
    EvalConfig,
    LoggingConfig,
    ModelConfig,
    ResourceConfig,
    TrainConfig,
    config_hash,
    load_config,
    resolve_config_path,
    save_config,
    write_text_atomic,
)


def test_default_config_is_the_typed_defaults_but_for_the_reward() -> None:
    # configs/default.yaml restates the defaults, and tunes the reward weights of the main job.
    cfg = load_config()
    assert dataclasses.replace(cfg, reward=Config().reward) == Config()
    assert load_config("default") == cfg
    assert cfg.eval.n_users == 2000
    assert cfg.eval.policies == ("ppo", "greedy", "mmr", "explore", "random", "oracle")
    assert cfg.eval.mmr_lambda == 0.5
    assert cfg.eval.tune_heuristics is True
    assert cfg.out_dir == "runs"
    assert cfg.env.horizon_days == 14.0


def test_default_config_is_found_from_any_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = load_config()
    monkeypatch.chdir(tmp_path)
    assert load_config() == expected
    assert load_config("small").eval.n_users == 64


def test_small_config() -> None:
    cfg = load_config("small")
    c = cfg.env.catalog
    assert (c.n_items, c.n_topics, c.niches_per_topic, c.n_sounds) == (4000, 6, 4, 200)
    assert cfg.env.retrieval.n_candidates == 40
    assert cfg.env.slate_size == 4
    assert cfg.env.horizon_days == 3.0
    assert (cfg.eval.n_users, cfg.eval.tune_users, cfg.eval.n_boot) == (64, 32, 200)
    # Keys the file does not name keep their defaults.
    assert cfg.env.catalog.latent_dim == EnvConfig().catalog.latent_dim
    assert cfg.reward == RewardConfig()
    assert cfg.seed == 0


def test_config_file_by_path_and_by_file_name() -> None:
    assert load_config(CONFIG_DIR / "small.yaml") == load_config("small")
    assert load_config(str(CONFIG_DIR / "small.yaml")) == load_config("small")
    assert resolve_config_path("small.yaml") == CONFIG_DIR / "small.yaml"


def test_string_overrides_are_typed() -> None:
    cfg = load_config(
        "small", ["env.catalog.n_items=100000", "seed=3", "env.horizon_days=2", "reward.engagement.like=1e-3"]
    )
    assert cfg.env.catalog.n_items == 100_000 and type(cfg.env.catalog.n_items) is int
    assert cfg.seed == 3
    # An int given for a float field becomes a float; 1e-3 is a float, not a string.
    assert cfg.env.horizon_days == 2.0 and type(cfg.env.horizon_days) is float
    assert cfg.reward.engagement.like == pytest.approx(1e-3)
    # The file's other values survive the overrides.
    assert cfg.env.catalog.n_topics == 6


def test_mapping_overrides_and_tuples() -> None:
    cfg = load_config("small", {"eval.policies": ["mmr"], "eval.mmr_lambda": 1, "eval.mmr_lambda_grid": [0, 1]})
    assert cfg.eval.policies == ("mmr",)
    assert cfg.eval.mmr_lambda == 1.0 and type(cfg.eval.mmr_lambda) is float
    assert cfg.eval.mmr_lambda_grid == (0.0, 1.0) and all(type(v) is float for v in cfg.eval.mmr_lambda_grid)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["env.catalog.n_itemz=5"], "env.catalog.n_itemz"),  # unknown key
        (["evl.n_users=5"], "evl"),  # unknown top-level key
        (["simulate.n_users=5"], "simulate"),  # the old name of the eval section
        (["seed=abc"], "seed"),  # wrong type
        (["eval.n_users=1.5"], "eval.n_users"),  # float for an int
        (["env.slate_size=true"], "env.slate_size"),  # bool for an int
        (["eval.mmr_lambda=1.5"], "eval.mmr_lambda"),  # out of range
        (["eval.explore_share_grid=[0.1, 1.5]"], "eval.explore_share_grid"),  # grid value out of range
        (["eval.mmr_lambda_grid=[]"], "eval.mmr_lambda_grid"),  # empty grid
        (["out_dir= "], "out_dir"),  # empty output directory
        (["seed=-1"], "seed"),  # out of range
        (["env.catalog.n_items=10"], "env.catalog.n_items"),  # out of range
        (["eval.policies=[greedy, random_walk]"], "eval.policies[1]"),  # bad choice
        (["eval.policies=[greedy, greedy]"], "eval.policies"),  # repeated
        (["eval.policies=[]"], "eval.policies"),  # empty
        (["env.slate_size=64"], "env.retrieval.n_candidates"),  # cross-field check (N >= K)
        (["seed"], "seed"),  # no '='
        (["env.catalog.n_items=[1, 2"], "env.catalog.n_items"),  # not YAML
        (["env..n_items=5"], "env..n_items"),  # empty key part
        # Distributed training keys.
        (["train.address=head"], "train.address"),  # no port, no scheme
        (["train.address=ftp://head:21"], "train.address"),  # not a Ray address
        (["train.num_learners=3"], "train.train_batch_size"),  # 256 steps do not split over 3 learners
        (["train.num_learners=4"], "train.minibatch_size"),  # 64 steps per learner < minibatch 128
        (["train.num_cpus_per_env_runner=-1"], "train.num_cpus_per_env_runner"),
        (["train.num_gpus_per_learner=-0.5"], "train.num_gpus_per_learner"),
        (["train.max_env_runner_restarts=-1"], "train.max_env_runner_restarts"),
        (["train.restart_failed_env_runners=1"], "train.restart_failed_env_runners"),  # int for a bool
        (["train.custom_resources_per_env_runner=[{name: w, amont: 1}]"], "train.custom_resources_per_env_runner[0].amont"),
        (["train.custom_resources_per_env_runner=[{name: GPU}]"], "train.custom_resources_per_env_runner[0].name"),
        (["train.custom_resources_per_env_runner=[{name: w, amount: 0}]"], "train.custom_resources_per_env_runner[0].amount"),
        (["train.custom_resources_per_env_runner=[{name: w}, {name: w}]"], "train.custom_resources_per_env_runner"),
    ],
)
def test_bad_values_name_the_dotted_key(overrides: list[str], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config("small", overrides)
    assert info.value.key == key
    assert str(info.value).startswith(f"{key}: ")


@pytest.mark.parametrize("address", ["", "auto", "10.0.0.5:6379", "ray://head:10001", "http://head:8265", "https://ray.example.com"])
def test_cluster_addresses(address: str) -> None:
    assert load_config("small", {"train.address": address}).train.address == address


def test_scale_out_keys_round_trip(tmp_path: Path) -> None:
    cfg = load_config("small", [
        "train.num_env_runners=4", "train.num_cpus_per_env_runner=0.5", "train.num_learners=2",
        "train.num_gpus_per_learner=1", "train.custom_resources_per_env_runner=[{name: sim_node, amount: 0.5}]",
        "train.ship_excludes=[.venv, data]",
    ])
    t = cfg.train
    assert (t.num_env_runners, t.num_cpus_per_env_runner, t.num_learners, t.num_gpus_per_learner) == (4, 0.5, 2, 1.0)
    assert t.custom_resources_per_env_runner[0].name == "sim_node" and t.train_batch_size_per_learner == 128
    assert t.ship_excludes == (".venv", "data") and t.ship_code is True and t.restart_failed_env_runners is True
    assert load_config(save_config(cfg, tmp_path / "c.yaml")) == cfg


def test_unknown_key_suggests_the_right_one() -> None:
    with pytest.raises(ConfigError, match=r"did you mean 'n_items'"):
        load_config("small", ["env.catalog.n_itemz=5"])


def test_error_in_a_file_names_the_key_and_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("env:\n  catalog:\n    n_itemz: 5\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert info.value.key == "env.catalog.n_itemz"
    assert str(bad) in str(info.value)


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    assert str(missing) in str(info.value)
    with pytest.raises(ConfigError, match=r"no_such_config\.yaml.*not found"):
        load_config("no_such_config")


@pytest.mark.parametrize("text", ["- a\n- b\n", "env: [unclosed\n"])
def test_malformed_file_is_a_config_error(tmp_path: Path, text: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert str(bad) in str(info.value)


def test_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n")
    assert load_config(empty) == Config()


def test_save_load_round_trip(tmp_path: Path) -> None:
    cfg = load_config(
        "small", ["seed=7", "reward.engagement.share=2.5", "eval.policies=[mmr]", "env.horizon_days=1.25"]
    )
    path = save_config(cfg, tmp_path / "config.yaml")
    assert path == tmp_path / "config.yaml"
    again = load_config(path)
    assert again == cfg
    assert config_hash(again) == config_hash(cfg)
    # Only the config file is left: the temporary file was renamed into place.
    assert sorted(os.listdir(tmp_path)) == ["config.yaml"]


def test_config_hash_changes_with_a_value() -> None:
    a = load_config("small")
    b = load_config("small", ["env.catalog.n_items=5000"])
    c = load_config("small", ["eval.mmr_lambda=0.25"])
    assert len({config_hash(a), config_hash(b), config_hash(c)}) == 3
    assert config_hash(load_config("small")) == config_hash(a)


def test_config_is_frozen() -> None:
    cfg = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.eval.n_users = 1  # type: ignore[misc]


def test_every_field_has_a_docstring() -> None:
    # CleanRL-style docstrings under each field, as envs/config.py has them.
    import inspect

    for cls in (Config, EvalConfig, ModelConfig, TrainConfig, LoggingConfig, ResourceConfig):
        source = inspect.getsource(cls)
        for f in dataclasses.fields(cls):
            after = source.split(f"    {f.name}: ", 1)[1].split("\n", 2)[1].strip()
            assert after.startswith('"""'), f"{cls.__name__}.{f.name} has no docstring"


def test_write_text_atomic_replaces_whole_files(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    write_text_atomic(path, "first\n")
    write_text_atomic(path, "second\n")
    assert path.read_text() == "second\n"
    assert os.listdir(tmp_path) == ["out.txt"]
