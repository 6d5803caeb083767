"""The root config of rl-fyp: one tree of frozen dataclasses, loaded from YAML.

The tree composes the simulator's :class:`~envs.config.EnvConfig`, the reward's
:class:`~reward.config.RewardConfig`, the seed, and the settings of each job. Every field
has a default; a YAML file in ``configs/`` only overrides some of them, and dotted
``key.sub=value`` overrides go on top of the file::

    cfg = load_config("small", ["env.catalog.n_items=100000", "seed=3"])

A bad key, type or value raises :class:`ConfigError` whose message starts with the full
dotted key (``env.catalog.n_itemz: unknown key (did you mean 'n_items'?) ...``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from envs._io import write_bytes_atomic
from envs.config import EnvConfig
from reward.config import RewardConfig
from reward.typed_config import (
    ConfigError,
    check,
    config_hash,
    load_typed,
    param,
    resolve_yaml,
    to_dict,
)

__all__ = [
    "ALGOS",
    "BASELINE_NAMES",
    "CONFIG_DIR",
    "MODEL_VARIANTS",
    "POLICY_NAMES",
    "TRAINED_NAMES",
    "REPO_ROOT",
    "SHIP_EXCLUDES",
    "Config",
    "ConfigError",
    "EvalConfig",
    "LoggingConfig",
    "ModelConfig",
    "ResourceConfig",
    "TrainConfig",
    "config_hash",
    "load_config",
    "resolve_config_path",
    "save_config",
    "write_text_atomic",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
"""The repository root (the parent of ``rl_fyp/``)."""
CONFIG_DIR = REPO_ROOT / "configs"
"""Where named configs live: ``load_config("small")`` reads ``configs/small.yaml``."""
DEFAULT_CONFIG = "default"
"""The config read when none is named."""

BASELINE_NAMES = ("greedy", "mmr", "explore", "random", "oracle")
"""Hand-written policies (``rl_fyp.baselines``), by name; ``oracle`` reads hidden state."""
TRAINED_NAMES = ("ppo", "appo", "impala")
"""Name of the trained policy in results: the algorithm, lower case."""
POLICY_NAMES = (*TRAINED_NAMES, *BASELINE_NAMES)
"""Every policy name an evaluation knows."""
ALGOS = ("PPO", "APPO", "IMPALA")
"""RLlib algorithms the slate module trains with."""
MODEL_VARIANTS = ("pointwise", "sequential")
"""Slate module variants: ``pointwise`` scores each candidate alone (Plackett-Luce over
the scores); ``sequential`` picks slots one by one, each pick's scores conditioned on the
videos already picked (a learned, per-user similarity penalty)."""
SHIP_EXCLUDES = (".venv", ".git", "runs", "wandb", "**/__pycache__", "*.egg-info", ".pytest_cache", ".hypothesis", "build", "dist")
"""What ``runtime_env`` never ships to a cluster: environments, caches, run outputs."""
_ADDRESS = re.compile(r"^(auto|(ray|https?)://[^\s/]+(:\d+)?/?|[^\s:/]+:\d+|\[[0-9a-fA-F:.]+\]:\d+)$")


@dataclass(frozen=True)
class ModelConfig:
    """The slate RLModule (``rl_fyp.slate_module.SlateRLModule``)."""

    variant: str = param("sequential", choices=MODEL_VARIANTS)
    """``pointwise`` or ``sequential`` (slate-aware: picks conditioned on the picks before)."""
    user_hidden: int = param(64, ge=4, le=4096)
    """Width of the user encoder (context + history features)."""
    hidden: int = param(32, ge=4, le=4096)
    """Width of the per-candidate scorer, shared across candidates."""
    value_hidden: int = param(64, ge=4, le=4096)
    """Width of the value head."""
    prior_scale: float = param(3.0, ge=0.0, le=100.0)
    """Initial weight of the ranker's value score (standardised within the request) in the
    candidate scores; a learned scalar. The scorer's last layer starts at zero, so the
    initial policy samples around the ranker's order (sharper for a larger weight), and
    deterministic inference starts as greedy-by-value; 0 starts from uniform scores."""
    diversity_init: float = param(30.0, ge=0.0, le=100.0)
    """``sequential`` only: the initial similarity penalty ``beta`` (score units per unit of
    cosine to an already-picked video); the policy learns it per user."""


@dataclass(frozen=True)
class ResourceConfig:
    """A custom Ray resource and the amount of it a worker needs."""

    name: str = param("")
    """Resource name, as nodes advertise it (``ray start --resources='{"NAME": 4}'``)."""
    amount: float = param(1.0, gt=0.0, le=1e9)
    """Amount needed by one worker."""

    def __post_init__(self) -> None:
        check(bool(self.name.strip()), "name", "must not be empty")
        check(self.name not in ("CPU", "GPU", "memory"), "name", f"{self.name!r} is a built-in resource, not a custom one")


@dataclass(frozen=True)
class TrainConfig:
    """Training with RLlib: the algorithm, its rollouts and its optimisation."""

    algo: str = param("PPO", choices=ALGOS)
    """RLlib algorithm: PPO (default), APPO or IMPALA."""
    iterations: int = param(48, ge=1, le=10_000_000)
    """Training iterations (``algo.train()`` calls); each samples ``train_batch_size`` env steps."""
    num_env_runners: int = param(0, ge=0, le=100_000)
    """Remote env runners; 0 samples in the driver (best on 2 cores)."""
    num_envs_per_env_runner: int = param(256, ge=1, le=1_000_000)
    """Users per env runner, stepped together by one ``FeedVectorEnv``."""
    train_batch_size: int = param(8192, ge=1, le=100_000_000)
    """Env steps (feed requests) per training iteration."""
    minibatch_size: int = param(1024, ge=1, le=100_000_000)
    """SGD minibatch size (env steps)."""
    num_epochs: int = param(2, ge=1, le=1000)
    """Passes over each train batch."""
    lr: float = param(1e-3, gt=0.0, le=1.0)
    """Adam learning rate."""
    gamma: float = param(0.99, ge=0.0, le=1.0)
    """Discount per step (feed request); must equal ``reward.shaping.gamma`` when shaping is on."""
    lambda_: float = param(0.95, ge=0.0, le=1.0)
    """GAE lambda."""
    clip_param: float = param(0.2, gt=0.0, le=10.0)
    """PPO clip range."""
    vf_clip_param: float = param(1000.0, gt=0.0)
    """Cap on the squared value error per sample (RLlib's PPO ``vf_clip_param``), in scaled reward units."""
    reward_scale: float = param(0.02, gt=0.0)
    """The learner sees ``reward * reward_scale``: the retention reward pays tens per
    session, and value targets near unit scale train faster. Logged returns and reward
    terms stay unscaled."""
    vf_loss_coeff: float = param(0.5, ge=0.0)
    """Weight of the value loss."""
    entropy_coeff: float = param(0.003, ge=0.0)
    """Weight of the entropy bonus (per slate, in nats)."""
    grad_clip: float = param(1.0, gt=0.0)
    """Global gradient-norm clip."""
    checkpoint_every: int = param(5, ge=1, le=1_000_000)
    """Save a checkpoint every this many iterations (and always after the last)."""
    keep_checkpoints: int = param(2, ge=1, le=1000)
    """Checkpoints kept on disk (the newest)."""
    torch_threads: int = param(2, ge=1, le=1024)
    """torch intra-op threads in the driver/learner (1 when remote env runners share the cores)."""
    address: str = param("")
    """Ray cluster to run on: ``auto`` or ``HOST:6379`` (join as a driver), ``ray://HOST:10001``
    (Ray Client), ``http://HEAD:8265`` (submit the run as a Ray job); empty starts a local Ray."""
    num_cpus: int = param(0, ge=0, le=100_000)
    """CPUs a local Ray may use; 0 = all of this machine's."""
    num_cpus_per_env_runner: float = param(1.0, ge=0.0, le=1024.0)
    """CPUs Ray reserves for each remote env runner (fractions share a core)."""
    custom_resources_per_env_runner: tuple[ResourceConfig, ...] = param(())
    """Custom Ray resources each remote env runner needs, e.g. ``[{name: sim_node, amount: 1}]``
    places them on nodes started with ``--resources='{"sim_node": 4}'``."""
    num_learners: int = param(0, ge=0, le=10_000)
    """Remote learner workers (data-parallel updates, ``train_batch_size`` split between them);
    0 updates in the driver."""
    num_gpus_per_learner: float = param(0.0, ge=0.0, le=64.0)
    """GPUs per learner (the driver's own learner when ``num_learners`` is 0)."""
    restart_failed_env_runners: bool = param(True)
    """Replace an env runner that died (a lost node, a killed actor) with an identical one and go on training."""
    max_env_runner_restarts: int = param(1000, ge=0, le=1_000_000)
    """Restarts allowed per env runner before the run fails."""
    env_runner_restart_delay_s: float = param(60.0, ge=0.0, le=86_400.0)
    """Seconds between an env runner's failure and its restart (lets a preempted node come back)."""
    ship_code: bool = param(True)
    """On a cluster (``address`` set), ship this checkout to every worker through Ray's
    ``runtime_env`` ``working_dir``, so workers import its ``envs``, ``reward`` and ``rl_fyp``."""
    ship_excludes: tuple[str, ...] = param(SHIP_EXCLUDES)
    """Paths and gitignore-style patterns left out of the shipped ``working_dir``."""

    def __post_init__(self) -> None:
        check(
            not self.address or _ADDRESS.match(self.address) is not None,
            "address",
            f"must be auto, HOST:PORT, ray://HOST:PORT or http(s)://HOST:PORT, got {self.address!r}",
        )
        learners = max(1, self.num_learners)
        check(
            self.train_batch_size % learners == 0,
            "train_batch_size",
            f"must be divisible by num_learners ({self.num_learners}), got {self.train_batch_size}",
        )
        names = [r.name for r in self.custom_resources_per_env_runner]
        check(len(set(names)) == len(names), "custom_resources_per_env_runner", f"repeats a resource: {names!r}")

    @property
    def train_batch_size_per_learner(self) -> int:
        """Env steps each learner updates on per iteration."""
        return self.train_batch_size // max(1, self.num_learners)


@dataclass(frozen=True)
class LoggingConfig:
    """Where training metrics go: TensorBoard always, wandb when enabled, a progress bar."""

    wandb: bool = param(False)
    """Log to Weights & Biases too."""
    wandb_project: str = param("rl-fyp")
    """wandb project name."""
    wandb_mode: str = param("offline", choices=("offline", "online"))
    """``offline`` writes runs under the run directory and needs no API key (sync later
    with ``wandb sync``); ``online`` uploads and needs a login."""
    progress: bool = param(True)
    """Show a progress bar with the key metrics per iteration."""


@dataclass(frozen=True)
class EvalConfig:
    """The simulated A/B test: one seeded cohort under every policy, 95% bootstrap CIs."""

    n_users: int = param(2_000, ge=1, le=10_000_000)
    """Users in the cohort; all run in parallel, the same users under every policy."""
    policies: tuple[str, ...] = param(POLICY_NAMES[:1] + BASELINE_NAMES, choices=POLICY_NAMES)
    """Policies to run, in table column order (the trained one only where a policy exists)."""
    n_boot: int = param(1_000, ge=10, le=1_000_000)
    """Bootstrap resamples behind each 95% confidence interval."""
    mmr_lambda: float = param(0.5, ge=0.0, le=1.0)
    """MMR trade-off: 1 = pure relevance (greedy order), 0 = pure diversity (used when not tuned)."""
    explore_share: float = param(0.1, ge=0.0, le=1.0)
    """Share of slots the explore baseline gives to videos outside the user's estimated
    interests (used when not tuned)."""
    tune_heuristics: bool = param(True)
    """Pick ``mmr_lambda`` and ``explore_share`` from their grids on a separate tuning cohort."""
    mmr_lambda_grid: tuple[float, ...] = param((0.1, 0.2, 0.3, 0.5, 0.7))
    """MMR lambdas tried when tuning."""
    explore_share_grid: tuple[float, ...] = param((0.1, 0.2, 0.35, 0.5))
    """Exploration shares tried when tuning."""
    tune_users: int = param(500, ge=1, le=10_000_000)
    """Users of the tuning cohort (another seed than the evaluation cohort)."""

    def __post_init__(self) -> None:
        check(len(self.policies) > 0, "policies", "must name at least one policy")
        check(
            len(set(self.policies)) == len(self.policies),
            "policies",
            f"must not repeat a policy, got {list(self.policies)!r}",
        )
        for key, grid in (("mmr_lambda_grid", self.mmr_lambda_grid), ("explore_share_grid", self.explore_share_grid)):
            check(len(grid) > 0, key, "must hold at least one value")
            check(all(0.0 <= v <= 1.0 for v in grid), key, f"values must be in [0, 1], got {list(grid)!r}")


@dataclass(frozen=True)
class Config:
    """Everything a run needs: the simulator, the reward, the seed, the model and the jobs."""

    env: EnvConfig = field(default_factory=EnvConfig)
    """The feed simulator: catalog, users, response, retrieval, ranker, observation."""
    reward: RewardConfig = field(default_factory=RewardConfig)
    """The reward: term weights, retention time scale, shaping, optional terms (defaults: the retention preset)."""
    seed: int = param(0, ge=0, le=2**31 - 1)
    """Seeds the training worlds, the evaluation cohorts, the networks and the bootstrap."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The slate policy network."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Training with RLlib."""
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    """TensorBoard, wandb, progress bar."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """The simulated A/B test."""
    out_dir: str = param("runs")
    """Base directory of timestamped run directories (``<out_dir>/<YYYYmmdd-HHMMSS>/``)."""

    def __post_init__(self) -> None:
        check(bool(self.out_dir.strip()), "out_dir", "must not be empty")
        sh = self.reward.shaping
        # Potential-based shaping leaves the optimal policy unchanged only when its
        # discount is the learner's (reward/shaping.py).
        check(
            not sh.enabled or sh.gamma == self.train.gamma,
            "reward.shaping.gamma",
            f"must equal train.gamma ({self.train.gamma}) when shaping is enabled, got {sh.gamma}",
        )
        per_learner = self.train.train_batch_size_per_learner
        check(
            self.train.minibatch_size <= per_learner,
            "train.minibatch_size",
            f"must be <= train.train_batch_size ({self.train.train_batch_size}) per learner ({per_learner}), "
            f"got {self.train.minibatch_size}",
        )


def resolve_config_path(path: str | os.PathLike[str] | None = None) -> Path:
    """Finds the YAML file a config name or path refers to.

    Args:
        path: ``None`` for ``configs/default.yaml``; a bare name without a directory
            or suffix (``"small"``) for ``configs/<name>.yaml``; otherwise a file path,
            relative to the working directory or, failing that, to ``configs/``.

    Returns:
        The path of an existing file.

    Raises:
        ConfigError: If the file does not exist; the key is the path.
    """
    return resolve_yaml(DEFAULT_CONFIG if path is None else path, CONFIG_DIR)


def load_config(
    path: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
) -> Config:
    """Loads the config: defaults, then a YAML file, then dotted overrides.

    Args:
        path: A config name or file, see :func:`resolve_config_path`
            (``None`` = ``configs/default.yaml``).
        overrides: Dotted-key overrides applied on top of the file: strings
            ``"env.catalog.n_items=100000"`` (values parsed as YAML) or a mapping
            ``{"seed": 3}`` (values used as they are).

    Returns:
        The validated, frozen config.

    Raises:
        ConfigError: On a missing or malformed file, an unknown key, a wrong type or
            a value out of range; the message names the path or the dotted key.
    """
    return load_typed(Config, resolve_config_path(path), overrides)


def save_config(cfg: Config, path: str | os.PathLike[str]) -> Path:
    """Writes a config as YAML that :func:`load_config` reads back to an equal config.

    Args:
        cfg: The config.
        path: File to write (atomically: a reader never sees half a file).

    Returns:
        The path written.
    """
    header = f"# rl-fyp resolved config (config_hash {config_hash(cfg)}); every field is listed.\n"
    body = yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=False, allow_unicode=True)
    return write_text_atomic(path, header + body)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Writes a text file atomically: a temporary file in the same directory, then a rename.

    A crash or kill leaves either the old file or the new one, never a partial file.

    Args:
        path: Destination; its directory must exist.
        text: Content, written as UTF-8.

    Returns:
        The destination path.
    """
    return write_bytes_atomic(path, text.encode("utf-8"))
