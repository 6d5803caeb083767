"""Hidden user state, batched over B user slots, and the sampling of new (cold-start) users.

A user has hidden long-term interests (a sparse mixture of niches drawn from a taste
tribe), a session interest that drifts toward what they engage with, per-topic fatigue,
an avoidance profile fed by "not interested", satisfaction, an activity level, and
context (region, language, device, local hour). New users may pick sign-up interests:
a noisy subset of their true topics. The platform's estimate of the user (``u_hat``,
``p_hat``) is built only from what it observes and lives here for convenience; it is
never read from the hidden fields.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from envs.catalog import N_ENGAGEMENT_OFFSETS, Catalog
from envs.config import EnvConfig

__all__ = ["UserProfiles", "UserState"]


class UserProfiles(NamedTuple):
    """Known users to put into slots (a data-driven population): one row per user.

    Shapes use n users, m = max_interests, d = latent_dim, T topics. Unused interest
    components have offset -9.
    """

    interest_vec: np.ndarray  # (n, m, d) float32
    interest_off: np.ndarray  # (n, m) float32
    interest_topic: np.ndarray  # (n, m) int32
    activity: np.ndarray  # (n,) float32
    region: np.ndarray  # (n,) int32
    language: np.ndarray  # (n,) int32
    device: np.ndarray  # (n,) int32
    start_hour: np.ndarray  # (n,) float64, local hour of the first session, [0, 24)
    signup: np.ndarray  # (n, T) float32 sign-up topics (0/1)
    u_hat: np.ndarray  # (n, d) float32 the platform's first estimate
    p_hat: np.ndarray  # (n, T) float32
    eng_offset: np.ndarray  # (n, N_ENGAGEMENT_OFFSETS) float32 engagement log-odds offsets

FOLLOW_SLOTS = 16  # followed creators remembered per user (a ring)


class UserState:
    """Arrays of the user slots. Shapes use B slots, m = max_interests, d, T topics."""

    def __init__(self, cfg: EnvConfig, n_slots: int, catalog: Catalog, rng: np.random.Generator) -> None:
        self.cfg = cfg
        B, d, T, m = n_slots, cfg.catalog.latent_dim, cfg.catalog.n_topics, cfg.user.max_interests
        M, S, E = cfg.observation.history_len, max(1, cfg.retrieval.seen_filter_len), cfg.retrieval.recent_engaged_len
        f32, i32 = np.float32, np.int32
        self.n_slots = B
        # Taste tribes: fixed for the env's life; each user is drawn from one.
        self.tribe_topics = rng.dirichlet(np.full(T, cfg.user.tribe_concentration), cfg.user.n_tribes)
        self.tribe_weight = rng.dirichlet(np.full(cfg.user.n_tribes, 2.0))
        # Platform side: a sign-up topic maps to the mean of that topic's cluster centroids.
        G = cfg.catalog.n_niches
        topic_emb = np.zeros((T, d))
        np.add.at(topic_emb, catalog.niche_topic[:G], catalog.cluster_centroid)
        self.topic_emb = (topic_emb / np.maximum(np.linalg.norm(topic_emb, axis=1, keepdims=True), 1e-8)).astype(f32)
        self._catalog = catalog

        # Hidden state.
        self.interest_vec = np.zeros((B, m, d), f32)
        self.interest_off = np.full((B, m), -9.0, f32)  # -9: unused component
        self.interest_topic = np.zeros((B, m), i32)
        self.tribe = np.zeros(B, i32)
        self.session_vec = np.zeros((B, d), f32)
        self.fatigue = np.zeros((B, T), f32)
        self.avoid = np.zeros((B, T), f32)
        self.sat = np.zeros(B, f32)
        self.sat_long = np.zeros(B, f32)
        self.activity = np.ones(B, f32)
        self.coverage = np.zeros((B, m), f32)
        # Per-user engagement log-odds offsets (envs.response.ENGAGEMENT_OFFSETS order); zero
        # for synthetic users, fitted propensities for the users of a data-driven world.
        self.eng_offset = np.zeros((B, N_ENGAGEMENT_OFFSETS), f32)
        # Observable context and history.
        self.region = np.zeros(B, i32)
        self.language = np.zeros(B, i32)
        self.device = np.zeros(B, i32)
        self.start_hour = np.zeros(B, np.float64)
        self.signup = np.zeros((B, T), f32)
        self.follows = np.full((B, FOLLOW_SLOTS), -1, i32)
        self.follow_ptr = np.zeros(B, np.int64)
        self.hist_item = np.full((B, M), -1, i32)
        self.hist_ratio = np.zeros((B, M), f32)
        self.hist_like = np.zeros((B, M), f32)
        self.hist_skip = np.zeros((B, M), f32)
        self.hist_ptr = np.zeros(B, np.int64)
        self.seen = np.full((B, S), -1, i32)
        self.seen_ptr = np.zeros(B, np.int64)
        self.engaged = np.full((B, E), -1, i32)
        self.engaged_ptr = np.zeros(B, np.int64)
        # Platform estimate of the user.
        self.u_hat = np.zeros((B, d), f32)
        self.p_hat = np.zeros((B, T), f32)
        # Clocks and counters.
        self.clock_h = np.zeros(B, np.float64)
        self.decay_clock_h = np.zeros(B, np.float64)
        self.last_gap_h = np.zeros(B, f32)
        self.session_requests = np.zeros(B, i32)
        self.session_videos = np.zeros(B, i32)
        self.session_time_s = np.zeros(B, f32)
        self.sessions = np.zeros(B, i32)
        self.days_active = np.zeros(B, i32)
        self.last_active_day = np.zeros(B, np.int64)

    def spawn(self, slots: np.ndarray, rng: np.random.Generator) -> None:
        """Put fresh cold-start users into `slots` ((n,) int array of slot indices)."""
        n = len(slots)
        if n == 0:
            return
        cfg, ucfg = self.cfg, self.cfg.user
        cat = self._catalog
        m, T = ucfg.max_interests, cfg.catalog.n_topics
        f32 = np.float32
        tribe = rng.choice(ucfg.n_tribes, n, p=self.tribe_weight)
        n_int = 1 + rng.binomial(m - 1, 0.5, n) if m > 1 else np.ones(n, np.int64)
        # Components: topic from the tribe's mixture, then a niche of that topic.
        cum = np.cumsum(self.tribe_topics[tribe], axis=1)
        u = rng.random((n, m, 1))
        topics = np.minimum((u > cum[:, None, :]).sum(axis=2), T - 1)
        niches = topics * cfg.catalog.niches_per_topic + rng.integers(0, cfg.catalog.niches_per_topic, (n, m))
        vec = cat.niche_centroid[niches] + rng.standard_normal((n, m, cfg.catalog.latent_dim)) * (
            0.25 / np.sqrt(cfg.catalog.latent_dim)
        )
        vec /= np.linalg.norm(vec, axis=2, keepdims=True)
        k = np.arange(m)[None, :]
        off = np.where(k < n_int[:, None], -ucfg.secondary_interest_offset * k, -9.0)
        self.interest_vec[slots] = vec
        self.interest_off[slots] = off
        self.interest_topic[slots] = topics
        self.tribe[slots] = tribe
        sig = ucfg.activity_sigma
        self.activity[slots] = np.exp(sig * rng.standard_normal(n) - 0.5 * sig * sig)
        self.eng_offset[slots] = 0.0
        region = rng.integers(0, cfg.catalog.n_regions, n)
        self.region[slots] = region
        same = rng.random(n) < 0.8  # most users speak their region's main language
        self.language[slots] = np.where(same, region % ucfg.n_languages, rng.integers(0, ucfg.n_languages, n))
        self.device[slots] = rng.integers(0, ucfg.n_devices, n)
        self.start_hour[slots] = 7.0 + 17.0 * rng.random(n)
        # Sign-up interests: each true topic with prob `signup_recall`, plus noise topics.
        signs = rng.random(n) < ucfg.signup_prob
        signup = np.zeros((n, T), f32)
        valid = (off > -9.0) & (rng.random((n, m)) < ucfg.signup_recall)
        rows = np.repeat(np.arange(n), m)
        signup[rows[valid.ravel()], topics.ravel()[valid.ravel()]] = 1.0
        for _ in range(ucfg.signup_noise_topics):
            signup[np.arange(n), rng.integers(0, T, n)] = 1.0
        signup[~signs] = 0.0
        self.signup[slots] = signup
        # The platform's first estimate comes from the sign-up alone (nothing for the rest).
        u0 = signup @ self.topic_emb
        norm = np.linalg.norm(u0, axis=1, keepdims=True)
        self.u_hat[slots] = np.where(norm > 0, 0.5 * u0 / np.maximum(norm, 1e-8), 0.0)
        self.p_hat[slots] = 0.3 * signup
        self._reset_slots(slots)

    def spawn_known(self, slots: np.ndarray, profiles: UserProfiles) -> None:
        """Put known users (one row of `profiles` per slot, in order) into `slots`.

        The hidden interests, activity, context and engagement propensities come from the
        profiles; the session state and history start empty, as for a new user.
        """
        if len(slots) == 0:
            return
        if len(profiles.activity) != len(slots):
            raise ValueError(f"{len(slots)} slots but {len(profiles.activity)} user profiles")
        self.interest_vec[slots] = profiles.interest_vec
        self.interest_off[slots] = profiles.interest_off
        self.interest_topic[slots] = profiles.interest_topic
        self.tribe[slots] = 0
        self.activity[slots] = profiles.activity
        self.eng_offset[slots] = profiles.eng_offset
        self.region[slots] = profiles.region
        self.language[slots] = profiles.language
        self.device[slots] = profiles.device
        self.start_hour[slots] = profiles.start_hour
        self.signup[slots] = profiles.signup
        self.u_hat[slots] = profiles.u_hat
        self.p_hat[slots] = profiles.p_hat
        self._reset_slots(slots)

    def _reset_slots(self, slots: np.ndarray) -> None:
        """Empty session state, history and clocks for the users just put into `slots`."""
        neutral = self.cfg.response.satisfaction_neutral
        self.session_vec[slots] = 0.0
        self.fatigue[slots] = 0.0
        self.avoid[slots] = 0.0
        self.sat[slots] = neutral
        self.sat_long[slots] = neutral
        self.coverage[slots] = 0.0
        self.follows[slots] = -1
        self.follow_ptr[slots] = 0
        self.hist_item[slots] = -1
        self.hist_ratio[slots] = 0.0
        self.hist_like[slots] = 0.0
        self.hist_skip[slots] = 0.0
        self.hist_ptr[slots] = 0
        self.seen[slots] = -1
        self.seen_ptr[slots] = 0
        self.engaged[slots] = -1
        self.engaged_ptr[slots] = 0
        self.clock_h[slots] = 0.0
        self.decay_clock_h[slots] = 0.0
        self.last_gap_h[slots] = 0.0
        self.session_requests[slots] = 0
        self.session_videos[slots] = 0
        self.session_time_s[slots] = 0.0
        self.sessions[slots] = 0
        self.days_active[slots] = 1  # the first session opens day 0
        self.last_active_day[slots] = np.floor(self.start_hour[slots] / 24.0).astype(np.int64)

    def local_hour(self) -> np.ndarray:
        """(B,) float64 local hour of day of each user, in [0, 24)."""
        return (self.start_hour + self.clock_h) % 24.0

    def true_interest(self) -> np.ndarray:
        """(B, d) unit mean of each user's interest components (for diagnostics and oracles)."""
        w = np.where(self.interest_off > -9.0, np.exp(4.0 * self.interest_off), 0.0)
        v = (w[:, :, None] * self.interest_vec).sum(axis=1)
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-8)
