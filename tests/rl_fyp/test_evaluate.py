"""Tests for rl_fyp.evaluate: the simulated A/B test, in process, on tiny cohorts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from rl_fyp.baselines import GreedyPolicy
from rl_fyp.config import Config, load_config
from rl_fyp.evaluate import (
    LIFTS_JSON,
    METRICS,
    RESULTS_JSON,
    RESULTS_MD,
    TUNING_JSON,
    best_heuristic,
    evaluate_policies,
    format_table,
    make_run_dir,
    tuning_seed,
)

KEYS = {"mean", "ci_low", "ci_high"}


def tiny_config(*extra: str) -> Config:
    """A cohort of 12 users over one day in the small world, tuning on 8 users."""
    return load_config(
        "small",
        [
            "env.horizon_days=1",
            "eval.n_users=12",
            "eval.tune_users=8",
            "eval.n_boot=50",
            "eval.mmr_lambda_grid=[0.3, 1.0]",
            "eval.explore_share_grid=[0.1, 0.25]",
            *extra,
        ],
    )


@pytest.fixture(scope="module")
def tiny() -> Config:
    return tiny_config()


@pytest.fixture(scope="module")
def run(tiny: Config, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, list[str]]:
    """One evaluation of every policy, with a trained greedy-equivalent under "ppo"."""
    run_dir = tmp_path_factory.mktemp("eval") / "run"
    run_dir.mkdir()
    # A trainer's progress log with a header, an empty and a NaN row to skip.
    (run_dir / "progress.csv").write_text(
        "iteration,env_steps,time_s,episode_return_mean\n1,256,1.0,\n2,512,2.0,nan\n3,768,3.0,4.5\n4,1024,4.0,5.0\n"
    )
    greedy = GreedyPolicy(tiny.env)
    lines: list[str] = []
    results = evaluate_policies(tiny, run_dir, {"ppo": lambda obs: greedy(obs)}, log=lines.append)
    return run_dir, results, lines


def test_writes_every_file_with_the_exact_shapes(tiny: Config, run) -> None:
    run_dir, results, _ = run
    names = sorted(p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file())
    assert names == sorted([
        "progress.csv", RESULTS_JSON, LIFTS_JSON, TUNING_JSON, RESULTS_MD,
        "plots/metrics.png", "plots/retention_by_day.png", "plots/learning_curve.png",
    ])
    for png in run_dir.glob("plots/*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    on_disk = json.loads((run_dir / RESULTS_JSON).read_text())
    assert on_disk == results
    assert list(results) == list(tiny.eval.policies)  # ppo, greedy, mmr, explore, random, oracle
    for per_metric in results.values():
        assert list(per_metric) == list(METRICS)
        for s in per_metric.values():
            assert set(s) == KEYS
            assert all(isinstance(v, float) and math.isfinite(v) for v in s.values())
            assert s["ci_low"] <= s["ci_high"]
    lifts = json.loads((run_dir / LIFTS_JSON).read_text())
    assert list(lifts) == list(results)
    for policy, per_metric in lifts.items():
        assert list(per_metric) == list(METRICS)
        for s in per_metric.values():
            assert set(s) == KEYS
    # Greedy against itself: exactly no lift, wherever its mean is not 0.
    for m, s in lifts["greedy"].items():
        if results["greedy"][m]["mean"] != 0.0:
            assert s == {"mean": 0.0, "ci_low": 0.0, "ci_high": 0.0}, m
        else:
            assert s == {"mean": None, "ci_low": None, "ci_high": None}, m
    for share in ("catalog_coverage", "creator_coverage"):
        for per_metric in results.values():
            s = per_metric[share]
            assert 0.0 < s["mean"] <= 1.0 and 0.0 <= s["ci_low"] <= s["mean"] <= s["ci_high"] <= 1.0
    md = (run_dir / RESULTS_MD).read_text()
    for part in ("# rl-fyp evaluation", "## Results", "## Lift over greedy", "Best heuristic", "## Tuning",
                 "## Retention by day", "## Timings", "plots/learning_curve.png"):
        assert part in md, part


def test_a_trained_policy_is_injected_by_name(run) -> None:
    _, results, lines = run
    # "ppo" ran the same slates as greedy on the same users: the same row, zero lift.
    assert results["ppo"] == results["greedy"]
    assert any(line.strip().startswith("ppo:") and "steps" in line for line in lines)


def test_tuning_picks_the_argmax_and_the_evaluation_uses_it(tiny: Config, run, tmp_path: Path) -> None:
    run_dir, results, lines = run
    tuning = json.loads((run_dir / TUNING_JSON).read_text())
    assert tuning["cohort"] == {"n_users": 8, "seed": tuning_seed(tiny.seed), "horizon_days": 1.0}
    assert tuning["cohort"]["seed"] != tiny.seed
    assert tuning["metric"] == "days_active"
    for policy, param, grid in (("mmr", "mmr_lambda", [0.3, 1.0]), ("explore", "explore_share", [0.1, 0.25])):
        t = tuning[policy]
        assert t["param"] == param
        assert [row["value"] for row in t["grid"]] == grid
        for row in t["grid"]:
            assert set(row) == {"value", "days_active", "watch_time_s"}
            assert set(row["days_active"]) == KEYS
        means = [row["days_active"]["mean"] for row in t["grid"]]
        assert t["chosen"] == grid[means.index(max(means))]  # the first of equal means
    assert any("-> mmr mmr_lambda" in line for line in lines)
    # The evaluation's mmr row is MMR at the chosen lambda, untuned.
    chosen = tuning["mmr"]["chosen"]
    cfg = tiny_config("eval.tune_heuristics=false", f"eval.mmr_lambda={chosen}", "eval.policies=[mmr]")
    again = evaluate_policies(cfg, tmp_path, log=lambda _: None)
    assert again["mmr"] == results["mmr"]
    assert not (tmp_path / TUNING_JSON).exists()


def test_same_config_same_files(tiny: Config, run, tmp_path: Path) -> None:
    run_dir, _, _ = run
    greedy = GreedyPolicy(tiny.env)
    evaluate_policies(tiny, tmp_path, {"ppo": lambda obs: greedy(obs)}, log=lambda _: None)
    for name in (RESULTS_JSON, LIFTS_JSON, TUNING_JSON):
        assert (tmp_path / name).read_bytes() == (run_dir / name).read_bytes(), name


def test_missing_trained_policy_is_skipped_and_logged(tmp_path: Path) -> None:
    cfg = tiny_config("eval.tune_heuristics=false", "eval.policies=[ppo, greedy]", "eval.n_users=4")
    lines: list[str] = []
    results = evaluate_policies(cfg, tmp_path, {"impala": lambda obs: obs}, log=lines.append)
    assert list(results) == ["greedy"]
    assert any("ppo" in line and "skipped" in line for line in lines)
    assert any("impala" in line and "skipped" in line for line in lines)
    assert not (tmp_path / "plots" / "learning_curve.png").exists()  # no progress.csv


def test_best_heuristic() -> None:
    def row(days: float | None) -> dict:
        return {"days_active": {"mean": days, "ci_low": days, "ci_high": days}}

    results = {"ppo": row(9.0), "greedy": row(7.0), "mmr": row(7.5), "explore": row(7.5), "oracle": row(12.0),
               "random": row(8.0)}
    # Neither the oracle (hidden state) nor random counts; the first of equal ones wins.
    assert best_heuristic(results) == ("mmr", 7.5)
    assert best_heuristic({"greedy": row(7.0), "mmr": row(None)}) == ("greedy", 7.0)
    with pytest.raises(ValueError, match="heuristic"):
        best_heuristic({"ppo": row(9.0), "oracle": row(12.0)})


def test_make_run_dir_is_fresh_each_time(tmp_path: Path) -> None:
    a = make_run_dir(tmp_path / "runs")
    b = make_run_dir(tmp_path / "runs")
    assert a != b and a.is_dir() and b.is_dir()
    assert a.parent == b.parent == tmp_path / "runs"


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


def test_read_progress_skips_empty_and_nan_rows(tmp_path: Path) -> None:
    from rl_fyp.plots import read_progress

    csv = tmp_path / "progress.csv"
    csv.write_text("iteration,env_steps,episode_return_mean\n1,10,\n2,20,nan\n3,,1.0\n4,40,2.5\n")
    steps, ret = read_progress(csv)
    np.testing.assert_array_equal(steps, [40.0])
    np.testing.assert_array_equal(ret, [2.5])
    csv.write_text("iteration,loss\n1,0.5\n")
    assert read_progress(csv)[0].size == 0
