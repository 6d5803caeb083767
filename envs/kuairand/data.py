"""Loading KuaiRand-Pure: the standard-exposure log and the user / video feature files.

Every file is read with ``pyarrow.csv`` under an explicit schema (``LOG_COLUMNS``,
``VIDEO_COLUMNS``, ``USER_COLUMNS``, ``VIDEO_STAT_COLUMNS``): a missing or unexpected
column, or a value that does not parse as its column's type, raises :class:`DataError`
naming the file and the column. Exact duplicate log rows (present upstream) are dropped
and counted; rows with ``duration_ms == 0`` are kept for the session statistics (they are
activity) but have no watch ratio, and are counted too (:class:`LoadReport`).

The split convention of this project: ``FIT_DATES`` (2022-04-25 .. 05-03) are for fitting,
``HELDOUT_DATES`` (2022-05-04 .. 05-08) for testing a fitted model. A :class:`FeedLog` knows
which days it holds, and :func:`require_fit_days` refuses one that reaches into the
held-out days: every fitting function calls it.

Data: KuaiRand (Gao et al., CIKM 2022, https://kuairand.com), CC BY-SA 4.0.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

__all__ = [
    "ATTRIBUTION",
    "DataError",
    "FIT_DATES",
    "FeedLog",
    "HELDOUT_DATES",
    "KuaiRandData",
    "LICENSE_NOTE",
    "LOG_COLUMNS",
    "LOG_FILE",
    "LoadReport",
    "SIGNALS",
    "USER_COLUMNS",
    "USER_FILE",
    "VIDEO_COLUMNS",
    "VIDEO_FILE",
    "VIDEO_STAT_COLUMNS",
    "VIDEO_STAT_FILE",
    "data_checksums",
    "column_array",
    "column_strings",
    "load_kuairand",
    "read_table",
    "require_fit_days",
]

ATTRIBUTION = (
    "Derived from KuaiRand-Pure (Gao et al., \"KuaiRand: An Unbiased Sequential Recommendation "
    "Dataset with Randomly Exposed Videos\", CIKM 2022; https://kuairand.com, "
    "github.com/chongminggao/KuaiRand)."
)
"""The credit every derived file carries."""
LICENSE_NOTE = "License: CC BY-SA 4.0 (https://creativecommons.org/licenses/by-sa/4.0/), as the data it derives from."
"""The license note every derived file carries."""

LOG_FILE = "log_standard_4_25_to_5_08_pure.csv.gz"
USER_FILE = "user_features_pure.csv"
VIDEO_FILE = "video_features_basic_pure.csv"
VIDEO_STAT_FILE = "video_features_statistic_pure.csv.gz"

FIT_DATES: tuple[int, ...] = (20220425, 20220426, 20220427, 20220428, 20220429, 20220430, 20220501, 20220502, 20220503)
"""Days the model is fitted on (yyyymmdd)."""
HELDOUT_DATES: tuple[int, ...] = (20220504, 20220505, 20220506, 20220507, 20220508)
"""Days held out for the fidelity report; never fitted on."""

_I8, _I16, _I32, _I64, _F64, _STR = pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.float64(), pa.string()

LOG_COLUMNS: dict[str, pa.DataType] = {
    "user_id": _I32, "video_id": _I32, "date": _I32, "hourmin": _I32, "time_ms": _I64,
    "is_click": _I8, "is_like": _I8, "is_follow": _I8, "is_comment": _I8, "is_forward": _I8,
    "is_hate": _I8, "long_view": _I8, "play_time_ms": _I64, "duration_ms": _I64,
    "profile_stay_time": _I64, "comment_stay_time": _I64, "is_profile_enter": _I8, "is_rand": _I8, "tab": _I16,
}
"""The 19 columns of the standard log and their types."""
_LOG_FLAGS = ("is_click", "is_like", "is_follow", "is_comment", "is_forward", "is_hate", "long_view",
              "is_profile_enter", "is_rand")

VIDEO_COLUMNS: dict[str, pa.DataType] = {
    "video_id": _I32, "author_id": _I64, "video_type": _STR, "upload_dt": _STR, "upload_type": _STR,
    "visible_status": _F64, "video_duration": _F64, "server_width": _F64, "server_height": _F64,
    "music_id": _I64, "music_type": _F64, "tag": _STR,
}
"""Columns of the basic video features (``video_duration`` in ms, missing for some videos;
``tag``: comma-separated category ids)."""

USER_COLUMNS: dict[str, pa.DataType] = {
    "user_id": _I32, "user_active_degree": _STR, "is_lowactive_period": _I8, "is_live_streamer": _I32,
    "is_video_author": _I8, "follow_user_num": _I64, "follow_user_num_range": _STR, "fans_user_num": _I64,
    "fans_user_num_range": _STR, "friend_user_num": _I64, "friend_user_num_range": _STR,
    "register_days": _I64, "register_days_range": _STR,
    **{f"onehot_feat{j}": (_F64 if j in (4, 12, 13, 14, 15, 16, 17) else _I64) for j in range(18)},
}
"""Columns of the user features (the one-hot features are anonymised codes)."""

_STAT_NAMES = (
    "show_cnt,show_user_num,play_cnt,play_user_num,play_duration,complete_play_cnt,complete_play_user_num,"
    "valid_play_cnt,valid_play_user_num,long_time_play_cnt,long_time_play_user_num,short_time_play_cnt,"
    "short_time_play_user_num,play_progress,comment_stay_duration,like_cnt,like_user_num,click_like_cnt,"
    "double_click_cnt,cancel_like_cnt,cancel_like_user_num,comment_cnt,comment_user_num,direct_comment_cnt,"
    "reply_comment_cnt,delete_comment_cnt,delete_comment_user_num,comment_like_cnt,comment_like_user_num,"
    "follow_cnt,follow_user_num,cancel_follow_cnt,cancel_follow_user_num,share_cnt,share_user_num,"
    "download_cnt,download_user_num,report_cnt,report_user_num,reduce_similar_cnt,reduce_similar_user_num,"
    "collect_cnt,collect_user_num,cancel_collect_cnt,cancel_collect_user_num,direct_comment_user_num,"
    "reply_comment_user_num,share_all_cnt,share_all_user_num,outsite_share_all_cnt"
).split(",")
VIDEO_STAT_COLUMNS: dict[str, pa.DataType] = {"video_id": _I32, "counts": _I64, **{c: _F64 for c in _STAT_NAMES}}
"""Columns of the video statistics file (loaded and checked; not fitted on: its counts are
aggregated over a period that overlaps the held-out days)."""

SIGNALS: dict[str, str] = {
    "like": "is_like",
    "follow": "is_follow",
    "comment": "is_comment",
    "forward": "is_forward",
    "hate": "is_hate",
    "profile_enter": "is_profile_enter",
}
"""Engagement signals of the report -> their log column."""


class DataError(ValueError):
    """A KuaiRand file that is missing, or does not match its schema; the message names file and column."""


@dataclass(frozen=True)
class FeedLog:
    """An impression log, real or simulated: one entry per impression, all arrays (n,).

    Attributes:
        user: int32 user id (KuaiRand ``user_id``; for a simulated log the population row's id).
        video: int32 KuaiRand ``video_id``.
        date: int32 local day, yyyymmdd.
        time_ms: int64 impression time in ms (differences are what the statistics use).
        play_ms, duration_ms: int64 play time and video duration, ms (duration 0: unknown).
        like, follow, comment, forward, hate, profile_enter, long_view: bool signals.
        dates: the days the log covers (its window), sorted; a day without impressions
            still belongs to the window.
    """

    user: np.ndarray
    video: np.ndarray
    date: np.ndarray
    time_ms: np.ndarray
    play_ms: np.ndarray
    duration_ms: np.ndarray
    like: np.ndarray
    follow: np.ndarray
    comment: np.ndarray
    forward: np.ndarray
    hate: np.ndarray
    profile_enter: np.ndarray
    long_view: np.ndarray
    dates: tuple[int, ...] = field(default=())

    def __len__(self) -> int:
        return int(len(self.user))

    def select(self, mask: np.ndarray, dates: tuple[int, ...] | None = None) -> FeedLog:
        """The impressions where `mask` holds (and, if given, the new window `dates`)."""
        arrays = {f.name: getattr(self, f.name)[mask] for f in fields(self) if f.name != "dates"}
        return FeedLog(**arrays, dates=self.dates if dates is None else tuple(dates))

    def days(self, dates: tuple[int, ...]) -> FeedLog:
        """The impressions dated within `dates`, as a log whose window is `dates`."""
        return self.select(np.isin(self.date, np.asarray(dates, np.int32)), tuple(sorted(dates)))

    def sorted(self) -> FeedLog:
        """The same log ordered by user, then time (stable)."""
        order = np.lexsort((self.time_ms, self.user))
        return self.select(order)

    def with_dates(self, dates: tuple[int, ...]) -> FeedLog:
        """The same impressions with the window `dates`."""
        return replace(self, dates=tuple(sorted(dates)))


def require_fit_days(log: FeedLog, what: str = "fitting") -> None:
    """Refuse a log that reaches beyond the fit days (the held-out days are never fitted on).

    Raises:
        ValueError: If the log's window or any impression's date is not a fit day.
    """
    bad_window = sorted(set(log.dates) - set(FIT_DATES))
    bad_rows = np.setdiff1d(np.unique(log.date), np.asarray(FIT_DATES, np.int32))
    if bad_window or len(bad_rows):
        days = sorted(set(bad_window) | set(int(d) for d in bad_rows))
        raise ValueError(f"{what} must use the fit days {FIT_DATES[0]}..{FIT_DATES[-1]} only; got days {days}")


@dataclass(frozen=True)
class LoadReport:
    """What loading found in the files (counts)."""

    log_rows_read: int
    duplicate_rows: int
    zero_duration_rows: int
    log_rows: int
    log_users: int
    log_videos: int
    dates: tuple[int, ...]
    videos: int
    videos_missing_duration: int
    videos_missing_tag: int
    users: int

    def as_dict(self) -> dict[str, object]:
        """JSON-able counts."""
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}


@dataclass(frozen=True)
class KuaiRandData:
    """The loaded files: the log (deduplicated), the tables, and what loading counted."""

    log: FeedLog
    videos: pa.Table
    users: pa.Table
    video_stats: pa.Table
    report: LoadReport
    checksums: dict[str, str]

    def fit_log(self) -> FeedLog:
        """The fit days' impressions (window ``FIT_DATES``)."""
        log = self.log.days(FIT_DATES)
        require_fit_days(log)
        return log

    def heldout_log(self) -> FeedLog:
        """The held-out days' impressions (window ``HELDOUT_DATES``)."""
        return self.log.days(HELDOUT_DATES)


def _header(path: Path) -> list[str]:
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8", newline="") as fh:  # type: ignore[operator]
            line = fh.readline()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path.name}: cannot read the header: {e}") from None
    import csv

    return next(csv.reader([line]), [])


