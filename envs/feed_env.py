"""Gymnasium environments over the feed simulator: one user, and B users natively batched.

Observation (per user): ``{"user": (U,) float32, "candidates": (N, F) float32,
"mask": (N,) int8}``. Action: an ordered slate of K distinct candidate positions,
``MultiDiscrete([N] * K)``. The bare envs are strict: a slate with the wrong shape, an
out-of-range position, a duplicate or a masked candidate raises ``ValueError`` naming
the position and value (``envs.wrappers.RepairSlate`` repairs slates for generic agents).

``step`` reads top to bottom: validate action -> show slate and simulate feedback ->
update user (inside the simulator) -> reward -> terminated / truncated -> next
candidates -> observation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv

from envs.config import EnvConfig
from envs.core import FeedSimulator, Observation, StepOutcome
from reward.config import RewardConfig
from reward.engagement import EngagementReward
from reward.feedback import Feedback
from reward.typed_config import ConfigError, from_dict, parse_overrides

__all__ = ["FeedEnv", "FeedVectorEnv", "SlateSpace", "make_env_config"]

RewardFn = Callable[[Feedback], Any]

#: Bound of every observation feature (the features themselves stay within a few units).
FEATURE_BOUND = 1e6

#: Keys of ``info``.
INFO_FEEDBACK = "feedback"
INFO_METRICS = "metrics"
INFO_REWARD_TERMS = "reward_terms"


def make_env_config(
    config: EnvConfig | Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
) -> EnvConfig:
    """An EnvConfig from a config or plain mapping plus dotted overrides ("catalog.n_items": 100_000)."""
    from reward.typed_config import deep_merge, to_dict

    if config is None:
        base: dict[str, Any] = {}
    elif isinstance(config, EnvConfig):
        base = to_dict(config)
    elif isinstance(config, Mapping):
        base = dict(config)
    else:
        raise ConfigError("env", f"expected an EnvConfig or a mapping, got {type(config).__name__}")
    return from_dict(EnvConfig, deep_merge(base, parse_overrides(overrides)))


class SlateSpace(spaces.MultiDiscrete):
    """``MultiDiscrete([N] * K)`` whose samples are slates: K distinct positions per row."""

    def __init__(self, n_candidates: int, slate_size: int, batch: int | None = None, seed=None) -> None:
        shape = (slate_size,) if batch is None else (batch, slate_size)
        super().__init__(np.full(shape, n_candidates, dtype=np.int64), seed=seed)
        self.n_candidates = n_candidates
        self.slate_size = slate_size

    def sample(self, mask=None, probability=None) -> np.ndarray:
        if mask is not None or probability is not None:
            return super().sample(mask=mask, probability=probability)
        lead = self.shape[:-1]
        keys = self.np_random.random((*lead, self.n_candidates))
        return np.argsort(keys, axis=-1)[..., : self.slate_size].astype(self.dtype)


def validate_slates(actions: Any, mask: np.ndarray, slate_size: int, rows: np.ndarray | None = None) -> np.ndarray:
    """Check a batch of slates against the candidates' validity mask.

    Args:
        actions: (B, K) integer positions.
        mask: (B, N) validity mask of the observation the slates answer.
        slate_size: K.
        rows: (B,) bool, the rows to check (others are ignored); all if None.

    Returns:
        The slates as an int64 array.

    Raises:
        ValueError: naming the user, the slate position and the offending value.
    """
    a = np.asarray(actions)
    B, N = mask.shape
    if a.shape != (B, slate_size):
        raise ValueError(f"action must have shape {(B, slate_size) if B > 1 else (slate_size,)}, got {a.shape}")
    if not np.issubdtype(a.dtype, np.integer):
        if np.issubdtype(a.dtype, np.floating) and np.all(np.isfinite(a)) and np.all(a == np.round(a)):
            a = a.astype(np.int64)
        else:
            raise ValueError(f"action must hold integer candidate positions, got dtype {a.dtype}")
    a = a.astype(np.int64, copy=False)
    check = np.ones(B, np.bool_) if rows is None else rows

    def fail(bad: np.ndarray, what: str) -> None:
        b, k = np.argwhere(bad & check[:, None])[0]
        who = f"user {b}, " if B > 1 else ""
        raise ValueError(f"bad slate: {who}position {k}: candidate {a[b, k]} {what}")

    out_of_range = (a < 0) | (a >= N)
    if np.any(out_of_range & check[:, None]):
        fail(out_of_range, f"is out of range [0, {N})")
    order = np.sort(a, axis=1)
    if np.any((order[:, 1:] == order[:, :-1]).any(axis=1) & check):
        dup = np.zeros_like(a, dtype=np.bool_)
        for b in np.flatnonzero((order[:, 1:] == order[:, :-1]).any(axis=1) & check)[:1]:
            _, first = np.unique(a[b], return_index=True)
            dup[b] = True
            dup[b, first] = False
        fail(dup, "is a duplicate (already earlier in the slate)")
    masked = np.take_along_axis(mask, np.clip(a, 0, N - 1), axis=1) == 0
    if np.any(masked & check[:, None]):
        fail(masked, "is masked (not a valid candidate)")
    return a


def _reward_terms(reward: RewardFn, fb: Feedback) -> dict[str, np.ndarray]:
    out = reward(fb)
    if isinstance(out, Mapping):
        return {k: np.asarray(v, dtype=np.float32) for k, v in out.items()}
    return {"reward": np.asarray(out, dtype=np.float32)}


def _metrics(fb: Feedback, sim: FeedSimulator) -> dict[str, np.ndarray]:
    u = sim.users
    count = lambda x: x.sum(axis=1, dtype=np.int32)  # noqa: E731
    return {
        "videos_seen": fb.videos_seen(),
        "watch_time_s": fb.watch_time_s.sum(axis=1, dtype=np.float32),
        "completions": count(fb.completed),
        "fast_skips": count(fb.fast_skip),
        "likes": count(fb.like),
        "shares": count(fb.share),
        "comments": count(fb.comment),
        "follows": count(fb.follow),
        "profile_visits": count(fb.profile_visit),
        "not_interested": count(fb.not_interested),
        "session_ended": fb.session_ended,
        "return_gap_h": fb.return_gap_h,
        "churned": fb.churned,
        "new_day_active": fb.new_day_active,
        "days_active": u.days_active.copy(),
        "sessions": u.sessions.copy(),
        "hours_since_start": fb.hours_since_start,
    }


class _FeedBase:
    """Construction shared by the single and vector envs."""

    def _setup(
        self,
        n_users: int,
        config: EnvConfig | Mapping[str, Any] | None,
        overrides: Mapping[str, Any] | Sequence[str] | None,
        reward: RewardFn | None,
        reward_config: RewardConfig | None,
    ) -> None:
        self.config = make_env_config(config, overrides)
        self.sim = FeedSimulator(self.config, n_users)
        self.reward_fn: RewardFn = reward if reward is not None else EngagementReward(reward_config)
        cfg = self.config
        N = cfg.retrieval.n_candidates
        # Features are bounded far inside these limits (embeddings, probabilities, logs,
        # a value score); the bounds are finite so generic tools can rely on them.
        self.single_obs_space = spaces.Dict(
            {
                "user": spaces.Box(-FEATURE_BOUND, FEATURE_BOUND, (self.sim.n_user_features,), np.float32),
                "candidates": spaces.Box(-FEATURE_BOUND, FEATURE_BOUND, (N, self.sim.n_cand_features), np.float32),
                "mask": spaces.Box(0, 1, (N,), np.int8),
            }
        )

    def _reset_reward(self, slots: np.ndarray) -> None:
        reset = getattr(self.reward_fn, "reset", None)
        if callable(reset):
            reset(slots)


class FeedEnv(_FeedBase, gym.Env):
    """One user over the horizon, in a persistent world (the catalog lives across episodes).

    ``reset(seed=s)`` rebuilds the world and the user from seed s (same seed, same
    trajectory); ``reset()`` brings a fresh user into the current world.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        config: EnvConfig | Mapping[str, Any] | None = None,
        overrides: Mapping[str, Any] | Sequence[str] | None = None,
        reward: RewardFn | None = None,
        reward_config: RewardConfig | None = None,
        render_mode: str | None = None,
    ) -> None:
        self._setup(1, config, overrides, reward, reward_config)
        self.observation_space = self.single_obs_space
        self.action_space = SlateSpace(self.config.retrieval.n_candidates, self.config.slate_size)
        self.render_mode = render_mode
        self._done = True

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None or not self.sim.built:
            self.sim.build_world(self.np_random)
        slots = np.ones(1, np.bool_)
        self.sim.spawn(slots)
        self._reset_reward(slots)
        self._done = False
        obs = self.sim.observe()
        return self._unbatch(obs), {}

    def step(self, action):
        if self._done:
            raise RuntimeError("step() called on a finished episode: call reset() first")
        obs = self.sim.obs
        # Validate action.
        a = np.asarray(action)
        if a.shape != (self.config.slate_size,):
            raise ValueError(f"action must have shape {(self.config.slate_size,)}, got {a.shape}")
        slate = validate_slates(a[None], obs.mask, self.config.slate_size)
        # Show the slate and simulate feedback (the user state updates inside).
        out: StepOutcome = self.sim.step(slate, np.ones(1, np.bool_))
        # Reward.
        terms = _reward_terms(self.reward_fn, out.feedback)
        reward = float(sum(v[0] for v in terms.values()))
        # Terminated (churn) / truncated (horizon).
        terminated, truncated = bool(out.terminated[0]), bool(out.truncated[0])
        self._done = terminated or truncated
        # Next candidates -> observation.
        nxt = self.sim.observe()
        info = {
            INFO_FEEDBACK: {k: v[0] for k, v in out.feedback._asdict().items()},
            INFO_METRICS: {k: v[0] for k, v in _metrics(out.feedback, self.sim).items()},
            INFO_REWARD_TERMS: {k: float(v[0]) for k, v in terms.items()},
        }
        return self._unbatch(nxt), reward, terminated, truncated, info

    @staticmethod
    def _unbatch(obs: Observation) -> dict[str, np.ndarray]:
        return {"user": obs.user[0], "candidates": obs.candidates[0], "mask": obs.mask[0]}


