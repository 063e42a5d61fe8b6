"""The report's statistics, each from scipy.stats: no test or interval is written by hand here.

* a cell's mean with a 95 % t interval (``ttest_1samp(...).confidence_interval``);
* every pair of cells with Tukey's HSD (``tukey_hsd``), its simultaneous intervals and p-values;
* each cell against the baseline with Dunnett's test (``dunnett``) and, when runs share seeds,
  the paired per-seed difference with a bootstrap interval (``bootstrap``; BCa, percentile
  where BCa degenerates, e.g. identical differences);
* main effects and two-factor interactions as contrasts of cell means, bootstrap intervals;
* power: the smallest p a rank test can reach with N (``wilcoxon``, ``mannwhitneyu``), the
  smallest difference Tukey's HSD calls significant with this noise (its interval's half-width)
  and the true difference a t test finds 80 % of the time (noncentral t, ``nct``).
"""

from __future__ import annotations

import itertools
import math
import warnings
from typing import Any, Callable, Optional, Sequence

import numpy as np
from scipy import optimize, stats

__all__ = ["ALPHA", "bootstrap_ci", "cell_summary", "factor_effects", "pairwise_tukey", "power_of", "vs_baseline"]

ALPHA = 0.05
LEVEL = 0.95
N_RESAMPLES = 4000


def _f(value: Any) -> Optional[float]:
    """A JSON-safe float (``None`` for NaN/inf)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def cell_summary(values: Sequence[float]) -> dict[str, Any]:
    """``n, mean, std, ci95, min, max`` of one cell's run values (std and CI need 2 runs)."""
    x = np.asarray(values, dtype=float)
    out: dict[str, Any] = {"n": int(x.size), "mean": None, "std": None, "ci95": None, "min": None, "max": None}
    if not x.size:
        return out
    out.update(mean=_f(x.mean()), min=_f(x.min()), max=_f(x.max()))
    if x.size >= 2:
        out["std"] = _f(x.std(ddof=1))
        if np.ptp(x) == 0:
            out["ci95"] = [out["mean"], out["mean"]]  # no spread: the t interval is 0/0
        else:
            ci = stats.ttest_1samp(x, 0.0).confidence_interval(LEVEL)
            out["ci95"] = [_f(ci.low), _f(ci.high)]
    return out


def pairwise_tukey(groups: dict[str, Sequence[float]]) -> tuple[list[dict[str, Any]], Optional[str]]:
    """Tukey's HSD over every pair of cells with at least 2 runs; ``(pairs, note)``."""
    usable = {k: np.asarray(v, dtype=float) for k, v in groups.items() if len(v) >= 2}
    left_out = [k for k in groups if k not in usable]
    note = f"left out of Tukey's HSD (fewer than 2 runs): {', '.join(left_out)}" if left_out else None
    if len(usable) < 2:
        return [], note or "Tukey's HSD needs two cells with at least 2 runs each"
    labels = list(usable)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # zero variance: NaN p-values, said below
        result = stats.tukey_hsd(*usable.values())
        ci = result.confidence_interval(LEVEL)
    pairs = []
    for i, j in itertools.combinations(range(len(labels)), 2):
        p = _f(result.pvalue[i, j])
        pairs.append({
            "a": labels[i], "b": labels[j], "mean_diff": _f(result.statistic[i, j]),
            "ci95": [_f(ci.low[i, j]), _f(ci.high[i, j])], "p_value": p, "test": "tukey_hsd",
            "significant": None if p is None else bool(p < ALPHA),
        })
    if any(p["p_value"] is None for p in pairs):
        note = "; ".join(filter(None, [note, "some runs have no spread at all (every value equal): no p-value"]))
    return pairs, note


def bootstrap_ci(samples: Sequence[np.ndarray], statistic: Callable, paired: bool = False, seed: int = 0) -> tuple[list, str]:
    """A 95 % bootstrap interval: BCa, or percentile where BCa degenerates; ``([lo, hi], method)``."""
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DegenerateDataWarning / RuntimeWarning: handled by the fallback
            result = stats.bootstrap(tuple(samples), statistic, paired=paired, vectorized=True, method=method,
                                     confidence_level=LEVEL, n_resamples=N_RESAMPLES, rng=np.random.default_rng(seed))
        low, high = _f(result.confidence_interval.low), _f(result.confidence_interval.high)
        if low is not None and high is not None:
            return [low, high], method
    return [None, None], "none"


def _mean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis)


def _paired(base: dict[Any, float], other: dict[Any, float]) -> Optional[dict[str, Any]]:
    seeds = [s for s in other if s in base and s is not None]
    if len(seeds) < 2:
        return None
    diffs = np.array([other[s] - base[s] for s in seeds])
    if np.ptp(diffs) == 0:
        return {"n_pairs": len(seeds), "mean_diff": _f(diffs.mean()), "ci95": [_f(diffs[0])] * 2,
                "ci_method": "none: every seed gives the same difference", "seeds": seeds}
    ci, method = bootstrap_ci([diffs], _mean, paired=False)
    note = "" if method == "BCa" else " (BCa degenerate on these differences)"
    return {"n_pairs": len(seeds), "mean_diff": _f(diffs.mean()), "ci95": ci, "ci_method": method + note, "seeds": seeds}


