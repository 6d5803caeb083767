"""Typed configuration of the reward."""

from __future__ import annotations

from dataclasses import dataclass

from reward.typed_config import param

__all__ = ["RewardConfig"]


@dataclass(frozen=True)
class RewardConfig:
    """Weights of the realised-engagement reward, per seen video summed over the slate."""

    w_watch_ratio: float = param(1.0, ge=-100.0, le=100.0)
    """Weight of the watch ratio (the dominant signal; replays count above 1)."""
    w_like: float = param(2.0, ge=-100.0, le=100.0)
    """Weight of a like."""
    w_share: float = param(3.0, ge=-100.0, le=100.0)
    """Weight of a share."""
    w_comment: float = param(2.0, ge=-100.0, le=100.0)
    """Weight of a comment."""
    w_follow: float = param(4.0, ge=-100.0, le=100.0)
    """Weight of a follow."""
    w_not_interested: float = param(-4.0, ge=-100.0, le=100.0)
    """Weight of a not-interested (a penalty: negative)."""
