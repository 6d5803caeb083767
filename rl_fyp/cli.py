"""The ``rl-fyp`` command line (also ``python -m rl_fyp`` and ``python train.py``).

::

    rl-fyp train    [--config PATH|NAME] [--set key.sub=value ...] [--out DIR] [--seed S]
                    [--iterations N] [--resume] [--address ADDR] [--no-eval]
    rl-fyp evaluate CHECKPOINT|EXPORT_DIR [--rules FILE] [--config ...] [--set ...] [--out DIR] [--n-users N] [--seed S]
    rl-fyp simulate [--config ...] [--set ...] [--out DIR] [--n-users N] [--seed S]
    rl-fyp export   CHECKPOINT OUT_DIR
    rl-fyp tune     [--config PATH|NAME] [--set key=value ...] [--out DIR] [--resume]
    rl-fyp serve    OUT_DIR [--port P] [--host ADDR] [--rules FILE] [--threads N]
                    [--backend onnx|torchscript] [--max-body-bytes B] [--offload] [--access-log]
    rl-fyp loadtest URL [--rate R] [--requests N] [--n-candidates N] [--raw] [--concurrency C]
                    [--config ...] [--json]
    rl-fyp calibrate --data DIR --out YAML [--world NPZ] [--seed S] [--rounds R] [--replicas R] [--users N]
    rl-fyp fidelity [--data DIR] [--config ...] [--set ...] [--out DIR] [--seed S] [--replicas R] [--json]

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

from rl_fyp.calibration import add_calibrate_args, add_fidelity_args, run_calibrate, run_fidelity
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


def add_config_args(
    parser: argparse.ArgumentParser,
    *,
    config_help: str = "YAML config: a name in configs/ (e.g. 'small') or a file path (default: configs/default.yaml)",
    set_help: str = "override config values, e.g. --set env.catalog.n_items=100000 seed=3 (values are YAML)",
    out_help: str = "directory for the run's files (default: a new <out_dir>/<YYYYmmdd-HHMMSS>/)",
    seed: bool = True,
) -> None:
    """Adds the options every command shares: the config, overrides, output directory and seed."""
    parser.add_argument("--config", metavar="PATH|NAME", default=None, help=config_help)
    parser.add_argument("--set", dest="overrides", metavar="KEY=VALUE", nargs="+", action="extend", default=[], help=set_help)
    parser.add_argument("--out", metavar="DIR", default=None, help=out_help)
    if seed:
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
    rules = None
    if args.rules:
        from rl_fyp.rules import load_rules

        rules = load_rules(args.rules)
    evaluate_checkpoint(Path(args.checkpoint), cfg=cfg, out_dir=out, rules=rules)
    return 0


def _add_evaluate_args(parser: argparse.ArgumentParser) -> None:
    _add_eval_args(parser)
    parser.add_argument(
        "--rules",
        metavar="FILE",
        default=None,
        help="business rules after an exported model (YAML, see configs/serving/rules.yaml); CHECKPOINT must be an export directory",
    )


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


def _run_serve(args: argparse.Namespace) -> int:
    from rl_fyp.rules import load_rules
    from rl_fyp.service import serve  # imports starlette and uvicorn; keep --help fast
    from rl_fyp.serving import ModelIntegrityError

    rules = load_rules(args.rules) if args.rules else None
    limit = {} if args.max_body_bytes is None else {"max_body_bytes": args.max_body_bytes}
    try:
        serve(
            args.out_dir, host=args.host, port=args.port, rules=rules, threads=args.threads,
            backend=args.backend, offload=args.offload, access_log=args.access_log, **limit,
        )
    except ModelIntegrityError as e:
        print(f"error: refusing to serve: {e}", file=sys.stderr)
        return 1
    return 0


def _add_serve_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, metavar="P", default=8080, help="TCP port (0: a free one; default 8080)")
    parser.add_argument("--host", metavar="ADDR", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--rules", metavar="FILE|NAME", default=None, help="business rules YAML, e.g. configs/serving/rules.yaml (default: none)")
    parser.add_argument("--threads", type=int, metavar="N", default=1, help="intra-op threads of the model runner (default 1)")
    parser.add_argument("--backend", choices=("onnx", "torchscript"), default="onnx", help="model runner (default onnx)")
    parser.add_argument("--max-body-bytes", type=int, metavar="B", default=None, help="larger request bodies get a 413 (default 8 MiB)")
    parser.add_argument("--offload", action="store_true", help="run the model in a thread pool instead of on the event loop")
    parser.add_argument("--access-log", action="store_true", help="log every request (off by default: it costs latency)")


def _run_loadtest(args: argparse.Namespace) -> int:
    import json

    from rl_fyp.loadtest import load_test

    try:
        result = load_test(
            args.url, rate=args.rate, requests=args.requests, n_candidates=args.n_candidates, raw=args.raw,
            concurrency=args.concurrency, config=args.config, seed=args.seed, timeout_s=args.timeout,
        )
    except (ConnectionError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result.as_dict()) if args.json else result.summary())
    return 0 if result.non_200 == 0 and result.failed == 0 else 1


def _add_loadtest_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rate", type=float, metavar="R", default=200.0, help="requests per second, sent on schedule (default 200)")
    parser.add_argument("--requests", type=int, metavar="N", default=2000, help="requests to send, then stop (default 2000)")
    parser.add_argument("--n-candidates", type=int, metavar="N", default=500, help="candidates per request (default 500)")
    parser.add_argument("--raw", action="store_true", help="send raw records (user and candidate records) instead of feature arrays")
    parser.add_argument("--concurrency", type=int, metavar="C", default=64, help="most connections open at once (default 64)")
    parser.add_argument("--config", metavar="PATH|NAME", default=None, help="simulator config of the requests (default: configs/default.yaml sized to the model)")
    parser.add_argument("--seed", type=int, metavar="S", default=0, help="simulator seed (default 0)")
    parser.add_argument("--timeout", type=float, metavar="S", default=10.0, help="per-request timeout in seconds (default 10)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")


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


def _add_tune_args(parser: argparse.ArgumentParser) -> None:
    add_config_args(
        parser,
        config_help="sweep YAML: a name in configs/tune/ (e.g. 'smoke') or a file path (default: configs/tune/reward_sweep.yaml)",
        set_help="override sweep values, e.g. --set num_samples=8 trial.iterations=12 (values are YAML)",
        out_help="directory for the sweep's files (default: a new <out_dir>/<YYYYmmdd-HHMMSS>/)",
        seed=False,
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the sweep in --out (default: the newest sweep under out_dir): Tune restores it",
    )


def _run_tune(args: argparse.Namespace) -> int:
    from rl_fyp.evaluate import make_run_dir
    from rl_fyp.tune import load_tune_config, resume_sweep_dir, run_sweep

    tcfg = load_tune_config(args.config, args.overrides)
    if args.resume:
        run_dir = Path(args.out) if args.out else resume_sweep_dir(tcfg.out_dir)
    elif args.out:
        run_dir = Path(args.out)
    else:
        run_dir = make_run_dir(tcfg.out_dir)
    result = run_sweep(tcfg, run_dir, resume=args.resume)
    return 0 if result.best is not None else 1


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
        help="A/B-test a trained checkpoint (or an exported model) against the baselines",
        description=(
            "Load the policy of a training checkpoint, or an exported model (an rl-fyp export "
            "directory: the model runs on the serving runtime, with --rules after it), and run "
            "the simulated A/B test against the baselines on one seeded cohort (the checkpoint's "
            "or export's config unless --config/--set are given). Writes results.json, "
            "results.md, lifts.json and plots."
        ),
        run=_run_evaluate,
        add_args=(_add_evaluate_args,),
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
    "serve": Command(
        help="serve an exported re-ranker over HTTP (POST /rerank, GET /healthz, GET /schema)",
        description=(
            "Load an export directory (checking every file's SHA-256; a tampered model is "
            "refused) and serve it with uvicorn, one process: POST /rerank takes a request of "
            "raw records or feature arrays (or {\"requests\": [...]}) and answers the slate; "
            "GET /healthz and GET /schema describe the model. Bad requests get 400 with a message."
        ),
        run=_run_serve,
        positional="out_dir",
        add_args=(_add_serve_args,),
        config_args=False,
    ),
    "loadtest": Command(
        help="open-loop load test of a running `rl-fyp serve` (latency percentiles, throughput)",
        description=(
            "Send a bounded number of simulator-built requests to URL (e.g. http://127.0.0.1:8080) "
            "at a fixed rate, on schedule whether or not earlier ones have returned, over "
            "keep-alive connections; then print the throughput, p50/p90/p99/max latency in ms "
            "(from each request's scheduled send time) and the count of non-200 answers. "
            "Exits 1 if any request failed."
        ),
        run=_run_loadtest,
        positional="url",
        add_args=(_add_loadtest_args,),
        config_args=False,
    ),
    "tune": Command(
        help="sweep reward weights with Ray Tune, ranked by unshaped retention (days active)",
        description=(
            "Ray Tune over the reward weights of a sweep file (configs/tune/): grid search or "
            "Optuna, with ASHA early stopping. Each trial trains the slate policy under its "
            "weights, reports a quick A/B test on a small cohort every trial.report_every "
            "iterations, and ends with the simulated A/B test against the reference baselines. "
            "Ranks the settings by days_active per user (never the training reward) with watch "
            "time as a constraint or second objective; writes tune_results.json/.md with 95% "
            "CIs, pareto.png and best.yaml (for rl-fyp train --config)."
        ),
        run=_run_tune,
        add_args=(_add_tune_args,),
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
    "calibrate": Command(
        help="fit the simulator to KuaiRand-Pure's fit days; write the world file and a config",
        description=(
            "Calibrate the user-behaviour model to the KuaiRand-Pure logs of --data (fit days "
            "2022-04-25 .. 05-03 only): the real catalog and users with fitted latents, the "
            "watch-ratio, engagement, leave and return parameters (simulated method of moments). "
            "Writes the world file (DIR/derived/kuairand_world.npz unless --world) and the config "
            "--out (e.g. configs/kuairand.yaml), which names the world file and its SHA-256. "
            "The same data and seed give the same files."
        ),
        run=run_calibrate,
        add_args=(add_calibrate_args,),
        config_args=False,
    ),
    "fidelity": Command(
        help="the calibrated simulator vs KuaiRand-Pure's held-out days: rates, KS distances, AUC, bars",
        description=(
            "Simulate the calibrated world (--config, e.g. configs/kuairand.yaml) over the held-out "
            "days' window and compare it with the held-out days (2022-05-04 .. 05-08) of --data: "
            "signal rates with relative errors, watch-ratio KS per duration bucket, session-length, "
            "return-gap and activity distributions, the prediction check (AUC against a popularity "
            "baseline), each bar MET / NOT MET. Writes fidelity.json, fidelity.md and plots/ to "
            "--out (default: a new <out_dir>/fidelity/<YYYYmmdd-HHMMSS>/); --json prints the report."
        ),
        run=run_fidelity,
        add_args=(add_fidelity_args,),
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
