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
