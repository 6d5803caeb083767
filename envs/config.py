"""Typed configuration of the feed simulator.

Every field has a default; YAML files in ``configs/`` only override them. A bad key,
type or value raises :class:`ConfigError` naming the dotted key (see
``reward.typed_config``). Units are part of the names (``_h`` hours, ``_s`` seconds).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reward.typed_config import ConfigError, check, param

__all__ = [
    "CatalogConfig",
    "ConfigError",
    "EnvConfig",
    "ObservationConfig",
    "RankerConfig",
    "ResponseConfig",
    "RetrievalConfig",
    "UserConfig",
    "WATCH_RATIO_MODELS",
    "WORLD_SOURCES",
    "WorldConfig",
]

WORLD_SOURCES = ("synthetic", "kuairand")
"""Where the catalog and the user population come from: generated (``synthetic``), or the
real KuaiRand-Pure videos and users with latents fitted by ``rl-fyp calibrate`` (``kuairand``)."""
WATCH_RATIO_MODELS = ("parametric", "quantile")
"""How the response model draws a watch ratio: ``parametric`` (skip / completion / partial
watch draws from the appeal, the synthetic default), or ``quantile`` (the appeal plus noise
mapped through a fitted watch-ratio quantile table per duration bucket; needs a world file)."""


@dataclass(frozen=True)
class CatalogConfig:
    """The video catalog: latent topics, videos, creators, sounds, uploads."""

    n_items: int = param(50_000, ge=1_000, le=5_000_000)
    """Videos held in the catalog at any time (new uploads replace the oldest of a niche)."""
    n_topics: int = param(20, ge=2, le=256)
    """Coarse latent topics."""
    niches_per_topic: int = param(10, ge=1, le=64)
    """Niches under each coarse topic; a niche is also a retrieval cluster."""
    latent_dim: int = param(16, ge=4, le=64)
    """Dimension of the true content vectors and of the platform's embeddings."""
    niche_spread: float = param(0.8, ge=0.0, le=5.0)
    """Noise scale of a niche centroid around its topic centroid (before normalising)."""
    item_spread: float = param(0.35, ge=0.0, le=5.0)
    """Noise scale of a video's true vector around its creator's style."""
    creator_spread: float = param(0.25, ge=0.0, le=5.0)
    """Noise scale of a creator's style around its niche centroid."""
    embedding_noise: float = param(0.45, ge=0.0, le=5.0)
    """Noise of the platform's content embedding around the true vector (content understanding error)."""
    niche_popularity_concentration: float = param(1.0, gt=0.0)
    """Dirichlet concentration of the niches' shares of the catalog (lower = more skewed)."""
    duration_median_s: float = param(22.0, ge=5.0, le=600.0)
    """Median video duration over the catalog, seconds."""
    duration_niche_sigma: float = param(0.5, ge=0.0, le=3.0)
    """Spread (log scale) of niche median durations around the catalog median."""
    duration_sigma: float = param(0.75, ge=0.0, le=3.0)
    """Spread (log scale) of durations within a niche: heavy-tailed lognormal."""
    min_duration_s: float = param(5.0, gt=0.0)
    """Shortest video, seconds."""
    max_duration_s: float = param(600.0, gt=0.0)
    """Longest video, seconds."""
    quality_alpha: float = param(2.5, gt=0.0)
    """Beta(alpha, beta) of video production quality in [0, 1]."""
    quality_beta: float = param(2.5, gt=0.0)
    """Beta(alpha, beta) of video production quality in [0, 1]."""
    items_per_creator: int = param(25, ge=1, le=10_000)
    """Average catalog videos per creator (sets the number of creators)."""
    creator_follower_alpha: float = param(1.2, gt=0.1, le=5.0)
    """Pareto tail index of creators' follower counts (power law)."""
    creator_follower_min: float = param(100.0, gt=0.0)
    """Smallest follower count."""
    n_sounds: int = param(2_000, ge=1, le=1_000_000)
    """Sounds (music tracks) videos use; a sound can trend."""
    n_regions: int = param(8, ge=1, le=64)
    """Regions; videos have an origin region, users live in one."""
    trend_start_per_h: float = param(0.004, ge=0.0, le=1.0)
    """Chance per world hour that a sound starts a trend."""
    trend_rise_h: float = param(18.0, gt=0.0)
    """Hours from a trend's start to its peak (the trend then decays with the same time scale)."""
    catalog_age_h: float = param(24.0 * 60, gt=0.0)
    """Age span of the videos present at the start (uploaded uniformly over it)."""
    uploads_per_h: float = param(60.0, ge=0.0)
    """New uploads per world hour; each replaces the oldest video of its niche."""
    world_h_per_step: float = param(0.05, ge=0.0, le=24.0)
    """World (platform) hours that pass per env step; every user of a batch requests once per step."""
    background_impressions_per_h: float = param(40.0, ge=0.0)
    """Impressions per world hour a fresh video in its test stage gets from the rest of the platform."""
    test_audience: int = param(60, ge=1)
    """Impressions after which a fresh video's test stage is judged."""
    graduation_completion_rate: float = param(0.38, ge=0.0, le=1.0)
    """Observed completion rate a fresh video needs to graduate to the wide pools (else suppressed)."""
    fresh_pool_size: int = param(512, ge=8)
    """Fresh videos held in the test-stage pool at once (the oldest leave it when it is full)."""
    index_refresh_h: float = param(1.0, gt=0.0)
    """World hours between rebuilds of the retrieval index and the trending lists."""
    cluster_top_len: int = param(64, ge=4, le=4096)
    """Videos kept per cluster in the retrieval index (the best by the platform's quality estimate)."""
    trending_len: int = param(128, ge=4, le=4096)
    """Videos on each region's trending list."""
    creator_recent_len: int = param(4, ge=1, le=64)
    """Latest uploads kept per creator for the followed-creators source."""
    i2i_neighbours: int = param(8, ge=1, le=64)
    """Co-engagement neighbours kept per video."""

    def __post_init__(self) -> None:
        check(self.max_duration_s > self.min_duration_s, "max_duration_s", "must exceed min_duration_s")
        check(
            self.n_items >= self.n_topics * self.niches_per_topic * 4,
            "n_items",
            "needs at least 4 videos per niche (n_topics * niches_per_topic * 4)",
        )

    @property
    def n_niches(self) -> int:
        """Niches (= retrieval clusters) in the catalog."""
        return self.n_topics * self.niches_per_topic


