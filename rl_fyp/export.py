"""Export a trained slate policy as a standalone re-ranking model: ONNX, TorchScript, manifest.

The exported graph is the policy's deterministic inference, the same slates that
:class:`rl_fyp.policy.ModulePolicy` returns in the A/B evaluation:

    inputs:  user (B, U) float32, candidates (B, N, F) float32, mask (B, N) int8
    outputs: slate (B, K) int64 candidate positions, best first;
             scores (B, N) float32 policy scores (masked candidates at -1e9)

B and N are dynamic (any N >= K). ``manifest.json`` records the model version, the
rl-fyp version, K, the variant, the feature schema (names, order, dtypes, shapes, what
each feature means and how it is normalised), the feature builder's layout (so serving
builds features from raw records with the simulator's code, :mod:`envs.features`), the
training config's hash and the SHA-256 of every file, so a loader can refuse a tampered
or mismatched model (:mod:`rl_fyp.serving`).

Both exporters are PyTorch's own: ``torch.onnx.export`` (the TorchScript-based exporter,
opset 17, one self-contained file) and ``torch.jit.trace``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from envs.features import FeatureSpec, candidate_feature_names, feature_schema, user_feature_names
from rl_fyp.config import Config, config_hash, load_config, write_text_atomic
from rl_fyp.slate_distribution import MASKED_SCORE
from rl_fyp.serving import FORMAT_VERSION, MANIFEST, MODEL_ONNX, MODEL_TS, sha256
from rl_fyp.slate_module import SlateRLModule, SlateScoreNet

__all__ = ["MANIFEST", "MODEL_ONNX", "MODEL_TS", "SlateInference", "export_policy", "sha256"]

OPSET = 17


class SlateInference(nn.Module):
    """The policy's deterministic slate as a plain, traceable module.

    Sequential picks are written without scatters or shape-derived Python ints, so the
    traced graph keeps B and N dynamic.

    Args:
        net: The trained policy network.
        k: Slate size K.
    """

    def __init__(self, net: SlateScoreNet, k: int) -> None:
        super().__init__()
        self.net = net
        self.k = int(k)
        self.sequential = net.variant == "sequential"

    def forward(self, user: torch.Tensor, candidates: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        packed, _ = self.net(user, candidates, mask)
        if not self.sequential:
            scores = packed
            return torch.topk(scores, self.k, dim=-1).indices, scores
        n = candidates.shape[1]
        d = self.net.embed_dim
        scores = packed[:, :n]
        keys = packed[:, n : n * (1 + d)].reshape(packed.shape[0], n, d)
        beta = packed[:, -1:]
        positions = torch.arange(n, device=scores.device)[None, :]
        picked = torch.zeros_like(scores, dtype=torch.bool)
        max_sim = torch.zeros_like(scores)
        picks = []
        for j in range(self.k):
            s = scores - beta * max_sim if j > 0 else scores
            pick = s.masked_fill(picked, MASKED_SCORE).argmax(dim=-1)
            picks.append(pick)
            picked = picked | (positions == pick[:, None])
            key = torch.gather(keys, 1, pick[:, None, None].expand(-1, 1, d))  # (B, 1, d)
            sim = torch.bmm(keys, key.transpose(1, 2))[..., 0]
            max_sim = sim if j == 0 else torch.maximum(max_sim, sim)
        return torch.stack(picks, dim=1), scores


def _example(module: SlateRLModule, batch: int = 2, n: int | None = None) -> tuple[torch.Tensor, ...]:
    space = module.observation_space
    n = n or space["candidates"].shape[0]
    f = space["candidates"].shape[1]
    g = torch.Generator().manual_seed(0)
    user = torch.rand(batch, space["user"].shape[0], generator=g)
    cand = torch.rand(batch, n, f, generator=g)
    cand[..., -1] = 0.0  # a valid source id
    return user, cand, torch.ones(batch, n, dtype=torch.int8)


def export_policy(module: SlateRLModule, cfg: Config, out_dir: str | Path, *, model_version: str = "") -> dict[str, Any]:
    """Writes ``model.onnx``, ``model.pt`` and ``manifest.json`` for a trained module.

    Args:
        module: The trained slate module.
        cfg: The config it was trained under (feature layout, K, config hash).
        out_dir: Destination directory (created if absent).
        model_version: A name for this model (default: the config hash).

    Returns:
        The manifest.
    """
    from rl_fyp import __version__

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    graph = SlateInference(module.pi, module.k).eval()
    example = _example(module)
    with torch.no_grad(), warnings.catch_warnings():
        # Both exporters are marked deprecated in favour of torch.export-based ones in
        # this torch; they remain the ones that write a single self-contained file.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            example,
            str(out / MODEL_ONNX),
            input_names=["user", "candidates", "mask"],
            output_names=["slate", "scores"],
            dynamic_axes={
                "user": {0: "batch"},
                "candidates": {0: "batch", 1: "n_candidates"},
                "mask": {0: "batch", 1: "n_candidates"},
                "slate": {0: "batch"},
                "scores": {0: "batch", 1: "n_candidates"},
            },
            opset_version=OPSET,
            dynamo=False,
        )
        traced = torch.jit.freeze(torch.jit.trace(graph, example, check_trace=False))
        traced.save(str(out / MODEL_TS))
    spec = FeatureSpec.from_env(cfg.env)
    u_names, c_names = user_feature_names(spec), candidate_feature_names(spec)
    schema = feature_schema(spec)
    manifest = {
        "format_version": FORMAT_VERSION,
        "model_version": model_version or config_hash(cfg),
        "rl_fyp_version": __version__,
        "config_hash": config_hash(cfg),
        "variant": module.pi.variant,
        "slate_size": module.k,
        "inputs": {
            "user": {
                "dtype": "float32",
                "shape": ["batch", len(u_names)],
                "features": list(u_names),
                "schema": schema["user"],
            },
            "candidates": {
                "dtype": "float32",
                "shape": ["batch", "n_candidates", len(c_names)],
                "features": list(c_names),
                "schema": schema["candidates"],
                "categorical": {"source": module.pi.n_sources},
            },
            "mask": {"dtype": "int8", "shape": ["batch", "n_candidates"], "meaning": "1 = valid candidate"},
        },
        "outputs": {
            "slate": {"dtype": "int64", "shape": ["batch", module.k], "meaning": "candidate positions, best first"},
            "scores": {"dtype": "float32", "shape": ["batch", "n_candidates"], "meaning": f"policy scores; masked = {MASKED_SCORE:g}"},
        },
        "normalisation": (
            "features as envs.features emits them (each feature's schema entry says how it is normalised); "
            "the model applies its own transforms on top"
        ),
        "feature_builder": spec.to_dict(),
        "files": {name: sha256(out / name) for name in (MODEL_ONNX, MODEL_TS)},
    }
    write_text_atomic(out / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return manifest


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Exports the policy of a training checkpoint (see :func:`export_policy`)."""
    from rl_fyp.policy import load_module
    from rl_fyp.training import CHECKPOINT_CONFIG

    checkpoint = Path(checkpoint)
    cfg = load_config(checkpoint / CHECKPOINT_CONFIG)
    return export_policy(load_module(checkpoint), cfg, out_dir, model_version=f"{checkpoint.name}-{config_hash(cfg)}")
