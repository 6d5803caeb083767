"""Reward-shaping sweeps with Ray Tune, judged on unshaped long-horizon retention.

A sweep (``rl-fyp tune --config configs/tune/reward_sweep.yaml``) trains one policy per
setting of the reward weights and ranks the settings by what the reward is meant to
buy, never by the reward itself: ``days_active`` per user in the simulated A/B test
(:func:`rl_fyp.evaluate.evaluate_policies`), with watch time as a constraint or a second
objective.

The sweep file is a typed config (:class:`TuneConfig`), loaded like the root config:
unknown keys and bad values fail at load time naming the dotted key, and every value of
the search space is checked against the root config before anything runs (a churn
penalty of +5 fails as ``space[0].values[1]: reward.retention.churn: must be <= 0.0``).

Each trial (a Tune function trainable):

1. builds its :class:`~rl_fyp.config.Config` from the base config, the sweep's
   ``overrides`` and its sampled weights (:func:`setting_config`), plus the sweep's
   training budget (:func:`trial_config`);
2. trains with :func:`rl_fyp.training.train` (the run directory is
   ``<sweep>/trials/<trial_id>/``, so a restored sweep resumes each trial from its own
   checkpoints), and every ``trial.report_every`` iterations runs the policy on a small
   cohort (``trial.report_users`` users, the tuning seed) and reports the unshaped
   metrics to Tune, which ASHA uses to stop unpromising trials early;
3. after the last iteration, runs the A/B test (``trial.eval_users`` users, the base
   config's seed: the same users for every trial) of the trained policy against
   ``trial.reference_policies``, with bootstrap CIs, and reports it as the final result.

The sweep directory (``--out``, or ``<out_dir>/<YYYYmmdd-HHMMSS>/``) receives:

- ``tune_config.yaml`` and ``base_config.yaml``: the sweep and its base, resolved;
- ``tune/``: Tune's experiment (state, per-trial ``result.json``), for ``--resume``;
- ``trials/<trial_id>/``: each trial's training run and A/B results;
- ``tune_results.json`` and ``tune_results.md``: the ranked table with 95% CIs;
- ``pareto.png``: retention against immediate engagement, the Pareto front marked;
- ``best.yaml``: the best setting as a full root config for ``rl-fyp train --config``.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import time
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from reward.typed_config import ConfigError, check, deep_merge, from_dict, load_typed, param, parse_overrides, to_dict
from rl_fyp.config import (
    BASELINE_NAMES,
    CONFIG_DIR,
    REPO_ROOT,
    Config,
    config_hash,
    save_config,
    write_text_atomic,
)

__all__ = [
    "AshaConfig",
    "BEST_YAML",
    "DEFAULT_SWEEP",
    "OBJECTIVES",
    "PARETO_PNG",
    "RESULTS_JSON",
    "RESULTS_MD",
    "SECOND_OBJECTIVES",
    "SearchDimConfig",
    "SweepResult",
    "TUNE_CONFIG_DIR",
    "TrialConfig",
    "TrialRow",
    "TuneConfig",
    "base_config",
    "format_sweep_table",
    "load_tune_config",
    "pareto_layers",
    "rank_trials",
    "resume_sweep_dir",
    "run_sweep",
    "score",
    "setting_config",
    "trial_config",
]

TUNE_CONFIG_DIR = CONFIG_DIR / "tune"
"""Where named sweep files live: ``--config smoke`` reads ``configs/tune/smoke.yaml``."""
DEFAULT_SWEEP = "reward_sweep"
"""The sweep read when none is named."""
OBJECTIVES = ("days_active", "next_day_return", "sessions")
"""Long-horizon metrics a sweep may maximise (per user, over the horizon; never the reward)."""
SECOND_OBJECTIVES = ("watch_time_s", "engagement_per_request", "videos")
"""Immediate-engagement metrics: the constraint or second objective, and the Pareto plot's x axis."""
SEARCH_ALGOS = ("grid", "optuna")
SECOND_MODES = ("constraint", "objective")

SWEEP_CONFIG = "tune_config.yaml"
BASE_CONFIG = "base_config.yaml"
EXPERIMENT_DIR = "tune"
TRIALS_DIR = "trials"
RESULTS_JSON = "tune_results.json"
RESULTS_MD = "tune_results.md"
PARETO_PNG = "pareto.png"
BEST_YAML = "best.yaml"
WEIGHTS = "weights"
"""Key of the sampled weights in a trial's Tune config: ``{"weights": {dotted key: value}}``."""
SCORE = "score"
"""The scalar Tune optimises (single-objective sweeps): see :func:`score`."""
TIME_ATTR = "train_iteration"
"""ASHA's clock: the trial's training iteration (it survives a restore, unlike Tune's report count)."""

COMPLETED, STOPPED, FAILED, PENDING = "completed", "stopped early", "error", "not run"