class FeedVectorEnv(_FeedBase, VectorEnv):
    """B users stepped together by one batched core; every user keeps their own clock.

    A finished slot (churn or horizon) is reset to a fresh user on the NEXT call to
    ``step`` (gymnasium's ``AutoresetMode.NEXT_STEP``): that call ignores the slot's
    action and returns the new user's first observation with reward 0.
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(
        self,
        num_envs: int = 1,
        config: EnvConfig | Mapping[str, Any] | None = None,
        overrides: Mapping[str, Any] | Sequence[str] | None = None,
        reward: RewardFn | None = None,
        reward_config: RewardConfig | None = None,
        render_mode: str | None = None,
    ) -> None:
        self._setup(num_envs, config, overrides, reward, reward_config)
        self.num_envs = num_envs
        self.single_observation_space = self.single_obs_space
        self.single_action_space = SlateSpace(self.config.retrieval.n_candidates, self.config.slate_size)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = SlateSpace(self.config.retrieval.n_candidates, self.config.slate_size, batch=num_envs)
        self.render_mode = render_mode
        self._autoreset = np.zeros(num_envs, np.bool_)

    def reset(self, *, seed: int | list[int] | None = None, options: dict | None = None):
        if isinstance(seed, (list, tuple)):
            seed = seed[0]  # one world, one generator: the first seed seeds it
        super().reset(seed=seed)
        if seed is not None or not self.sim.built:
            self.sim.build_world(self.np_random)
        slots = np.ones(self.num_envs, np.bool_)
        self.sim.spawn(slots)
        self._reset_reward(slots)
        self._autoreset[:] = False
        return self.sim.observe().as_dict(), {}

    def step(self, actions):
        if not self.sim.built or self.sim.obs is None:
            raise RuntimeError("step() called before reset()")
        active = ~self._autoreset
        # Validate action (slots about to autoreset are ignored, as gymnasium prescribes).
        slate = validate_slates(actions, self.sim.obs.mask, self.config.slate_size, rows=active)
        slate = np.where(active[:, None], slate, np.arange(self.config.slate_size)[None, :])
        # Show the slates and simulate feedback.
        out = self.sim.step(slate, active)
        # Reward.
        terms = _reward_terms(self.reward_fn, out.feedback)
        for v in terms.values():
            v[~active] = 0.0
        reward = np.zeros(self.num_envs, np.float32)
        for v in terms.values():
            reward += v
        # Terminated / truncated; finished slots restart with fresh users next step.
        terminated, truncated = out.terminated, out.truncated
        if self._autoreset.any():
            self.sim.spawn(self._autoreset)
            self._reset_reward(self._autoreset)
        self._autoreset = terminated | truncated
        # Next candidates -> observation.
        obs = self.sim.observe()
        info = {
            INFO_FEEDBACK: out.feedback._asdict(),
            INFO_METRICS: _metrics(out.feedback, self.sim),
            INFO_REWARD_TERMS: terms,
        }
        return obs.as_dict(), reward, terminated, truncated, info
