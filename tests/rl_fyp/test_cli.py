"""Smoke tests of the command line: train.py, rl-fyp simulate and config errors, in subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rl_fyp.cli import build_parser, config_from_args, main
from rl_fyp.config import REPO_ROOT

TIMEOUT_S = 600


def run(args: list[str], cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
    )


def check_run_dir(out: Path) -> None:
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"greedy", "mmr"}
    for policy in ("greedy", "mmr"):
        assert set(results[policy]["days_active"]) == {"mean", "ci_low", "ci_high"}
    assert (out / "results.md").is_file()
    assert (out / "config.yaml").is_file()
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


def test_train_py_small(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = run(["train.py", "--config", "small", "--out", str(out)])
    assert proc.returncode == 0, proc.stderr
    check_run_dir(out)
    assert "days_active" in proc.stdout
    assert "greedy:" in proc.stdout and "mmr:" in proc.stdout  # progress lines


def test_module_simulate_small_from_another_directory(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = run(["-m", "rl_fyp", "simulate", "--config", "small", "--out", str(out), "--n-users", "16"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    check_run_dir(out)
    assert "16 users" in proc.stdout


def test_bad_override_exits_2_naming_the_key(tmp_path: Path) -> None:
    proc = run(["train.py", "--config", "small", "--set", "env.catalog.n_itemz=5", "--out", str(tmp_path / "x")])
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: env.catalog.n_itemz:")
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "x").exists()


def test_missing_config_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--config", "no_such_config"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no_such_config.yaml" in err


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "simulate" in capsys.readouterr().err


def test_train_help_says_it_runs_simulate(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["train", "--help"])
    assert info.value.code == 0
    assert "simulate job" in capsys.readouterr().out


def test_config_from_args_applies_sets_then_shorthands() -> None:
    args = build_parser().parse_args(
        ["simulate", "--config", "small", "--set", "seed=1", "env.slate_size=3", "--set", "simulate.n_users=9",
         "--seed", "5"]
    )
    cfg = config_from_args(args)
    assert cfg.seed == 5  # --seed wins over --set seed=1
    assert cfg.env.slate_size == 3
    assert cfg.simulate.n_users == 9
    args = build_parser().parse_args(["train", "--config", "small", "--n-users", "7"])
    assert config_from_args(args).simulate.n_users == 7


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "rl-fyp"
    if not script.exists():
        pytest.skip("rl-fyp console script not installed next to this interpreter")
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0
    assert "simulate" in proc.stdout and "train" in proc.stdout
