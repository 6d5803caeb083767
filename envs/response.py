"""User response to a slate, video by video, with leave, return and churn.

For each video in feed order, the user's current appeal for it is

    appeal = affinity_weight * max_c(cos(interest_c, v) + offset_c)   long-term interest
           + session_weight * <session_interest, v>                    session interest
           + quality_weight * (quality - 0.5) + follow bonus + trend bonus
           - fatigue_weight * fatigue[topic] - avoidance_weight * avoid[topic]
           - position_decay * slot + appeal_bias

and from it: a fast skip (swipe-away time), or a watch ratio in [0, 3] (completion is
likelier for short videos; completed short videos get replays), engagement (like, share,
comment, follow, profile visit) rising with appeal and watch ratio, and not-interested
on skipped videos the user dislikes. After each video the user may leave; the hazard
grows with fatigue, low satisfaction, time in session, late hours and a skip. Videos after
the leave point are unseen. When a session ends, churn or a return gap is drawn from
long-run satisfaction, the breadth of interests the session fed, and activity.

With ``response.watch_ratio_model: quantile`` (a data-driven world), the watch ratio is
instead a monotone map of ``appeal + watch_ratio_noise * N(0, 1)`` through the table of the
video's duration bucket (fitted so that the ratios follow the real log's); a fast skip is a
watch shorter than ``fast_skip_s``, a completion a ratio >= 1, and every signal may follow
any video. In every mode each engagement log-odds adds the video's and the user's offsets
(zero in the synthetic world).

The kernel runs users in parallel (numba prange), each on its own random stream.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from envs._rng import normal, seed_stream, uniform
from envs.config import EnvConfig

__all__ = ["ENGAGEMENT_OFFSETS", "N_FLAGS", "respond", "response_params", "watch_ratio_from_latent"]

# Column order of the per-video boolean flags (same as reward.feedback.VIDEO_SIGNALS).
F_COMPLETED, F_SKIP, F_LIKE, F_SHARE, F_COMMENT, F_FOLLOW, F_PROFILE, F_NI = range(8)
N_FLAGS = 8

#: Signals with per-video and per-user log-odds offsets (``Catalog.eng_offset``,
#: ``UserState.eng_offset`` columns), in order.
ENGAGEMENT_OFFSETS = ("like", "share", "comment", "follow", "profile_visit", "not_interested")

# Index of each coefficient in the parameter vector handed to the kernel.
_PARAM_NAMES = (
    "affinity_weight", "session_weight", "quality_weight", "creator_follow_bonus", "trend_weight",
    "fatigue_weight", "avoidance_weight", "position_decay", "appeal_bias", "skip_slope", "skip_bias",
    "completion_slope", "completion_duration_slope", "replay_mean", "skip_time_mean_s",
    "like_bias", "share_bias", "comment_bias", "follow_bias", "profile_bias",
    "engagement_appeal_slope", "engagement_ratio_slope", "not_interested_bias", "not_interested_slope",
    "leave_bias", "leave_fatigue_slope", "leave_satisfaction_slope", "leave_time_slope",
    "leave_late_hour", "leave_skip", "return_gap_median_h", "return_gap_sigma",
    "return_satisfaction_slope", "return_breadth_slope", "churn_bias", "churn_satisfaction_slope",
    "satisfaction_neutral", "min_return_gap_h", "boredom_weight",
    # user model
    "session_drift", "session_relax_h", "fatigue_per_view", "fatigue_decay_h",
    "avoidance_per_not_interested", "avoidance_relief_per_positive", "avoidance_decay_h",
    "satisfaction_rate", "satisfaction_memory",
    # platform estimate
    "estimate_rate", "topic_estimate_rate",
    "horizon_h",
    # quantile watch-ratio model
    "quantile_watch_ratio", "watch_ratio_noise", "fast_skip_s",
    "return_activity_slope",
)
(P_AFF, P_SESS, P_QUAL, P_FOLLOWB, P_TREND, P_FAT, P_AVOID, P_POS, P_BIAS, P_SKIP_SLOPE, P_SKIP_BIAS,
 P_COMP_SLOPE, P_COMP_DUR, P_REPLAY, P_SKIP_TIME, P_LIKE, P_SHARE, P_COMMENT, P_FOLLOW, P_PROFILE,
 P_ENG_APPEAL, P_ENG_RATIO, P_NI_BIAS, P_NI_SLOPE, P_LEAVE_BIAS, P_LEAVE_FAT, P_LEAVE_SAT, P_LEAVE_TIME,
 P_LEAVE_LATE, P_LEAVE_SKIP, P_GAP_MEDIAN, P_GAP_SIGMA, P_GAP_SAT, P_GAP_BREADTH, P_CHURN_BIAS,
 P_CHURN_SAT, P_SAT_NEUTRAL, P_MIN_GAP, P_BOREDOM, P_DRIFT, P_RELAX, P_FAT_VIEW, P_FAT_DECAY, P_AVOID_NI,
 P_AVOID_RELIEF, P_AVOID_DECAY, P_SAT_RATE, P_SAT_MEMORY, P_EST_RATE, P_TOPIC_RATE, P_HORIZON,
 P_QUANTILE, P_WR_NOISE, P_FAST_SKIP, P_GAP_ACTIVITY) = range(len(_PARAM_NAMES))

#: A one-bucket identity-like table for worlds without quantile tables (never read there).
_NO_TABLE = np.array([[0.0, 1.0]], np.float64)


def response_params(cfg: EnvConfig) -> np.ndarray:
    """The kernel's parameter vector, in `_PARAM_NAMES` order, from the typed config."""
    values = []
    for name in _PARAM_NAMES:
        if name == "horizon_h":
            values.append(cfg.horizon_h)
        elif name == "quantile_watch_ratio":
            values.append(1.0 if cfg.response.watch_ratio_model == "quantile" else 0.0)
        elif hasattr(cfg.response, name):
            values.append(getattr(cfg.response, name))
        elif hasattr(cfg.user, name):
            values.append(getattr(cfg.user, name))
        else:
            values.append(getattr(cfg.retrieval, name))
    return np.asarray(values, dtype=np.float64)


