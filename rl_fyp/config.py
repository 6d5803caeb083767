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
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

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
    "CONFIG_DIR",
    "POLICY_NAMES",
    "REPO_ROOT",
    "Config",
    "ConfigError",
    "SimulateConfig",
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

POLICY_NAMES = ("greedy", "mmr")
"""Policies the simulate job knows, by name."""


@dataclass(frozen=True)
class SimulateConfig:
    """The simulate job: one seeded cohort run under each baseline policy."""

    n_users: int = param(2_000, ge=1, le=10_000_000)
    """Users in the cohort; all run in parallel, the same users under every policy."""
    mmr_lambda: float = param(0.5, ge=0.0, le=1.0)
    """MMR trade-off: 1 = pure relevance (greedy order), 0 = pure diversity."""
    policies: tuple[str, ...] = param(POLICY_NAMES, choices=POLICY_NAMES)
    """Policies to run, in table column order."""
    n_boot: int = param(1_000, ge=10, le=1_000_000)
    """Bootstrap resamples behind each 95% confidence interval."""
    out_dir: str = param("runs")
    """Base directory of timestamped run directories (``<out_dir>/<YYYYmmdd-HHMMSS>/``)."""

    def __post_init__(self) -> None:
        check(len(self.policies) > 0, "policies", "must name at least one policy")
        check(
            len(set(self.policies)) == len(self.policies),
            "policies",
            f"must not repeat a policy, got {list(self.policies)!r}",
        )
        check(bool(self.out_dir.strip()), "out_dir", "must not be empty")


@dataclass(frozen=True)
class Config:
    """Everything a run needs: the simulator, the reward, the seed, and the jobs."""

    env: EnvConfig = field(default_factory=EnvConfig)
    """The feed simulator: catalog, users, response, retrieval, ranker, observation."""
    reward: RewardConfig = field(default_factory=RewardConfig)
    """The reward: term weights, retention time scale, shaping, optional terms (defaults: the retention preset)."""
    seed: int = param(0, ge=0, le=2**63 - 1)
    """Seeds the world, the cohort and the bootstrap."""
    simulate: SimulateConfig = field(default_factory=SimulateConfig)
    """The simulate job (baselines on one cohort, with confidence intervals)."""


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
    dest = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o644)  # mkstemp makes 0600 files; results are meant to be shared
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return dest
