"""The one feature builder: raw records of a feed request -> the re-ranker's features.

The simulator's observations and the serving runtime's requests go through the same
code, so a policy sees in production exactly the features it was trained on:

- :func:`count_features` and :func:`slow_features` turn a video's raw statistics
  (impressions, completions, engagements; trend level, age, creator followers,
  duration) into its per-video feature columns. The catalog keeps its feature table
  with them; serving applies them to the candidate records of a request.
- :func:`features_kernel` turns a user's context, history and platform estimate, plus
  N candidate rows of such a table, into U user features and N x F candidate features.
  The simulator calls it on its catalog table (``envs.ranking.build_observation``);
  :class:`RecordFeatures` calls it on a small table built from one request's records.
- The ranker's predictions (pCompletion, ..., the value score) are candidate features
  too. In the simulator the kernel computes them (the funnel's multi-task ranker); in
  serving they come with the candidate records from the production ranker, or, when a
  request carries none, the same simulated ranker computes them.

Record fields are listed in :data:`USER_RECORD_FIELDS` and
:data:`CANDIDATE_RECORD_FIELDS`; what every feature means and how it is normalised is
in :func:`feature_schema`, which the export writes into the model's manifest.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numba as nb
import numpy as np

from envs._rng import fast_exp

__all__ = [
    "CAND_VALUE",
    "CANDIDATE_RECORD_FIELDS",
    "RANKER_FIELDS",
    "USER_RECORD_FIELDS",
    "FeatureSpec",
    "RecordError",
    "RecordFeatures",
    "cand_index",
    "candidate_feature_names",
    "count_features",
    "feature_schema",
    "features_kernel",
    "slow_features",
    "user_feature_names",
]

RANKER_FIELDS = (
    "p_completion", "p_like", "p_share", "p_comment", "p_follow", "expected_watch_ratio", "value_score",
)
"""The ranker's outputs, in candidate-feature order (right after the embedding)."""

# Candidate feature columns after the d embedding columns.
_CAND_TAIL = RANKER_FIELDS + (
    # per-video statistics (catalog.ITEM_STATIC_NAMES order)
    "log_impressions", "completion_rate", "engagement_rate", "trend_level",
    "log_age_h", "log_creator_followers", "log_duration_s",
    # user x video
    "follows_creator", "history_similarity", "recent_engaged_similarity", "topic_preference",
    "estimated_affinity",
    # categorical: the retrieval source id (envs.retrieval.SOURCE_NAMES); embed it
    "source",
)

#: Offset of the value score after the embedding columns (column = latent_dim + CAND_VALUE).
CAND_VALUE = _CAND_TAIL.index("value_score")

#: Per-video table columns after the embedding: the 7 copied statistics, the replay
#: factor (used by the ranker), the completion log-odds, the topic and the creator.
N_STATIC = 8
TABLE_COMP = N_STATIC
TABLE_TOPIC = N_STATIC + 1
TABLE_CREATOR = N_STATIC + 2


def candidate_feature_names(cfg: Any) -> tuple[str, ...]:
    """Names of the F candidate features, in column order (``cfg``: an EnvConfig or FeatureSpec)."""
    d = _spec(cfg).latent_dim
    return tuple(f"emb_{j}" for j in range(d)) + _CAND_TAIL


def user_feature_names(cfg: Any) -> tuple[str, ...]:
    """Names of the U user features, in column order (``cfg``: an EnvConfig or FeatureSpec)."""
    s = _spec(cfg)
    d, T = s.latent_dim, s.n_topics
    return (
        ("hour_sin", "hour_cos", "days_since_first_visit", "session_requests", "session_minutes",
         "session_videos", "log_sessions", "last_gap_days", "has_history", "history_fill")
        + tuple(f"region_{r}" for r in range(s.n_regions))
        + tuple(f"language_{r}" for r in range(s.n_languages))
        + tuple(f"device_{r}" for r in range(s.n_devices))
        + tuple(f"signup_topic_{t}" for t in range(T))
        + tuple(f"estimate_{j}" for j in range(d))
        + tuple(f"history_emb_{j}" for j in range(d))
        + ("history_watch_ratio", "history_like_rate", "history_skip_rate")
        + tuple(f"topic_estimate_{t}" for t in range(T))
    )


def cand_index(cfg: Any, name: str) -> int:
    """Column of candidate feature `name`."""
    return candidate_feature_names(cfg).index(name)


# ---------------------------------------------------------------------- per-video columns
def count_features(impressions, completions, engagements):
    """Per-video features from the platform's counts (arrays or scalars, float).

    Returns:
        ``(comp_logit, log_impressions, completion_rate, engagement_rate)``: the
        completion log-odds under a Beta(1.2, 2) prior (an unseen video is assumed to
        complete a little under 40%), ``log1p(impressions) / 10``, that completion rate,
        and ``10 * (engagements + 0.1) / (impressions + 2)``.
    """
    rate = (completions + 1.2) / (impressions + 3.2)
    return np.log(rate / (1.0 - rate)), np.log1p(impressions) / 10.0, rate, 10.0 * (engagements + 0.1) / (impressions + 2.0)


