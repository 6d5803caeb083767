"""The simulated A/B test: every policy on one seeded cohort, with paired 95% bootstrap CIs.

Every policy meets the same users in the same world (``envs.cohort.run_cohort`` with one
seed), so the columns differ only by what the policies put in the slates. The baselines
come by name (``rl_fyp.baselines.make_policy``); trained policies come in as callables.

Steps of :func:`evaluate_policies`:

1. Tuning (``eval.tune_heuristics``): MMR's lambda over ``eval.mmr_lambda_grid`` and the
   exploration share over ``eval.explore_share_grid``, each value on a separate tuning
   cohort (``eval.tune_users`` users, a seed derived from ``seed`` by
   :func:`tuning_seed`), chosen by the mean of ``days_active`` (the first of equal
   values); the evaluation then runs the chosen values.
2. The evaluation cohort (``eval.n_users`` users, seed ``seed``) under every policy of
   ``eval.policies``, in order.
3. Summaries: means with 95% percentile-bootstrap intervals over users, and each
   policy's lift over greedy in percent. One set of resampled users
   (:class:`rl_fyp.stats.PairedBootstrap`) serves every metric of every policy, so the
   lifts' intervals are paired, and the cohort-level coverage metrics are resampled with
   the same users as the per-user means. Their replicates are rescaled to centre on the
   point estimate: resampling with replacement keeps only ~63% distinct users, which
   biases a count of distinct videos (creators) low, while their spread still measures
   how much coverage rests on particular users.

The run directory receives (each file written atomically):

- ``results.json``: ``{policy: {metric: {"mean", "ci_low", "ci_high"}}}``;
- ``lifts.json``: the same shape, in % over greedy (None where greedy's mean is 0);
- ``tuning.json``: the tuning grids and the chosen values (when tuning ran);
- ``results.md``: the tables, tuning, the best heuristic, the cohort and timings;
- ``plots/metrics.png``, ``plots/retention_by_day.png`` and, when the run directory has
  a trainer's ``progress.csv``, ``plots/learning_curve.png``.

The same config gives the same ``results.json``, ``lifts.json`` and ``tuning.json``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from envs.cohort import CohortResult, run_cohort
from rl_fyp.baselines import SlatePolicy, make_policy, needs_sim
from rl_fyp.config import BASELINE_NAMES, Config, config_hash, write_text_atomic
from rl_fyp.plots import RetentionCurve, plot_learning_curve, plot_metrics, plot_retention
from rl_fyp.stats import CI, CI_HIGH, CI_LOW, MEAN, PairedBootstrap

__all__ = [
    "COHORT_METRICS",
    "CONFIDENCE",
    "HEURISTIC_NAMES",
    "KEY_METRICS",
    "LIFTS_JSON",
    "METRICS",
    "PER_USER_METRICS",
    "PLOTS_DIR",
    "PROGRESS_CSV",
    "REFERENCE_POLICY",
    "RESULTS_JSON",
    "RESULTS_MD",
    "Results",
    "TUNING_JSON",
    "TUNING_METRIC",
    "best_heuristic",
    "evaluate_policies",
    "format_table",
    "make_run_dir",
    "tune_heuristics",
    "tuning_seed",
]

Results = dict[str, dict[str, dict[str, float | None]]]
"""``{policy: {metric: {"mean": m, "ci_low": lo, "ci_high": hi}}}`` (None where undefined)."""

PER_USER_METRICS = (
    "days_active",
    "next_day_return",
    "sessions",
    "watch_time_s",
    "videos",
    "engagement_per_request",
    "mean_watch_ratio",
    "completion_rate",
    "fast_skip_rate",
    "likes",
    "shares",
    "comments",
    "follows",
    "not_interested_rate",
    "churned",
    "intra_slate_diversity",
    "new_video_exposure",
)
"""Per-user metrics reported (``reward.metrics``), in table row order; ``churned`` is the churn rate."""
COHORT_METRICS = ("catalog_coverage", "creator_coverage")
"""Cohort-level metrics, after the per-user ones: distinct videos seen by the cohort over the
videos the catalog held during the run, and distinct creators seen over all creators."""
METRICS = PER_USER_METRICS + COHORT_METRICS
"""Every metric of ``results.json``, in order."""
KEY_METRICS = (
    "days_active",
    "watch_time_s",
    "next_day_return",
    "churned",
    "intra_slate_diversity",
    "catalog_coverage",
)
"""Metrics drawn in ``plots/metrics.png``."""

REFERENCE_POLICY = "greedy"
"""Lifts are relative to this policy: production ranking without re-ranking."""
TUNING_METRIC = "days_active"
"""What tuning maximises (its mean over the tuning cohort)."""
HEURISTIC_NAMES = tuple(n for n in BASELINE_NAMES if n not in ("oracle", "random"))
"""Deployable hand-written re-rankers: the bar a trained policy has to clear."""

RESULTS_JSON = "results.json"
LIFTS_JSON = "lifts.json"
TUNING_JSON = "tuning.json"
RESULTS_MD = "results.md"
PLOTS_DIR = "plots"
PROGRESS_CSV = "progress.csv"
"""The trainer's per-iteration CSV in the run directory (read for the learning curve)."""

