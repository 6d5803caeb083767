"""Plots of an evaluation run: metrics with confidence intervals, retention by day, learning curve.

Figures are drawn with matplotlib's object API on the Agg canvas (``Figure`` +
``savefig``), never through ``pyplot``: no global backend is switched and no window
opens, so plotting is safe inside a trainer or on a headless worker. Each PNG is written
to a temporary file and renamed, like the run's other files.
"""

from __future__ import annotations

import csv
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["ParetoPoint", "RetentionCurve", "plot_learning_curve", "plot_metrics", "plot_pareto", "plot_retention", "read_progress"]

_MEAN, _LO, _HI = "mean", "ci_low", "ci_high"


class RetentionCurve(NamedTuple):
    """Share of a cohort active on each day, with its confidence band; (D,) arrays."""

    mean: np.ndarray
    lo: np.ndarray
    hi: np.ndarray


class ParetoPoint(NamedTuple):
    """One setting of a sweep: a label and two metrics, each ``(mean, ci_low, ci_high)``."""

    label: str
    x: tuple[float, float, float]
    y: tuple[float, float, float]
    front: bool
    """On the Pareto front (drawn highlighted, joined by a line)."""


def _save(fig: Figure, path: str | os.PathLike[str]) -> Path:
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".png", dir=dest.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110, format="png")
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure  # imported when plotting: matplotlib is slow to import

    return Figure(figsize=(width, height), layout="constrained")


def plot_metrics(
    results: Mapping[str, Mapping[str, Mapping[str, float | None]]],
    path: str | os.PathLike[str],
    metrics: Sequence[str],
    *,
    title: str = "",
) -> Path:
    """One panel per metric: a bar per policy at the mean, whiskers at the interval.

    Args:
        results: ``{policy: {metric: {"mean", "ci_low", "ci_high"}}}``; missing or
            undefined (None) entries leave their bar out.
        path: PNG to write.
        metrics: metrics to plot, in panel order.
        title: figure title.

    Returns:
        The path written.
    """
    policies = list(results)
    ncols = min(3, max(1, len(metrics)))
    nrows = max(1, math.ceil(len(metrics) / ncols))
    fig = _figure(4.2 * ncols, 3.0 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    colours = [f"C{i % 10}" for i in range(len(policies))]
    for ax, metric in zip(axes, metrics):
        for i, policy in enumerate(policies):
            s = results[policy].get(metric)
            if s is None or s.get(_MEAN) is None:
                continue
            mean, lo, hi = s[_MEAN], s[_LO], s[_HI]
            err = np.array([[max(mean - lo, 0.0)], [max(hi - mean, 0.0)]])
            ax.bar(i, mean, color=colours[i], yerr=err, capsize=4, width=0.7)
        ax.set_title(metric, fontsize=10)
        ax.set_xticks(range(len(policies)), policies, rotation=30, ha="right", fontsize=8)
        ax.tick_params(axis="y", labelsize=8)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[len(metrics) :]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=11)
    return _save(fig, path)


def plot_retention(curves: Mapping[str, RetentionCurve], path: str | os.PathLike[str], *, title: str = "") -> Path:
    """Share of the cohort active on each day, one line (and interval band) per policy.

    Args:
        curves: ``{policy: RetentionCurve}`` with (D,) arrays for days 0 .. D-1.
        path: PNG to write.
        title: axes title.

    Returns:
        The path written.
    """
    fig = _figure(6.4, 4.0)
    ax = fig.subplots()
    for i, (policy, c) in enumerate(curves.items()):
        days = np.arange(len(c.mean))
        ax.plot(days, c.mean, marker="o", markersize=3, color=f"C{i % 10}", label=policy)
        ax.fill_between(days, c.lo, c.hi, color=f"C{i % 10}", alpha=0.15, linewidth=0)
    ax.set_xlabel("day since first visit (user's local days)")
    ax.set_ylabel("share of the cohort active")
    ax.set_ylim(0.0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, path)