count_features_nb = nb.njit(cache=True)(count_features)
""":func:`count_features` compiled, for the catalog's per-impression update kernel."""


def slow_features(trend_level, age_h, creator_followers, duration_s):
    """Per-video features that change slowly (arrays or scalars, float).

    Returns:
        ``(trend_level, log_age_h, log_creator_followers, log_duration_s, replay_factor)``:
        the sound's trend level as it is, ``log1p(age_h) / 8``, ``log1p(followers) / 15``,
        ``log(duration_s) / 6`` and the ranker's replay factor ``0.3 sqrt(15 / max(duration_s, 15))``.
    """
    return (
        trend_level,
        np.log1p(np.maximum(age_h, 0.0)) / 8.0,
        np.log1p(creator_followers) / 15.0,
        np.log(duration_s) / 6.0,
        0.3 * np.sqrt(15.0 / np.maximum(duration_s, 15.0)),
    )


# ---------------------------------------------------------------------- the kernel
_E_LIKE = np.exp(3.7)  # like head: sigmoid(-3.7 + 0.9 * base)
_E_SHARE = np.exp(6.2)  # share and follow heads: sigmoid(-6.2 + 0.9 * base)
_E_COMMENT = np.exp(5.6)  # comment head: sigmoid(-5.6 + 0.9 * base)


@nb.njit(parallel=True, fastmath=True, cache=True)
def features_kernel(
    cand, cand_src, rk, horizon_days,
    table, col_static, col_comp, col_topic, col_creator,
    u_hat, p_hat, follows, engaged, engaged_ptr, hist_item, hist_ratio, hist_like, hist_skip, hist_ptr,
    region, language, device, signup, hour, clock_h, session_requests, session_time_s,
    session_videos, sessions, last_gap_h, row_active, ranker_in, rank_given,
    out_cand, out_user,
):
    """User (B, U) and candidate (B, N, F) features, written into ``out_user`` / ``out_cand``.

    ``cand`` (B, N), ``hist_item`` (B, M) and ``engaged`` (B, E) are rows of ``table``
    (-1 = none); a table row is embedding (d) | 8 statistics (``col_static``) |
    completion log-odds | topic | creator. History and engaged lists are filled from
    slot 0 up to ``hist_ptr`` / ``engaged_ptr`` (capped at M / E). ``follows`` (B, Fo)
    holds creator ids, -1 ends the list. Rows with ``rank_given[b]`` copy the ranker's
    outputs from ``ranker_in`` (B, N, 7); others compute them with the simulated ranker
    (weights and slopes in ``rk``). Rows without ``row_active`` are left untouched.
    """
    B, N = cand.shape
    d = u_hat.shape[1]
    T = p_hat.shape[1]
    Fo = follows.shape[1]
    M = hist_item.shape[1]
    E = engaged.shape[1]
    # Widths of the one-hot blocks are passed through rk's tail.
    n_reg = np.int64(rk[9])
    n_lang = np.int64(rk[10])
    n_dev = np.int64(rk[11])
    for b in nb.prange(B):
        if not row_active[b]:
            continue  # no request in this slot: its rows stay zero
        # ---- user summary
        un = 0.0
        for j in range(d):
            un += u_hat[b, j] * u_hat[b, j]
        un = np.sqrt(un)
        conf = min(1.0, 2.0 * un)
        inv = 1.0 / un if un > 1e-6 else 0.0
        hmean = np.zeros(d, np.float32)
        cnt = min(hist_ptr[b], M)
        wsum = 0.0
        r_sum = 0.0
        l_sum = 0.0
        k_sum = 0.0
        for h in range(cnt):
            it = hist_item[b, h]
            w = hist_ratio[b, h]
            r_sum += w
            l_sum += hist_like[b, h]
            k_sum += hist_skip[b, h]
            w = min(w, 1.5) + 0.05
            wsum += w
            for j in range(d):
                hmean[j] += w * table[it, j]
        hn = 0.0
        for j in range(d):
            hn += hmean[j] * hmean[j]
        hn = np.sqrt(hn)
        if hn > 1e-6:
            for j in range(d):
                hmean[j] /= hn
        e_loc = np.empty(d, np.float32)
        u_loc = np.empty(d, np.float32)
        for j in range(d):
            u_loc[j] = u_hat[b, j]
        n_eng = min(E, engaged_ptr[b])
        eng_emb = np.empty((E, d), np.float32)
        for r in range(n_eng):
            for j in range(d):
                eng_emb[r, j] = table[engaged[b, r], j]
        # ---- user features
        o = out_user[b]
        for j in range(o.shape[0]):
            o[j] = 0.0
        o[0] = np.sin(hour[b] * 0.2617993877991494)
        o[1] = np.cos(hour[b] * 0.2617993877991494)
        o[2] = clock_h[b] / 24.0 / horizon_days
        o[3] = session_requests[b] / 10.0
        o[4] = session_time_s[b] / 1800.0
        o[5] = session_videos[b] / 50.0
        o[6] = np.log1p(sessions[b]) / 3.0
        o[7] = last_gap_h[b] / 24.0
        o[8] = 1.0 if cnt > 0 else 0.0
        o[9] = cnt / M
        p = 10
        o[p + region[b]] = 1.0
        p += n_reg
        o[p + language[b]] = 1.0
        p += n_lang
        o[p + device[b]] = 1.0
        p += n_dev
        for t in range(T):
            o[p + t] = signup[b, t]
        p += T
        for j in range(d):
            o[p + j] = u_hat[b, j]
        p += d
        for j in range(d):
            o[p + j] = hmean[j]
        p += d
        if cnt > 0:
            o[p] = r_sum / cnt
            o[p + 1] = l_sum / cnt
            o[p + 2] = k_sum / cnt
        p += 3
        for t in range(T):
            o[p + t] = p_hat[b, t]
        given = rank_given[b]
        # ---- candidates
        for n in range(N):
            it = cand[b, n]
            row = out_cand[b, n]
            if it < 0:
                for j in range(row.shape[0]):
                    row[j] = 0.0
                continue
            item = table[it]  # the one gather: embedding, statistics, ids
            for j in range(d):
                e_loc[j] = item[j]  # contiguous copy: the dot products below vectorise
            est = 0.0
            sim = 0.0
            for j in range(d):
                e = e_loc[j]
                row[j] = e
                est += u_loc[j] * e
                sim += hmean[j] * e
            est *= inv
            # Attention over history: the closest recently engaged video.
            rec = 0.0
            for r in range(n_eng):
                acc = 0.0
                for j in range(d):
                    acc += eng_emb[r, j] * e_loc[j]
                rec = max(rec, acc)
            cr = np.int64(item[col_creator])
            fol = 0.0
            for f in range(Fo):
                fc = follows[b, f]
                if fc < 0:
                    break
                if fc == cr:
                    fol = 1.0
                    break
            tp = p_hat[b, np.int64(item[col_topic])]
            if given:
                for j in range(7):
                    row[d + j] = ranker_in[b, n, j]
            else:
                base = (rk[6] * est * conf + rk[7] * item[col_comp] + rk[8] * tp + rk[12] * rec * rec
                        + 0.5 * fol)
                # Two exponentials serve all five heads: sigmoid(c + 0.9 base) = 1 / (1 + e^-c t).
                pc = 1.0 / (1.0 + fast_exp(-base))
                t = fast_exp(-0.9 * base)
                pl = 1.0 / (1.0 + _E_LIKE * t)
                ps = 1.0 / (1.0 + _E_SHARE * t)
                pm = 1.0 / (1.0 + _E_COMMENT * t)
                pf = (1.0 - fol) / (1.0 + _E_SHARE * t)
                er = 0.15 + pc * (1.0 + item[col_static + 7])
                row[d] = pc
                row[d + 1] = pl
                row[d + 2] = ps
                row[d + 3] = pm
                row[d + 4] = pf
                row[d + 5] = er
                row[d + 6] = rk[0] * pc + rk[1] * er + rk[2] * pl + rk[3] * ps + rk[4] * pm + rk[5] * pf
            for j in range(7):
                row[d + 7 + j] = item[col_static + j]
            row[d + 14] = fol
            row[d + 15] = sim
            row[d + 16] = rec
            row[d + 17] = tp
            row[d + 18] = est
            row[d + 19] = cand_src[b, n]