def vs_baseline(cells: dict[str, tuple[Sequence[float], Sequence[Any]]], baseline: str) -> tuple[list[dict[str, Any]], Optional[str]]:
    """Each cell against ``baseline``: Dunnett's test, and the paired difference over shared seeds.

    Args:
        cells: label -> (values, seeds).
    """
    base_values, base_seeds = cells.get(baseline, ([], []))
    if len(base_values) < 2:
        return [], f"the baseline {baseline} has fewer than 2 finished runs: no comparison against it"
    others = {k: v for k, v in cells.items() if k != baseline and len(v[0]) >= 2}
    left_out = [k for k in cells if k != baseline and k not in others]
    note = f"left out of Dunnett's test (fewer than 2 runs): {', '.join(left_out)}" if left_out else None
    if not others:
        return [], note
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = stats.dunnett(*(np.asarray(v[0], float) for v in others.values()), control=np.asarray(base_values, float),
                               rng=np.random.default_rng(0))  # its multivariate t CDF is randomised QMC
        ci = result.confidence_interval(LEVEL)
    if any("did not converge" in str(w.message) for w in caught):  # scipy's search for the critical value
        note = "; ".join(filter(None, [note, "Dunnett's intervals did not converge to 95 % here: they are left out"]))
        ci = None
    base_by_seed = dict(zip(base_seeds, base_values))
    out = []
    for i, (label, (values, seeds)) in enumerate(others.items()):
        p = _f(result.pvalue[i])
        out.append({
            "cell": label, "baseline": baseline, "mean_diff": _f(np.mean(values) - np.mean(base_values)),
            "ci95": [_f(ci.low[i]), _f(ci.high[i])] if ci is not None else None, "p_value": p, "test": "dunnett",
            "significant": None if p is None else bool(p < ALPHA),
            "paired": _paired(base_by_seed, dict(zip(seeds, values))),
        })
    return out, note


def _min_rank_p(n_a: int, n_b: int, n_pairs: int) -> dict[str, Optional[float]]:
    """The smallest two-sided p each rank test can give with these sizes (exact distributions)."""
    mw = stats.mannwhitneyu(np.arange(n_a) + n_b, np.arange(n_b), method="exact").pvalue if n_a and n_b else None
    wx = stats.wilcoxon(np.arange(1.0, n_pairs + 1.0), method="exact").pvalue if n_pairs >= 2 else None
    return {"mannwhitney_min_p": _f(mw), "wilcoxon_min_p": _f(wx)}


