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
small per-user hash set (cache-resident at any catalog size), padded to N and masked. No step
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
def _insert(table, item):
    """Insert `item` into an open-addressing set (-1 = empty); False if it was there already."""
    mask = table.shape[0] - 1
    h = (np.uint32(item) * np.uint32(2654435761)) >> np.uint32(8)  # Knuth's multiplicative hash
    slot = np.int64(h) & mask
    while True:
        v = table[slot]
        if v == item:
            return False
        if v < 0:
            table[slot] = item
            return True
        slot = (slot + 1) & mask


@nb.njit(inline="always", cache=True)
def _add(b, item, src, n, cand, cand_src, seen_set):
    """Append `item` to user b's list unless already in it or filtered; returns the new count."""
    if not _insert(seen_set, item):
        return n
    cand[b, n] = item
    cand_src[b, n] = src
    return n + 1


@nb.njit(inline="always", cache=True)
def _sample_list(pool, want_stage, quota, src, b, n, s, stage, cand, cand_src, seen_set):
    """Add up to `quota` random entries of `pool` whose stage is `want_stage` (3 * quota tries)."""
    lim = n + quota
    P = pool.shape[0]
    for _ in range(3 * quota):
        if n >= lim:
            break
        s, u = uniform(s)
        it = pool[int(u * P)]
        if it >= 0 and stage[it] == want_stage:
            n = _add(b, it, src, n, cand, cand_src, seen_set)
    return n, s


@nb.njit(parallel=True, fastmath=True, cache=True)
def _retrieve_kernel(
    seed, quotas, n_probe, topic_weight,
    u_hat, p_hat, region, engaged, engaged_ptr, follows, seen, active,
    cluster_centroid, cluster_topic, cluster_top, cluster_top_emb, stage, item_creator, i2i,
    trending, fresh_pool, creator_recent, backfill,
    n_chunks, cand, cand_src, valid,
):
    B, N = cand.shape
    G, d = cluster_centroid.shape
    L = cluster_top.shape[1]
    E = engaged.shape[1]
    Fo = follows.shape[1]
    S = seen.shape[1]
    n_items = stage.shape[0]
    per = (B + n_chunks - 1) // n_chunks
    # A per-user hash set of the videos listed or filtered so far: a few KB, stays in L1.
    set_size = 1
    while set_size < 2 * (N + S):
        set_size *= 2
    for chunk in nb.prange(n_chunks):
        probe = np.empty(n_probe, np.int64)
        cscore = np.empty(G, np.float64)
        scores = np.empty(L, np.float32)
        order = np.empty(L, np.int64)
        seen_set = np.empty(set_size, np.int32)
        u_loc = np.empty(d, np.float32)
        for b in range(chunk * per, min(B, (chunk + 1) * per)):
            if not active[b]:
                continue
            s = seed_stream(seed, b)
            seen_set[:] = -1
            # Recently shown videos are filtered out.
            for j in range(S):
                if seen[b, j] >= 0:
                    _insert(seen_set, seen[b, j])
            n = 0
            # 1. Embedding neighbours, two-level: clusters, then videos.
            for j in range(d):
                u_loc[j] = u_hat[b, j]
            salt = np.uint32(seed_stream(seed, b) >> np.uint64(32))
            for g in range(G):
                acc = topic_weight * p_hat[b, cluster_topic[g]]
                for j in range(d):
                    acc += u_loc[j] * cluster_centroid[g, j]
                # Hash noise breaks ties for users the platform knows nothing about.
                h = (np.uint32(g) * np.uint32(2654435761)) ^ salt
                cscore[g] = acc + 0.02 * (np.float64(h & np.uint32(0xFFFF)) / 65536.0)
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
                    acc = 0.0
                    for j in range(d):
                        acc += u_loc[j] * cluster_top_emb[g, w, j]
                    scores[w] = acc
                # Insertion sort of the W scores, best first (W is small: no library sort).
                for w in range(W):
                    order[w] = w
                for w in range(1, W):
                    key = scores[w]
                    kw = order[w]
                    v = w - 1
                    while v >= 0 and scores[v] < key:
                        scores[v + 1] = scores[v]
                        order[v + 1] = order[v]
                        v -= 1
                    scores[v + 1] = key
                    order[v + 1] = kw
                taken_c = 0
                for w in range(W):
                    if taken_c >= q or n >= quotas[SRC_EMBEDDING]:
                        break
                    it = cluster_top[g, order[w]]
                    if it >= 0 and stage[it] == STAGE_GRADUATED:
                        n = _add(b, it, SRC_EMBEDDING, n, cand, cand_src, seen_set)
                        taken_c += 1
            # 2. Co-engagement neighbours of recently engaged videos (newest first).
            lim = n + quotas[SRC_I2I]
            for e in range(min(E, engaged_ptr[b])):
                src_item = engaged[b, (engaged_ptr[b] - 1 - e) % E]
                for k in range(i2i.shape[1]):
                    if n >= lim:
                        break
                    it = i2i[src_item, k]
                    if stage[it] == STAGE_GRADUATED:
                        n = _add(b, it, SRC_I2I, n, cand, cand_src, seen_set)
            # 3. Trending in the user's region.
            n, s = _sample_list(trending[region[b]], STAGE_GRADUATED, quotas[SRC_TRENDING], SRC_TRENDING,
                                b, n, s, stage, cand, cand_src, seen_set)
            # 4. Fresh uploads in their test stage.
            n, s = _sample_list(fresh_pool, STAGE_TEST, quotas[SRC_FRESH], SRC_FRESH,
                                b, n, s, stage, cand, cand_src, seen_set)
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
                        n = _add(b, it, SRC_FOLLOWED, n, cand, cand_src, seen_set)
            # 6. Exploration: anywhere in the catalog.
            lim = n + quotas[SRC_EXPLORE]
            for t in range(3 * quotas[SRC_EXPLORE]):
                if n >= lim:
                    break
                s, u = uniform(s)
                it = int(u * n_items)
                if stage[it] == STAGE_GRADUATED:
                    n = _add(b, it, SRC_EXPLORE, n, cand, cand_src, seen_set)
            # 7. Backfill up to N: deeper into the probed clusters, then the global list.
            for c in range(n_probe):
                g = probe[c]
                for w in range(L):
                    if n >= N:
                        break
                    it = cluster_top[g, w]
                    if it >= 0 and stage[it] == STAGE_GRADUATED:
                        n = _add(b, it, SRC_EMBEDDING, n, cand, cand_src, seen_set)
            for w in range(backfill.shape[0]):
                if n >= N:
                    break
                it = backfill[w]  # rows may have been replaced by uploads since the refresh
                if stage[it] == STAGE_GRADUATED:
                    n = _add(b, it, SRC_BACKFILL, n, cand, cand_src, seen_set)
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
        self.n_chunks = max(1, nb.config.NUMBA_NUM_THREADS)
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
        _retrieve_kernel(
            seed, self.quotas, self.n_probe, self.topic_weight,
            u.u_hat, u.p_hat, u.region, u.engaged, u.engaged_ptr, u.follows, u.seen, active,
            c.cluster_centroid, c.niche_topic, c.cluster_top, c.cluster_top_emb, c.stage, c.creator, c.i2i,
            c.trending, c.fresh_pool, c.creator_recent, c.backfill,
            self.n_chunks, cand, src, valid,
        )
        return cand, src, valid
