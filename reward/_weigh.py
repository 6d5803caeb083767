"""Shared helper of the term functions: weigh the active terms of one group."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from reward.config import RewardConfig
from reward.feedback import Feedback

TermValue = Callable[[Feedback, RewardConfig], np.ndarray]
"""Unweighted per-user value of one term: (feedback, config) -> (B,) array."""


def weigh(fb: Feedback, cfg: RewardConfig, values: Mapping[str, TermValue]) -> dict[str, np.ndarray]:
    """The active terms of a group, weighted.

    Args:
        fb: feedback of B users.
        cfg: the reward config; a term is active when its weight is nonzero and its name
            is not in ``cfg.disabled_terms`` (``cfg.active_terms``).
        values: term name -> unweighted value function, in report order; only the active
            terms' functions are called.

    Returns:
        name -> (B,) float32 ``weight * value`` for the active terms, in the order of ``values``.
    """
    active = cfg.active_terms
    weights = cfg.weights
    return {
        name: np.float32(weights[name]) * np.asarray(value(fb, cfg), dtype=np.float32)
        for name, value in values.items()
        if name in active
    }
