"""Typed configuration of the reward: every weight, time scale and shaping setting.

:class:`RewardConfig` is one frozen tree grouped by component: ``engagement``,
``session``, ``retention``, ``shaping`` and ``optional``. Its defaults are the
``retention`` preset (``configs/reward/retention.yaml``); the ``engagement`` preset is the
myopic reward (engagement terms only). A preset file is a ``RewardConfig`` in YAML and
loads with :func:`load_reward_config`; in a root config the same keys go under ``reward:``.

Signs are part of the fields: bonuses are ``>= 0`` and penalties (``fast_skip``,
``not_interested``, ``leave``, ``churn``) are ``<= 0``, so a sign slip fails at load time.
A term whose weight is 0, or whose name is in ``disabled_terms``, is not computed and not
reported (see :attr:`RewardConfig.active_terms`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reward import terms as T
from reward.typed_config import check, load_typed, param, resolve_yaml, validate

__all__ = [
    "DEFAULT_PRESET",
    "PRESETS",
    "REWARD_CONFIG_DIR",
    "EngagementWeights",
    "OptionalTerms",
    "RetentionWeights",
    "RewardConfig",
    "SessionWeights",
    "ShapingConfig",
    "load_reward_config",
    "resolve_reward_config_path",
]

REWARD_CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs" / "reward"
"""Where reward presets live: the repository root (parent of ``reward/``) ``/configs/reward``."""
PRESETS = ("engagement", "retention")
"""Named reward presets (``configs/reward/<name>.yaml``)."""
DEFAULT_PRESET = "retention"
"""The preset equal to ``RewardConfig()``."""

_W = 1000.0  # bound on the magnitude of any weight: far beyond sensible, catches unit slips


@dataclass(frozen=True)
class EngagementWeights:
    """Weights of the realised engagement terms, each summed over the seen videos of a slate."""

    watch_ratio: float = param(1.0, ge=0.0, le=_W)
    """Per unit of watch ratio (0 .. 3; the dominant signal, replays count above 1)."""
    completion: float = param(0.5, ge=0.0, le=_W)
    """Per video watched to the end at least once."""
    replay: float = param(0.5, ge=0.0, le=_W)
    """Per unit of replay, ``max(watch_ratio - 1, 0)`` (on top of ``watch_ratio``)."""
    like: float = param(2.0, ge=0.0, le=_W)
    """Per like."""
    share: float = param(3.0, ge=0.0, le=_W)
    """Per share."""
    comment: float = param(2.0, ge=0.0, le=_W)
    """Per comment."""
    follow: float = param(4.0, ge=0.0, le=_W)
    """Per follow of the video's creator."""
    profile_visit: float = param(1.0, ge=0.0, le=_W)
    """Per visit of the creator's profile."""
    fast_skip: float = param(-0.5, ge=-_W, le=0.0)
    """Per fast skip (swiped away within a couple of seconds); a penalty, <= 0."""
    not_interested: float = param(-4.0, ge=-_W, le=0.0)
    """Per "not interested"; a penalty, <= 0."""

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True)
class SessionWeights:
    """Weights of the session terms: what a step adds to the session, and the session's end."""

    videos: float = param(0.1, ge=0.0, le=_W)
    """Per video seen (paid as the session goes, so a session earns it once per video)."""
    minutes: float = param(0.1, ge=0.0, le=_W)
    """Per minute watched (paid as the session goes)."""
    leave: float = param(-1.0, ge=-_W, le=0.0)
    """At the step where the user leaves the session (churn included); a penalty, <= 0."""

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True)
class RetentionWeights:
    """Weights of the retention terms, paid at the step where a session ends."""

    return_gap: float = param(10.0, ge=0.0, le=_W)
    """Weight of ``exp(-return_gap_h / return_gap_tau_h)`` when the user will come back."""
    return_gap_tau_h: float = param(24.0, gt=0.0, le=24.0 * 365)
    """Time scale of the return-gap term, hours: a return after tau hours earns 1/e of the weight."""
    churn: float = param(-50.0, ge=-_W, le=0.0)
    """When the user leaves the platform for good (the terminal step); a penalty, <= 0."""
    day_active: float = param(5.0, ge=0.0, le=_W)
    """When the next session opens a day the user was not yet active on."""

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True)
class ShapingConfig:
    """Potential-based shaping ``F = gamma * phi(s') - phi(s)`` (see :mod:`reward.shaping`).

    ``phi(s) = weight * (satisfaction_coef * sat(s) + engagement_coef * eng(s))``, 0 in a
    terminal (churned) state. ``sat`` is a running estimate of the session's satisfaction:
    an EMA over the session's steps of the mean over seen videos of
    ``min(watch_ratio, 1) - not_interested``, restarted at ``satisfaction_init`` when a
    session starts. ``eng`` is the user's recent engagement: an EMA over steps (across
    sessions) of the share of seen videos liked, shared, commented or followed.
    """

    enabled: bool = True
    """Add the shaping term to the reward."""
    gamma: float = param(0.99, gt=0.0, le=1.0)
    """Discount of the shaping term; must equal the learner's discount for the optimal policy to be unchanged."""
    weight: float = param(1.0, ge=0.0, le=_W)
    """Overall scale of the potential."""
    satisfaction_coef: float = param(4.0, ge=-_W, le=_W)
    """Coefficient of the session-satisfaction estimate in phi."""
    satisfaction_rate: float = param(0.3, gt=0.0, le=1.0)
    """EMA rate of the session-satisfaction estimate, per step (1 = only the last step counts)."""
    satisfaction_init: float = param(0.5, ge=-1.0, le=1.0)
    """The session-satisfaction estimate at the start of every session."""
    engagement_coef: float = param(4.0, ge=-_W, le=_W)
    """Coefficient of the recent-engagement estimate in phi."""
    engagement_rate: float = param(0.05, gt=0.0, le=1.0)
    """EMA rate of the recent-engagement estimate, per step."""
    engagement_init: float = param(0.0, ge=0.0, le=1.0)
    """The recent-engagement estimate of a new user."""

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True)
class OptionalTerms:
    """Slate terms that are off by default (weight 0)."""

    diversity: float = param(0.0, ge=0.0, le=_W)
    """Weight of intra-slate diversity: mean pairwise ``1 - cosine`` of the seen videos' content embeddings."""
    new_creator: float = param(0.0, ge=0.0, le=_W)
    """Per seen video whose creator has fewer than ``new_creator_max_followers`` followers."""
    new_creator_max_followers: float = param(150.0, gt=0.0, le=1e9)
    """Follower count below which a creator counts as new (the catalog's follower counts are a
    power law from ``catalog.creator_follower_min`` = 100; below 150 are about 40% of creators)."""

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True)
class RewardConfig:
    """The reward: weights of every term, the retention time scale, shaping and optional terms.

    The defaults are the ``retention`` preset. Term names are in :mod:`reward.terms`.
    """

    engagement: EngagementWeights = field(default_factory=EngagementWeights)
    """Realised engagement with the seen videos."""
    session: SessionWeights = field(default_factory=SessionWeights)
    """Session length and the leave."""
    retention: RetentionWeights = field(default_factory=RetentionWeights)
    """Return gap, churn and active days, paid when a session ends."""
    shaping: ShapingConfig = field(default_factory=ShapingConfig)
    """Potential-based shaping."""
    optional: OptionalTerms = field(default_factory=OptionalTerms)
    """Intra-slate diversity and new-creator exposure (off by default)."""
    disabled_terms: tuple[str, ...] = param((), choices=T.TERM_NAMES)
    """Terms left out whatever their weight (names from ``reward.terms``), e.g. for ablations."""

    def __post_init__(self) -> None:
        validate(self)
        check(
            len(set(self.disabled_terms)) == len(self.disabled_terms),
            "disabled_terms",
            f"must not repeat a term, got {list(self.disabled_terms)!r}",
        )

    @property
    def weights(self) -> dict[str, float]:
        """Term name -> weight, every term (shaping: ``shaping.weight``, 0 when disabled)."""
        e, s, r, o = self.engagement, self.session, self.retention, self.optional
        return {
            T.TERM_WATCH_RATIO: e.watch_ratio,
            T.TERM_COMPLETION: e.completion,
            T.TERM_REPLAY: e.replay,
            T.TERM_LIKE: e.like,
            T.TERM_SHARE: e.share,
            T.TERM_COMMENT: e.comment,
            T.TERM_FOLLOW: e.follow,
            T.TERM_PROFILE_VISIT: e.profile_visit,
            T.TERM_FAST_SKIP: e.fast_skip,
            T.TERM_NOT_INTERESTED: e.not_interested,
            T.TERM_SESSION_VIDEOS: s.videos,
            T.TERM_SESSION_MINUTES: s.minutes,
            T.TERM_LEAVE: s.leave,
            T.TERM_RETURN_GAP: r.return_gap,
            T.TERM_CHURN: r.churn,
            T.TERM_DAY_ACTIVE: r.day_active,
            T.TERM_DIVERSITY: o.diversity,
            T.TERM_NEW_CREATOR: o.new_creator,
            T.TERM_SHAPING: self.shaping.weight if self.shaping.enabled else 0.0,
        }

    @property
    def active_terms(self) -> tuple[str, ...]:
        """The terms computed and reported: nonzero weight and not disabled, in report order."""
        w = self.weights
        return tuple(n for n in T.TERM_NAMES if w[n] != 0.0 and n not in self.disabled_terms)


