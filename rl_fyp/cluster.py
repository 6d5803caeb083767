"""Running on a Ray cluster: how the driver joins it, what it ships, and job submission.

``train.address`` says where a run goes:

- empty: a fresh local Ray instance (``address="local"``, never a stale one);
- ``auto`` or ``HOST:6379``: this process joins a running cluster as its driver (on the
  head node, or on any machine that reaches the GCS port);
- ``ray://HOST:10001``: Ray Client, the driver runs here and everything else there;
- ``http://HEAD:8265``: the Ray Jobs API. ``rl-fyp train`` does not join the cluster;
  it submits the same command line (with ``--address auto``) as a Ray job, which runs the
  driver on the head node, and streams its logs (:func:`submit_train_job`).

In the first three cases the repository is shipped to every worker through Ray's
``runtime_env`` (``working_dir`` = the repository root, minus ``train.ship_excludes``), so
workers import this checkout's ``envs``, ``reward`` and ``rl_fyp`` (:func:`runtime_env`).
Inside a submitted job the job's own ``runtime_env`` already ships the code; the driver
then adds only what the job's lacks (Ray refuses a driver ``runtime_env`` whose fields
clash with the job's).
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import os
import shlex
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rl_fyp.config import REPO_ROOT, Config, ConfigError, config_hash

__all__ = [
    "THREAD_ENV_VARS",
    "in_ray_job",
    "is_job_address",
    "job_entrypoint",
    "job_options",
    "ray_init_kwargs",
    "runtime_env",
    "submit_train_job",
]

THREAD_ENV_VARS = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
"""One BLAS/OpenMP thread per Ray worker: several workers share each node's cores."""
_JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"
"""Set by Ray's job supervisor in a submitted job's driver: the job's runtime_env, as JSON."""


def is_job_address(address: str) -> bool:
    """Whether an address is a Ray Jobs API (dashboard) address: ``http(s)://HEAD:8265``."""
    return address.startswith(("http://", "https://"))


def _job_runtime_env() -> dict[str, Any] | None:
    raw = os.environ.get(_JOB_CONFIG_ENV)
    if not raw:
        return None
    try:
        return dict(json.loads(raw).get("runtime_env") or {})
    except (ValueError, AttributeError, TypeError):
        return {}


def in_ray_job() -> bool:
    """Whether this process is the driver of a submitted Ray job."""
    return _job_runtime_env() is not None


def runtime_env(cfg: Config) -> dict[str, Any]:
    """The ``runtime_env`` the driver passes to ``ray.init``.

    Args:
        cfg: The run config (``train.address``, ``train.ship_code``, ``train.ship_excludes``).

    Returns:
        ``env_vars`` (one BLAS thread per worker), plus, on a cluster with
        ``train.ship_code``, ``working_dir`` (the repository root) and ``excludes``. Inside a
        submitted job, the fields and variables the job's own runtime_env sets are left out.
    """
    env: dict[str, Any] = {"env_vars": dict(THREAD_ENV_VARS)}
    if cfg.train.address and cfg.train.ship_code:
        env["working_dir"] = str(REPO_ROOT)
        env["excludes"] = list(cfg.train.ship_excludes)
    job = _job_runtime_env()
    if job is not None:
        if job.get("working_dir") or job.get("py_modules"):
            env.pop("working_dir", None)
            env.pop("excludes", None)
        taken = set(job.get("env_vars") or {})
        env["env_vars"] = {k: v for k, v in env["env_vars"].items() if k not in taken}
        if not env["env_vars"]:
            del env["env_vars"]
    return env


def ray_init_kwargs(cfg: Config) -> dict[str, Any]:
    """The keyword arguments of ``ray.init`` for a run.

    Raises:
        ConfigError: For a Jobs API address (``http(s)://``): such a run is submitted with
            :func:`submit_train_job`, not joined.
    """
    t = cfg.train
    if is_job_address(t.address):
        raise ConfigError(
            "train.address",
            f"{t.address} is a Ray Jobs API address: submit the run with `rl-fyp train --address {t.address}` "
            "(or `ray job submit`); a driver joins a cluster with auto, HOST:PORT or ray://HOST:PORT",
        )
    kwargs: dict[str, Any] = {"runtime_env": runtime_env(cfg), "log_to_driver": False}
    if t.address:
        kwargs["address"] = t.address
    else:
        # address="local" always starts a fresh instance, never a stale one left by a killed run.
        kwargs.update(address="local", num_cpus=t.num_cpus or None, include_dashboard=False)
    return kwargs


