"""The jobs behind the command line: train-then-evaluate, and evaluating a checkpoint.

``train_job`` is what ``make train`` runs: train the slate policy, load the final
checkpoint's module, run the simulated A/B test against every baseline, and print the
bars (the trained policy against greedy and against the best tuned heuristic).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from rl_fyp.config import Config, ConfigError, load_config, write_text_atomic

__all__ = ["bars", "evaluate_checkpoint", "resume_dir", "train_job"]

BARS_JSON = "bars.json"
EXPORT_DIR = "export"
"""Where ``train_job`` exports the final policy (model.onnx, model.pt, manifest.json)."""


def resume_dir(out_dir: str | Path) -> Path:
    """The newest run directory under ``out_dir`` that holds a checkpoint.

    Raises:
        FileNotFoundError: If there is none.
    """
    from rl_fyp.training import latest_checkpoint

    base = Path(out_dir)
    runs = sorted((p for p in base.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime) if base.is_dir() else []
    for run in reversed(runs):
        if latest_checkpoint(run) is not None:
            return run
    raise FileNotFoundError(f"--resume: no run with a checkpoint under {base}/ (name one with --out)")


def _ci(results: Mapping, policy: str, metric: str) -> tuple[float, float, float]:
    s = results[policy][metric]
    return s["mean"], s["ci_low"], s["ci_high"]


def bars(results: Mapping, trained: str, tuning: Mapping[str, Mapping[str, float]] | None = None) -> dict:
    """The quickstart's bars, from an evaluation's results.

    - ``beats_greedy``: the trained policy's ``days_active`` and ``watch_time_s`` 95% CIs
      lie wholly above greedy's (no overlap);
    - ``vs_best_heuristic``: its ``days_active`` against the best of the tuned
      heuristics (greedy, MMR, explore) by ``days_active``: the relative difference, and
      whether it at least matches (mean >= the heuristic's) and reaches +5%.

    Args:
        results: ``{policy: {metric: {"mean", "ci_low", "ci_high"}}}``.
        trained: The trained policy's name in ``results``.
        tuning: ``{heuristic: {param: chosen value}}`` from the evaluation's tuning,
            reported alongside the best heuristic.
    """
    out: dict = {"trained": trained}
    if "greedy" in results:
        per_metric = {}
        for metric in ("days_active", "watch_time_s"):
            t, g = _ci(results, trained, metric), _ci(results, "greedy", metric)
            per_metric[metric] = {"trained": t, "greedy": g, "ci_above": t[1] > g[2]}
        out["beats_greedy"] = {"metrics": per_metric, "met": all(m["ci_above"] for m in per_metric.values())}
    heuristics = [p for p in ("greedy", "mmr", "explore") if p in results]
    if heuristics:
        best = max(heuristics, key=lambda p: results[p]["days_active"]["mean"])
        t, h = _ci(results, trained, "days_active"), _ci(results, best, "days_active")
        rel = (t[0] - h[0]) / h[0] if h[0] else float("nan")
        out["vs_best_heuristic"] = {
            "heuristic": best,
            "settings": dict((tuning or {}).get(best, {})),
            "trained": t,
            "heuristic_days_active": h,
            "relative": rel,
            "matches": t[0] >= h[0],
            "aim_5pct": rel >= 0.05,
            "ci_above": t[1] > h[2],
        }
    return out


def format_bars(b: Mapping) -> str:
    """The bars as text lines."""
    lines = ["bars:"]
    if "beats_greedy" in b:
        g = b["beats_greedy"]
        for metric, m in g["metrics"].items():
            t, r = m["trained"], m["greedy"]
            lines.append(
                f"  {b['trained']} vs greedy, {metric}: {t[0]:.3f} [{t[1]:.3f}, {t[2]:.3f}] vs "
                f"{r[0]:.3f} [{r[1]:.3f}, {r[2]:.3f}] -> CI above greedy's: {'yes' if m['ci_above'] else 'NO'}"
            )
        lines.append(f"  beats greedy on days_active AND watch_time_s (non-overlapping 95% CIs): {'MET' if g['met'] else 'NOT MET'}")
    if "vs_best_heuristic" in b:
        h = b["vs_best_heuristic"]
        t, r = h["trained"], h["heuristic_days_active"]
        settings = ", ".join(f"{k}={v}" for k, v in h["settings"].items())
        lines.append(
            f"  {b['trained']} vs best heuristic ({h['heuristic']}{'; ' + settings if settings else ''}), days_active: "
            f"{t[0]:.3f} [{t[1]:.3f}, {t[2]:.3f}] vs {r[0]:.3f} [{r[1]:.3f}, {r[2]:.3f}] = {h['relative']:+.1%} "
            f"-> matches: {'MET' if h['matches'] else 'NOT MET'}; +5% aim: {'MET' if h['aim_5pct'] else 'not met'}"
        )
    return "\n".join(lines)


def _report_bars(run_dir: Path, results: Mapping, trained: str, log: Callable[[str], None]) -> dict:
    tuning_path = run_dir / "tuning.json"
    tuning: dict[str, dict[str, float]] = {}
    if tuning_path.exists():
        t = json.loads(tuning_path.read_text())
        tuning = {p: {v["param"]: v["chosen"]} for p, v in t.items() if isinstance(v, dict) and "chosen" in v}
    b = bars(results, trained, tuning)
    write_text_atomic(run_dir / BARS_JSON, json.dumps(b, indent=2) + "\n")
    text = format_bars(b)
    log("")
    log(text)
    md = run_dir / "results.md"
    if md.exists():
        write_text_atomic(md, md.read_text().rstrip("\n") + "\n\n## Bars\n\n```\n" + text + "\n```\n")
    return b


def evaluate_checkpoint(
    checkpoint: Path,
    cfg: Config | None = None,
    out_dir: Path | None = None,
    *,
    rules: Any = None,
    log: Callable[[str], None] = print,
) -> tuple[dict, dict | None]:
    """A/B-tests a checkpoint's policy, or an exported model, against the baselines.

    Args:
        checkpoint: A training checkpoint directory, or an export directory (``rl-fyp
            export``'s, with ``manifest.json``): the exported model then runs on the
            serving runtime (onnxruntime), with ``rules`` after it.
        cfg: The config to evaluate under; None uses the checkpoint's (or export's) own.
        out_dir: Where results go; None = ``<run>/eval-<checkpoint name>/``.
        rules: :class:`rl_fyp.rules.BusinessRules` for an exported model (default none).
        log: Receives progress lines and the table.

    Returns:
        The results dict (as written to ``results.json``) and the bars (None when the
        trained policy is not among ``eval.policies``).
    """
    from rl_fyp.evaluate import evaluate_policies
    from rl_fyp.policy import ExportedPolicy, ModulePolicy, load_module
    from rl_fyp.serving import EXPORT_CONFIG, MANIFEST, Reranker
    from rl_fyp.training import CHECKPOINT_CONFIG

    checkpoint = Path(checkpoint)
    if not checkpoint.exists():
        raise FileNotFoundError(f"checkpoint {checkpoint} does not exist")
    exported = (checkpoint / MANIFEST).is_file()
    if rules is not None and not exported:
        raise ConfigError("--rules", f"business rules apply to an exported model; {checkpoint} is not an export directory")
    if cfg is None:
        cfg_file = checkpoint / (EXPORT_CONFIG if exported else CHECKPOINT_CONFIG)
        if not cfg_file.exists():
            raise FileNotFoundError(f"{cfg_file} is missing: pass --config for this checkpoint")
        cfg = load_config(cfg_file)
    name = cfg.train.algo.lower()
    if exported:
        policy: Any = ExportedPolicy(Reranker.load(checkpoint, rules=rules), name)
    else:
        policy = ModulePolicy(load_module(checkpoint), name)
    if out_dir is None:
        out_dir = (checkpoint.parent if exported else checkpoint.parent.parent) / f"eval-{checkpoint.name}"
    out_dir.mkdir(parents=True, exist_ok=True)
    results = evaluate_policies(cfg, out_dir, trained={name: policy}, log=log)
    return results, (_report_bars(out_dir, results, name, log) if name in results else None)


def train_job(cfg: Config, run_dir: Path, *, resume: bool = False, evaluate: bool = True, log: Callable[[str], None] = print) -> dict:
    """Trains, A/B-tests the trained policy against the baselines, exports it (``make train``).

    Args:
        cfg: The run config.
        run_dir: The run directory.
        resume: Continue from the newest checkpoint in ``run_dir``.
        evaluate: Run the A/B test after training.
        log: Receives progress lines, the table and the bars.

    Returns:
        ``{"checkpoint": path, "results": results or None, "bars": bars or None,
        "export": export directory}``.
    """
    from rl_fyp.training import train

    t0 = time.perf_counter()
    result = train(cfg, run_dir, resume=resume, log=log)
    log(
        f"trained {result.iterations} iterations, {result.env_steps} env steps in {result.seconds:.0f} s "
        f"-> {result.checkpoint}"
    )
    out: dict = {"checkpoint": str(result.checkpoint), "results": None, "bars": None}
    if evaluate:
        # The checkpoint's own config: on --resume it is the run's, whatever was passed.
        out["results"], out["bars"] = evaluate_checkpoint(result.checkpoint, out_dir=run_dir, log=log)
    from rl_fyp.export import export_checkpoint

    manifest = export_checkpoint(result.checkpoint, run_dir / EXPORT_DIR)
    out["export"] = str(run_dir / EXPORT_DIR)
    log(f"exported the policy ({manifest['model_version']}) -> {run_dir / EXPORT_DIR}")
    log(f"run finished in {time.perf_counter() - t0:.0f} s; everything is under {run_dir}")
    return out
