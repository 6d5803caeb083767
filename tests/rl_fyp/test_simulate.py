"""Tests for rl_fyp.simulate: the evaluation in a run directory of its own, with its config."""

from __future__ import annotations

import json
from pathlib import Path

from rl_fyp.config import load_config
from rl_fyp.simulate import RESULTS_JSON, RUN_CONFIG, simulate


def test_simulate_writes_the_config_and_the_evaluation(tmp_path: Path) -> None:
    cfg = load_config(
        "small",
        ["env.horizon_days=0.5", "eval.n_users=4", "eval.policies=[ppo, greedy, random]", "eval.n_boot=20",
         f"out_dir={tmp_path / 'runs'}"],
    )
    lines: list[str] = []
    results = simulate(cfg, log=lines.append)
    (run,) = (tmp_path / "runs").iterdir()
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml", "lifts.json", "plots", "results.json", "results.md"]
    assert load_config(run / RUN_CONFIG) == cfg
    assert json.loads((run / RESULTS_JSON).read_text()) == results
    # No trained policy is given: ppo is skipped, the baselines run.
    assert list(results) == ["greedy", "random"]
    assert any("ppo" in line and "skipped" in line for line in lines)

    out = tmp_path / "given"
    assert simulate(cfg, out, log=lambda _: None) == results
    assert (out / RUN_CONFIG).is_file()
