"""The report's figures as PNG bytes: plain Agg-rendered ``Figure`` objects, never pyplot.

Each builder returns a :class:`Plot` or ``None`` when the study has nothing to draw for it (no
search trials for parallel coordinates, no cost metrics for the quality-vs-cost plot, ...).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
from matplotlib import colormaps
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from orchestrator.leaderboard import pareto_flags
from orchestrator.report._gather import StudyData, _number, read_history, trial_folders

__all__ = ["Plot", "all_plots"]

COSTS = ("model/params", "model/gflops", "model/latency_ms")
_DPI = 90


@dataclass
class Plot:
    """One figure of the report: a file name stem, a title, the PNG and a caption."""

    name: str
    title: str
    png: bytes
    caption: str = ""


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI)
    fig.clear()
    return buffer.getvalue()


def _short(label: str, width: int = 28) -> str:
    """A cell label for an axis: ``a=1,b=2`` over two lines when long."""
    return label if len(label) <= width else label.replace(",", ",\n")


def _colors(n: int) -> list:
    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def strip_box(data: StudyData) -> Optional[Plot]:
    cells = [c for c in data.cells if c.values]
    if not cells:
        return None
    fig = Figure(figsize=(max(5.0, 1.1 * len(cells) + 2), 4.2), layout="constrained")
    ax = fig.add_subplot()
    ax.boxplot([c.values for c in cells], widths=0.5, showfliers=False)
    jitter = np.random.default_rng(0)
    for i, cell in enumerate(cells, start=1):
        ax.scatter(i + jitter.uniform(-0.12, 0.12, len(cell.values)), cell.values, s=22, zorder=3, alpha=0.8)
    ax.set_xticks(range(1, len(cells) + 1), [_short(c.label) for c in cells], rotation=30 if len(cells) > 3 else 0,
                  ha="right" if len(cells) > 3 else "center", fontsize=8)
    ax.set(ylabel=data.metric, title=f"{data.metric} per cell ({data.phase} runs)")
    ax.grid(axis="y", alpha=0.3)
    return Plot("cells", "Runs per cell", _png(fig), f"Each dot is one {data.phase} run; boxes show quartiles.")


def learning_curves(data: StudyData) -> Optional[Plot]:
    metric = "val/" + data.metric.split("/", 1)[1] if data.split == "test" else data.metric
    series = []
    folders = trial_folders(data.study_dir)
    for cell in data.cells:
        by_epoch: dict[int, list[float]] = {}
        for row in cell.rows:
            for result in read_history(data.study_dir, row, folders):
                epoch, value = result.get("training_iteration"), _number(result.get(metric))
                if isinstance(epoch, int) and value is not None:
                    by_epoch.setdefault(epoch, []).append(value)
        if by_epoch:
            epochs = sorted(by_epoch)
            series.append((cell.label, epochs, [np.mean(by_epoch[e]) for e in epochs],
                           [np.min(by_epoch[e]) for e in epochs], [np.max(by_epoch[e]) for e in epochs]))
    if not series:
        return None
    fig = Figure(figsize=(7.5, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for color, (label, epochs, mean, low, high) in zip(_colors(len(series)), series):
        ax.plot(epochs, mean, marker="o" if len(epochs) < 30 else None, ms=3, color=color, label=label)
        ax.fill_between(epochs, low, high, color=color, alpha=0.15)
    ax.set(xlabel="epoch", ylabel=metric, title=f"Learning curves: {metric}, mean over runs (band: min-max)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    return Plot("curves", "Learning curves", _png(fig), f"Per cell, {metric} per epoch over its {data.phase} runs.")


def p_value_matrix(report: dict[str, Any]) -> Optional[Plot]:
    pairs = report["pairwise"]
    if not pairs:
        return None
    labels = list(dict.fromkeys([p["a"] for p in pairs] + [p["b"] for p in pairs]))
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.full((len(labels), len(labels)), np.nan)
    for p in pairs:
        value = p["p_value"] if p["p_value"] is not None else np.nan
        matrix[index[p["a"]], index[p["b"]]] = matrix[index[p["b"]], index[p["a"]]] = value
    side = max(4.5, 0.75 * len(labels) + 3)
    fig = Figure(figsize=(side + 1, side), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="viridis_r", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="Tukey HSD p-value")
    for i in range(len(labels)):
        for j in range(len(labels)):
            if i != j and not math.isnan(matrix[i, j]):
                ax.text(j, i, f"{matrix[i, j]:.3f}{'*' if matrix[i, j] < 0.05 else ''}", ha="center", va="center",
                        fontsize=8, color="white" if matrix[i, j] < 0.5 else "black")
    ticks = [_short(label, 18) for label in labels]
    ax.set_xticks(range(len(labels)), ticks, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(labels)), ticks, fontsize=7)
    ax.set_title("Pairwise p-values (* p < 0.05)")
    return Plot("pvalues", "P-value matrix", _png(fig), "Tukey HSD between every pair of cells; * marks p < 0.05.")


def _finished(data: StudyData) -> list[dict[str, Any]]:
    return [r for r in data.rows if r.get("status") == "TERMINATED"]


def pareto_or_cost(data: StudyData) -> Optional[Plot]:
    objectives = [(o.metric, o.mode) for o in data.study.objectives]
    rows = _finished(data)
    if len(objectives) > 1:
        (m1, _), (m2, _) = objectives[:2]
        points = [{"best": _number(r.get(f"last/{m1}")), f"at_best/{m2}": _number(r.get(f"last/{m2}")), "cell": r.get("cell")}
                  for r in rows]
        points = [p for p in points if p["best"] is not None and p[f"at_best/{m2}"] is not None]
        if not points:
            return None
        flags = pareto_flags(points, objectives[:2])
        fig = Figure(figsize=(6.5, 4.8), layout="constrained")
        ax = fig.add_subplot()
        ax.scatter([p["best"] for p in points], [p[f"at_best/{m2}"] for p in points], s=18, alpha=0.5, label="trials")
        front = sorted((p["best"], p[f"at_best/{m2}"]) for p, f in zip(points, flags) if f)
        ax.plot(*zip(*front), "o-", color="crimson", label="Pareto front")
        ax.set(xlabel=m1, ylabel=m2, title="Pareto front (each trial's last epoch)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        return Plot("pareto", "Pareto front", _png(fig), f"{m1} against {m2}; the front is not dominated.")
    costs = [c for c in COSTS if any(_number(r.get(f"last/{c}")) is not None for r in rows)]
    cells = [c for c in data.cells if c.values]
    if not costs or not cells:
        return None
    fig = Figure(figsize=(4.2 * len(costs) + 0.5, 4.2), layout="constrained")
    colors = _colors(len(cells))
    for n, cost in enumerate(costs):
        ax = fig.add_subplot(1, len(costs), n + 1)
        for color, cell in zip(colors, cells):
            x = [v for r in cell.rows if (v := _number(r.get(f"last/{cost}"))) is not None]
            if x:
                ax.errorbar(np.mean(x), np.mean(cell.values), yerr=np.std(cell.values), fmt="o", color=color,
                            capsize=3, label=cell.label)
        ax.set(xlabel=cost, ylabel=data.metric if n == 0 else None)
        spread = [np.mean([v for r in c.rows if (v := _number(r.get(f"last/{cost}"))) is not None] or [np.nan]) for c in cells]
        if np.nanmin(spread) > 0 and np.nanmax(spread) / np.nanmin(spread) > 10:
            ax.set_xscale("log")  # backbones of very different sizes
        else:
            ax.xaxis.set_major_locator(MaxNLocator(4))
            ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4), useOffset=False)
        ax.grid(alpha=0.3)
    fig.axes[-1].legend(fontsize=7, loc="best")
    fig.suptitle(f"{data.metric} against model cost (mean ± std over runs)")
    return Plot("cost", "Quality against cost", _png(fig), "Each point is one cell; bars are ± one standard deviation.")


def parallel_coordinates(data: StudyData) -> Optional[Plot]:
    search = [r for r in _finished(data) if r.get("phase") == "search"]
    metric = data.study.objective.metric
    keys = sorted({k for r in search for k in r if k.startswith("config/") and k not in ("config/data.path", "config/seed")})
    set_by_factors = {f"config/{k}" for keys in data.study.ablation.factor_keys().values() for k in keys}
    keys = [k for k in keys if len({r.get(k, "") for r in search}) > 1 and k not in set_by_factors]
    cells = [c for c in data.cells if any(r.get("cell") == c.label for r in search)]
    if not keys or not cells:
        return None
    axes_keys = keys + [f"best/{metric}"]
    scaled = {}
    for key in axes_keys:
        raw = [r.get(key, "") for r in search]
        numbers = [_number(v) for v in raw]
        if all(n is not None for n in numbers):
            low, high = min(numbers), max(numbers)
            log = key in ("config/lr",) and low > 0
            f = (lambda v: math.log10(v)) if log else (lambda v: v)
            span = (f(high) - f(low)) or 1.0
            scaled[key] = {id(r): (f(n) - f(low)) / span for r, n in zip(search, numbers)}
        else:
            levels = sorted(set(map(str, raw)))
            scaled[key] = {id(r): levels.index(str(v)) / max(len(levels) - 1, 1) for r, v in zip(search, raw)}
    columns = min(len(cells), 3)
    fig = Figure(figsize=(4.6 * columns, 3.4 * math.ceil(len(cells) / columns)), layout="constrained")
    cmap = colormaps["viridis"]
    x = np.arange(len(axes_keys), dtype=float)
    for n, cell in enumerate(cells):
        ax = fig.add_subplot(math.ceil(len(cells) / columns), columns, n + 1)
        ys = np.array([[scaled[k][id(r)] for k in axes_keys] for r in search if r.get("cell") == cell.label])
        colors = cmap(ys[:, -1])
        # one artist for all the trials' lines and one for their markers: thousands of Line2Ds
        # took seconds to build and draw at the end of a large study
        ax.add_collection(LineCollection([np.column_stack([x, y]) for y in ys], colors=colors, alpha=0.8))
        ax.scatter(np.tile(x, len(ys)), ys.ravel(), c=np.repeat(colors, len(x), axis=0), s=9, alpha=0.8, zorder=3)
        ax.set_xticks(range(len(axes_keys)), [k.split("/", 1)[1] for k in axes_keys], rotation=30, fontsize=7)
        ax.set_yticks([0, 1], ["low", "high"], fontsize=7)
        ax.set_title(cell.label, fontsize=8)
    fig.suptitle(f"Search trials per cell (colour: best {metric})")
    return Plot("search", "Search trials", _png(fig), "Parallel coordinates of each cell's search trials, each axis scaled to its range.")


def confusion_matrices(data: StudyData) -> list[Plot]:
    """The best run's ``artifacts/confusion_matrix.png`` of each cell, where the trial wrote one."""
    plots = []
    for cell in data.cells:
        if not cell.rows:
            continue
        best = cell.rows[int(np.argmax(cell.values) if data.mode == "max" else np.argmin(cell.values))]
        folders = sorted(data.study_dir.glob(f"*_{best.get('trial_id')}/artifacts/confusion_matrix.png"))
        if folders:
            plots.append(Plot(f"confusion_{len(plots)}", f"Confusion matrix: {cell.label}", folders[0].read_bytes(),
                              f"Best {data.phase} run of {cell.label} (trial {best.get('trial_id')}), validation split."))
    return plots


def all_plots(data: StudyData, report: dict[str, Any]) -> list[Plot]:
    """Every plot the study has data for, in report order."""
    plots = [strip_box(data), learning_curves(data), p_value_matrix(report), pareto_or_cost(data), parallel_coordinates(data)]
    return [p for p in plots if p is not None] + confusion_matrices(data)