# ---------------------------------------------------------------------------- config
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _float_keys(cls: type = Config, prefix: str = "") -> list[str]:
    out: list[str] = []
    for f in dataclasses.fields(cls):
        h = _hints(cls)[f.name]
        key = f"{prefix}{f.name}"
        if isinstance(h, type) and dataclasses.is_dataclass(h):
            out += _float_keys(h, key + ".")
        elif h is float:
            out.append(key)
    return out


@dataclass(frozen=True)
class SearchDimConfig:
    """One reward weight of the search space: a list of values, or a range."""

    key: str = param("")
    """Dotted key of a float field under ``reward`` in the root config, e.g. ``reward.retention.day_active``."""
    values: tuple[float, ...] = param(())
    """Values to try: the grid (``search: grid``) or a categorical choice (``search: optuna``)."""
    low: float | None = param(None)
    """Lower end of a range (``search: optuna`` only; with ``high``)."""
    high: float | None = param(None)
    """Upper end of a range."""
    log: bool = param(False)
    """Sample the range on a log scale (needs ``low > 0``)."""

    def __post_init__(self) -> None:
        keys = [k for k in _float_keys() if k.startswith("reward.")]
        if self.key not in keys:
            close = difflib.get_close_matches(self.key, keys, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; e.g. {', '.join(keys[:3])}"
            raise ConfigError("key", f"must name a float field under reward, got {self.key!r}{hint}")
        ranged = self.low is not None or self.high is not None
        check(bool(self.values) != ranged, "values", "give either values or a range (low and high), not both or neither")
        check(len(set(self.values)) == len(self.values), "values", f"repeats a value: {list(self.values)!r}")
        if ranged:
            check(self.low is not None, "low", "a range needs low and high")
            check(self.high is not None, "high", "a range needs low and high")
            assert self.low is not None and self.high is not None
            check(self.low < self.high, "high", f"must be > low ({self.low}), got {self.high}")
            check(not self.log or self.low > 0.0, "low", f"must be > 0 on a log scale, got {self.low}")

    @property
    def is_range(self) -> bool:
        """Whether this dimension is a range (else a list of values)."""
        return not self.values


@dataclass(frozen=True)
class AshaConfig:
    """ASHA early stopping: trials behind at a rung stop, their cores go to the rest."""

    enabled: bool = param(True)
    """Stop unpromising trials early on their intermediate reports."""
    grace_period: int = param(4, ge=1, le=10_000_000)
    """Training iterations a trial runs before it may be stopped (the first rung)."""
    reduction_factor: float = param(2.0, gt=1.0, le=100.0)
    """Rung spacing and selectivity: about 1 / reduction_factor of the trials pass each rung."""
    brackets: int = param(1, ge=1, le=10)
    """ASHA brackets (1: every trial starts at the first rung)."""


@dataclass(frozen=True)
class TrialConfig:
    """One trial: its training budget, its intermediate reports and its final A/B test."""

    iterations: int = param(0, ge=0, le=10_000_000)
    """Training iterations per trial; 0 keeps the base config's ``train.iterations``."""
    report_every: int = param(4, ge=1, le=10_000_000)
    """Iterations between intermediate reports (a checkpoint, then the policy on ``report_users`` users)."""
    report_users: int = param(200, ge=1, le=10_000_000)
    """Users of each intermediate evaluation (a separate cohort: the base config's tuning seed)."""
    eval_users: int = param(1000, ge=1, le=10_000_000)
    """Users of the final A/B test; the base config's seed, so every trial meets the same users."""
    reference_policies: tuple[str, ...] = param(("greedy",), choices=BASELINE_NAMES)
    """Baselines run next to the trained policy in the final A/B test (for reference and lifts)."""
    n_boot: int = param(1000, ge=10, le=1_000_000)
    """Bootstrap resamples behind each 95% confidence interval."""
    torch_threads: int = param(1, ge=1, le=1024)
    """torch threads per trial (trials run side by side)."""


@dataclass(frozen=True)
class TuneConfig:
    """A reward-shaping sweep: the base config, the search space, the search, the objective."""

    base: str = param("default")
    """Root config the trials start from: a name in ``configs/`` or a file path."""
    overrides: tuple[str, ...] = param(())
    """``key=value`` overrides of the base config (values as YAML), applied before the sampled weights."""
    space: tuple[SearchDimConfig, ...] = param(())
    """The reward weights to sweep, each a list of values or a range."""
    search: str = param("grid", choices=SEARCH_ALGOS)
    """``grid``: every combination of the values; ``optuna``: Optuna's TPE sampler over values and ranges."""
    num_samples: int = param(1, ge=1, le=100_000)
    """``grid``: repeats of the whole grid; ``optuna``: trials."""
    seed: int = param(0, ge=0, le=2**31 - 1)
    """Seed of the Optuna sampler (the trials' own seed is the base config's)."""
    max_concurrent: int = param(0, ge=0, le=100_000)
    """Trials run at once; 0 = as many as the cluster's CPUs allow."""
    num_cpus: int = param(0, ge=0, le=100_000)
    """CPUs of the local Ray the sweep starts; 0 = all of this machine's."""
    objective: str = param("days_active", choices=OBJECTIVES)
    """The long-horizon metric maximised (its mean per user in the A/B test)."""
    second: str = param("watch_time_s", choices=SECOND_OBJECTIVES)
    """The immediate-engagement metric: the constraint or second objective."""
    second_mode: str = param("constraint", choices=SECOND_MODES)
    """``constraint``: trials whose mean ``second`` is below ``second_min`` rank after the rest;
    ``objective``: both are maximised (Optuna multi-objective; ranking by Pareto front)."""
    second_min: float = param(0.0, ge=0.0)
    """The constraint's floor on the mean of ``second`` (0: no constraint)."""
    trial: TrialConfig = field(default_factory=TrialConfig)
    """Each trial's training budget, reports and final A/B test."""
    asha: AshaConfig = field(default_factory=AshaConfig)
    """Early stopping."""
    out_dir: str = param("runs")
    """Base directory of timestamped sweep directories."""

    def __post_init__(self) -> None:
        check(len(self.space) > 0, "space", "must hold at least one reward weight")
        keys = [d.key for d in self.space]
        check(len(set(keys)) == len(keys), "space", f"repeats a key: {keys!r}")
        if self.search == "grid":
            for i, d in enumerate(self.space):
                check(not d.is_range, f"space[{i}].low", "a grid needs values; ranges need search: optuna")
        check(
            not (self.second_mode == "objective" and self.asha.enabled),
            "asha.enabled",
            "ASHA stops trials by one metric: set it false when second_mode is objective",
        )
        check(bool(self.out_dir.strip()), "out_dir", "must not be empty")


def resolve_tune_config_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The sweep file a name or path refers to: a name in ``configs/tune/``, a path from the
    working directory, ``configs/tune/`` or the repository root."""
    from reward.typed_config import resolve_yaml

    text = os.fspath(DEFAULT_SWEEP if path is None else path)
    try:
        return resolve_yaml(text, TUNE_CONFIG_DIR, what="tune config")
    except ConfigError:
        if not Path(text).is_absolute() and (REPO_ROOT / text).is_file():
            return REPO_ROOT / text
        raise


def base_config(tcfg: TuneConfig) -> Config:
    """The base config with the sweep's overrides: what every trial starts from."""
    from rl_fyp.config import load_config

    return load_config(tcfg.base, list(tcfg.overrides))


def setting_config(base: Config, weights: Mapping[str, float]) -> Config:
    """The root config of one setting: ``base`` with the weights set (what ``best.yaml`` holds).

    Raises:
        ConfigError: If a weight is out of range (naming its dotted key).
    """
    return from_dict(Config, deep_merge(to_dict(base), parse_overrides(dict(weights))))


def _effective_iterations(tcfg: TuneConfig, base: Config) -> int:
    return tcfg.trial.iterations or base.train.iterations


def trial_config(setting: Config, tcfg: TuneConfig) -> Config:
    """A setting's config with the sweep's training budget: what a trial trains and evaluates.

    Checkpoints every ``trial.report_every`` iterations (the newest kept), no progress bar,
    ``trial.torch_threads``; the final A/B test runs the trained policy and
    ``trial.reference_policies`` on ``trial.eval_users`` users, without heuristic tuning.
    """
    t = tcfg.trial
    name = setting.train.algo.lower()
    return from_dict(
        Config,
        deep_merge(
            to_dict(setting),
            parse_overrides(
                {
                    "train.iterations": _effective_iterations(tcfg, setting),
                    "train.checkpoint_every": t.report_every,
                    "train.keep_checkpoints": 1,
                    "train.torch_threads": t.torch_threads,
                    "logging.progress": False,
                    "eval.n_users": t.eval_users,
                    "eval.n_boot": t.n_boot,
                    "eval.policies": [name, *[p for p in t.reference_policies if p != name]],
                    "eval.tune_heuristics": False,
                }
            ),
        ),
    )


def _check_space(tcfg: TuneConfig, base: Config) -> None:
    """Every grid value, and both ends of every range, must make a valid root config."""
    for i, d in enumerate(tcfg.space):
        points = [("values", j, v) for j, v in enumerate(d.values)] or [("low", None, d.low), ("high", None, d.high)]
        for name, j, value in points:
            where = f"space[{i}].{name}" + (f"[{j}]" if j is not None else "")
            try:
                setting_config(base, {d.key: value})
            except ConfigError as e:
                raise ConfigError(where, str(e)) from None
    iterations = _effective_iterations(tcfg, base)
    if tcfg.asha.enabled:
        check(
            tcfg.asha.grace_period <= iterations,
            "asha.grace_period",
            f"must be <= the trials' iterations ({iterations}), got {tcfg.asha.grace_period}",
        )
        check(
            tcfg.trial.report_every < iterations,
            "trial.report_every",
            f"must be < the trials' iterations ({iterations}) for ASHA to see intermediate results, "
            f"got {tcfg.trial.report_every}",
        )


def load_tune_config(
    path: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
) -> TuneConfig:
    """Loads a sweep: defaults, the YAML file, then dotted overrides; checks the space.

    Args:
        path: A name in ``configs/tune/`` or a file (None: ``configs/tune/reward_sweep.yaml``).
        overrides: ``key=value`` strings or a mapping, as for the root config.

    Raises:
        ConfigError: On a bad key or value of the sweep (naming its dotted key), of its base
            config, or a search-space value that makes an invalid root config.
    """
    tcfg = load_typed(TuneConfig, resolve_tune_config_path(path), overrides)
    base = _load_base(tcfg)
    _check_space(tcfg, base)
    return tcfg


def _load_base(tcfg: TuneConfig) -> Config:
    """The base config, an error in it named as the sweep's ``base`` or ``overrides``."""
    from rl_fyp.config import load_config

    try:
        load_config(tcfg.base)
    except ConfigError as e:
        raise ConfigError("base", str(e)) from None
    try:
        return base_config(tcfg)
    except ConfigError as e:
        raise ConfigError("overrides", str(e)) from None


def _dump_tune_config(tcfg: TuneConfig, path: Path) -> None:
    header = f"# rl-fyp resolved sweep (config_hash {config_hash(tcfg)}); rl-fyp tune --config reads it back.\n"
    body = yaml.safe_dump(to_dict(tcfg), sort_keys=False, default_flow_style=False, allow_unicode=True)
    write_text_atomic(path, header + body)


# ---------------------------------------------------------------------------- objective
def score(objective_mean: float, second_mean: float, tcfg: TuneConfig) -> float:
    """The scalar Tune maximises in a single-objective sweep.

    The objective's mean when the constraint holds (``second_mean >= second_min``); else
    minus the relative shortfall, ``-(second_min - second_mean) / second_min`` in [-1, 0):
    below every feasible trial (the objectives are >= 0), higher the closer to feasible.
    """
    if tcfg.second_mode == "constraint" and second_mean < tcfg.second_min:
        return -(tcfg.second_min - second_mean) / tcfg.second_min
    return float(objective_mean)


def _ci(mean: float, lo: float, hi: float) -> dict[str, float]:
    return {"mean": float(mean), "ci_low": float(lo), "ci_high": float(hi)}


def _flat(prefix: str, s: Mapping[str, float]) -> dict[str, float]:
    return {prefix: s["mean"], f"{prefix}_ci_low": s["ci_low"], f"{prefix}_ci_high": s["ci_high"]}


def _quick_eval(cfg: Config, checkpoint: Path, tcfg: TuneConfig) -> dict[str, Any]:
    """The policy of ``checkpoint`` on the small report cohort: unshaped metrics with CIs."""
    from envs.cohort import run_cohort
    from rl_fyp.evaluate import tuning_seed
    from rl_fyp.policy import ModulePolicy, load_module
    from rl_fyp.stats import bootstrap_ci

    name = cfg.train.algo.lower()
    seed = tuning_seed(cfg.seed)
    cohort = run_cohort(cfg.env, ModulePolicy(load_module(checkpoint), name), tcfg.trial.report_users, seed)
    out: dict[str, Any] = {"cohort_users": tcfg.trial.report_users, "cohort_seed": seed}
    for metric in (tcfg.objective, tcfg.second):
        x = cohort.per_user[metric]
        out.update(_flat(metric, _ci(*bootstrap_ci(x, tcfg.trial.n_boot, rng=np.random.default_rng([seed, 1])))))
    return out


# ---------------------------------------------------------------------------- trial
def _trial_dirname(trial: Any) -> str:
    return str(trial.trial_id)


def _run_trial(config: dict[str, Any], *, sweep: dict[str, Any], base: dict[str, Any], trials_dir: str) -> None:
    """One trial, in a Tune worker: train, report on the small cohort, A/B-test, report."""
    import numba
    from ray import tune

    from rl_fyp.evaluate import evaluate_policies
    from rl_fyp.policy import ModulePolicy, load_module
    from rl_fyp.training import IterationEnd, latest_checkpoint, train

    tcfg = from_dict(TuneConfig, sweep)
    weights = {k: float(v) for k, v in config[WEIGHTS].items()}
    cfg = trial_config(setting_config(from_dict(Config, base), weights), tcfg)
    trial_id = tune.get_context().get_trial_id()
    run_dir = Path(trials_dir) / trial_id
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / "weights.json", json.dumps(weights, indent=2) + "\n")
    # The simulator's numba threads: the cores of this trial's own bundle, not the machine's.
    cpus = int(max(1.0, tune.get_context().get_trial_resources().head_cpus))
    numba.set_num_threads(min(cpus, numba.config.NUMBA_NUM_THREADS))
    total = cfg.train.iterations
    common = {"trial_id": trial_id, WEIGHTS: weights}

    def log(msg: str) -> None:
        print(f"[{trial_id}] {msg}", flush=True)

    def report(end: IterationEnd) -> None:
        # The last iteration reports the final A/B test instead.
        if end.checkpoint is None or end.iteration >= total:
            return
        m = _quick_eval(cfg, end.checkpoint, tcfg)
        m.update(common, final=False, env_steps=float(end.row.get("env_steps", math.nan)))
        m[TIME_ATTR] = end.iteration
        m[SCORE] = score(m[tcfg.objective], m[tcfg.second], tcfg)
        log(f"iteration {end.iteration}: {tcfg.objective} {m[tcfg.objective]:.3f}, {tcfg.second} {m[tcfg.second]:.1f}")
        tune.report(m)

    resume = latest_checkpoint(run_dir) is not None  # a restored sweep continues the trial
    result = train(cfg, run_dir, resume=resume, log=log, on_iteration=report)
    name = cfg.train.algo.lower()
    module = load_module(result.checkpoint)
    results = evaluate_policies(cfg, run_dir, trained={name: ModulePolicy(module, name)}, log=log)
    final: dict[str, Any] = {**common, "final": True, "cohort_users": cfg.eval.n_users, "cohort_seed": cfg.seed}
    for metric in (tcfg.objective, tcfg.second):
        final.update(_flat(metric, results[name][metric]))
    final["reference"] = {
        p: {m: results[p][m] for m in (tcfg.objective, tcfg.second)} for p in results if p != name
    }
    final[TIME_ATTR] = total
    final["env_steps"] = float(result.env_steps)
    final[SCORE] = score(final[tcfg.objective], final[tcfg.second], tcfg)
    tune.report(final)


