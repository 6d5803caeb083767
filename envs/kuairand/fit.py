"""Calibration: fit the data-driven world and the response, leave and return parameters to the fit days.

Only the fit days (``FIT_DATES``) are read: every function that fits takes a
:class:`~envs.kuairand.data.FeedLog` and calls :func:`~envs.kuairand.data.require_fit_days`.
The steps, all deterministic for one seed:

1. **Statistics** of the fit days (:func:`envs.kuairand.stats.log_stats`): the targets.
2. **Watch-ratio model**: each impression's watch ratio becomes a normal score within its
   duration bucket (``z = Phi^-1(mid-rank / n)``), and ``z ~ mu + b_user + c_video +
   <p_user, q_video>`` is fitted by alternating ridge regressions (matrix factorisation with
   biases). The regularisation is chosen on the last two fit days after fitting the first
   seven; its out-of-sample residual spread is the simulator's ``watch_ratio_noise``. In
   the simulator the appeal of a video to a user is this prediction (``affinity_weight =
   quality_weight = 1``, ``appeal_bias = mu``, the user's interest offset ``b_user``,
   ``quality = 0.5 + c_video``), plus the simulator's session terms.
3. **Catalog**: the real videos with their durations (missing ones imputed with their
   topic's median), authors, music and upload dates; topics from the first tag (the most
   common ``n_topics - 1`` tags, the rest pooled), niches by splitting each topic along
   the main axis of its videos' latent vectors; co-engagement neighbours by latent cosine;
   the platform's counts from the fit days.
4. **Engagement**: per-video and per-user log-odds offsets for like, forward (share),
   comment, follow, profile enter and hate (not interested), shrunk towards the mean
   (beta-binomial method of moments); the slopes of the engagement log-odds on the
   watch ratio and the appeal by logistic regression on the fit rows.
5. **Activity**: sessions per user on the fit days -> a Gamma-Poisson posterior of each
   user's session rate (prior by the method of moments); a user's activity is drawn from
   it whenever they are spawned.
6. **Simulated method of moments**: the population is simulated over the fit days (after
   a burn-in), the simulated log goes through the same statistics, and fixed-point updates
   move the quantile tables (the latent knots of each bucket become the simulated
   latents' quantiles, so the simulated watch ratios follow the fit days' per bucket),
   the logging policy's per-video exposure bias (towards each video's fit-day
   impressions: the simulated stand-in for Kuaishou's ranker, see
   :mod:`envs.kuairand.simulate`), the engagement biases (towards each signal's rate), the
   leave bias (towards the impressions per session), and the return-gap scale, activity
   slope and spread (towards the sessions per population user, the median and the spread
   of the log return gaps). The same seed every
   round: common random numbers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date as Date

import numpy as np
from scipy.special import expit, logit, ndtri

from envs.catalog import N_ENGAGEMENT_OFFSETS
from envs.config import EnvConfig
from envs.feed_env import make_env_config
from envs.kuairand.data import (
    ATTRIBUTION,
    FIT_DATES,
    LICENSE_NOTE,
    KuaiRandData,
    column_array,
    column_strings,
    require_fit_days,
)
from envs.kuairand.simulate import simulate_replicas
from envs.kuairand.stats import (
    DURATION_EDGES_S,
    FAST_SKIP_MS,
    LogStats,
    cut_sessions,
    duration_bucket,
    ks_2samp,
    log_stats,
)
from envs.kuairand.world import WORLD_FORMAT, KuaiRandWorld

__all__ = [
    "Calibration",
    "CalibrationSettings",
    "ENGAGEMENT_COLUMNS",
    "MFModel",
    "calibrate",
    "fit_mf",
    "normal_scores",
    "shrunk_log_odds",
]

ENGAGEMENT_COLUMNS: tuple[str, ...] = ("like", "forward", "comment", "follow", "profile_enter", "hate")
"""Log signal of each engagement offset column (``envs.response.ENGAGEMENT_OFFSETS`` order:
like, share, comment, follow, profile visit, not interested)."""
_BIAS_KEYS = ("like_bias", "share_bias", "comment_bias", "follow_bias", "profile_bias", "not_interested_bias")
"""The response-config bias of each engagement column."""
FACTOR_MIN_SCALE = 1e-3
"""Below this RMS norm of the fitted video vectors the factorisation carries no interaction."""
ACTIVITY_SLOPE_RATE = 0.5
"""Step of the return gap's activity slope per unit of log-gap median error."""
LOGGING_RATE = 0.8
"""Step of the logging policy's exposure bias per round (log-impressions units)."""
LOGGING_BIAS_MAX = 8.0
"""Bound of the exposure bias."""
_EPOCH = Date(2022, 4, 25)
"""World hour 0: midnight before the first fit day."""
_LOCAL_OFFSET_MS = 8 * 3_600_000
"""KuaiRand times are UTC ms; the users' local time is UTC+8."""