@dataclass(frozen=True)
class UserConfig:
    """Hidden user state: interests, session state, fatigue, avoidance, activity, context."""

    n_tribes: int = param(24, ge=1, le=4096)
    """Taste tribes: users of a tribe draw their interests from the same topic mixture."""
    tribe_concentration: float = param(0.3, gt=0.0)
    """Dirichlet concentration of a tribe's topic mixture (lower = narrower tribes)."""
    max_interests: int = param(3, ge=1, le=8)
    """Most interest components (niches) a user has; each has a weight."""
    secondary_interest_offset: float = param(0.08, ge=0.0, le=2.0)
    """How much less a user's second, third... interest counts than the first."""
    session_drift: float = param(0.12, ge=0.0, le=1.0)
    """Step size of the session interest toward an engaged video (times its watch ratio)."""
    session_relax_h: float = param(3.0, gt=0.0)
    """Time scale on which the session interest fades between sessions, hours."""
    fatigue_per_view: float = param(0.05, ge=0.0, le=5.0)
    """Fatigue added to a topic per video of it watched."""
    fatigue_decay_h: float = param(4.0, gt=0.0)
    """Time scale on which per-topic fatigue decays, hours."""
    avoidance_per_not_interested: float = param(0.8, ge=0.0, le=10.0)
    """Avoidance added to a topic by one not-interested (outweighs several positives)."""
    avoidance_relief_per_positive: float = param(0.1, ge=0.0, le=10.0)
    """Avoidance removed from a topic by one positive engagement (like, share, comment, follow)."""
    avoidance_decay_h: float = param(24.0 * 7, gt=0.0)
    """Time scale on which avoidance fades, hours."""
    satisfaction_rate: float = param(0.15, ge=0.0, le=1.0)
    """Step size of the within-session satisfaction toward each video's experienced value."""
    satisfaction_memory: float = param(0.5, ge=0.0, le=1.0)
    """Weight of the previous sessions' satisfaction in the long-run satisfaction after a session."""
    activity_sigma: float = param(0.7, ge=0.0, le=3.0)
    """Log-normal spread of activity levels (heavy to light users)."""
    n_languages: int = param(4, ge=1, le=64)
    """Languages."""
    n_devices: int = param(3, ge=1, le=16)
    """Device types."""
    signup_prob: float = param(0.5, ge=0.0, le=1.0)
    """Share of new users who pick sign-up interests."""
    signup_noise_topics: int = param(1, ge=0, le=16)
    """Topics a sign-up adds that are not among the user's true topics."""
    signup_recall: float = param(0.7, ge=0.0, le=1.0)
    """Chance that each true topic appears among a user's sign-up interests."""


