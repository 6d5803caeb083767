"""The data-driven world: the real KuaiRand-Pure catalog and users, from a derived world file.

``rl-fyp calibrate`` fits, on the fit days only, everything per video and per user that
cannot live in a YAML file, and writes it to one ``.npz`` (read with ``allow_pickle=False``;
:func:`write_world` makes the bytes a function of the contents alone, so the same data and
seed give the same file). The config names the file and its SHA-256
(``env.world.world_file``, ``env.world.world_sha256``); :func:`load_world` refuses a file
whose checksum differs (stale or edited).

What the file holds (n videos in catalog order, P users, d = latent_dim, C creators):

- the catalog: KuaiRand ``video_id`` per row; topic (first tag, rare tags pooled) and niche
  (a split of the topic by the fitted latent vectors: niches are contiguous blocks of
  rows, as the retrieval index wants); real duration (imputed where missing), author
  (creator), music (sound), upload time; the fitted latent vector (``true_vec``) and bias
  (``quality``: ``0.5 + bias``) of the watch-ratio model; the duration bucket; per-video
  engagement log-odds offsets; the platform's counts from the fit days; co-engagement
  neighbours (nearest latent vectors);
- the population: KuaiRand ``user_id`` per row; the fitted latent vector and bias (one
  interest component with that offset); the favourite topic; the Gamma posterior of the
  session rate (a user's activity is drawn from it at every spawn); per-user engagement
  offsets; the distribution of first-session hours;
- the quantile watch-ratio tables (``response.watch_ratio_model: quantile``): per duration
  bucket, latent knots and the watch ratios they map to;
- the logging policy's per-video exposure bias (``logging_bias``): the simulated stand-in
  for Kuaishou's ranker in calibration and fidelity runs (:mod:`envs.kuairand.simulate`),
  fitted so the simulated exposure of each video follows the fit days'; the env itself
  never reads it (its ranker and the re-ranking policy decide what is shown);
- ``meta``: a JSON string with the KuaiRand credit, the license, the checksums of the
  data files, the seed and the fit days.

A simulated user stands for a KuaiRand user: their appeal for a video is
``<user_vec, true_vec> + user_bias + (quality - 0.5) + ...`` (the fitted watch-ratio model
in normal-score units), and their activity and engagement propensities are their own.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from envs.catalog import N_ENGAGEMENT_OFFSETS, STAGE_GRADUATED, Catalog, _noise, _unit
from envs._io import write_bytes_atomic
from envs.config import ConfigError, EnvConfig
from envs.users import UserProfiles, UserState

__all__ = [
    "KuaiRandCatalog",
    "KuaiRandWorld",
    "REPO_ROOT",
    "WORLD_ARRAYS",
    "WORLD_FORMAT",
    "file_sha256",
    "load_world",
    "resolve_path",
    "write_world",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
"""The repository root: relative world and data paths are resolved from it."""
WORLD_FORMAT = 1
"""Version of the world file layout."""

WORLD_ARRAYS: dict[str, tuple[str, int]] = {
    # name: (dtype kind, ndim)
    "video_id": ("i", 1), "topic": ("i", 1), "niche": ("i", 1), "niche_start": ("i", 1),
    "true_vec": ("f", 2), "quality": ("f", 1), "duration_s": ("f", 1), "duration_imputed": ("b", 1),
    "duration_bucket": ("i", 1), "creator": ("i", 1), "author_id": ("i", 1), "creator_followers": ("f", 1),
    "sound": ("i", 1), "music_id": ("i", 1), "upload_h": ("f", 1), "impressions": ("f", 1),
    "completions": ("f", 1), "engagements": ("f", 1), "i2i": ("i", 2), "eng_offset": ("f", 2),
    "user_id": ("i", 1), "user_vec": ("f", 2), "user_bias": ("f", 1), "user_topic": ("i", 1),
    "activity_shape": ("f", 1), "activity_rate": ("f", 1), "user_eng_offset": ("f", 2),
    "start_hour_cdf": ("f", 1), "wr_knots": ("f", 2), "wr_values": ("f", 2), "duration_edges_s": ("f", 1),
    "logging_bias": ("f", 1),
    "meta": ("U", 0),
}
"""Every array of a world file: its dtype kind and number of dimensions."""


def resolve_path(path: str | os.PathLike[str]) -> Path:
    """An absolute path: as given if absolute, else relative to the repository root."""
    p = Path(path)
    return p if p.is_absolute() else REPO_ROOT / p


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, hex."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_world(path: str | os.PathLike[str], arrays: dict[str, np.ndarray]) -> str:
    """Write a world file deterministically (fixed zip timestamps, sorted entries), atomically.

    Args:
        path: destination ``.npz``; its directory is created.
        arrays: every array of ``WORLD_ARRAYS`` (no object arrays: the file loads without pickle).

    Returns:
        The SHA-256 of the written file.
    """
    missing = sorted(set(WORLD_ARRAYS) - set(arrays))
    extra = sorted(set(arrays) - set(WORLD_ARRAYS))
    if missing or extra:
        raise ValueError(f"world arrays: missing {missing}, unexpected {extra}")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(arrays):
            arr = np.asarray(arrays[name])
            if not arr.flags.c_contiguous:  # (np.ascontiguousarray would turn a 0-d array into 1-d)
                arr = arr.copy(order="C")
            if arr.dtype.kind == "O":
                raise ValueError(f"world array {name!r} is an object array")
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, arr, allow_pickle=False)
    data = buf.getvalue()
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(dest, data)
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class KuaiRandWorld:
    """The arrays of a world file (read-only) and what the simulator builds from them."""

    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> KuaiRandWorld:
        """A world from arrays in memory (as :func:`write_world` takes them), checked."""
        out = {}
        for name, (kind, ndim) in WORLD_ARRAYS.items():
            if name not in arrays:
                raise ValueError(f"world file: missing array {name!r}")
            a = np.asarray(arrays[name])
            ok_kind = a.dtype.kind in ("i", "u") if kind == "i" else a.dtype.kind == kind
            if not ok_kind or a.ndim != ndim:
                raise ValueError(f"world file: array {name!r} has dtype {a.dtype} and {a.ndim} dims")
            a = a.copy()
            a.flags.writeable = False
            out[name] = a
        meta = json.loads(str(out["meta"]))
        if meta.get("format") != WORLD_FORMAT:
            raise ValueError(f"world file: format {meta.get('format')!r}, this rl-fyp reads {WORLD_FORMAT}")
        world = cls(out, meta)
        world._check_shapes()
        return world

    def _check_shapes(self) -> None:
        a = self.arrays
        n, P = len(a["video_id"]), len(a["user_id"])
        for name in ("topic", "niche", "quality", "duration_s", "duration_imputed", "duration_bucket", "creator",
                     "sound", "upload_h", "impressions", "completions", "engagements", "logging_bias"):
            if a[name].shape != (n,):
                raise ValueError(f"world file: {name} has shape {a[name].shape}, expected ({n},)")
        for name in ("user_bias", "user_topic", "activity_shape", "activity_rate"):
            if a[name].shape != (P,):
                raise ValueError(f"world file: {name} has shape {a[name].shape}, expected ({P},)")
        if a["true_vec"].shape[0] != n or a["user_vec"].shape != (P, a["true_vec"].shape[1]):
            raise ValueError("world file: latent vectors of videos and users disagree")
        if a["eng_offset"].shape != (n, N_ENGAGEMENT_OFFSETS) or a["user_eng_offset"].shape != (P, N_ENGAGEMENT_OFFSETS):
            raise ValueError("world file: engagement offsets have the wrong shape")
        if a["wr_knots"].shape != a["wr_values"].shape or a["wr_knots"].shape[0] != len(a["duration_edges_s"]) + 1:
            raise ValueError("world file: watch-ratio tables do not match the duration buckets")
        if np.any(np.diff(a["wr_knots"], axis=1) < 0) or np.any(np.diff(a["wr_values"], axis=1) < 0):
            raise ValueError("world file: watch-ratio tables must be nondecreasing")
        if a["niche_start"][0] != 0 or a["niche_start"][-1] != n or np.any(np.diff(a["niche_start"]) < 4):
            raise ValueError("world file: niche blocks must cover the catalog with >= 4 videos each")

    # ------------------------------------------------------------------ sizes
    @property
    def n_videos(self) -> int:
        """Videos in the catalog."""
        return int(len(self.arrays["video_id"]))

    @property
    def n_users(self) -> int:
        """Users in the population."""
        return int(len(self.arrays["user_id"]))

    @property
    def latent_dim(self) -> int:
        """Dimension of the latent vectors."""
        return int(self.arrays["true_vec"].shape[1])

    @property
    def watch_ratio_table(self) -> tuple[np.ndarray, np.ndarray]:
        """(knots, values), (n_buckets, L) float64 each."""
        return (np.ascontiguousarray(self.arrays["wr_knots"], np.float64),
                np.ascontiguousarray(self.arrays["wr_values"], np.float64))

    @property
    def activity_mean(self) -> float:
        """Population mean of the session rate (the prior's mean), sessions per day."""
        return float(self.meta["activity_prior_mean"])

    def check(self, cfg: EnvConfig) -> None:
        """Raise ConfigError naming the key where `cfg` does not fit this world."""
        c = cfg.catalog
        n_topics = int(self.meta["n_topics"])
        npt = int(self.meta["niches_per_topic"])
        pairs = (
            ("catalog.n_items", c.n_items, self.n_videos),
            ("catalog.latent_dim", c.latent_dim, self.latent_dim),
            ("catalog.n_topics", c.n_topics, n_topics),
            ("catalog.niches_per_topic", c.niches_per_topic, npt),
        )
        for key, got, want in pairs:
            if got != want:
                raise ConfigError(f"env.{key}", f"must be {want} for the world file {cfg.world.world_file}, got {got}")
        n_sounds = int(self.arrays["sound"].max()) + 1
        if c.n_sounds < n_sounds:
            raise ConfigError("env.catalog.n_sounds", f"must be >= {n_sounds} (the world's sounds), got {c.n_sounds}")

    # ------------------------------------------------------------------ building
    def make_catalog(self, cfg: EnvConfig, rng: np.random.Generator) -> KuaiRandCatalog:
        """A catalog of the real videos (a fresh copy of every array it changes)."""
        self.check(cfg)
        return KuaiRandCatalog(cfg, self, rng)

    def profiles(self, rows: np.ndarray, rng: np.random.Generator, cfg: EnvConfig) -> UserProfiles:
        """Profiles of population `rows`, with activity and first-session hour drawn from `rng`."""
        a = self.arrays
        rows = np.asarray(rows, np.int64)
        n, m, d, T = len(rows), cfg.user.max_interests, self.latent_dim, cfg.catalog.n_topics
        f32 = np.float32
        vec = np.zeros((n, m, d), f32)
        vec[:, 0] = a["user_vec"][rows]
        off = np.full((n, m), -9.0, f32)
        off[:, 0] = np.maximum(a["user_bias"][rows], -8.0)  # > -9: the component is in use
        topic = np.zeros((n, m), np.int32)
        topic[:, 0] = a["user_topic"][rows]
        # Activity: a draw from the user's posterior session rate, relative to the population mean.
        lam = rng.gamma(a["activity_shape"][rows], 1.0 / a["activity_rate"][rows])
        activity = np.clip(lam / self.activity_mean, 0.02, 50.0).astype(f32)
        cdf = a["start_hour_cdf"]
        hour = np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), 23)
        start_hour = np.minimum(hour + rng.random(n), 24.0 - 1e-9)
        # The platform knows its existing users: its first estimate points along their latent vector.
        uv = a["user_vec"][rows].astype(np.float64)
        norm = np.linalg.norm(uv, axis=1, keepdims=True)
        u_hat = np.where(norm > 1e-8, 0.5 * uv / np.maximum(norm, 1e-8), 0.0).astype(f32)
        zeros = np.zeros(n, np.int32)
        return UserProfiles(
            interest_vec=vec, interest_off=off, interest_topic=topic, activity=activity,
            region=zeros, language=zeros.copy(), device=zeros.copy(), start_hour=start_hour.astype(np.float64),
            signup=np.zeros((n, T), f32), u_hat=u_hat, p_hat=np.zeros((n, T), f32),
            eng_offset=a["user_eng_offset"][rows].astype(f32),
        )

    def spawn(self, users: UserState, slots: np.ndarray, rng: np.random.Generator,
              rows: np.ndarray | None = None) -> None:
        """Put population users into `slots`: `rows` (one per slot), or drawn at random."""
        if len(slots) == 0:
            return
        if rows is None:
            rows = rng.integers(0, self.n_users, len(slots))
        rows = np.asarray(rows, np.int64)
        if rows.shape != (len(slots),):
            raise ValueError(f"{len(slots)} slots need {len(slots)} population rows, got shape {rows.shape}")
        if len(rows) and (rows.min() < 0 or rows.max() >= self.n_users):
            raise ValueError(f"population rows must be in [0, {self.n_users})")
        users.spawn_known(np.asarray(slots), self.profiles(rows, rng, users.cfg))


