"""The batched simulation core shared by :class:`FeedEnv` and :class:`FeedVectorEnv`.

One ``FeedSimulator`` holds the world (catalog, clock) and B user slots. A step is one
feed request per active user: the user goes through their slate (response kernel), the
platform records what it saw, the world clock advances, and the next candidates are
retrieved and featurised. The simulator returns a feedback record and never decides the
reward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from envs._rng import draw_seed
from envs.catalog import Catalog
from envs.config import EnvConfig
from envs.ranking import build_observation, candidate_feature_names, ranker_params, user_feature_names
from envs.response import F_COMPLETED, F_LIKE, F_SHARE, F_COMMENT, F_FOLLOW, F_NI, F_PROFILE, F_SKIP
from envs.response import respond, response_params
from envs.retrieval import Retriever
from envs.users import UserState
from reward.feedback import Feedback

if TYPE_CHECKING:
    from envs.kuairand.world import KuaiRandWorld

__all__ = ["FeedSimulator", "Observation", "StepOutcome"]


@dataclass
class Observation:
    """Batched observation: what the re-ranker sees, plus the candidates' catalog rows.

    Attributes:
        user: (B, U) float32 user features.
        candidates: (B, N, F) float32 candidate features.
        mask: (B, N) int8, 1 for a valid candidate.
        item_ids: (B, N) int32 catalog rows of the candidates (-1 in padding); not part of
            the policy's observation, kept for diagnostics, baselines and oracles.
        source: (B, N) int8 retrieval source of each candidate.
    """

    user: np.ndarray
    candidates: np.ndarray
    mask: np.ndarray
    item_ids: np.ndarray
    source: np.ndarray

    def as_dict(self) -> dict[str, np.ndarray]:
        """The policy's observation, a dict matching the env's observation space."""
        return {"user": self.user, "candidates": self.candidates, "mask": self.mask}


@dataclass
class StepOutcome:
    """What one simulator step produced for the B slots."""

    feedback: Feedback
    terminated: np.ndarray  # (B,) bool: churned (terminal)
    truncated: np.ndarray  # (B,) bool: the user's clock passed the horizon


class FeedSimulator:
    """World + B user slots, stepped in batch."""

    def __init__(self, cfg: EnvConfig, n_users: int, world: KuaiRandWorld | None = None) -> None:
        """A simulator of `n_users` slots; :meth:`build_world` makes its world.

        Args:
            cfg: the env config.
            n_users: user slots (B).
            world: a data-driven world (``envs.kuairand.world.KuaiRandWorld``) to use
                instead of reading ``cfg.world.world_file``; only with ``world.source: kuairand``.
        """
        if n_users < 1:
            raise ValueError(f"n_users must be >= 1, got {n_users}")
        if world is not None and cfg.world.source != "kuairand":
            raise ValueError(f"a data-driven world needs world.source: kuairand, got {cfg.world.source!r}")
        self.cfg = cfg
        self.world = world
        # The quantile watch-ratio model's (knots, values) tables; None in the synthetic world.
        self.watch_ratio_table: tuple[np.ndarray, np.ndarray] | None = None
        self.last_response: dict[str, np.ndarray] | None = None
        self.n_users = n_users
        self.params = response_params(cfg)
        self.ranker_params = ranker_params(cfg)
        self.n_user_features = len(user_feature_names(cfg))
        self.n_cand_features = len(candidate_feature_names(cfg))
        self.rng: np.random.Generator | None = None
        self.catalog: Catalog | None = None
        self.users: UserState | None = None
        self.retriever: Retriever | None = None
        self.obs: Observation | None = None

    # ------------------------------------------------------------------ lifecycle
    def build_world(self, rng: np.random.Generator) -> None:
        """Generate a new catalog and empty user slots from `rng` (which the simulator keeps)."""
        self.rng = rng
        if self.cfg.world.source == "kuairand":
            if self.world is None:
                from envs.kuairand.world import load_world  # only data-driven worlds read files

                self.world = load_world(self.cfg)
            self.catalog = self.world.make_catalog(self.cfg, rng)
            self.watch_ratio_table = self.world.watch_ratio_table
        else:
            self.catalog = Catalog(self.cfg.catalog, rng)
        self.users = UserState(self.cfg, self.n_users, self.catalog, rng)
        self.retriever = Retriever(self)

    @property
    def built(self) -> bool:
        """Whether a world exists."""
        return self.catalog is not None

    def spawn(self, slots: np.ndarray, population_rows: np.ndarray | None = None) -> None:
        """Fresh users in `slots` ((B,) bool mask).

        In the synthetic world they are new cold-start users. In a data-driven world they are
        users of its population: the given `population_rows` (one per slot in `slots`, in
        order), or users drawn at random from the population.
        """
        idx = np.flatnonzero(slots)
        if self.world is None:
            if population_rows is not None:
                raise ValueError("population_rows needs a data-driven world (world.source: kuairand)")
            self.users.spawn(idx, self.rng)
        else:
            self.world.spawn(self.users, idx, self.rng, population_rows)

    def observe(self, active: np.ndarray | None = None) -> Observation:
        """Retrieve and featurise the next request's candidates for the `active` slots."""
        if active is None:
            active = np.ones(self.n_users, np.bool_)
        cand, src, valid = self.retriever.retrieve(active, draw_seed(self.rng))
        user, cands = build_observation(self, cand, src)
        self.obs = Observation(user, cands, valid.astype(np.int8), cand, src)
        return self.obs

    # ------------------------------------------------------------------ step
    def step(self, slate_pos: np.ndarray, active: np.ndarray) -> StepOutcome:
        """Show each active user the slate (candidate positions of the last observation).

        Args:
            slate_pos: (B, K) int positions into the last observation's candidates,
                already validated.
            active: (B,) bool; inactive slots are not stepped.
        """
        u, cat = self.users, self.catalog
        items = np.take_along_axis(self.obs.item_ids, slate_pos.astype(np.int64), axis=1).astype(np.int32)
        videos_before = u.session_videos.copy()
        time_before = u.session_time_s.copy()
        out = respond(self, items, active, draw_seed(self.rng))
        self.last_response = out  # the kernel's raw outputs (the quantile model's latents among them)
        seen = out["seen"]
        flags = out["flags"]
        # What the platform observes of the shown videos, read before uploads replace rows.
        rows = np.maximum(items, 0)
        emb = np.where(seen[..., None], cat.emb[rows], np.float32(0.0))
        followers = np.where(seen, cat.creator_followers[cat.creator[rows]], np.float32(0.0))
        # The platform logs what it showed: impressions, completions, engagement.
        engaged = flags[..., F_LIKE] | flags[..., F_SHARE] | flags[..., F_COMMENT] | flags[..., F_FOLLOW]
        cat.record(items, seen, flags[..., F_COMPLETED], engaged)
        cat.advance(self.cfg.catalog.world_h_per_step, self.rng)
        n_seen = seen.sum(axis=1, dtype=np.int32)
        fb = Feedback(
            seen=seen,
            watch_ratio=out["watch_ratio"],
            watch_time_s=out["watch_time_s"],
            duration_s=out["duration_s"],
            completed=flags[..., F_COMPLETED],
            fast_skip=flags[..., F_SKIP],
            like=flags[..., F_LIKE],
            share=flags[..., F_SHARE],
            comment=flags[..., F_COMMENT],
            follow=flags[..., F_FOLLOW],
            profile_visit=flags[..., F_PROFILE],
            not_interested=flags[..., F_NI],
            session_ended=out["session_ended"],
            return_gap_h=out["return_gap_h"],
            churned=out["churned"],
            new_day_active=out["new_day_active"],
            # Slots not stepped (about to restart with a fresh user) report a fresh user's zeros.
            session_videos=np.where(active, videos_before + n_seen, 0).astype(np.int32),
            session_time_s=np.where(active, time_before + out["watch_time_s"].sum(axis=1), 0.0).astype(np.float32),
            hours_since_start=np.where(active, u.clock_h, 0.0).astype(np.float32),
            emb=emb.astype(np.float32, copy=False),
            creator_followers=followers.astype(np.float32, copy=False),
        )
        # Churn ends the MDP (terminated); reaching the horizon only cuts it off
        # (truncated: the user would have gone on, so bootstrapping stays valid).
        terminated = out["churned"] & active
        truncated = (u.clock_h >= self.cfg.horizon_h) & active & ~terminated
        return StepOutcome(fb, terminated, truncated)

    # ------------------------------------------------------------------ raw records
    def request_records(self, b: int, *, with_ranker: bool = True) -> tuple[dict, list[dict]]:
        """The last observation of slot `b` as the raw records a production log would hold.

        The user record (context, session so far, history, the platform's estimate) and
        one record per valid candidate (the video's embedding, statistics as of the
        feature snapshot, creator, topic, retrieval source, and the ranker's outputs),
        in the fields of :data:`envs.features.USER_RECORD_FIELDS` and
        :data:`envs.features.CANDIDATE_RECORD_FIELDS`. Serving's feature builder
        (:class:`envs.features.RecordFeatures`) turns them back into this observation's
        features; the parity tests check that it does.

        Args:
            b: The user slot.
            with_ranker: Include the ranker's outputs (as a production ranker would send them).

        Returns:
            ``(user, candidates)``, JSON-able; ``candidates[i]["id"]`` is the catalog row,
            in the order of the observation's valid candidates.
        """
        from envs.features import RANKER_FIELDS

        u, cat, obs = self.users, self.catalog, self.obs
        d = self.cfg.catalog.latent_dim
        M, E = self.cfg.observation.history_len, self.cfg.retrieval.recent_engaged_len

        def ring(ptr: int, size: int) -> np.ndarray:
            # Ring slots oldest first.
            n = min(ptr, size)
            return (np.arange(ptr - n, ptr) % size) if ptr > size else np.arange(n)

        hist = ring(int(u.hist_ptr[b]), M)
        eng = ring(int(u.engaged_ptr[b]), E)
        fol = ring(int(u.follow_ptr[b]), u.follows.shape[1])
        user = {
            "local_hour": float(u.local_hour()[b]),
            "hours_since_first_visit": float(u.clock_h[b]),
            "session_requests": int(u.session_requests[b]),
            "session_watch_s": float(u.session_time_s[b]),
            "session_videos": int(u.session_videos[b]),
            "sessions": int(u.sessions[b]),
            "last_gap_h": float(u.last_gap_h[b]),
            "region": int(u.region[b]),
            "language": int(u.language[b]),
            "device": int(u.device[b]),
            "embedding": u.u_hat[b].tolist(),
            "topic_preference": u.p_hat[b].tolist(),
            "signup_topics": np.flatnonzero(u.signup[b]).tolist(),
            "follows": [int(c) for c in u.follows[b, fol] if c >= 0],
            "history": [
                {
                    "embedding": cat.emb[u.hist_item[b, h]].tolist(),
                    "watch_ratio": float(u.hist_ratio[b, h]),
                    "like": bool(u.hist_like[b, h]),
                    "fast_skip": bool(u.hist_skip[b, h]),
                }
                for h in hist
            ],
            "recent_engaged": [cat.emb[u.engaged[b, r]].tolist() for r in eng],
        }
        cands = []
        for n in np.flatnonzero(obs.mask[b]):
            i = int(obs.item_ids[b, n])
            rec = {
                "id": i,
                "embedding": cat.emb[i].tolist(),
                "topic": int(cat.topic[i]),
                "creator": int(cat.creator[i]),
                "source": int(obs.source[b, n]),
                "impressions": float(cat.impressions[i]),
                "completions": float(cat.completions[i]),
                "engagements": float(cat.engagements[i]),
                "trend_level": float(cat.item_static[i, 3]),
                "age_h": float(cat.feature_h[i] - cat.upload_h[i]),
                "creator_followers": float(cat.creator_followers[cat.creator[i]]),
                "duration_s": float(cat.duration_s[i]),
            }
            if with_ranker:
                rec["ranker"] = {k: float(obs.candidates[b, n, d + j]) for j, k in enumerate(RANKER_FIELDS)}
            cands.append(rec)
        return user, cands

    # ------------------------------------------------------------------ diagnostics
    def estimate_similarity(self) -> np.ndarray:
        """(B,) cosine between the platform's user estimate and the true mean interest."""
        est = self.users.u_hat
        # The estimate lives in embedding space; the truth in content space, which the
        # embedding views with noise: the cosine is meaningful because both are aligned.
        n = np.linalg.norm(est, axis=1)
        truth = self.users.true_interest()
        return np.where(n > 1e-8, (est * truth).sum(axis=1) / np.maximum(n, 1e-8), 0.0)
