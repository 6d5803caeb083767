"""KuaiRand calibration: loader validation, log statistics, the fit/held-out split, the
data-driven world, calibration determinism, the fidelity report and the CLI commands.

The quick calibrations run on a subset of the users (``CalibrationSettings(users=...)``)
with one round and one replica; the real files are the committed copy in
``data/kuairand_pure_partial``.
"""

from __future__ import annotations

import csv
import gzip
import json
import warnings
from dataclasses import replace
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs.config import ConfigError
from envs.feed_env import make_env_config
from envs.kuairand.data import (
    FIT_DATES,
    HELDOUT_DATES,
    LOG_COLUMNS,
    LOG_FILE,
    USER_COLUMNS,
    USER_FILE,
    VIDEO_COLUMNS,
    VIDEO_FILE,
    VIDEO_STAT_COLUMNS,
    VIDEO_STAT_FILE,
    DataError,
    load_kuairand,
    require_fit_days,
)
from envs.kuairand.stats import auc, cut_sessions, daily_return, fast_skip, ks_2samp, long_view_rule
from envs.kuairand.world import KuaiRandWorld, file_sha256, load_world, write_world
from envs.response import watch_ratio_from_latent
from rl_fyp.config import REPO_ROOT, load_config

DATA = REPO_ROOT / "data" / "kuairand_pure_partial"


# ---------------------------------------------------------------------- a tiny dataset
def _log_row(**kw) -> dict:
    row = {c: 0 for c in LOG_COLUMNS}
    row.update(user_id=0, video_id=0, date=20220425, hourmin=1200, time_ms=1_650_859_200_000,
               play_time_ms=5000, duration_ms=10000, tab=1)
    row.update(kw)
    return row


def _write_csv(path: Path, header: list[str], rows: list[list], gz: bool = False) -> None:
    opener = gzip.open if gz else open
    with opener(path, "wt", newline="", encoding="utf-8") as fh:  # type: ignore[operator]
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def _dataset(tmp: Path, log_rows: list[dict], *, log_header: list[str] | None = None) -> Path:
    """A four-file KuaiRand directory: 2 videos, 2 users, the given log rows."""
    tmp.mkdir(parents=True, exist_ok=True)
    vh = list(VIDEO_COLUMNS)
    videos = [[0, 11, "NORMAL", "2022-04-10", "Web", 0.0, 10000.0, 720.0, 1280.0, 5, 9.0, "3"],
              [1, 12, "NORMAL", "2022-04-10", "Web", 0.0, "", 720.0, 1280.0, 6, 9.0, "3,7"]]
    _write_csv(tmp / VIDEO_FILE, vh, videos)
    uh = list(USER_COLUMNS)
    user = {c: 0 for c in uh}
    user.update(user_active_degree="full_active", follow_user_num_range="0", fans_user_num_range="0",
                friend_user_num_range="0", register_days_range="730+")
    _write_csv(tmp / USER_FILE, uh, [[{**user, "user_id": u}[c] for c in uh] for u in (0, 1)])
    sh = list(VIDEO_STAT_COLUMNS)
    _write_csv(tmp / VIDEO_STAT_FILE, sh, [[v] + [0] * (len(sh) - 1) for v in (0, 1)], gz=True)
    header = log_header or list(LOG_COLUMNS)
    _write_csv(tmp / LOG_FILE, header, [[r.get(c, 0) for c in header] for r in log_rows], gz=True)
    return tmp


def test_loader_counts_duplicates_and_zero_durations(tmp_path):
    rows = [
        _log_row(user_id=0, time_ms=1_650_859_200_000),
        _log_row(user_id=0, time_ms=1_650_859_200_000),  # exact duplicate of the first
        _log_row(user_id=1, video_id=1, duration_ms=0, play_time_ms=0, time_ms=1_650_859_300_000),
        _log_row(user_id=1, time_ms=1_650_859_400_000, is_like=1, date=20220505),
    ]
    data = load_kuairand(_dataset(tmp_path / "d", rows))
    r = data.report
    assert (r.log_rows_read, r.duplicate_rows, r.zero_duration_rows, r.log_rows) == (4, 1, 1, 3)
    assert r.videos_missing_duration == 1 and r.users == 2 and r.videos == 2
    assert len(data.fit_log()) == 2 and len(data.heldout_log()) == 1
    assert data.heldout_log().like.tolist() == [True]
    assert set(data.checksums) == {LOG_FILE, USER_FILE, VIDEO_FILE, VIDEO_STAT_FILE}


