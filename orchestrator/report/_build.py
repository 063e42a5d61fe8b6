"""``report.json``'s contract, assembled from a study folder (see :func:`build_report`)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from orchestrator.report._gather import CellRuns, StudyData
from orchestrator.report._stats import cell_summary, factor_effects, pairwise_tukey, power_of, vs_baseline

__all__ = ["build_report", "paper_vs_ours"]

SCHEMA_VERSION = 1


def _varying_config(rows: list[dict[str, Any]]) -> list[str]:
    """``config/`` columns whose values differ between the study's trials (the searched and factor keys)."""
    keys = sorted({k for row in rows for k in row if k.startswith("config/") and k != "config/data.path"})
    return [k for k in keys if len({str(row.get(k, "")) for row in rows}) > 1 and k != "config/seed"]


def _best_config(cell: CellRuns, keys: list[str], mode: str) -> dict[str, Any]:
    if not cell.rows:
        return {}
    order = np.argsort(cell.values)
    best = cell.rows[int(order[-1] if mode == "max" else order[0])]
    return {k.removeprefix("config/"): _parse(best.get(k)) for k in keys if best.get(k, "") != ""}


def _parse(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return {"True": True, "False": False}.get(text, text)


def _cells(data: StudyData) -> list[dict[str, Any]]:
    keys = _varying_config(data.rows)
    return [
        {"cell": c.label, "factors": c.levels, **cell_summary(c.values), "values": c.values,
         "seeds": c.seeds, "planned": c.planned, "best_config": _best_config(c, keys, data.mode)}
        for c in data.cells
    ]


def _pairs_of_seeds(data: StudyData, a: str, b: str) -> int:
    if data.phase != "confirm":
        return 0
    seeds = {c.label: set(c.seeds) for c in data.cells}
    return len(seeds.get(a, set()) & seeds.get(b, set()))


def _power(data: StudyData, pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    values = {c.label: c.values for c in data.cells}
    return [power_of(values[p["a"]], values[p["b"]], _pairs_of_seeds(data, p["a"], p["b"]), p) for p in pairs]


def paper_vs_ours(data: StudyData) -> list[dict[str, Any]]:
    """Each published number of the study's ``reference:`` beside our mean ± CI of the same metric."""
    reference = getattr(data.study, "reference", None)
    if reference is None:
        return []
    cells = {c.label: c for c in data.cells}
    out = []
    for label, metrics in reference.values.items():
        cell = cells.get(label)
        for metric, paper in metrics.items():
            ours = cell_summary(data.metric_values(cell, metric) if cell else [])
            ci = ours["ci95"]
            out.append({
                "cell": label, "metric": metric, "paper": paper, "ours_mean": ours["mean"], "ours_ci95": ci,
                "n": ours["n"], "difference": None if ours["mean"] is None else ours["mean"] - paper,
                "paper_inside_ci": None if ci is None else bool(ci[0] <= paper <= ci[1]),
                "source": reference.source,
            })
    return out


def build_report(data: StudyData) -> dict[str, Any]:
    """The report as JSON-ready data.

    Keys: ``study, metric, mode, split, phase, baseline, notes, missing, cells, pairwise,
    vs_baseline, factors, power, reference`` (and ``pairwise_note``/``vs_baseline_note`` where
    a comparison was left out, saying why).
    """
    pairwise, pairwise_note = pairwise_tukey({c.label: c.values for c in data.cells})
    compared, baseline_note = vs_baseline({c.label: (c.values, c.seeds) for c in data.cells}, data.baseline)
    factors = {name: list(dict.fromkeys(levels[name] for levels, _ in data.study.cells)) for name in data.study.ablation.factors}
    effects = factor_effects([(c.levels, np.asarray(c.values, float)) for c in data.cells], factors) if factors else None
    study = data.study
    return {
        "schema_version": SCHEMA_VERSION,
        "study": {"name": study.name, "trainable": study.trainable, "dir": str(data.study_dir),
                  "objectives": [{"metric": o.metric, "mode": o.mode} for o in study.objectives],
                  "planned_cells": len(study.cells), "repeats": study.repeats, "trials_per_cell": study.trials_per_cell},
        "metric": data.metric, "column": data.column, "mode": data.mode, "split": data.split, "phase": data.phase,
        "baseline": data.baseline, "notes": data.notes, "missing": data.missing,
        "cells": _cells(data),
        "pairwise": pairwise, "pairwise_note": pairwise_note,
        "vs_baseline": compared, "vs_baseline_note": baseline_note,
        "factors": effects,
        "power": _power(data, pairwise),
        "reference": paper_vs_ours(data),
    }