# ---------------------------------------------------------------------- the layout
@dataclass(frozen=True)
class FeatureSpec:
    """Everything the feature builder needs to know of the world: sizes, scales, ranker.

    The simulator derives it from its config (:meth:`from_env`); the export writes it into
    the manifest and the serving runtime reads it back (:meth:`from_dict`).
    """

    latent_dim: int
    n_topics: int
    n_regions: int
    n_languages: int
    n_devices: int
    history_len: int
    recent_engaged_len: int
    follow_slots: int
    horizon_days: float
    ranker: tuple[float, ...]
    """The simulated ranker's weights and slopes (``envs.ranking.ranker_params``)."""
    source_names: tuple[str, ...]

    @classmethod
    def from_env(cls, cfg: Any) -> FeatureSpec:
        """The spec of an ``EnvConfig``."""
        from envs.ranking import ranker_params
        from envs.retrieval import SOURCE_NAMES
        from envs.users import FOLLOW_SLOTS

        c = cfg.catalog
        return cls(
            latent_dim=c.latent_dim, n_topics=c.n_topics, n_regions=c.n_regions,
            n_languages=cfg.user.n_languages, n_devices=cfg.user.n_devices,
            history_len=cfg.observation.history_len, recent_engaged_len=cfg.retrieval.recent_engaged_len,
            follow_slots=FOLLOW_SLOTS, horizon_days=float(cfg.horizon_days),
            ranker=tuple(float(x) for x in ranker_params(cfg)), source_names=tuple(SOURCE_NAMES),
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (:meth:`from_dict` reads it back)."""
        d = asdict(self)
        d["ranker"] = list(self.ranker)
        d["source_names"] = list(self.source_names)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureSpec:
        fields = {k: d[k] for k in cls.__dataclass_fields__}
        fields["ranker"] = tuple(float(x) for x in fields["ranker"])
        fields["source_names"] = tuple(fields["source_names"])
        return cls(**fields)


def _spec(cfg: Any) -> FeatureSpec:
    return cfg if isinstance(cfg, FeatureSpec) else FeatureSpec.from_env(cfg)


# ---------------------------------------------------------------------- raw records
USER_RECORD_FIELDS: dict[str, str] = {
    "local_hour": "required; the user's local hour of day, in [0, 24)",
    "hours_since_first_visit": "required; hours since the user's first visit, >= 0",
    "session_requests": "required; feed requests so far in this session, >= 0",
    "session_watch_s": "required; seconds watched so far in this session, >= 0",
    "session_videos": "required; videos seen so far in this session, >= 0",
    "sessions": "required; the user's sessions before this one, >= 0",
    "last_gap_h": "required; hours between the previous session and this one, >= 0",
    "region": "required; region id in [0, n_regions)",
    "language": "required; language id in [0, n_languages)",
    "device": "required; device id in [0, n_devices)",
    "embedding": "required; the platform's user embedding (latent_dim numbers)",
    "topic_preference": "required; the platform's per-topic preference estimate (n_topics numbers)",
    "signup_topics": "optional; topic ids picked at sign-up (default none)",
    "follows": "optional; ids of followed creators, most recent last (the last follow_slots count)",
    "history": (
        "optional; watched videos, oldest first (the last history_len count), each "
        "{embedding: [latent_dim], watch_ratio: >= 0, like: bool, fast_skip: bool}"
    ),
    "recent_engaged": "optional; embeddings of recently engaged videos, oldest first (the last recent_engaged_len count)",
}
"""Fields of a raw user record: context, session so far, history, the platform's estimate."""

CANDIDATE_RECORD_FIELDS: dict[str, str] = {
    "id": "optional; any JSON value, echoed back in the response's ids",
    "embedding": "required; the video's content embedding (latent_dim numbers)",
    "topic": "required; topic id in [0, n_topics)",
    "creator": "required; creator id (any integer or string)",
    "source": "required; retrieval source: a name of source_names or its index",
    "impressions": "required; impressions so far, >= 0",
    "completions": "required; completed views so far, in [0, impressions]",
    "engagements": "required; likes, shares, comments and follows so far, >= 0",
    "trend_level": "required; the video's sound trend level, >= 0",
    "age_h": "required; hours since upload, >= 0",
    "creator_followers": "required; the creator's follower count, >= 0",
    "duration_s": "required; the video's duration in seconds, > 0",
    "ranker": f"optional; the ranker's outputs {{{', '.join(RANKER_FIELDS)}}}; all candidates or none (none: the simulated ranker scores them)",
}
"""Fields of a raw candidate record: the video, its statistics, its source and the ranker's scores."""

_HISTORY_FIELDS = ("embedding", "watch_ratio", "like", "fast_skip")


class RecordError(ValueError):
    """A raw record is malformed; the message names the record and the field."""


class _Invalid(Exception):
    """The column-wise fast path found something wrong; the record-wise checks say what."""


_CAND_ALLOWED = frozenset(CANDIDATE_RECORD_FIELDS)
_CAND_REQUIRED = frozenset(k for k, v in CANDIDATE_RECORD_FIELDS.items() if v.startswith("required"))
_RANKER_SET = frozenset(RANKER_FIELDS)
_STAT_FIELDS = ("impressions", "completions", "engagements", "trend_level", "age_h", "creator_followers", "duration_s")
_CAND_GETTER = operator.itemgetter("embedding", "topic", "creator", "source", *_STAT_FIELDS)
_RANKER_OF = operator.itemgetter("ranker")
_RANKER_GETTER = operator.itemgetter(*RANKER_FIELDS)


_NUMBER_TYPES = frozenset((int, float))
_ID_TYPES = frozenset((int, str))


def _numbers(values: list[Any], flat: Iterable[Any] | None = None) -> np.ndarray:
    """float64 array of JSON numbers (no bools, strings or non-finite values), else :class:`_Invalid`.

    ``flat`` iterates the scalars of nested ``values``; the type check runs at C speed.
    """
    if not set(map(type, values if flat is None else flat)) <= _NUMBER_TYPES:
        raise _Invalid
    try:
        a = np.array(values, dtype=np.float64)
    except ValueError:  # ragged
        raise _Invalid from None
    if not np.isfinite(a).all():
        raise _Invalid
    return a


def _ids(col: list[Any], n: int) -> np.ndarray:
    """int64 array of integer ids in [0, n), else :class:`_Invalid`."""
    if set(map(type, col)) != {int}:
        raise _Invalid
    a = np.array(col, dtype=np.int64)
    if ((a < 0) | (a >= n)).any():
        raise _Invalid
    return a


def _num(
    x: Any, where: str, *, lo: float | None = None, hi: float | None = None, lo_open: bool = False, integer: bool = False
) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)):
        raise RecordError(f"{where} must be a number, got {type(x).__name__}")
    v = float(x)
    if not np.isfinite(v):
        raise RecordError(f"{where} must be finite, got {v}")
    if integer and v != int(v):
        raise RecordError(f"{where} must be a whole number, got {v:g}")
    if lo is not None and (v <= lo if lo_open else v < lo):
        raise RecordError(f"{where} must be {'>' if lo_open else '>='} {lo:g}, got {v:g}")
    if hi is not None and v >= hi:
        raise RecordError(f"{where} must be < {hi:g}, got {v:g}")
    return v


