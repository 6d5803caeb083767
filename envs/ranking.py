"""The multi-task ranker and the observation a re-ranker sees.

The ranker predicts, for every candidate, pCompletion, pLike, pShare, pComment, pFollow
and the expected watch ratio from the platform's estimate only (estimated affinity
<u_hat, embedding>, estimated topic preference, the video's observed completion odds,
whether the user follows the creator), and a value score: the weighted sum of the
predictions with weights from :class:`envs.config.RankerConfig`.

The observation is what a production re-ranker has: user features (context, place in
the session, history summary, sign-up interests, the platform's estimate) and N x F
candidate features, plus a validity mask. Hidden user state never enters it.
Feature names, in order, are ``user_feature_names(cfg)`` and
``candidate_feature_names(cfg)``; serving builds features with the same kernel.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from envs._rng import fast_exp
from envs.config import EnvConfig

__all__ = [
    "CAND_VALUE",
    "candidate_feature_names",
    "build_observation",
    "user_feature_names",
]

# Offsets after the d embedding columns of the candidate block.
_CAND_TAIL = (
    "p_completion", "p_like", "p_share", "p_comment", "p_follow", "expected_watch_ratio",
    "value_score",
    # per-video statistics (catalog.ITEM_STATIC_NAMES order)
    "log_impressions", "completion_rate", "engagement_rate", "trend_level",
    "log_age_h", "log_creator_followers", "log_duration_s",
    # user x video
    "follows_creator", "history_similarity", "recent_engaged_similarity", "topic_preference",
    "estimated_affinity",
    # categorical: the retrieval source id (envs.retrieval.SOURCE_NAMES); embed it
    "source",
)
_N_TAIL = len(_CAND_TAIL)


def candidate_feature_names(cfg: EnvConfig) -> tuple[str, ...]:
    """Names of the F candidate features, in column order."""
    d = cfg.catalog.latent_dim
    return (
        tuple(f"emb_{j}" for j in range(d))
        + _CAND_TAIL
    )


def user_feature_names(cfg: EnvConfig) -> tuple[str, ...]:
    """Names of the U user features, in column order."""
    c, u = cfg.catalog, cfg.user
    d, T = c.latent_dim, c.n_topics
    return (
        ("hour_sin", "hour_cos", "days_since_first_visit", "session_requests", "session_minutes",
         "session_videos", "log_sessions", "last_gap_days", "has_history", "history_fill")
        + tuple(f"region_{r}" for r in range(c.n_regions))
        + tuple(f"language_{r}" for r in range(u.n_languages))
        + tuple(f"device_{r}" for r in range(u.n_devices))
        + tuple(f"signup_topic_{t}" for t in range(T))
        + tuple(f"estimate_{j}" for j in range(d))
        + tuple(f"history_emb_{j}" for j in range(d))
        + ("history_watch_ratio", "history_like_rate", "history_skip_rate")
        + tuple(f"topic_estimate_{t}" for t in range(T))
    )


def cand_index(cfg: EnvConfig, name: str) -> int:
    """Column of candidate feature `name`."""
    return candidate_feature_names(cfg).index(name)


#: Offset of the value score after the embedding columns (column = latent_dim + CAND_VALUE).
CAND_VALUE = _CAND_TAIL.index("value_score")


_E_LIKE = np.exp(3.7)  # like head: sigmoid(-3.7 + 0.9 * base)
_E_SHARE = np.exp(6.2)  # share and follow heads: sigmoid(-6.2 + 0.9 * base)
_E_COMMENT = np.exp(5.6)  # comment head: sigmoid(-5.6 + 0.9 * base)


@nb.njit(parallel=True, fastmath=True, cache=True)
def _observe_kernel(
    cand, cand_src, rk, horizon_days,
    table, col_static, col_comp, col_topic, col_creator,
    u_hat, p_hat, follows, engaged, engaged_ptr, hist_item, hist_ratio, hist_like, hist_skip, hist_ptr,
    region, language, device, signup, start_hour, clock_h, session_requests, session_time_s,
    session_videos, sessions, last_gap_h, row_active,
    out_cand, out_user,
):
    B, N = cand.shape
    d = u_hat.shape[1]
    T = p_hat.shape[1]
    Fo = follows.shape[1]
    M = hist_item.shape[1]
    E = engaged.shape[1]
    # Widths of the one-hot blocks are passed through rk's tail.
    n_reg = np.int64(rk[9])
    n_lang = np.int64(rk[10])
    n_dev = np.int64(rk[11])
    for b in nb.prange(B):
        if not row_active[b]:
            continue  # no request in this slot: its rows stay zero
        # ---- user summary
        un = 0.0
        for j in range(d):
            un += u_hat[b, j] * u_hat[b, j]
        un = np.sqrt(un)
        conf = min(1.0, 2.0 * un)
        inv = 1.0 / un if un > 1e-6 else 0.0
        hmean = np.zeros(d, np.float32)
        cnt = min(hist_ptr[b], M)
        wsum = 0.0
        r_sum = 0.0
        l_sum = 0.0
        k_sum = 0.0
        for h in range(cnt):
            it = hist_item[b, h]
            w = hist_ratio[b, h]
            r_sum += w
            l_sum += hist_like[b, h]
            k_sum += hist_skip[b, h]
            w = min(w, 1.5) + 0.05
            wsum += w
            for j in range(d):
                hmean[j] += w * table[it, j]
        hn = 0.0
        for j in range(d):
            hn += hmean[j] * hmean[j]
        hn = np.sqrt(hn)
        if hn > 1e-6:
            for j in range(d):
                hmean[j] /= hn
        e_loc = np.empty(d, np.float32)
        u_loc = np.empty(d, np.float32)
        for j in range(d):
            u_loc[j] = u_hat[b, j]
        n_eng = min(E, engaged_ptr[b])
        eng_emb = np.empty((E, d), np.float32)
        for r in range(n_eng):
            for j in range(d):
                eng_emb[r, j] = table[engaged[b, r], j]
        # ---- user features
        o = out_user[b]
        for j in range(o.shape[0]):
            o[j] = 0.0
        hour = (start_hour[b] + clock_h[b]) % 24.0
        o[0] = np.sin(hour * 0.2617993877991494)
        o[1] = np.cos(hour * 0.2617993877991494)
        o[2] = clock_h[b] / 24.0 / horizon_days
        o[3] = session_requests[b] / 10.0
        o[4] = session_time_s[b] / 1800.0
        o[5] = session_videos[b] / 50.0
        o[6] = np.log1p(sessions[b]) / 3.0
        o[7] = last_gap_h[b] / 24.0
        o[8] = 1.0 if cnt > 0 else 0.0
        o[9] = cnt / M
        p = 10
        o[p + region[b]] = 1.0
        p += n_reg
        o[p + language[b]] = 1.0
        p += n_lang
        o[p + device[b]] = 1.0
        p += n_dev
        for t in range(T):
            o[p + t] = signup[b, t]
        p += T
        for j in range(d):
            o[p + j] = u_hat[b, j]
        p += d
        for j in range(d):
            o[p + j] = hmean[j]
        p += d
        if cnt > 0:
            o[p] = r_sum / cnt
            o[p + 1] = l_sum / cnt
            o[p + 2] = k_sum / cnt
        p += 3
        for t in range(T):
            o[p + t] = p_hat[b, t]
        # ---- candidates
        for n in range(N):
            it = cand[b, n]
            row = out_cand[b, n]
            if it < 0:
                for j in range(row.shape[0]):
                    row[j] = 0.0
                continue
            item = table[it]  # the one gather: embedding, statistics, ids
            for j in range(d):
                e_loc[j] = item[j]  # contiguous copy: the dot products below vectorise
            est = 0.0
            sim = 0.0
            for j in range(d):
                e = e_loc[j]
                row[j] = e
                est += u_loc[j] * e
                sim += hmean[j] * e
            est *= inv
            # Attention over history: the closest recently engaged video.
            rec = 0.0
            for r in range(n_eng):
                acc = 0.0
                for j in range(d):
                    acc += eng_emb[r, j] * e_loc[j]
                rec = max(rec, acc)
            cr = np.int64(item[col_creator])
            fol = 0.0
            for f in range(Fo):
                fc = follows[b, f]
                if fc < 0:
                    break
                if fc == cr:
                    fol = 1.0
                    break
            tp = p_hat[b, np.int64(item[col_topic])]
            base = (rk[6] * est * conf + rk[7] * item[col_comp] + rk[8] * tp + rk[12] * rec * rec
                    + 0.5 * fol)
            # Two exponentials serve all five heads: sigmoid(c + 0.9 base) = 1 / (1 + e^-c t).
            pc = 1.0 / (1.0 + fast_exp(-base))
            t = fast_exp(-0.9 * base)
            pl = 1.0 / (1.0 + _E_LIKE * t)
            ps = 1.0 / (1.0 + _E_SHARE * t)
            pm = 1.0 / (1.0 + _E_COMMENT * t)
            pf = (1.0 - fol) / (1.0 + _E_SHARE * t)
            er = 0.15 + pc * (1.0 + item[col_static + 7])
            row[d] = pc
            row[d + 1] = pl
            row[d + 2] = ps
            row[d + 3] = pm
            row[d + 4] = pf
            row[d + 5] = er
            row[d + 6] = rk[0] * pc + rk[1] * er + rk[2] * pl + rk[3] * ps + rk[4] * pm + rk[5] * pf
            for j in range(7):
                row[d + 7 + j] = item[col_static + j]
            row[d + 14] = fol
            row[d + 15] = sim
            row[d + 16] = rec
            row[d + 17] = tp
            row[d + 18] = est
            row[d + 19] = cand_src[b, n]


def ranker_params(cfg: EnvConfig) -> np.ndarray:
    """Kernel parameters: value weights, ranker slopes, one-hot widths."""
    r = cfg.ranker
    return np.array(
        [r.w_completion, r.w_watch_ratio, r.w_like, r.w_share, r.w_comment, r.w_follow,
         r.affinity_slope, r.prior_weight, r.topic_weight,
         cfg.catalog.n_regions, cfg.user.n_languages, cfg.user.n_devices, r.recent_weight],
        dtype=np.float64,
    )


def build_observation(sim, cand: np.ndarray, src: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """User (B, U) and candidate (B, N, F) float32 features of the simulator's users.

    Padding candidates (row -1) get all-zero feature rows; a slot without a request (all
    its candidates -1: a finished user in a cohort) gets all-zero user and candidate rows
    without being computed (``np.zeros`` memory is not touched until written).
    """
    cfg = sim.cfg
    c, u = sim.catalog, sim.users
    B, N = cand.shape
    out_cand = np.zeros((B, N, sim.n_cand_features), np.float32)
    out_user = np.zeros((B, sim.n_user_features), np.float32)
    row_active = (cand >= 0).any(axis=1)
    _observe_kernel(
        cand, src, sim.ranker_params, cfg.horizon_days,
        c.item_table, c.cfg.latent_dim, c.col_comp_logit, c.col_topic, c.col_creator,
        u.u_hat, u.p_hat, u.follows, u.engaged, u.engaged_ptr, u.hist_item, u.hist_ratio, u.hist_like, u.hist_skip, u.hist_ptr,
        u.region, u.language, u.device, u.signup, u.start_hour, u.clock_h, u.session_requests,
        u.session_time_s, u.session_videos, u.sessions, u.last_gap_h, row_active,
        out_cand, out_user,
    )
    return out_user, out_cand