# ---------------------------------------------------------------------------- search
def param_space(tcfg: TuneConfig) -> dict[str, Any]:
    """Tune's param space: ``{"weights": {dotted key: domain}}``."""
    from ray import tune

    dims: dict[str, Any] = {}
    for d in tcfg.space:
        if tcfg.search == "grid":
            dims[d.key] = tune.grid_search(list(d.values))
        elif not d.is_range:
            dims[d.key] = tune.choice(list(d.values))
        elif d.log:
            dims[d.key] = tune.loguniform(d.low, d.high)
        else:
            dims[d.key] = tune.uniform(d.low, d.high)
    return {WEIGHTS: dims}


def _multi_objective(tcfg: TuneConfig) -> bool:
    return tcfg.second_mode == "objective" and tcfg.search == "optuna"


def _tune_config(tcfg: TuneConfig, iterations: int) -> Any:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    search_alg = None
    if tcfg.search == "optuna":
        from ray.tune.search import ConcurrencyLimiter
        from ray.tune.search.optuna import OptunaSearch

        if _multi_objective(tcfg):
            search_alg = OptunaSearch(metric=[tcfg.objective, tcfg.second], mode=["max", "max"], seed=tcfg.seed)
        else:
            search_alg = OptunaSearch(seed=tcfg.seed)
        if tcfg.max_concurrent:
            search_alg = ConcurrencyLimiter(search_alg, max_concurrent=tcfg.max_concurrent)
    scheduler = None
    if tcfg.asha.enabled:
        a = tcfg.asha
        scheduler = ASHAScheduler(
            time_attr=TIME_ATTR,
            max_t=iterations,
            grace_period=a.grace_period,
            reduction_factor=a.reduction_factor,
            brackets=a.brackets,
        )
    single = not _multi_objective(tcfg)
    return tune.TuneConfig(
        metric=SCORE if single else None,
        mode="max" if single else None,
        search_alg=search_alg,
        scheduler=scheduler,
        num_samples=tcfg.num_samples,
        max_concurrent_trials=tcfg.max_concurrent or None,
        trial_dirname_creator=_trial_dirname,
        trial_name_creator=_trial_dirname,
    )


