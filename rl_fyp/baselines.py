"""Hand-written re-rankers with one interface: a batch of observations -> a batch of slates.

A policy is called with the env's observation dict (batched: ``user`` (B, U),
``candidates`` (B, N, F), ``mask`` (B, N)) and returns (B, K) int64 candidate positions:
K distinct valid candidates per row, in feed order. Every policy has a ``name``.

- :class:`GreedyPolicy`: the ranker's value score, best first (production without
  re-ranking);
- :class:`MMRPolicy`: maximal marginal relevance over content embeddings;
- :class:`ExplorePolicy`: greedy with exploration slots outside the estimated interests;
- :class:`RandomPolicy`: uniform among the valid candidates (a floor);
- :class:`OraclePolicy`: reads the user's hidden state (an upper reference, not a
  deployable policy); it is called as ``policy(obs, sim)`` and says so with
  ``needs_sim = True`` (``envs.cohort.run_cohort(..., policy_needs_sim=True)``).

:func:`make_policy` builds any of them by name from the run config.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any, Protocol

import numba as nb
import numpy as np

from envs.config import EnvConfig
from envs.ranking import CAND_VALUE
from envs.response import interest_match
from rl_fyp.config import Config

__all__ = [
    "ExplorePolicy",
    "GreedyPolicy",
    "MMRPolicy",
    "OraclePolicy",
    "RandomPolicy",
    "SlatePolicy",
    "make_policy",
    "masked_median",
    "needs_sim",
    "policy_seed",
    "top_k",
]

_NEG = np.float32(-1e30)


class SlatePolicy(Protocol):
    """Maps an observation batch to slates: (B, K) int64 distinct valid positions."""

    name: str

    def __call__(self, obs: Mapping[str, np.ndarray]) -> np.ndarray: ...


def needs_sim(policy: Any) -> bool:
    """Whether a policy reads hidden state: it is called as ``policy(obs, sim)``.

    Policies say so with a true ``needs_sim`` attribute (:class:`OraclePolicy`).
    """
    return bool(getattr(policy, "needs_sim", False))


def policy_seed(seed: int, name: str) -> int:
    """A policy's own seed, derived from the run seed and the policy name.

    Args:
        seed: the run seed (``Config.seed``).
        name: the policy name.

    Returns:
        A 32-bit seed; different names give unrelated streams.
    """
    return int(np.random.SeedSequence([seed, zlib.crc32(name.encode())]).generate_state(1)[0])


def top_k(scores: np.ndarray, mask: np.ndarray, k: int) -> np.ndarray:
    """The k best valid positions per row, best first.

    Args:
        scores: (B, N) float.
        mask: (B, N), nonzero where valid (>= k valid per row).
        k: slate size.

    Returns:
        (B, k) int64 positions.
    """
    s = np.where(mask != 0, scores, _NEG)
    part = np.argpartition(-s, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(s, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1).astype(np.int64)


def masked_median(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(B, 1) median of each row's valid entries (0 for a row without any).

    Args:
        x: (B, N) values.
        mask: (B, N) bool.
    """
    n = mask.sum(axis=1)
    s = np.sort(np.where(mask, x, np.inf), axis=1)  # valid entries first, in order
    lo = np.take_along_axis(s, np.maximum((n - 1) // 2, 0)[:, None], axis=1)
    hi = np.take_along_axis(s, np.maximum(n // 2, 0)[:, None], axis=1)
    return np.where(n[:, None] > 0, 0.5 * (lo + hi), 0.0)


class GreedyPolicy:
    """Greedy by the ranker's value score: the production default without re-ranking."""

    name = "greedy"

    def __init__(self, cfg: EnvConfig) -> None:
        self.k = cfg.slate_size
        self.value_col = cfg.catalog.latent_dim + CAND_VALUE

    def __call__(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        return top_k(obs["candidates"][..., self.value_col], obs["mask"], self.k)


class MMRPolicy:
    """Maximal marginal relevance over content embeddings.

    Picks one slot at a time the candidate maximising
    ``lam * relevance - (1 - lam) * max cosine to the videos already picked``, where
    relevance is the value score scaled to [0, 1] within the row.
    """

    name = "mmr"

    def __init__(self, cfg: EnvConfig, lam: float = 0.5) -> None:
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"MMR lambda must be in [0, 1], got {lam}")
        self.k = cfg.slate_size
        self.d = cfg.catalog.latent_dim
        self.value_col = self.d + CAND_VALUE
        self.lam = lam

    def __call__(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        cand, mask = obs["candidates"], obs["mask"] != 0
        B, N, _ = cand.shape
        # One contiguous copy: the K batched products below then read unit strides.
        emb = np.ascontiguousarray(cand[..., : self.d])
        v = cand[..., self.value_col]
        lo = np.where(mask, v, np.inf).min(axis=1, keepdims=True)
        hi = np.where(mask, v, -np.inf).max(axis=1, keepdims=True)
        rel = np.where(mask, (v - lo) / np.maximum(hi - lo, 1e-8), 0.0)
        max_sim = np.full((B, N), -1.0, np.float32)
        avail = mask.copy()
        picked = np.zeros((B, N), np.bool_)
        rows = np.arange(B)
        out = np.empty((B, self.k), np.int64)
        for slot in range(self.k):  # K passes over the batch, vectorised over users
            penalty = np.where(slot == 0, 0.0, max_sim)
            score = np.where(avail, self.lam * rel - (1.0 - self.lam) * penalty, _NEG)
            # A picked candidate never comes back, even in a row with fewer than K valid
            # ones (a finished user's fully masked row), where invalid ones fill the slate.
            score[picked] = -np.inf
            pick = score.argmax(axis=1)
            out[:, slot] = pick
            avail[rows, pick] = False
            picked[rows, pick] = True
            sim = np.matmul(emb, emb[rows, pick][:, :, None])[..., 0]
            max_sim = np.maximum(max_sim, sim)
        return out


class ExplorePolicy:
    """Greedy with exploration slots, as production feeds run it.

    On average ``share * K`` slots per slate (drawn per request) go to candidates outside
    the user's estimated interests (a topic the platform's estimate has no preference for,
    and estimated affinity below the row's median valid candidate; if a row has none, the
    low-affinity half), sampled among those by value score (Gumbel-top-k at temperature
    ``temperature``, so good videos are likelier but every one can be tried); the other
    slots are greedy by value score.
    Exploration picks take random positions in the slate.
    """

    name = "explore"

    def __init__(self, cfg: EnvConfig, share: float = 0.1, seed: int = 0, temperature: float = 1.0) -> None:
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"exploration share must be in [0, 1], got {share}")
        from envs.ranking import cand_index

        self.k = cfg.slate_size
        self.share = share
        self.value_col = cfg.catalog.latent_dim + CAND_VALUE
        self.aff_col = cand_index(cfg, "estimated_affinity")
        self.topic_col = cand_index(cfg, "topic_preference")
        self.rng = np.random.default_rng(seed)
        self.temperature = temperature
        self.topic_threshold = 0.05

    def __call__(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        cand, mask = obs["candidates"], obs["mask"] != 0
        B, N, _ = cand.shape
        K = self.k
        aff = cand[..., self.aff_col]
        low_aff = mask & (aff < masked_median(aff, mask))
        outside = low_aff & (cand[..., self.topic_col] < self.topic_threshold)
        outside = np.where(outside.any(axis=1, keepdims=True), outside, low_aff)
        # How many exploration slots each request gets (share * K on average).
        n_exp = np.floor(self.share * K + self.rng.random(B)).astype(np.int64)
        n_exp = np.minimum(n_exp, outside.sum(axis=1))
        greedy_score = np.where(mask, cand[..., self.value_col], _NEG)
        gumbel = -np.log(-np.log(self.rng.random((B, N)) + 1e-12) + 1e-12)
        keys = np.where(outside, cand[..., self.value_col] / self.temperature + gumbel, _NEG)
        explore = top_k(keys, mask, K)
        greedy = top_k(greedy_score, mask, K)
        slates = greedy.copy()
        if n_exp.max() == 0:
            return slates
        # Exploration picks go to random positions; greedy picks fill the rest in order.
        pos_keys = self.rng.random((B, K))
        exp_slot = np.zeros((B, K), np.bool_)
        order = np.argsort(pos_keys, axis=1)
        rank = np.argsort(order, axis=1)
        exp_slot = rank < n_exp[:, None]
        exp_rank = np.cumsum(exp_slot, axis=1) - 1
        chosen_exp = np.take_along_axis(explore, np.where(exp_slot, exp_rank, 0), axis=1)
        # Greedy picks, skipping those already used as exploration picks.
        used = np.zeros((B, N), np.bool_)
        rows = np.arange(B)[:, None]
        used[np.broadcast_to(rows, (B, K))[exp_slot], chosen_exp[exp_slot]] = True
        g_order = np.argsort(-np.where(mask & ~used, greedy_score, _NEG), axis=1, kind="stable")
        g_rank = np.cumsum(~exp_slot, axis=1) - 1
        chosen_g = np.take_along_axis(g_order, np.where(~exp_slot, g_rank, 0), axis=1)
        slates = np.where(exp_slot, chosen_exp, chosen_g)
        return slates.astype(np.int64)


class RandomPolicy:
    """Uniform among the valid candidates: K distinct ones in random order (a floor).

    Args:
        cfg: env config (K).
        seed: seeds the policy's own generator; the same seed and observations give
            the same slates.
    """

    name = "random"

    def __init__(self, cfg: EnvConfig, seed: int = 0) -> None:
        self.k = cfg.slate_size
        self.rng = np.random.default_rng(seed)

    def __call__(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        mask = obs["mask"]
        # The top K of i.i.d. uniform keys is a uniform ordered sample without replacement.
        return top_k(self.rng.random(mask.shape, dtype=np.float32), mask, self.k)


# Parameter vector of the oracle kernel, in this order.
_ORACLE_PARAMS = (
    "affinity_weight", "session_weight", "quality_weight", "trend_weight", "creator_follow_bonus",
    "avoidance_weight", "appeal_bias", "fatigue_weight", "position_decay", "skip_slope", "skip_bias",
    "completion_slope", "completion_duration_slope", "boredom_weight", "return_breadth_slope",
)
(_O_AFF, _O_SESS, _O_QUAL, _O_TREND, _O_FOLLOW, _O_AVOID, _O_BIAS, _O_FAT, _O_POS, _O_SKIP_SLOPE,
 _O_SKIP_BIAS, _O_COMP_SLOPE, _O_COMP_DUR, _O_BOREDOM, _O_BREADTH) = range(len(_ORACLE_PARAMS))


@nb.njit(parallel=True, cache=True)
def _oracle_kernel(  # pragma: no cover - numba
    item_ids, valid, p, fatigue_per_view, fatigue_decay_h, breadth_weight,
    true_vec, item_topic, item_creator, quality, duration, item_sound, sound_level,
    interest_vec, interest_off, session_vec, fatigue, avoid, coverage, follows, clock_h, decay_clock_h,
    out,
):
    B, N = item_ids.shape
    K = out.shape[1]
    m = interest_vec.shape[1]
    T = fatigue.shape[1]
    F = follows.shape[1]
    for b in nb.prange(B):
        n_valid = 0
        for n in range(N):
            if valid[b, n]:
                n_valid += 1
        if n_valid == 0:  # a user no longer stepped: any distinct positions do
            for k in range(K):
                out[b, k] = k
            continue
        base = np.empty(N)
        fat0 = np.empty(N)
        p_engage = np.zeros(N)
        comp = np.zeros(N, np.int64)
        top = np.zeros(N, np.int64)
        picked = np.zeros(N, np.bool_)
        planned = np.zeros(T)
        cov = np.empty(m)
        n_int = 0
        for c in range(m):
            cov[c] = coverage[b, c]
            if interest_off[b, c] > -9.0:
                n_int += 1
        breadth_gain = breadth_weight * p[_O_BREADTH] * 0.5 / max(n_int, 1)
        # Fatigue fades between steps; the response kernel applies the decay first.
        dt = max(clock_h[b] - decay_clock_h[b], 0.0)
        fade = np.exp(-dt / fatigue_decay_h)
        for n in range(N):
            if not valid[b, n]:
                continue
            i = item_ids[b, n]
            best, best_c, sess = interest_match(interest_off, interest_vec, session_vec, true_vec, b, i)
            t = item_topic[i]
            followed = False
            for f in range(F):
                if follows[b, f] == item_creator[i]:
                    followed = True
                    break
            a = (p[_O_AFF] * best + p[_O_SESS] * sess + p[_O_QUAL] * (quality[i] - 0.5)
                 + p[_O_TREND] * sound_level[item_sound[i]] - p[_O_AVOID] * avoid[b, t] + p[_O_BIAS])
            if followed:
                a += p[_O_FOLLOW]
            base[n] = a
            fat0[n] = fatigue[b, t] * fade
            comp[n] = best_c
            top[n] = t
            if breadth_gain > 0.0:
                # Chance of an engaged view (no skip, then completion), at the slate's
                # first slot: the later slots' small position and fatigue terms are
                # left out of this weight (K times fewer exponentials).
                a0 = a - p[_O_FAT] * fat0[n]
                p_watch = 1.0 / (1.0 + np.exp(p[_O_SKIP_BIAS] - p[_O_SKIP_SLOPE] * a0))
                lc = p[_O_COMP_SLOPE] * a0 - p[_O_COMP_DUR] * np.log(duration[i] / 15.0)
                p_engage[n] = p_watch / (1.0 + np.exp(-lc))
        for k in range(K):
            best_score = -np.inf
            pick = -1
            for n in range(N):
                if picked[n]:
                    continue
                if not valid[b, n]:
                    score = -1e30  # only when fewer than K are valid
                else:
                    fat = fat0[n] + fatigue_per_view * planned[top[n]]
                    score = base[n] - (p[_O_FAT] + p[_O_BOREDOM]) * fat - p[_O_POS] * k
                    if cov[comp[n]] < 2.0:
                        score += breadth_gain * p_engage[n]
                if pick < 0 or score > best_score:
                    best_score = score
                    pick = n
            out[b, k] = pick
            picked[pick] = True
            planned[top[pick]] += 1.0
            cov[comp[pick]] += p_engage[pick]


class OraclePolicy:
    """An upper reference that reads the user's hidden state (never deployable).

    It scores each candidate with the user's true appeal as the response model computes
    it (``envs/response.py``: long-term interests, session interest, quality, trend,
    follow bonus, fatigue, avoidance, position), and fills the slate one slot at a time
    with what also brings users back (README, "Why greedy is not optimal"):

    - repetition: each pick adds ``fatigue_per_view`` to its topic's fatigue for the
      later slots, and fatigue costs satisfaction (``boredom_weight``) on top of the
      appeal, so a slate of one topic loses to a mixed one;
    - breadth: a session that engages each of the user's interests (two engaged videos
      each) shortens the return gap (``return_breadth_slope``); a candidate matching an
      interest the session has not fed yet earns its expected share of that effect.

    Slot score = ``appeal - boredom_weight * fatigue + breadth_weight *
    return_breadth_slope * 0.5 / n_interests * p_engage * [interest not fed yet]``, where
    ``p_engage`` is the chance the user watches it through (no skip, then completion) at
    the slate's first slot, and an interest counts as fed after two expected engaged views
    (the session's real ones, then the slate's planned ones weighted by ``p_engage``).

    Called as ``policy(obs, sim)``: ``sim`` is the running ``envs.core.FeedSimulator``;
    ``sim.obs`` is the observation ``obs`` came from (its ``item_ids`` name the catalog
    rows of the candidates). A numba kernel, parallel over users like the simulator's.

    Args:
        cfg: env config (the response and user-model parameters it reads).
        breadth_weight: scale of the breadth term (0: appeal and boredom only).
        boredom: whether to charge fatigue against satisfaction (False: myopic appeal).
    """

    name = "oracle"
    needs_sim = True

    def __init__(self, cfg: EnvConfig, breadth_weight: float = 1.0, boredom: bool = True) -> None:
        if breadth_weight < 0.0:
            raise ValueError(f"breadth_weight must be >= 0, got {breadth_weight}")
        self.k = cfg.slate_size
        self.breadth_weight = float(breadth_weight)
        self.boredom = bool(boredom)
        r = cfg.response
        self.params = np.array([getattr(r, name) for name in _ORACLE_PARAMS], np.float64)
        if not self.boredom:
            self.params[_O_BOREDOM] = 0.0
        self.fatigue_per_view = float(cfg.user.fatigue_per_view)
        self.fatigue_decay_h = float(cfg.user.fatigue_decay_h)

    def __call__(self, obs: Mapping[str, np.ndarray], sim: Any) -> np.ndarray:
        full = sim.obs
        if full is None or full.item_ids.shape != np.shape(obs["mask"]):
            raise ValueError("the oracle needs the simulator whose last observation is `obs`")
        cat, u = sim.catalog, sim.users
        valid = np.asarray(obs["mask"]) != 0
        out = np.empty((valid.shape[0], self.k), np.int64)
        _oracle_kernel(
            full.item_ids, valid, self.params, self.fatigue_per_view, self.fatigue_decay_h, self.breadth_weight,
            cat.true_vec, cat.topic, cat.creator, cat.quality, cat.duration_s, cat.sound, cat.sound_level,
            u.interest_vec, u.interest_off, u.session_vec, u.fatigue, u.avoid, u.coverage, u.follows,
            u.clock_h, u.decay_clock_h, out,
        )
        return out


def make_policy(
    name: str,
    cfg: Config,
    *,
    mmr_lambda: float | None = None,
    explore_share: float | None = None,
) -> SlatePolicy:
    """Builds a baseline policy by name.

    Args:
        name: one of ``rl_fyp.config.BASELINE_NAMES`` (trained policies come from their
            checkpoints, not from here).
        cfg: the run config: the env config sets K and the feature layout; ``cfg.seed``
            seeds the random and explore policies (:func:`policy_seed`).
        mmr_lambda: MMR trade-off; ``cfg.eval.mmr_lambda`` if None.
        explore_share: share of exploration slots; ``cfg.eval.explore_share`` if None.

    Returns:
        A fresh policy (its random stream starts anew), with ``name`` set.

    Raises:
        ValueError: for a name that is not a baseline.
    """
    if name == "greedy":
        return GreedyPolicy(cfg.env)
    if name == "mmr":
        return MMRPolicy(cfg.env, cfg.eval.mmr_lambda if mmr_lambda is None else mmr_lambda)
    if name == "explore":
        share = cfg.eval.explore_share if explore_share is None else explore_share
        return ExplorePolicy(cfg.env, share=share, seed=policy_seed(cfg.seed, name))
    if name == "random":
        return RandomPolicy(cfg.env, seed=policy_seed(cfg.seed, name))
    if name == "oracle":
        return OraclePolicy(cfg.env)
    raise ValueError(f"unknown policy {name!r}; baselines are greedy, mmr, explore, random, oracle")
