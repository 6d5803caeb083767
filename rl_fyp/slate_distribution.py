"""Ordered-slate action distributions: Plackett-Luce, plain or conditioned on earlier picks.

A slate is an ordered choice of K distinct candidates out of N. Both distributions draw
it slot by slot, each slot a softmax over the candidates not picked yet:

- ``pointwise`` (Plackett-Luce): fixed scores ``s``;
  ``P(a) = prod_j exp(s[a_j]) / sum_{i not in a_<j} exp(s[i])``.
  Sampling is Gumbel-top-k (exact and one-shot).
- ``sequential``: slot j's scores are ``s - beta * max_{p in a_<j} cos(e_i, e_p)`` with
  unit keys ``e`` and a per-row penalty ``beta >= 0``: a learned MMR whose relevance
  and diversity weight both come from the policy. With ``beta = 0`` it is Plackett-Luce.

RLlib rebuilds a distribution from one tensor (``Columns.ACTION_DIST_INPUTS``), so the
slate size and key width live in the class (:func:`slate_distribution_cls` makes one per
module) and the inputs pack everything: ``[scores (N)]`` for ``pointwise``,
``[scores (N), keys (N * m), beta (1)]`` for ``sequential``. Masked candidates must carry
a large finite negative score (:data:`MASKED_SCORE`): ``-inf`` would make the entropy NaN.

``logp`` is exact. Entropy and KL have no closed form over K-permutations; they are
estimated along one sampled slate with the chain rule
(``H = E_a[sum_j H(slot j | a_<j)]``, ``KL(P||Q) = E_{a~P}[sum_j KL(P_j || Q_j | a_<j)]``),
which is unbiased for the value.
"""

from __future__ import annotations

import functools
from typing import Any

import gymnasium as gym
import torch
import torch.nn.functional as F
from ray.rllib.core.distribution.torch.torch_distribution import TorchDistribution
from ray.rllib.utils.annotations import override

__all__ = ["MASKED_SCORE", "SlateDeterministic", "SlateDistribution", "slate_distribution_cls"]

MASKED_SCORE = -1e9
"""Score of a candidate that must never be chosen (masked, or already in the slate)."""


