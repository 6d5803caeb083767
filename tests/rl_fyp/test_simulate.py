"""Tests for rl_fyp.simulate: the baseline A/B job, in process, on a tiny cohort."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from rl_fyp.baselines import GreedyPolicy, MMRPolicy
from rl_fyp.config import Config, load_config
from rl_fyp.simulate import METRICS, format_table, make_policy, make_run_dir, simulate


@pytest.fixture(scope="module")
def tiny() -> Config:
    return load_config("small", ["simulate.n_users=16", "env.horizon_days=1", "simulate.n_boot=200"])


def test_make_policy(tiny: Config) -> None:
    assert isinstance(make_policy("greedy", tiny), GreedyPolicy)
    mmr = make_policy("mmr", load_config("small", ["simulate.mmr_lambda=0.25"]))
    assert isinstance(mmr, MMRPolicy) and mmr.lam == 0.25
    with pytest.raises(ValueError, match="unknown policy"):
        make_policy("oracle", tiny)


def test_make_run_dir_is_fresh_each_time(tmp_path: Path) -> None:
    a = make_run_dir(tmp_path / "runs")
    b = make_run_dir(tmp_path / "runs")
    assert a != b and a.is_dir() and b.is_dir()
    assert a.parent == b.parent == tmp_path / "runs"


def test_simulate_writes_results_and_is_deterministic(tiny: Config, tmp_path: Path) -> None:
    lines: list[str] = []
    results = simulate(tiny, tmp_path / "a", log=lines.append)
    assert list(results) == ["greedy", "mmr"]
    for per_metric in results.values():
        assert list(per_metric) == list(METRICS)
        for s in per_metric.values():
            assert set(s) == {"mean", "ci_low", "ci_high"}
            assert all(math.isfinite(v) for v in s.values())
            assert s["ci_low"] <= s["mean"] <= s["ci_high"]
    on_disk = json.loads((tmp_path / "a" / "results.json").read_text())
    assert on_disk == results
    assert (tmp_path / "a" / "results.md").read_text().startswith("# rl-fyp simulate")
    assert load_config(tmp_path / "a" / "config.yaml") == tiny
    # Progress: one line per policy with its steps and seconds; then the table.
    assert any(line.strip().startswith("greedy:") and "steps" in line for line in lines)
    assert any(line.startswith("days_active") for line in "\n".join(lines).splitlines())
    # Same config and seed -> the same numbers.
    assert simulate(tiny, tmp_path / "b", log=lambda _: None) == results


def test_simulate_default_run_dir(tiny: Config, tmp_path: Path) -> None:
    cfg = load_config("small", ["simulate.n_users=4", "env.horizon_days=0.5", "simulate.policies=[greedy]",
                                f"simulate.out_dir={tmp_path / 'runs'}"])
    simulate(cfg, log=lambda _: None)
    (run,) = (tmp_path / "runs").iterdir()
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml", "results.json", "results.md"]


def test_format_table() -> None:
    results = {
        "greedy": {"days_active": {"mean": 7.25, "ci_low": 7.0, "ci_high": 7.5},
                   "churned": {"mean": 0.05, "ci_low": 0.04, "ci_high": 0.06}},
        "mmr": {"days_active": {"mean": 7.5, "ci_low": 7.25, "ci_high": 7.75},
                "churned": {"mean": None, "ci_low": None, "ci_high": None}},
    }
    text = format_table(results)
    lines = text.splitlines()
    assert lines[0].split() == ["metric", "greedy", "mmr"]
    assert "7.250 [7.000, 7.500]" in lines[2] and "7.500 [7.250, 7.750]" in lines[2]
    assert "0.0500 [0.0400, 0.0600]" in lines[3] and lines[3].endswith("n/a")
    md = format_table(results, markdown=True).splitlines()
    assert md[0] == "| metric | greedy | mmr |"
    assert md[2] == "| days_active | 7.250 [7.000, 7.500] | 7.500 [7.250, 7.750] |"
