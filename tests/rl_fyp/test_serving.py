"""The serving runtime on JSON requests: raw records, named features, rules, backends, bad input."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from envs.feed_env import FeedVectorEnv
from rl_fyp.baselines import GreedyPolicy
from rl_fyp.policy import ModulePolicy
from rl_fyp.rules import BusinessRules
from rl_fyp.serving import RequestError, Reranker


@pytest.fixture(scope="module")
def live(small_export):
    """The exported model and a small world 12 requests in, so users have histories."""
    cfg, module, out = small_export
    env = FeedVectorEnv(num_envs=8, config=cfg.env)
    obs, _ = env.reset(seed=2)
    greedy = GreedyPolicy(env.config)
    for _ in range(12):
        obs, *_ = env.step(greedy(obs))
    rows = [b for b in range(8) if obs["mask"][b].all()]
    assert len(rows) >= 3
    return cfg, module, out, env, obs, rows


def test_raw_records_give_the_trained_policys_slate(live) -> None:
    cfg, module, out, env, obs, rows = live
    reranker = Reranker.load(out)
    expected = ModulePolicy(module)(obs)
    for b in rows:
        user, cands = env.sim.request_records(b)
        answer = reranker.rerank_request({"user": user, "candidates": cands})
        assert answer["slate"] == expected[b].tolist()
        # Candidate ids (catalog rows here) come back in slate order.
        assert answer["ids"] == obs_ids(env, b, expected[b])
        assert answer["model_version"] == reranker.model_version and answer["relaxed_rules"] == []
        # Without the ranker's scores the simulated ranker fills them in: the same slate.
        bare = [{k: v for k, v in c.items() if k != "ranker"} for c in cands]
        assert reranker.rerank_request({"user": user, "candidates": bare})["slate"] == expected[b].tolist()


def obs_ids(env: FeedVectorEnv, b: int, slate: np.ndarray) -> list[int]:
    return [int(i) for i in env.sim.obs.item_ids[b, slate]]


def test_feature_requests_by_position_and_by_name(live) -> None:
    _, _, out, _, obs, rows = live
    r = Reranker.load(out)
    b = rows[0]
    u, c = obs["user"][b], obs["candidates"][b]
    by_array = r.rerank_request({"user_features": u.tolist(), "candidate_features": c.tolist()})
    named_user = dict(zip(r.user_features, u.tolist()))
    perm = np.random.default_rng(0).permutation(len(r.candidate_features))
    named = {"names": [r.candidate_features[j] for j in perm], "values": c[:, perm].tolist()}
    by_name = r.rerank_request({"user_features": named_user, "candidate_features": named})
    assert by_name == by_array
    # The Python API takes {name: column} too.
    order, _ = r.rerank(named_user, {n: c[:, j] for j, n in enumerate(r.candidate_features)})
    assert order.tolist() == by_array["slate"]
    batch = r.rerank_request({"requests": [{"user_features": u.tolist(), "candidate_features": c.tolist(), "k": 2}] * 2})
    assert [x["slate"] for x in batch["results"]] == [by_array["slate"][:2]] * 2


def test_torchscript_backend_matches_onnxruntime(live) -> None:
    _, _, out, _, obs, _ = live
    a = Reranker.load(out).rerank(obs["user"], obs["candidates"], obs["mask"])
    b = Reranker.load(out, backend="torchscript").rerank(obs["user"], obs["candidates"], obs["mask"])
    np.testing.assert_array_equal(a[0], b[0])
    valid = obs["mask"] != 0
    np.testing.assert_allclose(a[1][valid], b[1][valid], atol=1e-5, rtol=1e-6)
    with pytest.raises(ValueError, match="backend must be one of"):
        Reranker.load(out, backend="tvm")


def test_rules_apply_after_the_policy(live) -> None:
    _, _, out, env, _, rows = live
    rules = BusinessRules(no_adjacent_creator=True, max_topic_share=0.5, exploration_slots=(3,))
    plain, ruled = Reranker.load(out), Reranker.load(out, rules=rules)
    for b in rows:
        user, cands = env.sim.request_records(b)
        req = {"user": user, "candidates": cands}
        got = ruled.rerank_request(req)
        creators = [cands[j]["creator"] for j in got["slate"]]
        topics = [cands[j]["topic"] for j in got["slate"]]
        k = len(got["slate"])
        if "no_adjacent_creator" not in got["relaxed_rules"]:
            assert all(x != y for x, y in zip(creators, creators[1:]))
        if "max_topic_share" not in got["relaxed_rules"]:
            assert max(topics.count(t) for t in topics) <= max(1, int(0.5 * k))
        if "exploration_slots" not in got["relaxed_rules"]:
            assert cands[got["slate"][3]]["source"] in (3, 5)  # fresh, explore
        # The rules only pick among what the policy would show next: the unruled slate's
        # first video leads unless the pinned slot is first.
        assert got["slate"][0] == plain.rerank_request(req)["slate"][0]
    # A feature request must then carry the metadata the rules need.
    user, c = env.sim.obs.user[rows[0]], env.sim.obs.candidates[rows[0]]
    with pytest.raises(RequestError, match="no_adjacent_creator rule needs the candidates' creator ids"):
        ruled.rerank_request({"user_features": user.tolist(), "candidate_features": c.tolist()})
    with pytest.raises(Exception, match="exploration_sources: unknown source"):
        Reranker.load(out, rules=BusinessRules(exploration_sources=("radio",)))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: r.pop("user"), "missing field 'user'"),
        (lambda r: r.update(extra=1), r"unknown request field\(s\) \['extra'\]"),
        (lambda r: r.update(k=99), r"k must be an integer in \[1, 4\], got 99"),
        (lambda r: r.update(k="2"), r"k must be an integer"),
        (lambda r: r["candidates"].__setitem__(slice(2, None), []), "2 candidates is fewer than the slate size 4"),
        (lambda r: r["candidates"][0].pop("embedding"), r"candidates\[0\]: missing field\(s\) \['embedding'\]"),
        (lambda r: r["user"].__setitem__("device", 42), r"user.device must be in"),
        (lambda r: r.__setitem__("candidates", {}), "'candidates' must be a list"),
    ],
)
def test_bad_raw_requests_name_the_problem(live, change, message: str) -> None:
    _, _, out, env, _, rows = live
    user, cands = env.sim.request_records(rows[0])
    req = copy.deepcopy({"user": user, "candidates": cands})
    change(req)
    with pytest.raises(RequestError, match=message):
        Reranker.load(out).rerank_request(req)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r, u, c: r.update(user_features={**dict(zip(u, r["user_features"])), "mood": 1.0}), r"unknown user feature\(s\) \['mood'\]"),
        (lambda r, u, c: r.update(user_features=dict(list(zip(u, r["user_features"]))[1:])), r"missing user feature\(s\) \['hour_sin'\]"),
        (lambda r, u, c: r.update(candidate_features={"names": c[1:], "values": [x[1:] for x in r["candidate_features"]]}), r"missing candidate feature\(s\) \['emb_0'\]"),
        (lambda r, u, c: r.update(candidate_features={"names": c, "rows": []}), "named candidate_features must be"),
        (lambda r, u, c: r["candidate_features"][3].__setitem__(0, float("nan")), "candidates features contain NaN or inf"),
        (lambda r, u, c: r["candidate_features"][3].pop(), "have ragged rows|features must be numeric"),
        (lambda r, u, c: r.update(mask=[1, 0]), r"mask must have shape \(40,\)"),
        (lambda r, u, c: r.update(candidate_ids=[1, 2]), "candidate_ids must list one id per candidate"),
        (lambda r, u, c: r.update(user_features="abc"), "features must be numeric"),
    ],
)
def test_bad_feature_requests_name_the_problem(live, change, message: str) -> None:
    _, _, out, _, obs, rows = live
    r = Reranker.load(out)
    req = {"user_features": obs["user"][rows[0]].tolist(), "candidate_features": obs["candidates"][rows[0]].tolist()}
    change(req, r.user_features, r.candidate_features)
    with pytest.raises(RequestError, match=message):
        r.rerank_request(req)


@pytest.mark.parametrize(
    "payload, message",
    [
        ([1, 2], "a request must be a JSON object, got list"),
        ({"requests": []}, "'requests' must be a non-empty list"),
        ({"requests": [{"user": {}}], "k": 1}, "a batch holds only 'requests'"),
        ({"requests": [{}, "x"]}, r"requests\[0\]: missing field 'user_features'"),
    ],
)
def test_bad_payloads(small_export, payload, message: str) -> None:
    with pytest.raises(RequestError, match=message):
        Reranker.load(small_export[2]).rerank_request(payload)


def test_the_exported_model_reproduces_the_trained_policys_ab_table(small_export, tmp_path) -> None:
    from rl_fyp.config import load_config
    from rl_fyp.evaluate import evaluate_policies
    from rl_fyp.jobs import evaluate_checkpoint

    cfg, module, out = small_export
    cfg = load_config(out / "config.yaml", ["eval.policies=[ppo, greedy]", "eval.tune_heuristics=false", "eval.n_users=48"])
    trained = evaluate_policies(cfg, tmp_path / "module", trained={"ppo": ModulePolicy(module)}, log=lambda _: None)
    exported, bars = evaluate_checkpoint(out, cfg=cfg, out_dir=tmp_path / "export", log=lambda _: None)
    assert exported == trained
    assert bars is not None and (tmp_path / "export" / "results.json").read_text() == (tmp_path / "module" / "results.json").read_text()


def test_an_exported_policy_with_rules_reads_creators_from_the_catalog(small_export) -> None:
    from rl_fyp.policy import ExportedPolicy

    cfg, _, out = small_export
    policy = ExportedPolicy(Reranker.load(out, rules=BusinessRules(no_adjacent_creator=True)))
    assert policy.needs_sim
    env = FeedVectorEnv(num_envs=16, config=cfg.env)
    obs, _ = env.reset(seed=4)
    for _ in range(3):
        slates = policy(obs, env.sim)
        creators = env.sim.catalog.creator[np.take_along_axis(env.sim.obs.item_ids, slates, axis=1)]
        assert (creators[:, 1:] != creators[:, :-1]).all()
        obs, *_ = env.step(slates)
