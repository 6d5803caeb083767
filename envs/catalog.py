"""The video catalog: true content, the platform's view of it, creators, sounds, uploads.

Content is generated from hierarchical latent topics: topic centroid -> niche centroid
-> creator style -> video vector (all unit vectors in ``latent_dim``). The platform
never sees true vectors: it sees a noisy content embedding, and counts impressions and
responses in its own statistics.

Videos are numbered so that every niche is one contiguous block of rows. A niche is also
a retrieval cluster, so the two-level index (cluster, then the best videos of it) reads
contiguous memory. New uploads replace the oldest video of their niche, which keeps the
blocks fixed while the catalog turns over. Time here is the world (platform) clock,
shared by all users of a batch; users keep clocks of their own.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from envs.config import CatalogConfig
from envs.features import count_features, count_features_nb, slow_features

__all__ = [
    "Catalog", "ITEM_STATIC_NAMES", "N_ENGAGEMENT_OFFSETS", "STAGE_GRADUATED", "STAGE_SUPPRESSED", "STAGE_TEST",
]

#: Columns of ``Catalog.item_static``: per-video features the observation copies as they are
#: (the first seven), plus the replay factor the ranker uses.
ITEM_STATIC_NAMES = (
    "log_impressions", "completion_rate", "engagement_rate", "trend_level",
    "log_age_h", "log_creator_followers", "log_duration_s", "replay_factor",
)

#: Engagement signals with a per-video (and per-user) log-odds offset in the response model:
#: like, share, comment, follow, profile visit, not-interested (envs.response.ENGAGEMENT_OFFSETS).
N_ENGAGEMENT_OFFSETS = 6

#: Fresh video in its test stage: only the fresh source and its creator's followers see it.
STAGE_TEST = 0
#: Video in the wide pools (retrieval index, trending).
STAGE_GRADUATED = 1
#: Fresh video that failed its test: no source serves it again.
STAGE_SUPPRESSED = 2


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-8)


def _noise(rng: np.random.Generator, shape: tuple[int, ...], scale: float) -> np.ndarray:
    # Per-dimension scale 1/sqrt(d): `scale` is the noise norm relative to a unit vector.
    return rng.standard_normal(shape) * (scale / np.sqrt(shape[-1]))


def _rank_within(keys: np.ndarray) -> np.ndarray:
    """For each entry, how many earlier entries share its key (0, 1, ...), in input order."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    rank = np.empty(len(keys), np.int64)
    rank[order] = np.arange(len(keys)) - np.searchsorted(sorted_keys, sorted_keys, side="left")
    return rank


def population_completion(quality: np.ndarray, duration_s: np.ndarray) -> np.ndarray:
    """Completion probability of a video over the whole user population (background traffic).

    Args:
        quality: (n,) in [0, 1].
        duration_s: (n,) seconds.

    Returns:
        (n,) probability: better and shorter videos are completed more often.
    """
    logit = -0.3 + 2.5 * (quality - 0.5) - 0.8 * np.log(duration_s / 15.0)
    return 1.0 / (1.0 + np.exp(-logit))


