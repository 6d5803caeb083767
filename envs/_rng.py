"""Counter-based random numbers inside numba kernels.

Each kernel call gets one 64-bit seed drawn from the env's ``numpy.random.Generator``;
user b's stream is seeded from (seed, b) with splitmix64 and advanced with xorshift64*.
Every user's draws are then independent of thread scheduling, so parallel kernels stay
deterministic, and no (B, K, draws) arrays of uniforms are materialised.
"""

from __future__ import annotations

import numba as nb
import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_MUL = np.uint64(0x2545F4914F6CDD1D)
_INV53 = 1.0 / 9007199254740992.0


@nb.njit(inline="always", cache=True)
def seed_stream(seed: np.uint64, b: np.int64) -> np.uint64:
    """splitmix64 of (seed, b): the initial state of user b's stream (never zero)."""
    z = seed + (np.uint64(b) + np.uint64(1)) * _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    z = z ^ (z >> np.uint64(31))
    if z == np.uint64(0):
        z = _GOLDEN
    return z


@nb.njit(inline="always", cache=True)
def uniform(s: np.uint64) -> tuple[np.uint64, float]:
    """xorshift64*: returns (next state, a float64 uniform in [0, 1))."""
    s ^= s >> np.uint64(12)
    s ^= s << np.uint64(25)
    s ^= s >> np.uint64(27)
    return s, float((s * _MUL) >> np.uint64(11)) * _INV53


@nb.njit(inline="always", cache=True)
def normal(s: np.uint64) -> tuple[np.uint64, float]:
    """Box-Muller: returns (next state, a standard normal draw)."""
    s, u1 = uniform(s)
    s, u2 = uniform(s)
    return s, np.sqrt(-2.0 * np.log(1.0 - u1)) * np.cos(6.283185307179586 * u2)


def draw_seed(rng: np.random.Generator) -> np.uint64:
    """One kernel seed from the env's generator."""
    return np.uint64(rng.integers(0, 2**63 - 1, dtype=np.int64))


_POW2 = np.ldexp(1.0, np.arange(-126, 128)).astype(np.float64)  # 2**k for k in [-126, 127]


@nb.njit(inline="always", cache=True, fastmath=True)
def fast_exp(x: float) -> float:
    """exp(x) to ~1e-7 relative error: 2**floor(t) from a table times a degree-6 polynomial of 2**frac(t).

    Scalar libm calls dominate the feature kernel otherwise; features are float32 anyway.
    """
    t = min(max(x, -87.0), 88.0) * 1.4426950408889634  # x * log2(e)
    k = np.floor(t)
    f = t - k
    p = 1.0 + f * (0.6931471805599453 + f * (0.2402265069591007 + f * (0.05550410866482158 + f * (
        0.009618129107628477 + f * (0.0013333558146428443 + f * 0.00015403530393381606)))))
    return p * _POW2[np.int64(k) + 126]