@dataclass(frozen=True)
class CalibrationSettings:
    """What ``rl-fyp calibrate`` is asked for (everything else is fitted)."""

    seed: int = 0
    """Seeds the factorisation's start, the simulated cohorts and every draw."""
    latent_dim: int = 8
    """Dimension of the fitted latent vectors (``catalog.latent_dim``)."""
    n_topics: int = 16
    """Topics: the most common first tags, and one topic pooling the rest."""
    niches_per_topic: int = 4
    """Niches (retrieval clusters) per topic."""
    rounds: int = 8
    """Simulated-method-of-moments rounds."""
    burn_in_days: int = 4
    """Days simulated before the window is logged."""
    users: int | None = None
    """Calibrate on the first `users` user ids only (a subset, for quick checks); None: all."""
    table_size: int = 129
    """Knots of each watch-ratio quantile table."""
    table_buckets: int = 16
    """Duration buckets of the watch-ratio tables (equal shares of the fit impressions): finer
    than the report's five, so the ratio's dependence on duration inside a report bucket
    (and with it the fast-skip and long-view rates) carries over."""
    replicas: int = 2
    """Simulated copies of the population per round (more simulated impressions, less noise
    in the rare signals' rates)."""
    slate_size: int = 8
    """K of the calibrated config."""
    n_candidates: int = 100
    """N of the calibrated config."""
    i2i_neighbours: int = 8
    """Co-engagement neighbours kept per video."""
    mf_iterations: int = 12
    """Alternating ridge sweeps of the factorisation."""
    mf_grid: tuple[tuple[float, float], ...] = ((3.0, 3.0), (10.0, 3.0), (10.0, 10.0), (30.0, 10.0))
    """(factor, bias) ridge penalties tried on the validation days."""


@dataclass(frozen=True)
class MFModel:
    """``z ~ mu + b_user + c_item + <p_user, q_item>``."""

    mu: float
    b_user: np.ndarray
    c_item: np.ndarray
    p_user: np.ndarray
    q_item: np.ndarray

    def predict(self, user: np.ndarray, item: np.ndarray) -> np.ndarray:
        """(n,) prediction for (user, item) index pairs."""
        return self.mu + self.b_user[user] + self.c_item[item] + np.einsum("nd,nd->n", self.p_user[user], self.q_item[item])


@dataclass
class Calibration:
    """The result of :func:`calibrate`."""

    env_overrides: dict
    """The ``env:`` section of the calibrated config (world file fields still to be filled)."""
    world_arrays: dict[str, np.ndarray]
    """The arrays of the world file."""
    targets: LogStats
    """Statistics of the fit days."""
    final: LogStats
    """Statistics of the final simulation over the fit days."""
    rounds: list[dict] = field(default_factory=list)
    """Per simulated-method-of-moments round: the parameters and the distances."""
    summary: dict = field(default_factory=dict)
    """Fitted figures (factorisation, slopes, activity prior), JSON-able."""


# ---------------------------------------------------------------------- building blocks
def normal_scores(ratio: np.ndarray, bucket: np.ndarray, n_buckets: int) -> np.ndarray:
    """(n,) normal score of each watch ratio within its bucket: ``Phi^-1((mid-rank - 0.5) / n_b)``."""
    from scipy.stats import rankdata

    z = np.zeros(len(ratio))
    for b in range(n_buckets):
        sel = bucket == b
        n = int(sel.sum())
        if n:
            z[sel] = ndtri((rankdata(ratio[sel]) - 0.5) / n)
    return z


def _ridge_by_group(group: np.ndarray, X: np.ndarray, y: np.ndarray, n_groups: int, reg: np.ndarray) -> np.ndarray:
    """Per group g: argmin_w sum_(rows of g) (y - X w)^2 + sum reg * w^2; zeros for empty groups."""
    order = np.argsort(group, kind="stable")
    g, Xo, yo = group[order], X[order], y[order]
    out = np.zeros((n_groups, X.shape[1]))
    if len(g) == 0:
        return out
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    A = np.add.reduceat(Xo[:, :, None] * Xo[:, None, :], starts, axis=0) + np.diag(reg)
    rhs = np.add.reduceat(Xo * yo[:, None], starts, axis=0)
    out[g[starts]] = np.linalg.solve(A, rhs[..., None])[..., 0]
    return out


