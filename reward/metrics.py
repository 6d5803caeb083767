"""Evaluation metrics per user over the horizon: the objective, never the reward.

Different reward settings (weights, shaping, presets) are compared on this one unshaped
scale, computed from realised behaviour in the feedback records alone:

- ``days_active``: distinct local days (within the horizon) with at least one session;
- ``next_day_return``: share of active days (before the last day of the horizon) followed
  by an active day;
- ``sessions``, ``watch_time_s``, ``videos``, ``requests``; engagement counts and rates;
- ``churned``; ``engagement_per_request``: realised engagement value per feed request with
  the fixed weights :data:`ENGAGEMENT_VALUE_WEIGHTS` (a metric, independent of the reward
  config being evaluated).

Usage (one slot per user for the whole horizon; ``envs.cohort.run_cohort`` does this)::

    m = CohortMetrics(n_users, horizon_days, start_hour)
    for each step: m.update(fb, active, clock_h)
    per_user = m.finalize()
"""

from __future__ import annotations

import numpy as np

from reward.feedback import Feedback

__all__ = ["ENGAGEMENT_VALUE_WEIGHTS", "METRIC_NAMES", "CohortMetrics", "engagement_value"]

ENGAGEMENT_VALUE_WEIGHTS: dict[str, float] = {
    "watch_ratio": 1.0,
    "like": 2.0,
    "share": 3.0,
    "comment": 2.0,
    "follow": 4.0,
    "not_interested": -4.0,
}
"""Feedback field -> weight of the realised engagement value metric (fixed: a metric, not a reward)."""

METRIC_NAMES: tuple[str, ...] = (
    "days_active",
    "next_day_return",
    "sessions",
    "watch_time_s",
    "videos",
    "requests",
    "mean_watch_ratio",
    "completion_rate",
    "fast_skip_rate",
    "likes",
    "shares",
    "comments",
    "follows",
    "not_interested_rate",
    "churned",
    "engagement_per_request",
)
"""Per-user metrics of :meth:`CohortMetrics.finalize`, in order."""

_COUNTS = (
    ("completions", "completed"),
    ("fast_skips", "fast_skip"),
    ("likes", "like"),
    ("shares", "share"),
    ("comments", "comment"),
    ("follows", "follow"),
    ("not_interested", "not_interested"),
)


def engagement_value(fb: Feedback) -> np.ndarray:
    """(B,) float32 realised engagement value of one step with :data:`ENGAGEMENT_VALUE_WEIGHTS`.

    Each signal is summed over the slate (float32) and weighted; the weighted sums are
    added in the order of the weights.
    """
    total = np.zeros(fb.batch_size, np.float32)
    for name, w in ENGAGEMENT_VALUE_WEIGHTS.items():
        total = total + np.float32(w) * getattr(fb, name).sum(axis=1, dtype=np.float32)
    return total


class CohortMetrics:
    """Accumulates the per-user metrics of a cohort step by step.

    Every user keeps one slot for the whole horizon (no autoreset): slot i is user i.

    Args:
        n_users: slots (users) of the cohort.
        horizon_days: the horizon, days (``EnvConfig.horizon_days``).
        start_hour: (n_users,) local hour of day at which each user's clock starts
            (``clock_h = 0``), which places the clock on local days.
    """

    def __init__(self, n_users: int, horizon_days: float, start_hour: np.ndarray) -> None:
        self.n_users = n_users
        self.horizon_days = horizon_days
        self.horizon_h = horizon_days * 24.0
        self.start_hour = np.asarray(start_hour, np.float64).copy()
        if self.start_hour.shape != (n_users,):
            raise ValueError(f"start_hour must have shape ({n_users},), got {self.start_hour.shape}")
        self._n_days = int(np.ceil(horizon_days)) + 2
        self._active_day = np.zeros((n_users, self._n_days), np.bool_)
        self._active_day[:, 0] = True  # the first session opens day 0
        self._rows = np.arange(n_users)
        acc_names = ("watch_time_s", "videos", "watch_ratio_sum", *(a for a, _ in _COUNTS), "requests", "engagement")
        self._acc = {k: np.zeros(n_users, np.float64) for k in acc_names}
        self._sessions = np.zeros(n_users, np.int64)
        self._churned = np.zeros(n_users, np.bool_)

    @property
    def videos(self) -> np.ndarray:
        """(n_users,) float64 videos seen so far by each user (a view; do not modify)."""
        return self._acc["videos"]

    def update(self, fb: Feedback, active: np.ndarray, clock_h: np.ndarray | None = None) -> None:
        """Adds one step.

        Args:
            fb: feedback of the step for the n_users slots (inactive slots report zeros).
            active: (n_users,) bool, the users stepped (not yet churned or past the horizon).
            clock_h: (n_users,) the users' clocks after the step, hours since first visit,
                in float64 to place day boundaries exactly; ``fb.hours_since_start``
                (float32) if None.
        """
        acc = self._acc
        active = np.asarray(active, np.bool_)
        acc["requests"] += active
        acc["videos"] += fb.seen.sum(axis=1)
        acc["watch_time_s"] += fb.watch_time_s.sum(axis=1)
        acc["watch_ratio_sum"] += fb.watch_ratio.sum(axis=1)
        for name, field in _COUNTS:
            acc[name] += getattr(fb, field).sum(axis=1)
        acc["engagement"] += engagement_value(fb)
        self._sessions += fb.session_ended & active
        self._churned |= fb.churned & active
        # A return opens a new session: mark its local day (if it is within the horizon).
        back = fb.session_ended & ~fb.churned & active
        if back.any():
            clock = np.asarray(fb.hours_since_start if clock_h is None else clock_h, np.float64)
            day = np.floor((self.start_hour + clock) / 24.0).astype(np.int64)
            inside = back & (clock < self.horizon_h)
            self._active_day[self._rows[inside], np.minimum(day[inside], self._n_days - 1)] = True

    def finalize(self) -> dict[str, np.ndarray]:
        """Per-user metrics: name (:data:`METRIC_NAMES`) -> (n_users,) float64."""
        acc = self._acc
        horizon_days = int(np.ceil(self.horizon_days))
        days = self._active_day[:, :horizon_days]
        both = (days[:, :-1] & days[:, 1:]).sum(axis=1)
        base = days[:, :-1].sum(axis=1)
        videos = np.maximum(acc["videos"], 1)
        return {
            "days_active": days.sum(axis=1).astype(np.float64),
            "next_day_return": np.where(base > 0, both / np.maximum(base, 1), 0.0),
            "sessions": self._sessions.astype(np.float64),
            "watch_time_s": acc["watch_time_s"].copy(),
            "videos": acc["videos"].copy(),
            "requests": acc["requests"].copy(),
            "mean_watch_ratio": acc["watch_ratio_sum"] / videos,
            "completion_rate": acc["completions"] / videos,
            "fast_skip_rate": acc["fast_skips"] / videos,
            "likes": acc["likes"].copy(),
            "shares": acc["shares"].copy(),
            "comments": acc["comments"].copy(),
            "follows": acc["follows"].copy(),
            "not_interested_rate": acc["not_interested"] / videos,
            "churned": self._churned.astype(np.float64),
            "engagement_per_request": acc["engagement"] / np.maximum(acc["requests"], 1),
        }