class SlateDistribution(TorchDistribution):
    """A distribution over ordered slates of ``slate_size`` distinct candidates.

    Args:
        scores: (B, N) candidate scores; masked candidates at :data:`MASKED_SCORE`.
        slate_size: K.
        keys: (B, N, m) unit-norm candidate keys (``sequential``), or None (``pointwise``).
        beta: (B,) non-negative similarity penalty (``sequential``), or None.
    """

    def __init__(
        self,
        scores: torch.Tensor,
        slate_size: int,
        keys: torch.Tensor | None = None,
        beta: torch.Tensor | None = None,
    ) -> None:
        # TorchDistribution.__init__ would build a torch.distributions object; there is none.
        self.scores = scores
        self.k = int(slate_size)
        self.keys = keys
        self.beta = beta
        if scores.shape[-1] < self.k:
            raise ValueError(f"slate size {self.k} exceeds the {scores.shape[-1]} candidates")

    @property
    def sequential(self) -> bool:
        return self.keys is not None

    # -- building from RLlib's packed inputs -------------------------------------------

    @staticmethod
    def pack(scores: torch.Tensor, keys: torch.Tensor | None = None, beta: torch.Tensor | None = None) -> torch.Tensor:
        """Packs the inputs into one (B, L) tensor for ``Columns.ACTION_DIST_INPUTS``."""
        if keys is None:
            return scores
        b = scores.shape[0]
        return torch.cat([scores, keys.reshape(b, -1), beta.reshape(b, 1)], dim=-1)

    @classmethod
    @override(TorchDistribution)
    def from_logits(cls, logits: torch.Tensor, slate_size: int = 1, key_dim: int = 0, **kwargs: Any) -> SlateDistribution:
        """Unpacks ``[scores (N)]`` or ``[scores (N), keys (N * key_dim), beta (1)]``."""
        if key_dim == 0:
            return cls(logits, slate_size)
        n = (logits.shape[-1] - 1) // (1 + key_dim)
        if n * (1 + key_dim) + 1 != logits.shape[-1]:
            raise ValueError(f"dist inputs of width {logits.shape[-1]} do not pack N scores, N x {key_dim} keys and beta")
        scores = logits[:, :n]
        keys = logits[:, n : n * (1 + key_dim)].reshape(logits.shape[0], n, key_dim)
        return cls(scores, slate_size, keys, logits[:, -1])

    @staticmethod
    @override(TorchDistribution)
    def required_input_dim(space: gym.Space, key_dim: int = 0, **kwargs: Any) -> int:
        n = int(space.nvec[0])
        return n if key_dim == 0 else n * (1 + key_dim) + 1

    def _get_torch_distribution(self, *args: Any, **kwargs: Any) -> None:  # pragma: no cover - never built
        raise NotImplementedError

    # -- slot-by-slot walk ------------------------------------------------------------

    def _walk(self, slate: torch.Tensor) -> torch.Tensor:
        """Every slot's log-softmax over the candidates, given the slate's earlier picks.

        All K slots at once: slot j's scores are the base scores, minus (sequential)
        ``beta * max cosine`` to picks ``0..j-1``, with those picks masked out.

        Args:
            slate: (B, K) int64 positions.

        Returns:
            (B, K, N) log-probabilities.
        """
        b, n = self.scores.shape
        onehot = F.one_hot(slate, n).to(torch.bool)  # (B, K, N)
        # Picks before slot j: an exclusive cumulative "or" over slots.
        before = torch.cumsum(onehot, dim=1, dtype=torch.int32) - onehot.to(torch.int32)
        s = self.scores[:, None, :].expand(b, self.k, n)
        if self.sequential:
            with torch.no_grad():  # the keys are features, not parameters
                keys = self.keys.detach()
                picked = keys.gather(1, slate[:, :, None].expand(-1, -1, keys.shape[-1]))  # (B, K, m)
                sims = torch.bmm(picked, keys.transpose(1, 2))  # (B, K, N): slot pick vs candidates
                max_sim = torch.cummax(sims, dim=1).values
                # Slot j sees the max over picks 0..j-1; slot 0 has no penalty.
                prev = torch.cat([torch.zeros_like(max_sim[:, :1]), max_sim[:, :-1]], dim=1)
            s = s - self.beta[:, None, None] * prev
        s = s.masked_fill(before > 0, MASKED_SCORE)
        return F.log_softmax(s, dim=-1)

    @override(TorchDistribution)
    def logp(self, value: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """(B,) exact log-probability of ordered slates ``value`` (B, K)."""
        value = value.long()
        steps = self._walk(value)
        # Kept for entropy(): PPO asks for logp(batch actions) and then the entropy.
        self._last_walk = steps
        return steps.gather(-1, value[:, :, None])[..., 0].sum(-1)

    @override(TorchDistribution)
    def sample(self, *, sample_shape: Any = None) -> torch.Tensor:
        """(B, K) int64 slates: Gumbel-top-k (pointwise) or Gumbel-argmax per slot (sequential)."""
        with torch.no_grad():
            if not self.sequential:
                u = torch.rand_like(self.scores).clamp_(1e-12, 1.0 - 1e-7)
                g = self.scores - torch.log(-torch.log(u))
                return torch.topk(g, self.k, dim=-1).indices
            return self._sequential_pick(gumbel=True)

    def _sequential_pick(self, gumbel: bool) -> torch.Tensor:
        scores = self.scores
        b = scores.shape[0]
        rows = torch.arange(b, device=scores.device)
        picked = torch.zeros_like(scores, dtype=torch.bool)
        slate = torch.empty((b, self.k), dtype=torch.long, device=scores.device)
        max_sim = None
        for j in range(self.k):
            s = scores if max_sim is None else scores - self.beta[:, None] * max_sim
            s = s.masked_fill(picked, MASKED_SCORE)
            if gumbel:
                u = torch.rand_like(s).clamp_(1e-12, 1.0 - 1e-7)
                s = s - torch.log(-torch.log(u))
            pick = s.argmax(dim=-1)
            slate[:, j] = pick
            picked[rows, pick] = True
            sim = torch.bmm(self.keys, self.keys[rows, pick][:, :, None])[..., 0]
            max_sim = sim if max_sim is None else torch.maximum(max_sim, sim)
        return slate

    def sample_and_logp(self, *, sample_shape: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.sample()
        return a, self.logp(a)

    @override(TorchDistribution)
    def rsample(self, *, sample_shape: Any = None) -> torch.Tensor:
        raise NotImplementedError("slates are discrete: no reparameterised sample")

    @override(TorchDistribution)
    def entropy(self, **kwargs: Any) -> torch.Tensor:
        """(B,) entropy estimate: the sum of slot entropies along one slate.

        The slate is the last one whose :meth:`logp` was taken (in PPO's loss: the batch's
        actions, drawn from the behaviour policy, which the clipped update keeps close to
        this one), else a fresh sample; this saves a second slot-by-slot pass.
        """
        steps = getattr(self, "_last_walk", None)
        if steps is None:
            steps = self._walk(self.sample())
        return -(steps.exp() * steps).sum((-1, -2))

    @override(TorchDistribution)
    def kl(self, other: SlateDistribution, **kwargs: Any) -> torch.Tensor:
        """(B,) estimate of KL(self || other) along one slate sampled from self."""
        slate = self.sample()
        mine, theirs = self._walk(slate), other._walk(slate)
        return (mine.exp() * (mine - theirs)).sum((-1, -2))

    @override(TorchDistribution)
    def to_deterministic(self) -> SlateDeterministic:
        return SlateDeterministic(self)


class SlateDeterministic(SlateDistribution):
    """The mode-seeking slate: top K of the scores (pointwise), or the greedy slot-by-slot pick."""

    def __init__(self, dist: SlateDistribution) -> None:
        super().__init__(dist.scores, dist.k, dist.keys, dist.beta)

    @override(SlateDistribution)
    def sample(self, *, sample_shape: Any = None) -> torch.Tensor:
        with torch.no_grad():
            if not self.sequential:
                return torch.topk(self.scores, self.k, dim=-1).indices
            return self._sequential_pick(gumbel=False)

    @override(SlateDistribution)
    def logp(self, value: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """(B,) zeros: the deterministic slate has probability one."""
        return torch.zeros(value.shape[0], dtype=self.scores.dtype, device=self.scores.device)

    @override(SlateDistribution)
    def entropy(self, **kwargs: Any) -> torch.Tensor:
        return torch.zeros(self.scores.shape[0], dtype=self.scores.dtype, device=self.scores.device)


@functools.lru_cache(maxsize=None)
def slate_distribution_cls(slate_size: int, key_dim: int = 0) -> type[SlateDistribution]:
    """The distribution class RLlib rebuilds from packed inputs, with K and m fixed.

    Args:
        slate_size: K.
        key_dim: m, the width of the similarity keys; 0 for plain Plackett-Luce.
    """
    return SlateDistribution.get_partial_dist_cls(slate_size=slate_size, key_dim=key_dim)