def fit_mf(user: np.ndarray, item: np.ndarray, z: np.ndarray, n_users: int, n_items: int, d: int,
           reg_factor: float, reg_bias: float, iterations: int, rng: np.random.Generator) -> MFModel:
    """Matrix factorisation with biases by alternating ridge regressions.

    Args:
        user, item: (R,) int indices of each observation; z: (R,) targets.
        n_users, n_items: index ranges.
        d: latent dimension.
        reg_factor, reg_bias: ridge penalties of the vectors and of the biases.
        iterations: sweeps (users, then items).
        rng: draws the starting item vectors.
    """
    mu = float(z.mean())
    q = rng.standard_normal((n_items, d)) * 0.1
    c = np.zeros(n_items)
    b = np.zeros(n_users)
    p = np.zeros((n_users, d))
    reg = np.r_[np.full(d, reg_factor), reg_bias]
    ones = np.ones((len(z), 1))
    for _ in range(iterations):
        w = _ridge_by_group(user, np.hstack([q[item], ones]), z - mu - c[item], n_users, reg)
        p, b = w[:, :d], w[:, d]
        w = _ridge_by_group(item, np.hstack([p[user], ones]), z - mu - b[user], n_items, reg)
        q, c = w[:, :d], w[:, d]
    return MFModel(mu, b, c, p, q)


def shrunk_log_odds(index: np.ndarray, hits: np.ndarray, n: int) -> np.ndarray:
    """Per entity: log-odds of its rate shrunk to the mean, minus the mean's log-odds.

    A beta-binomial model: the prior's strength comes from the method of moments (the
    spread of the entities' rates beyond their binomial noise); without excess spread
    every offset is 0.

    Args:
        index: (R,) entity of each observation; hits: (R,) bool outcomes; n: entities.

    Returns:
        (n,) float64 offsets (0 for entities without observations).
    """
    cnt = np.bincount(index, minlength=n).astype(np.float64)
    k = np.bincount(index, weights=hits.astype(np.float64), minlength=n)
    p = float(k.sum() / max(cnt.sum(), 1.0))
    if p <= 0.0 or p >= 1.0:
        return np.zeros(n)
    seen = cnt >= 1
    rate = k[seen] / cnt[seen]
    excess = float(np.var(rate) - np.mean(p * (1.0 - p) / cnt[seen]))
    if excess <= 0.0:
        return np.zeros(n)
    strength = max(p * (1.0 - p) / excess - 1.0, 1.0)
    post = (k + strength * p) / (cnt + strength)
    return logit(post) - logit(p)


def _logistic(X: np.ndarray, y: np.ndarray, offset: np.ndarray, iterations: int = 25) -> np.ndarray:
    """Maximum-likelihood logistic regression with a fixed offset (Newton, tiny ridge)."""
    w = np.zeros(X.shape[1])
    w[0] = float(logit(np.clip(y.mean(), 1e-6, 1 - 1e-6)) - offset.mean())
    for _ in range(iterations):
        eta = X @ w + offset
        mu = expit(eta)
        grad = X.T @ (y - mu) - 1e-6 * w
        H = (X * (mu * (1 - mu))[:, None]).T @ X + 1e-6 * np.eye(X.shape[1])
        step = np.linalg.solve(H, grad)
        w += step
        if np.max(np.abs(step)) < 1e-8:
            break
    return w


def _activity_prior(sessions: np.ndarray, days: float) -> tuple[float, float]:
    """Gamma(shape, rate) prior of the per-user session rate (per day), method of moments."""
    m, v = float(sessions.mean()), float(sessions.var())
    if v <= m:  # no overdispersion: a (nearly) common rate
        return 1000.0, 1000.0 * days / max(m, 1e-6)
    rate = m * days / (v - m)
    return rate * m / days, rate


def _first_tags(tags: list[str]) -> list[str]:
    return [t.split(",")[0].strip() if t.strip() else "" for t in tags]


def _topics(first_tags: list[str], n_topics: int) -> np.ndarray:
    """Topic of each video: the `n_topics - 1` most common first tags, then one pooled topic."""
    counts: dict[str, int] = {}
    for t in first_tags:
        if t:
            counts[t] = counts.get(t, 0) + 1
    ranked = sorted(counts, key=lambda t: (-counts[t], t))[: n_topics - 1]
    index = {t: j for j, t in enumerate(ranked)}
    return np.array([index.get(t, n_topics - 1) for t in first_tags], np.int32)


