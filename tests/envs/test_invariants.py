"""Invariants of the vector env over a few hundred steps of random valid slates.

One rollout per world (recorded once per module) is checked by many small tests:

- ``small``: the default test world (B = 64, 300 steps, 1-day horizon so that churn,
  truncation and autoreset all happen many times).
- ``sparse``: retrieval starved on purpose (4-video cluster index and trending lists, one
  probed cluster, no exploration, N = 64) so that rows come back padded and masked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

import envs
from envs.feed_env import INFO_FEEDBACK, INFO_METRICS, INFO_REWARD_TERMS
from envs.retrieval import N_SOURCES, SRC_BACKFILL
from reward.feedback import VIDEO_SIGNALS

WORLDS = {
    "small": dict(num_envs=64, steps=300, overrides={"horizon_days": 1.0}),
    "sparse": dict(
        num_envs=16,
        steps=120,
        overrides={
            "horizon_days": 1.0,
            "retrieval.n_candidates": 64,
            "retrieval.n_probe_clusters": 1,
            "retrieval.explore_share": 0.0,
            "catalog.cluster_top_len": 4,
            "catalog.trending_len": 4,
        },
    ),
}


@dataclass
class Rollout:
    """Everything the invariant tests look at, one entry per step (index 0: the reset)."""

    name: str
    env: envs.FeedVectorEnv
    obs: list = field(default_factory=list)  # dicts of the policy observation
    item_ids: list = field(default_factory=list)  # (B, N) catalog rows of the candidates
    source: list = field(default_factory=list)  # (B, N) retrieval source ids
    seen_ring: list = field(default_factory=list)  # (B, S) recently shown, as retrieval saw them
    active: list = field(default_factory=list)  # (B,) slot was stepped (not autoreset) at step t
    reward: list = field(default_factory=list)
    terminated: list = field(default_factory=list)
    truncated: list = field(default_factory=list)
    info: list = field(default_factory=list)

    @property
    def steps(self) -> range:
        return range(len(self.reward))


@pytest.fixture(scope="module", params=sorted(WORLDS))
def rollout(request, small_overrides, random_slates) -> Rollout:
    spec = WORLDS[request.param]
    venv = envs.FeedVectorEnv(num_envs=spec["num_envs"], overrides={**small_overrides, **spec["overrides"]})
    K = venv.config.slate_size
    rng = np.random.default_rng(1)
    r = Rollout(request.param, venv)

    def record_obs(obs):
        r.obs.append(obs)
        r.item_ids.append(venv.sim.obs.item_ids)
        r.source.append(venv.sim.obs.source)
        r.seen_ring.append(venv.sim.users.seen.copy())

    obs, _ = venv.reset(seed=17)
    record_obs(obs)
    active = np.ones(venv.num_envs, np.bool_)
    for _ in range(spec["steps"]):
        obs, reward, terminated, truncated, info = venv.step(random_slates(rng, obs["mask"], K))
        r.active.append(active)
        r.reward.append(reward)
        r.terminated.append(terminated)
        r.truncated.append(truncated)
        r.info.append(info)
        record_obs(obs)
        active = ~(terminated | truncated)
    return r


def _fb(r: Rollout, t: int) -> dict:
    return r.info[t][INFO_FEEDBACK]


def _metrics(r: Rollout, t: int) -> dict:
    return r.info[t][INFO_METRICS]


# ---------------------------------------------------------------------------- coverage
def test_rollout_exercises_episode_ends(rollout):
    # The checks below are only meaningful if sessions end, users churn and get truncated.
    ended = sum(_fb(rollout, t)["session_ended"].sum() for t in rollout.steps)
    term = sum(x.sum() for x in rollout.terminated)
    trunc = sum(x.sum() for x in rollout.truncated)
    assert ended > 0 and trunc > 0
    if rollout.name == "small":
        assert term > 0 and ended > 100


def test_sparse_world_has_padded_rows(rollout):
    masks = np.stack([o["mask"] for o in rollout.obs])
    if rollout.name == "sparse":
        assert (masks == 0).any(), "the sparse world should produce padding"
    else:
        assert (masks == 1).all()  # the small world always fills all N candidates


# ---------------------------------------------------------------------------- feedback
def test_watch_ratio_within_bounds(rollout):
    for t in rollout.steps:
        wr = _fb(rollout, t)["watch_ratio"]
        assert wr.dtype == np.float32
        assert np.all((wr >= 0.0) & (wr <= 3.0)), f"step {t}: {wr.min()}..{wr.max()}"


def test_no_feedback_after_the_leave_point(rollout):
    for t in rollout.steps:
        fb = _fb(rollout, t)
        seen = fb["seen"]
        active = rollout.active[t]
        # Once a video is unseen, every later one is: seen is non-increasing along the row.
        assert np.all(seen[:, 1:] <= seen[:, :-1]), f"step {t}"
        # An active user always reaches the first video; an autoreset slot sees nothing.
        assert np.all(seen[active, 0]) and not np.any(seen[~active])
        unseen = ~seen
        assert np.all(fb["watch_ratio"][unseen] == 0.0)
        assert np.all(fb["watch_time_s"][unseen] == 0.0)
        for name in VIDEO_SIGNALS:
            assert not np.any(fb[name][unseen]), f"step {t}: {name} on an unseen video"
        # Stopping before the end of the slate means the session ended.
        assert np.all(fb["session_ended"][unseen.any(axis=1) & active])


def test_fast_skip_and_completion_are_exclusive(rollout):
    for t in rollout.steps:
        fb = _fb(rollout, t)
        assert not np.any(fb["fast_skip"] & fb["completed"]), f"step {t}"


def test_response_flags_agree_with_watch_ratio(rollout):
    cfg = rollout.env.config
    for t in rollout.steps:
        fb = _fb(rollout, t)
        seen, wr, skip, done = fb["seen"], fb["watch_ratio"], fb["fast_skip"], fb["completed"]
        # Completed: 1 + replays; fast skip: at most half the video; otherwise a partial
        # watch 0.02 + 0.97 * U^(1/a) in [0.02, 0.99].
        assert np.all(wr[done] >= 1.0 - 1e-6)
        assert np.all(wr[skip] <= 0.5 + 1e-6)
        partial = seen & ~skip & ~done
        assert np.all((wr[partial] >= 0.02 - 1e-6) & (wr[partial] <= 0.99 + 1e-6))
        # Watch time is the ratio times the duration; durations are the catalog's.
        assert np.allclose(fb["watch_time_s"], wr * fb["duration_s"] * seen, rtol=1e-4, atol=1e-4)
        dur = fb["duration_s"][rollout.active[t]]
        assert np.all((dur >= cfg.catalog.min_duration_s) & (dur <= cfg.catalog.max_duration_s))
        # Not-interested comes only with a fast skip; engagement only without one.
        assert not np.any(fb["not_interested"] & ~skip)
        for name in ("like", "share", "comment", "follow", "profile_visit"):
            assert not np.any(fb[name] & skip), f"step {t}: {name} on a fast skip"


def test_return_gap_exactly_where_a_session_ended_without_churn(rollout):
    min_gap = rollout.env.config.response.min_return_gap_h
    for t in rollout.steps:
        fb = _fb(rollout, t)
        back = fb["session_ended"] & ~fb["churned"]
        gap = fb["return_gap_h"]
        assert np.all(gap[back] > 0.0) and np.all(gap[back] >= np.float32(min_gap))
        assert np.all(gap[~back] == 0.0), f"step {t}"
        # A new active day is only opened by a return.
        assert np.all(back[fb["new_day_active"]])
        assert not np.any(fb["churned"] & ~fb["session_ended"])


# ---------------------------------------------------------------------------- termination
def test_churn_is_termination(rollout):
    for t in rollout.steps:
        active, term, trunc = rollout.active[t], rollout.terminated[t], rollout.truncated[t]
        churned = _fb(rollout, t)["churned"]
        np.testing.assert_array_equal(term[active], churned[active], err_msg=f"step {t}")
        assert not np.any(term[~active] | trunc[~active] | churned[~active])
        assert not np.any(term & trunc), f"step {t}"


def test_truncation_is_the_horizon(rollout):
    horizon_h = rollout.env.config.horizon_h
    for t in rollout.steps:
        active, term, trunc = rollout.active[t], rollout.terminated[t], rollout.truncated[t]
        hours = _fb(rollout, t)["hours_since_start"]
        # hours_since_start is the float32 copy of the float64 clock the env compares.
        assert np.all(hours[trunc] >= np.float32(horizon_h))
        going_on = active & ~term & ~trunc
        assert np.all(hours[going_on] <= np.float32(horizon_h)), f"step {t}"


def test_hours_since_start_never_decrease_within_an_episode(rollout):
    for t in rollout.steps:
        hours = _fb(rollout, t)["hours_since_start"]
        active = rollout.active[t]
        assert np.all(hours[active] >= 0.0)
        if t == 0:
            continue
        # The user of slot b is the same at t-1 and t iff both steps stepped the slot.
        same = active & rollout.active[t - 1]
        prev = _fb(rollout, t - 1)["hours_since_start"]
        assert np.all(hours[same] >= prev[same]), f"step {t}"


def test_sessions_and_active_days_count_up(rollout):
    for t in rollout.steps:
        fb, m, active = _fb(rollout, t), _metrics(rollout, t), rollout.active[t]
        if t == 0:
            prev_sessions, prev_days = np.zeros_like(m["sessions"]), np.ones_like(m["days_active"])
        else:
            # After an autoreset step the metrics already show the new user (0 sessions, day 1).
            prev_sessions, prev_days = _metrics(rollout, t - 1)["sessions"], _metrics(rollout, t - 1)["days_active"]
        np.testing.assert_array_equal(m["sessions"][active], (prev_sessions + fb["session_ended"])[active])
        np.testing.assert_array_equal(m["days_active"][active], (prev_days + fb["new_day_active"])[active])
        assert np.all(m["sessions"][~active] == 0) and np.all(m["days_active"][~active] == 1)
        assert np.all(fb["session_videos"][active] >= fb["seen"].sum(axis=1)[active])


def test_rewards_are_zero_for_autoreset_slots_and_sum_the_terms(rollout):
    for t in rollout.steps:
        reward, active = rollout.reward[t], rollout.active[t]
        assert reward.dtype == np.float32 and np.all(np.isfinite(reward))
        assert np.all(reward[~active] == 0.0)
        total = sum(v.astype(np.float64) for v in rollout.info[t][INFO_REWARD_TERMS].values())
        assert np.allclose(total, reward, atol=1e-5)


# ---------------------------------------------------------------------------- observations
def test_mask_is_binary_with_at_least_a_slate_of_valid_candidates(rollout):
    K = rollout.env.config.slate_size
    for t, obs in enumerate(rollout.obs):
        mask = obs["mask"]
        assert mask.dtype == np.int8
        assert np.all((mask == 0) | (mask == 1)), f"obs {t}"
        assert np.all(mask.sum(axis=1) >= K), f"obs {t}"


def test_padding_candidates_are_all_zero_and_unassigned(rollout):
    for t, obs in enumerate(rollout.obs):
        pad = obs["mask"] == 0
        assert np.all(obs["candidates"][pad] == 0.0), f"obs {t}"
        ids = rollout.item_ids[t]
        assert np.all(ids[pad] == -1) and np.all(ids[~pad] >= 0)
        assert np.all(ids < rollout.env.config.catalog.n_items)


def test_observations_are_finite(rollout):
    for t, obs in enumerate(rollout.obs):
        assert np.all(np.isfinite(obs["user"])) and np.all(np.isfinite(obs["candidates"])), f"obs {t}"
        assert rollout.env.observation_space.contains(obs)


def test_valid_candidates_are_distinct_within_a_row(rollout):
    for t, ids in enumerate(rollout.item_ids):
        for b in range(ids.shape[0]):
            row = ids[b][ids[b] >= 0]
            assert len(np.unique(row)) == len(row), f"obs {t}, user {b}: repeated candidates"


def test_candidate_source_feature_matches_retrieval(rollout, candidate_sources):
    cfg = rollout.env.config
    for t, obs in enumerate(rollout.obs):
        valid = obs["mask"] == 1
        decoded = candidate_sources(cfg, obs["candidates"], obs["mask"])
        np.testing.assert_array_equal(decoded[valid], rollout.source[t][valid], err_msg=f"obs {t}")
        assert np.all((rollout.source[t] >= 0) & (rollout.source[t] < N_SOURCES))


def test_recently_shown_videos_are_filtered_out(rollout):
    # Backfill may bring recently shown videos back as a last resort when a row cannot be
    # filled otherwise (documented in retrieval.py); no other source may.
    for t, ids in enumerate(rollout.item_ids):
        ring = rollout.seen_ring[t]
        # (B, N, S): candidate n of user b is the s-th entry of b's ring of shown videos.
        hit = ((ids[:, :, None] == ring[:, None, :]) & (ring[:, None, :] >= 0)).any(axis=2) & (ids >= 0)
        if rollout.name == "small":
            assert not hit.any(), f"obs {t}: users {np.flatnonzero(hit.any(axis=1))} got recently shown videos"
        else:
            assert np.all(rollout.source[t][hit] == SRC_BACKFILL), f"obs {t}"
