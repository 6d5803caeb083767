"""Session terms: what each step adds to the session, and the session's end.

The videos and minutes of a session are paid as they accrue (this step's increment), so
over a whole session they sum to its totals (``Feedback.session_videos`` and
``Feedback.session_time_s`` at the session's last step) while crediting each request
with its own contribution. The leave term is paid at the step where the session ends.
"""

from __future__ import annotations

import numpy as np

from reward import terms as T
from reward._weigh import TermValue, weigh
from reward.config import RewardConfig
from reward.feedback import Feedback

__all__ = ["SESSION_VALUES", "session_terms"]

SESSION_VALUES: dict[str, TermValue] = {
    T.TERM_SESSION_VIDEOS: lambda fb, cfg: fb.seen.sum(axis=1, dtype=np.float32),
    T.TERM_SESSION_MINUTES: lambda fb, cfg: fb.watch_time_s.sum(axis=1, dtype=np.float32) / np.float32(60.0),
    T.TERM_LEAVE: lambda fb, cfg: fb.session_ended.astype(np.float32),
}
"""Term name -> unweighted (B,) value."""


def session_terms(fb: Feedback, cfg: RewardConfig) -> dict[str, np.ndarray]:
    """Per-user session terms of one step.

    With ``s = cfg.session``: ``session_videos = s.videos * (videos seen this step)``,
    ``session_minutes = s.minutes * (seconds watched this step) / 60``, and
    ``leave = s.leave`` where the session ended this step (churn included), else 0.

    Args:
        fb: feedback of B users to slates of K videos.
        cfg: the reward config (weights in ``cfg.session``).

    Returns:
        name -> (B,) float32 for the active session terms, in the order of
        ``reward.terms.SESSION_TERMS``.
    """
    return weigh(fb, cfg, SESSION_VALUES)
