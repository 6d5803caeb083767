"""The ``rl-fyp`` command line (also ``python -m rl_fyp`` and ``python train.py``).

::

    rl-fyp train    [--config PATH|NAME] [--set key.sub=value ...] [--out DIR] [--seed S]
                    [--iterations N] [--resume] [--address ADDR] [--no-eval]
    rl-fyp evaluate CHECKPOINT [--config ...] [--set ...] [--out DIR] [--n-users N] [--seed S]
    rl-fyp simulate [--config ...] [--set ...] [--out DIR] [--n-users N] [--seed S]
    rl-fyp export   CHECKPOINT OUT_DIR

Every command loads its config the same way (:func:`config_from_args`): the YAML file,
then ``--set`` overrides, then the shorthand flags. A config error is printed as
``error: <dotted key>: <reason>`` and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rl_fyp.config import Config, ConfigError, load_config

__all__ = ["COMMANDS", "Command", "add_config_args", "build_parser", "config_from_args", "main"]


@dataclass(frozen=True)
class Command:
    """A subcommand: its help and the function that runs it with the parsed arguments."""

    help: str
    description: str
    run: Callable[[argparse.Namespace], int]
    add_args: tuple[Callable[[argparse.ArgumentParser], None], ...] = ()
    positional: str | None = None
    config_args: bool = True


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """Adds the options every command shares: the config, overrides and output directory."""
    parser.add_argument(
        "--config",
        metavar="PATH|NAME",
        default=None,
        help="YAML config: a name in configs/ (e.g. 'small') or a file path (default: configs/default.yaml)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        metavar="KEY=VALUE",
        nargs="+",
        action="extend",
        default=[],
        help="override config values, e.g. --set env.catalog.n_items=100000 seed=3 (values are YAML)",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help="directory for the run's files (default: a new <out_dir>/<YYYYmmdd-HHMMSS>/)",
    )
    parser.add_argument("--seed", type=int, metavar="S", default=None, help="shorthand for --set seed=S")


def _add_eval_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n-users", type=int, metavar="N", default=None, help="shorthand for --set eval.n_users=N")


def _add_train_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--iterations", type=int, metavar="N", default=None, help="shorthand for --set train.iterations=N")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out (default: the newest run under out_dir) from its newest checkpoint",
    )
    parser.add_argument(
        "--address",
        metavar="ADDR",
        default=None,
        help=(
            "run on a Ray cluster instead of a local Ray: join it (auto, HOST:6379, ray://HOST:10001) "
            "or submit the run as a Ray job (http://HEAD:8265)"
        ),
    )
    parser.add_argument("--no-eval", action="store_true", help="train only: skip the A/B evaluation")


def config_from_args(args: argparse.Namespace) -> Config:
    """Loads the config named by parsed arguments: file, then ``--set``, then shorthands.

    Raises:
        ConfigError: On a missing file or a bad key or value.
    """
    overrides = list(args.overrides)
    if getattr(args, "n_users", None) is not None:
        overrides.append(f"eval.n_users={args.n_users}")
    if getattr(args, "iterations", None) is not None:
        overrides.append(f"train.iterations={args.iterations}")
    if getattr(args, "address", None) is not None:
        overrides.append(f"train.address={args.address}")
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    return load_config(args.config, overrides)


def _run_dir(args: argparse.Namespace, cfg: Config) -> Path:
    from rl_fyp.evaluate import make_run_dir

    if args.out is None:
        return make_run_dir(cfg.out_dir)
    path = Path(args.out)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _run_simulate(args: argparse.Namespace) -> int:
    from rl_fyp.simulate import simulate  # imports the simulator; keep --help fast

    cfg = config_from_args(args)
    simulate(cfg, _run_dir(args, cfg))
    return 0


def _run_evaluate(args: argparse.Namespace) -> int:
    from rl_fyp.jobs import evaluate_checkpoint

    cfg = config_from_args(args) if (args.config or args.overrides or args.seed is not None or args.n_users) else None
    out = Path(args.out) if args.out else None
    evaluate_checkpoint(Path(args.checkpoint), cfg=cfg, out_dir=out)
    return 0


def _run_export(args: argparse.Namespace) -> int:
    from rl_fyp.export import export_checkpoint

    checkpoint = Path(args.checkpoint)
    if not checkpoint.exists():
        raise FileNotFoundError(f"checkpoint {checkpoint} does not exist")
    manifest = export_checkpoint(checkpoint, args.out_dir)
    print(f"exported {manifest['model_version']} (K={manifest['slate_size']}, {manifest['variant']}) -> {args.out_dir}")
    return 0


def _add_export_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", metavar="OUT_DIR", help="directory for model.onnx, model.pt and manifest.json")


def _run_train(args: argparse.Namespace) -> int:
    from rl_fyp.cluster import is_job_address
    from rl_fyp.jobs import resume_dir, train_job

    cfg = config_from_args(args)
    if is_job_address(cfg.train.address):
        return _submit_train(args, cfg)
    if args.resume:
        run_dir = Path(args.out) if args.out else resume_dir(cfg.out_dir)
    else:
        run_dir = _run_dir(args, cfg)
    train_job(cfg, run_dir, resume=args.resume, evaluate=not args.no_eval)
    return 0


def _submit_train(args: argparse.Namespace, cfg: Config) -> int:
    """``train --address http(s)://HEAD:8265``: the same command line, as a Ray job on the cluster."""
    from rl_fyp.cluster import job_entrypoint, job_options, submit_train_job
    from rl_fyp.config import resolve_config_path

    entrypoint = job_entrypoint(
        config=args.config,
        config_path=resolve_config_path(args.config) if args.config else None,
        overrides=args.overrides,
        options=job_options(vars(args)),
        excludes=cfg.train.ship_excludes if cfg.train.ship_code else None,
    )
    out = Path(args.out) if args.out else Path(cfg.out_dir)
    if not out.is_absolute():
        print(
            f"note: the run directory {out} is relative: on the cluster it lands inside the job's working "
            "directory, which Ray deletes later; pass an absolute --out (or out_dir) on storage you keep",
            file=sys.stderr,
        )
    return submit_train_job(cfg, entrypoint)