CONFIDENCE = 0.95
"""Confidence level of every interval."""

# Streams of the run seed, apart from the simulation's own use of it.
_BOOTSTRAP_STREAM = 0xB0075
_TUNE_STREAM = 0x7E1E


def _print(msg: str) -> None:
    print(msg, flush=True)


def tuning_seed(seed: int) -> int:
    """Seed of the tuning cohort: derived from the run seed, never equal to it.

    Tuning on the evaluation cohort itself would let the chosen values fit that
    cohort's noise; another cohort from the same population avoids it.
    """
    s = int(np.random.SeedSequence([seed, _TUNE_STREAM]).generate_state(1)[0])
    return s if s != seed else s + 1


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


# ---------------------------------------------------------------------------- summaries
@dataclass
class _Replicates:
    """A metric's point estimate, its (n_boot,) bootstrap replicates, and whether every user had one value."""

    point: float
    boots: np.ndarray
    constant: bool = False


def _stat(ci: CI | None) -> dict[str, float | None]:
    if ci is None:
        return {MEAN: None, CI_LOW: None, CI_HIGH: None}
    return {MEAN: float(ci.mean), CI_LOW: float(ci.lo), CI_HIGH: float(ci.hi)}


def _replicates(cohort: CohortResult, boot: PairedBootstrap, metrics: Sequence[str]) -> dict[str, _Replicates | None]:
    out: dict[str, _Replicates | None] = {}
    for m in metrics:
        if m in COHORT_METRICS:
            users, keys = cohort.shown_videos if m == "catalog_coverage" else cohort.shown_creators
            total = cohort.n_videos if m == "catalog_coverage" else cohort.n_creators
            point = cohort.cohort[m]
            boots = boot.distinct_counts(users, keys) / total
            # A resample with replacement holds only ~63% distinct users, and a user drawn
            # twice shows no new video: distinct counts come out biased low. The replicates
            # are rescaled to centre on the point estimate (their spread is kept) and
            # clipped to [0, 1], the range of a share.
            centre = float(boots.mean())
            if centre > 0.0:
                boots = np.clip(boots * (point / centre), 0.0, 1.0)
            out[m] = _Replicates(point, boots)
            continue
        x = cohort.per_user.get(m)
        if x is None or not np.all(np.isfinite(x)):
            out[m] = None  # reported as n/a
            continue
        out[m] = _Replicates(float(np.mean(x)), boot.means(x), bool(np.all(x == x[0])))
    return out


def _summary(reps: Mapping[str, _Replicates | None], boot: PairedBootstrap) -> dict[str, dict[str, float | None]]:
    out = {}
    for m, r in reps.items():
        if r is None:
            out[m] = _stat(None)
        elif r.constant:
            out[m] = _stat(CI(r.point, r.point, r.point))
        else:
            out[m] = _stat(boot.interval(r.point, r.boots))
    return out