def _detectable(a: np.ndarray, b: np.ndarray, power: float = 0.8) -> Optional[float]:
    """The true difference a two-sided two-sample t test (α = 0.05) finds with ``power``, at this noise."""
    df = a.size + b.size - 2
    if df < 1:
        return None
    pooled = ((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / df
    se = math.sqrt(pooled * (1 / a.size + 1 / b.size))
    if se == 0:
        return None
    crit = stats.t.ppf(1 - ALPHA / 2, df)

    def shortfall(delta: float) -> float:
        nc = delta / se
        return stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc) - power

    high = (crit + 1.0) * se
    for _ in range(12):  # widen until the power is reached (nct turns NaN far out: give up there)
        gap = shortfall(high)
        if not math.isfinite(gap):
            return None
        if gap > 0:
            return _f(optimize.brentq(shortfall, 0.0, high))
        high *= 2.0
    return None


def power_of(a: Sequence[float], b: Sequence[float], n_pairs: int, pair: dict[str, Any]) -> dict[str, Any]:
    """What N can show for one comparison (``pair`` is its Tukey entry), with a sentence saying it."""
    x, y = np.asarray(a, float), np.asarray(b, float)
    ranks = _min_rank_p(x.size, y.size, n_pairs)
    lo, hi = pair.get("ci95") or [None, None]
    msd = _f((hi - lo) / 2) if lo is not None and hi is not None else None
    out: dict[str, Any] = {
        "a": pair["a"], "b": pair["b"], "n_a": int(x.size), "n_b": int(y.size), "n_pairs": n_pairs,
        "observed_diff": pair.get("mean_diff"), "min_significant_diff": msd,
        "detectable_diff_80": _detectable(x, y) if x.size >= 2 and y.size >= 2 else None, **ranks,
    }
    rank_p = ranks["wilcoxon_min_p"] if n_pairs >= 2 else ranks["mannwhitney_min_p"]
    out["rank_test_can_reach_p05"] = rank_p is not None and rank_p < ALPHA
    out["verdict"] = _verdict(out, pair, rank_p)
    return out


def _verdict(power: dict[str, Any], pair: dict[str, Any], rank_p: Optional[float]) -> str:
    n = min(power["n_a"], power["n_b"])
    runs = f"{n} seed{'s' if n != 1 else ''}" if power["n_pairs"] >= 2 else f"{n} run{'s' if n != 1 else ''} per cell"
    diff, msd = pair.get("mean_diff"), power["min_significant_diff"]
    if pair.get("p_value") is None or diff is None:
        words = f"{runs}: no p-value (no spread in the runs)."
    elif pair["significant"]:
        words = f"{runs}: the difference ({diff:+.4g}) is larger than seed noise (Tukey HSD p = {pair['p_value']:.3g})."
    else:
        words = f"{runs}: this difference ({diff:+.4g}) is not distinguishable from seed noise (p = {pair['p_value']:.3g})"
        if msd is not None:
            words += f"; with this noise only a difference beyond ±{msd:.4g} would be significant"
        if power["detectable_diff_80"] is not None:
            words += f", and a true difference of {power['detectable_diff_80']:.4g} is found 80% of the time"
        words += "."
    if rank_p is not None and rank_p >= ALPHA:
        test = "a Wilcoxon signed-rank test" if power["n_pairs"] >= 2 else "a Mann-Whitney U test"
        words += f" With this N {test} can never reach p < 0.05 (its smallest p is {rank_p:.3g})."
    return words


def _contrast(weights: list[float]) -> Callable:
    """Statistic of ``sum_i w_i · mean(sample_i)`` over several bootstrap samples."""

    def statistic(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
        return sum(w * np.mean(s, axis=axis) for w, s in zip(weights, samples))

    return statistic


def _estimate(terms: list[tuple[float, np.ndarray]]) -> dict[str, Any]:
    """A contrast of cell means with its bootstrap interval (each cell resampled on its own)."""
    weights, samples = [w for w, _ in terms], [s for _, s in terms]
    value = _f(_contrast(weights)(*samples))
    if any(s.size < 2 for s in samples):
        return {"estimate": value, "ci95": None, "ci_method": "none: a cell has fewer than 2 runs"}
    ci, method = bootstrap_ci(samples, _contrast(weights))
    return {"estimate": value, "ci95": ci, "ci_method": method}


def factor_effects(cells: list[tuple[dict[str, str], np.ndarray]], factors: dict[str, list[str]]) -> dict[str, Any]:
    """Main effects (each level against the factor's first, averaged over the other factors) and,
    for two factors, the table of cell means with its interaction contrasts.

    Args:
        cells: ``(levels, run values)`` of every cell with at least one run.
        factors: Factor -> its level labels in order.
    """
    by_levels = {tuple(sorted(levels.items())): values for levels, values in cells if values.size}
    main = []
    for name, levels in factors.items():
        others = [f for f in factors if f != name]
        first = levels[0]
        for level in levels[1:]:
            terms, combos = [], 0
            for combo in itertools.product(*(factors[o] for o in others)):
                rest = dict(zip(others, combo))
                a = by_levels.get(tuple(sorted({**rest, name: level}.items())))
                b = by_levels.get(tuple(sorted({**rest, name: first}.items())))
                if a is not None and b is not None:
                    terms.append((a, b))
                    combos += 1
            if not combos:
                continue
            weighted = [(1.0 / combos, a) for a, _ in terms] + [(-1.0 / combos, b) for _, b in terms]
            main.append({"factor": name, "level": level, "vs": first, "over_cells": combos, **_estimate(weighted)})
    out: dict[str, Any] = {"main_effects": main, "interaction": None}
    if len(factors) == 2:
        out["interaction"] = _interaction(by_levels, factors)
    return out


def _interaction(by_levels: dict[tuple, np.ndarray], factors: dict[str, list[str]]) -> dict[str, Any]:
    (fa, la), (fb, lb) = factors.items()

    def cell(i: str, j: str) -> Optional[np.ndarray]:
        return by_levels.get(tuple(sorted({fa: i, fb: j}.items())))

    means = [[_f(cell(i, j).mean()) if cell(i, j) is not None else None for j in lb] for i in la]
    contrasts = []
    for i, j in itertools.product(la[1:], lb[1:]):
        parts = [cell(i, j), cell(i, lb[0]), cell(la[0], j), cell(la[0], lb[0])]
        if any(p is None for p in parts):
            continue
        # (m_ij - m_i0) - (m_0j - m_00): does the effect of fb's level j change with fa's level i?
        contrasts.append({fa: i, fb: j, **_estimate(list(zip([1.0, -1.0, -1.0, 1.0], parts)))})
    return {"rows": fa, "columns": fb, "row_levels": la, "column_levels": lb, "means": means, "contrasts": contrasts}
