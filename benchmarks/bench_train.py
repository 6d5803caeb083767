"""End-to-end training throughput: env steps per second and where the iteration time goes.

Builds the training algorithm from a config (default: configs/default.yaml, N=200
candidates, K=8), runs one warm-up iteration (world build, first forward passes), then
times ``--iterations`` iterations and prints one JSON line:

- ``env_steps_per_s``: env steps sampled / wall time of the timed iterations (sampling and
  learning together: what a user of ``make train`` gets);
- ``sim_share``: the share of that wall time spent inside the simulator
  (``FeedVectorEnv.reset``/``step``, timed by ``rl_fyp.rllib_glue.EpisodeStats``); the rest
  is RLlib's sampling (policy forward passes, episode bookkeeping) and the learner.

Usage::

    .venv/bin/python benchmarks/bench_train.py [--iterations 5] [--config NAME] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=5, help="timed iterations (after one warm-up)")
    parser.add_argument("--config", default=None, help="config name or file (default: configs/default.yaml)")
    parser.add_argument("--set", dest="overrides", nargs="+", default=[], help="config overrides key=value")
    args = parser.parse_args()

    import ray
    import torch

    from rl_fyp.config import load_config
    from rl_fyp.rllib_glue import build_algo_config, register_env

    cfg = load_config(args.config, args.overrides)
    torch.set_num_threads(cfg.train.torch_threads)
    ray.init(address="local", num_cpus=cfg.train.num_cpus or None, include_dashboard=False, log_to_driver=False)
    try:
        register_env()
        algo = build_algo_config(cfg).build_algo()
        t0 = time.perf_counter()
        first = algo.train()
        warmup_s = time.perf_counter() - t0
        steps0 = first["env_runners"]["num_env_steps_sampled_lifetime"]
        sim_s = 0.0
        t0 = time.perf_counter()
        for _ in range(args.iterations):
            r = algo.train()
            sim_s += float(r["env_runners"].get("feed", {}).get("sim_s", 0.0))
        wall = time.perf_counter() - t0
        steps = r["env_runners"]["num_env_steps_sampled_lifetime"] - steps0
        algo.stop()
    finally:
        ray.shutdown()
    print(
        json.dumps(
            {
                "algo": cfg.train.algo,
                "variant": cfg.model.variant,
                "n_candidates": cfg.env.retrieval.n_candidates,
                "slate_size": cfg.env.slate_size,
                "num_envs": cfg.train.num_envs_per_env_runner,
                "train_batch_size": cfg.train.train_batch_size,
                "iterations": args.iterations,
                "env_steps": int(steps),
                "wall_s": round(wall, 2),
                "env_steps_per_s": round(steps / wall, 1),
                "sim_s": round(sim_s, 2),
                "sim_share": round(sim_s / wall, 4),
                "warmup_iteration_s": round(warmup_s, 1),
                "torch_threads": cfg.train.torch_threads,
            }
        )
    )


if __name__ == "__main__":
    main()
