"""Table tests of every reward term: hand-built feedback -> expected per-user value.

Each case turns one term on (every other weight 0, shaping off), so the term function
returns exactly that term; the expected values are derived in the comments.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from reward import terms as T
from reward.composite import CompositeReward, build_reward
from reward.config import EngagementWeights, OptionalTerms, RewardConfig
from reward.engagement import EngagementReward, engagement_terms
from reward.retention import retention_terms
from reward.session import session_terms
from reward.slate import intra_slate_diversity, optional_terms

F, X = False, True  # readable boolean tables

# ---------------------------------------------------------------------------- engagement
# Two users, slates of three; user 1 left after the second video (the third is unseen).
ENGAGEMENT_FB = dict(
    seen=[[X, X, X], [X, X, F]],
    watch_ratio=[[1.5, 0.2, 2.0], [1.0, 0.05, 0.0]],
    completed=[[X, F, X], [X, F, F]],
    fast_skip=[[F, F, F], [F, X, F]],
    like=[[X, F, X], [F, F, F]],
    share=[[F, F, X], [F, F, F]],
    comment=[[X, F, F], [X, F, F]],
    follow=[[F, F, X], [F, F, F]],
    profile_visit=[[F, F, X], [X, F, F]],
    not_interested=[[F, F, F], [F, X, F]],
)

ENGAGEMENT_CASES = [
    # term, weight, expected (user 0, user 1)
    # watch ratio sums: 1.5 + 0.2 + 2.0 = 3.7; 1.0 + 0.05 = 1.05.
    (T.TERM_WATCH_RATIO, "engagement.watch_ratio", 1.0, [3.7, 1.05]),
    # Doubling the weight doubles the term.
    (T.TERM_WATCH_RATIO, "engagement.watch_ratio", 2.0, [7.4, 2.1]),
    # Completions: 2 and 1, times 0.5.
    (T.TERM_COMPLETION, "engagement.completion", 0.5, [1.0, 0.5]),
    # Replays, max(ratio - 1, 0): 0.5 + 0 + 1.0 = 1.5 and 0 (a ratio of exactly 1 replays nothing); times 2.
    (T.TERM_REPLAY, "engagement.replay", 2.0, [3.0, 0.0]),
    # Likes: 2 and 0, times 2.
    (T.TERM_LIKE, "engagement.like", 2.0, [4.0, 0.0]),
    # Shares: 1 and 0, times 3.
    (T.TERM_SHARE, "engagement.share", 3.0, [3.0, 0.0]),
    # Comments: 1 and 1, times 2.
    (T.TERM_COMMENT, "engagement.comment", 2.0, [2.0, 2.0]),
    # Follows: 1 and 0, times 4.
    (T.TERM_FOLLOW, "engagement.follow", 4.0, [4.0, 0.0]),
    # Profile visits: 1 and 1, times 1.5.
    (T.TERM_PROFILE_VISIT, "engagement.profile_visit", 1.5, [1.5, 1.5]),
    # Fast skips: 0 and 1, times -0.5 (a penalty).
    (T.TERM_FAST_SKIP, "engagement.fast_skip", -0.5, [0.0, -0.5]),
    # Not interested: 0 and 1, times -4 (a penalty).
    (T.TERM_NOT_INTERESTED, "engagement.not_interested", -4.0, [0.0, -4.0]),
]


@pytest.mark.parametrize(("term", "key", "weight", "expected"), ENGAGEMENT_CASES)
def test_engagement_term(feedback, one_term, term, key, weight, expected):
    cfg = one_term({key: weight})
    out = engagement_terms(feedback(**ENGAGEMENT_FB), cfg)
    assert list(out) == [term]
    assert out[term].dtype == np.float32 and out[term].shape == (2,)
    np.testing.assert_allclose(out[term], expected, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------- session
# Three users, slates of two. User 0 goes on after two videos (30 s + 90 s); user 1 left
# after one video (12 s); user 2 watched 6 s and churned (a churn is also a leave).
SESSION_FB = dict(
    seen=[[X, X], [X, F], [X, F]],
    watch_time_s=[[30.0, 90.0], [12.0, 0.0], [6.0, 0.0]],
    session_ended=[F, X, X],
    churned=[F, F, X],
)

SESSION_CASES = [
    # Videos seen this step: 2, 1, 1; times 0.1.
    (T.TERM_SESSION_VIDEOS, "session.videos", 0.1, [0.2, 0.1, 0.1]),
    # Minutes watched this step: 120 s = 2 min, 0.2 min, 0.1 min; times 0.5.
    (T.TERM_SESSION_MINUTES, "session.minutes", 0.5, [1.0, 0.1, 0.05]),
    # Leave: users 1 and 2 ended their sessions; times -1.
    (T.TERM_LEAVE, "session.leave", -1.0, [0.0, -1.0, -1.0]),
]


@pytest.mark.parametrize(("term", "key", "weight", "expected"), SESSION_CASES)
def test_session_term(feedback, one_term, term, key, weight, expected):
    out = session_terms(feedback(**SESSION_FB), one_term({key: weight}))
    assert list(out) == [term]
    np.testing.assert_allclose(out[term], expected, rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------- retention
# Three users. User 0's session goes on (a stray return gap of 5 h must be ignored: only a
# session end pays); user 1 left and comes back in 12 h on a new day; user 2 churned.
RETENTION_FB = dict(
    seen=[[X], [X], [X]],
    session_ended=[F, X, X],
    churned=[F, F, X],
    return_gap_h=[5.0, 12.0, 0.0],
    new_day_active=[F, X, F],
)

RETENTION_CASES = [
    # 10 * exp(-12 / 24) = 10 * 0.60653066 for user 1; 0 for the others.
    (T.TERM_RETURN_GAP, {"retention.return_gap": 10.0}, [0.0, 10.0 * math.exp(-0.5), 0.0]),
    # tau = 12 h: 10 * exp(-1) = 3.6787944.
    (T.TERM_RETURN_GAP, {"retention.return_gap": 10.0, "retention.return_gap_tau_h": 12.0},
     [0.0, 10.0 * math.exp(-1.0), 0.0]),
    # Churn: user 2 only; times -50.
    (T.TERM_CHURN, {"retention.churn": -50.0}, [0.0, 0.0, -50.0]),
    # A new active day: user 1 only; times 5.
    (T.TERM_DAY_ACTIVE, {"retention.day_active": 5.0}, [0.0, 5.0, 0.0]),
]


@pytest.mark.parametrize(("term", "overrides", "expected"), RETENTION_CASES)
def test_retention_term(feedback, one_term, term, overrides, expected):
    out = retention_terms(feedback(**RETENTION_FB), one_term(overrides))
    assert list(out) == [term]
    np.testing.assert_allclose(out[term], expected, rtol=1e-6, atol=1e-6)


def test_an_immediate_return_earns_the_full_weight(feedback, one_term):
    # exp(-0 / tau) = 1: a gap of 0 h at a session end (not churned) pays the whole weight.
    fb = feedback(seen=[[X]], session_ended=[X], return_gap_h=[0.0])
    out = retention_terms(fb, one_term({"retention.return_gap": 3.0}))
    np.testing.assert_allclose(out[T.TERM_RETURN_GAP], [3.0])


# ---------------------------------------------------------------------------- optional
# Three users, slates of three, 2-d embeddings.
# User 0 sees all three: e0 = (2, 0), e1 = (0, 0.5), e2 = (1, 0). Cosines: (0,1) 0, (0,2) 1,
#   (1,2) 0, so 1 - cos = 1, 0, 1: mean 2/3 (norms do not matter).
# User 1 sees two opposite videos (the third, unseen, is ignored): 1 - (-1) = 2.
# User 2 sees one video: no pair, diversity 0.
# Followers (threshold 150, "fewer than"): user 0: 100 and 149.9 count, 150 does not -> 2;
#   user 1: 120 counts, 90000 does not, the unseen one (0 followers) does not -> 1;
#   user 2: 100 -> 1.
OPTIONAL_FB = dict(
    seen=[[X, X, X], [X, X, F], [X, F, F]],
    emb=[
        [[2.0, 0.0], [0.0, 0.5], [1.0, 0.0]],
        [[1.0, 0.0], [-3.0, 0.0], [0.0, 1.0]],
        [[3.0, 4.0], [0.0, 0.0], [0.0, 0.0]],
    ],
    creator_followers=[[100.0, 149.9, 150.0], [120.0, 90000.0, 0.0], [100.0, 0.0, 0.0]],
)

OPTIONAL_CASES = [
    # Diversity times 1.5: 2/3 * 1.5 = 1, 2 * 1.5 = 3, 0.
    (T.TERM_DIVERSITY, {"optional.diversity": 1.5}, [1.0, 3.0, 0.0]),
    # New creators (< 150 followers) times 2: 4, 2, 2.
    (T.TERM_NEW_CREATOR, {"optional.new_creator": 2.0}, [4.0, 2.0, 2.0]),
    # A threshold of 100 counts nobody here (100 is not fewer than 100).
    (T.TERM_NEW_CREATOR, {"optional.new_creator": 2.0, "optional.new_creator_max_followers": 100.0},
     [0.0, 0.0, 0.0]),
]


@pytest.mark.parametrize(("term", "overrides", "expected"), OPTIONAL_CASES)
def test_optional_term(feedback, one_term, term, overrides, expected):
    out = optional_terms(feedback(**OPTIONAL_FB), one_term(overrides))
    assert list(out) == [term]
    np.testing.assert_allclose(out[term], expected, rtol=1e-6, atol=1e-6)


def test_diversity_of_identical_videos_is_zero_and_zero_embeddings_are_orthogonal():
    seen = np.ones((2, 3), np.bool_)
    same = np.tile(np.array([0.6, 0.8], np.float32), (2, 3, 1))
    np.testing.assert_allclose(intra_slate_diversity(same, seen), [0.0, 0.0], atol=1e-12)
    # Three pairs; a zero embedding has cosine 0 with anything: (0,1) 1, (0,2) 1, (1,2) 0 -> 2/3.
    emb = np.array([[[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]]] * 2, np.float32)
    np.testing.assert_allclose(intra_slate_diversity(emb, seen), [2.0 / 3.0] * 2, rtol=1e-12)


def test_optional_terms_are_off_by_default(feedback):
    cfg = RewardConfig()
    assert optional_terms(feedback(**OPTIONAL_FB), cfg) == {}
    assert T.TERM_DIVERSITY not in cfg.active_terms and T.TERM_NEW_CREATOR not in cfg.active_terms


# ---------------------------------------------------------------------------- selection
def test_zero_weight_terms_are_omitted_and_the_order_is_fixed(feedback):
    fb = feedback(**ENGAGEMENT_FB)
    full = engagement_terms(fb, RewardConfig())
    assert list(full) == list(T.ENGAGEMENT_TERMS)
    out = engagement_terms(fb, RewardConfig(engagement=EngagementWeights(like=0.0, share=0.0)))
    assert list(out) == [n for n in T.ENGAGEMENT_TERMS if n not in (T.TERM_LIKE, T.TERM_SHARE)]


def test_disabled_terms_are_left_out_whatever_their_weight(feedback):
    cfg = RewardConfig(disabled_terms=(T.TERM_LIKE, T.TERM_CHURN, T.TERM_SHAPING))
    assert T.TERM_LIKE not in cfg.active_terms
    assert T.TERM_LIKE not in engagement_terms(feedback(**ENGAGEMENT_FB), cfg)
    assert T.TERM_CHURN not in retention_terms(feedback(**RETENTION_FB), cfg)
    reward = CompositeReward(cfg)
    assert reward.shaping is None
    assert set(reward(feedback(**RETENTION_FB))) == set(cfg.active_terms)


def test_composite_reports_exactly_the_active_terms_in_order(feedback):
    cfg = RewardConfig(optional=OptionalTerms(diversity=1.0, new_creator=1.0))
    reward = build_reward(cfg)
    out = reward(feedback(**OPTIONAL_FB))
    assert tuple(out) == cfg.active_terms == reward.terms
    assert tuple(out) == T.TERM_NAMES  # every term is on in this config
    for name, value in out.items():
        assert value.dtype == np.float32 and value.shape == (3,), name


def test_composite_is_the_sum_of_the_group_functions(feedback):
    fb = feedback(**ENGAGEMENT_FB, session_ended=[F, X], return_gap_h=[0.0, 3.0], new_day_active=[F, X])
    cfg = RewardConfig()
    out = build_reward(cfg)(fb)
    expected = {**engagement_terms(fb, cfg), **session_terms(fb, cfg), **retention_terms(fb, cfg)}
    for name, value in expected.items():
        np.testing.assert_array_equal(out[name], value)
    assert set(out) - set(expected) == {T.TERM_SHAPING}


def test_engagement_reward_reports_the_engagement_terms_only(feedback):
    fb = feedback(**ENGAGEMENT_FB, session_ended=[X, X], churned=[F, X])
    out = EngagementReward()(fb)
    assert tuple(out) == T.ENGAGEMENT_TERMS
    for name, value in engagement_terms(fb, RewardConfig()).items():
        np.testing.assert_array_equal(out[name], value)


def test_unseen_videos_add_nothing(feedback):
    # The same responses on an unseen video (which the simulator never produces) would count
    # in the sums, so the simulator's zeros are what keep them out; diversity and new
    # creators read `seen` explicitly.
    fb = feedback(seen=[[X, F]], emb=[[[1.0, 0.0], [0.0, 1.0]]], creator_followers=[[10.0, 10.0]])
    cfg = RewardConfig(optional=OptionalTerms(diversity=1.0, new_creator=1.0))
    out = optional_terms(fb, cfg)
    np.testing.assert_allclose(out[T.TERM_DIVERSITY], [0.0])
    np.testing.assert_allclose(out[T.TERM_NEW_CREATOR], [1.0])
