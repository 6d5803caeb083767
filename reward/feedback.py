"""The feedback record: what the simulator reports about one step of a batch of users.

This is the only simulator type ``reward/`` knows. Arrays are batched over the B users
of a step; per-video arrays have shape (B, K) in feed (slate) order. A video after the
leave point is unseen: ``seen`` is False there and every response is zero, as are the
observable attributes of the video (``emb``, ``creator_followers``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["Feedback", "VIDEO_SIGNALS"]

#: Per-video boolean signals of a feedback record, in a fixed order.
VIDEO_SIGNALS: tuple[str, ...] = (
    "completed",
    "fast_skip",
    "like",
    "share",
    "comment",
    "follow",
    "profile_visit",
    "not_interested",
)


class Feedback(NamedTuple):
    """Realised user responses to one slate per user.

    Attributes:
        seen: (B, K) bool, the video was reached before the user left.
        watch_ratio: (B, K) float32 in [0, 3]; above 1 means replays.
        watch_time_s: (B, K) float32, watch ratio times duration (swipe-away time for skips).
        duration_s: (B, K) float32, duration of each shown video.
        completed: (B, K) bool, watched to the end at least once.
        fast_skip: (B, K) bool, swiped away within a couple of seconds.
        like, share, comment, follow, profile_visit, not_interested: (B, K) bool.
        session_ended: (B,) bool, the user left the session during this step.
        return_gap_h: (B,) float32, hours to the next session; 0 where the session goes on,
            and where the user churned.
        churned: (B,) bool, the user left the platform for good (terminal).
        new_day_active: (B,) bool, the session ended at this step and the user's next
            session (after the return gap, within the horizon) opens a local day they were
            not active on yet; set at the session-end step, at most once per day.
        session_videos: (B,) int32, videos seen in the session so far, this step included.
        session_time_s: (B,) float32, seconds spent in the session so far, this step included.
        hours_since_start: (B,) float32, the user's clock (hours since first visit) after the step.
        emb: (B, K, d) float32, the platform's content embedding of each video (what the
            platform observes of its content, not the hidden true vector); zero where unseen.
        creator_followers: (B, K) float32, follower count of each video's creator; zero
            where unseen.
    """

    seen: np.ndarray
    watch_ratio: np.ndarray
    watch_time_s: np.ndarray
    duration_s: np.ndarray
    completed: np.ndarray
    fast_skip: np.ndarray
    like: np.ndarray
    share: np.ndarray
    comment: np.ndarray
    follow: np.ndarray
    profile_visit: np.ndarray
    not_interested: np.ndarray
    session_ended: np.ndarray
    return_gap_h: np.ndarray
    churned: np.ndarray
    new_day_active: np.ndarray
    session_videos: np.ndarray
    session_time_s: np.ndarray
    hours_since_start: np.ndarray
    emb: np.ndarray
    creator_followers: np.ndarray

    @property
    def batch_size(self) -> int:
        """Users in the record (B)."""
        return int(self.seen.shape[0])

    def videos_seen(self) -> np.ndarray:
        """(B,) int32 count of videos seen this step."""
        return self.seen.sum(axis=1, dtype=np.int32)

    def row(self, i: int) -> "Feedback":
        """The record of user i alone, kept batched (B = 1)."""
        return Feedback(*(a[i : i + 1] for a in self))
