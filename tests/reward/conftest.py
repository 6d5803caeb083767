"""Shared helpers of the reward tests: hand-built feedback records and one-term configs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from reward.config import RewardConfig
from reward.feedback import Feedback
from reward.typed_config import deep_merge, from_dict, parse_overrides

#: Every weight 0 and shaping off: the base of the one-term configs.
ZERO_WEIGHTS: dict[str, Any] = {
    "engagement": {
        name: 0.0
        for name in ("watch_ratio", "completion", "replay", "like", "share", "comment", "follow",
                     "profile_visit", "fast_skip", "not_interested")
    },
    "session": {"videos": 0.0, "minutes": 0.0, "leave": 0.0},
    "retention": {"return_gap": 0.0, "churn": 0.0, "day_active": 0.0},
    "shaping": {"enabled": False},
    "optional": {"diversity": 0.0, "new_creator": 0.0},
}


def make_feedback(**fields: Any) -> Feedback:
    """A feedback record with the given fields and zeros elsewhere.

    Shapes come from ``seen`` ((B, K), required) and ``emb`` (d = 2 if absent).
    """
    seen = np.asarray(fields["seen"], np.bool_)
    B, K = seen.shape
    d = np.asarray(fields["emb"]).shape[2] if "emb" in fields else 2
    base: dict[str, np.ndarray] = {
        "seen": np.zeros((B, K), np.bool_),
        "watch_ratio": np.zeros((B, K), np.float32),
        "watch_time_s": np.zeros((B, K), np.float32),
        "duration_s": np.zeros((B, K), np.float32),
        "session_ended": np.zeros(B, np.bool_),
        "return_gap_h": np.zeros(B, np.float32),
        "churned": np.zeros(B, np.bool_),
        "new_day_active": np.zeros(B, np.bool_),
        "session_videos": np.zeros(B, np.int32),
        "session_time_s": np.zeros(B, np.float32),
        "hours_since_start": np.zeros(B, np.float32),
        "emb": np.zeros((B, K, d), np.float32),
        "creator_followers": np.zeros((B, K), np.float32),
    }
    for name in ("completed", "fast_skip", "like", "share", "comment", "follow", "profile_visit", "not_interested"):
        base[name] = np.zeros((B, K), np.bool_)
    assert set(base) == set(Feedback._fields)
    for name, value in fields.items():
        base[name] = np.asarray(value, dtype=base[name].dtype)
        assert base[name].shape[:1] == (B,), name
    return Feedback(**base)


def only(overrides: dict[str, Any]) -> RewardConfig:
    """A config with every weight 0 and shaping off, but for the dotted ``overrides``."""
    return from_dict(RewardConfig, deep_merge(ZERO_WEIGHTS, parse_overrides(overrides)), prefix="reward")


@pytest.fixture(scope="session")
def feedback() -> Callable[..., Feedback]:
    """``feedback(seen=..., like=..., ...)``: see :func:`make_feedback`."""
    return make_feedback


@pytest.fixture(scope="session")
def one_term() -> Callable[[dict[str, Any]], RewardConfig]:
    """``one_term({"engagement.like": 2.0})``: see :func:`only`."""
    return only
