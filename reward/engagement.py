"""Realised engagement value: the default reward of the feed environment."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from reward.config import RewardConfig
from reward.feedback import Feedback

__all__ = ["EngagementReward", "RewardFunction", "engagement_terms"]


def engagement_terms(fb: Feedback, cfg: RewardConfig) -> dict[str, np.ndarray]:
    """Per-user engagement terms of one step, summed over the seen videos of each slate.

    Args:
        fb: feedback of B users to slates of K videos.
        cfg: the weights.

    Returns:
        name -> (B,) float32 array; the reward is the sum of the terms. Unseen videos
        carry zero responses, so they add nothing.
    """
    def total(signal: np.ndarray) -> np.ndarray:
        return signal.sum(axis=1, dtype=np.float32)

    return {
        "watch_ratio": np.float32(cfg.w_watch_ratio) * total(fb.watch_ratio),
        "like": np.float32(cfg.w_like) * total(fb.like),
        "share": np.float32(cfg.w_share) * total(fb.share),
        "comment": np.float32(cfg.w_comment) * total(fb.comment),
        "follow": np.float32(cfg.w_follow) * total(fb.follow),
        "not_interested": np.float32(cfg.w_not_interested) * total(fb.not_interested),
    }


class RewardFunction:
    """Base of the env's reward argument: maps a feedback record to named terms.

    The env sums the terms into the reward and reports them in ``info["reward_terms"]``.
    Subclasses with memory (potentials, running baselines) override :meth:`reset`.
    A plain callable ``Feedback -> (B,) array`` is accepted by the env as well.
    """

    def __call__(self, fb: Feedback) -> Mapping[str, np.ndarray]:
        raise NotImplementedError

    def reset(self, slots: np.ndarray) -> None:
        """Forget the memory of the given user slots (a (B,) bool mask); no-op here."""


class EngagementReward(RewardFunction):
    """Weighted realised engagement: watch ratio, like, share, comment, follow, minus not-interested."""

    def __init__(self, cfg: RewardConfig | None = None) -> None:
        self.cfg = cfg if cfg is not None else RewardConfig()

    def __call__(self, fb: Feedback) -> dict[str, np.ndarray]:
        return engagement_terms(fb, self.cfg)
