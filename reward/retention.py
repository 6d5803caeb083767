"""Retention terms, paid at the step where a session ends.

Whether and when the user comes back is drawn by the simulator when the session ends,
so these terms are known at that step: the return gap (shorter is better), churn (the
user is gone; the terminal step), and whether the next session opens a new active day.
"""

from __future__ import annotations

import numpy as np

from reward import terms as T
from reward._weigh import TermValue, weigh
from reward.config import RewardConfig
from reward.feedback import Feedback

__all__ = ["RETENTION_VALUES", "retention_terms"]


def _return_gap(fb: Feedback, cfg: RewardConfig) -> np.ndarray:
    # exp(-gap / tau): 1 for an immediate return, 1/e after tau hours. The gap is 0 while
    # the session goes on and on churn, so the mask, not the gap, says who comes back.
    back = fb.session_ended & ~fb.churned
    decay = np.exp(-fb.return_gap_h.astype(np.float64) / cfg.retention.return_gap_tau_h)
    return np.where(back, decay, 0.0)


RETENTION_VALUES: dict[str, TermValue] = {
    T.TERM_RETURN_GAP: _return_gap,
    T.TERM_CHURN: lambda fb, cfg: fb.churned.astype(np.float32),
    T.TERM_DAY_ACTIVE: lambda fb, cfg: fb.new_day_active.astype(np.float32),
}
"""Term name -> unweighted (B,) value."""


def retention_terms(fb: Feedback, cfg: RewardConfig) -> dict[str, np.ndarray]:
    """Per-user retention terms of one step; zero except where a session ended.

    With ``r = cfg.retention``:
    ``return_gap = r.return_gap * exp(-return_gap_h / r.return_gap_tau_h)`` where the
    session ended and the user will return, ``churn = r.churn`` where the user churned,
    ``day_active = r.day_active`` where the next session opens a new active day.

    Args:
        fb: feedback of B users.
        cfg: the reward config (weights and tau in ``cfg.retention``).

    Returns:
        name -> (B,) float32 for the active retention terms, in the order of
        ``reward.terms.RETENTION_TERMS``.
    """
    return weigh(fb, cfg, RETENTION_VALUES)
