"""The fidelity report: the calibrated simulator against the held-out days of KuaiRand-Pure.

The simulator runs the calibrated world (the real catalog and population, a seeded
cohort: every population user, ``replicas`` times) over a window as long as the held-out
days, and its log goes through the statistics of :mod:`envs.kuairand.stats`; the real
side is the held-out days (``HELDOUT_DATES``) only. Nothing here fits anything: the
parameters come from the world file and the config, fitted on the fit days by
``rl-fyp calibrate``. Side by side:

- every signal rate (like, follow, comment, forward, hate, profile enter, long view, fast
  skip) with its relative error, and the held-out rate's 95% interval (its own sampling
  noise: rare signals have a few dozen events in five days);
- the KS distance of the watch ratio in each duration bucket;
- the session-length, return-gap and activity distributions (KS), the daily return rate;
- the signal rates by watch ratio;
- a prediction check: for every held-out impression, the calibrated model's P(long_view)
  and P(like) from the user's and the video's fitted parameters through the response
  model, against a popularity baseline (the video's fit-day rate), by AUC.

The bars (``BARS``) are marked MET / NOT MET. The fit-day rates appear as a reference
column only (they show how much the held-out days differ from the fit days; no bar uses
them).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy.special import expit, ndtr

from envs.config import EnvConfig
from envs.kuairand.data import ATTRIBUTION, FIT_DATES, HELDOUT_DATES, LICENSE_NOTE, SIGNALS, KuaiRandData
from envs.kuairand.simulate import simulate_replicas
from envs.kuairand.stats import (
    BUCKET_LABELS,
    LONG_VIEW_MS,
    RATE_NAMES,
    RATIO_EDGES,
    LogStats,
    auc,
    ks_2samp,
    log_stats,
)
from envs.kuairand.world import KuaiRandWorld, load_world
from envs.response import watch_ratio_from_latent

__all__ = ["BARS", "FIDELITY_JSON", "FIDELITY_MD", "fidelity_report", "format_report", "predict", "write_report"]

BARS = {
    "signal_rate_rel_error": 0.10,
    "watch_ratio_ks": 0.05,
    "return_gap_ks": 0.10,
}
"""Every signal rate within +-10% (relative) of the held-out days; watch-ratio KS <= 0.05 in
every duration bucket; return-gap KS <= 0.1; and AUC above the popularity baseline."""
FIDELITY_JSON = "fidelity.json"
FIDELITY_MD = "fidelity.md"


def _wilson(k: int, n: int) -> tuple[float, float]:
    if n == 0:
        return float("nan"), float("nan")
    z, p = 1.959963984540054, k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return mid - half, mid + half


def predict(cfg: EnvConfig, world: KuaiRandWorld, user_ids: np.ndarray, video_ids: np.ndarray,
            duration_ms: np.ndarray) -> dict[str, np.ndarray]:
    """The calibrated model's P(long_view) and P(like) for (user, video) impressions.

    The appeal at a session's first slot (``<user_vec, true_vec> + user_bias + quality - 0.5 +
    appeal_bias``, no session history), its latent ``appeal + watch_ratio_noise * N(0, 1)``
    through the video's watch-ratio table: P(long_view) is the chance that the watch
    reaches ``min(18 s, duration)``, in closed form; P(like) the like probability of the
    response model (its bias, the slopes on appeal and watch ratio, the video's and the
    user's offsets) averaged over the latent by Gauss-Hermite quadrature.

    Args:
        cfg: the calibrated env config.
        world: its world.
        user_ids, video_ids: (n,) KuaiRand ids (every one must be in the world).
        duration_ms: (n,) durations, > 0.

    Returns:
        ``{"long_view": (n,), "like": (n,), "appeal": (n,)}``.
    """
    a, r = world.arrays, cfg.response
    urow = np.searchsorted(a["user_id"], user_ids)
    vorder = np.argsort(a["video_id"])
    vrow = vorder[np.searchsorted(a["video_id"][vorder], video_ids)]
    if np.any(a["user_id"][np.minimum(urow, len(a["user_id"]) - 1)] != user_ids) or np.any(a["video_id"][vrow] != video_ids):
        raise ValueError("predict: user or video ids outside the world")
    appeal = (r.affinity_weight * (np.einsum("nd,nd->n", a["user_vec"][urow].astype(np.float64),
                                             a["true_vec"][vrow].astype(np.float64))
                                   + np.maximum(a["user_bias"][urow], -8.0))
              + r.quality_weight * (a["quality"][vrow] - 0.5) + r.appeal_bias)
    knots, values = world.watch_ratio_table
    tb = a["duration_bucket"][vrow]
    dur_s = np.asarray(duration_ms, np.float64) / 1000.0
    need = np.minimum(LONG_VIEW_MS / 1000.0 / dur_s, 1.0)  # watch ratio that makes a long view
    # The smallest latent whose watch ratio reaches `need`, per row (tables are nondecreasing).
    g_star = np.empty(len(need))
    for b in np.unique(tb):
        sel = tb == b
        k, v = knots[b], values[b]
        j = np.searchsorted(v, need[sel], side="left")
        lo = np.clip(j - 1, 0, len(v) - 1)
        hi = np.clip(j, 0, len(v) - 1)
        span = np.where(v[hi] > v[lo], v[hi] - v[lo], 1.0)
        g = k[lo] + (need[sel] - v[lo]) / span * (k[hi] - k[lo])
        g = np.where(j == 0, -np.inf, np.where(j >= len(v), np.inf, g))
        g_star[sel] = g
    sigma = max(r.watch_ratio_noise, 1e-9)
    p_long = 1.0 - ndtr((g_star - appeal) / sigma)
    # P(like): E over the latent of sigmoid(bias + slopes + offsets).
    nodes, weights = np.polynomial.hermite_e.hermegauss(24)
    weights = weights / weights.sum()
    lat = appeal[:, None] + sigma * nodes[None, :]
    ratio = watch_ratio_from_latent(lat.ravel(), np.repeat(tb, len(nodes)), knots, values).reshape(lat.shape)
    eta = (r.like_bias + r.engagement_appeal_slope * appeal[:, None] + r.engagement_ratio_slope * np.minimum(ratio, 1.5)
           + a["eng_offset"][vrow, 0][:, None] + a["user_eng_offset"][urow, 0][:, None])
    p_like = (expit(eta) * weights[None, :]).sum(axis=1)
    return {"long_view": p_long, "like": p_like, "appeal": appeal}


def _popularity(data: KuaiRandData, signal: str, video_ids: np.ndarray) -> np.ndarray:
    """Each video's fit-day rate of `signal` (one pseudo-impression at the mean rate)."""
    fit = data.fit_log()
    fit = fit.select(fit.duration_ms > 0)
    assert set(fit.dates) <= set(FIT_DATES)
    y = getattr(fit, signal).astype(np.float64)
    p = float(y.mean())
    vids, inv = np.unique(fit.video, return_inverse=True)
    rate = (np.bincount(inv, weights=y) + p) / (np.bincount(inv) + 1.0)
    pos = np.clip(np.searchsorted(vids, video_ids), 0, len(vids) - 1)
    return np.where(vids[pos] == video_ids, rate[pos], p)


def fidelity_report(
    cfg: EnvConfig,
    data: KuaiRandData,
    *,
    seed: int = 0,
    replicas: int = 3,
    burn_in_days: int = 4,
    world: KuaiRandWorld | None = None,
    out_dir: str | Path | None = None,
    log: Callable[[str], None] = lambda msg: None,
) -> dict:
    """Simulate the held-out window and compare it with the held-out days.

    Args:
        cfg: the calibrated env config (``world.source: kuairand``).
        data: the loaded KuaiRand files.
        seed: seeds the simulated cohort.
        replicas: simulated copies of the population (pooled).
        burn_in_days: days simulated before the window.
        world: the world (default: ``cfg.world``'s file, checksum-checked).
        out_dir: where the plots go (``plots/``); None: no plots.
        log: progress lines.

    Returns:
        The report, JSON-able (``bars`` lists every bar with MET / NOT MET).
    """
    if cfg.world.source != "kuairand":
        raise ValueError("the fidelity report needs a calibrated config (env.world.source: kuairand)")
    world = world if world is not None else load_world(cfg)
    fitted_on = tuple(world.meta.get("fit_dates", ()))
    if set(fitted_on) & set(HELDOUT_DATES):
        raise ValueError(f"the world was fitted on held-out days {sorted(set(fitted_on) & set(HELDOUT_DATES))}")
    held = data.heldout_log()
    held = held.select(np.isin(held.user, world.arrays["user_id"]))  # the world's population (all users, or a subset)
    assert held.dates == HELDOUT_DATES and set(np.unique(held.date)) <= set(HELDOUT_DATES)
    real = log_stats(held)
    log(f"fidelity: held-out days {HELDOUT_DATES[0]}..{HELDOUT_DATES[-1]}: {real.impressions} impressions, {real.users} users")
    sim = simulate_replicas(cfg, world, HELDOUT_DATES, seed=seed, burn_in_days=burn_in_days, replicas=replicas)
    st = log_stats(sim.log)
    log(f"fidelity: simulated {replicas} x {world.n_users} users: {st.impressions} impressions in the window")
    fit_rates = log_stats(data.fit_log().select(np.isin(data.fit_log().user, world.arrays["user_id"]))).rates

    # ---- signal rates
    rates = {}
    for name in RATE_NAMES:
        k, n = real.counts[name], real.response_impressions
        lo, hi = _wilson(k, n)
        rel = (st.rates[name] - real.rates[name]) / real.rates[name] if real.rates[name] > 0 else float("nan")
        rates[name] = {
            "heldout": real.rates[name], "heldout_events": k, "heldout_ci95": [lo, hi],
            "simulated": st.rates[name], "simulated_events": st.counts[name], "rel_error": rel,
            "fit_days_reference": fit_rates[name],
            "met": bool(abs(rel) <= BARS["signal_rate_rel_error"]),
        }
    # ---- watch ratio per duration bucket
    buckets = []
    for b, label in enumerate(BUCKET_LABELS):
        x, y = real.ratios_in_bucket(b), st.ratios_in_bucket(b)
        ks = ks_2samp(x, y)
        buckets.append({
            "bucket": label, "heldout_n": int(len(x)), "simulated_n": int(len(y)),
            "heldout_share": len(x) / max(real.response_impressions, 1),
            "simulated_share": len(y) / max(st.response_impressions, 1),
            "heldout_mean": float(np.mean(x)) if len(x) else float("nan"),
            "simulated_mean": float(np.mean(y)) if len(y) else float("nan"),
            "ks": ks, "met": bool(ks <= BARS["watch_ratio_ks"]),
        })
    # ---- sessions, gaps, activity
    per = float(replicas)
    sessions = {
        "session_length_ks": ks_2samp(real.session_length, st.session_length),
        "impressions_per_session": {"heldout": real.impressions_per_session, "simulated": st.impressions_per_session},
        "session_length_share": {
            str(k): {"heldout": float(np.mean(real.session_length == k)), "simulated": float(np.mean(st.session_length == k))}
            for k in (1, 2, 3, 4)
        },
    }
    gap_ks = ks_2samp(real.return_gap_h, st.return_gap_h)
    q = [10, 25, 50, 75, 90]
    return_gap = {
        "ks": gap_ks, "met": bool(gap_ks <= BARS["return_gap_ks"]),
        "heldout_quantiles_h": dict(zip(map(str, q), np.percentile(real.return_gap_h, q).tolist())),
        "simulated_quantiles_h": dict(zip(map(str, q), np.percentile(st.return_gap_h, q).tolist())) if len(st.return_gap_h) else {},
        "heldout_n": int(len(real.return_gap_h)), "simulated_n": int(len(st.return_gap_h)),
    }
    activity = {
        "daily_return": {"heldout": real.daily_return, "simulated": st.daily_return},
        "active_users": {"heldout": real.users, "simulated_per_replica": st.users / per, "population": world.n_users},
        "impressions": {"heldout": real.impressions, "simulated_per_replica": st.impressions / per},
        "impressions_per_user_ks": ks_2samp(real.impressions_per_user, st.impressions_per_user),
        "sessions_per_user_ks": ks_2samp(real.sessions_per_user, st.sessions_per_user),
        "active_days_per_user_ks": ks_2samp(real.active_days_per_user, st.active_days_per_user),
        "mean_impressions_per_user": {"heldout": float(real.impressions_per_user.mean()),
                                      "simulated": float(st.impressions_per_user.mean())},
        "mean_active_days_per_user": {"heldout": float(real.active_days_per_user.mean()),
                                      "simulated": float(st.active_days_per_user.mean())},
    }
    ratio_labels = [f"<{RATIO_EDGES[0]:g}"] + [f"{a:g}-{b:g}" for a, b in zip(RATIO_EDGES[:-1], RATIO_EDGES[1:])] + [f">={RATIO_EDGES[-1]:g}"]
    by_ratio = {
        "buckets": ratio_labels,
        "heldout_n": real.ratio_bucket_counts,
        "simulated_n": st.ratio_bucket_counts,
        **{k: {"heldout": real.rates_by_ratio[k], "simulated": st.rates_by_ratio[k]} for k in (*SIGNALS, "long_view")},
    }
    # ---- prediction check on the held-out impressions
    hk = held.select(held.duration_ms > 0)
    pred = predict(cfg, world, hk.user, hk.video, hk.duration_ms)
    prediction = {"impressions": int(len(hk))}
    for signal in ("long_view", "like"):
        label = getattr(hk, signal)
        m_auc = auc(pred[signal], label)
        p_auc = auc(_popularity(data, signal, hk.video), label)
        prediction[signal] = {
            "model_auc": m_auc, "popularity_auc": p_auc, "positives": int(label.sum()),
            "model_mean_p": float(pred[signal].mean()), "heldout_rate": float(label.mean()),
            "met": bool(m_auc > p_auc),
        }
    bars = [{"bar": f"rate {k} within +-10%", "value": v["rel_error"], "threshold": BARS["signal_rate_rel_error"],
             "met": v["met"]} for k, v in rates.items()]
    bars += [{"bar": f"watch-ratio KS {b['bucket']} <= 0.05", "value": b["ks"], "threshold": BARS["watch_ratio_ks"],
              "met": b["met"]} for b in buckets]
    bars.append({"bar": "return-gap KS <= 0.1", "value": gap_ks, "threshold": BARS["return_gap_ks"], "met": return_gap["met"]})
    for signal in ("long_view", "like"):
        pr = prediction[signal]
        bars.append({"bar": f"AUC {signal} > popularity", "value": pr["model_auc"], "threshold": pr["popularity_auc"],
                     "met": pr["met"]})
    report = {
        "attribution": ATTRIBUTION,
        "license": LICENSE_NOTE,
        "heldout_dates": list(HELDOUT_DATES),
        "world_file": cfg.world.world_file,
        "world_sha256": cfg.world.world_sha256,
        "seed": seed,
        "replicas": replicas,
        "burn_in_days": burn_in_days,
        "simulated_steps": sim.steps,
        "data": data.report.as_dict(),
        "signal_rates": rates,
        "watch_ratio": {"buckets": buckets},
        "sessions": sessions,
        "return_gap": return_gap,
        "activity": activity,
        "rates_by_watch_ratio": by_ratio,
        "prediction": prediction,
        "bars": bars,
        "bars_met": int(sum(b["met"] for b in bars)),
        "bars_total": len(bars),
    }
    if out_dir is not None:
        report["plots"] = _plots(real, st, Path(out_dir) / "plots")
    return report


def _plots(real: LogStats, st: LogStats, out: Path) -> list[str]:
    """Overlaid held-out vs simulated plots (PNG): watch-ratio CDFs per bucket, session length, return gap."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written = []

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        written.append(str(out / name))

    def cdf(ax, x, label, **kw):
        x = np.sort(np.asarray(x, np.float64))
        if len(x):
            ax.step(x, np.arange(1, len(x) + 1) / len(x), where="post", label=label, **kw)

    fig, axes = plt.subplots(1, len(BUCKET_LABELS), figsize=(4 * len(BUCKET_LABELS), 3.4), sharey=True)
    for b, ax in enumerate(axes):
        cdf(ax, np.minimum(real.ratios_in_bucket(b), 3.0), "held-out")
        cdf(ax, st.ratios_in_bucket(b), "simulated", linestyle="--")
        ks = ks_2samp(real.ratios_in_bucket(b), st.ratios_in_bucket(b))
        ax.set_title(f"duration {BUCKET_LABELS[b]} (KS {ks:.3f})")
        ax.set_xlabel("watch ratio")
        ax.set_xlim(0, 3)
    axes[0].set_ylabel("CDF")
    axes[0].legend()
    save(fig, "watch_ratio_cdf.png")

    fig, ax = plt.subplots(figsize=(5, 3.4))
    k = np.arange(1, 9)
    w = 0.4
    ax.bar(k - w / 2, [np.mean(real.session_length == j) for j in k], w, label="held-out")
    ax.bar(k + w / 2, [np.mean(st.session_length == j) for j in k], w, label="simulated")
    ax.set_yscale("log")
    ax.set_xlabel("impressions per session (30-min gaps)")
    ax.set_ylabel("share of sessions")
    ax.set_title(f"session length (KS {ks_2samp(real.session_length, st.session_length):.3f})")
    ax.legend()
    save(fig, "session_length.png")

    fig, ax = plt.subplots(figsize=(5, 3.4))
    cdf(ax, real.return_gap_h, "held-out")
    cdf(ax, st.return_gap_h, "simulated", linestyle="--")
    ax.set_xscale("log")
    ax.set_xlabel("return gap (hours)")
    ax.set_ylabel("CDF")
    ax.set_title(f"return gap (KS {ks_2samp(real.return_gap_h, st.return_gap_h):.3f})")
    ax.legend()
    save(fig, "return_gap_cdf.png")
    return written


def _f(x: float, digits: int = 4) -> str:
    return "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}g}"


def format_report(report: dict) -> str:
    """The report as Markdown tables (also what ``rl-fyp fidelity`` prints)."""
    mark = {True: "MET", False: "NOT MET"}
    lines = [
        "# Fidelity: the calibrated simulator vs the held-out days of KuaiRand-Pure",
        "",
        f"Held-out days {report['heldout_dates'][0]}..{report['heldout_dates'][-1]}; simulated: seed {report['seed']}, "
        f"{report['replicas']} replica(s) of the population, {report['burn_in_days']} burn-in days; "
        f"world {report['world_file']} (sha256 {report['world_sha256'][:12]}...).",
        "",
        "## Signal rates (per impression with a known duration)",
        "",
        "| signal | held-out | held-out 95% CI | simulated | rel. error | bar +-10% | fit days (reference) |",
        "|---|---|---|---|---|---|---|",
    ]
    for k, v in report["signal_rates"].items():
        lo, hi = v["heldout_ci95"]
        lines.append(f"| {k} | {_f(v['heldout'])} ({v['heldout_events']}) | [{_f(lo)}, {_f(hi)}] | "
                     f"{_f(v['simulated'])} ({v['simulated_events']}) | {v['rel_error']:+.1%} | {mark[v['met']]} | "
                     f"{_f(v['fit_days_reference'])} |")
    lines += ["", "## Watch ratio by duration bucket", "",
              "| bucket | held-out n | sim n | held-out share | sim share | held-out mean | sim mean | KS | bar <= 0.05 |",
              "|---|---|---|---|---|---|---|---|---|"]
    for b in report["watch_ratio"]["buckets"]:
        lines.append(f"| {b['bucket']} | {b['heldout_n']} | {b['simulated_n']} | {b['heldout_share']:.3f} | "
                     f"{b['simulated_share']:.3f} | {_f(b['heldout_mean'])} | {_f(b['simulated_mean'])} | "
                     f"{b['ks']:.4f} | {mark[b['met']]} |")
    s, g, a = report["sessions"], report["return_gap"], report["activity"]
    lines += ["", "## Sessions, return gaps, activity", "", "| statistic | held-out | simulated | distance |", "|---|---|---|---|",
              f"| impressions per session | {_f(s['impressions_per_session']['heldout'])} | "
              f"{_f(s['impressions_per_session']['simulated'])} | KS {s['session_length_ks']:.4f} |"]
    for qk in ("10", "50", "90"):
        sim_q = g["simulated_quantiles_h"].get(qk, float("nan"))
        lines.append(f"| return gap p{qk} (h) | {_f(g['heldout_quantiles_h'][qk])} | {_f(sim_q)} | |")
    lines += [
        f"| return gap distribution | n={g['heldout_n']} | n={g['simulated_n']} | KS {g['ks']:.4f} "
        f"(bar <= 0.1: {mark[g['met']]}) |",
        f"| daily return rate | {_f(a['daily_return']['heldout'])} | {_f(a['daily_return']['simulated'])} | |",
        f"| active users | {a['active_users']['heldout']} | {_f(a['active_users']['simulated_per_replica'], 6)} | |",
        f"| impressions per active user | {_f(a['mean_impressions_per_user']['heldout'])} | "
        f"{_f(a['mean_impressions_per_user']['simulated'])} | KS {a['impressions_per_user_ks']:.4f} |",
        f"| active days per active user | {_f(a['mean_active_days_per_user']['heldout'])} | "
        f"{_f(a['mean_active_days_per_user']['simulated'])} | KS {a['active_days_per_user_ks']:.4f} |",
        f"| sessions per active user | | | KS {a['sessions_per_user_ks']:.4f} |",
    ]
    br = report["rates_by_watch_ratio"]
    lines += ["", "## Signal rates by watch ratio (held-out / simulated)", "",
              "| signal | " + " | ".join(br["buckets"]) + " |", "|---|" + "---|" * len(br["buckets"])]
    for k in (*SIGNALS, "long_view"):
        cells = [f"{_f(h, 3)} / {_f(x, 3)}" for h, x in zip(br[k]["heldout"], br[k]["simulated"])]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    lines.append("| impressions | " + " | ".join(f"{h} / {x}" for h, x in zip(br["heldout_n"], br["simulated_n"])) + " |")
    p = report["prediction"]
    lines += ["", f"## Prediction check ({p['impressions']} held-out impressions)", "",
              "| signal | model AUC | popularity AUC | bar (model > popularity) |", "|---|---|---|---|"]
    for k in ("long_view", "like"):
        lines.append(f"| {k} | {p[k]['model_auc']:.4f} | {p[k]['popularity_auc']:.4f} | {mark[p[k]['met']]} |")
    lines += ["", f"## Bars: {report['bars_met']} of {report['bars_total']} met", "", "| bar | value | threshold | |", "|---|---|---|---|"]
    for b in report["bars"]:
        lines.append(f"| {b['bar']} | {_f(b['value'])} | {_f(b['threshold'])} | {mark[b['met']]} |")
    lines += ["", f"{report['attribution']} {report['license']}", ""]
    return "\n".join(lines)


def write_report(report: dict, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``fidelity.json`` and ``fidelity.md`` into `out_dir` (created)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    j, m = out / FIDELITY_JSON, out / FIDELITY_MD
    j.write_text(json.dumps(report, indent=2, allow_nan=True) + "\n", encoding="utf-8")
    m.write_text(format_report(report), encoding="utf-8")
    return j, m