@nb.njit(inline="always", cache=True)
def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + np.exp(-x))


@nb.njit(inline="always", cache=True)
def _engagement(s, p, e, followed, item_off, user_off):
    """Like, share, comment, follow and profile visit of one watch, engagement log-odds ``e``
    plus the video's and the user's offsets (``ENGAGEMENT_OFFSETS`` order); one draw each."""
    s, u = uniform(s)
    like = u < _sigmoid(p[P_LIKE] + e + item_off[0] + user_off[0])
    s, u = uniform(s)
    share = u < _sigmoid(p[P_SHARE] + e + item_off[1] + user_off[1])
    s, u = uniform(s)
    comment = u < _sigmoid(p[P_COMMENT] + e + item_off[2] + user_off[2])
    s, u = uniform(s)
    follow = (not followed) and u < _sigmoid(p[P_FOLLOW] + e + item_off[3] + user_off[3])
    s, u = uniform(s)
    profile = u < _sigmoid(p[P_PROFILE] + e + (1.0 if follow else 0.0) + item_off[4] + user_off[4])
    return s, like, share, comment, follow, profile


@nb.njit(inline="always", cache=True)
def _table_lookup(g, knots, values, row):
    """Piecewise-linear monotone map of `g` through row `row` of (knots, values), clamped at the ends."""
    L = knots.shape[1]
    if g <= knots[row, 0]:
        return values[row, 0]
    if g >= knots[row, L - 1]:
        return values[row, L - 1]
    lo = 0
    hi = L - 1
    while hi - lo > 1:  # knots[row, lo] < g < knots[row, hi]
        mid = (lo + hi) // 2
        if knots[row, mid] <= g:
            lo = mid
        else:
            hi = mid
    span = knots[row, hi] - knots[row, lo]
    if span <= 0.0:
        return values[row, hi]
    w = (g - knots[row, lo]) / span
    return values[row, lo] + w * (values[row, hi] - values[row, lo])


