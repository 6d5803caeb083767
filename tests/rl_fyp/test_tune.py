"""Reward-shaping sweeps: the typed sweep config, ranking and the Pareto front, and the
smoke sweep end to end (grid + ASHA), plus an Optuna sweep killed and resumed."""

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
from rl_fyp.config import REPO_ROOT, ConfigError, load_config
from rl_fyp.tune import (
    BEST_YAML,
    PARETO_PNG,
    RESULTS_JSON,
    RESULTS_MD,
    TrialRow,
    load_tune_config,
    pareto_layers,
    param_space,
    rank_trials,
    run_sweep,
    score,
    setting_config,
    trial_config,
)

TIMEOUT_S = 600


def _env() -> dict[str, str]:
    return {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}


# ---------------------------------------------------------------------------- config
def test_smoke_and_reward_sweep_configs_load() -> None:
    smoke = load_tune_config("smoke")
    assert smoke.base == "small" and smoke.search == "grid" and smoke.objective == "days_active"
    assert [d.key for d in smoke.space] == ["reward.retention.day_active", "reward.shaping.weight"]
    space = param_space(smoke)["weights"]
    assert space["reward.shaping.weight"] == {"grid_search": [0.0, 1.0]}
    full = load_tune_config(REPO_ROOT / "configs" / "tune" / "reward_sweep.yaml")
    assert full.search == "optuna" and full.asha.enabled and full.second_min > 0
    assert any(d.is_range and d.log for d in full.space)


def test_sweep_config_is_found_from_any_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_tune_config("configs/tune/smoke.yaml") == load_tune_config("smoke")
    assert load_tune_config("smoke.yaml") == load_tune_config("smoke")


