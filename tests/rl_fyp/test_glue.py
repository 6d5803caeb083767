"""Tests for the RLlib glue (env creator, episode statistics, algorithm config) and the bars."""

from __future__ import annotations

import numpy as np
import pytest

from rl_fyp.config import ConfigError, load_config
from rl_fyp.jobs import bars, format_bars
from rl_fyp.rllib_glue import EpisodeStats, build_algo_config, env_config_dict, make_training_env
from rl_fyp.slate_module import SlateRLModule


def test_training_env_scales_the_reward_and_totals_each_episode() -> None:
    cfg = load_config("small", ["env.horizon_days=0.3", "train.reward_scale=0.5"])
    env = make_training_env({**env_config_dict(cfg), "num_envs": 8})
    assert isinstance(env, EpisodeStats) and env.num_envs == 8
    obs, info = env.reset(seed=0)
    assert info == {}
    rng = np.random.default_rng(0)
    returned = np.zeros(8)
    done_slots: list[int] = []
    finished: list[dict[str, float]] = []
    for _ in range(400):
        valid = obs["mask"] != 0
        keys = np.where(valid, rng.random(valid.shape), -1.0)
        slates = np.argsort(-keys, axis=1)[:, : cfg.env.slate_size]
        obs, reward, terminated, truncated, info = env.step(slates)
        assert info == {}  # per-user arrays stay out of RLlib's episodes
        returned += reward
        done = terminated | truncated
        for i in np.flatnonzero(done):
            if i not in done_slots:
                done_slots.append(i)
                # The first episode of slot i: its unscaled total is twice what the learner saw.
                finished_now, _ = env.pop_finished()
                finished += finished_now
                rec = next(r for r in finished if abs(r["return"] * 0.5 - returned[i]) < 1e-3 * max(1.0, abs(returned[i])))
                assert rec["churned"] in (0.0, 1.0)
                assert rec["sessions"] >= 1 and rec["videos"] >= 1
                terms = sum(v for k, v in rec.items() if k.startswith("reward/"))
                assert terms == pytest.approx(rec["return"], rel=1e-4, abs=1e-3)
        returned[done] = 0.0
        if len(done_slots) >= 3:
            break
    assert len(done_slots) >= 3
    _, sim_s = env.pop_finished()
    assert sim_s >= 0.0


def test_algo_config_carries_the_run_settings() -> None:
    cfg = load_config("small", ["train.lr=0.002", "train.num_envs_per_env_runner=16", "train.train_batch_size=512",
                                "train.minibatch_size=128", "model.variant=pointwise", "seed=7"])
    algo = build_algo_config(cfg)
    assert algo.lr == 0.002 and algo.gamma == cfg.train.gamma
    assert algo.num_envs_per_env_runner == 16 and algo.gym_env_vectorize_mode == "vector_entry_point"
    assert algo.train_batch_size_per_learner == 512 and algo.minibatch_size == 128
    assert algo.rollout_fragment_length == 32  # 512 steps / 16 users
    assert algo.seed == 7
    spec = algo.rl_module_spec
    assert spec.module_class is SlateRLModule and spec.model_config["variant"] == "pointwise"
    assert algo.env_config["reward_scale"] == cfg.train.reward_scale
    for name in ("APPO", "IMPALA"):
        other = build_algo_config(load_config("small", [f"train.algo={name}"]))
        assert type(other).__name__ == f"{name}Config"


def test_minibatch_larger_than_batch_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="train.minibatch_size"):
        load_config("small", ["train.minibatch_size=100000"])


def _stat(mean: float, lo: float, hi: float) -> dict[str, float]:
    return {"mean": mean, "ci_low": lo, "ci_high": hi}


def test_bars_compare_with_greedy_and_the_best_heuristic() -> None:
    results = {
        "ppo": {"days_active": _stat(9.0, 8.8, 9.2), "watch_time_s": _stat(3000, 2900, 3100)},
        "greedy": {"days_active": _stat(7.5, 7.3, 7.7), "watch_time_s": _stat(2950, 2850, 3050)},
        "mmr": {"days_active": _stat(8.5, 8.3, 8.7), "watch_time_s": _stat(3500, 3400, 3600)},
        "explore": {"days_active": _stat(8.0, 7.8, 8.2), "watch_time_s": _stat(4000, 3900, 4100)},
        "random": {"days_active": _stat(9.5, 9.3, 9.7), "watch_time_s": _stat(6000, 5900, 6100)},
    }
    b = bars(results, "ppo", {"mmr": {"mmr_lambda": 0.3}})
    # days_active CIs are apart, watch time CIs overlap: the greedy bar is not met.
    assert b["beats_greedy"]["metrics"]["days_active"]["ci_above"] is True
    assert b["beats_greedy"]["metrics"]["watch_time_s"]["ci_above"] is False
    assert b["beats_greedy"]["met"] is False
    # Random is no heuristic to match; MMR is the best of greedy, MMR, explore.
    h = b["vs_best_heuristic"]
    assert h["heuristic"] == "mmr" and h["settings"] == {"mmr_lambda": 0.3}
    assert h["relative"] == pytest.approx(9.0 / 8.5 - 1.0)
    assert h["matches"] is True and h["aim_5pct"] is True and h["ci_above"] is True
    text = format_bars(b)
    assert "NOT MET" in text and "mmr; mmr_lambda=0.3" in text


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["APPO", "IMPALA"])
def test_the_slate_module_trains_under_appo_and_impala(algo: str, tmp_path) -> None:
    from rl_fyp.training import train

    import csv

    cfg = load_config("small", [f"train.algo={algo}", "train.iterations=3", "logging.progress=false"])
    result = train(cfg, tmp_path / "run", log=lambda _: None)
    assert result.env_steps > 0 and (result.checkpoint / "rl_fyp_config.yaml").is_file()
    # The learner ran (asynchronous algorithms may report their first update a little late).
    with (tmp_path / "run" / "progress.csv").open() as fh:
        losses = [float(r["vf_loss"]) for r in csv.DictReader(fh) if r["vf_loss"]]
    assert losses and all(np.isfinite(losses))