@pytest.mark.parametrize(
    "change, message",
    [
        ("drop play_time_ms", r"missing column 'play_time_ms'"),
        ("rename tab", r"missing column 'tab'"),
        ("extra column", r"unexpected column 'extra'"),
        ("bad duration", r"column 'duration_ms' \(type int64\)"),
        ("bad flag", r"column 'is_like': must be 0 or 1"),
        ("unknown video", r"column 'video_id': holds ids missing"),
    ],
)
def test_loader_rejects_bad_files_naming_the_column(tmp_path, change, message):
    rows = [_log_row(), _log_row(user_id=1, time_ms=1_650_859_300_000)]
    header = list(LOG_COLUMNS)
    if change == "drop play_time_ms":
        header.remove("play_time_ms")
    elif change == "rename tab":
        header[header.index("tab")] = "tabs"
        rows = [{**r, "tabs": 1} for r in rows]
    elif change == "extra column":
        header.append("extra")
    elif change == "bad duration":
        rows[1]["duration_ms"] = "12.5s"
    elif change == "bad flag":
        rows[0]["is_like"] = 2
    elif change == "unknown video":
        rows[0]["video_id"] = 99
    with pytest.raises(DataError, match=message):
        load_kuairand(_dataset(tmp_path / "d", rows, log_header=header))


def test_loader_missing_directory_and_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_kuairand(tmp_path / "nowhere")
    d = _dataset(tmp_path / "d", [_log_row()])
    (d / USER_FILE).unlink()
    with pytest.raises(DataError, match=USER_FILE):
        load_kuairand(d)


# ---------------------------------------------------------------------- statistics
def test_cut_sessions_on_a_hand_made_log():
    m = 60_000
    user = np.array([1, 1, 1, 1, 2, 2])
    t = np.array([0, 10 * m, 40 * m, 80 * m, 0, 31 * m])
    # user 1: gaps 10, 30 (not more than 30: same session), 40 min (a new one); user 2: 31 min.
    s = cut_sessions(user, t)
    assert s.length.tolist() == [3, 1, 1, 1]
    assert s.user.tolist() == [1, 1, 2, 2]
    np.testing.assert_allclose(s.return_gap_h, [40 / 60, 31 / 60])
    assert s.row_session.tolist() == [0, 0, 0, 1, 2, 3]
    with pytest.raises(ValueError, match="ordered"):
        cut_sessions(np.array([2, 1]), np.array([0, 0]))


def test_daily_return_fast_skip_long_view():
    # user 1 on days 1, 2; user 2 on days 1, 3; day 3 is the last day. The (user, day) pairs
    # before it: (1, d1) -> back on d2, (1, d2) -> not on d3, (2, d1) -> not on d2: 1 of 3.
    user = np.array([1, 1, 2, 2])
    date = np.array([20220501, 20220502, 20220501, 20220503])
    assert daily_return(user, date, (20220501, 20220502, 20220503)) == pytest.approx(1 / 3)
    assert fast_skip(np.array([0, 1999, 2000])).tolist() == [True, True, False]
    # 18 s or the whole of a shorter video.
    assert long_view_rule(np.array([18000, 17999, 9000, 8999]), np.array([60000, 60000, 9000, 9000])).tolist() == [
        True, False, True, False]


def test_ks_and_auc_against_brute_force():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 5, 40).astype(float), rng.integers(1, 6, 30).astype(float)
    grid = np.union1d(a, b)
    brute = max(abs((a <= x).mean() - (b <= x).mean()) for x in grid)
    assert ks_2samp(a, b) == pytest.approx(brute)
    score, label = rng.integers(0, 4, 50).astype(float), rng.random(50) < 0.4
    pos, neg = score[label], score[~label]
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert auc(score, label) == pytest.approx(pairs)


def test_quantile_table_lookup():
    knots = np.array([[-1.0, 0.0, 1.0], [0.0, 0.0, 2.0]])
    values = np.array([[0.0, 0.5, 2.0], [0.1, 0.2, 0.4]])
    got = watch_ratio_from_latent(np.array([-5.0, -0.5, 0.5, 9.0, 1.0]), np.array([0, 0, 0, 0, 1]), knots, values)
    np.testing.assert_allclose(got, [0.0, 0.25, 1.25, 2.0, 0.3])


# ---------------------------------------------------------------------- the split
@pytest.fixture(scope="module")
def data():
    return load_kuairand(DATA)


def test_split_days(data):
    fit, held = data.fit_log(), data.heldout_log()
    assert set(np.unique(fit.date)) <= set(FIT_DATES) and fit.dates == FIT_DATES
    assert set(np.unique(held.date)) <= set(HELDOUT_DATES) and held.dates == HELDOUT_DATES
    assert len(fit) + len(held) == len(data.log)
    require_fit_days(fit)
    with pytest.raises(ValueError, match="fit days"):
        require_fit_days(held)
    with pytest.raises(ValueError, match="20220504"):
        require_fit_days(data.log)