def _niches(topic: np.ndarray, vec: np.ndarray, n_topics: int, per_topic: int, key: np.ndarray) -> np.ndarray:
    """Niche of each video: its topic's videos in `per_topic` equal parts along their main latent axis."""
    niche = np.zeros(len(topic), np.int32)
    for t in range(n_topics):
        rows = np.flatnonzero(topic == t)
        if len(rows) < 4 * per_topic:
            raise ValueError(f"topic {t} has {len(rows)} videos: fewer than 4 per niche ({per_topic} niches)")
        x = vec[rows] - vec[rows].mean(axis=0)
        # Main axis: the top right-singular vector (sign fixed so the split is deterministic).
        _, _, vt = np.linalg.svd(x, full_matrices=False)
        axis = vt[0] * (1.0 if vt[0][np.argmax(np.abs(vt[0]))] >= 0 else -1.0)
        order = rows[np.lexsort((key[rows], x @ axis))]
        for j, part in enumerate(np.array_split(order, per_topic)):
            niche[part] = t * per_topic + j
    return niche


def _neighbours(vec: np.ndarray, niche_start: np.ndarray, niche: np.ndarray, k: int) -> np.ndarray:
    """(n, k) nearest videos by latent cosine; videos without a vector get their niche's next rows."""
    n = len(vec)
    norm = np.linalg.norm(vec, axis=1)
    unit = vec / np.maximum(norm, 1e-12)[:, None]
    out = np.empty((n, k), np.int32)
    for lo in range(0, n, 1024):
        hi = min(n, lo + 1024)
        sim = unit[lo:hi] @ unit.T
        sim[np.arange(hi - lo), np.arange(lo, hi)] = -np.inf
        top = np.argpartition(-sim, k, axis=1)[:, :k]
        order = np.lexsort((top, -np.take_along_axis(sim, top, axis=1)), axis=1)
        out[lo:hi] = np.take_along_axis(top, order, axis=1)
    cold = np.flatnonzero(norm < 1e-9)
    if len(cold):
        start, size = niche_start[niche[cold]], np.diff(niche_start)[niche[cold]]
        step = np.arange(1, k + 1)[None, :]
        out[cold] = (start[:, None] + (cold[:, None] - start[:, None] + step) % size[:, None]).astype(np.int32)
    return out


def _upload_h(dates: list[str]) -> np.ndarray:
    out = np.empty(len(dates))
    for j, s in enumerate(dates):
        y, m, d = (int(x) for x in s.strip()[:10].split("-"))
        out[j] = (Date(y, m, d) - _EPOCH).days * 24.0
    return out


def _robust_var(x: np.ndarray) -> float:
    q75, q25 = np.percentile(x, [75, 25])
    return float(((q75 - q25) / 1.349) ** 2)


