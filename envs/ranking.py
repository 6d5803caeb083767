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
``candidate_feature_names(cfg)``. The features come from :func:`envs.features.features_kernel`,
the one feature builder that serving applies to raw records too.
"""

from __future__ import annotations

import numpy as np

from envs.config import EnvConfig
from envs.features import CAND_VALUE, cand_index, candidate_feature_names, features_kernel, user_feature_names

__all__ = [
    "CAND_VALUE",
    "build_observation",
    "cand_index",
    "candidate_feature_names",
    "ranker_params",
    "user_feature_names",
]

_NO_RANKER_INPUT = np.zeros((1, 1, 7), np.float32)  # the simulator's ranker computes every prediction


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
    features_kernel(
        cand, src, sim.ranker_params, cfg.horizon_days,
        c.item_table, c.cfg.latent_dim, c.col_comp_logit, c.col_topic, c.col_creator,
        u.u_hat, u.p_hat, u.follows, u.engaged, u.engaged_ptr, u.hist_item, u.hist_ratio, u.hist_like, u.hist_skip, u.hist_ptr,
        u.region, u.language, u.device, u.signup, u.local_hour(), u.clock_h, u.session_requests,
        u.session_time_s, u.session_videos, u.sessions, u.last_gap_h, row_active,
        _NO_RANKER_INPUT, np.zeros(B, np.bool_), out_cand, out_user,
    )
    return out_user, out_cand