def _index(x: Any, n: int, where: str) -> int:
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
        raise RecordError(f"{where} must be an integer id, got {x!r}")
    if not 0 <= int(x) < n:
        raise RecordError(f"{where} must be in [0, {n}), got {x}")
    return int(x)


def _vector(x: Any, n: int, where: str) -> np.ndarray:
    if not isinstance(x, (list, tuple, np.ndarray)):
        raise RecordError(f"{where} must be a list of {n} numbers, got {type(x).__name__}")
    try:
        v = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise RecordError(f"{where} must be a list of {n} numbers: {e}") from e
    if v.shape != (n,):
        raise RecordError(f"{where} must hold {n} numbers, got shape {v.shape}")
    if not np.isfinite(v).all():
        raise RecordError(f"{where} contains NaN or inf")
    return v


def _check_fields(rec: Any, allowed: Mapping[str, str], where: str) -> None:
    if not isinstance(rec, Mapping):
        raise RecordError(f"{where} must be an object, got {type(rec).__name__}")
    unknown = sorted(set(rec) - set(allowed))
    if unknown:
        raise RecordError(f"{where}: unknown field(s) {unknown}")
    missing = [k for k, v in allowed.items() if v.startswith("required") and k not in rec]
    if missing:
        raise RecordError(f"{where}: missing field(s) {missing}")


