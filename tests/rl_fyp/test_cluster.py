"""Distributed training: a real multi-node Ray cluster in-process, env-runner fault
tolerance, job submission through the Jobs API, and the runtime_env the driver ships.

Every test starts and stops its own Ray (``ray.cluster_utils.Cluster`` or a fresh local
instance); none joins or stops a Ray it did not start.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rl_fyp.cluster import job_entrypoint, job_options, ray_init_kwargs, runtime_env
from rl_fyp.config import REPO_ROOT, ConfigError, load_config
from rl_fyp.training import IterationEnd, train

WORKER_RESOURCE = "worker_node"


def _rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "progress.csv").open() as fh:
        return list(csv.DictReader(fh))


@pytest.fixture
def no_ray() -> Iterator[None]:
    import ray

    assert not ray.is_initialized(), "a Ray connection was left open by an earlier test"
    yield
    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture
def two_node_cluster(no_ray: None) -> Iterator[tuple[object, object]]:
    """A head node (1 CPU) and a worker node (1 CPU, the custom resource ``worker_node``)."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        worker = cluster.add_node(num_cpus=1, resources={WORKER_RESOURCE: 1})
        cluster.wait_for_nodes()
        yield cluster, worker
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()


@pytest.mark.slow
def test_env_runners_train_on_the_worker_node_of_a_two_node_cluster(two_node_cluster, tmp_path: Path) -> None:
    import ray

    cluster, worker = two_node_cluster
    seen: list[list[tuple[str, str]]] = []

    def where(end: IterationEnd) -> None:
        seen.append(
            end.algo.env_runner_group.foreach_env_runner(
                lambda r: (ray.get_runtime_context().get_node_id(), __import__("envs").__file__),
                local_env_runner=False,
            )
        )

    cfg = load_config(
        "small",
        [
            f"train.address={cluster.address}",
            "train.num_env_runners=1",
            f"train.custom_resources_per_env_runner=[{{name: {WORKER_RESOURCE}, amount: 1}}]",
            "train.torch_threads=1",
            "logging.progress=false",
        ],
    )
    result = train(cfg, tmp_path / "run", log=lambda _: None, on_iteration=where)
    assert result.iterations == 2 and result.env_steps > 0
    assert [r["iteration"] for r in _rows(tmp_path / "run")] == ["1", "2"]
    assert len(seen) == 2 and all(len(runners) == 1 for runners in seen)
    head = cluster.head_node.node_id
    for runners in seen:
        for node_id, envs_file in runners:
            assert node_id == worker.node_id != head
            # The code came through runtime_env's working_dir, not from this checkout.
            assert not Path(envs_file).resolve().is_relative_to(REPO_ROOT), envs_file
    assert not ray.is_initialized()  # train() disconnected the driver it connected