# ---------------------------------------------------------------------- calibration
def _corrupt_heldout(data):
    """The same data with every held-out impression's response scrambled."""
    log = data.log
    held = np.isin(log.date, np.asarray(HELDOUT_DATES))
    rng = np.random.default_rng(5)
    play = np.where(held, rng.integers(0, 100_000, len(log)), log.play_ms)
    like = np.where(held, ~log.like, log.like)
    return replace(data, log=replace(log, play_ms=play, like=like))


@pytest.fixture(scope="module")
def small_calibration(data):
    from envs.kuairand.fit import CalibrationSettings, calibrate

    settings = CalibrationSettings(users=400, rounds=1, replicas=1, seed=3)
    return settings, calibrate(data, settings)


def test_calibration_is_deterministic_and_never_reads_heldout_days(data, small_calibration, tmp_path):
    from envs.kuairand.fit import calibrate

    settings, a = small_calibration
    b = calibrate(_corrupt_heldout(data), settings)  # held-out days changed: nothing may move
    assert a.env_overrides == b.env_overrides
    assert set(a.world_arrays) == set(b.world_arrays)
    for k in a.world_arrays:
        np.testing.assert_array_equal(a.world_arrays[k], b.world_arrays[k], err_msg=k)
    sha_a = write_world(tmp_path / "a.npz", a.world_arrays)
    sha_b = write_world(tmp_path / "b.npz", b.world_arrays)
    assert sha_a == sha_b == file_sha256(tmp_path / "a.npz")
    meta = json.loads(str(a.world_arrays["meta"]))
    assert meta["fit_dates"] == list(FIT_DATES) and "CC BY-SA 4.0" in meta["license"] and "KuaiRand" in meta["attribution"]
    assert a.targets.dates == FIT_DATES
    # The fitted rates come from the fit days (the corrupted held-out like rate would be ~100%).
    assert a.targets.rates["like"] < 0.1
    # The world file loads without pickle and holds what was written.
    with np.load(tmp_path / "a.npz", allow_pickle=False) as z:
        assert sorted(z.files) == sorted(a.world_arrays)
        assert z["meta"].shape == ()


def _small_env(calibration, world_file: Path, sha: str):
    env = dict(calibration.env_overrides)
    env["world"] = {"source": "kuairand", "world_file": str(world_file), "world_sha256": sha, "data_dir": str(DATA)}
    return make_env_config(env)


def test_world_file_checksum_and_config_checks(small_calibration, tmp_path):
    _, cal = small_calibration
    path = tmp_path / "w.npz"
    sha = write_world(path, cal.world_arrays)
    cfg = _small_env(cal, path, sha)
    world = load_world(cfg)
    assert world.n_videos == 7583 and world.n_users == 400
    with pytest.raises(ConfigError, match="stale") as err:
        load_world(make_env_config(cfg, {"world.world_sha256": "f" * 64}))
    assert err.value.key == "env.world.world_sha256"
    with pytest.raises(ConfigError) as err:
        world.check(make_env_config(cfg, {"catalog.latent_dim": 12}))
    assert err.value.key == "env.catalog.latent_dim"
    with pytest.raises(ConfigError, match="world_sha256"):
        make_env_config(None, {"world.source": "kuairand", "world.world_file": "x.npz"})
    with pytest.raises(ConfigError, match="quantile needs world.source"):
        make_env_config(None, {"response.watch_ratio_model": "quantile"})


def test_calibrated_world_builds_steps_and_is_deterministic(assert_same, random_slates):
    cfg = load_config("kuairand", ["env.horizon_days=1"]).env
    assert cfg.world.source == "kuairand"
    env = envs.FeedEnv(config=cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env, skip_render_check=True)

    def rollout(seed):
        venv = envs.FeedVectorEnv(num_envs=32, config=cfg)
        rng = np.random.default_rng(seed)
        out = [venv.reset(seed=seed)]
        for _ in range(12):
            out.append(venv.step(random_slates(rng, out[-1][0]["mask"], cfg.slate_size)))
        return out, venv

    a, venv = rollout(4)
    b, _ = rollout(4)
    assert_same(a, b)
    sim = venv.sim
    assert len(sim.catalog.video_id) == cfg.catalog.n_items == 7583
    assert set(np.unique(sim.users.interest_off[:, 0])) <= set(sim.world.arrays["user_bias"].astype(np.float32).tolist()) | {-8.0}
    fb = a[-1][4]["feedback"]
    assert np.all(fb["watch_ratio"] <= 3.0 + 1e-6) and np.all(fb["watch_ratio"] >= 0.0)


