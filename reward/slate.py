"""Optional slate terms (off by default): intra-slate diversity and new-creator exposure.

Both read only what the platform observes of the shown videos: the content embedding
(``Feedback.emb``) and the creator's follower count (``Feedback.creator_followers``),
over the seen videos of each slate.
"""

from __future__ import annotations

import numpy as np

from reward import terms as T
from reward._weigh import TermValue, weigh
from reward.config import RewardConfig
from reward.feedback import Feedback

__all__ = ["OPTIONAL_VALUES", "intra_slate_diversity", "new_creator_count", "optional_terms"]


def intra_slate_diversity(emb: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Mean pairwise cosine distance among the seen videos of each slate.

    Args:
        emb: (B, K, d) content embeddings.
        seen: (B, K) bool.

    Returns:
        (B,) float64 mean over unordered pairs (i < j) of seen videos of
        ``1 - cos(emb_i, emb_j)`` (in [0, 2]); 0 where fewer than two videos were seen.
        A zero embedding has cosine 0 with everything.
    """
    x = emb.astype(np.float64)
    norm = np.linalg.norm(x, axis=2, keepdims=True)
    unit = np.divide(x, norm, out=np.zeros_like(x), where=norm > 0.0)
    cos = np.einsum("bkd,bjd->bkj", unit, unit)  # (B, K, K)
    m = seen.astype(np.float64)
    pair = m[:, :, None] * m[:, None, :]
    K = seen.shape[1]
    pair *= np.triu(np.ones((K, K)), k=1)[None]  # each unordered pair once, no self-pairs
    n_pairs = pair.sum(axis=(1, 2))
    total = ((1.0 - cos) * pair).sum(axis=(1, 2))
    return np.divide(total, n_pairs, out=np.zeros_like(total), where=n_pairs > 0)


def new_creator_count(creator_followers: np.ndarray, seen: np.ndarray, max_followers: float) -> np.ndarray:
    """(B,) float32 count of seen videos whose creator has fewer than `max_followers` followers."""
    return (seen & (creator_followers < max_followers)).sum(axis=1, dtype=np.float32)


OPTIONAL_VALUES: dict[str, TermValue] = {
    T.TERM_DIVERSITY: lambda fb, cfg: intra_slate_diversity(fb.emb, fb.seen),
    T.TERM_NEW_CREATOR: lambda fb, cfg: new_creator_count(
        fb.creator_followers, fb.seen, cfg.optional.new_creator_max_followers
    ),
}
"""Term name -> unweighted (B,) value."""


def optional_terms(fb: Feedback, cfg: RewardConfig) -> dict[str, np.ndarray]:
    """Per-user optional slate terms of one step (none unless their weights are set).

    With ``o = cfg.optional``: ``diversity = o.diversity * mean_{i<j seen} (1 - cos(emb_i, emb_j))``
    (0 with fewer than two seen videos), ``new_creator = o.new_creator * #{seen videos with
    creator_followers < o.new_creator_max_followers}``.

    Args:
        fb: feedback of B users to slates of K videos.
        cfg: the reward config (``cfg.optional``).

    Returns:
        name -> (B,) float32 for the active optional terms, in the order of
        ``reward.terms.OPTIONAL_TERMS``.
    """
    return weigh(fb, cfg, OPTIONAL_VALUES)
