"""Sampling scale-out: env steps per second against the number of remote env runners.

For each runner count (default 1, 2, 4, capped at this machine's cores unless
``--runners`` names more), builds the training algorithm with that many remote env
runners (each one ``FeedVectorEnv`` of ``train.num_envs_per_env_runner`` users, one core,
one numba/BLAS/torch thread), samples one warm-up round (world build, numba, first
forward passes), then times ``--rounds`` rounds in which every runner samples
``--steps`` env steps with the current policy, all at once. Prints one JSON line per
runner count:

- ``sampled_env_steps_per_s``: env steps sampled by all runners / wall time (median round);
- ``per_runner_steps_per_s``: the same per runner;
- ``efficiency``: ``sampled_env_steps_per_s / (runners * sampled_env_steps_per_s at 1 runner)``;
  1.0 is linear scaling;
- ``cpus_per_runner`` and ``oversubscribed``: beyond the cores, runners get fractional
  CPUs and share them (so the efficiency drops by construction).

Learning is not timed: this measures what adding env runners buys the sampler (for
asynchronous IMPALA / APPO, about what it buys training while the learner keeps up).

Usage::

    .venv/bin/python benchmarks/bench_scaling.py [--runners 1 2 4] [--steps 4096] [--rounds 3]
                                                 [--config NAME] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")


def _sample_steps(runner: object, steps: int) -> int:
    episodes = runner.sample(num_timesteps=steps, random_actions=False)  # type: ignore[attr-defined]
    return int(sum(len(e) for e in episodes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cores = os.cpu_count() or 1
    parser.add_argument("--runners", type=int, nargs="+", default=None,
                        help=f"runner counts (default: 1, 2, 4 up to the {cores} cores here)")
    parser.add_argument("--steps", type=int, default=4096, help="env steps each runner samples per round")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per runner count (the median is reported)")
    parser.add_argument("--config", default=None, help="config name or file (default: configs/default.yaml)")
    parser.add_argument("--set", dest="overrides", nargs="+", default=[], help="config overrides key=value")
    args = parser.parse_args()
    counts = args.runners or [n for n in (1, 2, 4) if n <= cores] or [1]

    import ray

    from rl_fyp.cluster import THREAD_ENV_VARS
    from rl_fyp.config import load_config
    from rl_fyp.rllib_glue import build_algo_config, register_env

    env_vars = {**THREAD_ENV_VARS, "NUMBA_NUM_THREADS": "1"}  # one core per runner
    ray.init(address="local", num_cpus=cores, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": env_vars})
    base_rate = None
    try:
        register_env()
        for n in counts:
            cpus = min(1.0, cores / n)
            cfg = load_config(args.config, [*args.overrides, f"train.num_env_runners={n}",
                                            f"train.num_cpus_per_env_runner={cpus}", "train.torch_threads=1"])
            algo = build_algo_config(cfg).build_algo()
            try:
                group = algo.env_runner_group

                def round_() -> tuple[int, float]:
                    t0 = time.perf_counter()
                    done = group.foreach_env_runner(lambda r: _sample_steps(r, args.steps), local_env_runner=False)
                    return sum(done), time.perf_counter() - t0

                round_()  # warm-up
                timed = [round_() for _ in range(args.rounds)]
            finally:
                algo.stop()
            rates = [steps / wall for steps, wall in timed]
            rate = statistics.median(rates)
            base_rate = rate if n == counts[0] and counts[0] == 1 else base_rate
            print(json.dumps({
                "env_runners": n,
                "envs_per_runner": cfg.train.num_envs_per_env_runner,
                "n_candidates": cfg.env.retrieval.n_candidates,
                "slate_size": cfg.env.slate_size,
                "cpus_per_runner": round(cpus, 3),
                "cores": cores,
                "oversubscribed": n > cores,
                "steps_per_round": int(statistics.median(s for s, _ in timed)),
                "rounds": args.rounds,
                "sampled_env_steps_per_s": round(rate, 1),
                "per_runner_steps_per_s": round(rate / n, 1),
                "efficiency": None if base_rate is None else round(rate / (n * base_rate), 3),
                "rounds_steps_per_s": [round(r, 1) for r in rates],
            }), flush=True)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