def _trial_resources(cfg: Config) -> Any:
    """What one trial reserves: RLlib's own request for the trial's algorithm (the trial
    process, plus its remote env runners and learners), as a placement group."""
    from rl_fyp.rllib_glue import build_algo_config

    algo = build_algo_config(cfg)
    return algo.algo_class.default_resource_request(algo)


def _trainable(tcfg: TuneConfig, base: Config, run_dir: Path) -> Any:
    from ray import tune

    # Any point of the space gives the same resources (only the reward weights differ).
    first = {d.key: (d.values[0] if d.values else d.low) for d in tcfg.space}
    resources = _trial_resources(trial_config(setting_config(base, first), tcfg))
    fn = tune.with_parameters(_run_trial, sweep=to_dict(tcfg), base=to_dict(base), trials_dir=str(run_dir / TRIALS_DIR))
    return tune.with_resources(fn, resources)


# ---------------------------------------------------------------------------- results
@dataclass
class TrialRow:
    """One trial in the ranked table."""

    trial_id: str
    weights: dict[str, float]
    status: str
    """``completed``, ``stopped early`` (ASHA), ``error`` or ``not run``."""
    train_iteration: int
    objective: dict[str, float] | None
    """``{"mean", "ci_low", "ci_high"}`` of the objective (final A/B test, or the last small-cohort report)."""
    second: dict[str, float] | None
    score: float | None
    cohort_users: int
    feasible: bool = True
    pareto: bool = False
    """On the Pareto front of the completed trials (no other is at least as good on both metrics and better on one)."""
    rank: int = 0
    reference: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _ci_of(m: Mapping[str, Any], metric: str) -> dict[str, float] | None:
    if metric not in m:
        return None
    return _ci(m[metric], m.get(f"{metric}_ci_low", m[metric]), m.get(f"{metric}_ci_high", m[metric]))