def read_progress(
    path: str | os.PathLike[str], x: str = "env_steps", y: str = "episode_return_mean"
) -> tuple[np.ndarray, np.ndarray]:
    """Reads two columns of a trainer's ``progress.csv``, skipping rows where either is empty or not finite.

    Args:
        path: the CSV (a header row naming the columns).
        x, y: column names.

    Returns:
        (R,) float64 arrays of the usable rows, in file order; empty if the columns are absent.
    """
    xs: list[float] = []
    ys: list[float] = []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or x not in reader.fieldnames or y not in reader.fieldnames:
            return np.zeros(0), np.zeros(0)
        for row in reader:
            try:
                a, b = float(row[x] or "nan"), float(row[y] or "nan")
            except (TypeError, ValueError):
                continue
            if math.isfinite(a) and math.isfinite(b):
                xs.append(a)
                ys.append(b)
    return np.asarray(xs), np.asarray(ys)


def plot_learning_curve(progress_csv: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path | None:
    """Mean episode return against env steps, from the trainer's ``progress.csv``.

    Args:
        progress_csv: CSV with (at least) ``env_steps`` and ``episode_return_mean``.
        path: PNG to write.

    Returns:
        The path written, or None when the CSV has no usable row (nothing is written).
    """
    steps, ret = read_progress(progress_csv)
    if steps.size == 0:
        return None
    fig = _figure(6.4, 4.0)
    ax = fig.subplots()
    ax.plot(steps, ret, marker="o", markersize=3)
    ax.set_xlabel("env steps (feed requests)")
    ax.set_ylabel("mean episode return")
    ax.set_title("learning curve", fontsize=10)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_pareto(
    points: Sequence[ParetoPoint],
    path: str | os.PathLike[str],
    *,
    x_label: str,
    y_label: str,
    references: Mapping[str, tuple[tuple[float, float, float], tuple[float, float, float]]] | None = None,
    x_min: float | None = None,
    title: str = "",
) -> Path:
    """Two metrics to maximise, one point per setting with CI whiskers; the front joined.

    Args:
        points: The settings; ``front`` ones are highlighted and joined in x order.
        path: PNG to write.
        x_label: x axis (e.g. immediate engagement).
        y_label: y axis (e.g. retention).
        references: ``{name: ((x mean, lo, hi), (y mean, lo, hi))}``, drawn as black marks.
        x_min: A constraint's floor on x, drawn as a dashed line (None: none).
        title: Axes title.

    Returns:
        The path written.
    """
    fig = _figure(6.4, 4.6)
    ax = fig.subplots()

    def whiskers(x: tuple[float, float, float], y: tuple[float, float, float], **kw: object) -> None:
        xerr = np.array([[max(x[0] - x[1], 0.0)], [max(x[2] - x[0], 0.0)]])
        yerr = np.array([[max(y[0] - y[1], 0.0)], [max(y[2] - y[0], 0.0)]])
        ax.errorbar([x[0]], [y[0]], xerr=xerr, yerr=yerr, capsize=3, **kw)  # type: ignore[arg-type]

    for p in points:
        colour = "C3" if p.front else "0.55"
        whiskers(p.x, p.y, fmt="o", color=colour, markersize=6 if p.front else 5, elinewidth=0.8)
        ax.annotate(p.label, (p.x[0], p.y[0]), textcoords="offset points", xytext=(5, 4), fontsize=8, color=colour)
    front = sorted((p for p in points if p.front), key=lambda p: p.x[0])
    if len(front) > 1:
        ax.plot([p.x[0] for p in front], [p.y[0] for p in front], color="C3", linewidth=1.2, label="Pareto front of the settings")
    elif front:
        ax.plot([], [], "o", color="C3", label="Pareto front of the settings")
    for name, (x, y) in (references or {}).items():
        whiskers(x, y, fmt="*", color="black", markersize=10, elinewidth=0.8)
        ax.annotate(name, (x[0], y[0]), textcoords="offset points", xytext=(6, -10), fontsize=8)
    if x_min is not None:
        ax.axvline(x_min, color="0.3", linestyle="--", linewidth=1.0, label=f"constraint: {x_label.split()[0]} >= {x_min:g}")
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best")
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, path)