class RecordFeatures:
    """Builds features from raw records with :func:`features_kernel` (serving's feature builder).

    Args:
        spec: The world's feature layout (from the model's manifest).
    """

    def __init__(self, spec: FeatureSpec) -> None:
        self.spec = spec
        self.n_user = len(user_feature_names(spec))
        self.n_cand = len(candidate_feature_names(spec))
        self._rk = np.asarray(spec.ranker, np.float64)
        self._width = spec.latent_dim + N_STATIC + 3
        self._source_index = {name: i for i, name in enumerate(spec.source_names)}

    def build(
        self, users: Sequence[Mapping[str, Any]], candidates: Sequence[Sequence[Mapping[str, Any]]]
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Features of B requests with N candidates each.

        Args:
            users: B raw user records (:data:`USER_RECORD_FIELDS`).
            candidates: B lists of N raw candidate records (:data:`CANDIDATE_RECORD_FIELDS`).

        Returns:
            ``(user (B, U), candidates (B, N, F), meta)``, float32; meta holds (B, N)
            ``creator`` (dense int ids, equal ids for equal creators within a request),
            ``topic`` and ``source``.

        Raises:
            RecordError: Naming the record and field that is malformed.
        """
        s = self.spec
        B = len(users)
        if B != len(candidates) or B == 0:
            raise RecordError(f"need one candidate list per user record, got {B} users and {len(candidates)} lists")
        N = len(candidates[0])
        if N == 0 or any(len(c) != N for c in candidates):
            raise RecordError("every request needs the same, nonzero number of candidates")
        d, T, M, E, Fo = s.latent_dim, s.n_topics, s.history_len, s.recent_engaged_len, s.follow_slots
        R = N + M + E  # table rows per request: candidates, history, engaged
        f32 = np.float32
        table = np.zeros((B * R, self._width), f32)
        # dtypes as the simulator's arrays: the kernel is compiled once for both callers.
        i32 = np.int32
        cand = np.empty((B, N), i32)
        src = np.empty((B, N), np.int8)
        topic = np.empty((B, N), np.int64)
        creator = np.empty((B, N), np.int64)
        ranker_in = np.zeros((B, N, len(RANKER_FIELDS)), f32)
        rank_given = np.zeros(B, np.bool_)
        u_hat, p_hat = np.zeros((B, d), f32), np.zeros((B, T), f32)
        follows = np.full((B, Fo), -1, i32)
        hist_item, engaged = np.full((B, M), -1, i32), np.full((B, E), -1, i32)
        hist_ratio, hist_like, hist_skip = np.zeros((B, M), f32), np.zeros((B, M), f32), np.zeros((B, M), f32)
        hist_ptr, engaged_ptr = np.zeros(B, np.int64), np.zeros(B, np.int64)
        ctx = np.zeros((B, 7), np.float64)
        cat = np.zeros((3, B), i32)
        signup = np.zeros((B, T), f32)
        for b in range(B):
            base = b * R
            creators = self._candidates(candidates[b], b, base, table, src[b], topic[b], ranker_in[b], rank_given)
            cand[b] = base + np.arange(N)
            # Creator ids of any type become dense ints shared by candidates and follows.
            ids: dict[Any, int] = {}
            creator[b] = [ids.setdefault(c, len(ids)) for c in creators]
            table[base : base + N, d + TABLE_CREATOR] = creator[b]
            self._user(users[b], b, base + N, table, ctx, cat, signup, u_hat, p_hat, follows, ids,
                       hist_item, hist_ratio, hist_like, hist_skip, hist_ptr, engaged, engaged_ptr)
        out_user = np.zeros((B, self.n_user), f32)
        out_cand = np.zeros((B, N, self.n_cand), f32)
        # A server calls this one request at a time: numba.set_num_threads(1) in it keeps
        # the parallel kernel from waking a thread pool for one row (rl_fyp.service does).
        features_kernel(
            cand, src, self._rk, s.horizon_days,
            table, d, d + TABLE_COMP, d + TABLE_TOPIC, d + TABLE_CREATOR,
            u_hat, p_hat, follows, engaged, engaged_ptr, hist_item, hist_ratio, hist_like, hist_skip, hist_ptr,
            cat[0], cat[1], cat[2], signup, ctx[:, 0], ctx[:, 1], ctx[:, 2].astype(i32), ctx[:, 3].astype(f32),
            ctx[:, 4].astype(i32), ctx[:, 5].astype(i32), ctx[:, 6].astype(f32), np.ones(B, np.bool_), ranker_in, rank_given,
            out_cand, out_user,
        )
        return out_user, out_cand, {"creator": creator, "topic": topic, "source": src}

    def _candidates(self, recs, b, base, table, src, topic, ranker_in, rank_given) -> list[Any]:
        d = self.spec.latent_dim
        N = len(recs)
        try:
            emb, topic[:], creators, src[:], stats, ranker = self._candidate_columns(recs)
        except _Invalid:
            # Something is off: the record-by-record checks name the record and the field.
            where = "candidates[{}]" if b == 0 else f"request {b}: candidates[{{}}]"
            emb, topic[:], creators, src[:], stats, ranker = self._candidate_columns_checked(recs, where)
        table[base : base + N, :d] = emb
        rank_given[b] = ranker is not None
        if ranker is not None:
            ranker_in[:] = ranker
        st = stats.astype(np.float32)  # the catalog keeps its statistics in float32
        rows = table[base : base + N]
        comp_logit, log_imp, rate, eng = count_features(st[:, 0], st[:, 1], st[:, 2])
        slow = slow_features(st[:, 3], st[:, 4], st[:, 5], st[:, 6])
        for j, col in enumerate((log_imp, rate, eng, *slow)):
            rows[:, d + j] = col
        rows[:, d + TABLE_COMP] = comp_logit
        rows[:, d + TABLE_TOPIC] = topic
        return creators

    def _candidate_columns(self, recs):
        """The candidate records as columns, checked column-wise; :class:`_Invalid` on any doubt.

        Every per-record step is a C-level ``map`` (``itemgetter``, ``type``, ``tuple``),
        so a request of 500 candidates costs well under a millisecond here.
        """
        s = self.spec
        if set(map(type, recs)) != {dict}:
            raise _Invalid
        for keys in set(map(tuple, recs)):  # usually one key order for all records
            ks = set(keys)
            if not (ks <= _CAND_ALLOWED and _CAND_REQUIRED <= ks) or ("ranker" in ks) != ("ranker" in recs[0]):
                raise _Invalid
        N = len(recs)
        fields = list(map(_CAND_GETTER, recs))  # (embedding, topic, creator, source, *stats)
        emb_col, topic_col, creators, sources = (list(c) for c in zip(*(f[:4] for f in fields)))
        if set(map(type, emb_col)) != {list}:
            raise _Invalid
        emb = _numbers(emb_col, itertools.chain.from_iterable(emb_col))
        if emb.shape != (N, s.latent_dim):
            raise _Invalid
        topic = _ids(topic_col, s.n_topics)
        if not set(map(type, creators)) <= _ID_TYPES:
            raise _Invalid
        if set(map(type, sources)) == {str}:
            index = self._source_index
            if not index.keys() >= set(sources):
                raise _Invalid
            src = np.array(list(map(index.__getitem__, sources)), np.int64)
        else:
            src = _ids(sources, len(s.source_names))
        stat_rows = [f[4:] for f in fields]
        stats = _numbers(stat_rows, itertools.chain.from_iterable(stat_rows))
        if (stats < 0).any() or (stats[:, 6] <= 0).any() or (stats[:, 1] > stats[:, 0]).any():
            raise _Invalid
        ranker = None
        if "ranker" in recs[0]:
            rk = list(map(_RANKER_OF, recs))
            if set(map(type, rk)) != {dict} or set(map(frozenset, rk)) != {_RANKER_SET}:
                raise _Invalid
            values = list(map(_RANKER_GETTER, rk))
            ranker = _numbers(values, itertools.chain.from_iterable(values))
        return emb, topic, creators, src, stats, ranker

    def _candidate_columns_checked(self, recs, where: str):
        """Record by record, raising :class:`RecordError` at the first bad field."""
        s = self.spec
        d = s.latent_dim
        N = len(recs)
        for n, rec in enumerate(recs):
            _check_fields(rec, CANDIDATE_RECORD_FIELDS, where.format(n))
        has_ranker = ["ranker" in r for r in recs]
        if any(has_ranker) and not all(has_ranker):
            raise RecordError(f"{where.format(has_ranker.index(not has_ranker[0]))}: 'ranker' must be given for all candidates or none")
        emb = np.empty((N, d), np.float64)
        topic = np.empty(N, np.int64)
        src = np.empty(N, np.int64)
        stats = np.empty((N, 7), np.float64)
        ranker = np.empty((N, len(RANKER_FIELDS)), np.float64) if has_ranker[0] else None
        creators: list[Any] = []
        for n, rec in enumerate(recs):
            w = where.format(n)
            emb[n] = _vector(rec["embedding"], d, f"{w}.embedding")
            topic[n] = _index(rec["topic"], s.n_topics, f"{w}.topic")
            c = rec["creator"]
            if isinstance(c, bool) or not isinstance(c, (int, str, np.integer)):
                raise RecordError(f"{w}.creator must be an integer or a string id, got {c!r}")
            creators.append(c)
            so = rec["source"]
            if isinstance(so, str):
                if so not in s.source_names:
                    raise RecordError(f"{w}.source: unknown source {so!r}; known: {list(s.source_names)}")
                src[n] = s.source_names.index(so)
            else:
                src[n] = _index(so, len(s.source_names), f"{w}.source")
            imp = _num(rec["impressions"], f"{w}.impressions", lo=0.0)
            comp = _num(rec["completions"], f"{w}.completions", lo=0.0)
            if comp > imp:
                raise RecordError(f"{w}.completions ({comp:g}) must not exceed impressions ({imp:g})")
            stats[n] = (
                imp, comp, _num(rec["engagements"], f"{w}.engagements", lo=0.0),
                _num(rec["trend_level"], f"{w}.trend_level", lo=0.0), _num(rec["age_h"], f"{w}.age_h", lo=0.0),
                _num(rec["creator_followers"], f"{w}.creator_followers", lo=0.0),
                _num(rec["duration_s"], f"{w}.duration_s", lo=0.0, lo_open=True),
            )
            if ranker is not None:
                r = rec["ranker"]
                if not isinstance(r, Mapping) or set(r) != set(RANKER_FIELDS):
                    got = sorted(r) if isinstance(r, Mapping) else type(r).__name__
                    raise RecordError(f"{w}.ranker must hold exactly {list(RANKER_FIELDS)}, got {got}")
                ranker[n] = [_num(r[k], f"{w}.ranker.{k}") for k in RANKER_FIELDS]
        return emb, topic, creators, src, stats, ranker

    def _user(self, rec, b, base, table, ctx, cat, signup, u_hat, p_hat, follows, creator_ids,
              hist_item, hist_ratio, hist_like, hist_skip, hist_ptr, engaged, engaged_ptr) -> None:
        s = self.spec
        d, M, E, Fo = s.latent_dim, s.history_len, s.recent_engaged_len, s.follow_slots
        w = "user" if b == 0 else f"request {b}: user"
        _check_fields(rec, USER_RECORD_FIELDS, w)
        ctx[b] = (
            _num(rec["local_hour"], f"{w}.local_hour", lo=0.0, hi=24.0),
            _num(rec["hours_since_first_visit"], f"{w}.hours_since_first_visit", lo=0.0),
            _num(rec["session_requests"], f"{w}.session_requests", lo=0.0, integer=True),
            _num(rec["session_watch_s"], f"{w}.session_watch_s", lo=0.0),
            _num(rec["session_videos"], f"{w}.session_videos", lo=0.0, integer=True),
            _num(rec["sessions"], f"{w}.sessions", lo=0.0, integer=True),
            _num(rec["last_gap_h"], f"{w}.last_gap_h", lo=0.0),
        )
        cat[:, b] = (
            _index(rec["region"], s.n_regions, f"{w}.region"),
            _index(rec["language"], s.n_languages, f"{w}.language"),
            _index(rec["device"], s.n_devices, f"{w}.device"),
        )
        u_hat[b] = _vector(rec["embedding"], d, f"{w}.embedding")
        p_hat[b] = _vector(rec["topic_preference"], s.n_topics, f"{w}.topic_preference")
        for t in self._list(rec, "signup_topics", w):
            signup[b, _index(t, s.n_topics, f"{w}.signup_topics[]")] = 1.0
        fol = self._list(rec, "follows", w)[-Fo:]
        for j, c in enumerate(fol):
            if isinstance(c, bool) or not isinstance(c, (int, str, np.integer)):
                raise RecordError(f"{w}.follows[{j}] must be an integer or a string id, got {c!r}")
            # A followed creator with no candidate here can never match: any id outside the request's.
            follows[b, j] = creator_ids.get(c, len(creator_ids) + j)
        hist = self._list(rec, "history", w)[-M:]
        for h, item in enumerate(hist):
            wh = f"{w}.history[{h}]"
            _check_fields(item, {k: "required" for k in _HISTORY_FIELDS}, wh)
            table[base + h, :d] = _vector(item["embedding"], d, f"{wh}.embedding")
            hist_item[b, h] = base + h
            hist_ratio[b, h] = _num(item["watch_ratio"], f"{wh}.watch_ratio", lo=0.0)
            for arr, key in ((hist_like, "like"), (hist_skip, "fast_skip")):
                if not isinstance(item[key], (bool, np.bool_)):
                    raise RecordError(f"{wh}.{key} must be true or false, got {item[key]!r}")
                arr[b, h] = float(item[key])
        hist_ptr[b] = len(hist)
        eng = self._list(rec, "recent_engaged", w)[-E:]
        for r, emb in enumerate(eng):
            table[base + M + r, :d] = _vector(emb, d, f"{w}.recent_engaged[{r}]")
            engaged[b, r] = base + M + r
        engaged_ptr[b] = len(eng)

    @staticmethod
    def _list(rec: Mapping[str, Any], key: str, where: str) -> list[Any]:
        x = rec.get(key, [])
        if not isinstance(x, (list, tuple)):
            raise RecordError(f"{where}.{key} must be a list, got {type(x).__name__}")
        return list(x)


# ---------------------------------------------------------------------- documentation
_USER_DOCS = (
    ("hour_sin", "local hour of day h, sine", "sin(2 pi h / 24)"),
    ("hour_cos", "local hour of day h, cosine", "cos(2 pi h / 24)"),
    ("days_since_first_visit", "time since the user's first visit", "hours / 24 / horizon_days"),
    ("session_requests", "feed requests so far in this session", "count / 10"),
    ("session_minutes", "time watched so far in this session", "seconds / 1800"),
    ("session_videos", "videos seen so far in this session", "count / 50"),
    ("log_sessions", "sessions before this one", "log1p(count) / 3"),
    ("last_gap_days", "gap between the previous session and this one", "hours / 24"),
    ("has_history", "whether the user has watched anything", "0 or 1"),
    ("history_fill", "watched videos remembered", "count / history_len"),
    ("region_", "region", "one-hot"),
    ("language_", "language", "one-hot"),
    ("device_", "device", "one-hot"),
    ("signup_topic_", "topic picked at sign-up", "0 or 1"),
    ("estimate_", "the platform's user embedding", "as is"),
    ("history_emb_", "mean embedding of watched videos, weighted by min(watch ratio, 1.5) + 0.05", "unit length"),
    ("history_watch_ratio", "mean watch ratio of watched videos", "as is"),
    ("history_like_rate", "share of watched videos liked", "as is"),
    ("history_skip_rate", "share of watched videos fast-skipped", "as is"),
    ("topic_estimate_", "the platform's preference estimate for the topic", "as is"),
)
_CAND_DOCS = (
    ("emb_", "the video's content embedding", "as is (unit length)"),
    ("p_completion", "ranker: probability of completion", "probability"),
    ("p_like", "ranker: probability of a like", "probability"),
    ("p_share", "ranker: probability of a share", "probability"),
    ("p_comment", "ranker: probability of a comment", "probability"),
    ("p_follow", "ranker: probability of a follow", "probability"),
    ("expected_watch_ratio", "ranker: expected watch ratio", "as is"),
    ("value_score", "ranker: weighted value of the predictions", "as is"),
    ("log_impressions", "impressions so far", "log1p(count) / 10"),
    ("completion_rate", "completion rate", "(completions + 1.2) / (impressions + 3.2)"),
    ("engagement_rate", "engagements per impression", "10 (engagements + 0.1) / (impressions + 2)"),
    ("trend_level", "trend level of the video's sound", "as is"),
    ("log_age_h", "hours since upload", "log1p(hours) / 8"),
    ("log_creator_followers", "the creator's followers", "log1p(count) / 15"),
    ("log_duration_s", "duration", "log(seconds) / 6"),
    ("follows_creator", "whether the user follows the creator", "0 or 1"),
    ("history_similarity", "cosine of the video to the user's history embedding", "dot product"),
    ("recent_engaged_similarity", "largest dot product with a recently engaged video", "max(0, dot)"),
    ("topic_preference", "the user's topic estimate for the video's topic", "as is"),
    ("estimated_affinity", "cosine of the video to the platform's user embedding", "dot / |embedding|"),
    ("source", "retrieval source id (categorical: source_names)", "integer id"),
)


def _doc(name: str, docs: tuple[tuple[str, str, str], ...]) -> dict[str, str]:
    for key, meaning, norm in docs:
        if name == key or (key.endswith("_") and name.startswith(key) and name[len(key):].isdigit()):
            return {"name": name, "meaning": meaning, "normalisation": norm}
    raise KeyError(name)


def feature_schema(cfg: Any) -> dict[str, list[dict[str, str]]]:
    """Every user and candidate feature, in column order: name, meaning, normalisation."""
    return {
        "user": [_doc(n, _USER_DOCS) for n in user_feature_names(cfg)],
        "candidates": [_doc(n, _CAND_DOCS) for n in candidate_feature_names(cfg)],
    }