@dataclass(frozen=True)
class ResponseConfig:
    """How a user responds to each video, leaves a session, returns or churns."""

    affinity_weight: float = param(3.2, ge=0.0)
    """Weight of long-term interest (best cosine to an interest component) in the appeal."""
    session_weight: float = param(1.2, ge=0.0)
    """Weight of the session interest (dot with the video's vector) in the appeal."""
    quality_weight: float = param(1.0, ge=0.0)
    """Weight of production quality in the appeal."""
    creator_follow_bonus: float = param(0.5, ge=0.0)
    """Appeal bonus for a video of a followed creator."""
    trend_weight: float = param(0.6, ge=0.0)
    """Appeal bonus for a video whose sound is trending (times the trend level in [0, 1])."""
    fatigue_weight: float = param(1.0, ge=0.0)
    """Appeal lost per unit of the video's topic fatigue."""
    boredom_weight: float = param(1.0, ge=0.0)
    """Experienced value lost per unit of the video's topic fatigue: repetition wears on
    satisfaction (and so on leave, return and churn) more than on the watch ratio."""
    avoidance_weight: float = param(1.5, ge=0.0)
    """Appeal lost per unit of the video's topic avoidance."""
    position_decay: float = param(0.03, ge=0.0)
    """Appeal lost per slot down the slate (attention fades)."""
    appeal_bias: float = param(-1.6, ge=-20.0, le=20.0)
    """Constant added to the appeal."""
    skip_slope: float = param(1.6, gt=0.0)
    """Slope of P(fast skip) = sigmoid(-skip_slope * appeal + skip_bias)."""
    skip_bias: float = param(-0.4, ge=-20.0, le=20.0)
    """Bias of P(fast skip)."""
    completion_slope: float = param(1.3, gt=0.0)
    """Slope of P(complete | watched) on the appeal."""
    completion_duration_slope: float = param(0.8, ge=0.0)
    """Completion log-odds lost per unit of log(duration / 15 s): short videos complete more often."""
    replay_mean: float = param(0.35, ge=0.0, le=2.0)
    """Mean extra watch ratio from replays of a completed short (< 15 s) video at appeal 1."""
    skip_time_mean_s: float = param(1.8, gt=0.0)
    """Mean swipe-away time of a fast skip, seconds."""
    like_bias: float = param(-5.6, ge=-20.0, le=20.0)
    """Like log-odds at appeal 0 and watch ratio 0."""
    share_bias: float = param(-8.2, ge=-20.0, le=20.0)
    """Share log-odds at appeal 0 and watch ratio 0."""
    comment_bias: float = param(-7.6, ge=-20.0, le=20.0)
    """Comment log-odds at appeal 0 and watch ratio 0."""
    follow_bias: float = param(-8.0, ge=-20.0, le=20.0)
    """Follow log-odds at appeal 0 and watch ratio 0 (only for creators not yet followed)."""
    profile_bias: float = param(-5.6, ge=-20.0, le=20.0)
    """Profile-visit log-odds at appeal 0 and watch ratio 0."""
    engagement_appeal_slope: float = param(0.9, ge=0.0)
    """Slope of every engagement log-odds on the appeal."""
    engagement_ratio_slope: float = param(1.6, ge=0.0)
    """Slope of every engagement log-odds on the watch ratio (capped at 1.5)."""
    not_interested_bias: float = param(-5.4, ge=-20.0, le=20.0)
    """Not-interested log-odds of a fast-skipped video at appeal 0."""
    not_interested_slope: float = param(1.4, ge=0.0)
    """Not-interested log-odds gained per unit of negative appeal."""
    leave_bias: float = param(-4.6, ge=-20.0, le=20.0)
    """Leave hazard log-odds after a video at zero fatigue, neutral satisfaction, session start."""
    leave_fatigue_slope: float = param(0.3, ge=0.0)
    """Leave log-odds per unit of the watched topic's fatigue."""
    leave_satisfaction_slope: float = param(2.2, ge=0.0)
    """Leave log-odds lost per unit of session satisfaction."""
    leave_time_slope: float = param(0.045, ge=0.0)
    """Leave log-odds per minute spent in the session."""
    leave_late_hour: float = param(0.6, ge=0.0)
    """Extra leave log-odds between 23:00 and 06:00 local time."""
    leave_skip: float = param(0.35, ge=0.0)
    """Extra leave log-odds right after a fast skip."""
    return_gap_median_h: float = param(10.0, gt=0.0)
    """Median hours to the next session for an average user at neutral satisfaction."""
    return_gap_sigma: float = param(0.7, ge=0.0, le=5.0)
    """Log-normal spread of return gaps."""
    return_activity_slope: float = param(1.0, ge=0.0, le=5.0)
    """How strongly activity scales the return gap: its median is
    ``return_gap_median_h / activity ** return_activity_slope`` (before the satisfaction and
    breadth terms). Above 1, heavy users come back sooner and light ones later than in
    proportion to their activity."""
    return_satisfaction_slope: float = param(1.3, ge=0.0)
    """Log return gap lost per unit of long-run satisfaction."""
    return_breadth_slope: float = param(2.5, ge=0.0)
    """Log return gap lost per unit of interest breadth fed in the session (share of interests engaged)."""
    churn_bias: float = param(-5.6, ge=-20.0, le=20.0)
    """Churn log-odds at a session end for an average user at neutral satisfaction."""
    churn_satisfaction_slope: float = param(3.5, ge=0.0)
    """Churn log-odds lost per unit of long-run satisfaction."""
    satisfaction_neutral: float = param(0.0, ge=-5.0, le=5.0)
    """Experienced value at which satisfaction is neutral for leave, return and churn."""
    min_return_gap_h: float = param(0.25, gt=0.0)
    """Shortest return gap, hours."""
    watch_ratio_model: str = param("parametric", choices=WATCH_RATIO_MODELS)
    """``parametric``: fast skip, completion, replays and partial watches are drawn from the
    appeal (skip_*, completion_*, replay_mean, skip_time_mean_s). ``quantile``: a latent
    ``appeal + watch_ratio_noise * N(0, 1)`` is mapped through the world file's monotone table
    of the video's duration bucket (fitted so the simulated watch ratios follow the real
    ones); a fast skip is then a watch shorter than ``fast_skip_s``, a completion a watch
    ratio of at least 1, and every engagement (not-interested included) may follow any
    video. Needs ``world.source: kuairand``."""
    watch_ratio_noise: float = param(1.0, ge=0.0, le=20.0)
    """``quantile`` only: spread of the latent watch-ratio draw around the appeal (the
    residual spread of the fitted watch-ratio model, in its normal-score units)."""
    fast_skip_s: float = param(2.0, gt=0.0, le=60.0)
    """``quantile`` only: a video watched for less than this many seconds is a fast skip
    (the same definition the calibration applies to the real log)."""


