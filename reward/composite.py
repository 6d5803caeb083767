"""The full reward: every active term of a :class:`RewardConfig`, reported one by one.

``build_reward(cfg)`` gives the reward the training stack hands to the env::

    env = FeedVectorEnv(num_envs=1024, reward=build_reward(cfg.reward))

The env sums the terms into the reward and reports each in ``info["reward_terms"]``.
A term is reported iff it is active (nonzero weight, not in ``cfg.disabled_terms``; the
shaping term iff ``shaping.enabled`` and ``shaping.weight != 0``), so the set of keys is
fixed by the config and never changes during a run.
"""

from __future__ import annotations

import numpy as np

from reward import terms as T
from reward.config import RewardConfig
from reward.engagement import RewardFunction, engagement_terms
from reward.feedback import Feedback
from reward.retention import retention_terms
from reward.session import session_terms
from reward.shaping import PotentialShaping
from reward.slate import optional_terms

__all__ = ["CompositeReward", "build_reward"]


class CompositeReward(RewardFunction):
    """Engagement, session, retention, optional and shaping terms of one config.

    Pure term functions of the feedback, plus a :class:`~reward.shaping.PotentialShaping`
    (the only memory) when shaping is active; :meth:`reset` resets its slots.

    Args:
        cfg: the reward config; ``None`` for the defaults (the retention preset).
    """

    def __init__(self, cfg: RewardConfig | None = None) -> None:
        self.cfg = cfg if cfg is not None else RewardConfig()
        self.terms: tuple[str, ...] = self.cfg.active_terms
        """The names this reward reports, in order."""
        self.shaping: PotentialShaping | None = (
            PotentialShaping(self.cfg.shaping) if T.TERM_SHAPING in self.terms else None
        )

    def __call__(self, fb: Feedback) -> dict[str, np.ndarray]:
        """name -> (B,) float32 for every active term, in the order of ``reward.terms.TERM_NAMES``."""
        out = engagement_terms(fb, self.cfg)
        out.update(session_terms(fb, self.cfg))
        out.update(retention_terms(fb, self.cfg))
        out.update(optional_terms(fb, self.cfg))
        if self.shaping is not None:
            out[T.TERM_SHAPING] = self.shaping(fb)
        return out

    def reset(self, slots: np.ndarray) -> None:
        """Fresh users in the given slots ((B,) bool mask): the shaping memory restarts there."""
        if self.shaping is not None:
            self.shaping.reset(slots)


def build_reward(cfg: RewardConfig | None = None) -> CompositeReward:
    """The reward of a config (every active term); ``None`` for the default (retention) preset."""
    return CompositeReward(cfg)
