"""Run one seeded user cohort through the horizon under a policy, and measure it per user.

Every user of the cohort gets one slot for their whole episode (no autoreset), so the
same seed gives the same cohort, world and trajectories under any policy up to the point
where the policies' slates differ. The metrics are the evaluation objective, computed from
realised behaviour, never from the reward:

- ``days_active``: distinct local days with at least one session;
- ``next_day_return``: share of active days (before the last day) followed by an active day;
- ``sessions``, ``watch_time_s``, ``videos``, engagement counts per user;
- ``churned``; ``engagement_per_request``: realised engagement value per feed request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from envs.config import EnvConfig
from envs.core import FeedSimulator
from envs.feed_env import validate_slates
from reward.config import RewardConfig
from reward.engagement import engagement_terms

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

    def mean(self, name: str) -> float:
        """Cohort mean of one metric."""
        return float(np.mean(self.per_user[name]))


def run_cohort(
    cfg: EnvConfig,
    policy: Policy | Callable[..., np.ndarray],
    n_users: int,
    seed: int,
    *,
    reward_config: RewardConfig | None = None,
    similarity_every: int = 0,
    similarity_until: int = 0,
    policy_needs_sim: bool = False,
    max_steps: int = 100_000,
) -> CohortResult:
    """Simulate `n_users` users from `seed` until each churns or reaches the horizon.

    Args:
        cfg: env config.
        policy: maps the batched observation dict to (n_users, K) slates; called as
            ``policy(obs, sim)`` when `policy_needs_sim` (oracles read hidden state).
        n_users: cohort size (all users run in parallel, one slot each).
        seed: seeds the world and the cohort.
        reward_config: weights of the realised engagement value per request.
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
    rcfg = reward_config or RewardConfig()
    n_days = int(np.ceil(cfg.horizon_days)) + 2
    active_day = np.zeros((n_users, n_days), np.bool_)
    active_day[:, 0] = True  # the first session opens day 0
    acc = {k: np.zeros(n_users, np.float64) for k in (
        "watch_time_s", "videos", "watch_ratio_sum", "completions", "fast_skips", "likes", "shares",
        "comments", "follows", "not_interested", "requests", "engagement",
    )}
    churned = np.zeros(n_users, np.bool_)
    alive = everyone.copy()
    n_checks = similarity_until // similarity_every + 1 if similarity_every > 0 else 0
    sims = np.full((n_checks, n_users), np.nan)
    if n_checks:
        sims[0] = sim.estimate_similarity()
    rows = np.arange(n_users)
    steps = 0
    while alive.any() and steps < max_steps:
        slates = policy(obs.as_dict(), sim) if policy_needs_sim else policy(obs.as_dict())
        slates = validate_slates(slates, obs.mask, cfg.slate_size, rows=alive)
        slates = np.where(alive[:, None], slates, np.arange(cfg.slate_size)[None, :])
        videos_before = acc["videos"].copy()
        out = sim.step(slates, alive)
        fb = out.feedback
        steps += 1
        n_seen = fb.seen.sum(axis=1)
        acc["requests"] += alive
        acc["videos"] += n_seen
        acc["watch_time_s"] += fb.watch_time_s.sum(axis=1)
        acc["watch_ratio_sum"] += fb.watch_ratio.sum(axis=1)
        for name, sig in (("completions", fb.completed), ("fast_skips", fb.fast_skip), ("likes", fb.like),
                          ("shares", fb.share), ("comments", fb.comment), ("follows", fb.follow),
                          ("not_interested", fb.not_interested)):
            acc[name] += sig.sum(axis=1)
        acc["engagement"] += sum(engagement_terms(fb, rcfg).values())
        # A new session after a session end: mark its local day.
        back = fb.session_ended & ~fb.churned & alive
        if back.any():
            u = sim.users
            day = np.floor((u.start_hour + u.clock_h) / 24.0).astype(np.int64)
            inside = back & (u.clock_h < cfg.horizon_h)
            active_day[rows[inside], np.minimum(day[inside], n_days - 1)] = True
        if n_checks:
            total = acc["videos"]
            for c in range(1, n_checks):
                mark = c * similarity_every
                hit = (videos_before < mark) & (total >= mark) & alive
                if hit.any():
                    sims[c, hit] = sim.estimate_similarity()[hit]
        churned |= out.terminated
        alive &= ~(out.terminated | out.truncated)
        obs = sim.observe(alive)
    horizon_days = int(np.ceil(cfg.horizon_days))
    days = active_day[:, :horizon_days]
    both = (days[:, :-1] & days[:, 1:]).sum(axis=1)
    base = days[:, :-1].sum(axis=1)
    videos = np.maximum(acc["videos"], 1)
    per_user = {
        "days_active": days.sum(axis=1).astype(np.float64),
        "next_day_return": np.where(base > 0, both / np.maximum(base, 1), 0.0),
        "sessions": sim.users.sessions.astype(np.float64),
        "watch_time_s": acc["watch_time_s"],
        "videos": acc["videos"],
        "requests": acc["requests"],
        "mean_watch_ratio": acc["watch_ratio_sum"] / videos,
        "completion_rate": acc["completions"] / videos,
        "fast_skip_rate": acc["fast_skips"] / videos,
        "likes": acc["likes"],
        "shares": acc["shares"],
        "comments": acc["comments"],
        "follows": acc["follows"],
        "not_interested_rate": acc["not_interested"] / videos,
        "churned": churned.astype(np.float64),
        "engagement_per_request": acc["engagement"] / np.maximum(acc["requests"], 1),
    }
    return CohortResult(per_user=per_user, steps=steps, attributes=attributes, est_similarity=sims)


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
