"""The training loop: RLlib iterations with checkpoints, resume, and metric logging.

A run directory holds everything a run produces::

    runs/<YYYYmmdd-HHMMSS>/
      config.yaml          resolved config (written first)
      progress.csv         one row per iteration (the learning curve)
      tensorboard/         TensorBoard event files (always)
      wandb/               wandb run files (when logging.wandb; offline by default)
      checkpoints/iter_000005/ ...   RLlib algorithm checkpoints (newest kept)

Checkpoints are written to a temporary directory and renamed into place, so a crash or
a kill mid-save never leaves a half checkpoint under a final name. ``resume=True``
restores the newest checkpoint, drops the later rows of ``progress.csv`` and continues:
a kill loses at most ``train.checkpoint_every`` iterations.
"""

from __future__ import annotations

import csv
import io
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rl_fyp.config import Config, config_hash, load_config, save_config, write_text_atomic

__all__ = [
    "CHECKPOINT_DIR",
    "IterationEnd",
    "PROGRESS_COLUMNS",
    "PROGRESS_CSV",
    "TrainResult",
    "find_checkpoints",
    "latest_checkpoint",
    "train",
]

CHECKPOINT_DIR = "checkpoints"
PROGRESS_CSV = "progress.csv"
RUN_CONFIG = "config.yaml"
CHECKPOINT_CONFIG = "rl_fyp_config.yaml"
"""Copy of the run config inside each checkpoint, so a checkpoint is self-describing."""
_PREFIX = "iter_"

PROGRESS_COLUMNS = (
    "iteration",
    "env_steps",
    "time_s",
    "env_steps_per_s",
    "episode_return_mean",
    "episodes",
    "watch_time_s",
    "sessions",
    "churned",
    "policy_loss",
    "vf_loss",
    "vf_explained_var",
    "entropy",
    "sample_s",
    "learn_s",
    "sim_s",
)
"""Columns of ``progress.csv``. ``episode_return_mean`` is the unscaled return of the
episodes finished in the iteration's window; ``sim_s`` is the time the iteration spent
inside the simulator (``FeedVectorEnv.step``/``reset``); ``sample_s`` and ``learn_s`` are
RLlib's running means of the sampling and learner-update times."""


@dataclass
class TrainResult:
    """What a finished training run leaves."""

    run_dir: Path
    checkpoint: Path
    iterations: int
    env_steps: int
    seconds: float
    last: dict[str, float]