@pytest.mark.slow
def test_training_goes_on_after_an_env_runner_is_killed(no_ray: None, tmp_path: Path) -> None:
    import ray

    kill_after, total = 2, 5
    log: list[tuple[int, int, int]] = []  # (iteration, healthy remote runners, restarts)
    killed = []

    def kill_one(end: IterationEnd) -> None:
        group = end.algo.env_runner_group
        log.append((end.iteration, group.num_healthy_remote_env_runners(), group.num_remote_worker_restarts()))
        if end.iteration == kill_after:
            handles = group.foreach_env_runner(lambda r: ray.get_runtime_context().current_actor, local_env_runner=False)
            killed.append(handles[0])
            # no_restart=False: the process dies as in a crash, and Ray brings the actor back
            # because RLlib created it restartable (restart_failed_env_runners).
            ray.kill(handles[0], no_restart=False)
        elif end.iteration == kill_after + 1:
            # Wait for the restarted actor, so that the next iteration's health probe finds it.
            deadline = time.monotonic() + 180
            while True:
                try:
                    ray.get(killed[0].ping.remote(), timeout=30)
                    break
                except (ray.exceptions.ActorUnavailableError, ray.exceptions.GetTimeoutError):
                    assert time.monotonic() < deadline, "the killed env runner did not come back"
                    time.sleep(0.5)

    cfg = load_config(
        "small",
        [
            "train.num_env_runners=2",
            "train.num_cpus_per_env_runner=0.5",
            "train.num_cpus=2",
            "train.restart_failed_env_runners=true",
            "train.env_runner_restart_delay_s=0",
            f"train.iterations={total}",
            "train.torch_threads=1",
            "logging.progress=false",
        ],
    )
    result = train(cfg, tmp_path / "run", log=lambda _: None, on_iteration=kill_one)
    assert result.iterations == total
    rows = _rows(tmp_path / "run")
    assert [int(r["iteration"]) for r in rows] == list(range(1, total + 1))
    steps = [float(r["env_steps"]) for r in rows]
    assert all(b > a for a, b in zip(steps, steps[1:]))  # sampling went on every iteration
    before = [h for it, h, _ in log if it <= kill_after]
    assert before == [2] * kill_after
    assert log[kill_after][1] == 1  # the iteration after the kill ran on the survivor
    # The killed runner came back as an identical copy.
    assert log[-1][1] == 2 and log[-1][2] >= 1
    assert not ray.is_initialized()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_train_with_an_http_address_submits_a_ray_job(
    no_ray: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ray.cluster_utils import Cluster

    from rl_fyp.cli import main

    # The job's shell finds `python` on the PATH the cluster's processes inherit: this venv's.
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    port = _free_port()
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 2, "include_dashboard": True, "dashboard_host": "127.0.0.1", "dashboard_port": port},
    )
    out = tmp_path / "run"
    try:
        # ship_code=false: the cluster runs the installed package (as from a cluster image);
        # shipping the checkout is covered by the two-node test.
        rc = main(["train", "--config", "small", "--no-eval", "--iterations", "1", "--out", str(out),
                   "--address", f"http://127.0.0.1:{port}", "--set", "train.ship_code=false", "logging.progress=false"])
    finally:
        cluster.shutdown()
    captured = capsys.readouterr().out
    assert rc == 0, captured[-3000:]
    assert "submitted job raysubmit_" in captured and "SUCCEEDED" in captured
    assert "--address auto" in captured  # the job's driver joined the cluster it runs on
    assert (out / "checkpoints" / "iter_000001").is_dir()
    assert (out / "export" / "manifest.json").is_file()
    saved = load_config(out / "config.yaml")
    assert saved.train.address == "auto" and saved.train.iterations == 1