class Catalog:
    """Catalog arrays (one row per video slot) and the world-clock processes that change them.

    Attributes (n = n_items, G = niches, C = creators, S = sounds, d = latent_dim):
        true_vec: (n, d) float32 hidden content vector.
        emb: (n, d) float32 the platform's content embedding (noisy view of true_vec).
        topic, niche: (n,) int32.
        duration_s, quality: (n,) float32.
        creator, sound, region: (n,) int32.
        upload_h: (n,) float64 world time of upload.
        stage: (n,) int8 STAGE_*.
        impressions, completions, engagements: (n,) float32 platform statistics.
        comp_logit: (n,) float32 smoothed observed completion log-odds.
        item_table: (n, W) float32 packed per-video row read by the observation kernel:
            embedding | ITEM_STATIC_NAMES | comp_logit | topic | creator (see col_*).
        niche_start: (G + 1,) int64 first row of each niche block.
        cluster_centroid: (G, d) float32 platform-side centroid of each cluster (niche).
        cluster_top: (G, L) int32 best graduated videos per cluster, -1 padded.
        cluster_top_emb: (G, L, d) float32 their embeddings as of the last refresh (the
            index's own copy, contiguous for scoring, like a periodically rebuilt ANN index).
        trending: (R, Lt) int32 trending list per region.
        fresh_pool: (P,) int32 videos in their test stage, -1 where empty.
        creator_followers: (C,) float32; creator_recent: (C, Lc) int32 latest uploads.
        i2i: (n, k) int32 co-engagement neighbours.
        sound_level: (S,) float32 trend level in [0, 1].
        feature_h: (n,) float64 world time of each row's last slow-feature update (the
            age, trend and creator columns are as of then, like a feature store's snapshot).
        duration_bucket: (n,) int32 the video's row of the quantile watch-ratio tables (a
            data-driven world only; 0 here).
        eng_offset: (n, 6) float32 engagement log-odds offsets (a data-driven world only; 0 here).

    The data-driven catalog (``envs.kuairand.world.KuaiRandCatalog``) fills the same arrays
    from real videos and shares the table, index and statistics code below.
    """

    def __init__(self, cfg: CatalogConfig, rng: np.random.Generator) -> None:
        self.cfg = cfg
        self.now_h = 0.0
        n, d, T, G = cfg.n_items, cfg.latent_dim, cfg.n_topics, cfg.n_niches
        f32 = np.float32

        # Latent hierarchy: topics -> niches.
        self.topic_centroid = _unit(rng.standard_normal((T, d))).astype(f32)
        self.niche_topic = np.repeat(np.arange(T, dtype=np.int32), cfg.niches_per_topic)
        self.niche_centroid = _unit(
            self.topic_centroid[self.niche_topic] + _noise(rng, (G, d), cfg.niche_spread)
        ).astype(f32)
        self.niche_share = rng.dirichlet(np.full(G, cfg.niche_popularity_concentration))
        sizes = 4 + rng.multinomial(n - 4 * G, self.niche_share)
        self.niche_start = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.niche = np.repeat(np.arange(G, dtype=np.int32), sizes)
        self.topic = self.niche_topic[self.niche]
        self.niche_median_s = cfg.duration_median_s * np.exp(
            cfg.duration_niche_sigma * rng.standard_normal(G)
        )

        # Creators: a style near their niche, a power-law audience, an origin region.
        per_niche = np.maximum(1, sizes // cfg.items_per_creator)
        self.creator_start = np.concatenate([[0], np.cumsum(per_niche)]).astype(np.int64)
        C = int(self.creator_start[-1])
        self.creator_niche = np.repeat(np.arange(G, dtype=np.int32), per_niche)
        self.creator_style = _unit(
            self.niche_centroid[self.creator_niche] + _noise(rng, (C, d), cfg.creator_spread)
        ).astype(f32)
        u = rng.random(C)
        self.creator_followers = np.minimum(
            cfg.creator_follower_min * (1.0 - u) ** (-1.0 / cfg.creator_follower_alpha), 1e8
        ).astype(f32)
        self.creator_quality = rng.beta(cfg.quality_alpha, cfg.quality_beta, C).astype(f32)
        self.creator_region = rng.integers(0, cfg.n_regions, C).astype(np.int32)
        # Sounds: Zipf-like usage; trends start at random world times.
        self.sound_weight = 1.0 / np.arange(1, cfg.n_sounds + 1) ** 0.9
        self.sound_weight /= self.sound_weight.sum()
        self.sound_trend_start_h = np.full(cfg.n_sounds, -np.inf)
        n_trending = rng.binomial(cfg.n_sounds, min(1.0, cfg.trend_start_per_h * 3 * cfg.trend_rise_h))
        idx = rng.choice(cfg.n_sounds, n_trending, replace=False)
        self.sound_trend_start_h[idx] = -rng.random(n_trending) * 3 * cfg.trend_rise_h
        self.sound_level = np.zeros(cfg.n_sounds, f32)

        # Videos.
        self.true_vec = np.empty((n, d), f32)
        self.emb = np.empty((n, d), f32)
        self.duration_s = np.empty(n, f32)
        self.quality = np.empty(n, f32)
        self.creator = np.empty(n, np.int32)
        self.sound = np.empty(n, np.int32)
        self.region = np.empty(n, np.int32)
        self.upload_h = np.empty(n, np.float64)
        self.stage = np.full(n, STAGE_GRADUATED, np.int8)
        self.impressions = np.zeros(n, f32)
        self.completions = np.zeros(n, f32)
        self.engagements = np.zeros(n, f32)
        rows = np.arange(n)
        self._fill(rows, self.niche, rng)
        self.upload_h[:] = -rng.random(n) * cfg.catalog_age_h
        # Within each niche block, rows run from oldest to newest: the replacement pointer
        # then walks the block in order and always finds the oldest video.
        order = np.lexsort((self.upload_h, self.niche))
        for name in ("true_vec", "emb", "duration_s", "quality", "creator", "sound", "region", "upload_h"):
            setattr(self, name, getattr(self, name)[order])
        self._init_tables()
        # Statistics the platform already has about the existing catalog.
        age = -self.upload_h
        reach = (30.0 + np.sqrt(self.creator_followers[self.creator])) * np.minimum(1.0, age / 24.0 + 0.05)
        self.impressions[:] = rng.poisson(reach)
        self.completions[:] = rng.binomial(
            self.impressions.astype(np.int64), population_completion(self.quality, self.duration_s)
        )
        self.engagements[:] = rng.binomial(self.completions.astype(np.int64), 0.08)
        self._update_comp_logit(rows)
        self._init_creator_recent()

        # Co-engagement neighbours: videos watched by the same people, i.e. the same true niche.
        k = cfg.i2i_neighbours
        start = self.niche_start[self.niche]
        size = (self.niche_start[self.niche + 1] - start)[:, None]
        self.i2i = (start[:, None] + (rng.random((n, k)) * size).astype(np.int64)).astype(np.int32)
        self._init_index()

    def _init_tables(self) -> None:
        """The packed per-video table and the response model's per-video extras, from the video arrays."""
        n, d, f32 = len(self.duration_s), self.cfg.latent_dim, np.float32
        # Everything the observation reads per video sits in one row of `item_table`, so
        # featurising a candidate costs one gather of adjacent cache lines instead of one
        # miss per array. `emb`, `item_static` and `comp_logit` are views into it.
        self.item_table = np.zeros((n, self.table_width), f32)
        self.feature_h = np.zeros(n, np.float64)  # world hour of each row's last slow-feature update
        self.item_table[:, :d] = self.emb
        self.emb = self.item_table[:, :d]
        self.item_static = self.item_table[:, d : d + len(ITEM_STATIC_NAMES)]
        self.comp_logit = self.item_table[:, self.col_comp_logit]
        self.item_table[:, self.col_topic] = self.topic
        self.item_table[:, self.col_creator] = self.creator
        self.niche_ptr = self.niche_start[:-1].copy()
        # Read by the response model only in a data-driven world (zero / unused here): the
        # video's duration bucket of the quantile watch-ratio model, and its engagement
        # log-odds offsets (envs.response.ENGAGEMENT_OFFSETS order).
        self.duration_bucket = np.zeros(n, np.int32)
        self.eng_offset = np.zeros((n, N_ENGAGEMENT_OFFSETS), f32)

    def _init_creator_recent(self) -> None:
        """Each creator's latest uploads (newest last), from `creator` and `upload_h`."""
        C, Lc = self.n_creators, self.cfg.creator_recent_len
        self.creator_recent = np.full((C, Lc), -1, np.int32)
        self.creator_recent_ptr = np.zeros(C, np.int64)
        by_creator = np.lexsort((self.upload_h, self.creator))
        counts = np.bincount(self.creator, minlength=C)
        ends = np.cumsum(counts)
        for j in range(Lc):
            pos = ends - 1 - j
            ok = pos >= ends - counts
            self.creator_recent[ok, Lc - 1 - j] = by_creator[pos[ok]]

    def _init_index(self) -> None:
        """The fresh pool (test stage), the retrieval index, the trending lists and the backfill."""
        cfg, G, d, f32 = self.cfg, self.cfg.n_niches, self.cfg.latent_dim, np.float32
        self.fresh_pool = np.full(cfg.fresh_pool_size, -1, np.int32)
        self.fresh_ptr = 0
        self.cluster_centroid = np.empty((G, d), f32)
        self.cluster_top = np.full((G, cfg.cluster_top_len), -1, np.int32)
        self.cluster_top_emb = np.zeros((G, cfg.cluster_top_len, d), f32)
        self.trending = np.full((cfg.n_regions, cfg.trending_len), -1, np.int32)
        self.backfill = np.empty(0, np.int32)
        self._next_refresh_h = 0.0
        self.refresh_index()

    # ------------------------------------------------------------------ generation
    def _fill(self, rows: np.ndarray, niches: np.ndarray, rng: np.random.Generator) -> None:
        """Generate new videos in `rows`, one per entry of `niches`."""
        cfg, d, m = self.cfg, self.cfg.latent_dim, len(rows)
        lo = self.creator_start[niches]
        hi = self.creator_start[niches + 1]
        creators = (lo + (rng.random(m) * (hi - lo)).astype(np.int64)).astype(np.int32)
        self.creator[rows] = creators
        if hasattr(self, "item_table"):
            self.item_table[rows, self.col_creator] = creators
        true = _unit(self.creator_style[creators] + _noise(rng, (m, d), cfg.item_spread))
        self.true_vec[rows] = true
        self.emb[rows] = _unit(true + _noise(rng, (m, d), cfg.embedding_noise))
        dur = self.niche_median_s[niches] * np.exp(cfg.duration_sigma * rng.standard_normal(m))
        self.duration_s[rows] = np.clip(dur, cfg.min_duration_s, cfg.max_duration_s)
        q = 0.6 * self.creator_quality[creators] + 0.4 * rng.beta(cfg.quality_alpha, cfg.quality_beta, m)
        self.quality[rows] = q
        self.sound[rows] = rng.choice(cfg.n_sounds, m, p=self.sound_weight)
        self.region[rows] = self.creator_region[creators]

    def _update_comp_logit(self, rows: np.ndarray) -> None:
        st = self.item_static
        self.comp_logit[rows], st[rows, 0], st[rows, 1], st[rows, 2] = count_features(
            self.impressions[rows], self.completions[rows], self.engagements[rows]
        )

    def _update_static(self, rows: np.ndarray | slice) -> None:
        """Recompute the slowly changing per-video features (trend, age, creator, duration)."""
        self.feature_h[rows] = self.now_h
        cols = slow_features(
            self.sound_level[self.sound[rows]], self.now_h - self.upload_h[rows],
            self.creator_followers[self.creator[rows]], self.duration_s[rows],
        )
        for j, col in enumerate(cols):
            self.item_static[rows, 3 + j] = col

    # ------------------------------------------------------------------ world clock
    def advance(self, dt_h: float, rng: np.random.Generator) -> None:
        """Let `dt_h` world hours pass: uploads, test-stage traffic and decisions, trends, index."""
        cfg = self.cfg
        self.now_h += dt_h
        n_new = int(rng.poisson(cfg.uploads_per_h * dt_h))
        if n_new:
            self.upload(rng.choice(cfg.n_niches, n_new, p=self.niche_share), rng)
        self._test_stage_traffic(dt_h, rng)
        n_start = int(rng.poisson(cfg.n_sounds * cfg.trend_start_per_h * dt_h))
        if n_start:
            idx = rng.integers(0, cfg.n_sounds, n_start)
            self.sound_trend_start_h[idx] = self.now_h
        if self.now_h >= self._next_refresh_h:
            self.refresh_index()

    def upload(self, niches: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Upload one new video into each niche of `niches`, replacing the niche's oldest.

        Returns:
            (m,) rows of the new videos.
        """
        niches = np.asarray(niches, np.int64)
        m = len(niches)
        # Successive uploads into one niche take successive slots of its block.
        start = self.niche_start[niches]
        size = self.niche_start[niches + 1] - start
        rows = start + (self.niche_ptr[niches] - start + _rank_within(niches)) % size
        counts = np.bincount(niches, minlength=self.cfg.n_niches)
        lo, width = self.niche_start[:-1], np.diff(self.niche_start)
        self.niche_ptr[:] = lo + (self.niche_ptr - lo + counts) % width
        # The fresh pool is a ring: a video still untested when it falls out is suppressed.
        P = len(self.fresh_pool)
        slots = (self.fresh_ptr + np.arange(m)) % P
        old = self.fresh_pool[slots]
        old = old[(old >= 0) & ~np.isin(old, rows)]
        self.stage[old[self.stage[old] == STAGE_TEST]] = STAGE_SUPPRESSED
        self._fill(rows, niches, rng)
        self.upload_h[rows] = self.now_h
        self.stage[rows] = STAGE_TEST
        self.impressions[rows] = 0.0
        self.completions[rows] = 0.0
        self.engagements[rows] = 0.0
        self._update_comp_logit(rows)
        self._update_static(rows)
        if m > P:  # more uploads than pool slots: the first ones fall out at once, untested
            self.stage[rows[: m - P]] = STAGE_SUPPRESSED
        self.fresh_pool[slots[-P:]] = rows[-P:]
        self.fresh_ptr += m
        # Each creator's ring of latest uploads.
        creators = self.creator[rows]
        Lc = self.cfg.creator_recent_len
        pos = (self.creator_recent_ptr[creators] + _rank_within(creators)) % Lc
        self.creator_recent[creators, pos] = rows
        np.add.at(self.creator_recent_ptr, creators, 1)
        return rows.astype(np.int64)

    def _test_stage_traffic(self, dt_h: float, rng: np.random.Generator) -> None:
        pool = self.fresh_pool[self.fresh_pool >= 0]
        pool = pool[self.stage[pool] == STAGE_TEST]
        if len(pool) == 0:
            return
        # The rest of the platform's users: a small audience for every test-stage video.
        imp = rng.poisson(self.cfg.background_impressions_per_h * dt_h, len(pool))
        comp = rng.binomial(imp, population_completion(self.quality[pool], self.duration_s[pool]))
        self.impressions[pool] += imp
        self.completions[pool] += comp
        self._update_comp_logit(pool)  # the features follow the counts, as after any impression
        self.judge_tests(pool)

    def judge_tests(self, rows: np.ndarray) -> None:
        """Graduate or suppress test-stage videos in `rows` that reached their test audience."""
        rows = rows[(self.stage[rows] == STAGE_TEST) & (self.impressions[rows] >= self.cfg.test_audience)]
        if len(rows) == 0:
            return
        rate = self.completions[rows] / self.impressions[rows]
        passed = rate >= self.cfg.graduation_completion_rate
        self.stage[rows] = np.where(passed, STAGE_GRADUATED, STAGE_SUPPRESSED).astype(np.int8)
        self._update_comp_logit(rows)

    def refresh_index(self) -> None:
        """Rebuild the cluster index, the trending lists and the sound trend levels."""
        cfg = self.cfg
        self._next_refresh_h = self.now_h + cfg.index_refresh_h
        x = (self.now_h - self.sound_trend_start_h) / cfg.trend_rise_h
        with np.errstate(invalid="ignore", over="ignore"):
            level = np.where(x > 0, x * np.exp(1.0 - x), 0.0)
        self.sound_level[:] = np.nan_to_num(level)
        self._update_static(slice(None))  # trend levels and ages as of this refresh
        live = (self.stage == STAGE_GRADUATED) & (self.upload_h <= self.now_h)
        # Platform quality estimate: observed completion odds plus engagement rate.
        eng = (self.engagements + 0.1) / (self.impressions + 2.0)
        score = self.comp_logit + 4.0 * eng
        score = np.where(live, score, -np.inf).astype(np.float32)
        G, L = cfg.n_niches, cfg.cluster_top_len
        for g in range(G):
            lo, hi = int(self.niche_start[g]), int(self.niche_start[g + 1])
            block = score[lo:hi]
            m = min(L, hi - lo)
            top = np.argpartition(-block, m - 1)[:m] if m < hi - lo else np.arange(hi - lo)
            top = top[np.argsort(-block[top], kind="stable")]
            top = top[np.isfinite(block[top])]
            self.cluster_top[g] = -1
            self.cluster_top[g, : len(top)] = lo + top
            self.cluster_top_emb[g] = 0.0
            self.cluster_top_emb[g, : len(top)] = self.emb[lo + top]
            self.cluster_centroid[g] = _unit(self.emb[lo:hi].mean(axis=0))
        # Trending: trending sound, engagement rate, recency; a boost at home.
        age_h = np.maximum(self.now_h - self.upload_h, 0.0)
        trend = 1.5 * self.sound_level[self.sound] + 6.0 * eng + np.exp(-age_h / 72.0)
        trend = np.where(live, trend, -np.inf).astype(np.float32)
        Lt = min(cfg.trending_len, len(trend))
        shortlist = np.argpartition(-trend, min(len(trend) - 1, 4 * Lt))[: 4 * Lt]
        for r in range(cfg.n_regions):
            s = trend[shortlist] + 0.5 * (self.region[shortlist] == r)
            best = shortlist[np.argsort(-s, kind="stable")[:Lt]]
            self.trending[r] = np.where(np.isfinite(trend[best]), best, -1)
        # Backfill: globally best videos, to pad short candidate lists.
        k = min(4 * cfg.trending_len, len(score) - 1)
        best = np.argpartition(-score, k)[:k]
        self.backfill = best[np.isfinite(score[best])].astype(np.int32)

    # ------------------------------------------------------------------ layout of item_table
    @property
    def col_comp_logit(self) -> int:
        """Column of the completion log-odds in `item_table`."""
        return self.cfg.latent_dim + len(ITEM_STATIC_NAMES)

    @property
    def col_topic(self) -> int:
        """Column of the topic id (as float32) in `item_table`."""
        return self.col_comp_logit + 1

    @property
    def col_creator(self) -> int:
        """Column of the creator id (as float32, exact below 2**24) in `item_table`."""
        return self.col_comp_logit + 2

    @property
    def table_width(self) -> int:
        """Columns of `item_table`: embedding, static features, comp_logit, topic, creator, padding."""
        return (self.col_creator + 1 + 3) // 4 * 4

    # ------------------------------------------------------------------ statistics
    def record(self, items: np.ndarray, seen: np.ndarray, completed: np.ndarray, engaged: np.ndarray) -> None:
        """Add the simulated users' impressions to the platform statistics.

        Args:
            items: (B, K) catalog rows shown; seen, completed, engaged: (B, K) bool.
        """
        _record_kernel(
            items, seen, completed, engaged, self.impressions, self.completions, self.engagements,
            self.comp_logit, self.item_static, self.stage, float(self.cfg.test_audience),
            float(self.cfg.graduation_completion_rate),
        )

    @property
    def n_creators(self) -> int:
        """Creators in the catalog."""
        return len(self.creator_followers)


@nb.njit(cache=True)
def _record_kernel(items, seen, completed, engaged, impressions, completions, engagements,
                   comp_logit, item_static, stage, test_audience, graduation_rate):
    # Serial on purpose: many users may see the same video in one step.
    B, K = items.shape
    for b in range(B):
        for k in range(K):
            if not seen[b, k]:
                continue
            i = items[b, k]
            impressions[i] += 1.0
            if completed[b, k]:
                completions[i] += 1.0
            if engaged[b, k]:
                engagements[i] += 1.0
            imp = impressions[i]
            comp_logit[i], item_static[i, 0], item_static[i, 1], item_static[i, 2] = count_features_nb(
                imp, completions[i], engagements[i]
            )
            if stage[i] == STAGE_TEST and imp >= test_audience:
                stage[i] = STAGE_GRADUATED if completions[i] / imp >= graduation_rate else STAGE_SUPPRESSED