def read_table(path: str | Path, columns: dict[str, pa.DataType], renames: dict[str, str] | None = None) -> pa.Table:
    """Read one CSV file under an explicit schema.

    Args:
        path: the file (``.csv`` or ``.csv.gz``).
        columns: every column the file must hold, in any order, with its type.
        renames: accepted alternative header names -> the schema name.

    Returns:
        A table with exactly `columns`, typed.

    Raises:
        DataError: A missing file, a missing, repeated or unexpected column, or a value that
            does not parse as its column's type.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    header = _header(path)
    renames = renames or {}
    names = [renames.get(h, h) for h in header]
    missing = [c for c in columns if c not in names]
    unexpected = [h for h, n in zip(header, names) if n not in columns]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if missing:
        raise DataError(f"{path.name}: missing column {missing[0]!r} (expected {len(columns)} columns: {', '.join(columns)})")
    if unexpected:
        raise DataError(f"{path.name}: unexpected column {unexpected[0]!r}")
    if repeated:
        raise DataError(f"{path.name}: column {repeated[0]!r} appears more than once")
    read = pcsv.ReadOptions(column_names=names, skip_rows=1)
    convert = pcsv.ConvertOptions(column_types=columns, strings_can_be_null=False, quoted_strings_can_be_null=False)
    try:
        table = pcsv.read_csv(path, read_options=read, convert_options=convert)
    except pa.ArrowInvalid as e:
        msg = str(e)
        m = re.search(r"column #(\d+)", msg)
        col = names[int(m.group(1))] if m and int(m.group(1)) < len(names) else "?"
        detail = msg.split(": ", 1)[-1] if m else msg
        raise DataError(f"{path.name}: column {col!r} (type {columns.get(col, '?')}): {detail}") from None
    return table.select(list(columns))


def column_array(table: pa.Table, name: str) -> np.ndarray:
    """One column as a numpy array (nulls of float columns as NaN)."""
    col = table.column(name)
    if col.num_chunks == 0:
        return np.zeros(0, np.float64)
    return np.concatenate([chunk.to_numpy(zero_copy_only=False) for chunk in col.chunks])


def _np(table: pa.Table, name: str, dtype=None) -> np.ndarray:
    col = table.column(name)
    if col.null_count:
        raise DataError(f"column {name!r}: {col.null_count} missing values")
    out = column_array(table, name)
    return out if dtype is None else out.astype(dtype, copy=False)


def _check(cond: bool, file: str, column: str, reason: str) -> None:
    if not cond:
        raise DataError(f"{file}: column {column!r}: {reason}")


def data_checksums(data_dir: str | Path) -> dict[str, str]:
    """SHA-256 of every data file (the four CSV files), by name."""
    out = {}
    for name in (LOG_FILE, USER_FILE, VIDEO_FILE, VIDEO_STAT_FILE):
        path = Path(data_dir) / name
        if not path.is_file():
            raise DataError(f"{path}: file not found")
        out[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def load_kuairand(data_dir: str | Path) -> KuaiRandData:
    """Load and validate the four KuaiRand-Pure files of `data_dir`.

    Raises:
        DataError: A missing file or column, a bad type or value, or ids in the log that the
            feature files do not know.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: data directory not found")
    checksums = data_checksums(data_dir)
    videos = read_table(data_dir / VIDEO_FILE, VIDEO_COLUMNS)
    users = read_table(data_dir / USER_FILE, USER_COLUMNS)
    stats = read_table(data_dir / VIDEO_STAT_FILE, VIDEO_STAT_COLUMNS, renames={"follow_user_num1": "follow_user_num"})
    raw = read_table(data_dir / LOG_FILE, LOG_COLUMNS)

    video_ids = _np(videos, "video_id", np.int64)
    user_ids = _np(users, "user_id", np.int64)
    _check(len(np.unique(video_ids)) == len(video_ids), VIDEO_FILE, "video_id", "ids must be unique")
    _check(len(np.unique(user_ids)) == len(user_ids), USER_FILE, "user_id", "ids must be unique")
    _check(bool(np.all(video_ids >= 0)), VIDEO_FILE, "video_id", "ids must be >= 0")
    dur = column_array(videos, "video_duration")
    _check(bool(np.all(np.isnan(dur) | (dur > 0))), VIDEO_FILE, "video_duration", "must be > 0 where given")

    # Exact duplicates: every one of the 19 columns equal.
    n_read = raw.num_rows
    cols = {name: _np(raw, name) for name in LOG_COLUMNS}
    for name in _LOG_FLAGS:
        _check(bool(np.isin(cols[name], (0, 1)).all()), LOG_FILE, name, "must be 0 or 1")
    for name in ("play_time_ms", "duration_ms", "profile_stay_time", "comment_stay_time", "time_ms"):
        _check(bool((cols[name] >= 0).all()), LOG_FILE, name, "must be >= 0")
    _check(bool(np.isin(cols["user_id"], user_ids).all()), LOG_FILE, "user_id", f"holds ids missing from {USER_FILE}")
    _check(bool(np.isin(cols["video_id"], video_ids).all()), LOG_FILE, "video_id", f"holds ids missing from {VIDEO_FILE}")
    dates = np.unique(cols["date"])
    _check(bool(((dates >= 20000101) & (dates <= 20991231)).all()), LOG_FILE, "date", "must be yyyymmdd")
    keep = _first_of_duplicates(cols)
    n_dup = int(n_read - keep.sum())
    c = {k: v[keep] for k, v in cols.items()}
    order = np.lexsort((c["time_ms"], c["user_id"]))
    c = {k: v[order] for k, v in c.items()}
    log = FeedLog(
        user=c["user_id"].astype(np.int32), video=c["video_id"].astype(np.int32), date=c["date"].astype(np.int32),
        time_ms=c["time_ms"].astype(np.int64), play_ms=c["play_time_ms"].astype(np.int64),
        duration_ms=c["duration_ms"].astype(np.int64),
        **{s: c[col].astype(bool) for s, col in SIGNALS.items()}, long_view=c["long_view"].astype(bool),
        dates=tuple(int(d) for d in np.unique(c["date"])),
    )
    tags = column_strings(videos, "tag")
    report = LoadReport(
        log_rows_read=int(n_read),
        duplicate_rows=n_dup,
        zero_duration_rows=int((log.duration_ms == 0).sum()),
        log_rows=len(log),
        log_users=int(len(np.unique(log.user))),
        log_videos=int(len(np.unique(log.video))),
        dates=log.dates,
        videos=int(videos.num_rows),
        videos_missing_duration=int(np.isnan(dur).sum()),
        videos_missing_tag=int(sum(1 for t in tags if not str(t).strip())),
        users=int(users.num_rows),
    )
    return KuaiRandData(log=log, videos=videos, users=users, video_stats=stats, report=report, checksums=checksums)


def _first_of_duplicates(cols: dict[str, np.ndarray]) -> np.ndarray:
    """(n,) bool: True for the first of each group of identical rows (in file order)."""
    n = len(next(iter(cols.values())))
    keys = [cols[name] for name in reversed(list(cols))]
    order = np.lexsort(keys)  # stable: among equal rows, file order is kept
    same = np.ones(n - 1, bool) if n > 1 else np.zeros(0, bool)
    for v in cols.values():
        s = v[order]
        same &= s[1:] == s[:-1]
    first = np.ones(n, bool)
    first[order[1:][same]] = False
    return first


def column_strings(table: pa.Table, name: str) -> list[str]:
    """A string column as Python strings (empty for missing)."""
    return [str(v) for v in pc.fill_null(table.column(name), "").to_pylist()]
