"""Evaluation metrics per user over the horizon: the objective, never the reward.

Different reward settings (weights, shaping, presets) are compared on this one unshaped
scale, computed from realised behaviour in the feedback records alone:

- ``days_active``: distinct local days (within the horizon) with at least one session;
- ``next_day_return``: share of active days (before the last day of the horizon) followed
  by an active day;
- ``sessions``, ``watch_time_s``, ``videos``, ``requests``; engagement counts and rates;
- ``churned``; ``engagement_per_request``: realised engagement value per feed request with
  the fixed weights :data:`ENGAGEMENT_VALUE_WEIGHTS` (a metric, independent of the reward
  config being evaluated);
- exposure (from what the feed showed, through :meth:`CohortMetrics.update_exposure`):
  ``intra_slate_diversity`` (mean pairwise ``1 - cos`` of the content embeddings in a
  slate, averaged over the user's requests) and ``new_video_exposure`` (share of the
  user's seen videos uploaded less than :data:`FRESH_AGE_H` hours before, world clock).

Cohort-level exposure (one number per cohort, not per user) is counted from the distinct
(user, video) and (user, creator) pairs of :meth:`CohortMetrics.shown_pairs` with
:func:`coverage`: ``catalog_coverage`` and ``creator_coverage``. Retention by day (the
share of the cohort active on each local day) comes from
:meth:`CohortMetrics.active_days`.

Usage (one slot per user for the whole horizon; ``envs.cohort.run_cohort`` does this)::

    m = CohortMetrics(n_users, horizon_days, start_hour)
    for each step:
        m.update(fb, active, clock_h)
        m.update_exposure(active, slate_emb, fb.seen, fresh, video_ids, creators)
    per_user = m.finalize()
"""

from __future__ import annotations

import numpy as np

from reward.feedback import Feedback

__all__ = [
    "ENGAGEMENT_VALUE_WEIGHTS",
    "EXPOSURE_METRIC_NAMES",
    "FRESH_AGE_H",
    "METRIC_NAMES",
    "CohortMetrics",
    "coverage",
    "engagement_value",
    "slate_diversity",
]

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
    "intra_slate_diversity",
    "new_video_exposure",
)
"""Per-user metrics of :meth:`CohortMetrics.finalize`, in order."""

EXPOSURE_METRIC_NAMES: tuple[str, ...] = ("catalog_coverage", "creator_coverage")
"""Cohort-level metrics: distinct videos (creators) seen by the cohort over the catalog's
videos (creators); see :func:`coverage`."""

FRESH_AGE_H = 24.0
"""A video younger than this (world hours since upload) when shown counts as new."""

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


def slate_diversity(emb: np.ndarray) -> np.ndarray:
    """Mean pairwise ``1 - cos`` of the videos in each slate.

    Args:
        emb: (B, K, d) content embeddings of each slate's videos (any norm; a zero
            vector counts as orthogonal to every other).

    Returns:
        (B,) float64 in [0, 2]: 0 when every video points the same way, 1 for mutually
        orthogonal ones; NaN when K < 2 (a slate of one has no pairs).
    """
    e = np.asarray(emb)
    B, K = e.shape[:2]
    if K < 2:
        return np.full(B, np.nan)
    # float64 accumulation without a float64 copy of the slates (this runs every step).
    sq = np.einsum("bkd,bkd->bk", e, e, dtype=np.float64)
    inv_norm = 1.0 / np.sqrt(np.maximum(sq, 1e-24))
    # The sum over ordered pairs i != j of <u_i, u_j> (u = e / |e|) is
    # |sum_i u_i|^2 - sum_i |u_i|^2: O(K d) per slate instead of O(K^2 d).
    total = np.einsum("bkd,bk->bd", e, inv_norm, dtype=np.float64)
    pair_sum = np.einsum("bd,bd->b", total, total) - (sq > 1e-24).sum(axis=1)
    return 1.0 - pair_sum / (K * (K - 1))


def coverage(keys: np.ndarray, n_total: int) -> float:
    """Share of a universe of ``n_total`` things that ``keys`` name (duplicates count once).

    Args:
        keys: (P,) int ids (videos or creators) shown to a cohort, repeats allowed.
        n_total: size of the universe (catalog videos or creators), > 0.

    Returns:
        Distinct keys / ``n_total``.
    """
    if n_total <= 0:
        raise ValueError(f"n_total must be > 0, got {n_total}")
    return float(len(np.unique(np.asarray(keys)))) / float(n_total)


