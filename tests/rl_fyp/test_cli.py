"""Smoke tests of the command line (train.py, rl-fyp train / evaluate / simulate), in subprocesses.

The training runs use ``configs/small.yaml`` (a small world, 2 iterations of 256 env
steps) with a tiny evaluation cohort, so each takes well under a minute.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rl_fyp.cli import build_parser, config_from_args, main
from rl_fyp.config import REPO_ROOT

TIMEOUT_S = 600
# A tiny evaluation: every policy on 12 users for one simulated day, a 2-point tuning grid.
TINY_EVAL = [
    "eval.n_users=12",
    "eval.tune_users=8",
    "env.horizon_days=1",
    "eval.n_boot=50",
    "eval.mmr_lambda_grid=[0.5, 0.8]",
    "eval.explore_share_grid=[0.1]",
]


def run(args: list[str], cwd: Path = REPO_ROOT, **kw) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S, **kw
    )


def results_of(out: Path) -> dict:
    results = json.loads((out / "results.json").read_text())
    for per_metric in results.values():
        assert set(per_metric["days_active"]) == {"mean", "ci_low", "ci_high"}
    assert (out / "results.md").is_file()
    assert not [p.name for p in out.rglob("*") if p.name.endswith(".tmp")]
    return results


def test_train_py_small_trains_evaluates_and_logs(tmp_path: Path) -> None:
    out = tmp_path / "run"
    # A relative --out from another directory, as `make train` writes under runs/<timestamp>/.
    proc = run(
        [str(REPO_ROOT / "train.py"), "--config", "small", "--out", "run", "--set", *TINY_EVAL, "logging.wandb=true"],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = results_of(out)
    assert list(results) == ["ppo", "greedy", "mmr", "explore", "random", "oracle"]
    # Training artefacts: two checkpoints (every iteration in small.yaml), the learning curve.
    ckpts = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert ckpts == ["iter_000001", "iter_000002"]
    rows = (out / "progress.csv").read_text().splitlines()
    assert rows[0].startswith("iteration,env_steps") and [r.split(",")[0] for r in rows[1:]] == ["1", "2"]
    # TensorBoard always; wandb offline (no API key needed) when enabled.
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert list((out / "wandb").glob("offline-run-*"))
    assert (out / "plots" / "learning_curve.png").is_file()
    assert (out / "bars.json").is_file()
    assert json.loads((out / "export" / "manifest.json").read_text())["slate_size"] == 4
    # Visible progress: the bar on stderr, the table and the bars on stdout.
    assert "train:" in proc.stdout and "days_active" in proc.stdout and "bars:" in proc.stdout
    assert "2/2" in proc.stderr


def test_resume_after_a_kill_continues_from_the_last_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["train.py", "--config", "small", "--out", str(out), "--no-eval", "--set", "train.iterations=6"]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, *args], cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    ckpt_dir = out / "checkpoints"
    deadline = time.monotonic() + TIMEOUT_S
    try:
        # Kill the run (the whole process group, Ray workers included) once a checkpoint exists.
        while time.monotonic() < deadline and not (ckpt_dir / "iter_000002").is_dir():
            assert proc.poll() is None, "training ended before it could be killed"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done_before = int(sorted(p.name for p in ckpt_dir.iterdir() if p.name.startswith("iter_"))[-1][5:])
    assert 2 <= done_before < 6
    resumed = run(["train.py", "--config", "small", "--out", str(out), "--no-eval", "--resume",
                   "--set", "train.iterations=6"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"restored {ckpt_dir / f'iter_{done_before:06d}'}" in resumed.stdout
    iterations = [r.split(",")[0] for r in (out / "progress.csv").read_text().splitlines()[1:]]
    assert iterations == [str(i) for i in range(1, 7)]  # no gaps, no repeats
    assert (ckpt_dir / "iter_000006").is_dir()
    assert not [p for p in ckpt_dir.iterdir() if p.name.startswith(".")]  # no half checkpoint left
    # A finished run can be extended: --resume with more iterations.
    more = run(["train.py", "--out", str(out), "--no-eval", "--resume", "--iterations", "7"])
    assert more.returncode == 0, more.stderr[-3000:]
    iterations = [r.split(",")[0] for r in (out / "progress.csv").read_text().splitlines()[1:]]
    assert iterations == [str(i) for i in range(1, 8)]


def test_evaluate_a_checkpoint_is_deterministic(tmp_path: Path) -> None:
    out = tmp_path / "run"
    trained = run(["train.py", "--config", "small", "--out", str(out), "--no-eval", "--set", "train.iterations=1",
                   *TINY_EVAL])
    assert trained.returncode == 0, trained.stderr[-3000:]
    ckpt = out / "checkpoints" / "iter_000001"
    a = run(["-m", "rl_fyp", "evaluate", str(ckpt), "--out", str(tmp_path / "a")])
    b = run(["-m", "rl_fyp", "evaluate", str(ckpt), "--out", str(tmp_path / "b")])
    assert a.returncode == 0 and b.returncode == 0, (a.stderr[-2000:], b.stderr[-2000:])
    ra, rb = results_of(tmp_path / "a"), results_of(tmp_path / "b")
    assert "ppo" in ra and ra == rb
    exported = run(["-m", "rl_fyp", "export", str(ckpt), str(tmp_path / "model")])
    assert exported.returncode == 0, exported.stderr[-2000:]
    assert {"model.onnx", "model.pt", "manifest.json"} <= {p.name for p in (tmp_path / "model").iterdir()}


def test_simulate_runs_the_baselines_from_another_directory(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = run(["-m", "rl_fyp", "simulate", "--config", "small", "--out", str(out), "--set", *TINY_EVAL,
                "eval.policies=[greedy, mmr]", "eval.tune_heuristics=false"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list(results_of(out)) == ["greedy", "mmr"]
    assert "12 users" in proc.stdout


def test_bad_override_exits_2_naming_the_key(tmp_path: Path) -> None:
    proc = run(["train.py", "--config", "small", "--set", "env.catalog.n_itemz=5", "--out", str(tmp_path / "x")])
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: env.catalog.n_itemz:")
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "x").exists()


def test_shaping_gamma_must_match_the_learner(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--config", "small", "--set", "train.gamma=0.9", "--no-eval"]) == 2
    assert capsys.readouterr().err.startswith("error: reward.shaping.gamma: must equal train.gamma (0.9)")


def test_missing_config_and_checkpoint_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["simulate", "--config", "no_such_config"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no_such_config.yaml" in err
    assert main(["evaluate", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["evaluate", str(tmp_path / "empty")]) == 2
    assert "rl_fyp_config.yaml" in capsys.readouterr().err


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    err = capsys.readouterr().err
    assert "train" in err and "evaluate" in err and "simulate" in err


def test_config_from_args_applies_sets_then_shorthands() -> None:
    args = build_parser().parse_args(
        ["simulate", "--config", "small", "--set", "seed=1", "env.slate_size=3", "--set", "eval.n_users=9",
         "--seed", "5"]
    )
    cfg = config_from_args(args)
    assert cfg.seed == 5  # --seed wins over --set seed=1
    assert cfg.env.slate_size == 3
    assert cfg.eval.n_users == 9
    args = build_parser().parse_args(["train", "--config", "small", "--iterations", "7", "--address", "auto"])
    cfg = config_from_args(args)
    assert cfg.train.iterations == 7 and cfg.train.address == "auto"
    args = build_parser().parse_args(["evaluate", "ckpt", "--n-users", "7"])
    assert args.checkpoint == "ckpt" and config_from_args(args).eval.n_users == 7


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "rl-fyp"
    if not script.exists():
        pytest.skip("rl-fyp console script not installed next to this interpreter")
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0
    assert "simulate" in proc.stdout and "train" in proc.stdout and "evaluate" in proc.stdout
