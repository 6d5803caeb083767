"""The slate re-ranking policy: an RLlib ``TorchRLModule`` over the feed observation.

Architecture (one forward pass for a batch of B requests with N candidates each):

- **User encoder**: an MLP over the user features (context and history,
  ``obs["user"]``, (B, U)) -> ``u`` (B, H_u).
- **Candidate scorer**, shared across candidates, so a policy trained at one N runs at
  any N: an MLP of (candidate features, the value score standardised within the request,
  an embedding of the retrieval source, ``u``) -> a score per candidate, plus a learned
  multiple of the ranker's value score (the *prior*). The scorer's last layer starts at
  zero, so training starts from a Plackett-Luce policy around the ranker's order and
  deterministic inference starts as greedy-by-value.
- **Slate head** (``variant``): ``pointwise`` samples from Plackett-Luce over the
  scores; ``sequential`` (slate-aware) conditions each slot on the videos already picked
  by subtracting ``beta(u) * max cosine`` to them, with ``beta`` a per-user output
  (:mod:`rl_fyp.slate_distribution`).
- **Value head**: an MLP of ``u`` and summaries of the candidates' value scores
  (no candidate MLP, so RLlib's value pass over a whole batch is cheap).

Masked candidates get :data:`~rl_fyp.slate_distribution.MASKED_SCORE` and are never
picked. Inference (``explore=False``) is the mode: the top K (pointwise) or the greedy
slot-by-slot pick (sequential).

The module is configured by a plain dict (RLlib's ``model_config``) built from the typed
config by :func:`module_config`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis import TargetNetworkAPI, ValueFunctionAPI
from ray.rllib.core.rl_module.apis.target_network_api import TARGET_NETWORK_ACTION_DIST_INPUTS
from ray.rllib.core.rl_module.rl_module import RLModule
from ray.rllib.core.learner.utils import make_target_network
from ray.rllib.core.rl_module.torch.torch_rl_module import TorchRLModule
from ray.rllib.utils.annotations import override
from torch import nn

from envs.config import EnvConfig
from envs.ranking import CAND_VALUE, candidate_feature_names
from envs.retrieval import N_SOURCES
from rl_fyp.config import ModelConfig
from rl_fyp.slate_distribution import MASKED_SCORE, SlateDistribution, slate_distribution_cls

__all__ = ["SlateRLModule", "SlateScoreNet", "module_config", "greedy_slates"]


BETA_SCALE = 10.0
"""Learning-rate multiplier of the shared log similarity penalty (see :class:`SlateScoreNet`)."""


def module_config(model: ModelConfig, env: EnvConfig) -> dict[str, Any]:
    """The ``model_config`` dict of :class:`SlateRLModule`, from the typed configs.

    The candidate feature layout comes from the env config, so a module knows which
    columns hold the content embedding, the value score and the source id.
    """
    d = env.catalog.latent_dim
    return {
        "variant": model.variant,
        "user_hidden": model.user_hidden,
        "hidden": model.hidden,
        "value_hidden": model.value_hidden,
        "prior_scale": model.prior_scale,
        "diversity_init": model.diversity_init,
        "slate_size": env.slate_size,
        "embed_dim": d,
        "value_col": d + CAND_VALUE,
        "n_features": len(candidate_feature_names(env)),
        "n_sources": N_SOURCES,
    }


def _squash(x: torch.Tensor) -> torch.Tensor:
    """sign(x) * log1p(|x|): near the identity for small features, tames heavy tails."""
    return torch.sign(x) * torch.log1p(torch.abs(x))


class SlateScoreNet(nn.Module):
    """The policy network: observation tensors -> packed slate-distribution inputs.

    Holds everything but the value head, so the target network (APPO) and the exported
    re-ranker are copies of this one module.

    Args:
        cfg: :func:`module_config` dict.
        user_dim: U, the width of the user features.
    """

    def __init__(self, cfg: Mapping[str, Any], user_dim: int) -> None:
        super().__init__()
        self.variant: str = cfg["variant"]
        self.embed_dim = int(cfg["embed_dim"])
        self.value_col = int(cfg["value_col"])
        self.n_sources = int(cfg["n_sources"])
        hu, h = int(cfg["user_hidden"]), int(cfg["hidden"])
        n_feat = int(cfg["n_features"])
        self.user_encoder = nn.Sequential(nn.Linear(user_dim, hu), nn.ReLU(), nn.Linear(hu, hu), nn.ReLU())
        # The first candidate layer is a sum of parts, each computed on its own, so that no
        # (B, N, F)-sized intermediate is built: a linear map of the raw features (the
        # source-id column is masked out of it: it is categorical), an embedding of the
        # source, the user encoding, and the value score standardised within the request.
        self.cand_in = nn.Linear(n_feat, h)
        self.register_buffer("feature_mask", (torch.arange(n_feat) < n_feat - 1).float(), persistent=False)
        self.source_in = nn.Embedding(self.n_sources, h)
        nn.init.normal_(self.source_in.weight, std=0.1)
        self.user_to_cand = nn.Linear(hu, h, bias=False)
        self.value_to_cand = nn.Parameter(torch.randn(h) * 0.1)
        self.cand_hidden = nn.Linear(h, h)
        self.cand_out = nn.Linear(h, 1)
        nn.init.zeros_(self.cand_out.weight)
        nn.init.zeros_(self.cand_out.bias)
        self.prior = nn.Parameter(torch.tensor(float(cfg["prior_scale"])))
        if self.variant == "sequential":
            # beta = exp(BETA_SCALE * log_beta + head(u)) starts at diversity_init. Log space:
            # a gradient step changes beta by a similar factor whether it is 0.1 or 10.
            # The shared log-penalty is one scalar that must travel O(1); the factor makes
            # Adam (steps of about lr per parameter) move it BETA_SCALE times faster.
            self.beta_head = nn.Linear(hu, 1, bias=False)
            nn.init.zeros_(self.beta_head.weight)
            self.log_beta = nn.Parameter(torch.tensor(math.log(max(float(cfg["diversity_init"]), 1e-4)) / BETA_SCALE))
        self.out_dim = hu + 3

    @staticmethod
    def value_features(
        u: torch.Tensor, v: torch.Tensor, valid: torch.Tensor, mean_v: torch.Tensor, std_v: torch.Tensor
    ) -> torch.Tensor:
        """(B, H_u + 3) value-head input: user encoding, log1p of mean / max / std of valid value scores."""
        max_v = v.masked_fill(valid == 0, 0.0).amax(-1, keepdim=True)
        return torch.cat([u, torch.log1p(mean_v.clamp(min=0)), torch.log1p(max_v.clamp(min=0)), torch.log1p(std_v)], -1)

    def encode_user(self, user: torch.Tensor, candidates: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, H_u + 3) value-head input without scoring the candidates."""
        valid = (mask > 0).float()
        v = candidates.float()[..., self.value_col]
        n_valid = valid.sum(-1, keepdim=True).clamp(min=1.0)
        mean_v = (v * valid).sum(-1, keepdim=True) / n_valid
        std_v = (((v - mean_v) ** 2 * valid).sum(-1, keepdim=True) / n_valid).sqrt()
        return self.value_features(self.user_encoder(_squash(user.float())), v, valid, mean_v, std_v)

    def forward(
        self, user: torch.Tensor, candidates: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores a batch of requests.

        Args:
            user: (B, U) user features.
            candidates: (B, N, F) candidate features (the last column is the source id).
            mask: (B, N), nonzero where the candidate is valid.

        Returns:
            Packed distribution inputs (B, N) (pointwise) or (B, N * (1 + d) + 1)
            (sequential: scores, unit content keys, beta), and embeddings (B, H_u + H)
            for the value head.
        """
        user = user.float()
        cand = candidates.float()
        valid = (mask > 0).float()
        u = self.user_encoder(_squash(user))
        v = cand[..., self.value_col]
        n_valid = valid.sum(-1, keepdim=True).clamp(min=1.0)
        mean_v = (v * valid).sum(-1, keepdim=True) / n_valid
        std_v = (((v - mean_v) ** 2 * valid).sum(-1, keepdim=True) / n_valid).sqrt()
        v_std = (v - mean_v) / (std_v + 1e-3)
        source = cand[..., -1].long().clamp(0, self.n_sources - 1)
        first = nn.functional.linear(cand, self.cand_in.weight * self.feature_mask, self.cand_in.bias)
        first = first + self.user_to_cand(u)[:, None, :] + self.source_in(source)
        hid = torch.relu(first + v_std[..., None] * self.value_to_cand)
        hid = torch.relu(self.cand_hidden(hid))
        scores = self.cand_out(hid)[..., 0] + self.prior * v_std
        scores = scores.masked_fill(valid == 0, MASKED_SCORE)
        # The value head reads the user encoding and three summaries of the candidates'
        # value scores: cheap, so that RLlib's value pass over a whole train batch (GAE)
        # needs no candidate MLP.
        embeddings = self.value_features(u, v, valid, mean_v, std_v)
        if self.variant == "sequential":
            keys = nn.functional.normalize(cand[..., : self.embed_dim], dim=-1)
            beta = torch.exp((BETA_SCALE * self.log_beta + self.beta_head(u)).clamp(max=10.0))[..., 0]
            return SlateDistribution.pack(scores, keys, beta), embeddings
        return scores, embeddings


class SlateRLModule(TorchRLModule, ValueFunctionAPI, TargetNetworkAPI):
    """Scores N candidates per request and emits an ordered slate of K (see the module doc)."""

    @override(RLModule)
    def setup(self) -> None:
        c = self.model_config
        self.k = int(c["slate_size"])
        self.pi = SlateScoreNet(c, int(self.observation_space["user"].shape[0]))
        self.value_head = nn.Sequential(
            nn.Linear(self.pi.out_dim, int(c["value_hidden"])), nn.ReLU(), nn.Linear(int(c["value_hidden"]), 1)
        )
        key_dim = self.pi.embed_dim if self.pi.variant == "sequential" else 0
        self.action_dist_cls = slate_distribution_cls(self.k, key_dim)

    def _encode(self, obs: Mapping[str, torch.Tensor], net: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return (net or self.pi)(obs["user"], obs["candidates"], obs["mask"])

    @override(TorchRLModule)
    def _forward(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        dist_inputs, _ = self._encode(batch[Columns.OBS])
        return {Columns.ACTION_DIST_INPUTS: dist_inputs}

    @override(TorchRLModule)
    def _forward_train(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        dist_inputs, embeddings = self._encode(batch[Columns.OBS])
        return {Columns.ACTION_DIST_INPUTS: dist_inputs, Columns.EMBEDDINGS: embeddings}

    @override(ValueFunctionAPI)
    def compute_values(self, batch: dict[str, Any], embeddings: Any = None) -> torch.Tensor:
        if embeddings is None:
            obs = batch[Columns.OBS]
            embeddings = self.pi.encode_user(obs["user"], obs["candidates"], obs["mask"])
        return self.value_head(embeddings)[..., 0]

    @override(TargetNetworkAPI)
    def make_target_networks(self) -> None:
        self._target_pi = make_target_network(self.pi)

    @override(TargetNetworkAPI)
    def get_target_network_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.pi, self._target_pi)]

    @override(TargetNetworkAPI)
    def forward_target(self, batch: dict[str, Any]) -> dict[str, Any]:
        dist_inputs, _ = self._encode(batch[Columns.OBS], self._target_pi)
        return {TARGET_NETWORK_ACTION_DIST_INPUTS: dist_inputs}


def greedy_slates(module: SlateRLModule, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Deterministic slates (B, K) of a module for a batch of observations (no gradient)."""
    with torch.no_grad():
        dist_inputs, _ = module._encode(obs)
        return module.action_dist_cls.from_logits(dist_inputs).to_deterministic().sample()
