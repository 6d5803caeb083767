"""RLlib glue: the env registration, the episode statistics, and the algorithm config.

:func:`build_algo_config` is the one place where our typed :class:`~rl_fyp.config.Config`
becomes an RLlib ``AlgorithmConfig``. The env reaches RLlib as a natively batched
``gymnasium.vector.VectorEnv`` through ``gym_env_vectorize_mode="vector_entry_point"``:
RLlib passes ``num_envs`` in the env context, and one :class:`~envs.feed_env.FeedVectorEnv`
steps all of an env runner's users at once.

RLlib's ``env_config`` is a plain dict (``{"env": ..., "reward": ...}``, see
:func:`env_config_dict`); it is converted back to typed configs once, in
:func:`make_training_env`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from envs.config import EnvConfig
from envs.feed_env import FeedVectorEnv
from reward.composite import build_reward
from reward.config import RewardConfig
from reward.typed_config import from_dict, to_dict
from rl_fyp.config import Config
from rl_fyp.slate_module import SlateRLModule, module_config

__all__ = [
    "ENV_NAME",
    "EpisodeStats",
    "EpisodeStatsCallback",
    "build_algo_config",
    "env_config_dict",
    "make_training_env",
    "register_env",
]

ENV_NAME = "rl_fyp-feed-vector"
"""Name under which :func:`register_env` registers the training env with Ray Tune."""

EPISODE_WINDOW = 256
"""Episodes averaged in each per-episode metric (about two iterations' worth at the defaults)."""
EPISODE_PREFIX = "feed"
"""Metric key prefix of the per-episode statistics in RLlib's results (``env_runners/feed/...``)."""


def env_config_dict(cfg: Config) -> dict[str, Any]:
    """The ``env_config`` dict RLlib carries to every env runner."""
    return {"env": to_dict(cfg.env), "reward": to_dict(cfg.reward), "reward_scale": cfg.train.reward_scale}


class EpisodeStats(gym.vector.VectorWrapper):
    """Keeps a running sum of every reward term and the user's behaviour per episode.

    The env's ``info`` holds (B, ...) arrays that RLlib would split into B dicts per step;
    this wrapper folds them into per-slot sums instead, hands RLlib an empty ``info`` and
    the reward times ``reward_scale`` (the learner's scale), and keeps finished episodes' totals in :attr:`finished` until
    :meth:`pop_finished` takes them.
    """

    TRACKED = ("watch_time_s", "videos", "sessions")

    def __init__(self, env: FeedVectorEnv, reward_scale: float = 1.0) -> None:
        super().__init__(env)
        self.reward_scale = np.float32(reward_scale)
        self._sums: dict[str, np.ndarray] = {}
        self.finished: list[dict[str, float]] = []
        self.sim_s = 0.0
        """Seconds spent inside the simulator (reset and step) since the last :meth:`pop_finished`."""

    def reset(self, **kwargs: Any) -> tuple[Any, dict]:
        t0 = time.perf_counter()
        obs, _ = self.env.reset(**kwargs)
        self.sim_s += time.perf_counter() - t0
        self._sums = {}
        return obs, {}

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict]:
        t0 = time.perf_counter()
        obs, reward, terminated, truncated, info = self.env.step(actions)
        self.sim_s += time.perf_counter() - t0
        b = self.env.num_envs
        fb = info["feedback"]
        values = {f"reward/{k}": v for k, v in info["reward_terms"].items()}
        values["watch_time_s"] = fb["watch_time_s"].sum(axis=1)
        values["videos"] = fb["seen"].sum(axis=1)
        values["sessions"] = fb["session_ended"].astype(np.float64)
        values["return"] = reward
        for k, v in values.items():
            self._sums.setdefault(k, np.zeros(b)).__iadd__(v)
        done = terminated | truncated
        if done.any():
            for i in np.flatnonzero(done):
                rec = {k: float(v[i]) for k, v in self._sums.items()}
                rec["churned"] = float(terminated[i])
                self.finished.append(rec)
            for v in self._sums.values():
                v[done] = 0.0
        return obs, reward * self.reward_scale, terminated, truncated, {}

    def pop_finished(self) -> tuple[list[dict[str, float]], float]:
        """The totals of the episodes finished, and the simulator seconds, since the last call."""
        out, self.finished = self.finished, []
        sim_s, self.sim_s = self.sim_s, 0.0
        return out, sim_s


def make_training_env(ctx: Mapping[str, Any]) -> gym.vector.VectorEnv:
    """The env creator RLlib calls on every env runner (``ctx`` is its env context).

    Args:
        ctx: ``{"env": EnvConfig dict, "reward": RewardConfig dict, "reward_scale": float,
            "num_envs": B}``.
    """
    env_cfg = from_dict(EnvConfig, ctx.get("env", {}), "env")
    reward_cfg = from_dict(RewardConfig, ctx.get("reward", {}), "reward")
    env = FeedVectorEnv(num_envs=int(ctx.get("num_envs", 1)), config=env_cfg, reward=build_reward(reward_cfg))
    return EpisodeStats(env, float(ctx.get("reward_scale", 1.0)))