def _distinct_pairs(users: list[np.ndarray], keys: list[np.ndarray], n_users: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (user, key) pairs, sorted by key, then user: (P,) int64 users and keys."""
    if not users:
        empty = np.zeros(0, np.int64)
        return empty, empty.copy()
    u = np.concatenate(users).astype(np.int64)
    k = np.concatenate(keys).astype(np.int64)
    # One int64 code per pair: key-major, so sorting the codes groups each key's users.
    code = np.unique(k * n_users + u)
    return code % n_users, code // n_users


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
        # Exposure (update_exposure): slate diversity sums, new videos seen, shown pairs.
        self._exposure_steps = 0
        self._div_sum = np.zeros(n_users, np.float64)
        self._div_n = np.zeros(n_users, np.int64)
        self._fresh_seen = np.zeros(n_users, np.float64)
        self._pair_users: list[np.ndarray] = []
        self._pair_videos: list[np.ndarray] = []
        self._pair_creators: list[np.ndarray] = []

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

    def update_exposure(
        self,
        active: np.ndarray,
        slate_emb: np.ndarray,
        seen: np.ndarray,
        fresh: np.ndarray,
        video_ids: np.ndarray | None = None,
        creators: np.ndarray | None = None,
    ) -> None:
        """Adds what one step showed (call once per step, with the step's feedback).

        Args:
            active: (n_users,) bool, the users stepped.
            slate_emb: (n_users, K, d) content embeddings of the slates shown, in feed
                order (all K videos: diversity is a property of the slate the policy
                chose, whether or not the user reached its end).
            seen: (n_users, K) bool, the videos the user reached (``Feedback.seen``).
            fresh: (n_users, K) bool, the video was uploaded less than
                :data:`FRESH_AGE_H` world hours before it was shown.
            video_ids: (n_users, K) int, an id per distinct video (a catalog row is
                reused by later uploads, so the caller disambiguates); None skips coverage.
            creators: (n_users, K) int creator of each video; None skips coverage.
        """
        active = np.asarray(active, np.bool_)
        seen = np.asarray(seen, np.bool_) & active[:, None]
        self._exposure_steps += 1
        div = slate_diversity(slate_emb)
        ok = active & np.isfinite(div)
        self._div_sum += np.where(ok, div, 0.0)
        self._div_n += ok
        self._fresh_seen += (np.asarray(fresh, np.bool_) & seen).sum(axis=1)
        if video_ids is not None and creators is not None:
            user = np.broadcast_to(self._rows[:, None], seen.shape)[seen]
            self._pair_users.append(user.astype(np.int32))
            self._pair_videos.append(np.asarray(video_ids)[seen].astype(np.int64))
            self._pair_creators.append(np.asarray(creators)[seen].astype(np.int32))

    def shown_pairs(self) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """Distinct (user, video) and (user, creator) pairs the users saw.

        Returns:
            ``((users, videos), (users, creators))``: (P,) int64 arrays each, sorted by
            video (creator), then user; empty if :meth:`update_exposure` got no ids.
        """
        videos = _distinct_pairs(self._pair_users, self._pair_videos, self.n_users)
        creators = _distinct_pairs(self._pair_users, self._pair_creators, self.n_users)
        return videos, creators

    def active_days(self) -> np.ndarray:
        """(n_users, ceil(horizon_days)) bool: user u had a session on local day d."""
        return self._active_day[:, : int(np.ceil(self.horizon_days))].copy()

    def finalize(self) -> dict[str, np.ndarray]:
        """Per-user metrics: name (:data:`METRIC_NAMES`) -> (n_users,) float64.

        The exposure metrics are NaN for a user without data (no slate of two or more,
        no video seen) and for everyone when :meth:`update_exposure` was never called.
        """
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
            "intra_slate_diversity": np.where(
                self._div_n > 0, self._div_sum / np.maximum(self._div_n, 1), np.nan
            ),
            "new_video_exposure": np.where(
                (acc["videos"] > 0) & (self._exposure_steps > 0), self._fresh_seen / videos, np.nan
            ),
        }
