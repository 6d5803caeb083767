"""Summary statistics of an impression log, one definition for real and simulated logs.

The calibration fits the simulator to these statistics of the fit days, and the fidelity
report compares them between a simulated log and the held-out days. Both sides go through
the same functions, so every definition below holds for both:

- **watch ratio** = ``play_ms / duration_ms``, over impressions with a known duration
  (``duration_ms > 0``); the response statistics (signal rates, watch ratio, fast skip) use
  only those impressions.
- **fast skip**: a play shorter than ``FAST_SKIP_MS`` (2 s). The calibrated simulator uses
  the same threshold (``response.fast_skip_s``).
- **long view**: the log's ``long_view`` flag. KuaiRand sets it for a play of at least 18 s,
  or of the whole video when it is shorter: :func:`long_view_rule`, which the simulated
  log applies (it matches the real flag on 99.75% of the real rows).
- **duration buckets**: ``DURATION_EDGES_S`` (15, 30, 60, 120 s) cut videos into five buckets.
- **sessions** are cut per user at time gaps longer than ``SESSION_GAP_MIN`` (30 min)
  between consecutive impressions; a session's length is its impressions; a **return gap**
  is the time from a session's last impression to the user's next session, in hours.
  Gaps are measured inside the log's window only.
- **daily return**: over every user and every window day d but the last, on which the
  user had an impression: the share who also had one on day d + 1.
- **activity**: impressions, sessions and active days per user (users with an impression
  in the window).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from envs.kuairand.data import SIGNALS, FeedLog

__all__ = [
    "BUCKET_LABELS",
    "DURATION_EDGES_S",
    "FAST_SKIP_MS",
    "LONG_VIEW_MS",
    "LogStats",
    "RATE_NAMES",
    "RATIO_EDGES",
    "SESSION_GAP_MIN",
    "Sessions",
    "auc",
    "cut_sessions",
    "daily_return",
    "duration_bucket",
    "fast_skip",
    "ks_2samp",
    "log_stats",
    "long_view_rule",
]

SESSION_GAP_MIN = 30.0
"""A gap longer than this between a user's consecutive impressions starts a new session (minutes)."""
FAST_SKIP_MS = 2000
"""A play shorter than this is a fast skip (ms)."""
LONG_VIEW_MS = 18000
"""KuaiRand's long view: a play of at least this long (ms), or of the whole (shorter) video."""
DURATION_EDGES_S: tuple[float, ...] = (15.0, 30.0, 60.0, 120.0)
"""Edges of the duration buckets, seconds: [0, 15), [15, 30), [30, 60), [60, 120), [120, inf)."""
BUCKET_LABELS: tuple[str, ...] = ("<15s", "15-30s", "30-60s", "60-120s", ">=120s")
"""Labels of the duration buckets."""
RATIO_EDGES: tuple[float, ...] = (0.05, 0.2, 0.5, 0.8, 1.0)
"""Watch-ratio buckets for the signal rates by watch ratio: [0, .05), [.05, .2), ..., [1, inf)."""
RATE_NAMES: tuple[str, ...] = (*SIGNALS, "long_view", "fast_skip")
"""Per-impression rates of :class:`LogStats`."""


def duration_bucket(duration_s: np.ndarray) -> np.ndarray:
    """(n,) int32 bucket of each duration (seconds) in ``DURATION_EDGES_S``."""
    return np.searchsorted(np.asarray(DURATION_EDGES_S), np.asarray(duration_s, np.float64), side="right").astype(np.int32)


def fast_skip(play_ms: np.ndarray) -> np.ndarray:
    """(n,) bool: the play was shorter than ``FAST_SKIP_MS``."""
    return np.asarray(play_ms) < FAST_SKIP_MS


def long_view_rule(play_ms: np.ndarray, duration_ms: np.ndarray) -> np.ndarray:
    """(n,) bool: a play of at least 18 s, or of at least the whole video when it is shorter."""
    return np.asarray(play_ms) >= np.minimum(LONG_VIEW_MS, np.asarray(duration_ms))


@dataclass(frozen=True)
class Sessions:
    """Sessions cut from a log (ordered by user, then time).

    Attributes:
        user: (S,) user of each session.
        start_ms, end_ms: (S,) time of its first and of its last impression.
        length: (S,) impressions in it.
        return_gap_h: (G,) hours from each session's last impression to the same user's
            next session, for every session that has a next one in the window.
        row_session: (n,) session index of each impression of the sorted log.
    """

    user: np.ndarray
    start_ms: np.ndarray
    end_ms: np.ndarray
    length: np.ndarray
    return_gap_h: np.ndarray
    row_session: np.ndarray