def _row(result: Any, tcfg: TuneConfig) -> TrialRow:
    m = dict(result.metrics or {})
    trial_id = str(m.get("trial_id") or Path(result.path).name)
    weights = {k: float(v) for k, v in (result.config or {}).get(WEIGHTS, {}).items()}
    if result.error is not None:
        status = FAILED
    elif m.get("final"):
        status = COMPLETED
    elif m.get(TIME_ATTR) is not None:
        status = STOPPED
    else:
        status = PENDING
    obj, sec = _ci_of(m, tcfg.objective), _ci_of(m, tcfg.second)
    return TrialRow(
        trial_id=trial_id,
        weights=weights,
        status=status,
        train_iteration=int(m.get(TIME_ATTR) or 0),
        objective=obj,
        second=sec,
        score=float(m[SCORE]) if SCORE in m else None,
        cohort_users=int(m.get("cohort_users") or 0),
        feasible=sec is None or tcfg.second_mode != "constraint" or sec["mean"] >= tcfg.second_min,
        reference=dict(m.get("reference") or {}),
        error=None if result.error is None else f"{type(result.error).__name__}: {result.error}"[:500],
    )


def pareto_layers(points: Sequence[tuple[float, float]]) -> list[int]:
    """Non-dominated sorting of points to maximise on both coordinates.

    Args:
        points: ``(y, x)`` pairs.

    Returns:
        Each point's layer: 0 for the Pareto front (no other point is >= on both and > on
        one), 1 for the front of the rest, and so on.
    """
    n = len(points)
    layer = [-1] * n
    left = set(range(n))
    depth = 0
    while left:
        front = {
            i
            for i in left
            if not any(
                points[j][0] >= points[i][0] and points[j][1] >= points[i][1] and points[j] != points[i]
                for j in left
            )
        }
        for i in front:
            layer[i] = depth
        left -= front
        depth += 1
    return layer


