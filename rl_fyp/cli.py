"""The ``rl-fyp`` command line (also ``python -m rl_fyp`` and ``python train.py``).

::

    rl-fyp simulate [--config PATH|NAME] [--set key.sub=value ...] [--out DIR]
                    [--n-users N] [--seed S]
    rl-fyp train    (the same options)

Every command loads its config the same way (:func:`config_from_args`): the YAML file,
then ``--set`` overrides, then the shorthand flags. A config error is printed as
``error: <dotted key>: <reason>`` and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rl_fyp.config import Config, ConfigError, load_config

__all__ = ["COMMANDS", "Command", "add_config_args", "build_parser", "config_from_args", "main"]


@dataclass(frozen=True)
class Command:
    """A subcommand: its help and the function that runs it with the parsed arguments."""

    help: str
    description: str
    run: Callable[[argparse.Namespace], int]


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
        help="directory for the run's files (default: a new <simulate.out_dir>/<YYYYmmdd-HHMMSS>/)",
    )
    parser.add_argument("--n-users", type=int, metavar="N", default=None, help="shorthand for --set simulate.n_users=N")
    parser.add_argument("--seed", type=int, metavar="S", default=None, help="shorthand for --set seed=S")


def config_from_args(args: argparse.Namespace) -> Config:
    """Loads the config named by parsed arguments: file, then ``--set``, then shorthands.

    Raises:
        ConfigError: On a missing file or a bad key or value.
    """
    overrides = list(args.overrides)
    if args.n_users is not None:
        overrides.append(f"simulate.n_users={args.n_users}")
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    return load_config(args.config, overrides)


def _run_simulate(args: argparse.Namespace) -> int:
    from rl_fyp.simulate import simulate  # imports the simulator; keep --help fast

    simulate(config_from_args(args), out_dir=args.out)
    return 0


def _run_train(args: argparse.Namespace) -> int:
    # Policy training is not wired in yet: until it is, `train` runs the simulate job.
    return _run_simulate(args)


COMMANDS: dict[str, Command] = {
    "simulate": Command(
        help="run the baseline re-rankers on one seeded cohort and report metrics with 95%% CIs",
        description=(
            "Simulated A/B test: run one seeded user cohort through the horizon under each "
            "policy of simulate.policies (greedy by the ranker's value score, MMR), and "
            "print per-user metrics with 95% bootstrap confidence intervals. Writes "
            "config.yaml, results.json and results.md to the run directory."
        ),
        run=_run_simulate,
    ),
    "train": Command(
        help="train a re-ranking policy (for now: runs the simulate job)",
        description=(
            "Train a slate re-ranking policy. Policy training is not wired in yet: until it "
            "lands, this command runs the simulate job (greedy and MMR baselines on one "
            "seeded cohort, metrics with 95% confidence intervals) with the same options."
        ),
        run=_run_train,
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
        add_config_args(p)
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
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
