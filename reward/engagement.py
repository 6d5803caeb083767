"""Engagement terms of the realised feedback, and the env's default reward.

Every term is a pure function of the feedback record: a weight times a per-user sum over
the seen videos of the slate. Unseen videos carry zero responses, so they add nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from reward import terms as T
from reward._weigh import TermValue, weigh
from reward.config import RewardConfig
from reward.feedback import Feedback

__all__ = ["ENGAGEMENT_VALUES", "EngagementReward", "RewardFunction", "engagement_terms"]


def _count(name: str) -> TermValue:
    return lambda fb, cfg: getattr(fb, name).sum(axis=1, dtype=np.float32)


def _replay(fb: Feedback, cfg: RewardConfig) -> np.ndarray:
    # Watch ratio above 1 is replays; a partial watch or a skip replays nothing.
    return np.maximum(fb.watch_ratio - np.float32(1.0), np.float32(0.0)).sum(axis=1, dtype=np.float32)


ENGAGEMENT_VALUES: dict[str, TermValue] = {
    T.TERM_WATCH_RATIO: _count("watch_ratio"),
    T.TERM_COMPLETION: _count("completed"),
    T.TERM_REPLAY: _replay,
    T.TERM_LIKE: _count("like"),
    T.TERM_SHARE: _count("share"),
    T.TERM_COMMENT: _count("comment"),
    T.TERM_FOLLOW: _count("follow"),
    T.TERM_PROFILE_VISIT: _count("profile_visit"),
    T.TERM_FAST_SKIP: _count("fast_skip"),
    T.TERM_NOT_INTERESTED: _count("not_interested"),
}
"""Term name -> unweighted (B,) value: a sum over the slate's seen videos."""


def engagement_terms(fb: Feedback, cfg: RewardConfig) -> dict[str, np.ndarray]:
    """Per-user engagement terms of one step, summed over the seen videos of each slate.

    With ``e = cfg.engagement`` and sums over the K videos of a slate:
    ``watch_ratio = e.watch_ratio * sum(watch_ratio)``,
    ``replay = e.replay * sum(max(watch_ratio - 1, 0))``, and for each boolean signal
    (completion, like, share, comment, follow, profile_visit, fast_skip, not_interested)
    ``weight * count`` (the two penalties have negative weights).

    Args:
        fb: feedback of B users to slates of K videos.
        cfg: the reward config (weights in ``cfg.engagement``).

    Returns:
        name -> (B,) float32 for the active engagement terms (nonzero weight, not in
        ``cfg.disabled_terms``), in the order of ``reward.terms.ENGAGEMENT_TERMS``.
    """
    return weigh(fb, cfg, ENGAGEMENT_VALUES)


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
    """Realised engagement value: the engagement terms of ``cfg`` alone (the env's default reward).

    Session, retention, shaping and optional terms are left out whatever their weights;
    :func:`reward.composite.build_reward` builds the full reward.
    """

    def __init__(self, cfg: RewardConfig | None = None) -> None:
        self.cfg = cfg if cfg is not None else RewardConfig()

    def __call__(self, fb: Feedback) -> dict[str, np.ndarray]:
        return engagement_terms(fb, self.cfg)