def resolve_reward_config_path(path_or_name: str | os.PathLike[str] | None = None) -> Path:
    """Finds the YAML file a reward preset name or path refers to.

    Args:
        path_or_name: ``None`` for the default preset (``retention``); a bare name without
            a directory or suffix (``"engagement"``) for ``configs/reward/<name>.yaml``;
            otherwise a file path, relative to the working directory or, failing that, to
            ``configs/reward/``.

    Returns:
        The path of an existing file.

    Raises:
        ConfigError: If the file does not exist; the key is the path.
    """
    name = DEFAULT_PRESET if path_or_name is None else path_or_name
    return resolve_yaml(name, REWARD_CONFIG_DIR, what="reward preset")


def load_reward_config(
    path_or_name: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
) -> RewardConfig:
    """Loads a reward preset or file: defaults, then the YAML file, then dotted overrides.

    Example::

        cfg = load_reward_config("engagement", ["engagement.like=1.5"])

    Args:
        path_or_name: A preset name (``"engagement"``, ``"retention"``) or a file, see
            :func:`resolve_reward_config_path` (``None`` = the default preset).
        overrides: Dotted overrides relative to the reward config (``"shaping.gamma=0.95"``
            or ``{"retention.churn": -10.0}``).

    Returns:
        The validated, frozen reward config.

    Raises:
        ConfigError: On a missing or malformed file, an unknown key or term name, a wrong
            type, a non-finite number or a value out of range; the message names the full
            dotted key (``reward.retention.return_gap_tau_h: must be > 0.0, got -1.0``).
    """
    return load_typed(RewardConfig, resolve_reward_config_path(path_or_name), overrides, prefix="reward")