@nb.njit(cache=True)
def _table_lookup_many(g, bucket, knots, values):
    out = np.empty(g.shape[0], np.float64)
    for j in range(g.shape[0]):
        out[j] = _table_lookup(g[j], knots, values, bucket[j])
    return out


def watch_ratio_from_latent(
    latent: np.ndarray, bucket: np.ndarray, knots: np.ndarray, values: np.ndarray
) -> np.ndarray:
    """The quantile model's watch ratio for latent draws (the response kernel's own map).

    Args:
        latent: (n,) appeal + noise draws.
        bucket: (n,) int duration bucket of each video.
        knots: (n_buckets, L) nondecreasing latent knots per bucket.
        values: (n_buckets, L) watch ratio at each knot.

    Returns:
        (n,) float64 watch ratios.
    """
    return _table_lookup_many(
        np.ascontiguousarray(latent, np.float64), np.ascontiguousarray(bucket, np.int64),
        np.ascontiguousarray(knots, np.float64), np.ascontiguousarray(values, np.float64),
    )


@nb.njit(inline="always", fastmath=True, cache=True)
def interest_match(interest_off, interest_vec, session_vec, true_vec, b, i):
    """User b's hidden match with video i: (best interest score, its component, session score).

    The best score is ``max_c <interest_c, v_i> + offset_c`` over the user's used
    components (offset > -9); the session score is ``<session, v_i>``. Shared by the
    response kernel and the oracle baseline, which must see the same appeal.
    """
    m = interest_off.shape[1]
    d = true_vec.shape[1]
    best = -1e9
    best_c = 0
    for c in range(m):
        off = interest_off[b, c]
        if off <= -9.0:
            continue
        acc = 0.0
        for j in range(d):
            acc += interest_vec[b, c, j] * true_vec[i, j]
        if acc + off > best:
            best = acc + off
            best_c = c
    sess = 0.0
    for j in range(d):
        sess += session_vec[b, j] * true_vec[i, j]
    return best, best_c, sess