def _lifts(
    reps: Mapping[str, _Replicates | None], ref: Mapping[str, _Replicates | None], boot: PairedBootstrap
) -> dict[str, dict[str, float | None]]:
    out = {}
    for m, r in reps.items():
        q = ref.get(m)
        out[m] = _stat(None if r is None or q is None else boot.lift_of(r.point, q.point, r.boots, q.boots))
    return out


def _retention(cohort: CohortResult, boot: PairedBootstrap) -> RetentionCurve:
    days = cohort.active_days.astype(np.float64)
    mean, lo, hi = (np.empty(days.shape[1]) for _ in range(3))
    for d in range(days.shape[1]):
        col = days[:, d]
        m = float(col.mean())
        mean[d], lo[d], hi[d] = (m, m, m) if np.all(col == col[0]) else boot.interval(m, boot.means(col))
    return RetentionCurve(mean, lo, hi)


# ---------------------------------------------------------------------------- tables
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


def _render(header: list[str], rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(r: list[str]) -> str:
        return "  ".join([r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])])

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *map(line, rows)])


def format_table(results: Results, markdown: bool = False) -> str:
    """Formats results as a table: one row per metric, one ``mean [lo, hi]`` column per policy.

    Args:
        results: ``{policy: {metric: {"mean", "ci_low", "ci_high"}}}`` (results or lifts).
        markdown: A Markdown table instead of aligned plain text.

    Returns:
        The table, without a trailing newline; ``n/a`` where a value is undefined.
    """
    header = ["metric", *results]
    rows = [[m, *_cells(results, m)] for m in _metrics_of(results)]
    return _render(header, rows, markdown)


def best_heuristic(results: Results) -> tuple[str, float]:
    """The deployable heuristic with the most days active: the bar for a trained policy.

    Args:
        results: as returned by :func:`evaluate_policies`.

    Returns:
        ``(name, days_active mean)`` among :data:`HEURISTIC_NAMES` (not the oracle, which
        reads hidden state, nor random); the first in results order on a tie.

    Raises:
        ValueError: if the results hold no heuristic with a defined ``days_active``.
    """
    best: tuple[str, float] | None = None
    for name, per_metric in results.items():
        mean = per_metric.get("days_active", {}).get(MEAN)
        if name in HEURISTIC_NAMES and mean is not None and (best is None or mean > best[1]):
            best = (name, float(mean))
    if best is None:
        raise ValueError(f"no heuristic ({', '.join(HEURISTIC_NAMES)}) with days_active in the results")
    return best


# ---------------------------------------------------------------------------- tuning
_TUNED = (("mmr", "mmr_lambda", "mmr_lambda_grid"), ("explore", "explore_share", "explore_share_grid"))


