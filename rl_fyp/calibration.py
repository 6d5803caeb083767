"""``rl-fyp calibrate`` and ``rl-fyp fidelity``: thin wrappers around :mod:`envs.kuairand`.

``calibrate`` fits the data-driven world to the fit days of KuaiRand-Pure
(:func:`envs.kuairand.fit.calibrate`), writes the world file (``.npz``) and a root config
(``configs/kuairand.yaml``): a credit and license header, the seed, the calibrated ``env``
section (naming the world file and its SHA-256), and the main job's other sections as in
``configs/default.yaml``, so that ``python train.py --config kuairand`` trains like the
default job, on the calibrated world. The same data and seed give the same files.

``fidelity`` runs :func:`envs.kuairand.fidelity.fidelity_report` for a calibrated config
against the held-out days and writes ``fidelity.json``, ``fidelity.md`` and ``plots/``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from rl_fyp.config import CONFIG_DIR, DEFAULT_CONFIG, REPO_ROOT, ConfigError, load_config, write_text_atomic

__all__ = ["JOB_SECTIONS", "add_calibrate_args", "add_fidelity_args", "run_calibrate", "run_fidelity", "world_path_default"]

JOB_SECTIONS = ("reward", "model", "train", "logging", "eval", "out_dir")
"""Sections of ``configs/default.yaml`` the calibrated config takes over unchanged."""
WORLD_FILE_NAME = "kuairand_world.npz"


def world_path_default(data_dir: Path) -> Path:
    """Where the world file goes unless ``--world`` says otherwise: ``<data>/derived/``."""
    return data_dir / "derived" / WORLD_FILE_NAME


def _repo_relative(path: Path) -> str:
    path = path.resolve()
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def add_calibrate_args(parser: argparse.ArgumentParser) -> None:
    """Options of ``rl-fyp calibrate``."""
    parser.add_argument("--data", metavar="DIR", required=True, help="the KuaiRand-Pure directory (e.g. data/kuairand_pure_partial)")
    parser.add_argument("--out", metavar="YAML", required=True, help="the calibrated config to write (e.g. configs/kuairand.yaml)")
    parser.add_argument("--world", metavar="NPZ", default=None,
                        help=f"the world file to write (default: DIR/derived/{WORLD_FILE_NAME})")
    parser.add_argument("--seed", type=int, metavar="S", default=0, help="seed of the fit and of the simulated cohorts (default 0)")
    parser.add_argument("--rounds", type=int, metavar="R", default=8, help="simulated-method-of-moments rounds (default 8)")
    parser.add_argument("--replicas", type=int, metavar="R", default=2, help="simulated copies of the population per round (default 2)")
    parser.add_argument("--users", type=int, metavar="N", default=None, help="calibrate on the first N users only (a quick subset)")


def add_fidelity_args(parser: argparse.ArgumentParser) -> None:
    """Options of ``rl-fyp fidelity`` (besides --config, --set, --out, --seed)."""
    parser.add_argument("--data", metavar="DIR", default=None,
                        help="the KuaiRand-Pure directory (default: the config's env.world.data_dir)")
    parser.add_argument("--replicas", type=int, metavar="R", default=3, help="simulated copies of the population (default 3)")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object on stdout (progress on stderr)")


def _err(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def run_calibrate(args: argparse.Namespace) -> int:
    """``rl-fyp calibrate``: fit, write the world file, write and check the config."""
    from envs.kuairand.data import ATTRIBUTION, LICENSE_NOTE, DataError, load_kuairand
    from envs.kuairand.fit import CalibrationSettings, calibrate
    from envs.kuairand.world import write_world

    for name in ("rounds", "replicas"):
        if getattr(args, name) < 1:
            return _err(f"--{name} must be >= 1")
    if args.users is not None and args.users < 50:
        return _err("--users must be >= 50")
    data_dir = Path(args.data)
    try:
        data = load_kuairand(data_dir)
    except DataError as e:
        return _err(str(e))
    settings = CalibrationSettings(seed=args.seed, rounds=args.rounds, replicas=args.replicas, users=args.users)
    cal = calibrate(data, settings, log=lambda m: print(m, flush=True))
    world_path = Path(args.world) if args.world else world_path_default(data_dir)
    sha = write_world(world_path, cal.world_arrays)
    env = cal.env_overrides
    env["world"] = {"source": "kuairand", "world_file": _repo_relative(world_path), "world_sha256": sha,
                    "data_dir": _repo_relative(data_dir)}
    default = yaml.safe_load((CONFIG_DIR / f"{DEFAULT_CONFIG}.yaml").read_text(encoding="utf-8")) or {}
    root = {"seed": args.seed, "env": env, **{k: default[k] for k in JOB_SECTIONS if k in default}}
    fit = cal.final
    header = [
        "# rl-fyp calibrated config: the simulator fitted to KuaiRand-Pure (fit days 2022-04-25 .. 2022-05-03).",
        f"# {ATTRIBUTION}",
        f"# {LICENSE_NOTE} This file and the world file it names are derived from it.",
        f"# Written by: rl-fyp calibrate --data {_repo_relative(data_dir)} --out {args.out} --seed {args.seed}"
        + (f" --users {args.users}" if args.users else "")
        + f" --rounds {args.rounds} --replicas {args.replicas}",
        "# The same data and seed give the same file; the world file's SHA-256 is checked at load (stale -> error).",
        "# Fidelity on the held-out days: rl-fyp fidelity --config " + args.out,
        "# Simulated fit days after calibration: "
        + ", ".join(f"{k} {v:.4g}" for k, v in fit.rates.items())
        + f", impressions/session {fit.impressions_per_session:.4g}.",
        "# The job sections (reward, model, train, logging, eval) are those of configs/default.yaml.",
        "",
    ]
    text = "\n".join(header) + yaml.safe_dump(root, sort_keys=False, default_flow_style=False)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, text)
    try:
        load_config(out)  # the written config must load
    except ConfigError as e:
        return _err(f"the written config does not load: {e}")
    print(f"calibrate: wrote {world_path} (sha256 {sha}) and {out}")
    return 0


def run_fidelity(args: argparse.Namespace) -> int:
    """``rl-fyp fidelity``: the report of a calibrated config against the held-out days."""
    from envs.kuairand.data import DataError, load_kuairand
    from envs.kuairand.fidelity import fidelity_report, format_report, write_report
    from envs.kuairand.world import resolve_path
    from rl_fyp.cli import config_from_args
    from rl_fyp.evaluate import make_run_dir

    if args.replicas < 1:
        return _err("--replicas must be >= 1")
    cfg = config_from_args(args)
    if cfg.env.world.source != "kuairand":
        raise ConfigError("env.world.source", "must be kuairand: the fidelity report needs a calibrated config (rl-fyp calibrate)")
    data_dir = Path(args.data) if args.data else resolve_path(cfg.env.world.data_dir)
    try:
        data = load_kuairand(data_dir)
    except DataError as e:
        return _err(str(e))
    out = Path(args.out) if args.out else make_run_dir(Path(cfg.out_dir) / "fidelity")
    out.mkdir(parents=True, exist_ok=True)
    progress = sys.stderr if args.json else sys.stdout
    report = fidelity_report(cfg.env, data, seed=cfg.seed, replicas=args.replicas, out_dir=out,
                             log=lambda m: print(m, file=progress, flush=True))
    write_report(report, out)
    if args.json:
        print(json.dumps(report, allow_nan=True))
    else:
        print(format_report(report))
        print(f"fidelity: wrote {out / 'fidelity.json'}, {out / 'fidelity.md'} and {out / 'plots'}")
    return 0
