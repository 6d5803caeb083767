"""Multi-path candidate retrieval: the stages a feed runs before re-ranking.

Sources, in merge priority (each tagged on its candidates):

- ``SRC_EMBEDDING``: nearest neighbours of the platform's ESTIMATE of the user (never the
  hidden state), two-level: the best clusters by <u_hat, centroid> + topic preference,
  then the best videos of each probed cluster's index list by <u_hat, embedding>.
- ``SRC_I2I``: co-engagement neighbours of the user's recently engaged videos.
- ``SRC_TRENDING``: the user's region's trending list.
- ``SRC_FRESH``: fresh uploads in their test stage (graduated exposure).
- ``SRC_FOLLOWED``: the latest uploads of creators the user follows (followers are part
  of a fresh video's first audience, so test-stage videos come through here too).
- ``SRC_EXPLORE``: random videos from the whole catalog.
- ``SRC_BACKFILL``: globally good videos that pad short lists.

Candidates are de-duplicated and filtered against the user's recently shown videos with a
per-thread stamp array (one int64 per catalog row), padded to N and masked. No step
scores the whole catalog: 1M items cost the same per user as 10k.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from envs._rng import seed_stream, uniform
from envs.catalog import STAGE_GRADUATED, STAGE_SUPPRESSED, STAGE_TEST

__all__ = ["SOURCE_NAMES", "Retriever", "N_SOURCES"]

SRC_EMBEDDING, SRC_I2I, SRC_TRENDING, SRC_FRESH, SRC_FOLLOWED, SRC_EXPLORE, SRC_BACKFILL = range(7)
SOURCE_NAMES = ("embedding", "i2i", "trending", "fresh", "followed", "explore", "backfill")
N_SOURCES = len(SOURCE_NAMES)


@nb.njit(inline="always", cache=True)
def _add(b, item, src, n, cand, cand_src, stamps, chunk, mark):
    """Append `item` to user b's list unless already stamped; returns the new count."""
    if stamps[chunk, item] == mark:
        return n
    stamps[chunk, item] = mark
    cand[b, n] = item
    cand_src[b, n] = src
    return n + 1


