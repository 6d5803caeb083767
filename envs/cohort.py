"""Run one seeded user cohort through the horizon under a policy, and measure it per user.

Every user of the cohort gets one slot for their whole episode (no autoreset), so the
same seed gives the same cohort, world and trajectories under any policy up to the point
where the policies' slates differ. The metrics are the evaluation objective, computed from
realised behaviour by :class:`reward.metrics.CohortMetrics`, never from the reward:

- ``days_active``: distinct local days with at least one session;
- ``next_day_return``: share of active days (before the last day) followed by an active day;
- ``sessions``, ``watch_time_s``, ``videos``, engagement counts per user;
- ``churned``; ``engagement_per_request``: realised engagement value per feed request
  (fixed weights, whatever reward a policy was trained on);
- ``intra_slate_diversity``: mean pairwise ``1 - cos`` of the content embeddings (the
  candidates' embedding columns) of each slate shown, averaged over the user's requests;
- ``new_video_exposure``: share of the user's seen videos uploaded less than
  ``reward.metrics.FRESH_AGE_H`` (24) hours before they were shown, by the world clock.

Cohort-level figures (:attr:`CohortResult.cohort`): ``catalog_coverage``, the distinct
videos seen by the cohort over the videos the catalog held during the run (its
``catalog.n_items`` at the start plus the uploads since), and ``creator_coverage``, the
distinct creators seen over all creators. New uploads reuse the catalog rows of old
videos, so a video is identified by its row and how many uploads that row has had.
:attr:`CohortResult.active_days` gives retention by day.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from envs.config import EnvConfig
from envs.core import FeedSimulator
from envs.feed_env import validate_slates
from reward.metrics import FRESH_AGE_H, CohortMetrics, coverage

__all__ = ["CohortResult", "run_cohort"]

Policy = Callable[[Mapping[str, np.ndarray]], np.ndarray]


@dataclass
class CohortResult:
    """Per-user metrics of a cohort: every array has shape (n_users,)."""

    per_user: dict[str, np.ndarray]
    steps: int
    attributes: dict[str, np.ndarray] = field(default_factory=dict)
    """Per-user descriptors of the cohort (not outcomes): n_interests, signup_coverage."""
    est_similarity: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    """(checkpoints, n_users) cosine of the platform estimate to the truth after 0, c, 2c.. videos."""
    cohort: dict[str, float] = field(default_factory=dict)
    """Cohort-level metrics (one number per cohort): catalog_coverage, creator_coverage."""
    active_days: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.bool_))
    """(n_users, ceil(horizon_days)) bool: user u had a session on their local day d."""
    shown_videos: tuple[np.ndarray, np.ndarray] = field(
        default_factory=lambda: (np.zeros(0, np.int64), np.zeros(0, np.int64))
    )
    """Distinct (user, video id) pairs seen, (P,) int64 each, sorted by video then user
    (for bootstrap intervals of ``catalog_coverage``)."""
    shown_creators: tuple[np.ndarray, np.ndarray] = field(
        default_factory=lambda: (np.zeros(0, np.int64), np.zeros(0, np.int64))
    )
    """Distinct (user, creator) pairs seen, sorted by creator then user."""
    n_videos: int = 0
    """Denominator of ``catalog_coverage``: videos the catalog held during the run
    (``catalog.n_items`` plus the uploads while the cohort ran)."""
    n_creators: int = 0
    """Denominator of ``creator_coverage``: creators in the catalog."""

    def mean(self, name: str) -> float:
        """Cohort mean of one metric."""
        return float(np.mean(self.per_user[name]))

    @property
    def retention_by_day(self) -> np.ndarray:
        """(ceil(horizon_days),) share of the cohort active on each day d = 0, 1, ..."""
        return self.active_days.mean(axis=0)


def run_cohort(
    cfg: EnvConfig,
    policy: Policy | Callable[..., np.ndarray],
    n_users: int,
    seed: int,
    *,
    similarity_every: int = 0,
    similarity_until: int = 0,
    policy_needs_sim: bool = False,
    max_steps: int = 100_000,
) -> CohortResult:
    """Simulate `n_users` users from `seed` until each churns or reaches the horizon.

    Args:
        cfg: env config.
        policy: maps the batched observation dict to (n_users, K) slates; called as
            ``policy(obs, sim)`` when `policy_needs_sim` (oracles read hidden state:
            ``sim.users``, ``sim.catalog``, and ``sim.obs``, the full
            :class:`~envs.core.Observation` that ``obs`` was taken from, with the
            candidates' catalog rows in ``sim.obs.item_ids``).
        n_users: cohort size (all users run in parallel, one slot each).
        seed: seeds the world and the cohort.
        similarity_every: if > 0, record the estimate-truth cosine every this many videos.
        similarity_until: last video count to record the cosine at.
        max_steps: safety bound on the number of batched steps.
    """
    sim = FeedSimulator(cfg, n_users)
    sim.build_world(np.random.default_rng(seed))
    everyone = np.ones(n_users, np.bool_)
    sim.spawn(everyone)
    obs = sim.observe()
    attributes = _attributes(sim)
    metrics = CohortMetrics(n_users, cfg.horizon_days, sim.users.start_hour)
    alive = everyone.copy()
    n_checks = similarity_until // similarity_every + 1 if similarity_every > 0 else 0
    sims = np.full((n_checks, n_users), np.nan)
    if n_checks:
        sims[0] = sim.estimate_similarity()
    cat = sim.catalog
    d = cfg.catalog.latent_dim
    # Uploads overwrite catalog rows; counting each row's uploads tells videos apart.
    generation = np.zeros(cat.cfg.n_items, np.int64)
    upload_h = cat.upload_h.copy()
    steps = 0
    while alive.any() and steps < max_steps:
        slates = policy(obs.as_dict(), sim) if policy_needs_sim else policy(obs.as_dict())
        slates = validate_slates(slates, obs.mask, cfg.slate_size, rows=alive)
        slates = np.where(alive[:, None], slates, np.arange(cfg.slate_size)[None, :])
        videos_before = metrics.videos.copy()
        # What the slates show, read before the step's uploads replace rows.
        rows = np.maximum(np.take_along_axis(obs.item_ids, slates, axis=1), 0)
        slate_emb = obs.candidates[np.arange(n_users)[:, None], slates, :d]
        fresh = (cat.now_h - cat.upload_h[rows]) < FRESH_AGE_H
        video_ids = generation[rows] * cat.cfg.n_items + rows
        creators = cat.creator[rows]
        out = sim.step(slates, alive)
        steps += 1
        # The float64 clock places day boundaries exactly (the feedback carries a float32 copy).
        metrics.update(out.feedback, alive, clock_h=sim.users.clock_h)
        metrics.update_exposure(alive, slate_emb, out.feedback.seen, fresh, video_ids, creators)
        replaced = cat.upload_h != upload_h
        if replaced.any():
            generation[replaced] += 1
            upload_h[replaced] = cat.upload_h[replaced]
        if n_checks:
            total = metrics.videos
            for c in range(1, n_checks):
                mark = c * similarity_every
                hit = (videos_before < mark) & (total >= mark) & alive
                if hit.any():
                    sims[c, hit] = sim.estimate_similarity()[hit]
        alive &= ~(out.terminated | out.truncated)
        obs = sim.observe(alive)
    per_user = metrics.finalize()
    shown_videos, shown_creators = metrics.shown_pairs()
    # Every video that was in the catalog at some point of the run could have been shown.
    n_videos, n_creators = cat.cfg.n_items + int(generation.sum()), cat.n_creators
    return CohortResult(
        per_user=per_user,
        steps=steps,
        attributes=attributes,
        est_similarity=sims,
        cohort={
            "catalog_coverage": coverage(shown_videos[1], n_videos),
            "creator_coverage": coverage(shown_creators[1], n_creators),
        },
        active_days=metrics.active_days(),
        shown_videos=shown_videos,
        shown_creators=shown_creators,
        n_videos=n_videos,
        n_creators=n_creators,
    )


def _attributes(sim: FeedSimulator) -> dict[str, np.ndarray]:
    u = sim.users
    used = u.interest_off > -9.0
    n_int = used.sum(axis=1)
    rows = np.arange(u.n_slots)[:, None]
    in_signup = u.signup[rows, u.interest_topic] > 0
    return {
        "n_interests": n_int.astype(np.float64),
        "has_signup": (u.signup.sum(axis=1) > 0).astype(np.float64),
        "signup_coverage": (in_signup & used).sum(axis=1) / np.maximum(n_int, 1),
        "activity": u.activity.astype(np.float64),
    }
