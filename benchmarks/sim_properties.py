"""Print the properties the simulator must have, with 95% bootstrap CIs over a seeded cohort.

1. Short-term vs long-term tension: greedy-by-value-score earns more immediate engagement
   per request than MMR, but fewer days active per user over the horizon.
2. Exploration pays off for users whose interests the platform's estimate has not
   discovered (the sign-up missed at least one of their true topics), measured as the
   paired difference explore - greedy on the same users.
3. Cold start: the cosine between the platform's estimate of a new user and their true
   interests, by videos watched, under greedy (a sensible policy).

Usage: python benchmarks/sim_properties.py [--users 2000] [--seed 0] [--set key=value ...] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from envs.cohort import run_cohort  # noqa: E402
from envs.feed_env import make_env_config  # noqa: E402
from rl_fyp.baselines import ExplorePolicy, GreedyPolicy, MMRPolicy  # noqa: E402


def ci(x: np.ndarray, rng: np.random.Generator, n_boot: int = 2000) -> tuple[float, float, float]:
    """Mean and 95% percentile-bootstrap CI."""
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    idx = rng.integers(0, len(x), (n_boot, len(x)))
    means = x[idx].mean(axis=1)
    return float(x.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def fmt(t: tuple[float, float, float]) -> str:
    return f"{t[0]:8.3f} [{t[1]:.3f}, {t[2]:.3f}]"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mmr-lambda", type=float, default=0.5)
    ap.add_argument("--explore-share", type=float, default=0.1)
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="env config overrides")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    args = ap.parse_args()
    cfg = make_env_config(None, args.set)
    rng = np.random.default_rng(12345)
    policies = {
        "greedy": GreedyPolicy(cfg),
        "mmr": MMRPolicy(cfg, args.mmr_lambda),
        "explore": ExplorePolicy(cfg, args.explore_share, seed=args.seed),
    }
    runs = {}
    for name, pol in policies.items():
        t0 = time.time()
        runs[name] = run_cohort(cfg, pol, args.users, args.seed, similarity_every=10, similarity_until=100)
        if not args.json:
            print(f"# {name}: {runs[name].steps} steps, {time.time() - t0:.1f} s", file=sys.stderr)
    out: dict = {"users": args.users, "seed": args.seed}

    # 1. Tension.
    tension = {}
    for name in ("greedy", "mmr"):
        pu = runs[name].per_user
        tension[name] = {m: ci(pu[m], rng) for m in (
            "engagement_per_request", "days_active", "watch_time_s", "sessions", "next_day_return", "churned")}
    g, m = tension["greedy"], tension["mmr"]
    holds = g["engagement_per_request"][1] > m["engagement_per_request"][2] and g["days_active"][2] < m["days_active"][1]
    out["tension"] = {"metrics": tension, "holds": bool(holds)}

    # 2. Exploration payoff, paired on the same users.
    att = runs["greedy"].attributes
    undiscovered = att["signup_coverage"] < 1.0
    explore = {}
    for group, sel in (("undiscovered", undiscovered), ("discovered", ~undiscovered), ("all", np.ones_like(undiscovered))):
        row = {"users": int(sel.sum())}
        for metric in ("days_active", "watch_time_s", "engagement_per_request"):
            diff = runs["explore"].per_user[metric][sel] - runs["greedy"].per_user[metric][sel]
            row[metric + "_diff"] = ci(diff, rng)
            row[metric + "_greedy"] = ci(runs["greedy"].per_user[metric][sel], rng)
        explore[group] = row
    out["exploration"] = explore

    # 3. Cold start: estimate-truth cosine by videos watched.
    cold = {}
    for name in ("greedy", "explore", "mmr"):
        s = runs[name].est_similarity
        cold[name] = {int(10 * c): ci(s[c][np.isfinite(s[c])], rng) for c in range(s.shape[0]) if np.isfinite(s[c]).sum() > 10}
    out["cold_start"] = cold

    if args.json:
        print(json.dumps(out))
        return 0
    print(f"\n## 1. Short-term vs long-term tension ({args.users} users, mean [95% CI])")
    print(f"{'metric':26s} {'greedy':>26s} {'mmr(lambda=%.2f)' % args.mmr_lambda:>26s}")
    for metric in g:
        print(f"{metric:26s} {fmt(g[metric]):>26s} {fmt(m[metric]):>26s}")
    print(f"tension holds (greedy > mmr on engagement/request, < on days active, CIs apart): {holds}")
    print(f"\n## 2. Exploration ({args.explore_share:.0%} of slots) minus greedy, paired on the same users")
    for group, row in explore.items():
        print(f"{group:13s} n={row['users']:5d}  days_active {fmt(row['days_active_diff'])}  "
              f"watch_time_s {fmt(row['watch_time_s_diff'])}  engagement/request {fmt(row['engagement_per_request_diff'])}")
    print("\n## 3. Cold start: cos(platform estimate, true interests) by videos watched")
    for name, series in cold.items():
        print(f"{name:8s} " + "  ".join(f"{k:3d}:{v[0]:.3f}" for k, v in series.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
