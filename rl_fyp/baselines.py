"""Hand-written re-rankers with one interface: a batch of observations -> a batch of slates.

A policy is called with the env's observation dict (batched: ``user`` (B, U),
``candidates`` (B, N, F), ``mask`` (B, N)) and returns (B, K) int64 candidate positions:
K distinct valid candidates per row, in feed order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np

from envs.config import EnvConfig
from envs.ranking import CAND_VALUE

__all__ = ["GreedyPolicy", "MMRPolicy", "SlatePolicy", "top_k"]

_NEG = np.float32(-1e30)


class SlatePolicy(Protocol):
    """Maps an observation batch to slates."""

    name: str

    def __call__(self, obs: Mapping[str, np.ndarray]) -> np.ndarray: ...


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
        emb = cand[..., : self.d]
        v = cand[..., self.value_col]
        lo = np.where(mask, v, np.inf).min(axis=1, keepdims=True)
        hi = np.where(mask, v, -np.inf).max(axis=1, keepdims=True)
        rel = np.where(mask, (v - lo) / np.maximum(hi - lo, 1e-8), 0.0)
        max_sim = np.full((B, N), -1.0, np.float32)
        avail = mask.copy()
        rows = np.arange(B)
        out = np.empty((B, self.k), np.int64)
        for slot in range(self.k):  # K passes over the batch, vectorised over users
            penalty = np.where(slot == 0, 0.0, max_sim)
            score = np.where(avail, self.lam * rel - (1.0 - self.lam) * penalty, _NEG)
            pick = score.argmax(axis=1)
            out[:, slot] = pick
            avail[rows, pick] = False
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