def tune_heuristics(cfg: Config, *, log: Callable[[str], None] = _print) -> dict[str, Any]:
    """Picks MMR's lambda and the exploration share on a separate tuning cohort.

    Only the heuristics named in ``cfg.eval.policies`` are tuned. Each grid value runs
    the tuning cohort (``cfg.eval.tune_users`` users, seed :func:`tuning_seed`); the value
    with the highest mean ``days_active`` wins (the first of equal ones).

    Args:
        cfg: the run config.
        log: receives one line per grid value and the choice.

    Returns:
        The content of ``tuning.json``: ``{"cohort": {...}, "metric": "days_active",
        "<policy>": {"param", "grid": [{"value", "days_active": {...}, "watch_time_s":
        {...}}, ...], "chosen"}, ...}``, plus ``"seconds"`` (not deterministic; left out
        of ``tuning.json``).
    """
    e = cfg.eval
    seed = tuning_seed(cfg.seed)
    out: dict[str, Any] = {
        "cohort": {"n_users": e.tune_users, "seed": seed, "horizon_days": cfg.env.horizon_days},
        "metric": TUNING_METRIC,
    }
    seconds: dict[str, float] = {}
    boot = PairedBootstrap(e.tune_users, e.n_boot, 1.0 - CONFIDENCE, np.random.default_rng([seed, _BOOTSTRAP_STREAM]))
    for policy, param, grid_key in _TUNED:
        if policy not in e.policies:
            continue
        grid = getattr(e, grid_key)
        log(f"tuning {policy} {param} over {list(grid)} on {e.tune_users} users (seed {seed}), by {TUNING_METRIC}:")
        rows = []
        t_policy = time.perf_counter()
        for value in grid:
            pol = make_policy(policy, cfg, **{param: value})
            t0 = time.perf_counter()
            cohort = run_cohort(cfg.env, pol, e.tune_users, seed, policy_needs_sim=needs_sim(pol))
            secs = time.perf_counter() - t0
            stats = _summary(_replicates(cohort, boot, (TUNING_METRIC, "watch_time_s")), boot)
            rows.append({"value": value, **stats})
            d, w = stats[TUNING_METRIC], stats["watch_time_s"]
            log(
                f"  {param}={value:g}: {TUNING_METRIC} {_fmt(d)}, watch_time_s {_fmt(w, 0)} "
                f"({cohort.steps} steps, {secs:.1f} s)"
            )
        means = [r[TUNING_METRIC][MEAN] for r in rows]
        best = int(np.argmax(means))  # argmax keeps the first of equal means
        out[policy] = {"param": param, "grid": rows, "chosen": grid[best]}
        seconds[policy] = time.perf_counter() - t_policy
        log(f"  -> {policy} {param} = {grid[best]:g}")
    out["seconds"] = seconds
    return out


def _fmt(s: Mapping[str, float | None], decimals: int = 3) -> str:
    if s[MEAN] is None:
        return "n/a"
    return f"{s[MEAN]:.{decimals}f} [{s[CI_LOW]:.{decimals}f}, {s[CI_HIGH]:.{decimals}f}]"


# ---------------------------------------------------------------------------- report
def _markdown_report(
    cfg: Config,
    results: Results,
    lifts: Results,
    tuning: Mapping[str, Any] | None,
    settings: Mapping[str, float],
    retention: Mapping[str, RetentionCurve],
    timings: Mapping[str, tuple[int, float]],
    plots: Sequence[str],
    total_s: float,
) -> str:
    e, env = cfg.eval, cfg.env
    lines = [
        "# rl-fyp evaluation",
        "",
        f"- Cohort: {e.n_users} users, seed {cfg.seed}, horizon {env.horizon_days:g} days, "
        f"{env.catalog.n_items} videos, {env.retrieval.n_candidates} candidates, slate of {env.slate_size}. "
        "Every policy meets the same users in the same world.",
        f"- Config hash `{config_hash(cfg)}`.",
        "- Heuristic settings ({}): {}.".format(
            "tuned below" if tuning is not None else "from eval config",
            ", ".join(f"{k} {v:g}" for k, v in settings.items()) or "none",
        ),
        f"- Intervals: {CONFIDENCE:.0%} percentile bootstrap over users ({e.n_boot} resamples); the same "
        "resampled users for every metric and policy (paired). Cohort-level coverage is recomputed on each "
        "resampled cohort, and its replicates are rescaled to centre on the full cohort's value (resamples "
        "hold ~63% distinct users, which biases distinct counts low).",
        "- `churned` is the churn rate; `catalog_coverage` is the distinct videos seen by the cohort over the "
        "videos the catalog held during the run (uploads included), `creator_coverage` the distinct creators "
        "seen over all creators; `new_video_exposure` is the share of seen videos uploaded less than 24 h "
        "before (world clock).",
        "",
        "## Results",
        "",
        format_table(results, markdown=True),
        "",
    ]
    if lifts:
        lines += [f"## Lift over {REFERENCE_POLICY} (%)", "", format_table(lifts, markdown=True), ""]
    try:
        name, days = best_heuristic(results)
        lines += [f"Best heuristic: **{name}** (days_active {days:.3f}).", ""]
    except ValueError:
        pass
    if tuning is not None:
        c = tuning["cohort"]
        lines += [
            "## Tuning",
            "",
            f"On a separate cohort: {c['n_users']} users, seed {c['seed']}; chosen by mean {tuning['metric']}.",
            "",
        ]
        for policy, param, _ in _TUNED:
            if policy not in tuning:
                continue
            t = tuning[policy]
            lines += [f"| {policy}: {param} | {TUNING_METRIC} | watch_time_s |", "|---:|---:|---:|"]
            for row in t["grid"]:
                mark = " (chosen)" if row["value"] == t["chosen"] else ""
                cells = [f"{row['value']:g}{mark}", _fmt(row[TUNING_METRIC]), _fmt(row["watch_time_s"], 0)]
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
    if retention:
        n_days = max(len(c.mean) for c in retention.values())
        lines += [
            "## Retention by day (share of the cohort active)",
            "",
            "| policy | " + " | ".join(f"d{d}" for d in range(n_days)) + " |",
            "|---|" + "---:|" * n_days,
        ]
        lines += [f"| {p} | " + " | ".join(f"{v:.3f}" for v in c.mean) + " |" for p, c in retention.items()]
        lines.append("")
    lines += ["## Timings", "", "| policy | steps | seconds |", "|---|---:|---:|"]
    lines += [f"| {p} | {steps} | {secs:.1f} |" for p, (steps, secs) in timings.items()]
    if tuning is not None:
        lines += [f"| tuning {p} (grid) | | {s:.1f} |" for p, s in tuning.get("seconds", {}).items()]
    lines += [f"| total | | {total_s:.1f} |", ""]
    if plots:
        lines += ["## Plots", "", *(f"- `{p}`" for p in plots), ""]
    return "\n".join(lines)