def register_env() -> str:
    """Registers the training env with Ray Tune (call in every process that builds an algo).

    Returns:
        The registered name, :data:`ENV_NAME`.
    """
    from ray.tune.registry import register_env as tune_register

    tune_register(ENV_NAME, make_training_env)
    return ENV_NAME


def _find_stats(env: Any) -> EpisodeStats | None:
    while env is not None:
        if isinstance(env, EpisodeStats):
            return env
        env = getattr(env, "env", None)
    return None


class EpisodeStatsCallback(RLlibCallback):
    """Logs the per-episode totals of :class:`EpisodeStats` (the unscaled return, each reward
    term, watch time, videos, sessions, churn) as RLlib metrics ``env_runners/feed/<name>``,
    plus ``env_runners/feed/sim_s``, the seconds spent in the simulator."""

    def on_sample_end(self, *, env_runner: Any = None, metrics_logger: Any = None, samples: Any = None, **kwargs: Any) -> None:
        stats = _find_stats(getattr(env_runner, "env", None))
        if stats is None or metrics_logger is None:
            return
        finished, sim_s = stats.pop_finished()
        metrics_logger.log_value((EPISODE_PREFIX, "sim_s"), sim_s, reduce="sum")
        for rec in finished:
            for k, v in rec.items():
                metrics_logger.log_value((EPISODE_PREFIX, k), v, reduce="mean", window=EPISODE_WINDOW)


def build_algo_config(cfg: Config) -> AlgorithmConfig:
    """The RLlib algorithm config of a run, from our config.

    Args:
        cfg: The run config (``train``, ``model``, ``env``, ``reward``, ``seed``).

    Returns:
        A PPO, APPO or IMPALA config (new API stack) with the slate module, the
        natively vectorised feed env, the run's seed, and its scale-out: remote env
        runners (CPUs and custom resources each, restarted when they fail) and learners
        (GPUs each; ``train.train_batch_size`` is split between them). Call
        :func:`register_env` before ``build_algo()``.
    """
    t = cfg.train
    if t.algo == "PPO":
        from ray.rllib.algorithms.ppo import PPOConfig as AlgoConfig
    elif t.algo == "APPO":
        from ray.rllib.algorithms.appo import APPOConfig as AlgoConfig
    else:
        from ray.rllib.algorithms.impala import IMPALAConfig as AlgoConfig

    fragment = max(1, t.train_batch_size // max(1, t.num_envs_per_env_runner * max(1, t.num_env_runners)))
    config = (
        AlgoConfig()
        .environment(ENV_NAME, env_config=env_config_dict(cfg), disable_env_checking=True)
        .env_runners(
            num_env_runners=t.num_env_runners,
            num_envs_per_env_runner=t.num_envs_per_env_runner,
            gym_env_vectorize_mode="vector_entry_point",
            rollout_fragment_length=fragment,
            num_cpus_per_env_runner=t.num_cpus_per_env_runner,
            custom_resources_per_env_runner={r.name: r.amount for r in t.custom_resources_per_env_runner},
        )
        .learners(num_learners=t.num_learners, num_gpus_per_learner=t.num_gpus_per_learner)
        .fault_tolerance(
            restart_failed_env_runners=t.restart_failed_env_runners,
            max_num_env_runner_restarts=t.max_env_runner_restarts,
            delay_between_env_runner_restarts_s=t.env_runner_restart_delay_s,
        )
        .rl_module(
            rl_module_spec=RLModuleSpec(module_class=SlateRLModule, model_config=module_config(cfg.model, cfg.env))
        )
        .callbacks(EpisodeStatsCallback)
        .debugging(seed=cfg.seed, log_level="ERROR")
        .reporting(metrics_num_episodes_for_smoothing=EPISODE_WINDOW)
    )
    common = dict(
        lr=t.lr,
        gamma=t.gamma,
        train_batch_size_per_learner=t.train_batch_size_per_learner,
        grad_clip=t.grad_clip,
        grad_clip_by="global_norm",
    )
    if t.algo == "PPO":
        config = config.training(
            **common,
            minibatch_size=t.minibatch_size,
            num_epochs=t.num_epochs,
            lambda_=t.lambda_,
            clip_param=t.clip_param,
            vf_clip_param=t.vf_clip_param,
            vf_loss_coeff=t.vf_loss_coeff,
            entropy_coeff=t.entropy_coeff,
            use_kl_loss=False,
        )
    else:
        config = config.training(**common, vf_loss_coeff=t.vf_loss_coeff, entropy_coeff=t.entropy_coeff)
    return config