@nb.njit(parallel=True, fastmath=True, cache=True)
def _respond_kernel(
    slate, active, seed, p,
    true_vec, emb, item_topic, duration, quality, item_creator, item_sound, sound_level,
    interest_vec, interest_off, session_vec, fatigue, avoid, sat, sat_long, activity, coverage,
    follows, follow_ptr, hist_item, hist_ratio, hist_like, hist_skip, hist_ptr,
    seen_ring, seen_ptr, engaged_ring, engaged_ptr, u_hat, p_hat,
    clock_h, decay_clock_h, start_hour, last_gap_h,
    session_requests, session_videos, session_time_s, sessions, days_active, last_active_day,
    item_bucket, item_eng_off, user_eng_off, wr_knots, wr_values,
    out_seen, out_ratio, out_time, out_dur, out_flags, out_ended, out_gap, out_churn, out_newday, out_latent,
):
    B, K = slate.shape
    quantile = p[P_QUANTILE] > 0.5
    m = interest_vec.shape[1]
    d = true_vec.shape[1]
    T = fatigue.shape[1]
    F = follows.shape[1]
    M = hist_item.shape[1]
    S = seen_ring.shape[1]
    E = engaged_ring.shape[1]
    for b in nb.prange(B):
        if not active[b]:
            continue
        s = seed_stream(seed, b)
        # Time since the last step: fatigue and avoidance fade.
        dt = clock_h[b] - decay_clock_h[b]
        if dt > 0.0:
            ff = np.exp(-dt / p[P_FAT_DECAY])
            fa = np.exp(-dt / p[P_AVOID_DECAY])
            for t in range(T):
                fatigue[b, t] *= ff
                avoid[b, t] *= fa
            decay_clock_h[b] = clock_h[b]
        session_requests[b] += 1
        left = False
        for k in range(K):
            i = slate[b, k]
            dur = duration[i]
            out_dur[b, k] = dur
            if left:
                continue
            out_seen[b, k] = True
            top = item_topic[i]
            # Long-term affinity: the best-matching interest component.
            best, best_c, sess = interest_match(interest_off, interest_vec, session_vec, true_vec, b, i)
            followed = False
            cr = item_creator[i]
            for f in range(F):
                if follows[b, f] == cr:
                    followed = True
                    break
            appeal = (p[P_AFF] * best + p[P_SESS] * sess + p[P_QUAL] * (quality[i] - 0.5)
                      + p[P_TREND] * sound_level[item_sound[i]]
                      - p[P_FAT] * fatigue[b, top] - p[P_AVOID] * avoid[b, top]
                      - p[P_POS] * k + p[P_BIAS])
            if followed:
                appeal += p[P_FOLLOWB]
            like = share = comment = follow = profile = ni = completed = False
            if quantile:
                # Latent draw -> watch ratio through the video's duration-bucket table; then
                # every signal, whatever the watch, with the video's and the user's offsets.
                s, z = normal(s)
                g = appeal + p[P_WR_NOISE] * z
                out_latent[b, k] = g
                ratio = _table_lookup(g, wr_knots, wr_values, item_bucket[i])
                t_s = ratio * dur
                skip = t_s < p[P_FAST_SKIP]
                completed = ratio >= 1.0
                e = p[P_ENG_APPEAL] * appeal + p[P_ENG_RATIO] * min(ratio, 1.5)
                s, like, share, comment, follow, profile = _engagement(s, p, e, followed, item_eng_off[i], user_eng_off[b])
                s, u = uniform(s)
                ni = u < _sigmoid(p[P_NI_BIAS] + p[P_NI_SLOPE] * max(0.0, -appeal)
                                  + item_eng_off[i, 5] + user_eng_off[b, 5])
            else:
                s, u = uniform(s)
                skip = u < _sigmoid(p[P_SKIP_BIAS] - p[P_SKIP_SLOPE] * appeal)
                if skip:
                    s, u = uniform(s)
                    t_s = min(-p[P_SKIP_TIME] * np.log(1.0 - u), 0.5 * dur)
                    ratio = t_s / dur
                    s, u = uniform(s)
                    neg = max(0.0, -appeal)
                    ni = u < _sigmoid(p[P_NI_BIAS] + p[P_NI_SLOPE] * neg + item_eng_off[i, 5] + user_eng_off[b, 5])
                else:
                    s, u = uniform(s)
                    lc = p[P_COMP_SLOPE] * appeal - p[P_COMP_DUR] * np.log(dur / 15.0)
                    if u < _sigmoid(lc):
                        completed = True
                        s, u = uniform(s)
                        mean_replay = p[P_REPLAY] * np.exp(min(appeal, 2.0) - 1.0) * np.sqrt(15.0 / max(dur, 15.0))
                        ratio = 1.0 + min(-mean_replay * np.log(1.0 - u), 2.0)
                    else:
                        # Partial watch: U^(1/a) has mean a / (a + 1), rising with appeal.
                        s, u = uniform(s)
                        a = max(np.exp(appeal), 0.05)
                        ratio = 0.02 + 0.97 * u ** (1.0 / a)
                    t_s = ratio * dur
                    e = p[P_ENG_APPEAL] * appeal + p[P_ENG_RATIO] * min(ratio, 1.5)
                    s, like, share, comment, follow, profile = _engagement(s, p, e, followed, item_eng_off[i], user_eng_off[b])
            out_ratio[b, k] = ratio
            out_time[b, k] = t_s
            out_flags[b, k, 0] = completed
            out_flags[b, k, 1] = skip
            out_flags[b, k, 2] = like
            out_flags[b, k, 3] = share
            out_flags[b, k, 4] = comment
            out_flags[b, k, 5] = follow
            out_flags[b, k, 6] = profile
            out_flags[b, k, 7] = ni
            positive = like or share or comment or follow
            # Experienced value drives satisfaction (and through it leave, return, churn).
            value = min(ratio, 1.5) + 0.6 * like + 0.8 * share + 0.5 * comment + 0.8 * follow
            value -= 1.5 * ni + 0.2 * skip + p[P_BOREDOM] * fatigue[b, top]
            sat[b] += p[P_SAT_RATE] * (value - sat[b])
            # State updates.
            fatigue[b, top] += p[P_FAT_VIEW] * (0.4 if skip else 1.0)
            if ni:
                avoid[b, top] += p[P_AVOID_NI]
            elif positive:
                avoid[b, top] = max(0.0, avoid[b, top] - p[P_AVOID_RELIEF])
            if not skip:
                w = p[P_DRIFT] * min(ratio, 1.0)
                for j in range(d):
                    session_vec[b, j] += w * (true_vec[i, j] - session_vec[b, j])
            if follow:
                follows[b, follow_ptr[b] % F] = cr
                follow_ptr[b] += 1
            engaged = positive or ratio >= 0.8
            if engaged:
                coverage[b, best_c] += 1.0
                engaged_ring[b, engaged_ptr[b] % E] = i
                engaged_ptr[b] += 1
            h = hist_ptr[b] % M
            hist_item[b, h] = i
            hist_ratio[b, h] = ratio
            hist_like[b, h] = 1.0 if like else 0.0
            hist_skip[b, h] = 1.0 if skip else 0.0
            hist_ptr[b] += 1
            seen_ring[b, seen_ptr[b] % S] = i
            seen_ptr[b] += 1
            # Platform estimate: only observed signals and the content embedding.
            sig = min(ratio, 1.5) - 0.45 + 0.8 * like + 1.0 * (share or comment or follow) - 2.5 * ni
            sig = max(-1.5, min(sig, 1.5))
            r = p[P_EST_RATE]
            for j in range(d):
                u_hat[b, j] = (1.0 - r) * u_hat[b, j] + r * sig * emb[i, j]
            p_hat[b, top] += p[P_TOPIC_RATE] * (sig - p_hat[b, top])
            # Time passes while watching.
            session_videos[b] += 1
            session_time_s[b] += t_s
            clock_h[b] += t_s / 3600.0
            # Leave hazard after this video.
            hour = (start_hour[b] + clock_h[b]) % 24.0
            late = 1.0 if (hour >= 23.0 or hour < 6.0) else 0.0
            lh = (p[P_LEAVE_BIAS] + p[P_LEAVE_FAT] * fatigue[b, top]
                  - p[P_LEAVE_SAT] * (sat[b] - p[P_SAT_NEUTRAL])
                  + p[P_LEAVE_TIME] * session_time_s[b] / 60.0 + p[P_LEAVE_LATE] * late
                  - 0.3 * np.log(activity[b]))
            if skip:
                lh += p[P_LEAVE_SKIP]
            s, u = uniform(s)
            if u < _sigmoid(lh):
                left = True
        if not left:
            continue
        # Session end: long-run satisfaction, breadth of interests fed, churn or return.
        out_ended[b] = True
        sessions[b] += 1
        sat_long[b] = p[P_SAT_MEMORY] * sat_long[b] + (1.0 - p[P_SAT_MEMORY]) * sat[b]
        n_c = 0
        fed = 0.0
        for c in range(m):
            if interest_off[b, c] > -9.0:
                n_c += 1
                fed += min(1.0, coverage[b, c] / 2.0)
            coverage[b, c] = 0.0
        breadth = fed / max(n_c, 1)
        q = sat_long[b] - p[P_SAT_NEUTRAL]
        s, u = uniform(s)
        if u < _sigmoid(p[P_CHURN_BIAS] - p[P_CHURN_SAT] * q - 0.3 * np.log(activity[b])):
            # Churn: the user is gone for good (terminal).
            out_churn[b] = True
            continue
        s, z = normal(s)
        if p[P_GAP_ACTIVITY] == 1.0:  # the default, as the gap has always been computed
            base = np.log(p[P_GAP_MEDIAN] / activity[b])
        else:
            base = np.log(p[P_GAP_MEDIAN]) - p[P_GAP_ACTIVITY] * np.log(activity[b])
        lg = base - p[P_GAP_SAT] * q - p[P_GAP_BREADTH] * (breadth - 0.5) + p[P_GAP_SIGMA] * z
        gap = max(np.exp(lg), p[P_MIN_GAP])
        hour = (start_hour[b] + clock_h[b] + gap) % 24.0
        if hour >= 1.0 and hour < 7.0:
            s, u = uniform(s)
            gap += 7.0 - hour + 1.5 * u  # asleep: back in the morning
        out_gap[b] = gap
        last_gap_h[b] = gap
        clock_h[b] += gap
        # Between sessions the session interest fades and satisfaction resets to the long-run level.
        relax = np.exp(-gap / p[P_RELAX])
        for j in range(d):
            session_vec[b, j] *= relax
        sat[b] = sat_long[b]
        session_requests[b] = 0
        session_videos[b] = 0
        session_time_s[b] = 0.0
        day = np.int64(np.floor((start_hour[b] + clock_h[b]) / 24.0))
        if day > last_active_day[b] and clock_h[b] < p[P_HORIZON]:
            out_newday[b] = True
            days_active[b] += 1
            last_active_day[b] = day