class KuaiRandCatalog(Catalog):
    """The real videos as a catalog: the same arrays, index and processes as the synthetic one,
    with no synthetic uploads (the real set is fixed) and no generated content."""

    def __init__(self, cfg: EnvConfig, world: KuaiRandWorld, rng: np.random.Generator) -> None:  # noqa: D107
        c = cfg.catalog
        a = world.arrays
        self.cfg = c
        self.now_h = 0.0
        f32 = np.float32
        n, d, T, G = c.n_items, c.latent_dim, c.n_topics, c.n_niches
        self.world = world
        self.video_id = a["video_id"].astype(np.int32)
        self.niche_start = a["niche_start"].astype(np.int64)
        self.niche = a["niche"].astype(np.int32)
        self.topic = a["topic"].astype(np.int32)
        self.niche_topic = np.repeat(np.arange(T, dtype=np.int32), c.niches_per_topic)
        sizes = np.diff(self.niche_start)
        self.niche_share = sizes / sizes.sum()
        self.true_vec = a["true_vec"].astype(f32)
        sums = np.zeros((G, d))
        np.add.at(sums, self.niche, self.true_vec)
        self.niche_centroid = _unit(sums).astype(f32)
        tsum = np.zeros((T, d))
        np.add.at(tsum, self.niche_topic, self.niche_centroid)
        self.topic_centroid = _unit(tsum).astype(f32)
        self.duration_s = a["duration_s"].astype(f32)
        self.niche_median_s = np.array([np.median(self.duration_s[self.niche == g]) for g in range(G)])
        self.quality = a["quality"].astype(f32)
        self.creator = a["creator"].astype(np.int32)
        self.creator_followers = a["creator_followers"].astype(f32)
        self.sound = a["sound"].astype(np.int32)
        self.region = np.zeros(n, np.int32)  # KuaiRand has no video region
        self.upload_h = a["upload_h"].astype(np.float64)
        # No sound is trending at the start; trends start at catalog.trend_start_per_h.
        self.sound_trend_start_h = np.full(c.n_sounds, -np.inf)
        self.sound_level = np.zeros(c.n_sounds, f32)
        self.stage = np.full(n, STAGE_GRADUATED, np.int8)
        # The platform's content embedding: a noisy view of the fitted vector.
        self.emb = _unit(self.true_vec + _noise(rng, (n, d), c.embedding_noise)).astype(f32)
        self._init_tables()
        self.duration_bucket = a["duration_bucket"].astype(np.int32)
        self.eng_offset = a["eng_offset"].astype(f32)
        self.impressions = a["impressions"].astype(f32)
        self.completions = a["completions"].astype(f32)
        self.engagements = a["engagements"].astype(f32)
        self._update_comp_logit(np.arange(n))
        self._init_creator_recent()
        self.i2i = a["i2i"][:, : c.i2i_neighbours].astype(np.int32)
        if self.i2i.shape[1] < c.i2i_neighbours:
            raise ConfigError("env.catalog.i2i_neighbours", f"must be <= {a['i2i'].shape[1]} for this world file")
        self._init_index()

    def upload(self, niches: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The real catalog takes no synthetic uploads (``catalog.uploads_per_h`` is 0)."""
        raise RuntimeError("the KuaiRand catalog is the fixed set of real videos: no synthetic uploads")


_CACHE: dict[tuple[str, str], KuaiRandWorld] = {}


def load_world(cfg: EnvConfig) -> KuaiRandWorld:
    """The world file of ``cfg.world``, checked against its recorded SHA-256 (cached per file and checksum).

    Raises:
        ConfigError: A missing file (``env.world.world_file``), a checksum other than the
            recorded one (``env.world.world_sha256``), or a file that is not a world file.
    """
    w = cfg.world
    path = resolve_path(w.world_file)
    if not path.is_file():
        raise ConfigError("env.world.world_file", f"world file {path} not found (rl-fyp calibrate writes it)")
    key = (str(path), w.world_sha256)
    if key in _CACHE:
        return _CACHE[key]
    sha = file_sha256(path)
    if sha != w.world_sha256:
        raise ConfigError(
            "env.world.world_sha256",
            f"the world file {path} has SHA-256 {sha}, the config expects {w.world_sha256}: "
            "the file is stale or was changed; run rl-fyp calibrate to regenerate it with its config",
        )
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        world = KuaiRandWorld.from_arrays(arrays)
    except (ValueError, OSError, zipfile.BadZipFile) as e:
        raise ConfigError("env.world.world_file", f"{path} is not a readable world file: {e}") from None
    _CACHE[key] = world
    return world
