"""Env throughput and memory: batched user-steps per second under random valid slates.

Times ``FeedVectorEnv.step`` alone (slates are drawn outside the timed region), after a
warm-up that compiles the numba kernels. Prints one JSON line with ``user_steps_per_s``
and ``peak_rss_mb`` (peak resident memory of the process), plus the breakdown of a step.

Usage:
    python benchmarks/bench_env.py                                   # B=1024, N=200, K=8, 100k items
    python benchmarks/bench_env.py --users 4096 --items 1000000      # the 1M-item target
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from envs.feed_env import FeedVectorEnv  # noqa: E402


def random_slates(rng: np.random.Generator, mask: np.ndarray, k: int) -> np.ndarray:
    """K distinct valid positions per row, uniformly at random."""
    keys = np.where(mask != 0, rng.random(mask.shape, dtype=np.float32), -1.0)
    return np.argpartition(-keys, k - 1, axis=1)[:, :k]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=1024)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--candidates", type=int, default=200)
    ap.add_argument("--slate", type=int, default=8)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", action="store_true", help="also time the parts of a step")
    args = ap.parse_args()
    overrides = {
        "catalog.n_items": args.items,
        "retrieval.n_candidates": args.candidates,
        "slate_size": args.slate,
    }
    t0 = time.perf_counter()
    env = FeedVectorEnv(num_envs=args.users, overrides=overrides)
    obs, _ = env.reset(seed=args.seed)
    build_s = time.perf_counter() - t0
    rng = np.random.default_rng(args.seed)
    for _ in range(args.warmup):
        obs, *_ = env.step(random_slates(rng, obs["mask"], args.slate))
    elapsed = 0.0
    for _ in range(args.steps):
        a = random_slates(rng, obs["mask"], args.slate)
        t = time.perf_counter()
        obs, *_ = env.step(a)
        elapsed += time.perf_counter() - t
    result = {
        "user_steps_per_s": round(args.users * args.steps / elapsed, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
        "users": args.users,
        "items": args.items,
        "candidates": args.candidates,
        "slate": args.slate,
        "steps": args.steps,
        "step_ms": round(1000 * elapsed / args.steps, 3),
        "reset_s": round(build_s, 2),
    }
    if args.profile:
        result["breakdown_ms"] = profile(env, rng, args)
    print(json.dumps(result))
    return 0


def profile(env: FeedVectorEnv, rng: np.random.Generator, args: argparse.Namespace) -> dict[str, float]:
    """Mean milliseconds per step of each stage of the simulator."""
    from envs._rng import draw_seed
    from envs.ranking import build_observation
    from envs.response import respond

    sim = env.sim
    parts = {"respond": 0.0, "record+advance": 0.0, "retrieve": 0.0, "features": 0.0}
    active = np.ones(args.users, np.bool_)
    n = 50
    for _ in range(n):
        a = random_slates(rng, sim.obs.mask, args.slate)
        items = np.take_along_axis(sim.obs.item_ids, a, axis=1).astype(np.int32)
        t = time.perf_counter()
        out = respond(sim, items, active, draw_seed(sim.rng))
        parts["respond"] += time.perf_counter() - t
        t = time.perf_counter()
        seen = out["seen"]
        sim.catalog.record(items, seen, out["flags"][..., 0], out["flags"][..., 2])
        sim.catalog.advance(sim.cfg.catalog.world_h_per_step, sim.rng)
        parts["record+advance"] += time.perf_counter() - t
        done = out["churned"] | (sim.users.clock_h >= sim.cfg.horizon_h)
        sim.spawn(done)
        t = time.perf_counter()
        cand, src, valid = sim.retriever.retrieve(active, draw_seed(sim.rng))
        parts["retrieve"] += time.perf_counter() - t
        t = time.perf_counter()
        build_observation(sim, cand, src)
        parts["features"] += time.perf_counter() - t
        sim.obs.item_ids[:] = cand
        sim.obs.mask[:] = valid
    return {k: round(1000 * v / n, 3) for k, v in parts.items()}


if __name__ == "__main__":
    raise SystemExit(main())
