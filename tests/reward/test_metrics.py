"""Evaluation metrics: computed from realised feedback, never from the reward."""

from __future__ import annotations

import numpy as np
import pytest

from envs.cohort import run_cohort
from envs.feed_env import make_env_config
from reward.metrics import ENGAGEMENT_VALUE_WEIGHTS, METRIC_NAMES, CohortMetrics, engagement_value

F, X = False, True


def test_engagement_value_uses_the_fixed_weights(feedback):
    fb = feedback(
        seen=[[X, X], [X, F]],
        watch_ratio=[[1.5, 0.5], [0.25, 0.0]],
        like=[[X, F], [F, F]],
        share=[[F, X], [F, F]],
        comment=[[X, F], [F, F]],
        follow=[[F, X], [F, F]],
        not_interested=[[F, F], [X, F]],
        completed=[[X, X], [F, F]],  # not part of the value
    )
    # User 0: 2.0 watch ratio + 2 (like) + 3 (share) + 2 (comment) + 4 (follow) = 13.
    # User 1: 0.25 - 4 (not interested) = -3.75.
    np.testing.assert_allclose(engagement_value(fb), [13.0, -3.75])
    assert ENGAGEMENT_VALUE_WEIGHTS == {"watch_ratio": 1.0, "like": 2.0, "share": 3.0, "comment": 2.0,
                                        "follow": 4.0, "not_interested": -4.0}


def test_cohort_metrics_on_hand_built_steps(feedback):
    # Two users over a 3-day horizon; user 0's clock starts at 20:00, user 1's at 08:00.
    m = CohortMetrics(2, 3.0, np.array([20.0, 8.0]))
    # Step 1: user 0 watches 2 videos (10 s + 20 s), leaves and returns 10 h later (clock 10 h):
    #   local hour 20 + 10 = 30 -> day 1. User 1 watches one video (5 s) and churns.
    m.update(
        feedback(seen=[[X, X], [X, F]], watch_time_s=[[10.0, 20.0], [5.0, 0.0]], watch_ratio=[[1.0, 0.5], [0.2, 0.0]],
                 completed=[[X, F], [F, F]], like=[[X, F], [F, F]], session_ended=[X, X], churned=[F, X],
                 return_gap_h=[10.0, 0.0], new_day_active=[X, F]),
        np.array([X, X]),
        clock_h=np.array([10.0, 0.01]),
    )
    # Step 2: user 0 watches one video (fast skip), leaves, returns at clock 30 h: local 50 -> day 2.
    #   User 1 is gone (inactive: zeros).
    m.update(
        feedback(seen=[[X, F], [F, F]], watch_time_s=[[1.0, 0.0], [0.0, 0.0]], watch_ratio=[[0.1, 0.0], [0.0, 0.0]],
                 fast_skip=[[X, F], [F, F]], session_ended=[X, F], return_gap_h=[19.0, 0.0]),
        np.array([X, F]),
        clock_h=np.array([30.0, 0.01]),
    )
    # Step 3: user 0 leaves again and would return at clock 80 h, past the 72 h horizon: not counted.
    m.update(
        feedback(seen=[[X, F], [F, F]], watch_time_s=[[4.0, 0.0], [0.0, 0.0]], watch_ratio=[[0.4, 0.0], [0.0, 0.0]],
                 session_ended=[X, F], return_gap_h=[50.0, 0.0]),
        np.array([X, F]),
        clock_h=np.array([80.0, 0.01]),
    )
    out = m.finalize()
    assert tuple(out) == METRIC_NAMES
    # Active days: user 0 days 0, 1, 2 (3); user 1 day 0 only.
    np.testing.assert_array_equal(out["days_active"], [3.0, 1.0])
    # Next-day return over days 0..1 (the last day has no next day): user 0 2/2; user 1 0/1.
    np.testing.assert_array_equal(out["next_day_return"], [1.0, 0.0])
    np.testing.assert_array_equal(out["sessions"], [3.0, 1.0])
    np.testing.assert_array_equal(out["requests"], [3.0, 1.0])
    np.testing.assert_array_equal(out["videos"], [4.0, 1.0])
    np.testing.assert_allclose(out["watch_time_s"], [35.0, 5.0])
    # Mean watch ratio per video: (1 + 0.5 + 0.1 + 0.4) / 4 = 0.5; 0.2 / 1.
    np.testing.assert_allclose(out["mean_watch_ratio"], [0.5, 0.2], rtol=1e-6)
    np.testing.assert_allclose(out["completion_rate"], [0.25, 0.0])
    np.testing.assert_allclose(out["fast_skip_rate"], [0.25, 0.0])
    np.testing.assert_array_equal(out["likes"], [1.0, 0.0])
    np.testing.assert_array_equal(out["churned"], [0.0, 1.0])
    # Engagement value per request: user 0 (1.5 + 2 + 0.1 + 0.4) / 3 = 4 / 3; user 1 0.2 / 1.
    np.testing.assert_allclose(out["engagement_per_request"], [4.0 / 3.0, 0.2], rtol=1e-6)


def test_cohort_metrics_reject_a_wrong_start_hour_shape():
    with pytest.raises(ValueError, match="start_hour"):
        CohortMetrics(3, 2.0, np.zeros(2))


def test_run_cohort_reports_the_metrics_whatever_the_reward(small_world):
    # run_cohort takes no reward: the evaluation objective is one unshaped scale.
    cfg = make_env_config(None, {**small_world, "horizon_days": 1.0})
    K = cfg.slate_size
    result = run_cohort(cfg, lambda obs: np.tile(np.arange(K), (obs["mask"].shape[0], 1)), 6, seed=5)
    assert tuple(result.per_user) == METRIC_NAMES
    for name, values in result.per_user.items():
        assert values.shape == (6,) and values.dtype == np.float64, name
        assert np.all(np.isfinite(values)), name
    assert np.all(result.per_user["days_active"] >= 1.0)
    assert np.all(result.per_user["sessions"] >= 1.0)
