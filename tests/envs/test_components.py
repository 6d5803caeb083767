"""Component tests: catalog, user spawning, retrieval and the response kernel on small,
hand-set states, with the expected numbers derived in comments (RecSim style)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from envs.catalog import STAGE_GRADUATED, STAGE_SUPPRESSED, STAGE_TEST, Catalog, population_completion
from envs.core import FeedSimulator
from envs.feed_env import make_env_config
from envs.response import P_LEAVE_BIAS, respond
from envs.retrieval import (
    N_SOURCES,
    SRC_BACKFILL,
    SRC_EMBEDDING,
    SRC_EXPLORE,
    SRC_FOLLOWED,
    SRC_FRESH,
    SRC_I2I,
    SRC_TRENDING,
)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + np.exp(-x))


def _catalog(cfg, seed=0, **changes):
    return Catalog(dataclasses.replace(cfg.catalog, **changes), np.random.default_rng(seed))


def _sim(cfg, n_users, seed=0):
    sim = FeedSimulator(cfg, n_users)
    sim.build_world(np.random.default_rng(seed))
    sim.spawn(np.ones(n_users, np.bool_))
    return sim


# ============================================================================ catalog
def test_niche_blocks_are_contiguous_with_at_least_four_videos(small_config):
    cat = _catalog(small_config)
    c = small_config.catalog
    G = c.n_niches  # 6 topics x 4 niches = 24
    start = cat.niche_start
    assert start.shape == (G + 1,) and start[0] == 0 and start[-1] == c.n_items
    sizes = np.diff(start)
    assert np.all(sizes >= 4)
    for g in range(G):
        assert np.all(cat.niche[start[g] : start[g + 1]] == g)
        # Rows run from the oldest to the newest upload within a block.
        assert np.all(np.diff(cat.upload_h[start[g] : start[g + 1]]) >= 0)
    np.testing.assert_array_equal(cat.topic, cat.niche_topic[cat.niche])
    np.testing.assert_array_equal(cat.niche_topic, np.repeat(np.arange(c.n_topics), c.niches_per_topic))
    # Each creator makes videos of one niche.
    np.testing.assert_array_equal(cat.creator_niche[cat.creator], cat.niche)


def test_catalog_value_ranges(small_config):
    cat = _catalog(small_config)
    c = small_config.catalog
    assert np.all((cat.duration_s >= c.min_duration_s) & (cat.duration_s <= c.max_duration_s))
    assert np.all((cat.quality >= 0.0) & (cat.quality <= 1.0))
    for name in ("true_vec", "emb", "cluster_centroid", "topic_centroid", "niche_centroid", "creator_style"):
        norms = np.linalg.norm(getattr(cat, name), axis=1)
        assert np.allclose(norms, 1.0, atol=1e-5), name
    assert np.all(cat.upload_h <= 0.0) and np.all(cat.upload_h >= -c.catalog_age_h)
    assert np.all(cat.stage == STAGE_GRADUATED)
    assert np.all(cat.completions <= cat.impressions)
    assert np.all((cat.sound >= 0) & (cat.sound < c.n_sounds))
    assert np.all((cat.region >= 0) & (cat.region < c.n_regions))


def test_short_duration_bounds_are_respected(small_config):
    # A tight duration window clips the heavy lognormal tail on both sides.
    cat = _catalog(small_config, min_duration_s=10.0, max_duration_s=12.0)
    assert cat.duration_s.min() >= 10.0 and cat.duration_s.max() <= 12.0
    assert np.any(cat.duration_s == 10.0) and np.any(cat.duration_s == 12.0)


def test_upload_replaces_the_oldest_video_of_the_niche(small_config):
    cat = _catalog(small_config)
    rng = np.random.default_rng(1)
    cat.now_h = 5.0
    g = 3
    lo, hi = int(cat.niche_start[g]), int(cat.niche_start[g + 1])
    oldest_two = lo + np.argsort(cat.upload_h[lo:hi], kind="stable")[:2]
    rows = cat.upload(np.array([g, g]), rng)
    np.testing.assert_array_equal(rows, oldest_two)
    np.testing.assert_array_equal(rows, [lo, lo + 1])
    for r in rows:
        assert cat.stage[r] == STAGE_TEST
        assert r in cat.fresh_pool
        assert cat.upload_h[r] == 5.0
        assert cat.impressions[r] == 0 and cat.completions[r] == 0 and cat.engagements[r] == 0
        # Beta(1.2, 2) prior: rate 1.2 / 3.2 = 0.375, log-odds log(0.375 / 0.625) = log(0.6).
        assert np.isclose(cat.comp_logit[r], np.log(0.6), atol=1e-6)
        assert cat.niche[r] == g and cat.creator_niche[cat.creator[r]] == g
        assert r in cat.creator_recent[cat.creator[r]]
        assert np.isclose(np.linalg.norm(cat.true_vec[r]), 1.0, atol=1e-5)
    # The block is walked in order: after hi - lo uploads the pointer wraps to the first
    # new video, which is now the oldest of the niche.
    cat.now_h = 6.0
    more = cat.upload(np.full(hi - lo - 2, g), rng)
    np.testing.assert_array_equal(more, np.arange(lo + 2, hi))
    cat.now_h = 7.0
    again = cat.upload(np.array([g]), rng)
    np.testing.assert_array_equal(again, [lo])
    assert cat.upload_h[lo] == 7.0


def test_fresh_pool_ages_out_untested_videos(small_config):
    cat = _catalog(small_config, fresh_pool_size=8)
    rng = np.random.default_rng(2)
    rows = cat.upload(np.arange(9) % small_config.catalog.n_niches, rng)
    # The 9th upload takes the pool slot of the 1st, still untested: it is suppressed.
    assert cat.stage[rows[0]] == STAGE_SUPPRESSED
    assert np.all(cat.stage[rows[1:]] == STAGE_TEST)
    assert sorted(cat.fresh_pool.tolist()) == sorted(rows[1:].tolist())


def test_judge_tests_graduates_and_suppresses(small_config):
    cat = _catalog(small_config, test_audience=60, graduation_completion_rate=0.38)
    r_pass, r_fail, r_young = cat.upload(np.array([0, 1, 2]), np.random.default_rng(3))
    r_old = int(cat.niche_start[5])  # a graduated video of the initial catalog
    cat.impressions[[r_pass, r_fail, r_young, r_old]] = [60, 60, 59, 100]
    # 23 / 60 = 0.383 >= 0.38 passes; 22 / 60 = 0.367 fails; 59 impressions is too few to judge.
    cat.completions[[r_pass, r_fail, r_young, r_old]] = [23, 22, 59, 0]
    cat.judge_tests(np.array([r_pass, r_fail, r_young, r_old]))
    assert cat.stage[r_pass] == STAGE_GRADUATED
    assert cat.stage[r_fail] == STAGE_SUPPRESSED
    assert cat.stage[r_young] == STAGE_TEST
    assert cat.stage[r_old] == STAGE_GRADUATED  # only test-stage videos are judged
    # The judged videos' completion odds are refreshed: (23 + 1.2) / (60 + 3.2) = 0.3829.
    rate = 24.2 / 63.2
    assert np.isclose(cat.comp_logit[r_pass], np.log(rate / (1 - rate)), atol=1e-5)
    # A suppressed video stays suppressed whatever happens later.
    cat.completions[r_fail] = 60
    cat.judge_tests(np.array([r_fail]))
    assert cat.stage[r_fail] == STAGE_SUPPRESSED


def test_judge_tests_threshold_is_inclusive(small_config):
    cat = _catalog(small_config, test_audience=60, graduation_completion_rate=0.5)
    (r,) = cat.upload(np.array([0]), np.random.default_rng(4))
    cat.impressions[r], cat.completions[r] = 60, 30  # exactly 0.5
    cat.judge_tests(np.array([r]))
    assert cat.stage[r] == STAGE_GRADUATED


def test_refresh_index_only_indexes_graduated_videos(small_config):
    cat = _catalog(small_config)
    rng = np.random.default_rng(5)
    G = small_config.catalog.n_niches
    cat.now_h = 2.0
    rows = cat.upload(np.repeat(np.arange(G), 6), rng)  # 6 test-stage videos per niche
    # Give every new video top statistics so that it would top any ranking it entered.
    cat.impressions[rows] = 10.0
    cat.completions[rows] = 10.0
    cat.engagements[rows] = 10.0
    cat._update_comp_logit(rows)
    suppressed = rows[::2]
    cat.stage[suppressed] = STAGE_SUPPRESSED
    cat.refresh_index()
    top = cat.cluster_top
    for g in range(G):
        entries = top[g][top[g] >= 0]
        assert len(entries) > 0 and len(np.unique(entries)) == len(entries)
        assert np.all(cat.niche[entries] == g)
        assert np.all(cat.stage[entries] == STAGE_GRADUATED)
    for listing in (cat.trending[cat.trending >= 0], cat.backfill):
        assert len(listing) > 0
        assert np.all(cat.stage[listing] == STAGE_GRADUATED)
        assert not np.any(np.isin(listing, rows))
    assert not np.any(np.isin(top, rows))
    # Once graduated, a top video enters its cluster's index at the next refresh.
    star = rows[1]
    cat.stage[star] = STAGE_GRADUATED
    cat.refresh_index()
    assert star in cat.cluster_top[cat.niche[star]]


def test_population_completion_prefers_short_and_good_videos():
    # logit = -0.3 + 2.5 (q - 0.5) - 0.8 log(d / 15): q = 0.5, d = 15 s -> sigmoid(-0.3) = 0.4256.
    assert np.isclose(population_completion(np.array([0.5]), np.array([15.0]))[0], 0.425557, atol=1e-6)
    q = np.linspace(0.0, 1.0, 11)
    by_quality = population_completion(q, np.full_like(q, 20.0))
    assert np.all(np.diff(by_quality) > 0)
    d = np.array([5.0, 10.0, 30.0, 60.0, 300.0])
    by_duration = population_completion(np.full_like(d, 0.6), d)
    assert np.all(np.diff(by_duration) < 0)
    assert np.all((by_duration > 0) & (by_duration < 1))


# ============================================================================ users
def _true_topics(users, b):
    used = users.interest_off[b] > -9.0
    return set(users.interest_topic[b][used].tolist())


def test_spawned_users_signup_is_noisy_subset_of_true_topics(small_config):
    sim = _sim(small_config, 2000)
    u = sim.users
    noise = small_config.user.signup_noise_topics
    has = u.signup.any(axis=1)
    if noise > 0:  # with a noise topic every signing user has a non-empty sign-up
        assert abs(has.mean() - small_config.user.signup_prob) < 0.05
    for b in np.flatnonzero(has):
        chosen = set(np.flatnonzero(u.signup[b]).tolist())
        assert len(chosen - _true_topics(u, b)) <= noise, b
    assert np.all(np.isin(u.signup, (0.0, 1.0)))


def test_signup_without_noise_and_full_recall_is_the_true_topics(small_overrides):
    cfg = make_env_config(None, {**small_overrides, "user.signup_prob": 1.0, "user.signup_noise_topics": 0,
                                 "user.signup_recall": 1.0})
    u = _sim(cfg, 300).users
    for b in range(300):
        assert set(np.flatnonzero(u.signup[b]).tolist()) == _true_topics(u, b)


def test_platform_estimate_starts_from_signup_only(small_config):
    u = _sim(small_config, 1000).users
    has = u.signup.any(axis=1)
    assert has.any() and (~has).any()
    assert np.all(u.u_hat[~has] == 0.0)
    # The sign-up's topic embedding at half length.
    assert np.allclose(np.linalg.norm(u.u_hat[has], axis=1), 0.5, atol=1e-5)
    np.testing.assert_allclose(u.p_hat, 0.3 * u.signup)


def test_no_signup_means_no_estimate(small_overrides):
    cfg = make_env_config(None, {**small_overrides, "user.signup_prob": 0.0})
    u = _sim(cfg, 200).users
    assert np.all(u.signup == 0.0) and np.all(u.u_hat == 0.0) and np.all(u.p_hat == 0.0)


def test_spawned_users_start_fresh(small_config):
    u = _sim(small_config, 500).users
    m = small_config.user.max_interests
    used = u.interest_off > -9.0
    assert np.all(used[:, 0]) and np.all(u.interest_off[:, 0] == 0.0)
    assert np.all(used.sum(axis=1) <= m)
    # Interests are a prefix of the components; each rank counts secondary_interest_offset less.
    assert np.all(used[:, 1:] <= used[:, :-1])
    k = np.broadcast_to(np.arange(m), used.shape)
    step = small_config.user.secondary_interest_offset
    np.testing.assert_allclose(u.interest_off[used], -step * k[used], atol=1e-6)
    assert np.allclose(np.linalg.norm(u.interest_vec[used], axis=1), 1.0, atol=1e-5)
    assert np.all(u.days_active == 1) and np.all(u.sessions == 0) and np.all(u.clock_h == 0.0)
    assert np.all(u.follows == -1) and np.all(u.hist_item == -1) and np.all(u.seen == -1)
    assert np.all(u.activity > 0) and np.all((u.start_hour >= 7.0) & (u.start_hour < 24.0))
    assert np.all(u.sat == small_config.response.satisfaction_neutral)


def test_spawn_only_touches_the_given_slots(small_config):
    sim = _sim(small_config, 6)
    before = {k: v.copy() for k, v in vars(sim.users).items() if isinstance(v, np.ndarray) and v.shape[:1] == (6,)}
    slots = np.array([False, True, False, False, True, False])
    sim.spawn(slots)
    for name, old in before.items():
        new = getattr(sim.users, name)
        np.testing.assert_array_equal(new[~slots], old[~slots], err_msg=name)
    assert not np.array_equal(sim.users.interest_vec[slots], before["interest_vec"][slots])


# ============================================================================ retrieval
def test_retrieval_skips_recently_shown_videos(small_config):
    sim = _sim(small_config, 16)
    first = sim.observe()
    N = small_config.retrieval.n_candidates
    S = sim.users.seen.shape[1]  # seen_filter_len = 64 >= N
    assert S >= N
    # Put every candidate just retrieved into the user's ring of shown videos.
    sim.users.seen[:, :N] = first.item_ids
    sim.users.seen_ptr[:] = N
    again = sim.observe()
    for b in range(16):
        assert not np.any(np.isin(again.item_ids[b], first.item_ids[b])), b
        assert len(np.unique(again.item_ids[b])) == N


def test_retrieval_tags_sources_and_inactive_rows_are_empty(small_config, candidate_sources):
    sim = _sim(small_config, 8)
    active = np.array([True, False] * 4)
    obs = sim.observe(active)
    assert np.all(obs.mask[active] == 1)
    assert np.all(obs.mask[~active] == 0) and np.all(obs.item_ids[~active] == -1)
    assert np.all(obs.candidates[~active] == 0.0)
    src = obs.source[active]
    assert np.all((src >= 0) & (src < N_SOURCES))
    decoded = candidate_sources(small_config, obs.candidates, obs.mask)
    np.testing.assert_array_equal(decoded[active], src)
    # New users have no engagement and follow no one: no i2i or followed candidates yet.
    assert not np.any(np.isin(src, (SRC_I2I, SRC_FOLLOWED)))
    assert np.any(src == SRC_EMBEDDING) and np.any(src == SRC_TRENDING)


def _rollout_sources(cfg, steps, n_users=32, seed=0):
    """(stage, source) of every valid candidate over a short random-slate run of the core."""
    sim = _sim(cfg, n_users, seed)
    rng = np.random.default_rng(seed)
    K = cfg.slate_size
    stages, sources = [], []
    obs = sim.observe()
    for _ in range(steps):
        valid = obs.mask == 1
        stages.append(sim.catalog.stage[obs.item_ids[valid]])
        sources.append(obs.source[valid])
        keys = np.where(valid, rng.random(valid.shape), np.inf)
        sim.step(np.argsort(keys, axis=1)[:, :K], np.ones(n_users, np.bool_))
        obs = sim.observe()
    return np.concatenate(stages), np.concatenate(sources)


def test_fresh_source_serves_test_stage_and_wide_sources_graduated(small_config):
    stages, sources = _rollout_sources(small_config, 40)
    assert np.any(sources == SRC_FRESH), "no fresh candidates in the run"
    assert np.all(stages[sources == SRC_FRESH] == STAGE_TEST)
    wide = np.isin(sources, (SRC_EMBEDDING, SRC_I2I, SRC_TRENDING, SRC_EXPLORE))
    assert np.all(stages[wide] == STAGE_GRADUATED)
    assert not np.any(stages == STAGE_SUPPRESSED)


def test_test_stage_videos_reach_only_fresh_pool_viewers_and_followers(small_config):
    # Graduated exposure: a test-stage video's first audience is the fresh source's sample
    # and its creator's followers; the wide sources never serve it.
    sim = _sim(small_config, 4)
    (r,) = sim.catalog.upload(np.array([2]), np.random.default_rng(0))
    assert sim.catalog.stage[r] == STAGE_TEST
    sim.users.follows[:, -1] = sim.catalog.creator[r]  # every user follows its creator
    obs = sim.observe()
    served = obs.item_ids == r
    assert served.any(), "followers should see their creator's new upload"
    assert np.all(np.isin(obs.source[served], (SRC_FRESH, SRC_FOLLOWED)))


def test_backfill_does_not_serve_videos_replaced_since_the_refresh(small_overrides):
    # Starved retrieval (tiny index lists, one probed cluster, no exploration, N = 64):
    # every row runs out of candidates and takes the whole backfill list.
    cfg = make_env_config(None, {**small_overrides, "retrieval.n_candidates": 64, "retrieval.n_probe_clusters": 1,
                                 "retrieval.explore_share": 0.0, "catalog.cluster_top_len": 4,
                                 "catalog.trending_len": 4})
    sim = _sim(cfg, 4)
    cat = sim.catalog
    assert np.any(sim.observe().source == SRC_BACKFILL)
    # New uploads land on the backfill rows (pointing each niche's replacement pointer at
    # them), as the world clock would sooner or later do between two refreshes.
    targets = cat.backfill[:8].astype(np.int64)
    for r in targets:
        cat.niche_ptr[cat.niche[r]] = r
        cat.upload(np.array([cat.niche[r]]), np.random.default_rng(int(r)))
    assert np.all(cat.stage[targets] == STAGE_TEST)
    obs = sim.observe()
    valid = obs.mask == 1
    stage = cat.stage[obs.item_ids[valid]]
    assert np.all(stage[obs.source[valid] != SRC_FRESH] == STAGE_GRADUATED)


# ============================================================================ response kernel
N_USERS = 4000


#: Response and user-model coefficients the derivations below use, pinned so that
#: retuning the defaults does not move the expected numbers.
KERNEL_PARAMS = {
    "response.affinity_weight": 3.2,
    "response.quality_weight": 1.0,
    "response.appeal_bias": -1.6,
    "response.fatigue_weight": 1.0,
    "response.avoidance_weight": 1.5,
    "response.skip_slope": 1.6,
    "response.skip_bias": -0.4,
    "response.completion_slope": 1.3,
    "response.completion_duration_slope": 0.8,
    "response.not_interested_bias": -5.4,
    "response.not_interested_slope": 1.4,
    "user.fatigue_per_view": 0.09,
    "user.avoidance_per_not_interested": 0.8,
    "user.avoidance_relief_per_positive": 0.1,
}


@pytest.fixture(scope="module")
def kernel_world(small_overrides):
    """A simulator with 4000 identical users (hand-set) and two hand-made videos.

    User: one interest component u (unit), no session interest, no fatigue, avoidance,
    follows or trend; activity 1.
    Video A (row a): true vector u, quality 0.9, 15 s. Video B (row b): a unit vector
    orthogonal to u, quality 0.9, 15 s.
    Appeal (KERNEL_PARAMS): affinity 3.2 * cos, quality 1.0 * (q - 0.5), bias -1.6, so
    A: 3.2 * 1 + 0.4 - 1.6 = 2.0 and B: 3.2 * 0 + 0.4 - 1.6 = -1.2.
    """
    cfg = make_env_config(None, {**small_overrides, **KERNEL_PARAMS})
    sim = _sim(cfg, N_USERS)
    cat = sim.catalog
    a, b = 10, int(cat.niche_start[-2])  # two videos of different topics
    assert cat.topic[a] != cat.topic[b]
    u = cat.true_vec[a].astype(np.float64)
    w = cat.true_vec[b] - np.dot(cat.true_vec[b], u) * u
    cat.true_vec[a] = u
    cat.true_vec[b] = w / np.linalg.norm(w)
    cat.quality[[a, b]] = 0.9
    cat.duration_s[[a, b]] = 15.0
    cat.sound_level[:] = 0.0
    return sim, a, b, u


def _reset_users(sim, u):
    us = sim.users
    sim.spawn(np.ones(us.n_slots, np.bool_))
    us.interest_vec[:] = 0.0
    us.interest_vec[:, 0] = u
    us.interest_off[:] = -9.0
    us.interest_off[:, 0] = 0.0
    us.activity[:] = 1.0
    us.start_hour[:] = 12.0  # midday: no late-hour leave term


def _respond(sim, items, seed=7, active=None):
    items = np.asarray(items, np.int32).reshape(sim.n_users, -1)
    if active is None:
        active = np.ones(sim.n_users, np.bool_)
    return respond(sim, items, active, np.uint64(seed))


def test_matching_video_is_watched_far_longer_than_an_orthogonal_one(kernel_world):
    sim, a, b, u = kernel_world
    _reset_users(sim, u)
    half = N_USERS // 2
    out = _respond(sim, np.r_[np.full(half, a), np.full(half, b)])
    skip = out["flags"][:, 0, 1]
    ratio = out["watch_ratio"][:, 0]
    # P(fast skip) = sigmoid(skip_bias - skip_slope * appeal) = sigmoid(-0.4 - 1.6 appeal):
    # A (appeal 2.0): sigmoid(-3.6) = 0.027; B (appeal -1.2): sigmoid(1.52) = 0.821.
    assert abs(skip[:half].mean() - _sigmoid(-3.6)) < 0.02
    assert abs(skip[half:].mean() - _sigmoid(1.52)) < 0.03
    # Unskipped A completes with sigmoid(1.3 * 2.0) = 0.93 (then replays): mean ratio > 1.
    assert ratio[:half].mean() > 1.0
    assert ratio[:half].mean() > ratio[half:].mean() + 0.7


def test_topic_fatigue_lowers_watch_ratio(kernel_world):
    sim, a, b, u = kernel_world
    _reset_users(sim, u)
    half = N_USERS // 2
    topic = sim.catalog.topic[a]
    sim.users.fatigue[half:, topic] = 2.0
    fatigue_before = sim.users.fatigue.copy()
    out = _respond(sim, np.full(N_USERS, a))
    skip = out["flags"][:, 0, 1]
    ratio = out["watch_ratio"][:, 0]
    # Fatigue 2.0 takes fatigue_weight * 2 = 2.0 off the appeal: 2.0 -> 0.0, so
    # P(fast skip) goes from sigmoid(-3.6) = 0.027 to sigmoid(-0.4) = 0.401.
    assert abs(skip[half:].mean() - _sigmoid(-0.4)) < 0.03
    assert ratio[half:].mean() < ratio[:half].mean() - 0.3
    # Watching adds fatigue_per_view = 0.09 to the topic (0.4 of it for a fast skip).
    added = sim.users.fatigue[:, topic] - fatigue_before[:, topic]
    np.testing.assert_allclose(added, np.where(skip, 0.09 * 0.4, 0.09), atol=1e-6)


def test_not_interested_adds_avoidance(kernel_world):
    sim, a, b, u = kernel_world
    _reset_users(sim, u)
    topic = sim.catalog.topic[b]
    # Fatigue 3 and avoidance 0.3 on B's topic: appeal -1.2 - 3.0 - 1.5 * 0.3 = -4.65, a
    # near-certain skip, and P(not interested | skip) = sigmoid(-5.4 + 1.4 * 4.65) = 0.75.
    sim.users.fatigue[:, topic] = 3.0
    sim.users.avoid[:, topic] = 0.3
    out = _respond(sim, np.full(N_USERS, b))
    flags = out["flags"][:, 0]
    ni = flags[:, 7]
    positive = flags[:, 2] | flags[:, 3] | flags[:, 4] | flags[:, 5]
    assert abs(ni.mean() - _sigmoid(-5.4 + 1.4 * 4.65)) < 0.05
    avoid = sim.users.avoid[:, topic]
    # avoidance_per_not_interested = 0.8; a positive engagement relieves 0.1 instead.
    np.testing.assert_allclose(avoid[ni], 0.3 + 0.8, atol=1e-6)
    np.testing.assert_allclose(avoid[positive & ~ni], 0.3 - 0.1, atol=1e-6)
    np.testing.assert_allclose(avoid[~ni & ~positive], 0.3, atol=1e-6)
    others = np.delete(sim.users.avoid, topic, axis=1)
    assert np.all(others == 0.0)


def test_shorter_video_of_equal_appeal_is_completed_more_often(kernel_world):
    sim, a, b, u = kernel_world
    _reset_users(sim, u)
    cat = sim.catalog
    short, long_ = a, a + 1
    saved = {k: getattr(cat, k)[[short, long_]].copy() for k in ("true_vec", "quality", "duration_s", "topic")}
    cat.true_vec[long_] = cat.true_vec[short]
    cat.quality[long_] = cat.quality[short]
    cat.topic[long_] = cat.topic[short]
    cat.duration_s[short], cat.duration_s[long_] = 8.0, 60.0
    half = N_USERS // 2
    try:
        out = _respond(sim, np.r_[np.full(half, short), np.full(half, long_)])
    finally:
        for k, v in saved.items():
            getattr(cat, k)[[short, long_]] = v
    flags = out["flags"][:, 0]
    watched = ~flags[:, 1]
    done = flags[:, 0]
    # P(complete | watched) = sigmoid(1.3 * appeal - 0.8 * log(d / 15)) at appeal 2.0:
    # 8 s -> sigmoid(2.6 + 0.503) = 0.957; 60 s -> sigmoid(2.6 - 1.109) = 0.816.
    rate_short = done[:half][watched[:half]].mean()
    rate_long = done[half:][watched[half:]].mean()
    assert abs(rate_short - _sigmoid(2.6 - 0.8 * np.log(8 / 15))) < 0.02
    assert abs(rate_long - _sigmoid(2.6 - 0.8 * np.log(4))) < 0.03
    assert rate_short > rate_long + 0.1


def test_leave_point_and_clock(kernel_world):
    sim, a, b, u = kernel_world
    K = 4
    items = np.tile(np.array([a, a + 1, a + 2, a + 3]), (N_USERS, 1))
    leave_bias = sim.params[P_LEAVE_BIAS]
    try:
        # A leave log-odds of +20 after every video: everyone leaves after the first one.
        _reset_users(sim, u)
        sim.params[P_LEAVE_BIAS] = 20.0
        clock0 = sim.users.clock_h.copy()
        out = _respond(sim, items)
        np.testing.assert_array_equal(out["seen"], np.tile([True, False, False, False], (N_USERS, 1)))
        assert np.all(out["session_ended"])
        assert np.all(out["duration_s"] == sim.catalog.duration_s[items])  # durations are reported for all K
        # The user's clock moves by the watch time plus the return gap (0 if churned).
        dt = out["watch_time_s"].sum(axis=1) / 3600.0 + out["return_gap_h"]
        np.testing.assert_allclose(sim.users.clock_h - clock0, dt, rtol=1e-5, atol=1e-7)
        assert np.all(sim.users.sessions == 1)

        # -20: nobody leaves within a 4-video slate.
        _reset_users(sim, u)
        sim.params[P_LEAVE_BIAS] = -20.0
        out = _respond(sim, items)
        assert np.all(out["seen"]) and not np.any(out["session_ended"])
        assert np.all(out["return_gap_h"] == 0.0) and not np.any(out["churned"])
        assert np.all(sim.users.hist_ptr == K) and np.all(sim.users.seen_ptr == K)
        np.testing.assert_array_equal(sim.users.seen[:, :K], items)
    finally:
        sim.params[P_LEAVE_BIAS] = leave_bias


def test_inactive_users_are_not_touched(kernel_world):
    sim, a, b, u = kernel_world
    _reset_users(sim, u)
    active = np.arange(N_USERS) % 2 == 0
    clock, hist, fatigue = sim.users.clock_h.copy(), sim.users.hist_ptr.copy(), sim.users.fatigue.copy()
    out = _respond(sim, np.full(N_USERS, a), active=active)
    assert not np.any(out["seen"][~active]) and np.all(out["seen"][active, 0])
    assert np.all(out["watch_ratio"][~active] == 0.0) and not np.any(out["flags"][~active])
    np.testing.assert_array_equal(sim.users.clock_h[~active], clock[~active])
    np.testing.assert_array_equal(sim.users.hist_ptr[~active], hist[~active])
    np.testing.assert_array_equal(sim.users.fatigue[~active], fatigue[~active])
    assert np.all(sim.users.hist_ptr[active] == 1)


def test_respond_is_deterministic_per_seed(kernel_world):
    sim, a, b, u = kernel_world
    outs = []
    for seed in (5, 5, 6):
        _reset_users(sim, u)
        outs.append(_respond(sim, np.full(N_USERS, a), seed=seed))
    for k in outs[0]:
        np.testing.assert_array_equal(outs[0][k], outs[1][k], err_msg=k)
    assert not np.array_equal(outs[0]["watch_ratio"], outs[2]["watch_ratio"])