COMMANDS: dict[str, Command] = {
    "train": Command(
        help="train a slate re-ranking policy, then A/B-test it against the baselines",
        description=(
            "Train the slate policy with RLlib on the simulator (train.algo, default PPO) under "
            "the configured reward, checkpointing every train.checkpoint_every iterations; then "
            "run the simulated A/B test of the trained policy against every baseline (greedy, "
            "MMR, exploration slots, random, oracle) on one seeded cohort and print the table "
            "with 95% confidence intervals and the bars. Writes everything to the run directory."
        ),
        run=_run_train,
        add_args=(_add_train_args,),
    ),
    "evaluate": Command(
        help="A/B-test a trained checkpoint against the baselines",
        description=(
            "Load the policy of a training checkpoint and run the simulated A/B test against "
            "the baselines on one seeded cohort (the checkpoint's config unless --config/--set "
            "are given). Writes results.json, results.md, lifts.json and plots."
        ),
        run=_run_evaluate,
        add_args=(_add_eval_args,),
        positional="checkpoint",
    ),
    "export": Command(
        help="export a checkpoint's policy as ONNX + TorchScript + manifest.json",
        description=(
            "Write the policy of a training checkpoint as a standalone re-ranker: model.onnx, "
            "model.pt (TorchScript) and manifest.json (feature schema, K, versions, SHA-256 of "
            "every file), loadable without Ray by rl_fyp.serving.Reranker."
        ),
        run=_run_export,
        positional="checkpoint",
        add_args=(_add_export_args,),
        config_args=False,
    ),
    "simulate": Command(
        help="run the baseline re-rankers on one seeded cohort and report metrics with 95%% CIs",
        description=(
            "Simulated A/B test of the hand-written baselines: run one seeded user cohort "
            "through the horizon under each baseline in eval.policies and print per-user "
            "metrics with 95% bootstrap confidence intervals. Writes config.yaml, results.json, "
            "results.md, lifts.json and plots to the run directory."
        ),
        run=_run_simulate,
        add_args=(_add_eval_args,),
    ),
}
"""Subcommands by name; a new command adds an entry here and reuses :func:`add_config_args`."""


def build_parser(prog: str = "rl-fyp") -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="rl-fyp: reinforcement learning for short-video feed recommendation.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, cmd in COMMANDS.items():
        p = sub.add_parser(name, help=cmd.help, description=cmd.description)
        if cmd.positional:
            p.add_argument(cmd.positional, metavar=cmd.positional.upper())
        if cmd.config_args:
            add_config_args(p)
        for add in cmd.add_args:
            add(p)
        p.set_defaults(run=cmd.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line.

    Args:
        argv: Arguments without the program name; ``None`` reads ``sys.argv``.

    Returns:
        The exit status: 0 on success, 2 on a usage or config error, 130 if interrupted.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.run(args)
    except (ConfigError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