def test_runtime_env_ships_the_checkout_only_to_a_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    local = ray_init_kwargs(load_config("small", ["train.num_cpus=2"]))
    assert local["address"] == "local" and local["num_cpus"] == 2
    assert set(local["runtime_env"]) == {"env_vars"}
    env = runtime_env(load_config("small", ["train.address=auto"]))
    assert env["working_dir"] == str(REPO_ROOT)
    assert {".venv", ".git", "runs"} <= set(env["excludes"])
    assert env["env_vars"]["OMP_NUM_THREADS"] == "1"
    assert "working_dir" not in runtime_env(load_config("small", ["train.address=auto", "train.ship_code=false"]))
    # Inside a submitted job the job's runtime_env already ships the code: Ray rejects a
    # driver runtime_env that sets the same fields, so the driver adds only the rest.
    job_env = {"runtime_env": {"working_dir": "gcs://_ray_pkg_x.zip", "env_vars": {"OMP_NUM_THREADS": "1"}}}
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps(job_env))
    inside = runtime_env(load_config("small", ["train.address=auto"]))
    assert "working_dir" not in inside and inside["env_vars"] == {"OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with pytest.raises(ConfigError, match="train.address: http://head:8265 is a Ray Jobs API address"):
        ray_init_kwargs(load_config("small", ["train.address=http://head:8265"]))


def test_job_entrypoint_forwards_the_command_line(tmp_path: Path) -> None:
    options = job_options({"out": "/shared/runs/a", "seed": 3, "iterations": None, "resume": False, "no_eval": True})
    cmd = job_entrypoint(
        config="small",
        config_path=REPO_ROOT / "configs" / "small.yaml",
        overrides=["train.address=http://h:8265", "env.catalog.n_items=5000"],
        options=options,
        excludes=(".venv", "runs"),
    )
    assert cmd == ("python -m rl_fyp train --config small --set env.catalog.n_items=5000 "
                   "--out /shared/runs/a --seed 3 --no-eval --address auto")
    by_path = job_entrypoint(config=str(REPO_ROOT / "configs" / "small.yaml"), config_path=REPO_ROOT / "configs" / "small.yaml",
                             overrides=[], options=[], excludes=(".venv", "runs"))
    assert "--config configs/small.yaml " in by_path
    outside = tmp_path / "mine.yaml"
    outside.write_text("seed: 1\n")
    with pytest.raises(ConfigError, match="outside the repository"):
        job_entrypoint(config=str(outside), config_path=outside, overrides=[], options=[], excludes=())
    with pytest.raises(ConfigError, match="ship_excludes"):
        job_entrypoint(config="runs/x/config.yaml", config_path=REPO_ROOT / "runs" / "x" / "config.yaml",
                       overrides=[], options=[], excludes=(".venv", "runs"))
    # Not shipping: the path goes as given, for the cluster's own copy.
    assert "--config /etc/mine.yaml" in job_entrypoint(config="/etc/mine.yaml", config_path=outside, overrides=[],
                                                        options=[], excludes=None)


def test_scale_out_settings_reach_the_algorithm_config() -> None:
    from rl_fyp.rllib_glue import build_algo_config

    cfg = load_config("small", [
        "train.num_env_runners=3", "train.num_envs_per_env_runner=8", "train.num_cpus_per_env_runner=0.5",
        "train.custom_resources_per_env_runner=[{name: sim, amount: 0.25}]", "train.num_learners=2",
        "train.num_gpus_per_learner=0.5", "train.restart_failed_env_runners=false", "train.max_env_runner_restarts=7",
        "train.env_runner_restart_delay_s=2.5", "train.train_batch_size=512", "train.minibatch_size=128",
    ])
    algo = build_algo_config(cfg)
    assert algo.num_env_runners == 3 and algo.num_envs_per_env_runner == 8
    assert algo.num_cpus_per_env_runner == 0.5 and algo.custom_resources_per_env_runner == {"sim": 0.25}
    assert algo.num_learners == 2 and algo.num_gpus_per_learner == 0.5
    assert algo.train_batch_size_per_learner == 256  # 512 env steps per iteration over 2 learners
    assert algo.rollout_fragment_length == 21  # 512 // (3 runners x 8 users)
    assert algo.restart_failed_env_runners is False and algo.max_num_env_runner_restarts == 7
    assert algo.delay_between_env_runner_restarts_s == 2.5
    for name in ("APPO", "IMPALA"):
        other = build_algo_config(load_config("small", [f"train.algo={name}", "train.num_env_runners=2"]))
        assert type(other).__name__ == f"{name}Config" and other.num_env_runners == 2


def test_cluster_files_are_consistent_with_the_project() -> None:
    import shlex

    import yaml

    from rl_fyp.cli import build_parser, config_from_args

    aws = yaml.safe_load((REPO_ROOT / "configs" / "cluster" / "aws.yaml").read_text())
    assert aws["provider"]["type"] == "aws" and aws["head_node_type"] in aws["available_node_types"]
    assert aws["available_node_types"]["ray.worker.sim"]["resources"] == {"sim_node": 16}
    mount = next(k for k, v in aws["file_mounts"].items() if v == ".")
    assert any(f"pip install -q -e {mount}" in c for c in aws["setup_commands"])  # the checkout, with its deps
    assert "2.60.0" in aws["docker"]["image"]

    pvc, job = yaml.safe_load_all((REPO_ROOT / "configs" / "cluster" / "rayjob.yaml").read_text())
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    assert pvc["metadata"]["name"] == job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["volumes"][0][
        "persistentVolumeClaim"]["claimName"]
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:2] == ["python", "train.py"]
    # The entrypoint is a valid rl-fyp command line, and its env runners fit the workers.
    cfg = config_from_args(build_parser().parse_args(["train", *argv[2:]]))
    assert cfg.train.address == "auto" and cfg.train.num_env_runners == 8
    (res,) = cfg.train.custom_resources_per_env_runner
    group = job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    offered = json.loads(json.loads(group["rayStartParams"]["resources"]))
    assert res.name in offered and cfg.train.num_env_runners * res.amount <= offered[res.name] * group["replicas"]
    assert cfg.train.num_env_runners * cfg.train.num_cpus_per_env_runner <= int(group["rayStartParams"]["num-cpus"]) * group["replicas"]
    runtime = yaml.safe_load(job["spec"]["runtimeEnvYAML"])
    assert runtime["working_dir"] and any(p.startswith("rl-fyp @ ") for p in runtime["pip"])