@nb.njit(parallel=True, fastmath=True, cache=True)
def _retrieve_kernel(
    seed, mark_base, quotas, n_probe, topic_weight,
    u_hat, p_hat, region, engaged, engaged_ptr, follows, seen, active,
    cluster_centroid, cluster_topic, cluster_top, emb, stage, item_creator, i2i,
    trending, fresh_pool, creator_recent, backfill,
    stamps, cand, cand_src, valid,
):
    B, N = cand.shape
    G, d = cluster_centroid.shape
    L = cluster_top.shape[1]
    E = engaged.shape[1]
    Fo = follows.shape[1]
    S = seen.shape[1]
    n_items = emb.shape[0]
    n_chunks = stamps.shape[0]
    per = (B + n_chunks - 1) // n_chunks
    for chunk in nb.prange(n_chunks):
        probe = np.empty(n_probe, np.int64)
        cscore = np.empty(G, np.float64)
        scores = np.empty(L, np.float32)
        used = np.zeros(L, np.bool_)
        for b in range(chunk * per, min(B, (chunk + 1) * per)):
            if not active[b]:
                continue
            s = seed_stream(seed, b)
            mark = mark_base + b + 1
            # Recently shown videos are filtered out.
            for j in range(S):
                if seen[b, j] >= 0:
                    stamps[chunk, seen[b, j]] = mark
            n = 0
            # 1. Embedding neighbours, two-level: clusters, then videos.
            for g in range(G):
                acc = topic_weight * p_hat[b, cluster_topic[g]]
                for j in range(d):
                    acc += u_hat[b, j] * cluster_centroid[g, j]
                s, u = uniform(s)
                cscore[g] = acc + 0.02 * u  # breaks ties for users the platform knows nothing about
            for c in range(n_probe):
                bg = 0
                best = -1e30
                for g in range(G):
                    if cscore[g] > best:
                        best = cscore[g]
                        bg = g
                cscore[bg] = -1e30
                probe[c] = bg
            q = (quotas[SRC_EMBEDDING] + n_probe - 1) // n_probe
            for c in range(n_probe):
                g = probe[c]
                W = min(L, 2 * q)
                for w in range(W):
                    it = cluster_top[g, w]
                    used[w] = it < 0
                    if it >= 0:
                        acc = 0.0
                        for j in range(d):
                            acc += u_hat[b, j] * emb[it, j]
                        scores[w] = acc
                for r in range(q):
                    if n >= quotas[SRC_EMBEDDING]:
                        break
                    bw = -1
                    bs = -1e30
                    for w in range(W):
                        if not used[w] and scores[w] > bs:
                            bs = scores[w]
                            bw = w
                    if bw < 0:
                        break
                    used[bw] = True
                    it = cluster_top[g, bw]
                    if stage[it] == STAGE_GRADUATED:
                        n = _add(b, it, SRC_EMBEDDING, n, cand, cand_src, stamps, chunk, mark)
            # 2. Co-engagement neighbours of recently engaged videos (newest first).
            lim = n + quotas[SRC_I2I]
            for e in range(min(E, engaged_ptr[b])):
                src_item = engaged[b, (engaged_ptr[b] - 1 - e) % E]
                for k in range(i2i.shape[1]):
                    if n >= lim:
                        break
                    it = i2i[src_item, k]
                    if stage[it] == STAGE_GRADUATED:
                        n = _add(b, it, SRC_I2I, n, cand, cand_src, stamps, chunk, mark)
            # 3. Trending in the user's region.
            lim = n + quotas[SRC_TRENDING]
            Lt = trending.shape[1]
            for t in range(3 * quotas[SRC_TRENDING]):
                if n >= lim:
                    break
                s, u = uniform(s)
                it = trending[region[b], int(u * Lt)]
                if it >= 0 and stage[it] == STAGE_GRADUATED:
                    n = _add(b, it, SRC_TRENDING, n, cand, cand_src, stamps, chunk, mark)
            # 4. Fresh uploads in their test stage.
            lim = n + quotas[SRC_FRESH]
            P = fresh_pool.shape[0]
            for t in range(3 * quotas[SRC_FRESH]):
                if n >= lim:
                    break
                s, u = uniform(s)
                it = fresh_pool[int(u * P)]
                if it >= 0 and stage[it] == STAGE_TEST:
                    n = _add(b, it, SRC_FRESH, n, cand, cand_src, stamps, chunk, mark)
            # 5. Followed creators' latest uploads (newest follows first).
            lim = n + quotas[SRC_FOLLOWED]
            for f in range(Fo):
                cr = follows[b, Fo - 1 - f]
                if cr < 0:
                    continue
                for k in range(creator_recent.shape[1]):
                    if n >= lim:
                        break
                    it = creator_recent[cr, k]
                    if it >= 0 and item_creator[it] == cr and stage[it] != STAGE_SUPPRESSED:
                        n = _add(b, it, SRC_FOLLOWED, n, cand, cand_src, stamps, chunk, mark)
            # 6. Exploration: anywhere in the catalog.
            lim = n + quotas[SRC_EXPLORE]
            for t in range(3 * quotas[SRC_EXPLORE]):
                if n >= lim:
                    break
                s, u = uniform(s)
                it = int(u * n_items)
                if stage[it] == STAGE_GRADUATED:
                    n = _add(b, it, SRC_EXPLORE, n, cand, cand_src, stamps, chunk, mark)
            # 7. Backfill up to N: deeper into the probed clusters, then the global list.
            for c in range(n_probe):
                g = probe[c]
                for w in range(L):
                    if n >= N:
                        break
                    it = cluster_top[g, w]
                    if it >= 0 and stage[it] == STAGE_GRADUATED:
                        n = _add(b, it, SRC_EMBEDDING, n, cand, cand_src, stamps, chunk, mark)
            for w in range(backfill.shape[0]):
                if n >= N:
                    break
                it = backfill[w]  # rows may have been replaced by uploads since the refresh
                if stage[it] == STAGE_GRADUATED:
                    n = _add(b, it, SRC_BACKFILL, n, cand, cand_src, stamps, chunk, mark)
            # Never fewer than a slate: shown-recently videos may come back as a last resort.
            if n < N:
                for w in range(backfill.shape[0]):
                    if n >= N:
                        break
                    it = backfill[w]
                    if stage[it] != STAGE_GRADUATED:
                        continue
                    dup = False
                    for j in range(n):
                        if cand[b, j] == it:
                            dup = True
                            break
                    if not dup:
                        cand[b, n] = it
                        cand_src[b, n] = SRC_BACKFILL
                        n += 1
            for j in range(N):
                valid[b, j] = j < n
                if j >= n:
                    cand[b, j] = -1
                    cand_src[b, j] = SRC_BACKFILL


class Retriever:
    """Builds the N candidates of every user of a simulator from its catalog and users."""

    def __init__(self, sim) -> None:
        cfg = sim.cfg.retrieval
        N = cfg.n_candidates
        shares = (
            cfg.embedding_share, cfg.i2i_share, cfg.trending_share,
            cfg.fresh_share, cfg.followed_share, cfg.explore_share, 0.0,
        )
        self.quotas = np.array([int(s * N) for s in shares], np.int64)
        self.n_probe = min(cfg.n_probe_clusters, sim.cfg.catalog.n_niches)
        self.topic_weight = np.float32(sim.cfg.ranker.topic_weight)
        self.n_candidates = N
        n_chunks = max(1, nb.config.NUMBA_NUM_THREADS)
        self._stamps = np.full((n_chunks, sim.cfg.catalog.n_items), -1, np.int64)
        self._calls = 0
        self._sim = sim

    def retrieve(self, active: np.ndarray, seed: np.uint64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Candidates of the active users.

        Returns:
            cand (B, N) int32 catalog rows (-1 in padding), src (B, N) int8 source ids,
            valid (B, N) bool.
        """
        sim = self._sim
        c, u = sim.catalog, sim.users
        B, N = u.n_slots, self.n_candidates
        cand = np.full((B, N), -1, np.int32)
        src = np.full((B, N), SRC_BACKFILL, np.int8)
        valid = np.zeros((B, N), np.bool_)
        mark_base = np.int64(self._calls) * np.int64(B + 1)
        self._calls += 1
        _retrieve_kernel(
            seed, mark_base, self.quotas, self.n_probe, self.topic_weight,
            u.u_hat, u.p_hat, u.region, u.engaged, u.engaged_ptr, u.follows, u.seen, active,
            c.cluster_centroid, c.niche_topic, c.cluster_top, c.emb, c.stage, c.creator, c.i2i,
            c.trending, c.fresh_pool, c.creator_recent, c.backfill,
            self._stamps, cand, src, valid,
        )
        return cand, src, valid