def _write_json(path: Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


# ---------------------------------------------------------------------------- entry point
def evaluate_policies(
    cfg: Config,
    run_dir: Path,
    trained: Mapping[str, SlatePolicy] | None = None,
    *,
    log: Callable[[str], None] = _print,
) -> Results:
    """Runs the simulated A/B test of ``cfg.eval.policies`` and writes its report.

    Args:
        cfg: the run config (``cfg.eval`` sets the cohort, policies, tuning, resamples).
        run_dir: directory for the files (created if absent).
        trained: trained policies by name (``ppo``...), callables mapping an observation
            batch to (B, K) slates; one with a true ``needs_sim`` attribute is called as
            ``policy(obs, sim)``. A name here takes precedence over a baseline of the same
            name. A name of ``cfg.eval.policies`` that is neither here nor a baseline is
            skipped with a log line, as is a trained policy not named there.
        log: receives progress lines and the final tables.

    Returns:
        ``{policy: {metric: {"mean", "ci_low", "ci_high"}}}``, as written to
        ``results.json`` (policies in ``cfg.eval.policies`` order, metrics in
        :data:`METRICS` order).
    """
    t_start = time.perf_counter()
    e = cfg.eval
    trained = dict(trained or {})
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in trained:
        if name not in e.policies:
            log(f"note: trained policy {name!r} is not in eval.policies; skipped")
    log(
        f"evaluate: {e.n_users} users x {cfg.env.horizon_days:g} days, seed {cfg.seed}, "
        f"policies {', '.join(e.policies)}, config_hash {config_hash(cfg)} -> {run_dir}"
    )

    tuning: dict[str, Any] | None = None
    chosen: dict[str, float] = {}
    if e.tune_heuristics and any(p in e.policies for p, _, _ in _TUNED):
        tuning = tune_heuristics(cfg, log=log)
        chosen = {param: tuning[p]["chosen"] for p, param, _ in _TUNED if p in tuning}
        _write_json(run_dir / TUNING_JSON, {k: v for k, v in tuning.items() if k != "seconds"})
    # The settings the heuristics run with: tuned, else the config's.
    settings = {param: chosen.get(param, getattr(e, param)) for p, param, _ in _TUNED if p in e.policies}
    if settings:
        source = "tuned" if tuning is not None else "from eval config"
        log(f"heuristic settings ({source}): " + ", ".join(f"{k} {v:g}" for k, v in settings.items()))

    boot = PairedBootstrap(e.n_users, e.n_boot, 1.0 - CONFIDENCE, np.random.default_rng([cfg.seed, _BOOTSTRAP_STREAM]))
    reps: dict[str, dict[str, _Replicates | None]] = {}
    retention: dict[str, RetentionCurve] = {}
    timings: dict[str, tuple[int, float]] = {}
    for name in e.policies:
        if name in trained:
            policy: Any = trained[name]
        elif name in BASELINE_NAMES:
            policy = make_policy(
                name, cfg, mmr_lambda=settings.get("mmr_lambda"), explore_share=settings.get("explore_share")
            )
        else:
            log(f"  {name}: no trained policy given; skipped")
            continue
        t0 = time.perf_counter()
        # The metrics are the evaluation objective, independent of cfg.reward.
        cohort = run_cohort(cfg.env, policy, e.n_users, cfg.seed, policy_needs_sim=needs_sim(policy))
        secs = time.perf_counter() - t0
        timings[name] = (cohort.steps, secs)
        log(f"  {name}: {cohort.steps} steps, {secs:.1f} s")
        reps[name] = _replicates(cohort, boot, METRICS)
        retention[name] = _retention(cohort, boot)
        undefined = [m for m, r in reps[name].items() if r is None]
        if undefined:
            log(f"  note: {name} has non-finite values in {', '.join(undefined)} (reported as n/a)")

    results: Results = {name: _summary(r, boot) for name, r in reps.items()}
    lifts: Results = {}
    if REFERENCE_POLICY in reps:
        lifts = {name: _lifts(r, reps[REFERENCE_POLICY], boot) for name, r in reps.items()}
    else:
        log(f"note: {REFERENCE_POLICY} did not run; no lifts")

    plots_dir = run_dir / PLOTS_DIR
    plots: list[str] = []
    if results:
        title = f"{e.n_users} users x {cfg.env.horizon_days:g} days, seed {cfg.seed} ({CONFIDENCE:.0%} CI)"
        plot_metrics(results, plots_dir / "metrics.png", [m for m in KEY_METRICS if m in METRICS], title=title)
        plot_retention(retention, plots_dir / "retention_by_day.png", title=title)
        plots += [f"{PLOTS_DIR}/metrics.png", f"{PLOTS_DIR}/retention_by_day.png"]
    progress = run_dir / PROGRESS_CSV
    if progress.is_file() and plot_learning_curve(progress, plots_dir / "learning_curve.png") is not None:
        plots.append(f"{PLOTS_DIR}/learning_curve.png")

    _write_json(run_dir / RESULTS_JSON, results)
    _write_json(run_dir / LIFTS_JSON, lifts)
    total_s = time.perf_counter() - t_start
    report = _markdown_report(cfg, results, lifts, tuning, settings, retention, timings, plots, total_s)
    write_text_atomic(run_dir / RESULTS_MD, report)

    log("")
    log(f"mean [{CONFIDENCE:.0%} CI] per user, {e.n_users} users")
    log(format_table(results))
    if lifts:
        log("")
        log(f"% lift over {REFERENCE_POLICY} [{CONFIDENCE:.0%} CI]")
        log(format_table(lifts))
    try:
        name, days = best_heuristic(results)
        log(f"best heuristic: {name} (days_active {days:.3f})")
    except ValueError:
        pass
    written = [RESULTS_JSON, LIFTS_JSON, RESULTS_MD, *([TUNING_JSON] if tuning is not None else []), *plots]
    log(f"wrote {', '.join(written)} to {run_dir} in {total_s:.1f} s")
    return results