def test_fidelity_report_structure(data, small_calibration, tmp_path):
    from envs.kuairand.fidelity import fidelity_report, format_report, write_report

    _, cal = small_calibration
    path = tmp_path / "w.npz"
    cfg = _small_env(cal, path, write_world(path, cal.world_arrays))
    report = fidelity_report(cfg, data, seed=1, replicas=1, out_dir=tmp_path)
    assert set(report["signal_rates"]) == {"like", "follow", "comment", "forward", "hate", "profile_enter",
                                           "long_view", "fast_skip"}
    for v in report["signal_rates"].values():
        assert set(v) >= {"heldout", "simulated", "rel_error", "met", "heldout_ci95"}
    assert [b["bucket"] for b in report["watch_ratio"]["buckets"]] == ["<15s", "15-30s", "30-60s", "60-120s", ">=120s"]
    assert 0.0 <= report["return_gap"]["ks"] <= 1.0
    for k in ("long_view", "like"):
        assert 0.0 <= report["prediction"][k]["model_auc"] <= 1.0
        assert 0.0 <= report["prediction"][k]["popularity_auc"] <= 1.0
    assert report["bars_total"] == len(report["bars"]) == 8 + 5 + 1 + 2
    assert all(isinstance(b["met"], bool) for b in report["bars"])
    assert report["heldout_dates"] == list(HELDOUT_DATES)
    text = format_report(report)
    assert "MET" in text and "CC BY-SA 4.0" in text
    j, m = write_report(report, tmp_path)
    assert json.loads(j.read_text())["bars_total"] == report["bars_total"]
    assert {Path(p).name for p in report["plots"]} == {"watch_ratio_cdf.png", "session_length.png", "return_gap_cdf.png"}
    # A world fitted on held-out days is refused.
    arrays = dict(cal.world_arrays)
    meta = json.loads(str(arrays["meta"]))
    arrays["meta"] = np.array(json.dumps({**meta, "fit_dates": list(FIT_DATES) + [HELDOUT_DATES[0]]}))
    with pytest.raises(ValueError, match="held-out"):
        fidelity_report(cfg, data, world=KuaiRandWorld.from_arrays(arrays), replicas=1)


def test_gym_make_with_the_calibrated_config():
    cfg = load_config("kuairand").env
    env = gym.make(envs.ENV_ID, config=cfg)
    obs, _ = env.reset(seed=0)
    assert obs["candidates"].shape == (cfg.retrieval.n_candidates, len(obs["candidates"][0]))


# ---------------------------------------------------------------------- the command line
def test_cli_calibrate_and_fidelity(tmp_path, capsys):
    from rl_fyp.cli import main

    out_yaml, world = tmp_path / "k.yaml", tmp_path / "k.npz"
    args = ["calibrate", "--data", str(DATA), "--out", str(out_yaml), "--world", str(world),
            "--users", "300", "--rounds", "1", "--replicas", "1"]
    assert main(args) == 0
    text = out_yaml.read_text()
    assert "KuaiRand" in text and "CC BY-SA 4.0" in text
    cfg = load_config(out_yaml)
    assert cfg.env.world.world_sha256 == file_sha256(world)
    capsys.readouterr()
    assert main(["fidelity", "--config", str(out_yaml), "--out", str(tmp_path / "fid"), "--replicas", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["bars_total"] == 16
    assert (tmp_path / "fid" / "fidelity.json").is_file() and (tmp_path / "fid" / "fidelity.md").is_file()
    assert (tmp_path / "fid" / "plots" / "return_gap_cdf.png").is_file()


def test_cli_bad_input_exits_2(tmp_path, capsys):
    from rl_fyp.cli import main

    assert main(["calibrate", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "x.yaml")]) == 2
    assert "data directory not found" in capsys.readouterr().err
    assert main(["calibrate", "--data", str(DATA), "--out", str(tmp_path / "x.yaml"), "--rounds", "0"]) == 2
    assert main(["fidelity", "--config", "small"]) == 2  # not a calibrated config
    assert "env.world.source" in capsys.readouterr().err
    assert main(["fidelity", "--config", "kuairand", "--data", str(tmp_path / "none")]) == 2
    bad = _dataset(tmp_path / "bad", [_log_row()], log_header=[c for c in LOG_COLUMNS if c != "tab"])
    assert main(["fidelity", "--config", "kuairand", "--data", str(bad)]) == 2
    assert "missing column 'tab'" in capsys.readouterr().err
    assert main(["fidelity", "--config", "kuairand", "--set", "env.world.world_sha256=" + "0" * 64,
                 "--data", str(DATA)]) == 2
