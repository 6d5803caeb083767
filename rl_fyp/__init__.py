"""rl-fyp: reinforcement learning for short-video feed recommendation.

The framework package: config (:func:`load_config`), the slate RLModule, the RLlib glue
and training loop, baselines, the simulated A/B evaluation and the ``rl-fyp`` command
line. The simulator lives in ``envs`` and the reward in
``reward``; the dependency direction is ``rl_fyp -> envs -> reward``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from rl_fyp.config import Config, ConfigError, EvalConfig, load_config, save_config

__all__ = ["Config", "ConfigError", "EvalConfig", "__version__", "load_config", "save_config"]

try:
    __version__ = version("rl-fyp")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "unknown"
