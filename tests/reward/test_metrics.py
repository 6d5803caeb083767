"""Evaluation metrics: computed from realised feedback, never from the reward."""

from __future__ import annotations

import numpy as np
import pytest

from envs.cohort import run_cohort
from envs.feed_env import make_env_config
from reward.metrics import (
    ENGAGEMENT_VALUE_WEIGHTS,
    METRIC_NAMES,
    CohortMetrics,
    coverage,
    engagement_value,
    slate_diversity,
)

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


# ---------------------------------------------------------------------------- exposure metrics
def test_slate_diversity_by_hand():
    # Slate 0: e0, e0, e1 (2-D unit vectors). Pairwise cosines: (e0, e0) 1, (e0, e1) 0 twice,
    #   so the mean cosine over the 3 pairs is 1/3 and the diversity 2/3.
    # Slate 1: e0, -e0, e1 scaled by 5 (the norm does not matter): cosines -1, 0, 0 -> 1 + 1/3.
    emb = np.array([
        [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]],
        [[1.0, 0.0], [-1.0, 0.0], [0.0, 5.0]],
    ], np.float32)
    np.testing.assert_allclose(slate_diversity(emb), [2.0 / 3.0, 4.0 / 3.0])


def test_slate_diversity_matches_the_pairwise_definition_and_handles_edge_cases():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(20, 5, 3)).astype(np.float32)
    u = emb / np.linalg.norm(emb, axis=-1, keepdims=True)
    cos = np.einsum("bkd,bjd->bkj", u.astype(np.float64), u.astype(np.float64))
    iu = np.triu_indices(5, k=1)
    np.testing.assert_allclose(slate_diversity(emb), (1.0 - cos[:, iu[0], iu[1]]).mean(axis=1), rtol=1e-6)
    # A zero embedding (padding) is orthogonal to everything: (e0, 0) pairs have cosine 0.
    np.testing.assert_allclose(slate_diversity(np.array([[[1.0, 0.0], [0.0, 0.0]]])), [1.0])
    # A slate of one has no pairs.
    assert np.isnan(slate_diversity(np.ones((3, 1, 2)))).all()


def test_coverage_counts_distinct_keys():
    assert coverage(np.array([3, 3, 1, 7, 1]), 10) == pytest.approx(0.3)
    assert coverage(np.array([], np.int64), 4) == 0.0
    with pytest.raises(ValueError, match="n_total"):
        coverage(np.array([1]), 0)


def test_exposure_metrics_on_hand_built_steps(feedback):
    # Two users, slates of 2, embeddings in 2-D.
    m = CohortMetrics(2, 2.0, np.array([8.0, 8.0]))
    e0, e1 = [1.0, 0.0], [0.0, 1.0]
    # Step 1: user 0 sees both videos (ids 10, 11; creators 1, 2), video 11 is fresh; slate e0, e1
    #   (diversity 1). User 1 sees only the first of (12, 10) (creator 3), not fresh; slate e0, e0
    #   (diversity 0).
    fb = feedback(seen=[[X, X], [X, F]])
    m.update(fb, np.array([X, X]))
    m.update_exposure(np.array([X, X]), np.array([[e0, e1], [e0, e0]]), fb.seen, np.array([[F, X], [F, X]]),
                      np.array([[10, 11], [12, 10]]), np.array([[1, 2], [3, 1]]))
    # Step 2: user 0 sees video 10 again (fresh flag off), slate e0, -e0 (diversity 2);
    #   user 1 is inactive: nothing counts, whatever the arrays say.
    fb = feedback(seen=[[X, F], [F, F]])
    m.update(fb, np.array([X, F]))
    seen_claimed = np.array([[X, F], [X, X]])  # the inactive row's flags must be ignored
    m.update_exposure(np.array([X, F]), np.array([[e0, [-1.0, 0.0]], [e0, e1]]), seen_claimed,
                      np.array([[F, F], [X, X]]), np.array([[10, 13], [14, 15]]), np.array([[1, 4], [5, 6]]))
    out = m.finalize()
    # Diversity: user 0 (1 + 2) / 2 requests = 1.5; user 1 0 / 1.
    np.testing.assert_allclose(out["intra_slate_diversity"], [1.5, 0.0])
    # New videos: user 0 one fresh (11) of 3 seen; user 1 none of 1 (its fresh video 10 was
    #   not reached in step 1, and step 2 does not count for an inactive user).
    np.testing.assert_allclose(out["new_video_exposure"], [1.0 / 3.0, 0.0])
    (users, videos), (c_users, creators) = m.shown_pairs()
    # Distinct (user, video) pairs sorted by video then user: (0, 10), (0, 11), (1, 12).
    np.testing.assert_array_equal(videos, [10, 11, 12])
    np.testing.assert_array_equal(users, [0, 0, 1])
    np.testing.assert_array_equal(creators, [1, 2, 3])
    np.testing.assert_array_equal(c_users, [0, 0, 1])
    assert coverage(videos, 20) == pytest.approx(0.15)
    assert m.active_days().shape == (2, 2)


def test_exposure_metrics_are_nan_without_exposure_updates(feedback):
    m = CohortMetrics(1, 1.0, np.array([9.0]))
    m.update(feedback(seen=[[X]]), np.array([X]))
    out = m.finalize()
    assert np.isnan(out["intra_slate_diversity"]).all() and np.isnan(out["new_video_exposure"]).all()
    (users, videos), _ = m.shown_pairs()
    assert users.size == videos.size == 0


def test_active_days_mark_each_local_day_with_a_session(feedback):
    # User 0 starts at 20:00 and returns at clock 10 h (local 30 h: day 1); the horizon is 3 days.
    m = CohortMetrics(2, 3.0, np.array([20.0, 8.0]))
    m.update(feedback(seen=[[X], [X]], session_ended=[X, F]), np.array([X, X]), clock_h=np.array([10.0, 0.1]))
    days = m.active_days()
    np.testing.assert_array_equal(days, [[X, X, F], [X, F, F]])
    np.testing.assert_array_equal(days.sum(axis=1), m.finalize()["days_active"])
