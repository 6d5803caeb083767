"""Wrappers around the strict feed envs."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from envs.ranking import CAND_VALUE

__all__ = ["RepairSlate", "repair_slates"]


def repair_slates(actions: np.ndarray, mask: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Replace invalid picks with the best unused valid candidates by ranker value.

    Args:
        actions: (B, K) integer positions, possibly out of range, duplicated or masked.
        mask: (B, N) validity mask (needs >= K valid per row).
        value: (B, N) ranker value scores.

    Returns:
        (B, K) int64 slates of distinct valid positions. A valid first occurrence keeps its
        slot; every other slot gets the next best unused valid candidate, in value order.
    """
    a = np.asarray(actions).astype(np.int64).copy()
    B, N = mask.shape
    K = a.shape[1]
    rows = np.arange(B)[:, None]
    in_range = (a >= 0) & (a < N)
    clipped = np.where(in_range, a, 0)
    ok = in_range & (mask[rows, clipped] != 0)
    # A later copy of an earlier pick is a duplicate.
    dup = (a[:, :, None] == a[:, None, :]) & np.tril(np.ones((K, K), np.bool_), -1)[None]
    ok &= ~dup.any(axis=2)
    if ok.all():
        return a
    used = np.zeros((B, N), np.bool_)
    used[np.nonzero(ok)[0], a[ok]] = True
    # Fill order per row: valid, unused candidates by descending value.
    score = np.where((mask != 0) & ~used, value, -np.inf)
    order = np.argsort(-score, axis=1, kind="stable")
    need = ~ok
    rank = np.cumsum(need, axis=1) - 1  # which replacement each bad slot takes
    fill = np.take_along_axis(order, np.where(need, rank, 0), axis=1)
    return np.where(need, fill, a)


class RepairSlate(gym.Wrapper):
    """Lets a plain MultiDiscrete policy act on the strict env: invalid picks are repaired.

    Duplicates, masked and out-of-range positions are replaced with the best unused valid
    candidates by the ranker's value score. ``info["repaired"]`` counts replaced slots.
    Works on :class:`envs.FeedEnv`; for the vector env use :func:`repair_slates`.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self._value_col = env.unwrapped.config.catalog.latent_dim + CAND_VALUE
        self._obs = None

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._obs = obs
        return obs, info

    def step(self, action):
        obs = self._obs
        a = np.asarray(action).reshape(1, -1)
        fixed = repair_slates(a, obs["mask"][None], obs["candidates"][None, :, self._value_col])
        n_fixed = int((fixed != a).sum())
        obs, reward, terminated, truncated, info = self.env.step(fixed[0])
        self._obs = obs
        info = dict(info, repaired=n_fixed)
        return obs, reward, terminated, truncated, info
