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
or mismatched model (:mod:`rl_fyp.serving`). ``config.yaml`` is the training config, so
``rl-fyp evaluate EXPORT_DIR`` reruns the A/B test on the exported model itself. Every
export checks itself against the module before it lands (:func:`verify_export`).

Both exporters are PyTorch's own: ``torch.onnx.export`` (the TorchScript-based exporter,
opset 17, one self-contained file) and ``torch.jit.trace``.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from envs.features import FeatureSpec, candidate_feature_names, feature_schema, user_feature_names
from rl_fyp.config import Config, config_hash, load_config, save_config, write_text_atomic
from rl_fyp.slate_distribution import MASKED_SCORE
from rl_fyp.serving import EXPORT_CONFIG, FORMAT_VERSION, MANIFEST, MODEL_ONNX, MODEL_TS, sha256
from rl_fyp.slate_module import SlateRLModule, SlateScoreNet

__all__ = ["MANIFEST", "MODEL_ONNX", "MODEL_TS", "ExportError", "SlateInference", "export_checkpoint", "export_policy", "verify_export"]

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


def export_policy(
    module: SlateRLModule, cfg: Config, out_dir: str | Path, *, model_version: str = "", verify_requests: int = 256
) -> dict[str, Any]:
    """Writes ``model.onnx``, ``model.pt``, ``config.yaml`` and ``manifest.json`` for a trained module.

    The directory is written next to its destination and renamed into place, so a crash
    leaves either the previous export or the new one, never half of one. Before the
    rename, the export checks itself: on ``verify_requests`` simulated requests the
    onnxruntime and TorchScript slates must equal the module's and their scores agree
    within ``SCORE_TOLERANCE``; the figures go into the manifest (``parity``).

    Args:
        module: The trained slate module.
        cfg: The config it was trained under (feature layout, K, config hash).
        out_dir: Destination directory (replaced if it exists).
        model_version: A name for this model (default: the config hash).
        verify_requests: Simulated requests of the self-check (0 skips it).

    Returns:
        The manifest.

    Raises:
        ExportError: If the exported model does not reproduce the module.
    """
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        manifest = _write_export(module, cfg, tmp, model_version)
        if verify_requests:
            manifest["parity"] = verify_export(module, cfg, tmp, verify_requests)
            write_text_atomic(tmp / MANIFEST, json.dumps(manifest, indent=2) + "\n")
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        if out.exists():
            out.rename(old)
        tmp.rename(out)
        if old.exists():
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return manifest


def _write_export(module: SlateRLModule, cfg: Config, out: Path, model_version: str) -> dict[str, Any]:
    from rl_fyp import __version__

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
    save_config(cfg, out / EXPORT_CONFIG)
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
        "files": {name: sha256(out / name) for name in (MODEL_ONNX, MODEL_TS, EXPORT_CONFIG)},
    }
    write_text_atomic(out / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return manifest


SCORE_TOLERANCE = 1e-5
"""Largest score difference the export's self-check accepts between the module and a runtime."""


class ExportError(RuntimeError):
    """An exported model does not reproduce the trained module."""


def verify_export(module: SlateRLModule, cfg: Config, out: str | Path, n_requests: int = 256) -> dict[str, Any]:
    """Checks an export against its module on simulated requests.

    The module's deterministic slates (the RLlib distribution's, as in the A/B test)
    must equal the onnxruntime and TorchScript slates, and the runtimes' scores must be
    within :data:`SCORE_TOLERANCE` of the eager graph's on every valid candidate.

    Returns:
        ``{"requests", "n_candidates", "slates_identical", "max_score_diff_onnx",
        "max_score_diff_torchscript"}``.

    Raises:
        ExportError: On a different slate or a score difference above the tolerance.
    """
    from envs.feed_env import FeedVectorEnv
    from rl_fyp.policy import ModulePolicy
    from rl_fyp.serving import Reranker

    env = FeedVectorEnv(num_envs=n_requests, config=cfg.env)
    obs, _ = env.reset(seed=cfg.seed)
    expected = ModulePolicy(module)(obs)
    with torch.no_grad():
        _, eager = SlateInference(module.pi, module.k).eval()(*(torch.from_numpy(obs[k]) for k in ("user", "candidates", "mask")))
    valid = obs["mask"] != 0
    report: dict[str, Any] = {"requests": n_requests, "n_candidates": int(obs["mask"].shape[1]), "slates_identical": True}
    for backend in ("onnx", "torchscript"):
        slates, scores = Reranker.load(out, backend=backend).rerank(obs["user"], obs["candidates"], obs["mask"])
        diff = float(np.abs(scores[valid] - eager.numpy()[valid]).max())
        report[f"max_score_diff_{backend}"] = diff
        if not np.array_equal(slates, expected):
            bad = int(np.flatnonzero((slates != expected).any(axis=1))[0])
            raise ExportError(f"{backend} slate of request {bad} is {slates[bad].tolist()}, the module's {expected[bad].tolist()}")
        if diff > SCORE_TOLERANCE:
            raise ExportError(f"{backend} scores differ from the module's by {diff:.2e} > {SCORE_TOLERANCE:g}")
    return report


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Exports the policy of a training checkpoint (see :func:`export_policy`)."""
    from rl_fyp.policy import load_module
    from rl_fyp.training import CHECKPOINT_CONFIG

    checkpoint = Path(checkpoint)
    cfg = load_config(checkpoint / CHECKPOINT_CONFIG)
    return export_policy(load_module(checkpoint), cfg, out_dir, model_version=f"{checkpoint.name}-{config_hash(cfg)}")
