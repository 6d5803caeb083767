"""Tests for the ordered-slate distributions, against brute-force enumeration on small N, K."""

from __future__ import annotations

import itertools

import pytest
import torch

from rl_fyp.slate_distribution import MASKED_SCORE, SlateDeterministic, SlateDistribution, slate_distribution_cls

N, K, M = 5, 3, 3


@pytest.fixture(params=["pointwise", "sequential"])
def variant(request: pytest.FixtureRequest) -> str:
    return request.param


def make_inputs(seed: int = 0, scale: float = 1.0, beta_scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(2, N, generator=g) * scale
    scores[1, 4] = MASKED_SCORE  # row 1 has a masked candidate
    keys = torch.nn.functional.normalize(torch.randn(2, N, M, generator=g), dim=-1)
    beta = torch.tensor([0.7, 1.5]) * beta_scale
    return scores, keys, beta


def make_dist(variant: str, scale: float = 1.0, beta_scale: float = 1.0, repeat: int = 1) -> SlateDistribution:
    """The two test rows, each repeated ``repeat`` times (row r is test row r // repeat)."""
    scores, keys, beta = make_inputs(scale=scale, beta_scale=beta_scale)
    scores, keys, beta = (x.repeat_interleave(repeat, 0) for x in (scores, keys, beta))
    if variant == "pointwise":
        return slate_distribution_cls(K).from_logits(SlateDistribution.pack(scores))
    return slate_distribution_cls(K, M).from_logits(SlateDistribution.pack(scores, keys, beta))


PERMS = torch.tensor(list(itertools.permutations(range(N), K)))


def brute_logp(d: SlateDistribution) -> torch.Tensor:
    """(P, B) log-probability of every ordered slate."""
    return torch.stack([d.logp(p.expand(2, K)) for p in PERMS])


def reference_logp(scores: torch.Tensor, keys: torch.Tensor | None, beta: torch.Tensor | None, slate: list[int]) -> float:
    """Slot-by-slot softmax written out plainly for one row."""
    total, picked = 0.0, []
    for a in slate:
        s = scores.clone()
        if keys is not None and picked:
            sims = torch.stack([keys @ keys[p] for p in picked]).max(0).values
            s = s - beta * sims
        for p in picked:
            s[p] = -float("inf")
        total += float(torch.log_softmax(s, -1)[a])
        picked.append(a)
    return total


def test_probabilities_sum_to_one_and_masked_slates_have_zero_mass(variant: str) -> None:
    lp = brute_logp(make_dist(variant))
    assert torch.allclose(lp.exp().sum(0), torch.ones(2), atol=1e-5)
    has_masked = (PERMS == 4).any(1)
    assert lp[has_masked, 1].exp().max() < 1e-30


def test_logp_matches_a_plain_reference(variant: str) -> None:
    scores, keys, beta = make_inputs()
    d = make_dist(variant)
    for slate in ([0, 1, 2], [3, 0, 4], [2, 4, 1]):
        got = d.logp(torch.tensor([slate, slate]))
        for b in range(2):
            if b == 1 and 4 in slate:
                continue
            ref = reference_logp(
                scores[b], keys[b] if variant == "sequential" else None, beta[b] if variant == "sequential" else None, slate
            )
            assert got[b].item() == pytest.approx(ref, abs=1e-5)


def test_sampling_frequencies_match_the_probabilities(variant: str) -> None:
    torch.manual_seed(1)
    probs = brute_logp(make_dist(variant)).exp()  # (P, B)
    n = 20_000
    samples = make_dist(variant, repeat=n).sample().reshape(2, n, K)
    # Each ordered slate as one integer code, counted per row.
    codes = (samples * torch.tensor([N * N, N, 1])).sum(-1)
    perm_codes = (PERMS * torch.tensor([N * N, N, 1])).sum(-1)
    for b in range(2):
        counts = (codes[b][:, None] == perm_codes[None, :]).sum(0).float()
        assert counts.sum() == n  # every draw is a valid ordered slate of distinct items
        # 4.5 binomial standard deviations at most (n = 20k draws per row).
        sd = (probs[:, b] * (1 - probs[:, b]) / n).sqrt()
        assert ((counts / n - probs[:, b]).abs() <= 4.5 * sd + 1e-4).all()


def test_samples_are_distinct_and_never_masked(variant: str) -> None:
    torch.manual_seed(2)
    s = make_dist(variant, scale=5.0, repeat=500).sample()
    assert s.shape == (1000, K) and s.dtype == torch.int64
    srt = s.sort(-1).values
    assert (srt[:, 1:] != srt[:, :-1]).all()
    assert not (s[500:] == 4).any()


def test_entropy_estimate_is_unbiased(variant: str) -> None:
    torch.manual_seed(3)
    lp = brute_logp(make_dist(variant))
    exact = -(lp.exp() * lp).sum(0)
    # entropy() walks a fresh sample per row when no logp was taken.
    est = make_dist(variant, repeat=4000).entropy().reshape(2, 4000).mean(1)
    assert torch.allclose(est, exact, atol=0.03)


def test_entropy_after_logp_uses_that_slate() -> None:
    d = make_dist("sequential")
    slate = torch.tensor([[0, 1, 2], [2, 1, 0]])
    d.logp(slate)
    walk = d._walk(slate)
    assert torch.allclose(d.entropy(), -(walk.exp() * walk).sum((-1, -2)))


def test_kl_estimate_is_unbiased_and_zero_against_itself(variant: str) -> None:
    torch.manual_seed(4)
    p, q = make_dist(variant), make_dist(variant, scale=0.5, beta_scale=2.0)
    lp, lq = brute_logp(p), brute_logp(q)
    exact = (lp.exp() * (lp - lq)).sum(0)
    many_p = make_dist(variant, repeat=4000)
    many_q = make_dist(variant, scale=0.5, beta_scale=2.0, repeat=4000)
    est = many_p.kl(many_q).reshape(2, 4000).mean(1)
    assert torch.allclose(est, exact, atol=0.02)
    assert torch.allclose(p.kl(make_dist(variant)), torch.zeros(2), atol=1e-6)


def test_deterministic_is_the_mode_of_each_slot(variant: str) -> None:
    d = make_dist(variant)
    det = d.to_deterministic()
    assert isinstance(det, SlateDeterministic)
    s = det.sample()
    # Slot by slot, the pick is the argmax of that slot's conditional.
    walk = d._walk(s)
    assert torch.equal(walk.argmax(-1), s)
    assert det.logp(s).shape == (2,)
    if variant == "pointwise":
        assert torch.equal(s, torch.topk(d.scores, K).indices)


def test_logp_is_differentiable_in_scores_and_beta() -> None:
    scores, keys, beta = make_inputs()
    scores.requires_grad_(True)
    beta.requires_grad_(True)
    d = slate_distribution_cls(K, M).from_logits(SlateDistribution.pack(scores, keys, beta))
    d.logp(torch.tensor([[0, 1, 2], [1, 2, 3]])).sum().backward()
    assert scores.grad is not None and torch.isfinite(scores.grad).all() and scores.grad.abs().sum() > 0
    assert beta.grad is not None and beta.grad.abs().sum() > 0


def test_bad_packing_and_too_few_candidates_raise() -> None:
    with pytest.raises(ValueError, match="do not pack"):
        slate_distribution_cls(K, M).from_logits(torch.zeros(2, 18))
    with pytest.raises(ValueError, match="exceeds"):
        slate_distribution_cls(6).from_logits(torch.zeros(2, 5))


def test_required_input_dim() -> None:
    import gymnasium as gym

    space = gym.spaces.MultiDiscrete([N] * K)
    assert SlateDistribution.required_input_dim(space) == N
    assert SlateDistribution.required_input_dim(space, key_dim=M) == N * (1 + M) + 1