@dataclass(frozen=True)
class RetrievalConfig:
    """Multi-path candidate retrieval and the platform's estimate of the user."""

    n_candidates: int = param(200, ge=8, le=4096)
    """Candidates handed to the re-ranker per request (N)."""
    embedding_share: float = param(0.40, ge=0.0, le=1.0)
    """Share of N from embedding nearest neighbours of the user estimate."""
    i2i_share: float = param(0.20, ge=0.0, le=1.0)
    """Share of N from co-engagement neighbours of recently engaged videos."""
    trending_share: float = param(0.15, ge=0.0, le=1.0)
    """Share of N from the region's trending list."""
    fresh_share: float = param(0.10, ge=0.0, le=1.0)
    """Share of N from fresh uploads in their test stage."""
    followed_share: float = param(0.07, ge=0.0, le=1.0)
    """Share of N from followed creators' latest uploads."""
    explore_share: float = param(0.08, ge=0.0, le=1.0)
    """Share of N drawn at random from the whole catalog."""
    n_probe_clusters: int = param(6, ge=1, le=64)
    """Clusters probed by the embedding source (two-level retrieval: clusters, then videos)."""
    estimate_rate: float = param(0.08, ge=0.0, le=1.0)
    """Step size of the platform's user-embedding estimate per watched video."""
    topic_estimate_rate: float = param(0.3, ge=0.0, le=1.0)
    """Step size of the platform's per-topic preference estimate per watched video."""
    seen_filter_len: int = param(64, ge=0, le=1024)
    """Recently shown videos filtered out of a user's candidates."""
    recent_engaged_len: int = param(6, ge=1, le=64)
    """Recently engaged videos whose co-engagement neighbours are retrieved."""

    def __post_init__(self) -> None:
        total = (
            self.embedding_share
            + self.i2i_share
            + self.trending_share
            + self.fresh_share
            + self.followed_share
            + self.explore_share
        )
        check(total <= 1.0 + 1e-9, "embedding_share", f"source shares sum to {total:.3f} > 1")


