"""The simulate job: the simulated A/B test in a new run directory (``rl-fyp simulate``).

A thin wrapper around :func:`rl_fyp.evaluate.evaluate_policies`, which holds the
machinery: it creates the run directory (``<out_dir>/<YYYYmmdd-HHMMSS>/`` unless one is
given), writes the resolved ``config.yaml`` first (so it also names a failed run), and
evaluates the baselines of ``eval.policies`` (trained names are skipped: none is given).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rl_fyp.baselines import make_policy
from rl_fyp.config import Config, save_config
from rl_fyp.evaluate import (
    LIFTS_JSON,
    METRICS,
    RESULTS_JSON,
    RESULTS_MD,
    TUNING_JSON,
    Results,
    evaluate_policies,
    format_table,
    make_run_dir,
)

__all__ = [
    "LIFTS_JSON",
    "METRICS",
    "RESULTS_JSON",
    "RESULTS_MD",
    "RUN_CONFIG",
    "TUNING_JSON",
    "Results",
    "format_table",
    "make_policy",
    "make_run_dir",
    "simulate",
]

RUN_CONFIG = "config.yaml"
"""The resolved config of the run, in the run directory; ``--config`` reads it back."""


def _print(msg: str) -> None:
    print(msg, flush=True)


def simulate(
    cfg: Config,
    out_dir: str | Path | None = None,
    *,
    log: Callable[[str], None] = _print,
) -> Results:
    """Evaluates the baselines of ``cfg.eval.policies`` in a run directory of its own.

    Args:
        cfg: The run config.
        out_dir: Directory for the run's files (created if absent); ``None`` for a new
            timestamped directory under ``cfg.out_dir``.
        log: Receives progress lines and the final tables.

    Returns:
        ``{policy: {metric: {"mean", "ci_low", "ci_high"}}}``, as written to
        ``results.json``.
    """
    if out_dir is None:
        run_dir = make_run_dir(cfg.out_dir)
    else:
        run_dir = Path(out_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / RUN_CONFIG)
    return evaluate_policies(cfg, run_dir, log=log)