def rank_trials(rows: Sequence[TrialRow], tcfg: TuneConfig) -> list[TrialRow]:
    """Orders trials best first and marks the Pareto front.

    Completed trials come first: with ``second_mode: constraint``, the feasible ones by
    the objective's mean, then the infeasible ones; with ``objective``, by Pareto layer,
    then the objective. Trials stopped early follow (the ones that got furthest first, by
    their last score), then failed and unrun ones.
    """
    done = [r for r in rows if r.status == COMPLETED and r.objective and r.second]
    layers = pareto_layers([(r.objective["mean"], r.second["mean"]) for r in done])  # type: ignore[index]
    layer_of = {id(r): layer for r, layer in zip(done, layers)}
    for r in rows:
        r.pareto = layer_of.get(id(r)) == 0

    def key(r: TrialRow) -> tuple:
        if id(r) in layer_of:
            first = (not r.feasible) if tcfg.second_mode == "constraint" else layer_of[id(r)]
            return (0, first, -r.objective["mean"], -r.second["mean"])  # type: ignore[index]
        if r.status == STOPPED:
            return (1, -r.train_iteration, -(r.score if r.score is not None else -math.inf), 0.0)
        return (2, 0, 0.0, 0.0)

    ranked = sorted(rows, key=key)
    for i, r in enumerate(ranked, start=1):
        r.rank = i
    return ranked


def _fmt_ci(s: Mapping[str, float] | None, decimals: int) -> str:
    if not s:
        return "n/a"
    return f"{s['mean']:.{decimals}f} [{s['ci_low']:.{decimals}f}, {s['ci_high']:.{decimals}f}]"


def _short(key: str) -> str:
    return key.removeprefix("reward.")


