"""Simulated impression logs: the data-driven world run over a window of days, logged like KuaiRand.

Every population user gets one slot and is simulated from a first session on day 0; after
``burn_in_days`` (so that sessions, gaps and the users' state no longer remember the
common start) the impressions of the next ``len(dates)`` local days are logged: user and
video ids, local day, time, play time, duration and every signal. The feed is the
platform's: the simulated funnel's candidates ranked by the ranker's value score (the
greedy baseline), as the real log came from Kuaishou's own ranker. The log then goes
through the same statistics as the real one (:mod:`envs.kuairand.stats`).

The **logging policy** stands for Kuaishou's ranker, which chose what the real users saw:
the top K of ``value score + logging_bias[video] + Gumbel noise`` (a Plackett-Luce draw).
The per-video bias comes from the world file, fitted by the calibration so that the
simulated exposure of each video follows the fit days' (the simulated ranker alone
favours short videos far more than Kuaishou's did); the noise stands for what the
ranker's features miss. The env never uses it: there the re-ranking policy decides.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from envs.config import EnvConfig
from envs.core import FeedSimulator
from envs.feed_env import make_env_config
from envs.kuairand.data import FeedLog
from envs.kuairand.stats import long_view_rule
from envs.kuairand.world import KuaiRandWorld
from envs.ranking import CAND_VALUE
from envs.response import F_COMMENT, F_FOLLOW, F_LIKE, F_NI, F_PROFILE, F_SHARE

__all__ = ["REPLICA_USER_OFFSET", "SimulatedLog", "platform_slates", "simulate_log", "simulate_replicas"]

REPLICA_USER_OFFSET = 1_000_000
"""Replica r of the population logs user ids + r * this (so the replicas' sessions stay apart)."""


@dataclass(frozen=True)
class SimulatedLog:
    """A simulated log and what the simulator knows beyond it (per impression, same order)."""

    log: FeedLog
    latent: np.ndarray
    """(n,) float64 the quantile model's latent draw (appeal + noise) of each impression."""
    bucket: np.ndarray
    """(n,) int32 the video's duration bucket."""
    steps: int
    """Batched simulator steps run."""


def platform_slates(candidates: np.ndarray, mask: np.ndarray, latent_dim: int, k: int,
                    bias: np.ndarray | None = None, rng: np.random.Generator | None = None) -> np.ndarray:
    """(B, K) the top-K valid candidates by value score (+ `bias` (B, N), + Gumbel noise from `rng`), best first."""
    value = candidates[..., latent_dim + CAND_VALUE].astype(np.float64)
    if bias is not None:
        value = value + bias
    if rng is not None:
        value = value - np.log(-np.log(rng.random(value.shape) * (1 - 1e-12) + 1e-12))
    value = np.where(mask != 0, value, -np.inf)
    top = np.argpartition(-value, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(value, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1).astype(np.int64)


def simulate_log(
    cfg: EnvConfig,
    world: KuaiRandWorld,
    dates: tuple[int, ...],
    *,
    seed: int,
    burn_in_days: int = 4,
    rows: np.ndarray | None = None,
    max_steps: int = 100_000,
) -> SimulatedLog:
    """Simulate population `rows` (default: everyone) and log the window `dates`.

    Args:
        cfg: the env config of the data-driven world (its horizon is replaced by
            ``burn_in_days + len(dates)`` days).
        world: the world (catalog, population, tables).
        dates: the window's days (yyyymmdd) the log is dated with, in order.
        seed: seeds the world build and the users.
        burn_in_days: whole days simulated before the window starts.
        rows: population rows to simulate, one slot each.
        max_steps: safety bound on batched steps.
    """
    if burn_in_days < 0:
        raise ValueError(f"burn_in_days must be >= 0, got {burn_in_days}")
    D = len(dates)
    cfg = make_env_config(cfg, {"horizon_days": float(burn_in_days + D)})
    rows = np.arange(world.n_users) if rows is None else np.asarray(rows, np.int64)
    B = len(rows)
    sim = FeedSimulator(cfg, B, world=world)
    sim.build_world(np.random.default_rng(seed))
    everyone = np.ones(B, np.bool_)
    sim.spawn(everyone, population_rows=rows)
    obs = sim.observe()
    cat, users = sim.catalog, sim.users
    d, K = cfg.catalog.latent_dim, cfg.slate_size
    user_ids = world.arrays["user_id"][rows].astype(np.int32)
    alive = everyone.copy()
    log_rng = np.random.default_rng([seed, 1])  # the logging policy's own stream
    log_bias = np.append(world.arrays["logging_bias"].astype(np.float64), 0.0)  # index -1 (padding) -> 0
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("slot", "item", "t_h", "time_s", "dur_s", "flags", "latent")}
    steps = 0
    while alive.any() and steps < max_steps:
        slates = platform_slates(obs.candidates, obs.mask, d, K, bias=log_bias[obs.item_ids], rng=log_rng)
        items = np.take_along_axis(obs.item_ids, slates, axis=1)
        clock = users.start_hour + users.clock_h  # local hours since day 0's midnight, before the step
        out = sim.step(slates, alive)
        steps += 1
        fb = out.feedback
        seen = fb.seen & alive[:, None]
        # Each video starts when the previous one of the slate ends.
        offset_s = np.cumsum(fb.watch_time_s, axis=1, dtype=np.float64) - fb.watch_time_s
        b_idx, k_idx = np.nonzero(seen)
        parts["slot"].append(b_idx.astype(np.int32))
        parts["item"].append(items[b_idx, k_idx].astype(np.int32))
        parts["t_h"].append(clock[b_idx] + offset_s[b_idx, k_idx] / 3600.0)
        parts["time_s"].append(fb.watch_time_s[b_idx, k_idx].astype(np.float64))
        parts["dur_s"].append(fb.duration_s[b_idx, k_idx].astype(np.float64))
        raw = sim.last_response
        parts["flags"].append(raw["flags"][b_idx, k_idx])
        parts["latent"].append(raw["latent"][b_idx, k_idx].astype(np.float64))
        alive &= ~(out.terminated | out.truncated)
        obs = sim.observe(alive)
    cols = {k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()}
    flags = cols["flags"].reshape(-1, raw["flags"].shape[-1]) if len(cols["slot"]) else np.zeros((0, 8), bool)
    day = np.floor(cols["t_h"] / 24.0).astype(np.int64) - burn_in_days
    keep = (day >= 0) & (day < D)
    item = cols["item"].astype(np.int64)[keep]
    play_ms = np.round(cols["time_s"][keep] * 1000.0).astype(np.int64)
    dur_ms = np.round(cols["dur_s"][keep] * 1000.0).astype(np.int64)
    f = flags[keep]
    log = FeedLog(
        user=user_ids[cols["slot"].astype(np.int64)[keep]],
        video=cat.video_id[item],
        date=np.asarray(dates, np.int32)[day[keep]],
        time_ms=np.round(cols["t_h"][keep] * 3.6e6).astype(np.int64),
        play_ms=play_ms,
        duration_ms=dur_ms,
        like=f[:, F_LIKE].copy(),
        follow=f[:, F_FOLLOW].copy(),
        comment=f[:, F_COMMENT].copy(),
        forward=f[:, F_SHARE].copy(),
        hate=f[:, F_NI].copy(),
        profile_enter=f[:, F_PROFILE].copy(),
        long_view=long_view_rule(play_ms, dur_ms),
        dates=tuple(int(x) for x in dates),
    )
    order = np.lexsort((log.time_ms, log.user))
    return SimulatedLog(log.select(order), cols["latent"][keep][order], cat.duration_bucket[item][order], steps)


def simulate_replicas(
    cfg: EnvConfig,
    world: KuaiRandWorld,
    dates: tuple[int, ...],
    *,
    seed: int,
    burn_in_days: int = 4,
    replicas: int = 1,
    rows: np.ndarray | None = None,
) -> SimulatedLog:
    """:func:`simulate_log` `replicas` times (seeds ``seed + 1000 r``), as one log.

    Replica r's user ids are offset by ``r * REPLICA_USER_OFFSET``: each replica is a
    separate draw of the same population, and the statistics treat it as other users.
    """
    if replicas < 1:
        raise ValueError(f"replicas must be >= 1, got {replicas}")
    runs = [simulate_log(cfg, world, dates, seed=seed + 1000 * r, burn_in_days=burn_in_days, rows=rows)
            for r in range(replicas)]
    if replicas == 1:
        return runs[0]
    from dataclasses import fields

    cols = {}
    for f in fields(FeedLog):
        if f.name == "dates":
            continue
        parts = [getattr(run.log, f.name) for run in runs]
        if f.name == "user":
            parts = [p.astype(np.int64) + r * REPLICA_USER_OFFSET for r, p in enumerate(parts)]
        cols[f.name] = np.concatenate(parts)
    log = FeedLog(**cols, dates=runs[0].log.dates)
    return SimulatedLog(
        log,
        np.concatenate([run.latent for run in runs]),
        np.concatenate([run.bucket for run in runs]),
        sum(run.steps for run in runs),
    )