@dataclass(frozen=True)
class RankerConfig:
    """The multi-task ranker that scores candidates from the platform's noisy estimate."""

    w_completion: float = param(1.0, ge=-100.0, le=100.0)
    """Weight of pCompletion in the value score."""
    w_watch_ratio: float = param(1.0, ge=-100.0, le=100.0)
    """Weight of the expected watch ratio in the value score."""
    w_like: float = param(4.0, ge=-100.0, le=100.0)
    """Weight of pLike in the value score."""
    w_share: float = param(8.0, ge=-100.0, le=100.0)
    """Weight of pShare in the value score."""
    w_comment: float = param(6.0, ge=-100.0, le=100.0)
    """Weight of pComment in the value score."""
    w_follow: float = param(10.0, ge=-100.0, le=100.0)
    """Weight of pFollow in the value score."""
    affinity_slope: float = param(1.5, ge=0.0)
    """Slope of the predicted log-odds on the estimated affinity."""
    prior_weight: float = param(1.0, ge=0.0)
    """Weight of the video's observed completion log-odds in the predictions."""
    topic_weight: float = param(3.5, ge=0.0)
    """Weight of the estimated topic preference in the predictions."""
    recent_weight: float = param(1.5, ge=0.0)
    """Weight of the best cosine to the user's recently engaged videos (attention over history)."""


@dataclass(frozen=True)
class ObservationConfig:
    """What the re-ranker observes."""

    history_len: int = param(16, ge=1, le=256)
    """Watched videos summarised in the user features (M)."""


@dataclass(frozen=True)
class WorldConfig:
    """Where the catalog and the user population come from."""

    source: str = param("synthetic", choices=WORLD_SOURCES)
    """``synthetic``: generated from the catalog and user configs. ``kuairand``: the real
    KuaiRand-Pure videos (durations, authors, tags, music) and users, with latent interests
    and per-video / per-user parameters read from ``world_file`` (written by ``rl-fyp calibrate``)."""
    world_file: str = param("")
    """``kuairand`` only: the derived world file (``.npz``, read without pickle), absolute or
    relative to the repository root."""
    world_sha256: str = param("")
    """``kuairand`` only: SHA-256 of ``world_file`` as calibrated; a different file (stale or
    edited) is refused when the world is built."""
    data_dir: str = param("data/kuairand_pure_partial")
    """``kuairand`` only: the KuaiRand-Pure files the world was fitted to (the default data of
    ``rl-fyp fidelity``), absolute or relative to the repository root."""

    def __post_init__(self) -> None:
        if self.source == "kuairand":
            check(bool(self.world_file.strip()), "world_file", "must name the world file when source is kuairand")
            sha = self.world_sha256
            check(
                len(sha) == 64 and all(c in "0123456789abcdef" for c in sha),
                "world_sha256",
                f"must be the 64 lower-case hex digits of the world file's SHA-256, got {sha!r}",
            )


@dataclass(frozen=True)
class EnvConfig:
    """The feed environment: simulator parts, slate size and horizon."""

    catalog: CatalogConfig = field(default_factory=CatalogConfig)
    """Video catalog."""
    user: UserConfig = field(default_factory=UserConfig)
    """Hidden user model."""
    response: ResponseConfig = field(default_factory=ResponseConfig)
    """Response, leave, return and churn model."""
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    """Candidate retrieval."""
    ranker: RankerConfig = field(default_factory=RankerConfig)
    """Multi-task ranker."""
    observation: ObservationConfig = field(default_factory=ObservationConfig)
    """Observation layout."""
    world: WorldConfig = field(default_factory=WorldConfig)
    """Synthetic or data-driven (KuaiRand) catalog and population."""
    slate_size: int = param(8, ge=1, le=256)
    """Videos per slate (K)."""
    horizon_days: float = param(14.0, gt=0.0, le=365.0)
    """Simulated days per episode; reaching it truncates the episode."""

    def __post_init__(self) -> None:
        check(
            self.retrieval.n_candidates >= self.slate_size,
            "retrieval.n_candidates",
            f"must be >= slate_size ({self.slate_size})",
        )
        check(
            self.response.watch_ratio_model != "quantile" or self.world.source == "kuairand",
            "response.watch_ratio_model",
            "quantile needs world.source: kuairand (the quantile tables live in the world file)",
        )
        if self.world.source == "kuairand":
            # The real catalog is a fixed set of videos: no synthetic uploads replace them.
            check(self.catalog.uploads_per_h == 0.0, "catalog.uploads_per_h", "must be 0 when world.source is kuairand")

    @property
    def horizon_h(self) -> float:
        """Episode horizon in hours."""
        return self.horizon_days * 24.0

