"""Names of the reward terms: the keys of ``info["reward_terms"]`` and of every term dict.

Each term is one weighted component of the reward; the env reports each under its name
and the reward is their sum. Names are unique across groups, so a flat dict of terms
(and a flat log of them) never collides.
"""

from __future__ import annotations

__all__ = [
    "ENGAGEMENT_TERMS",
    "OPTIONAL_TERMS",
    "RETENTION_TERMS",
    "SESSION_TERMS",
    "SHAPING_TERMS",
    "TERM_CHURN",
    "TERM_COMMENT",
    "TERM_COMPLETION",
    "TERM_DAY_ACTIVE",
    "TERM_DIVERSITY",
    "TERM_FAST_SKIP",
    "TERM_FOLLOW",
    "TERM_LEAVE",
    "TERM_LIKE",
    "TERM_NAMES",
    "TERM_NEW_CREATOR",
    "TERM_NOT_INTERESTED",
    "TERM_PROFILE_VISIT",
    "TERM_REPLAY",
    "TERM_RETURN_GAP",
    "TERM_SESSION_MINUTES",
    "TERM_SESSION_VIDEOS",
    "TERM_SHAPING",
    "TERM_SHARE",
    "TERM_WATCH_RATIO",
]

# Engagement: realised responses to the seen videos of the slate, summed over the slate.
TERM_WATCH_RATIO = "watch_ratio"
TERM_COMPLETION = "completion"
TERM_REPLAY = "replay"
TERM_LIKE = "like"
TERM_SHARE = "share"
TERM_COMMENT = "comment"
TERM_FOLLOW = "follow"
TERM_PROFILE_VISIT = "profile_visit"
TERM_FAST_SKIP = "fast_skip"
TERM_NOT_INTERESTED = "not_interested"

# Session: what the session gained at this step, and its end.
TERM_SESSION_VIDEOS = "session_videos"
TERM_SESSION_MINUTES = "session_minutes"
TERM_LEAVE = "leave"

# Retention: paid at the step where a session ends.
TERM_RETURN_GAP = "return_gap"
TERM_CHURN = "churn"
TERM_DAY_ACTIVE = "day_active"

# Potential-based shaping.
TERM_SHAPING = "shaping"

# Optional slate terms (off by default).
TERM_DIVERSITY = "diversity"
TERM_NEW_CREATOR = "new_creator"

ENGAGEMENT_TERMS: tuple[str, ...] = (
    TERM_WATCH_RATIO,
    TERM_COMPLETION,
    TERM_REPLAY,
    TERM_LIKE,
    TERM_SHARE,
    TERM_COMMENT,
    TERM_FOLLOW,
    TERM_PROFILE_VISIT,
    TERM_FAST_SKIP,
    TERM_NOT_INTERESTED,
)
"""Engagement terms, in report order."""
SESSION_TERMS: tuple[str, ...] = (TERM_SESSION_VIDEOS, TERM_SESSION_MINUTES, TERM_LEAVE)
"""Session terms, in report order."""
RETENTION_TERMS: tuple[str, ...] = (TERM_RETURN_GAP, TERM_CHURN, TERM_DAY_ACTIVE)
"""Retention terms, in report order."""
OPTIONAL_TERMS: tuple[str, ...] = (TERM_DIVERSITY, TERM_NEW_CREATOR)
"""Optional slate terms, in report order."""
SHAPING_TERMS: tuple[str, ...] = (TERM_SHAPING,)
"""Shaping terms."""

TERM_NAMES: tuple[str, ...] = ENGAGEMENT_TERMS + SESSION_TERMS + RETENTION_TERMS + OPTIONAL_TERMS + SHAPING_TERMS
"""Every term the reward knows, in the order :class:`~reward.composite.CompositeReward` reports them."""