# ---------------------------------------------------------------------- calibration
def calibrate(data: KuaiRandData, settings: CalibrationSettings = CalibrationSettings(),
              log: Callable[[str], None] = lambda msg: None) -> Calibration:
    """Fit the data-driven world and the simulator's parameters to the fit days of `data`.

    Returns:
        The calibration (the ``env:`` overrides and the world arrays to write).
    """
    s = settings
    rng = np.random.default_rng(s.seed)
    # ---- the population and the fit days
    user_ids = np.sort(column_array(data.users, "user_id").astype(np.int64))
    if s.users is not None:
        user_ids = user_ids[: s.users]
    fit = data.fit_log()
    fit = fit.select(np.isin(fit.user, user_ids))
    require_fit_days(fit, "calibration")
    targets = log_stats(fit)
    log(f"calibrate: {len(fit)} fit-day impressions of {targets.users} users ({len(user_ids)} in the population)")

    # ---- the catalog's static columns, in KuaiRand video order for now
    vids = column_array(data.videos, "video_id").astype(np.int64)
    order_v = np.argsort(vids)
    vids = vids[order_v]
    n = len(vids)
    dur_ms = column_array(data.videos, "video_duration")[order_v]
    authors = column_array(data.videos, "author_id").astype(np.int64)[order_v]
    music = column_array(data.videos, "music_id").astype(np.int64)[order_v]
    first = _first_tags(column_strings(data.videos, "tag"))
    topic = _topics([first[j] for j in order_v], s.n_topics)
    upload = _upload_h([column_strings(data.videos, "upload_dt")[j] for j in order_v])
    missing = np.isnan(dur_ms)
    duration_s = np.where(missing, np.nan, dur_ms / 1000.0)
    for t in range(s.n_topics):
        sel = topic == t
        med = np.nanmedian(duration_s[sel]) if np.any(sel & ~missing) else np.nanmedian(duration_s)
        duration_s[sel & missing] = med
    vrow = np.searchsorted(vids, fit.video)  # fit impressions -> video index
    urow = np.searchsorted(user_ids, fit.user)

    # ---- watch-ratio model on the fit rows with a known duration
    known = fit.duration_ms > 0
    ratio = fit.play_ms[known] / fit.duration_ms[known]
    bucket = duration_bucket(fit.duration_ms[known] / 1000.0)
    nb = len(DURATION_EDGES_S) + 1
    z = normal_scores(ratio, bucket, nb)
    ku, kv = urow[known], vrow[known]
    valid_days = fit.date[known] >= FIT_DATES[-2]
    best = None
    grid_rmse = []
    for reg_f, reg_b in s.mf_grid:
        m = fit_mf(ku[~valid_days], kv[~valid_days], z[~valid_days], len(user_ids), n, s.latent_dim,
                   reg_f, reg_b, s.mf_iterations, np.random.default_rng(s.seed))
        rmse = float(np.sqrt(np.mean((z[valid_days] - m.predict(ku[valid_days], kv[valid_days])) ** 2)))
        log(f"calibrate: factorisation ridge ({reg_f:g}, {reg_b:g}): validation RMSE {rmse:.4f}")
        grid_rmse.append({"ridge_factor": reg_f, "ridge_bias": reg_b, "rmse": rmse})
        if best is None or rmse < best[0] - 1e-12:
            best = (rmse, reg_f, reg_b)
    noise, reg_f, reg_b = best
    mf = fit_mf(ku, kv, z, len(user_ids), n, s.latent_dim, reg_f, reg_b, s.mf_iterations, np.random.default_rng(s.seed))
    scale = float(np.sqrt(np.mean(np.sum(mf.q_item[np.bincount(kv, minlength=n) > 0] ** 2, axis=1))))
    if scale >= FACTOR_MIN_SCALE:
        true_vec = (mf.q_item / scale).astype(np.float32)
        user_vec = (mf.p_user * scale).astype(np.float32)
    else:
        # The validation days chose (next to) no interaction term: the appeal is the two
        # biases. The videos still need content vectors for the index and the embedding
        # the platform sees: their topic's direction plus a per-video spread. Users'
        # vectors are zero, so these vectors add nothing to any appeal.
        centroid = rng.standard_normal((s.n_topics, s.latent_dim))
        centroid /= np.linalg.norm(centroid, axis=1, keepdims=True)
        tv = centroid[topic] + 0.5 * rng.standard_normal((n, s.latent_dim)) / math.sqrt(s.latent_dim)
        true_vec = (tv / np.linalg.norm(tv, axis=1, keepdims=True)).astype(np.float32)
        user_vec = np.zeros((len(user_ids), s.latent_dim), np.float32)
    m_fit = mf.predict(ku, kv)

    # ---- catalog order: topic, niche, then upload time (niches are contiguous blocks)
    niche = _niches(topic, true_vec.astype(np.float64), s.n_topics, s.niches_per_topic, vids)
    rows = np.lexsort((vids, upload, niche))
    G = s.n_topics * s.niches_per_topic
    sizes = np.bincount(niche[rows], minlength=G)
    niche_start = np.r_[0, np.cumsum(sizes)].astype(np.int64)
    row_of = np.empty(n, np.int64)
    row_of[rows] = np.arange(n)  # KuaiRand video index -> catalog row
    crow = row_of[vrow]
    creators, creator = np.unique(authors[rows], return_inverse=True)
    sounds, sound = np.unique(music[rows], return_inverse=True)
    # The platform's counts from the fit days (completion: a play of the whole video).
    comp = fit.duration_ms > 0
    comp = comp & (fit.play_ms >= fit.duration_ms)
    eng = fit.like | fit.forward | fit.comment | fit.follow
    impressions = np.bincount(crow, minlength=n).astype(np.float32)
    completions = np.bincount(crow, weights=comp.astype(np.float64), minlength=n).astype(np.float32)
    engagements = np.bincount(crow, weights=eng.astype(np.float64), minlength=n).astype(np.float32)
    # Creator audience: no follower counts are published for authors; the fit days' reach
    # (distinct viewers of the author's videos) stands in for it.
    pairs = np.unique(creator[crow].astype(np.int64) * (len(user_ids) + 1) + urow)
    reach = np.bincount(pairs // (len(user_ids) + 1), minlength=len(creators))
    creator_followers = (100.0 * (1.0 + reach)).astype(np.float32)
    i2i = _neighbours(true_vec[rows].astype(np.float64), niche_start, niche[rows], s.i2i_neighbours)

    # ---- engagement offsets and slopes
    eng_off = np.zeros((n, N_ENGAGEMENT_OFFSETS))
    user_off = np.zeros((len(user_ids), N_ENGAGEMENT_OFFSETS))
    kf = fit.select(known)
    for j, name in enumerate(ENGAGEMENT_COLUMNS):
        hits = getattr(kf, name)
        eng_off[:, j] = shrunk_log_odds(crow[known], hits, n)
        user_off[:, j] = shrunk_log_odds(ku, hits, len(user_ids))
    x_ratio = np.minimum(ratio, 1.5)
    X = np.column_stack([np.ones(len(ratio)), x_ratio, m_fit])
    w_like = _logistic(X, kf.like.astype(np.float64), eng_off[crow[known], 0] + user_off[ku, 0])
    ratio_slope, appeal_slope = max(float(w_like[1]), 0.0), max(float(w_like[2]), 0.0)
    biases = {}
    for j, (name, key) in enumerate(zip(ENGAGEMENT_COLUMNS, _BIAS_KEYS)):
        y = getattr(kf, name).astype(np.float64)
        off = eng_off[crow[known], j] + user_off[ku, j]
        if name == "hate":
            Xh = np.column_stack([np.ones(len(y)), np.maximum(0.0, -m_fit)])
            wh = _logistic(Xh, y, off)
            ni_slope = max(float(wh[1]), 0.0)
            biases[key] = float(_logistic(np.ones((len(y), 1)), y, off + ni_slope * Xh[:, 1])[0])
        else:
            fixed = ratio_slope * x_ratio + appeal_slope * m_fit
            biases[key] = float(_logistic(np.ones((len(y), 1)), y, off + fixed)[0])

    # ---- activity: sessions on the fit days -> Gamma-Poisson posterior per user
    sess = cut_sessions(fit.user, fit.time_ms)
    per_user = np.bincount(np.searchsorted(user_ids, sess.user), minlength=len(user_ids)).astype(np.float64)
    shape0, rate0 = _activity_prior(per_user, float(len(FIT_DATES)))
    start_hours = ((sess.start_ms + _LOCAL_OFFSET_MS) // 3_600_000) % 24
    hour_cdf = np.cumsum(np.bincount(start_hours, minlength=24)) / max(len(start_hours), 1)
    hour_cdf[-1] = 1.0
    # Favourite topic: the most watched one on the fit days (the catalog's largest for the rest).
    tw = np.zeros((len(user_ids), s.n_topics))
    np.add.at(tw, (ku, topic[kv]), ratio)
    user_topic = np.where(tw.sum(axis=1) > 0, tw.argmax(axis=1), np.bincount(topic).argmax()).astype(np.int32)

    # ---- quantile tables per table bucket: knots start at the normal quantiles, values are
    # the fit days' watch-ratio quantiles (capped at 3, the simulator's range)
    dur_known = fit.duration_ms[known] / 1000.0
    inner = np.quantile(dur_known, np.arange(1, s.table_buckets) / s.table_buckets)
    table_edges = np.unique(np.round(inner, 3))
    tb = np.searchsorted(table_edges, dur_known, side="right")
    ntb = len(table_edges) + 1
    L = s.table_size
    levels = np.linspace(0.0, 1.0, L)
    values = np.zeros((ntb, L))
    knots = np.tile(ndtri(np.clip(levels, 0.5 / L, 1 - 0.5 / L)), (ntb, 1))
    for b in range(ntb):
        values[b] = np.minimum(np.quantile(ratio[tb == b], levels), 3.0)

    meta = {
        "format": WORLD_FORMAT,
        "attribution": ATTRIBUTION,
        "license": LICENSE_NOTE,
        "created_by": "rl-fyp calibrate",
        "seed": s.seed,
        "fit_dates": list(FIT_DATES),
        "data_sha256": dict(sorted(data.checksums.items())),
        "n_topics": s.n_topics,
        "niches_per_topic": s.niches_per_topic,
        "population": len(user_ids),
        "activity_prior_mean": shape0 / rate0,
        "report_duration_buckets_s": list(DURATION_EDGES_S),
        "table_duration_edges_s": [float(x) for x in table_edges],
    }
    arrays = {
        "video_id": vids[rows].astype(np.int32),
        "topic": topic[rows].astype(np.int32),
        "niche": niche[rows].astype(np.int32),
        "niche_start": niche_start,
        "true_vec": true_vec[rows],
        "quality": (0.5 + mf.c_item[rows]).astype(np.float32),
        "duration_s": duration_s[rows].astype(np.float32),
        "duration_imputed": missing[rows],
        "duration_bucket": np.searchsorted(table_edges, duration_s[rows], side="right").astype(np.int32),
        "creator": creator.astype(np.int32),
        "author_id": creators.astype(np.int64),
        "creator_followers": creator_followers,
        "sound": sound.astype(np.int32),
        "music_id": sounds.astype(np.int64),
        "upload_h": upload[rows],
        "impressions": impressions,
        "completions": completions,
        "engagements": engagements,
        "i2i": i2i,
        "eng_offset": eng_off[rows].astype(np.float32),
        "user_id": user_ids.astype(np.int32),
        "user_vec": user_vec,
        "user_bias": mf.b_user.astype(np.float32),
        "user_topic": user_topic,
        "activity_shape": shape0 + per_user,
        "activity_rate": np.full(len(user_ids), rate0 + len(FIT_DATES)),
        "user_eng_offset": user_off.astype(np.float32),
        "start_hour_cdf": hour_cdf.astype(np.float64),
        "wr_knots": knots,
        "wr_values": values,
        "duration_edges_s": table_edges.astype(np.float64),
        "logging_bias": np.zeros(n, np.float32),
        "meta": np.array(json.dumps(meta, sort_keys=True)),
    }
    n_sounds = len(sounds)
    response = {
        "watch_ratio_model": "quantile",
        "watch_ratio_noise": round(noise, 6),
        "fast_skip_s": FAST_SKIP_MS / 1000.0,
        "affinity_weight": 1.0,
        "quality_weight": 1.0,
        "appeal_bias": round(mf.mu, 6),
        "engagement_ratio_slope": round(ratio_slope, 6),
        "engagement_appeal_slope": round(appeal_slope, 6),
        "not_interested_slope": round(ni_slope, 6),
        **{k: round(v, 6) for k, v in biases.items()},
        "leave_bias": float(logit(1.0 / max(targets.impressions_per_session, 1.0001))),
        "return_gap_median_h": float(np.median(targets.return_gap_h)),
        "return_gap_sigma": 1.0,
        "return_activity_slope": 1.5,
    }
    summary = {
        "impressions": len(fit),
        "users": targets.users,
        "population": len(user_ids),
        "factorisation": {"ridge_factor": reg_f, "ridge_bias": reg_b, "validation_rmse": noise,
                          "validation": grid_rmse, "mu": mf.mu, "latent_scale": scale,
                          "interaction": bool(scale >= FACTOR_MIN_SCALE)},
        "like_logistic": {"intercept": float(w_like[0]), "ratio_slope": float(w_like[1]), "appeal_slope": float(w_like[2])},
        "activity_prior": {"shape": shape0, "rate_days": rate0, "mean_sessions_per_day": shape0 / rate0},
        "videos_duration_imputed": int(missing.sum()),
    }
    env = {
        "slate_size": s.slate_size,
        "horizon_days": 14.0,
        "world": {"source": "kuairand", "world_file": "", "world_sha256": "", "data_dir": ""},
        "catalog": {
            "n_items": n, "n_topics": s.n_topics, "niches_per_topic": s.niches_per_topic,
            "latent_dim": s.latent_dim, "n_sounds": n_sounds, "n_regions": 1, "uploads_per_h": 0.0,
            "trend_start_per_h": 0.0, "i2i_neighbours": s.i2i_neighbours,
        },
        "user": {"max_interests": 1, "n_languages": 1, "n_devices": 1, "signup_prob": 0.0},
        "response": response,
        "retrieval": {"n_candidates": s.n_candidates},
    }

    # ---- simulated method of moments over the fit days
    history: list[dict] = []
    t_gap = np.log(targets.return_gap_h)
    sessions_target = len(targets.session_length) / len(user_ids)
    log("calibrate: targets: " + ", ".join(f"{k} {v:.4g}" for k, v in targets.scalars().items())
        + f", sessions per population user {sessions_target:.4g}")
    for r in range(s.rounds + 1):
        world = KuaiRandWorld.from_arrays(arrays)
        cfg = _env_config(env)
        sim = simulate_replicas(cfg, world, FIT_DATES, seed=s.seed, burn_in_days=s.burn_in_days, replicas=s.replicas)
        st = log_stats(sim.log)
        dist = _distances(targets, st)
        dist["sessions_per_population_user"] = len(st.session_length) / (world.n_users * s.replicas)
        history.append({"round": r, **{k: response[k] for k in ("leave_bias", "return_gap_median_h", "return_gap_sigma",
                                                                "return_activity_slope")},
                        **dist})
        log(f"calibrate: round {r}: " + ", ".join(f"{k} {v:.4g}" for k, v in history[-1].items() if k != "round"))
        if r == s.rounds:
            break
        # Watch-ratio tables: each bucket's knots become the simulated latents' quantiles.
        for b in range(ntb):
            lat = sim.latent[sim.bucket == b]
            if len(lat) >= 2 * L:
                arrays["wr_knots"][b] = np.quantile(lat, levels)
        # Logging policy: each video's exposure towards its fit-day impressions (per copy of the population).
        shown = np.bincount(row_of[np.searchsorted(vids, sim.log.video)], minlength=n) / s.replicas
        step = LOGGING_RATE * (np.log(impressions + 1.0) - np.log(shown + 1.0))
        arrays["logging_bias"] = np.clip(arrays["logging_bias"] + step, -LOGGING_BIAS_MAX, LOGGING_BIAS_MAX).astype(np.float32)
        # Engagement biases towards each signal's rate.
        for name, key in zip(ENGAGEMENT_COLUMNS, _BIAS_KEYS):
            want, got = targets.rates[name], st.rates[name]
            step = math.log(want / got) if got > 0 else 1.0
            response[key] = round(float(response[key] + np.clip(step, -2.0, 2.0)), 6)
        # Leave: the per-video leave probability is about sessions / impressions.
        p_t = 1.0 / max(targets.impressions_per_session, 1.0001)
        p_s = float(np.clip(1.0 / max(st.impressions_per_session, 1.0001), 0.01, 0.99))
        response["leave_bias"] = round(float(response["leave_bias"] + logit(p_t) - logit(p_s)), 6)
        # Return gaps. Their scale sets the population's sessions (per population user: the
        # window's total activity); the activity slope the median of the gaps inside the
        # window (a steeper slope gives heavy users, who make most gaps, shorter ones); the
        # spread the (robust) spread of the log gaps.
        s_gap = np.log(st.return_gap_h) if len(st.return_gap_h) > 10 else t_gap
        sessions_sim = len(st.session_length) / (world.n_users * s.replicas)
        response["return_gap_median_h"] = round(float(response["return_gap_median_h"]
                                                      * np.clip(sessions_sim / sessions_target, 0.5, 2.0)), 6)
        slope = response["return_activity_slope"] + ACTIVITY_SLOPE_RATE * (np.median(s_gap) - np.median(t_gap))
        response["return_activity_slope"] = round(float(np.clip(slope, 0.2, 4.0)), 6)
        var = response["return_gap_sigma"] ** 2 + _robust_var(t_gap) - _robust_var(s_gap)
        response["return_gap_sigma"] = round(float(np.clip(math.sqrt(max(var, 0.01)), 0.1, 5.0)), 6)
    arrays["wr_knots"] = np.maximum.accumulate(arrays["wr_knots"], axis=1)
    meta["calibration"] = {"summary": summary, "rounds": history, "response": dict(response)}
    arrays["meta"] = np.array(json.dumps(meta, sort_keys=True))
    return Calibration(env_overrides=env, world_arrays=arrays, targets=targets, final=st, rounds=history, summary=summary)


def _env_config(env: dict) -> EnvConfig:
    """The env config of a calibration round (the world is handed over in memory)."""
    placeholder = {"world": {**env["world"], "world_file": "(in memory)", "world_sha256": "0" * 64}}
    return make_env_config({**env, **placeholder})


def _distances(targets: LogStats, st: LogStats) -> dict[str, float]:
    """How far a simulated log is from the targets: relative errors and KS distances."""
    out = {f"rel_{k}": (st.rates[k] - v) / v for k, v in targets.rates.items() if v > 0}
    for b in range(len(DURATION_EDGES_S) + 1):
        out[f"ks_ratio_{b}"] = ks_2samp(targets.ratios_in_bucket(b), st.ratios_in_bucket(b))
    out["ks_return_gap"] = ks_2samp(targets.return_gap_h, st.return_gap_h)
    out["ks_duration"] = ks_2samp(targets.duration_s, st.duration_s)
    out["ks_session_length"] = ks_2samp(targets.session_length, st.session_length)
    out["impressions_per_session"] = st.impressions_per_session
    out["daily_return"] = st.daily_return
    sc = st.scalars()
    for k in ("sessions_per_user", "active_days_per_user", "impressions_per_user"):
        out[k] = sc[k]
    return out
