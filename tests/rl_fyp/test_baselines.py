"""Tests for rl_fyp.baselines: greedy and MMR re-rankers on hand-made and random batches."""

from __future__ import annotations

import numpy as np
import pytest

from envs.config import EnvConfig
from envs.feed_env import make_env_config
from envs.ranking import CAND_VALUE, candidate_feature_names
from rl_fyp.baselines import GreedyPolicy, MMRPolicy

D = 4  # latent_dim: the first D candidate columns are the content embedding
K = 3
N = 8


@pytest.fixture(scope="module")
def cfg() -> EnvConfig:
    return make_env_config(None, {"catalog.latent_dim": D, "slate_size": K, "retrieval.n_candidates": N})


def make_batch(cfg: EnvConfig, values: np.ndarray, mask: np.ndarray, emb: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """An observation batch whose only meaningful columns are the value score and the embedding."""
    B, n = values.shape
    F = len(candidate_feature_names(cfg))
    cand = np.zeros((B, n, F), np.float32)
    cand[..., D + CAND_VALUE] = values
    if emb is not None:
        cand[..., :D] = emb
    return {"user": np.zeros((B, 5), np.float32), "candidates": cand, "mask": mask.astype(np.int8)}


def unit_vectors_with_cosines(cosines: list[float]) -> np.ndarray:
    """(n, D) unit vectors whose cosine to the first vector e_0 = (1, 0, ...) is given."""
    c = np.asarray(cosines, np.float64)
    out = np.zeros((len(c), D))
    out[:, 0] = c
    out[:, 1] = np.sqrt(1.0 - c**2)
    return out.astype(np.float32)


def random_batch(cfg: EnvConfig, seed: int, B: int = 64) -> dict[str, np.ndarray]:
    gen = np.random.default_rng(seed)
    values = gen.normal(size=(B, N)).astype(np.float32)
    # Each row has between K and N valid candidates.
    n_valid = gen.integers(K, N + 1, size=B)
    keys = gen.random((B, N))
    rank = np.argsort(np.argsort(keys, axis=1), axis=1)
    mask = rank < n_valid[:, None]
    emb = gen.normal(size=(B, N, D))
    emb /= np.linalg.norm(emb, axis=-1, keepdims=True)
    return make_batch(cfg, values, mask, emb.astype(np.float32))


def test_greedy_returns_top_k_by_value_score(cfg: EnvConfig) -> None:
    values = np.array([
        [0.1, 0.9, 0.3, 0.8, 0.2, 0.7, 0.0, 0.4],
        [5.0, 4.0, 3.0, 2.0, 1.0, 0.5, 0.2, 0.1],
    ])
    mask = np.array([
        [1, 1, 1, 1, 1, 1, 1, 1],
        [0, 1, 0, 1, 1, 1, 1, 1],  # the two best are masked
    ])
    slates = GreedyPolicy(cfg)(make_batch(cfg, values, mask))
    # Row 0: values 0.9 (pos 1) > 0.8 (pos 3) > 0.7 (pos 5).
    # Row 1: best valid are 4.0 (pos 1) > 2.0 (pos 3) > 1.0 (pos 4).
    np.testing.assert_array_equal(slates, [[1, 3, 5], [1, 3, 4]])
    assert slates.dtype == np.int64


def test_mmr_with_lambda_one_is_greedy(cfg: EnvConfig) -> None:
    batch = random_batch(cfg, seed=0)
    np.testing.assert_array_equal(MMRPolicy(cfg, lam=1.0)(batch), GreedyPolicy(cfg)(batch))


def test_mmr_with_lambda_zero_picks_the_least_similar_second(cfg: EnvConfig) -> None:
    # With lam = 0 relevance is ignored, so every first pick ties; the second must be the
    # valid candidate least similar to the first. Cosines to candidate 0 are below: if
    # the tie goes to position 0, the answer is candidate 4 (-0.3), not the masked 3 (-0.8).
    cos = [1.0, 0.9, 0.5, -0.8, -0.3, 0.1, 0.7, 0.0]
    emb = unit_vectors_with_cosines(cos)
    values = np.array([[0.5, 3.0, 2.0, 9.0, 0.1, 0.2, 1.0, 0.3]])
    mask = np.array([[1, 1, 1, 0, 1, 1, 1, 1]])
    slates = MMRPolicy(cfg, lam=0.0)(make_batch(cfg, values, mask, emb[None]))
    first, second = slates[0, 0], slates[0, 1]
    assert mask[0, first]
    sim = emb.astype(np.float64) @ emb[first].astype(np.float64)
    sim[(mask[0] == 0) | (np.arange(N) == first)] = np.inf
    assert second == sim.argmin()
    if first == 0:
        assert second == 4


def test_mmr_with_lambda_zero_on_random_batches(cfg: EnvConfig) -> None:
    batch = random_batch(cfg, seed=1)
    slates = MMRPolicy(cfg, lam=0.0)(batch)
    emb = batch["candidates"][..., :D]
    rows = np.arange(len(slates))
    first = slates[:, 0]
    sim = np.einsum("bnd,bd->bn", emb, emb[rows, first])
    sim = np.where(batch["mask"] != 0, sim, np.inf)
    sim[rows, first] = np.inf
    np.testing.assert_array_equal(slates[:, 1], sim.argmin(axis=1))


@pytest.mark.parametrize("policy", ["greedy", "mmr0", "mmr0.3", "mmr0.5", "mmr1"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_slates_are_k_distinct_valid_positions(cfg: EnvConfig, policy: str, seed: int) -> None:
    batch = random_batch(cfg, seed=seed)
    pol = GreedyPolicy(cfg) if policy == "greedy" else MMRPolicy(cfg, lam=float(policy[3:]))
    slates = pol(batch)
    B = batch["mask"].shape[0]
    assert slates.shape == (B, K)
    assert slates.dtype == np.int64
    assert np.all((slates >= 0) & (slates < N))
    assert np.all(np.take_along_axis(batch["mask"], slates, axis=1) != 0), "picked a masked candidate"
    s = np.sort(slates, axis=1)
    assert np.all(s[:, 1:] != s[:, :-1]), "repeated a candidate"


@pytest.mark.parametrize("lam", [-0.1, 1.1, 2.0])
def test_mmr_rejects_lambda_outside_unit_interval(cfg: EnvConfig, lam: float) -> None:
    with pytest.raises(ValueError, match="lambda"):
        MMRPolicy(cfg, lam=lam)


# ---------------------------------------------------------------------------- explore
def explore_batch(cfg: EnvConfig, rng: np.random.Generator, B: int = 64):
    """Random valid batch with value, estimated affinity and topic preference filled in."""
    from envs.ranking import cand_index

    values = rng.random((B, N))
    mask = np.ones((B, N), np.int8)
    mask[:, -1] = rng.random(B) < 0.5
    obs = make_batch(cfg, values, mask)
    obs["candidates"][..., cand_index(cfg, "estimated_affinity")] = rng.normal(size=(B, N))
    obs["candidates"][..., cand_index(cfg, "topic_preference")] = np.where(rng.random((B, N)) < 0.5, 0.0, 0.5)
    return obs


def test_explore_with_zero_share_is_greedy(cfg):
    from rl_fyp.baselines import ExplorePolicy

    obs = explore_batch(cfg, np.random.default_rng(0))
    np.testing.assert_array_equal(ExplorePolicy(cfg, share=0.0)(obs), GreedyPolicy(cfg)(obs))


def test_explore_slots_come_from_outside_the_estimated_interests(cfg):
    from envs.ranking import cand_index
    from rl_fyp.baselines import ExplorePolicy

    rng = np.random.default_rng(1)
    obs = explore_batch(cfg, rng, B=400)
    cand, mask = obs["candidates"], obs["mask"] != 0
    aff_col, topic_col = cand_index(cfg, "estimated_affinity"), cand_index(cfg, "topic_preference")
    med = np.nanmedian(np.where(mask, cand[..., aff_col], np.nan), axis=1, keepdims=True)
    outside = mask & (cand[..., aff_col] < med) & (cand[..., topic_col] < 0.05)
    # Outside candidates are worth less than any inside one: greedy never picks them, so
    # every outside pick of the explore policy is an exploration pick.
    cand[..., D + CAND_VALUE] = np.where(outside, -1.0, 1.0) * cand[..., D + CAND_VALUE] + np.where(outside, 0, 2)
    keep = outside.sum(axis=1) >= 1  # rows without any fall back to the low-affinity half
    assert keep.mean() > 0.8
    obs = {k: v[keep] for k, v in obs.items()}
    mask, outside = mask[keep], outside[keep]
    pol = ExplorePolicy(cfg, share=1.0 / K, seed=3)  # exactly one exploration slot per slate
    slates = pol(obs)
    greedy = GreedyPolicy(cfg)(obs)
    rows = np.arange(len(slates))[:, None]
    assert all(len(set(s)) == K for s in slates)
    assert np.all(mask[rows, slates])
    picked_outside = outside[rows, slates]
    np.testing.assert_array_equal(picked_outside.sum(axis=1), 1)
    # The other slots are greedy's top K - 1 in greedy's order.
    for s, g, e in zip(slates, greedy, picked_outside):
        assert [p for p, x in zip(s, e) if not x] == list(g[: K - 1])
    # Exploration takes every slot position, not only the last.
    assert len(set(np.argmax(picked_outside, axis=1))) == K


def test_explore_is_deterministic_for_a_seed_and_rejects_bad_share(cfg):
    from rl_fyp.baselines import ExplorePolicy

    obs = explore_batch(cfg, np.random.default_rng(2))
    a = ExplorePolicy(cfg, share=0.3, seed=5)(obs)
    b = ExplorePolicy(cfg, share=0.3, seed=5)(obs)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="share"):
        ExplorePolicy(cfg, share=1.5)


def test_masked_median_matches_numpy_on_valid_entries():
    from rl_fyp.baselines import masked_median

    rng = np.random.default_rng(4)
    x = rng.normal(size=(50, 9))
    mask = rng.random((50, 9)) < 0.7
    mask[0] = False
    got = masked_median(x, mask)[:, 0]
    assert got[0] == 0.0
    for b in range(1, 50):
        if mask[b].any():
            assert got[b] == pytest.approx(np.median(x[b][mask[b]]))


# ---------------------------------------------------------------------------- on real observations
from rl_fyp.config import BASELINE_NAMES, Config, load_config  # noqa: E402


@pytest.fixture(scope="module")
def small() -> Config:
    return load_config("small")


@pytest.fixture(scope="module")
def live(small: Config):
    """A simulator a few steps in, and its observation with a third of the users inactive
    (their rows are fully masked, as run_cohort presents finished users)."""
    from envs.core import FeedSimulator

    sim = FeedSimulator(small.env, 48)
    sim.build_world(np.random.default_rng(3))
    alive = np.ones(48, np.bool_)
    sim.spawn(alive)
    obs = sim.observe()
    greedy = GreedyPolicy(small.env)
    for _ in range(3):
        sim.step(greedy(obs.as_dict()), alive)
        obs = sim.observe(alive)
    alive[::3] = False
    obs = sim.observe(alive)
    assert (obs.mask[alive].sum(axis=1) >= small.env.slate_size).all()
    assert (obs.mask[~alive] == 0).all()
    return sim, obs, alive


def _call(policy, obs, sim):
    from rl_fyp.baselines import needs_sim

    return policy(obs.as_dict(), sim) if needs_sim(policy) else policy(obs.as_dict())


@pytest.mark.parametrize("name", BASELINE_NAMES)
def test_every_baseline_gives_valid_slates_on_real_observations(small: Config, live, name: str) -> None:
    from envs.feed_env import validate_slates
    from rl_fyp.baselines import make_policy

    sim, obs, alive = live
    policy = make_policy(name, small)
    assert policy.name == name
    slates = _call(policy, obs, sim)
    K, N = small.env.slate_size, small.env.retrieval.n_candidates
    assert slates.shape == (48, K) and slates.dtype == np.int64
    assert np.all((slates >= 0) & (slates < N))
    s = np.sort(slates, axis=1)
    assert np.all(s[:, 1:] != s[:, :-1]), "repeated a candidate (masked rows included)"
    validate_slates(slates, obs.mask, K, rows=alive)  # raises on a masked pick
    assert np.all(np.take_along_axis(obs.mask, slates, axis=1)[alive] != 0)


def test_random_policy_is_seeded_and_uniform_over_valid_candidates(cfg: EnvConfig) -> None:
    from rl_fyp.baselines import RandomPolicy

    batch = random_batch(cfg, seed=7, B=64)
    a = RandomPolicy(cfg, seed=1)(batch)
    np.testing.assert_array_equal(a, RandomPolicy(cfg, seed=1)(batch))
    assert not np.array_equal(a, RandomPolicy(cfg, seed=2)(batch))
    # One row with 5 valid candidates, drawn 4000 times: each appears in a slate of K = 3
    # with probability 3 / 5, and each valid candidate leads the slate 1 / 5 of the time.
    mask = np.array([[1, 0, 1, 1, 0, 1, 1, 0]] * 4000)
    obs = make_batch(cfg, np.zeros((4000, N)), mask)
    slates = RandomPolicy(cfg, seed=0)(obs)
    assert np.all(mask[np.arange(4000)[:, None], slates] == 1)
    counts = np.bincount(slates.ravel(), minlength=N) / 4000
    np.testing.assert_allclose(counts[mask[0] == 1], 0.6, atol=0.04)
    lead = np.bincount(slates[:, 0], minlength=N) / 4000
    np.testing.assert_allclose(lead[mask[0] == 1], 0.2, atol=0.03)


def _true_appeal(sim, item_ids: np.ndarray) -> np.ndarray:
    """(B, N) the response model's appeal at slot 0 (envs/response.py), in plain numpy."""
    r, cat, u = sim.cfg.response, sim.catalog, sim.users
    rows = np.maximum(item_ids, 0)
    v = cat.true_vec[rows].astype(np.float64)
    cos = np.einsum("bnd,bmd->bnm", v, u.interest_vec) + u.interest_off[:, None, :]
    topic = cat.topic[rows]
    dt = np.maximum(u.clock_h - u.decay_clock_h, 0.0)
    fatigue = u.fatigue * np.exp(-dt / sim.cfg.user.fatigue_decay_h)[:, None]
    followed = (cat.creator[rows][..., None] == u.follows[:, None, :]).any(axis=2)
    return (
        r.affinity_weight * cos.max(axis=2) + r.session_weight * np.einsum("bnd,bd->bn", v, u.session_vec)
        + r.quality_weight * (cat.quality[rows] - 0.5) + r.trend_weight * cat.sound_level[cat.sound[rows]]
        + r.creator_follow_bonus * followed
        - r.fatigue_weight * np.take_along_axis(fatigue, topic, axis=1)
        - r.avoidance_weight * np.take_along_axis(u.avoid, topic, axis=1) + r.appeal_bias
    )


def test_oracle_reads_the_true_appeal(small: Config, live) -> None:
    from rl_fyp.baselines import OraclePolicy

    sim, obs, alive = live
    appeal = np.where(obs.mask != 0, _true_appeal(sim, obs.item_ids), -np.inf)
    # Myopic (no boredom, no breadth): slot by slot the best true appeal, where each pick
    # adds fatigue_per_view to its topic's fatigue for the later slots (the position term
    # is the same for every candidate of a slot).
    myopic = OraclePolicy(small.env, breadth_weight=0.0, boredom=False)(obs.as_dict(), sim)
    topic = sim.catalog.topic[np.maximum(obs.item_ids, 0)]
    step = small.env.response.fatigue_weight * small.env.user.fatigue_per_view
    for b in np.flatnonzero(alive):
        score, views = appeal[b].copy(), np.zeros(small.env.catalog.n_topics)
        for k in range(small.env.slate_size):
            pick = int(np.argmax(score - step * views[topic[b]]))
            assert myopic[b, k] == pick, (b, k)
            score[pick] = -np.inf
            views[topic[b, pick]] += 1
    # The full oracle still leads with a video whose appeal is near the best.
    full = OraclePolicy(small.env)(obs.as_dict(), sim)
    rows = np.flatnonzero(alive)
    best = appeal[rows].max(axis=1)
    assert np.mean(appeal[rows, full[rows, 0]] >= best - 0.5) > 0.8
    # Repetition costs satisfaction: the full oracle's slates mix topics at least as much.
    topics = sim.catalog.topic[np.take_along_axis(obs.item_ids, full, axis=1)][rows]
    topics_myopic = sim.catalog.topic[np.take_along_axis(obs.item_ids, myopic, axis=1)][rows]
    n_topics = [len(set(t)) for t in topics]
    n_topics_myopic = [len(set(t)) for t in topics_myopic]
    assert np.mean(n_topics) >= np.mean(n_topics_myopic)


def test_oracle_needs_the_matching_simulator(small: Config, live) -> None:
    from rl_fyp.baselines import OraclePolicy, needs_sim

    sim, obs, _ = live
    oracle = OraclePolicy(small.env)
    assert needs_sim(oracle) and not needs_sim(GreedyPolicy(small.env))
    short = {k: v[:5] for k, v in obs.as_dict().items()}
    with pytest.raises(ValueError, match="simulator"):
        oracle(short, sim)
    with pytest.raises(ValueError, match="breadth_weight"):
        OraclePolicy(small.env, breadth_weight=-1.0)


@pytest.mark.slow
def test_oracle_beats_greedy_on_days_active_and_watch_time(small: Config) -> None:
    from envs.cohort import run_cohort
    from rl_fyp.baselines import OraclePolicy

    # 100 users over the small world's 3 days; greedy keeps about 2.3 active days and the
    # oracle about 2.8 (standard errors about 0.06).
    greedy = run_cohort(small.env, GreedyPolicy(small.env), 100, seed=11)
    oracle = run_cohort(small.env, OraclePolicy(small.env), 100, seed=11, policy_needs_sim=True)
    g, o = greedy.per_user, oracle.per_user
    assert o["days_active"].mean() > g["days_active"].mean() + 0.2
    assert o["watch_time_s"].mean() > 1.5 * g["watch_time_s"].mean()


def test_make_policy_by_name(small: Config) -> None:
    from rl_fyp.baselines import ExplorePolicy, OraclePolicy, RandomPolicy, make_policy, policy_seed

    assert isinstance(make_policy("greedy", small), GreedyPolicy)
    mmr = make_policy("mmr", load_config("small", ["eval.mmr_lambda=0.25"]))
    assert isinstance(mmr, MMRPolicy) and mmr.lam == 0.25
    assert make_policy("mmr", small, mmr_lambda=0.7).lam == 0.7
    explore = make_policy("explore", small, explore_share=0.3)
    assert isinstance(explore, ExplorePolicy) and explore.share == 0.3
    assert make_policy("explore", small).share == small.eval.explore_share
    assert isinstance(make_policy("random", small), RandomPolicy)
    assert isinstance(make_policy("oracle", small), OraclePolicy)
    # Seeded from the run seed, one stream per policy name.
    assert policy_seed(0, "random") == policy_seed(0, "random") != policy_seed(0, "explore")
    assert policy_seed(0, "random") != policy_seed(1, "random")
    with pytest.raises(ValueError, match="unknown policy"):
        make_policy("ppo", small)