@pytest.mark.parametrize(
    ("overrides", "key", "reason"),
    [
        (["serach=grid"], "serach", "did you mean 'search'"),
        (["trial.eval_userz=5"], "trial.eval_userz", "unknown key"),
        (["asha.grace=1"], "asha.grace", "unknown key"),
        (["space=[{key: reward.shaping.weight, valuez: [1.0]}]"], "space[0].valuez", "unknown key"),
        (["space=[{key: reward.retention.day_activ, values: [1.0]}]"], "space[0].key", "did you mean 'reward.retention.day_active'"),
        (["space=[{key: train.lr, values: [0.1]}]"], "space[0].key", "float field under reward"),
        (["space=[{key: reward.retention.churn, values: [-5.0, 5.0]}]"], "space[0].values[1]",
         "reward.retention.churn: must be <= 0.0, got 5.0"),
        (["space=[{key: reward.shaping.gamma, values: [0.9]}]"], "space[0].values[0]", "must equal train.gamma"),
        (["space=[{key: reward.shaping.weight, low: 0.0, high: 1.0}]"], "space[0].low", "ranges need search: optuna"),
        (["search=optuna", "space=[{key: reward.shaping.weight, low: 1.0, high: 0.5}]"], "space[0].high", "must be > low"),
        (["search=optuna", "space=[{key: reward.shaping.weight, low: 0.0, high: 1.0, log: true}]"], "space[0].low",
         "log scale"),
        (["space=[{key: reward.shaping.weight, values: [1.0], low: 0.0, high: 2.0}]"], "space[0].values", "not both"),
        (["space=[]"], "space", "at least one"),
        (["objective=watch_time_s"], "objective", "must be one of"),
        (["second_mode=objective"], "asha.enabled", "ASHA stops trials by one metric"),
        (["trial.report_every=4"], "trial.report_every", "must be < the trials' iterations (4)"),
        (["asha.grace_period=9"], "asha.grace_period", "must be <= the trials' iterations (4)"),
        (["trial.reference_policies=[greedy, nope]"], "trial.reference_policies[1]", "must be one of"),
        (["base=no_such_base"], "base", "no_such_base.yaml"),
        (["overrides=[env.catalog.n_itemz=5]"], "overrides", "env.catalog.n_itemz: unknown key"),
    ],
)
def test_bad_sweep_values_name_the_dotted_key(overrides: list[str], key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_tune_config("smoke", overrides)
    assert info.value.key == key
    assert reason in str(info.value)


def test_error_in_a_sweep_file_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: small\nspace:\n  - key: reward.shaping.weight\n    values: [1.0]\ntrial:\n  iteratons: 3\n")
    with pytest.raises(ConfigError) as info:
        load_tune_config(bad)
    assert info.value.key == "trial.iteratons" and str(bad) in str(info.value)


def test_trial_config_is_base_plus_overrides_plus_weights_plus_budget() -> None:
    tcfg = load_tune_config("smoke", ["overrides=[env.catalog.n_items=5000]"])
    base = load_config("small", ["env.catalog.n_items=5000"])
    setting = setting_config(base, {"reward.retention.day_active": 20.0, "reward.shaping.weight": 0.0})
    assert setting.reward.retention.day_active == 20.0 and setting.reward.shaping.weight == 0.0
    assert setting.env.catalog.n_items == 5000 and setting.train.iterations == base.train.iterations
    cfg = trial_config(setting, tcfg)
    assert cfg.train.iterations == 4 and cfg.train.checkpoint_every == 2 and cfg.train.keep_checkpoints == 1
    assert cfg.eval.n_users == 64 and cfg.eval.policies == ("ppo", "greedy") and not cfg.eval.tune_heuristics
    assert cfg.reward == setting.reward and cfg.seed == base.seed
    with pytest.raises(ConfigError, match=r"^reward\.retention\.churn: must be <= 0\.0"):
        setting_config(base, {"reward.retention.churn": 3.0})


# ---------------------------------------------------------------------------- ranking
def test_pareto_layers_by_hand() -> None:
    # (y, x), both maximised: a=(3,1) and b=(2,2) and c=(1,3) are the front; d=(1,1) is
    # dominated by all three; e=(2,2) ties b (neither dominates the other); f=(0,0) last.
    points = [(3, 1), (2, 2), (1, 3), (1, 1), (2, 2), (0, 0)]
    assert pareto_layers(points) == [0, 0, 0, 1, 0, 2]
    assert pareto_layers([]) == []


def test_score_is_the_objective_unless_the_constraint_fails() -> None:
    tcfg = load_tune_config("smoke", ["second_min=1000"])
    assert score(2.5, 1200.0, tcfg) == 2.5
    # Infeasible: minus the relative shortfall, below any feasible (non-negative) objective.
    assert score(9.0, 750.0, tcfg) == pytest.approx(-0.25)
    assert score(9.0, 0.0, tcfg) == pytest.approx(-1.0)
    assert score(0.0, 1000.0, tcfg) == 0.0 > score(9.0, 999.0, tcfg)


def _row(tid: str, obj: float, sec: float, status: str = "completed", it: int = 4, feasible: bool = True) -> TrialRow:
    ci = lambda m: {"mean": m, "ci_low": m - 0.1, "ci_high": m + 0.1}  # noqa: E731
    return TrialRow(tid, {"reward.shaping.weight": 1.0}, status, it, ci(obj), ci(sec), obj, 64, feasible)


def test_ranking_puts_feasible_completed_trials_first_by_the_objective() -> None:
    tcfg = load_tune_config("smoke", ["second_min=1000"])
    rows = [
        _row("low", 2.0, 1500.0),
        _row("stopped", 3.0, 1400.0, status="stopped early", it=2),
        _row("infeasible", 9.0, 500.0, feasible=False),
        _row("high", 2.6, 1100.0),
        _row("broken", 0.0, 0.0, status="error", it=0),
    ]
    ranked = rank_trials(rows, tcfg)
    assert [r.trial_id for r in ranked] == ["high", "low", "infeasible", "stopped", "broken"]
    assert [r.rank for r in ranked] == [1, 2, 3, 4, 5]
    # The front is among completed trials only: high, low and infeasible trade off.
    assert {r.trial_id for r in ranked if r.pareto} == {"high", "low", "infeasible"}
    # As a second objective, the Pareto layer ranks first.
    tcfg2 = load_tune_config("smoke", ["second_mode=objective", "asha.enabled=false"])
    rows2 = [_row("a", 2.0, 1000.0), _row("dominated", 1.9, 900.0), _row("b", 1.8, 2000.0)]
    assert [r.trial_id for r in rank_trials(rows2, tcfg2)] == ["a", "b", "dominated"]


def test_tune_command_rejects_a_bad_key(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["tune", "--config", "smoke", "--set", "trial.iteratons=3", "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: trial.iteratons: unknown key (did you mean 'iterations'?)")
    assert not (tmp_path / "s").exists()


# ---------------------------------------------------------------------------- end to end
def _results(out: Path) -> dict:
    payload = json.loads((out / RESULTS_JSON).read_text())
    assert (out / RESULTS_MD).is_file() and (out / PARETO_PNG).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return payload


@pytest.mark.slow
def test_smoke_sweep_runs_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    # From another directory: the sweep file and its base resolve from the repository root.
    proc = subprocess.run(
        [sys.executable, "-m", "rl_fyp", "tune", "--config", "configs/tune/smoke.yaml", "--out", str(out)],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=TIMEOUT_S,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    payload = _results(out)
    trials = payload["trials"]
    grid = {(t["weights"]["reward.retention.day_active"], t["weights"]["reward.shaping.weight"]) for t in trials}
    assert grid == {(5.0, 0.0), (5.0, 1.0), (20.0, 0.0), (20.0, 1.0)}
    assert {t["status"] for t in trials} <= {"completed", "stopped early"}
    done = [t for t in trials if t["status"] == "completed"]
    assert done and trials[: len(done)] == done  # completed trials rank first
    means = [t["objective"]["mean"] for t in done]
    assert means == sorted(means, reverse=True)
    for t in trials:
        o = t["objective"]
        assert o["ci_low"] <= o["mean"] <= o["ci_high"]
        run = out / "trials" / t["trial_id"]
        assert (run / "weights.json").is_file() and (run / "progress.csv").is_file()
        if t["status"] == "completed":
            # The objective is the trained policy's days_active in the trial's own A/B test,
            # the unshaped metric, not the training reward.
            ab = json.loads((run / "results.json").read_text())
            assert t["objective"] == ab["ppo"]["days_active"] and t["second"] == ab["ppo"]["watch_time_s"]
            assert t["cohort_users"] == 64 and t["reference"]["greedy"]["days_active"] == ab["greedy"]["days_active"]
        else:
            assert t["train_iteration"] < 4 and t["cohort_users"] == 16  # ASHA stopped it on a quick report
    assert any(t["pareto"] for t in done)
    # best.yaml: the base config with the best weights, read back by `rl-fyp train --config`.
    best = load_config(out / BEST_YAML)
    assert payload["best"]["trial_id"] == trials[0]["trial_id"]
    assert best == setting_config(load_config("small"), trials[0]["weights"])
    args = build_parser().parse_args(["train", "--config", str(out / BEST_YAML)])
    assert config_from_args(args) == best
    assert "days_active [95% CI]" in proc.stdout and "greedy (reference)" in proc.stdout
    assert (out / "tune" / "tuner.pkl").is_file()  # Tune's experiment, for --resume


@pytest.mark.slow
def test_an_optuna_sweep_killed_midway_resumes(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    sets = [
        "search=optuna", "num_samples=2", "max_concurrent=1", "asha.enabled=false", "second_mode=objective",
        "space=[{key: reward.shaping.weight, low: 0.0, high: 2.0}, {key: reward.retention.day_active, values: [5.0, 20.0]}]",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "rl_fyp", "tune", "--config", "smoke", "--out", str(out), "--set", *sets],
        cwd=REPO_ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.monotonic() + TIMEOUT_S
    try:
        # Kill the sweep (its Ray included) once the first trial has finished its A/B test.
        while time.monotonic() < deadline and not list((out / "trials").glob("*/results.json")):
            assert proc.poll() is None, "the sweep ended before it could be killed"
            time.sleep(0.2)
        time.sleep(1.0)  # let Tune record the trial's final result
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (out / RESULTS_JSON).exists()
    first = next((out / "trials").glob("*/results.json")).parent.name
    # Resume in this process, without the sweep file: the saved one is used.
    tcfg = load_tune_config("smoke")
    result = run_sweep(tcfg, out, resume=True, log=lambda _: None, verbose=0)
    payload = _results(out)
    assert len(payload["trials"]) == 2 and all(t["status"] == "completed" for t in payload["trials"])
    assert first in {t["trial_id"] for t in payload["trials"]}
    for t in payload["trials"]:
        assert 0.0 <= t["weights"]["reward.shaping.weight"] <= 2.0
        assert t["weights"]["reward.retention.day_active"] in (5.0, 20.0)
        rows = (out / "trials" / t["trial_id"] / "progress.csv").read_text().splitlines()[1:]
        assert [r.split(",")[0] for r in rows] == ["1", "2", "3", "4"]  # each iteration once
    assert payload["second_mode"] == "objective" and payload["trials"][0]["pareto"]
    assert result.best is not None and load_config(out / BEST_YAML).reward.shaping.weight == pytest.approx(
        result.best.weights["reward.shaping.weight"]
    )