def format_sweep_table(rows: Sequence[TrialRow], tcfg: TuneConfig, markdown: bool = False) -> str:
    """The ranked table: one row per trial (and per reference policy), 95% CIs."""
    from rl_fyp.evaluate import _render  # the evaluation tables' renderer

    keys = [d.key for d in tcfg.space]
    header = ["rank", "trial", *(_short(k) for k in keys), f"{tcfg.objective} [95% CI]", f"{tcfg.second} [95% CI]",
              "pareto", "status"]
    body = []
    for r in rows:
        status = r.status
        if r.status == STOPPED:
            status = f"stopped at iteration {r.train_iteration} ({r.cohort_users} users)"
        elif r.status == COMPLETED and not r.feasible:
            status = f"completed, {tcfg.second} < {tcfg.second_min:g}"
        body.append([
            str(r.rank), r.trial_id, *(f"{r.weights.get(k, math.nan):g}" for k in keys),
            _fmt_ci(r.objective, 3), _fmt_ci(r.second, 1), "*" if r.pareto else "", status,
        ])
    ref = next((r.reference for r in rows if r.status == COMPLETED and r.reference), {})
    for policy, metrics in ref.items():
        body.append(["", f"{policy} (reference)", *([""] * len(keys)), _fmt_ci(metrics.get(tcfg.objective), 3),
                     _fmt_ci(metrics.get(tcfg.second), 1), "", "baseline, same cohort"])
    return _render(header, body, markdown)


def _markdown(rows: Sequence[TrialRow], tcfg: TuneConfig, base: Config, run_dir: Path, best: TrialRow | None,
              seconds: float) -> str:
    t = tcfg.trial
    mode = (
        f"constraint: mean {tcfg.second} >= {tcfg.second_min:g}" if tcfg.second_mode == "constraint"
        else f"second objective: {tcfg.second} (Pareto ranking)"
    )
    counts = {s: sum(r.status == s for r in rows) for s in (COMPLETED, STOPPED, FAILED, PENDING)}
    lines = [
        "# rl-fyp reward-shaping sweep",
        "",
        f"- Base config `{tcfg.base}` (config_hash `{config_hash(base)}`), overrides: "
        f"{', '.join(f'`{o}`' for o in tcfg.overrides) or 'none'}.",
        f"- Search: {tcfg.search}, {len(rows)} trials ({', '.join(f'{n} {s}' for s, n in counts.items() if n)}); "
        f"ASHA {'on' if tcfg.asha.enabled else 'off'}.",
        f"- Objective: mean `{tcfg.objective}` per user (unshaped, never the training reward); {mode}.",
        f"- Each trial: {_effective_iterations(tcfg, base)} iterations; reports every {t.report_every} on "
        f"{t.report_users} users; final A/B test on {t.eval_users} users (seed {base.seed}, the same users for "
        f"every trial) with 95% bootstrap CIs ({t.n_boot} resamples).",
        "",
        "## Ranked settings",
        "",
        format_sweep_table(rows, tcfg, markdown=True),
        "",
    ]
    if best is not None:
        lines += [
            f"Best: trial `{best.trial_id}`, " + ", ".join(f"`{k}` = {v:g}" for k, v in best.weights.items())
            + f"; written to `{BEST_YAML}` (`rl-fyp train --config {run_dir / BEST_YAML}`).",
            "",
        ]
    failed = [r for r in rows if r.error]
    if failed:
        lines += ["## Errors", "", *(f"- `{r.trial_id}`: {r.error}" for r in failed), ""]
    lines += [f"Pareto front: `{PARETO_PNG}`. Trials: `{TRIALS_DIR}/<trial>/`. Sweep time {seconds:.0f} s.", ""]
    return "\n".join(lines)


def _plot(rows: Sequence[TrialRow], tcfg: TuneConfig, path: Path) -> Path | None:
    from rl_fyp.plots import ParetoPoint, plot_pareto

    done = [r for r in rows if r.status == COMPLETED and r.objective and r.second]
    if not done:
        return None
    points = [ParetoPoint(f"#{r.rank}", _triple(r.second), _triple(r.objective), r.pareto) for r in done]
    ref = next((r.reference for r in done if r.reference), {})
    refs = {
        p: (_triple(m[tcfg.second]), _triple(m[tcfg.objective]))
        for p, m in ref.items()
        if tcfg.second in m and tcfg.objective in m
    }
    return plot_pareto(
        points,
        path,
        x_label=f"{tcfg.second} per user (immediate engagement)",
        y_label=f"{tcfg.objective} per user (retention)",
        references=refs,
        x_min=tcfg.second_min if tcfg.second_mode == "constraint" and tcfg.second_min > 0 else None,
        title=f"{len(done)} settings, {done[0].cohort_users} users, 95% CI",
    )


def _triple(s: Mapping[str, float]) -> tuple[float, float, float]:
    return (s["mean"], s["ci_low"], s["ci_high"])


@dataclass
class SweepResult:
    """What a finished sweep leaves."""

    run_dir: Path
    rows: list[TrialRow]
    best: TrialRow | None
    best_yaml: Path | None


def resume_sweep_dir(out_dir: str | Path) -> Path:
    """The newest sweep directory under ``out_dir`` (one with a Tune experiment).

    Raises:
        FileNotFoundError: If there is none.
    """
    base = Path(out_dir)
    runs = sorted((p for p in base.iterdir() if (p / EXPERIMENT_DIR).is_dir()), key=lambda p: p.stat().st_mtime) if base.is_dir() else []
    if not runs:
        raise FileNotFoundError(f"--resume: no sweep under {base}/ (name one with --out)")
    return runs[-1]


