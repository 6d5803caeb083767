"""A trained slate module as a policy with the baselines' interface, and loading it.

:class:`ModulePolicy` maps a batch of observations (numpy, as the env returns them) to
(B, K) slates with the module's deterministic inference (top K, or the greedy
slot-by-slot pick of the slate-aware variant), so a trained policy runs in
:func:`rl_fyp.evaluate.evaluate_policies` next to the baselines.
:class:`ExportedPolicy` does the same with an exported model on the serving runtime
(onnxruntime, plus its business rules), so the A/B test can check what will be served.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rl_fyp.slate_module import SlateRLModule, greedy_slates

__all__ = ["MODULE_SUBDIR", "ExportedPolicy", "ModulePolicy", "load_module", "module_dir"]

MODULE_SUBDIR = Path("learner_group") / "learner" / "rl_module" / "default_policy"
"""Where an RLlib algorithm checkpoint keeps the policy's RLModule."""


def module_dir(checkpoint: str | Path) -> Path:
    """The RLModule directory inside an algorithm checkpoint (or the path itself if it is one).

    Raises:
        FileNotFoundError: If neither ``checkpoint`` nor its module subdirectory holds a module.
    """
    path = Path(checkpoint)
    for cand in (path / MODULE_SUBDIR, path):
        if (cand / "module_state.pt").exists() or (cand / "class_and_ctor_args.pkl").exists():
            return cand
    raise FileNotFoundError(f"{checkpoint}: not an rl-fyp checkpoint (no {MODULE_SUBDIR} inside)")


def load_module(checkpoint: str | Path) -> SlateRLModule:
    """Loads the slate module of a training checkpoint, without Ray running.

    Args:
        checkpoint: An algorithm checkpoint directory (``.../checkpoints/iter_000060``) or
            its RLModule directory.

    Returns:
        The module, in eval mode.
    """
    from ray.rllib.core.rl_module.rl_module import RLModule

    module = RLModule.from_checkpoint(module_dir(checkpoint))
    if not isinstance(module, SlateRLModule):
        raise TypeError(f"{checkpoint}: holds a {type(module).__name__}, not a SlateRLModule")
    module.eval()
    return module


class ModulePolicy:
    """A slate module behind the baselines' interface: observation batch -> (B, K) slates.

    Args:
        module: The trained module.
        name: The policy's name in results (the algorithm, lower case).
        batch_size: Requests per forward pass (bounds memory on big cohorts).
    """

    def __init__(self, module: SlateRLModule, name: str = "ppo", batch_size: int = 4096) -> None:
        self.module = module.eval()
        self.name = name
        self.batch_size = batch_size

    def __call__(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        mask = obs["mask"]
        # Rows without a valid candidate are slots with no request (a finished user in a
        # cohort): they get positions 0..K-1, which the caller ignores, and cost nothing.
        rows = np.flatnonzero(mask.any(axis=1))
        out = np.broadcast_to(np.arange(self.module.k, dtype=np.int64), (mask.shape[0], self.module.k)).copy()
        with torch.inference_mode():
            for lo in range(0, len(rows), self.batch_size):
                idx = rows[lo : lo + self.batch_size]
                part = {k: torch.from_numpy(obs[k][idx]) for k in ("user", "candidates", "mask")}
                out[idx] = greedy_slates(self.module, part).numpy()
        return out


class ExportedPolicy:
    """An exported re-ranker (:class:`rl_fyp.serving.Reranker`) behind the baselines' interface.

    With business rules that need candidate creators or topics, the policy reads them
    from the simulator's catalog (``needs_sim``), as a production feed reads them from
    its video store.

    Args:
        reranker: The loaded export.
        name: The policy's name in results.
        batch_size: Requests per model call.
    """

    def __init__(self, reranker: Any, name: str = "ppo", batch_size: int = 4096) -> None:
        self.reranker = reranker
        self.name = name
        self.batch_size = batch_size
        self.needs_sim = reranker.rules.needs_creator or reranker.rules.needs_topic

    def __call__(self, obs: Mapping[str, np.ndarray], sim: Any = None) -> np.ndarray:
        mask = obs["mask"]
        k = self.reranker.slate_size
        rows = np.flatnonzero(mask.any(axis=1))  # slots with a request (see ModulePolicy)
        out = np.broadcast_to(np.arange(k, dtype=np.int64), (mask.shape[0], k)).copy()
        for lo in range(0, len(rows), self.batch_size):
            idx = rows[lo : lo + self.batch_size]
            meta = {}
            if self.needs_sim:
                items = np.maximum(sim.obs.item_ids[idx], 0)
                meta = {"creator": sim.catalog.creator[items], "topic": sim.catalog.topic[items]}
            out[idx], _ = self.reranker.rerank(obs["user"][idx], obs["candidates"][idx], mask[idx], **meta)
        return out