def cut_sessions(user: np.ndarray, time_ms: np.ndarray, gap_min: float = SESSION_GAP_MIN) -> Sessions:
    """Cut sessions at gaps longer than `gap_min` minutes.

    Args:
        user: (n,) user of each impression, sorted (with `time_ms` within a user).
        time_ms: (n,) impression times, nondecreasing within a user.
        gap_min: session gap threshold, minutes.

    Returns:
        The sessions and the return gaps between them.

    Raises:
        ValueError: If the impressions are not ordered by user, then time.
    """
    user = np.asarray(user)
    time_ms = np.asarray(time_ms, np.int64)
    n = len(user)
    if n == 0:
        z = np.zeros(0, np.int64)
        return Sessions(z, z, z, z, np.zeros(0), z)
    same_user = user[1:] == user[:-1]
    dt = np.diff(time_ms)
    if np.any(user[1:] < user[:-1]) or np.any(same_user & (dt < 0)):
        raise ValueError("impressions must be ordered by user, then time")
    new = np.ones(n, bool)
    new[1:] = ~same_user | (dt > gap_min * 60_000.0)
    row_session = np.cumsum(new) - 1
    starts = np.flatnonzero(new)
    ends = np.r_[starts[1:], n] - 1
    s_user = user[starts]
    start_ms, end_ms = time_ms[starts], time_ms[ends]
    length = ends - starts + 1
    follows = s_user[1:] == s_user[:-1]
    gaps = (start_ms[1:] - end_ms[:-1])[follows] / 3.6e6
    return Sessions(s_user, start_ms, end_ms, length, gaps.astype(np.float64), row_session)


def daily_return(user: np.ndarray, date: np.ndarray, dates: tuple[int, ...]) -> float:
    """Share of (user, day d) with an impression on d that also have one on the next window day.

    Args:
        user, date: (n,) per impression.
        dates: the window's days in order (consecutive calendar days).

    Returns:
        The share; NaN without any (user, day) before the last window day.
    """
    if len(dates) < 2 or len(user) == 0:
        return float("nan")
    pos = np.searchsorted(np.asarray(dates), np.asarray(date))
    key = np.unique(np.asarray(user, np.int64) * 1000 + pos)
    base = key[(key % 1000) < len(dates) - 1]
    if len(base) == 0:
        return float("nan")
    return float(np.isin(base + 1, key).mean())


@dataclass(frozen=True)
class LogStats:
    """The statistics of one log window (see the module docstring for every definition)."""

    dates: tuple[int, ...]
    impressions: int
    """Impressions in the window (all, zero durations included)."""
    response_impressions: int
    """Impressions with a known duration (the base of the response statistics)."""
    users: int
    """Users with an impression in the window."""
    rates: dict[str, float]
    """``RATE_NAMES`` -> share of response impressions."""
    counts: dict[str, int]
    """``RATE_NAMES`` -> count among response impressions."""
    watch_ratio: np.ndarray
    """(n,) float64 watch ratio of each response impression."""
    bucket: np.ndarray
    """(n,) int32 duration bucket of each response impression."""
    duration_s: np.ndarray
    """(n,) float64 duration of each response impression's video, seconds."""
    rates_by_ratio: dict[str, list[float]]
    """Signal -> rate in each ``RATIO_EDGES`` watch-ratio bucket (NaN where empty)."""
    ratio_bucket_counts: list[int]
    """Response impressions in each watch-ratio bucket."""
    session_length: np.ndarray
    """(S,) impressions per session."""
    return_gap_h: np.ndarray
    """(G,) return gaps, hours."""
    daily_return: float
    impressions_per_user: np.ndarray
    sessions_per_user: np.ndarray
    active_days_per_user: np.ndarray

    @property
    def impressions_per_session(self) -> float:
        """Mean session length."""
        return float(self.session_length.mean()) if len(self.session_length) else float("nan")

    def ratios_in_bucket(self, b: int) -> np.ndarray:
        """Watch ratios of the response impressions of duration bucket `b`."""
        return self.watch_ratio[self.bucket == b]

    def scalars(self) -> dict[str, float]:
        """The one-number statistics, JSON-able."""
        gap = self.return_gap_h
        return {
            "impressions": float(self.impressions),
            "users": float(self.users),
            **{f"rate_{k}": v for k, v in self.rates.items()},
            "watch_ratio_mean": float(self.watch_ratio.mean()) if len(self.watch_ratio) else float("nan"),
            "watch_ratio_median": float(np.median(self.watch_ratio)) if len(self.watch_ratio) else float("nan"),
            "impressions_per_session": self.impressions_per_session,
            "return_gap_median_h": float(np.median(gap)) if len(gap) else float("nan"),
            "daily_return": self.daily_return,
            "impressions_per_user": float(self.impressions_per_user.mean()) if self.users else float("nan"),
            "sessions_per_user": float(self.sessions_per_user.mean()) if self.users else float("nan"),
            "active_days_per_user": float(self.active_days_per_user.mean()) if self.users else float("nan"),
        }


