"""Tests for envs.cohort.run_cohort: exposure metrics, retention by day, sim-reading policies."""

from __future__ import annotations

import numpy as np
import pytest

from envs.cohort import run_cohort
from envs.core import FeedSimulator
from envs.feed_env import make_env_config, validate_slates
from reward.metrics import METRIC_NAMES, CohortMetrics, coverage


@pytest.fixture(scope="module")
def cfg(small_overrides):
    return make_env_config(None, {**small_overrides, "horizon_days": 1.0})


def _greedy(cfg, greedy_slates):
    return lambda obs: greedy_slates(obs, cfg.catalog.latent_dim, cfg.slate_size)


def _old_metrics(cfg, policy, n_users, seed):
    """run_cohort's loop as it was before the exposure metrics: update() alone."""
    sim = FeedSimulator(cfg, n_users)
    sim.build_world(np.random.default_rng(seed))
    alive = np.ones(n_users, np.bool_)
    sim.spawn(alive)
    obs = sim.observe()
    m = CohortMetrics(n_users, cfg.horizon_days, sim.users.start_hour)
    while alive.any():
        slates = validate_slates(policy(obs.as_dict()), obs.mask, cfg.slate_size, rows=alive)
        slates = np.where(alive[:, None], slates, np.arange(cfg.slate_size)[None, :])
        out = sim.step(slates, alive)
        m.update(out.feedback, alive, clock_h=sim.users.clock_h)
        alive &= ~(out.terminated | out.truncated)
        obs = sim.observe(alive)
    return m.finalize()


def test_existing_metrics_are_unchanged_and_new_ones_are_in_range(cfg, greedy_slates, assert_same):
    policy = _greedy(cfg, greedy_slates)
    r = run_cohort(cfg, policy, 24, seed=4)
    assert tuple(r.per_user) == METRIC_NAMES
    old = _old_metrics(cfg, policy, 24, seed=4)
    before = [k for k in METRIC_NAMES if k not in ("intra_slate_diversity", "new_video_exposure")]
    assert_same({k: r.per_user[k] for k in before}, {k: old[k] for k in before})
    div, fresh = r.per_user["intra_slate_diversity"], r.per_user["new_video_exposure"]
    assert np.all((div >= 0.0) & (div <= 2.0)) and div.mean() > 0.0
    assert np.all((fresh >= 0.0) & (fresh <= 1.0))


def test_cohort_coverage_and_retention_by_day(cfg, greedy_slates):
    r = run_cohort(cfg, _greedy(cfg, greedy_slates), 24, seed=4)
    users, videos = r.shown_videos
    c_users, creators = r.shown_creators
    # The denominator counts the catalog's videos plus the uploads during the run.
    assert r.n_videos > cfg.catalog.n_items and r.n_creators > 0
    assert r.cohort["catalog_coverage"] == pytest.approx(coverage(videos, r.n_videos))
    assert r.cohort["creator_coverage"] == pytest.approx(coverage(creators, r.n_creators))
    assert 0.0 < r.cohort["catalog_coverage"] < 1.0 and 0.0 < r.cohort["creator_coverage"] <= 1.0
    # Pairs are distinct, sorted by video then user; every user saw something.
    code = videos * 24 + users
    assert np.all(np.diff(code) > 0)
    assert set(users.tolist()) == set(range(24)) == set(c_users.tolist())
    # Each user's distinct videos are at most the videos they saw.
    assert np.all(np.bincount(users, minlength=24) <= r.per_user["videos"])
    # Retention by day: day 0 is everyone's first session; days_active sums the days.
    assert r.active_days.shape == (24, int(np.ceil(cfg.horizon_days)))
    assert r.retention_by_day[0] == 1.0
    np.testing.assert_array_equal(r.active_days.sum(axis=1), r.per_user["days_active"])


def test_an_upload_into_a_shown_row_is_a_new_video(small_overrides, greedy_slates):
    # Heavy uploads over a short horizon: rows are overwritten while users watch, so some
    # shown videos must be later uploads into rows shown before (ids past n_items).
    cfg = make_env_config(None, {**small_overrides, "horizon_days": 0.5, "catalog.uploads_per_h": 20000.0})
    r = run_cohort(cfg, _greedy(cfg, greedy_slates), 16, seed=1)
    videos = r.shown_videos[1]
    assert videos.max() >= cfg.catalog.n_items
    assert r.per_user["new_video_exposure"].mean() > 0.0
    rows = videos % cfg.catalog.n_items
    assert len(np.unique(videos)) > len(np.unique(rows))
    assert r.n_videos >= cfg.catalog.n_items + videos.max() // cfg.catalog.n_items
    assert 0.0 < r.cohort["catalog_coverage"] <= 1.0


def test_a_sim_reading_policy_gets_the_full_observation(cfg, greedy_slates, assert_same):
    greedy = _greedy(cfg, greedy_slates)
    calls = []

    def peeking(obs, sim):
        # sim.obs is the Observation the dict came from, with the candidates' catalog rows.
        assert sim.obs.item_ids.shape == obs["mask"].shape
        assert np.all((sim.obs.item_ids >= 0) == (obs["mask"] != 0))
        calls.append(1)
        return greedy(obs)

    a = run_cohort(cfg, peeking, 12, seed=2, policy_needs_sim=True)
    b = run_cohort(cfg, greedy, 12, seed=2)
    assert len(calls) == a.steps
    assert_same(a.per_user, b.per_user)
    assert a.cohort == b.cohort
