"""The simulate job: a simulated A/B test of the baseline re-rankers on one seeded cohort.

Every policy meets the same users in the same world (``envs.cohort.run_cohort`` with one
seed), so the columns of the table differ only by what the policies put in the slates.
Per-user metrics are summarised with 95% percentile-bootstrap intervals over users.

A run writes, under its run directory (``<simulate.out_dir>/<YYYYmmdd-HHMMSS>/`` unless
one is given):

- ``config.yaml``: the resolved config (written first, so it also names a failed run);
- ``results.json``: ``{policy: {metric: {"mean", "ci_low", "ci_high"}}}``;
- ``results.md``: the same table in Markdown, with the cohort and timing.

Every file is written atomically, so a killed run never leaves half a file.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path

import numpy as np

from envs.cohort import run_cohort
from rl_fyp.baselines import GreedyPolicy, MMRPolicy, SlatePolicy
from rl_fyp.config import Config, config_hash, save_config, write_text_atomic
from rl_fyp.stats import CI_HIGH, CI_LOW, MEAN, summarise

__all__ = [
    "METRICS",
    "RESULTS_JSON",
    "RESULTS_MD",
    "RUN_CONFIG",
    "Results",
    "format_table",
    "make_policy",
    "make_run_dir",
    "simulate",
]

Results = dict[str, dict[str, dict[str, float | None]]]
"""``{policy: {metric: {"mean": m, "ci_low": lo, "ci_high": hi}}}`` (None where undefined)."""

METRICS = (
    "days_active",
    "next_day_return",
    "sessions",
    "watch_time_s",
    "videos",
    "engagement_per_request",
    "mean_watch_ratio",
    "fast_skip_rate",
    "likes",
    "shares",
    "comments",
    "follows",
    "not_interested_rate",
    "churned",
)
"""Per-user cohort metrics reported, in table row order."""

RUN_CONFIG = "config.yaml"
RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"

CONFIDENCE = 0.95
"""Confidence level of the reported intervals."""

# Bootstrap draws come from their own stream of the run seed, apart from the simulation's.
_BOOTSTRAP_STREAM = 0xB0075


def _print(msg: str) -> None:
    print(msg, flush=True)


def make_policy(name: str, cfg: Config) -> SlatePolicy:
    """Builds a baseline policy by name.

    Args:
        name: One of ``rl_fyp.config.POLICY_NAMES``.
        cfg: The run config (the env config sets K and the feature layout).

    Returns:
        A callable mapping an observation batch to (B, K) slates.

    Raises:
        ValueError: For an unknown name.
    """
    if name == "greedy":
        return GreedyPolicy(cfg.env)
    if name == "mmr":
        return MMRPolicy(cfg.env, cfg.simulate.mmr_lambda)
    raise ValueError(f"unknown policy {name!r}")


def make_run_dir(base: str | Path) -> Path:
    """Creates a new run directory ``<base>/<YYYYmmdd-HHMMSS>`` (``-1``, ``-2``... if taken).

    Args:
        base: Parent directory, created if absent.

    Returns:
        The new, empty directory.
    """
    base = Path(base)
    base.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for i in range(1000):
        path = base / (stamp if i == 0 else f"{stamp}-{i}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"could not create a fresh run directory under {base}")


def _summarise_policy(per_user: Mapping[str, np.ndarray], seed: int, n_boot: int) -> dict[str, dict[str, float | None]]:
    finite = {k: v for k, v in per_user.items() if np.all(np.isfinite(v))}
    # The same seed for every policy: the cohorts are the same users, so each metric is
    # resampled with the same user indices under every policy (paired intervals).
    rng = np.random.default_rng([seed, _BOOTSTRAP_STREAM])
    stats = summarise(finite, rng, n_boot=n_boot, alpha=1.0 - CONFIDENCE)
    out: dict[str, dict[str, float | None]] = {}
    for name in per_user:
        out[name] = dict(stats[name]) if name in stats else {MEAN: None, CI_LOW: None, CI_HIGH: None}
    return out


def _decimals(values: list[float]) -> int:
    top = max((abs(v) for v in values), default=0.0)
    if top >= 1000:
        return 0
    if top >= 100:
        return 1
    if top >= 10:
        return 2
    if top >= 1:
        return 3
    return 4


def _cells(results: Results, metric: str) -> list[str]:
    values = [
        v
        for per_metric in results.values()
        for v in per_metric.get(metric, {}).values()
        if v is not None and math.isfinite(v)
    ]
    d = _decimals(values)
    cells = []
    for per_metric in results.values():
        s = per_metric.get(metric)
        if s is None or s[MEAN] is None:
            cells.append("n/a")
        else:
            cells.append(f"{s[MEAN]:.{d}f} [{s[CI_LOW]:.{d}f}, {s[CI_HIGH]:.{d}f}]")
    return cells


def _metrics_of(results: Results) -> list[str]:
    seen: dict[str, None] = {}
    for per_metric in results.values():
        seen.update(dict.fromkeys(per_metric))
    return list(seen)


def format_table(results: Results, markdown: bool = False) -> str:
    """Formats results as a table: one row per metric, one ``mean [lo, hi]`` column per policy.

    Args:
        results: ``{policy: {metric: {"mean", "ci_low", "ci_high"}}}``.
        markdown: A Markdown table instead of aligned plain text.

    Returns:
        The table, without a trailing newline.
    """
    header = ["metric", *results]
    rows = [[m, *_cells(results, m)] for m in _metrics_of(results)]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * len(results)) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(r: list[str]) -> str:
        return "  ".join([r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])])

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *map(line, rows)])


def _markdown_report(cfg: Config, results: Results, timings: Mapping[str, tuple[int, float]]) -> str:
    s, e = cfg.simulate, cfg.env
    lines = [
        "# rl-fyp simulate",
        "",
        f"- Cohort: {s.n_users} users, seed {cfg.seed}, horizon {e.horizon_days:g} days, "
        f"{e.catalog.n_items} videos, {e.retrieval.n_candidates} candidates, slate of {e.slate_size}.",
        f"- Config: `{RUN_CONFIG}` (config_hash `{config_hash(cfg)}`).",
        f"- Intervals: {CONFIDENCE:.0%} percentile bootstrap over users ({s.n_boot} resamples), "
        "the same resampled users for every policy.",
        "",
        format_table(results, markdown=True),
        "",
        "| policy | steps | seconds |",
        "|---|---:|---:|",
        *(f"| {p} | {steps} | {secs:.1f} |" for p, (steps, secs) in timings.items()),
        "",
    ]
    return "\n".join(lines)


def simulate(
    cfg: Config,
    out_dir: str | Path | None = None,
    *,
    log: Callable[[str], None] = _print,
) -> Results:
    """Runs the cohort under each policy of ``cfg.simulate.policies`` and reports metrics.

    Args:
        cfg: The run config.
        out_dir: Directory for the run's files (created if absent); ``None`` for a new
            timestamped directory under ``cfg.simulate.out_dir``.
        log: Receives progress lines and the final table.

    Returns:
        ``{policy: {metric: {"mean", "ci_low", "ci_high"}}}``, as written to
        ``results.json``.
    """
    s = cfg.simulate
    if out_dir is None:
        run_dir = make_run_dir(s.out_dir)
    else:
        run_dir = Path(out_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / RUN_CONFIG)
    log(
        f"simulate: {s.n_users} users x {cfg.env.horizon_days:g} days, seed {cfg.seed}, "
        f"policies {', '.join(s.policies)}, config_hash {config_hash(cfg)} -> {run_dir}"
    )

    results: Results = {}
    timings: dict[str, tuple[int, float]] = {}
    for name in s.policies:
        policy = make_policy(name, cfg)
        t0 = time.perf_counter()
        # The metrics are the evaluation objective, independent of cfg.reward.
        cohort = run_cohort(cfg.env, policy, s.n_users, cfg.seed)
        secs = time.perf_counter() - t0
        timings[name] = (cohort.steps, secs)
        log(f"  {name}: {cohort.steps} steps, {secs:.1f} s")
        missing = [m for m in METRICS if m not in cohort.per_user]
        if missing:
            log(f"  note: the cohort did not report {', '.join(missing)}")
        per_user = {m: cohort.per_user[m] for m in METRICS if m in cohort.per_user}
        results[name] = _summarise_policy(per_user, cfg.seed, s.n_boot)
        undefined = [m for m, v in results[name].items() if v[MEAN] is None]
        if undefined:
            log(f"  note: {name} has non-finite values in {', '.join(undefined)} (reported as n/a)")

    log("")
    log(f"mean [{CONFIDENCE:.0%} CI] per user, {s.n_users} users")
    log(format_table(results))
    write_text_atomic(run_dir / RESULTS_JSON, json.dumps(results, indent=2, allow_nan=False) + "\n")
    write_text_atomic(run_dir / RESULTS_MD, _markdown_report(cfg, results, timings))
    log("")
    log(f"wrote {run_dir / RESULTS_JSON}, {RESULTS_MD}, {RUN_CONFIG}")
    return results