def log_stats(log: FeedLog) -> LogStats:
    """All statistics of a log (its window: ``log.dates``)."""
    log = log.sorted()
    known = log.duration_ms > 0
    r = log.select(known)
    ratio = r.play_ms / r.duration_ms
    flags = {name: getattr(r, name) for name in SIGNALS}
    flags["long_view"] = r.long_view
    flags["fast_skip"] = fast_skip(r.play_ms)
    n = max(len(r), 1)
    rates = {k: float(v.sum()) / n for k, v in flags.items()}
    counts = {k: int(v.sum()) for k, v in flags.items()}
    rb = np.searchsorted(np.asarray(RATIO_EDGES), ratio, side="right")
    n_rb = np.bincount(rb, minlength=len(RATIO_EDGES) + 1)
    by_ratio = {}
    for k in (*SIGNALS, "long_view"):
        hits = np.bincount(rb, weights=flags[k].astype(np.float64), minlength=len(RATIO_EDGES) + 1)
        by_ratio[k] = [float(h / c) if c else float("nan") for h, c in zip(hits, n_rb)]
    sess = cut_sessions(log.user, log.time_ms)
    users, imp_per_user = np.unique(log.user, return_counts=True)
    _, sess_per_user = np.unique(sess.user, return_counts=True)
    ud = np.unique(log.user.astype(np.int64) * 100_000_000 + log.date)
    _, days_per_user = np.unique(ud // 100_000_000, return_counts=True)
    return LogStats(
        dates=log.dates,
        impressions=len(log),
        response_impressions=len(r),
        users=int(len(users)),
        rates=rates,
        counts=counts,
        watch_ratio=ratio.astype(np.float64),
        bucket=duration_bucket(r.duration_ms / 1000.0),
        duration_s=r.duration_ms / 1000.0,
        rates_by_ratio=by_ratio,
        ratio_bucket_counts=[int(c) for c in n_rb],
        session_length=sess.length,
        return_gap_h=sess.return_gap_h,
        daily_return=daily_return(log.user, log.date, log.dates),
        impressions_per_user=imp_per_user,
        sessions_per_user=sess_per_user,
        active_days_per_user=days_per_user,
    )


def ks_2samp(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov distance: sup_x |F_a(x) - F_b(x)| of the empirical CDFs.

    Ties are handled exactly (both CDFs are evaluated right-continuously at every observed
    value). NaN if either sample is empty.
    """
    a = np.sort(np.asarray(a, np.float64))
    b = np.sort(np.asarray(b, np.float64))
    if len(a) == 0 or len(b) == 0:
        return float("nan")
    x = np.concatenate([a, b])
    fa = np.searchsorted(a, x, side="right") / len(a)
    fb = np.searchsorted(b, x, side="right") / len(b)
    return float(np.max(np.abs(fa - fb)))


def auc(score: np.ndarray, label: np.ndarray) -> float:
    """Area under the ROC curve of `score` for the binary `label` (ties count one half).

    The Mann-Whitney statistic with average ranks. NaN without both classes.
    """
    score = np.asarray(score, np.float64)
    label = np.asarray(label, bool)
    n_pos, n_neg = int(label.sum()), int((~label).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    s = score[order]
    ranks = np.empty(len(s), np.float64)
    # Average rank of each run of equal scores (1-based).
    edges = np.flatnonzero(np.r_[True, s[1:] != s[:-1], True])
    for_run = (edges[:-1] + edges[1:] - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(for_run, np.diff(edges))
    return float((ranks[label].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))
