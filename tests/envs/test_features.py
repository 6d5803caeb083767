"""The one feature builder: raw records of a simulated request give back its observation.

``FeedSimulator.request_records`` writes a request as a production log would hold it
(context, history, the platform's estimate, candidates with their statistics and the
ranker's scores); :class:`envs.features.RecordFeatures` turns it into features with the
kernel the env's observations come from. Parity means no training / serving skew.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

from envs.features import (
    CANDIDATE_RECORD_FIELDS,
    RANKER_FIELDS,
    USER_RECORD_FIELDS,
    FeatureSpec,
    RecordError,
    RecordFeatures,
    candidate_feature_names,
    count_features,
    feature_schema,
    slow_features,
    user_feature_names,
)
from envs.feed_env import FeedVectorEnv

# Features are float32; two code paths may sum a history in another order or keep a
# statistic in float64 one step longer, a few float32 ulps at most.
ATOL = 2e-6
RTOL = 1e-6


@pytest.fixture(scope="module")
def stepped_env(small_config, greedy_slates) -> FeedVectorEnv:
    """16 users after 25 greedy requests: histories, follows, test-stage videos, sessions."""
    env = FeedVectorEnv(num_envs=16, config=small_config)
    obs, _ = env.reset(seed=11)
    for _ in range(25):
        obs, *_ = env.step(greedy_slates(obs, small_config.catalog.latent_dim, small_config.slate_size))
    return env


def _active(env: FeedVectorEnv) -> list[int]:
    return [b for b in range(env.num_envs) if env.sim.obs.mask[b].any()]


@pytest.mark.parametrize("with_ranker", [True, False])
def test_records_rebuild_the_observation(stepped_env: FeedVectorEnv, with_ranker: bool) -> None:
    env = stepped_env
    builder = RecordFeatures(FeatureSpec.from_env(env.config))
    obs = env.sim.obs
    rows = _active(env)
    assert len(rows) >= 8
    seen_history = seen_follows = False
    for b in rows:
        user, cands = env.sim.request_records(b, with_ranker=with_ranker)
        seen_history |= len(user["history"]) > 0
        seen_follows |= len(user["follows"]) > 0
        u, c, meta = builder.build([user], [cands])
        valid = np.flatnonzero(obs.mask[b])
        np.testing.assert_allclose(u[0], obs.user[b], atol=ATOL, rtol=RTOL)
        # Without the ranker's scores the builder runs the simulated ranker itself.
        np.testing.assert_allclose(c[0], obs.candidates[b, valid], atol=ATOL, rtol=RTOL)
        np.testing.assert_array_equal(meta["source"][0], obs.source[b, valid])
        np.testing.assert_array_equal(meta["topic"][0], env.sim.catalog.topic[obs.item_ids[b, valid]])
    assert seen_history and seen_follows, "the parity check must cover histories and follows"


def test_a_batch_of_records_matches_one_by_one(stepped_env: FeedVectorEnv) -> None:
    env = stepped_env
    builder = RecordFeatures(FeatureSpec.from_env(env.config))
    rows = [b for b in _active(env) if env.sim.obs.mask[b].all()][:4]
    recs = [env.sim.request_records(b) for b in rows]
    u, c, _ = builder.build([r[0] for r in recs], [r[1] for r in recs])
    for i, (user, cands) in enumerate(recs):
        u1, c1, _ = builder.build([user], [cands])
        np.testing.assert_array_equal(u[i], u1[0])
        np.testing.assert_array_equal(c[i], c1[0])


def test_creator_ids_of_any_type_match_follows(stepped_env: FeedVectorEnv) -> None:
    env = stepped_env
    builder = RecordFeatures(FeatureSpec.from_env(env.config))
    user, cands = env.sim.request_records(_active(env)[0])
    col = candidate_feature_names(env.config).index("follows_creator")
    # Follow the first candidate's creator, under a string id far beyond float32's exact range.
    user = {**user, "follows": [f"creator-{cands[0]['creator']}"]}
    cands = [{**c, "creator": f"creator-{c['creator']}"} for c in cands]
    _, c, meta = builder.build([user], [cands])
    same = np.array([x["creator"] == cands[0]["creator"] for x in cands])
    np.testing.assert_array_equal(c[0, :, col], same.astype(np.float32))
    assert len(np.unique(meta["creator"][0])) == len({x["creator"] for x in cands})


def test_the_catalog_keeps_its_table_with_the_shared_formulas(stepped_env: FeedVectorEnv) -> None:
    cat = stepped_env.sim.catalog
    d = stepped_env.config.catalog.latent_dim
    comp_logit, log_imp, rate, eng = count_features(cat.impressions, cat.completions, cat.engagements)
    np.testing.assert_allclose(cat.item_static[:, :3], np.stack([log_imp, rate, eng], 1), atol=ATOL, rtol=RTOL)
    np.testing.assert_allclose(cat.comp_logit, comp_logit, atol=1e-5, rtol=0)
    slow = slow_features(
        cat.item_static[:, 3], cat.feature_h - cat.upload_h, cat.creator_followers[cat.creator], cat.duration_s
    )
    np.testing.assert_allclose(cat.item_table[:, d + 3 : d + 8], np.stack(slow, 1), atol=ATOL, rtol=RTOL)


def test_count_features_closed_form() -> None:
    # An unseen video: rate 1.2 / 3.2 = 0.375, log-odds log(0.6), no impressions,
    # engagement 10 * 0.1 / 2 = 0.5.
    comp_logit, log_imp, rate, eng = count_features(0.0, 0.0, 0.0)
    assert rate == pytest.approx(0.375) and comp_logit == pytest.approx(np.log(0.6))
    assert log_imp == 0.0 and eng == pytest.approx(0.5)
    trend, age, fol, dur, replay = slow_features(0.2, np.e**8 - 1.0, 0.0, 60.0)
    assert (trend, age, fol) == (0.2, pytest.approx(1.0), 0.0)
    assert dur == pytest.approx(np.log(60.0) / 6.0) and replay == pytest.approx(0.3 * 0.5)


def test_schema_documents_every_feature(small_config) -> None:
    schema = feature_schema(small_config)
    assert [e["name"] for e in schema["user"]] == list(user_feature_names(small_config))
    assert [e["name"] for e in schema["candidates"]] == list(candidate_feature_names(small_config))
    assert all(e["meaning"] and e["normalisation"] for e in schema["user"] + schema["candidates"])
    spec = FeatureSpec.from_env(small_config)
    assert FeatureSpec.from_dict(spec.to_dict()) == spec


def _records(env: FeedVectorEnv) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    b = next(b for b in _active(env) if env.sim.request_records(b)[0]["history"])
    return env.sim.request_records(b)


def _set(path: str, value: Any):
    def mutate(user: dict, cands: list) -> None:
        head, *rest = path.split(".")
        target = user if head == "user" else cands[int(head[len("candidates["):-1])]
        for key in rest[:-1]:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if value is _DELETE:
            del target[rest[-1]]
        else:
            target[rest[-1]] = value

    return mutate


_DELETE = object()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (_set("user.local_hour", 24.0), r"user.local_hour must be < 24"),
        (_set("user.region", 99), r"user.region must be in \[0, "),
        (_set("user.region", 1.5), r"user.region must be an integer id"),
        (_set("user.sessions", 2.5), r"user.sessions must be a whole number"),
        (_set("user.embedding", [0.0, 1.0]), r"user.embedding must hold 16 numbers"),
        (_set("user.topic_preference", _DELETE), r"user: missing field\(s\) \['topic_preference'\]"),
        (_set("user.mood", 3), r"user: unknown field\(s\) \['mood'\]"),
        (_set("user.history.0.watch_ratio", float("nan")), r"user.history\[0\].watch_ratio must be finite"),
        (_set("user.history.0.like", 1), r"user.history\[0\].like must be true or false"),
        (_set("user.follows", "abc"), r"user.follows must be a list"),
        (_set("candidates[1].duration_s", 0.0), r"candidates\[1\].duration_s must be > 0"),
        (_set("candidates[2].completions", 1e9), r"candidates\[2\].completions .* must not exceed impressions"),
        (_set("candidates[0].source", "radio"), r"candidates\[0\].source: unknown source 'radio'"),
        (_set("candidates[0].topic", -1), r"candidates\[0\].topic must be in"),
        (_set("candidates[3].embedding", _DELETE), r"candidates\[3\]: missing field\(s\) \['embedding'\]"),
        (_set("candidates[0].ranker", _DELETE), r"candidates\[1\]: 'ranker' must be given for all candidates or none"),
        (_set("candidates[0].ranker", {"p_like": 0.1}), r"candidates\[0\].ranker must hold exactly"),
    ],
)
def test_malformed_records_name_the_field(stepped_env: FeedVectorEnv, mutate, message: str) -> None:
    user, cands = copy.deepcopy(_records(stepped_env))
    mutate(user, cands)
    with pytest.raises(RecordError, match=message):
        RecordFeatures(FeatureSpec.from_env(stepped_env.config)).build([user], [cands])


def test_record_fields_are_documented() -> None:
    assert {"ranker", "embedding", "source"} <= set(CANDIDATE_RECORD_FIELDS)
    assert all(f in CANDIDATE_RECORD_FIELDS["ranker"] for f in RANKER_FIELDS)
    assert {"history", "embedding", "local_hour"} <= set(USER_RECORD_FIELDS)