def find_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / CHECKPOINT_DIR
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(_PREFIX) and p.name[len(_PREFIX) :].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(_PREFIX) :]))


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a run, or None."""
    found = find_checkpoints(run_dir)
    return found[-1] if found else None


def checkpoint_iteration(path: Path) -> int:
    """The iteration a checkpoint was taken after."""
    return int(path.name[len(_PREFIX) :])


def _save_checkpoint(algo: Any, cfg: Config, run_dir: Path, iteration: int) -> Path:
    root = run_dir / CHECKPOINT_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{_PREFIX}{iteration:06d}"
    tmp = root / f".{final.name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    algo.save_to_path(str(tmp))
    save_config(cfg, tmp / CHECKPOINT_CONFIG)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in find_checkpoints(run_dir)[: -cfg.train.keep_checkpoints]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _get(d: Mapping[str, Any], *path: str, default: float = math.nan) -> float:
    cur: Any = d
    for key in path:
        if not isinstance(cur, Mapping) or key not in cur:
            return default
        cur = cur[key]
    try:
        return float(cur)
    except (TypeError, ValueError):
        return default


def _row(result: Mapping[str, Any], iteration: int, elapsed: float, steps_per_s: float) -> dict[str, float]:
    er = result.get("env_runners", {})
    lr = result.get("learners", {}).get("default_policy", {})
    timers = result.get("timers", {})
    return {
        "iteration": iteration,
        "env_steps": _get(result, "num_env_steps_sampled_lifetime", default=_get(er, "num_env_steps_sampled_lifetime")),
        "time_s": elapsed,
        "env_steps_per_s": steps_per_s,
        "episode_return_mean": _get(er, "feed", "return"),
        "episodes": _get(er, "num_episodes_lifetime"),
        "watch_time_s": _get(er, "feed", "watch_time_s"),
        "sessions": _get(er, "feed", "sessions"),
        "churned": _get(er, "feed", "churned"),
        "policy_loss": _get(lr, "policy_loss"),
        "vf_loss": _get(lr, "vf_loss"),
        "vf_explained_var": _get(lr, "vf_explained_var"),
        "entropy": _get(lr, "entropy"),
        "sample_s": _get(timers, "env_runner_sampling_timer"),
        "learn_s": _get(timers, "learner_update_timer"),
        "sim_s": _get(er, "feed", "sim_s"),
    }


class _ProgressLog:
    """progress.csv, appended and flushed row by row (a kill keeps every finished row)."""

    def __init__(self, path: Path, keep_until: int | None) -> None:
        self.path = path
        rows: list[dict[str, str]] = []
        if keep_until is not None and path.exists():
            with path.open(newline="") as fh:
                rows = [r for r in csv.DictReader(fh) if r.get("iteration", "").isdigit() and int(r["iteration"]) <= keep_until]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=PROGRESS_COLUMNS, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        write_text_atomic(path, buf.getvalue())

    def append(self, row: Mapping[str, float]) -> None:
        with self.path.open("a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=PROGRESS_COLUMNS, extrasaction="ignore", lineterminator="\n")
            w.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()})
            fh.flush()
            os.fsync(fh.fileno())


class _Loggers:
    """TensorBoard (always) and wandb (when enabled) scalar logging."""

    def __init__(self, cfg: Config, run_dir: Path, start_iteration: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start_iteration + 1 if start_iteration else None)
        self.wandb = None
        if cfg.logging.wandb:
            if cfg.logging.wandb_mode == "offline":
                # WANDB_MODE is what makes wandb skip the API-key lookup.
                os.environ["WANDB_MODE"] = "offline"
            import wandb

            from reward.typed_config import to_dict

            (run_dir / "wandb").mkdir(exist_ok=True)
            self.wandb = wandb.init(
                project=cfg.logging.wandb_project,
                dir=str(run_dir),
                mode=cfg.logging.wandb_mode,
                name=run_dir.name,
                id=f"{run_dir.name}-{config_hash(cfg)}".replace(".", "-"),
                resume="allow",
                config=to_dict(cfg),
            )

    def log(self, iteration: int, scalars: Mapping[str, float]) -> None:
        finite = {k: float(v) for k, v in scalars.items() if isinstance(v, (int, float)) and math.isfinite(v)}
        for k, v in finite.items():
            self.tb.add_scalar(k, v, iteration)
        self.tb.flush()
        if self.wandb is not None:
            self.wandb.log(finite, step=iteration)

    def close(self) -> None:
        self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, key + "/"))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[key] = float(v)
        elif hasattr(v, "item") and getattr(v, "ndim", 1) == 0:
            out[key] = float(v.item())
    return out


def _init_ray(cfg: Config) -> bool:
    """Starts a local Ray, or joins the cluster of ``train.address`` shipping this checkout
    (``rl_fyp.cluster.ray_init_kwargs``); returns whether this process connected it.

    Already connected (a Tune trial, a test's cluster), it does nothing.
    """
    import ray

    from rl_fyp.cluster import ray_init_kwargs

    if ray.is_initialized():
        return False
    ray.init(**ray_init_kwargs(cfg))
    return True


@dataclass(frozen=True)
class IterationEnd:
    """What :func:`train` hands its ``on_iteration`` hook after each iteration."""

    iteration: int
    """The iteration just finished (1-based, counting restored ones)."""
    row: Mapping[str, float]
    """Its ``progress.csv`` row."""
    checkpoint: Path | None
    """The checkpoint saved after it, or None when this iteration saved none."""
    algo: Any
    """The RLlib ``Algorithm`` (to inspect its env runners, say); do not stop it."""


def train(
    cfg: Config,
    run_dir: str | Path,
    *,
    resume: bool = False,
    log: Callable[[str], None] = print,
    on_iteration: Callable[[IterationEnd], None] | None = None,
) -> TrainResult:
    """Trains the slate policy for ``cfg.train.iterations`` iterations.

    Args:
        cfg: The run config.
        run_dir: The run directory (created if absent).
        resume: Continue from the newest checkpoint in ``run_dir``, under the config saved
            with it, except ``train.iterations``, which comes from ``cfg``.
        log: Receives status lines.
        on_iteration: Called after each iteration, once its row is logged and its
            checkpoint (if any) saved; a Tune trial reports from here.

    Returns:
        The final checkpoint and summary figures.
    """
    import ray
    import torch

    from rl_fyp.rllib_glue import build_algo_config, register_env

    # Absolute: RLlib hands checkpoint paths to pyarrow, which reads a relative one as a
    # URI without a scheme and refuses it (``make train`` writes under runs/<timestamp>/).
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    start = 0
    ckpt = latest_checkpoint(run_dir) if resume else None
    if resume and ckpt is None:
        log(f"resume: no checkpoint under {run_dir / CHECKPOINT_DIR}; starting from scratch")
    if ckpt is not None:
        saved = load_config(ckpt / CHECKPOINT_CONFIG)
        # The run continues under its own config; only the iteration count may change, so
        # that a finished run can also be extended (--resume --iterations N).
        extended = replace(saved, train=replace(saved.train, iterations=cfg.train.iterations))
        if config_hash(extended) != config_hash(cfg):
            log(f"resume: using the checkpoint's config (config_hash {config_hash(saved)}), not the one given")
        cfg = extended
        start = checkpoint_iteration(ckpt)
    save_config(cfg, run_dir / RUN_CONFIG)

    torch.set_num_threads(cfg.train.torch_threads)
    torch.manual_seed(cfg.seed)
    started_ray = _init_ray(cfg)
    register_env()
    progress = _ProgressLog(run_dir / PROGRESS_CSV, keep_until=start if ckpt is not None else 0)
    loggers = _Loggers(cfg, run_dir, start)
    algo = build_algo_config(cfg).build_algo()
    try:
        if ckpt is not None:
            algo.restore_from_path(str(ckpt))
            log(f"resume: restored {ckpt} (iteration {start})")
        total = cfg.train.iterations
        log(
            f"train: {cfg.train.algo}, {total} iterations x {cfg.train.train_batch_size} env steps, "
            f"{cfg.train.num_envs_per_env_runner} users per env runner "
            f"({cfg.train.num_env_runners or 'none'} remote, {cfg.train.num_learners or 'no'} remote learners), "
            f"model {cfg.model.variant}, "
            f"config_hash {config_hash(cfg)} -> {run_dir}"
        )
        bar = _ProgressBar(cfg, start, total)
        t_start = time.perf_counter()
        last: dict[str, float] = {}
        final = ckpt
        steps_before = None
        for it in range(start + 1, total + 1):
            t0 = time.perf_counter()
            result = algo.train()
            dt = time.perf_counter() - t0
            steps_now = _get(result, "num_env_steps_sampled_lifetime", default=_get(result.get("env_runners", {}), "num_env_steps_sampled_lifetime"))
            sampled = steps_now - steps_before if steps_before is not None else _get(result.get("env_runners", {}), "num_env_steps_sampled")
            steps_before = steps_now
            last = _row(result, it, time.perf_counter() - t_start, sampled / dt if dt > 0 else math.nan)
            progress.append(last)
            loggers.log(it, {**_flatten(result), **{f"progress/{k}": v for k, v in last.items()}})
            saved = None
            if it % cfg.train.checkpoint_every == 0 or it == total:
                final = saved = _save_checkpoint(algo, cfg, run_dir, it)
            bar.update(it, last)
            if on_iteration is not None:
                on_iteration(IterationEnd(it, last, saved, algo))
        bar.close()
        assert final is not None
        return TrainResult(
            run_dir=run_dir,
            checkpoint=final,
            iterations=total,
            env_steps=int(last.get("env_steps", 0) or 0),
            seconds=time.perf_counter() - t_start,
            last=last,
        )
    finally:
        algo.stop()
        loggers.close()
        if started_ray:
            ray.shutdown()


class _ProgressBar:
    """One line per iteration with the key metrics (tqdm; plain lines when disabled)."""

    def __init__(self, cfg: Config, start: int, total: int) -> None:
        self.enabled = cfg.logging.progress
        self.bar = None
        if self.enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, desc="train", unit="it", file=sys.stderr, dynamic_ncols=True)

    def update(self, it: int, row: Mapping[str, float]) -> None:
        if self.bar is None:
            return
        self.bar.set_postfix_str(
            f"return {row['episode_return_mean']:.1f} watch {row['watch_time_s']:.0f}s "
            f"sessions {row['sessions']:.2f} churn {row['churned']:.2f} "
            f"{row['env_steps_per_s']:.0f} steps/s",
            refresh=False,
        )
        self.bar.update(it - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