def respond(sim, slate: np.ndarray, active: np.ndarray, seed: np.uint64) -> dict[str, np.ndarray]:
    """Run the response kernel for the users of `sim` (a FeedSimulator) on `slate`.

    Args:
        sim: the simulator whose catalog and user state are read and updated in place.
        slate: (B, K) int32 catalog rows in feed order.
        active: (B,) bool; inactive users are skipped (their outputs stay zero).
        seed: kernel seed.

    Returns:
        Dict of output arrays: seen, watch_ratio, watch_time_s, duration_s (B, K), flags
        (B, K, 8), session_ended, return_gap_h, churned, new_day_active (B,), and latent
        (B, K): the quantile model's latent draw of each seen video (zero otherwise).
    """
    B, K = slate.shape
    out = {
        "seen": np.zeros((B, K), np.bool_),
        "watch_ratio": np.zeros((B, K), np.float32),
        "watch_time_s": np.zeros((B, K), np.float32),
        "duration_s": np.zeros((B, K), np.float32),
        "flags": np.zeros((B, K, N_FLAGS), np.bool_),
        "session_ended": np.zeros(B, np.bool_),
        "return_gap_h": np.zeros(B, np.float32),
        "churned": np.zeros(B, np.bool_),
        "new_day_active": np.zeros(B, np.bool_),
        "latent": np.zeros((B, K), np.float32),
    }
    c, u = sim.catalog, sim.users
    knots, values = sim.watch_ratio_table if sim.watch_ratio_table is not None else (_NO_TABLE, _NO_TABLE)
    _respond_kernel(
        slate, active, seed, sim.params,
        c.true_vec, c.emb, c.topic, c.duration_s, c.quality, c.creator, c.sound, c.sound_level,
        u.interest_vec, u.interest_off, u.session_vec, u.fatigue, u.avoid, u.sat, u.sat_long, u.activity,
        u.coverage, u.follows, u.follow_ptr, u.hist_item, u.hist_ratio, u.hist_like, u.hist_skip, u.hist_ptr,
        u.seen, u.seen_ptr, u.engaged, u.engaged_ptr, u.u_hat, u.p_hat,
        u.clock_h, u.decay_clock_h, u.start_hour, u.last_gap_h,
        u.session_requests, u.session_videos, u.session_time_s, u.sessions, u.days_active, u.last_active_day,
        c.duration_bucket, c.eng_offset, u.eng_offset, knots, values,
        out["seen"], out["watch_ratio"], out["watch_time_s"], out["duration_s"], out["flags"],
        out["session_ended"], out["return_gap_h"], out["churned"], out["new_day_active"], out["latent"],
    )
    return out