def run_sweep(
    tcfg: TuneConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    log: Callable[[str], None] = print,
    verbose: int = 1,
) -> SweepResult:
    """Runs a sweep (or resumes a killed one) and writes its table, plot and best config.

    Args:
        tcfg: The sweep.
        run_dir: The sweep directory (created if absent).
        resume: Continue the Tune experiment in ``run_dir`` (``Tuner.restore``): finished
            trials keep their results, unfinished ones continue from their newest
            checkpoint, errored ones run again; under the sweep config saved there.
        log: Receives status lines and the table.
        verbose: Tune's console verbosity (0 silent, 1 status updates, 2 every result).

    Returns:
        The ranked trials and the best one (None when no trial completed).
    """
    import ray
    from ray import tune

    from rl_fyp.training import _init_ray

    t0 = time.perf_counter()
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    experiment = run_dir / EXPERIMENT_DIR
    restoring = resume and tune.Tuner.can_restore(str(experiment))
    if resume and not restoring:
        log(f"resume: no Tune experiment under {experiment}; starting the sweep")
    if restoring and (run_dir / SWEEP_CONFIG).is_file():
        saved = load_typed(TuneConfig, run_dir / SWEEP_CONFIG)
        log(f"resume: the sweep continues under its saved {SWEEP_CONFIG} (config_hash {config_hash(saved)})")
        tcfg = saved
    base = _load_base(tcfg) if not (restoring and (run_dir / BASE_CONFIG).is_file()) else load_typed(Config, run_dir / BASE_CONFIG)
    _check_space(tcfg, base)
    _dump_tune_config(tcfg, run_dir / SWEEP_CONFIG)
    save_config(base, run_dir / BASE_CONFIG)
    iterations = _effective_iterations(tcfg, base)

    ray_cfg = dataclasses.replace(base, train=dataclasses.replace(base.train, num_cpus=tcfg.num_cpus or base.train.num_cpus))
    started = _init_ray(ray_cfg)
    try:
        trainable = _trainable(tcfg, base, run_dir)
        space = param_space(tcfg)
        if restoring:
            log(f"resume: restoring the Tune experiment {experiment}")
            tuner = tune.Tuner.restore(
                str(experiment), trainable, resume_unfinished=True, resume_errored=True, param_space=space
            )
        else:
            tuner = tune.Tuner(
                trainable,
                param_space=space,
                tune_config=_tune_config(tcfg, iterations),
                run_config=tune.RunConfig(
                    name=EXPERIMENT_DIR,
                    storage_path=str(run_dir),
                    verbose=verbose,
                    failure_config=tune.FailureConfig(max_failures=0),
                ),
            )
        log(
            f"tune: {tcfg.search} over {', '.join(d.key for d in tcfg.space)}; base {tcfg.base}, "
            f"{iterations} iterations per trial, objective {tcfg.objective} ({tcfg.second} as {tcfg.second_mode}) "
            f"-> {run_dir}"
        )
        grid = tuner.fit()
        rows = rank_trials([_row(r, tcfg) for r in grid], tcfg)
    finally:
        if started:
            ray.shutdown()

    best = rows[0] if rows and rows[0].status == COMPLETED else None
    best_yaml = None
    if best is not None:
        best_yaml = save_config(setting_config(base, best.weights), run_dir / BEST_YAML)
    plot = _plot(rows, tcfg, run_dir / PARETO_PNG)
    seconds = time.perf_counter() - t0
    payload = {
        "objective": tcfg.objective,
        "second": tcfg.second,
        "second_mode": tcfg.second_mode,
        "second_min": tcfg.second_min,
        "search": tcfg.search,
        "base_config_hash": config_hash(base),
        "experiment": str(experiment),
        "trials": [r.as_dict() for r in rows],
        "best": None if best is None else {"trial_id": best.trial_id, WEIGHTS: best.weights, "config": BEST_YAML},
        "seconds": seconds,
    }
    write_text_atomic(run_dir / RESULTS_JSON, json.dumps(payload, indent=2, allow_nan=False) + "\n")
    write_text_atomic(run_dir / RESULTS_MD, _markdown(rows, tcfg, base, run_dir, best, seconds))
    log("")
    log(f"{tcfg.objective} and {tcfg.second}: mean [95% CI] per user; * = on the Pareto front")
    log(format_sweep_table(rows, tcfg))
    if best is not None:
        log(f"best: {', '.join(f'{k}={v:g}' for k, v in best.weights.items())} -> {best_yaml}")
        log(f"train it: rl-fyp train --config {best_yaml}")
    else:
        log("no trial completed: no best setting")
    written = [RESULTS_JSON, RESULTS_MD, *([PARETO_PNG] if plot else []), *([BEST_YAML] if best_yaml else [])]
    log(f"wrote {', '.join(written)} to {run_dir} in {seconds:.0f} s")
    return SweepResult(run_dir, rows, best, best_yaml)