def _shipped_path(path: Path, excludes: Sequence[str]) -> str:
    """``path`` relative to the repository root, as a submitted job sees it."""
    try:
        rel = path.resolve().relative_to(REPO_ROOT)
    except ValueError:
        raise ConfigError(
            "--config",
            f"{path} is outside the repository ({REPO_ROOT}); a submitted job sees only the shipped "
            "working_dir: put the file under the repository",
        ) from None
    parts = rel.parts
    for i in range(1, len(parts) + 1):
        sub = "/".join(parts[:i])
        if any(fnmatch.fnmatch(sub, pat.strip("/")) or fnmatch.fnmatch(parts[i - 1], pat.strip("/")) for pat in excludes):
            raise ConfigError("--config", f"{rel} lies under {sub}, which train.ship_excludes keeps off the cluster")
    return rel.as_posix()


def job_entrypoint(
    *,
    config: str | None,
    config_path: Path | None,
    overrides: Sequence[str],
    options: Sequence[str],
    excludes: Sequence[str] | None,
    python: str = "python",
) -> str:
    """The shell command a submitted job runs: ``python -m rl_fyp train ... --address auto``.

    ``-m rl_fyp`` runs the shipped checkout (the job's working directory comes first on
    ``sys.path``) or, without shipping, the package installed on the cluster.

    Args:
        config: ``--config`` as given (None for the default config).
        config_path: The file it resolved to here.
        overrides: ``--set`` values; ``train.address=...`` ones are dropped.
        options: Other arguments to pass on unchanged (``--out DIR``, ``--no-eval`` ...).
        excludes: ``train.ship_excludes`` when the code is shipped (a config file under
            one of them would not be), else None: the config path goes as given.
        python: The interpreter on the cluster.

    Raises:
        ConfigError: If the config file would not be in the shipped working_dir.
    """
    argv = [python, "-m", "rl_fyp", "train"]
    if config is not None:
        bare = Path(config).parent == Path(".") and not Path(config).suffix
        shipped = not bare and excludes is not None and config_path is not None
        argv += ["--config", _shipped_path(config_path, excludes) if shipped else config]
    kept = [o for o in overrides if o.partition("=")[0].strip() != "train.address"]
    if kept:
        argv += ["--set", *kept]
    argv += [*options, "--address", "auto"]
    return shlex.join(argv)


def submit_train_job(
    cfg: Config,
    entrypoint: str,
    *,
    wait: bool = True,
    log: Callable[[str], None] = print,
    client: Any = None,
) -> int:
    """Submits a training run to a cluster through the Ray Jobs API and follows it.

    The job's ``runtime_env`` ships the repository (``working_dir``, minus
    ``train.ship_excludes``; unless ``train.ship_code`` is false, for a cluster whose image
    has rl-fyp installed) and sets one BLAS thread per worker; the entrypoint runs the
    driver on the head node, where ``--address auto`` joins the cluster.

    Args:
        cfg: The run config, already validated here (``train.address`` is the
            ``http(s)://HEAD:8265`` address).
        entrypoint: The command the job runs (:func:`job_entrypoint`).
        wait: Stream the job's logs until it ends; False returns once it is submitted.
        log: Receives status lines and the job's log lines.
        client: A ``JobSubmissionClient`` (made for ``train.address`` when None).

    Returns:
        The exit status: 0 when the job succeeded (or was submitted, without ``wait``), 1 otherwise.
    """
    from ray.job_submission import JobStatus, JobSubmissionClient

    address = cfg.train.address
    client = client or JobSubmissionClient(address)
    env: dict[str, Any] = {"env_vars": dict(THREAD_ENV_VARS)}
    if cfg.train.ship_code:
        env.update(working_dir=str(REPO_ROOT), excludes=list(cfg.train.ship_excludes))
    job_id = client.submit_job(
        entrypoint=entrypoint,
        runtime_env=env,
        metadata={"rl_fyp_config_hash": config_hash(cfg)},
    )
    log(f"submitted job {job_id} to {address}: {entrypoint}")
    if not wait:
        log(f"follow it with: ray job logs --address {address} --follow {job_id}")
        return 0

    async def _follow() -> None:
        async for lines in client.tail_job_logs(job_id):
            for line in lines.splitlines():
                log(line)

    try:
        asyncio.run(_follow())
    except KeyboardInterrupt:
        log(f"stopped following; the job goes on (ray job stop --address {address} {job_id} ends it)")
        raise
    status = client.get_job_status(job_id)
    info = client.get_job_info(job_id)
    log(f"job {job_id}: {status}{f' ({info.message})' if getattr(info, 'message', None) else ''}")
    return 0 if status == JobStatus.SUCCEEDED else 1


def job_options(values: Mapping[str, Any]) -> list[str]:
    """``train`` command-line options to pass on to a submitted job, from parsed values.

    Args:
        values: ``out``, ``seed``, ``iterations``, ``resume``, ``no_eval`` as parsed.
    """
    out: list[str] = []
    if values.get("out") is not None:
        out += ["--out", str(values["out"])]
    if values.get("seed") is not None:
        out += ["--seed", str(values["seed"])]
    if values.get("iterations") is not None:
        out += ["--iterations", str(values["iterations"])]
    if values.get("resume"):
        out.append("--resume")
    if values.get("no_eval"):
        out.append("--no-eval")
    return out
