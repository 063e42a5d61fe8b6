"""``report.md`` and the self-contained ``report.html`` (plots embedded as base64 PNGs)."""

from __future__ import annotations

import base64
import html
from typing import Any, Optional, Sequence

from orchestrator.report._plots import Plot

__all__ = ["render_html", "render_markdown"]


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-3 and value != 0 else f"{value:.{digits}f}"
    return str(value)


def _ci(ci: Optional[Sequence[Optional[float]]]) -> str:
    if not ci or ci[0] is None:
        return "–"
    return f"[{_num(ci[0])}, {_num(ci[1])}]"


def _p(p: Optional[float]) -> str:
    return "–" if p is None else ("<0.0001" if p < 1e-4 else f"{p:.4f}")


def _method(ci_method: str) -> str:
    """``BCa``, ``percentile`` or ``no spread`` (the full wording stays in report.json)."""
    return "no spread" if ci_method.startswith("none") else ci_method.split(" ", 1)[0]


def _tables(report: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]], str]]:
    """``(title, header, rows, note)`` of each table, shared by both renderings."""
    tables = []
    cells = report["cells"]
    tables.append(("Cells", ["cell", "n", "mean", "std", "95% CI", "min", "max"],
                   [[c["cell"], f"{c['n']}/{c['planned']}", _num(c["mean"]), _num(c["std"]), _ci(c["ci95"]),
                     _num(c["min"]), _num(c["max"])] for c in cells], ""))
    if report["reference"]:
        tables.append(("Paper vs ours", ["cell", "metric", "paper", "ours (mean)", "ours 95% CI", "n", "difference", "paper inside CI"],
                       [[r["cell"], r["metric"], _num(r["paper"]), _num(r["ours_mean"]), _ci(r["ours_ci95"]), str(r["n"]),
                         _num(r["difference"]), _num(r["paper_inside_ci"]) if r["paper_inside_ci"] is not None else "– (needs ≥ 2 runs)"]
                        for r in report["reference"]], f"Source: {report['reference'][0]['source']}"))
    tables.append((f"Against the baseline ({report['baseline']})",
                   ["cell", "mean diff", "Dunnett 95% CI", "p", "significant", "paired diff (seeds)", "paired 95% CI"],
                   [[v["cell"], _num(v["mean_diff"]), _ci(v["ci95"]), _p(v["p_value"]), _num(v["significant"]),
                     f"{_num(v['paired']['mean_diff'])} ({v['paired']['n_pairs']})" if v["paired"] else "–",
                     f"{_ci(v['paired']['ci95'])} {_method(v['paired']['ci_method'])}" if v["paired"] else "–"]
                    for v in report["vs_baseline"]], report.get("vs_baseline_note") or ""))
    tables.append(("Every pair (Tukey HSD)", ["a", "b", "mean diff (a − b)", "95% CI", "p", "significant"],
                   [[p["a"], p["b"], _num(p["mean_diff"]), _ci(p["ci95"]), _p(p["p_value"]), _num(p["significant"])]
                    for p in report["pairwise"]], report.get("pairwise_note") or ""))
    factors = report.get("factors")
    if factors:
        tables.append(("Main effects", ["factor", "level", "vs", "effect", "95% CI", "over cells", "interval"],
                       [[m["factor"], m["level"], m["vs"], _num(m["estimate"]), _ci(m["ci95"]), str(m["over_cells"]), m["ci_method"]]
                        for m in factors["main_effects"]], "Mean difference between the levels, averaged over the other factors."))
        inter = factors.get("interaction")
        if inter:
            tables.append((f"Cell means: {inter['rows']} × {inter['columns']}", [inter["rows"], *inter["column_levels"]],
                           [[lv, *(_num(m) for m in row)] for lv, row in zip(inter["row_levels"], inter["means"])], ""))
            if inter["contrasts"]:
                tables.append(("Interaction", [inter["rows"], inter["columns"], "interaction", "95% CI", "interval"],
                               [[c[inter["rows"]], c[inter["columns"]], _num(c["estimate"]), _ci(c["ci95"]), c["ci_method"]]
                                for c in inter["contrasts"]],
                               f"(m[i,j] − m[i,first]) − (m[first,j] − m[first,first]): 0 means the {inter['columns']} effect "
                               f"does not depend on {inter['rows']}."))
    return tables


def _power_lines(report: dict[str, Any]) -> list[str]:
    baseline = report["baseline"]
    lines = [f"{p['a']} vs {p['b']}: {p['verdict']}" for p in report["power"] if baseline in (p["a"], p["b"])]
    return lines or [p["verdict"] for p in report["power"][:10]]


def _header_lines(report: dict[str, Any]) -> list[str]:
    study = report["study"]
    lines = [f"Study {study['name']} ({study['trainable']}): {study['planned_cells']} cells, metric {report['metric']} "
             f"({report['mode']}), {report['phase']} runs, baseline {report['baseline']}."]
    return lines + [f"Note: {n}." for n in report["notes"]]


def render_markdown(report: dict[str, Any], plots: list[Plot], plot_dir: str = "plots") -> str:
    """Markdown with the tables; plots are linked from ``plot_dir`` (written beside it)."""
    out = [f"# Report: {report['study']['name']}", "", *(f"{line}  " for line in _header_lines(report)), ""]
    if report["missing"]:
        out += ["## Missing", "", *(f"- {m}" for m in report["missing"]), ""]
    for title, header, rows, note in _tables(report):
        out += [f"## {title}", ""]
        if rows:
            out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
        else:
            out.append("(nothing to compare yet)")
        out += ([""] + [note] if note else []) + [""]
    out += ["## What this N can show", "", *(f"- {line}" for line in _power_lines(report)), ""]
    for plot in plots:
        out += [f"## {plot.title}", "", f"![{plot.title}]({plot_dir}/{plot.name}.png)", "", plot.caption, ""]
    return "\n".join(out)


_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1200px;color:#222;padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:right;white-space:nowrap}td:last-child{white-space:normal}
td:first-child,th:first-child{text-align:left}th{background:#f3f3f3}tr.sig td{background:#eef7ee}
.note{color:#555;font-size:.85rem}.missing{background:#fff6e0;border:1px solid #e8c060;padding:.5rem 1rem}
figure{margin:1rem 0}figure img{max-width:100%;border:1px solid #eee}figcaption{color:#555;font-size:.85rem}
.grid{display:flex;flex-wrap:wrap;gap:1rem}.grid figure{max-width:380px}
"""


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    column = header.index("significant") if "significant" in header else None
    for row in rows:
        significant = column is not None and row[column] == "yes"
        body.append(f"<tr{' class=sig' if significant else ''}>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _figure(plot: Plot) -> str:
    data = base64.b64encode(plot.png).decode("ascii")
    return (f'<figure id="plot-{html.escape(plot.name)}"><img alt="{html.escape(plot.title)}" '
            f'src="data:image/png;base64,{data}"><figcaption>{html.escape(plot.caption)}</figcaption></figure>')


def render_html(report: dict[str, Any], plots: list[Plot]) -> str:
    """One HTML file with every table and plot; it needs nothing beside it."""
    name = html.escape(report["study"]["name"])
    parts = [f"<!doctype html><html><head><meta charset=utf-8><title>corrotune report: {name}</title>",
             f"<style>{_STYLE}</style></head><body><h1>corrotune report: {name}</h1>"]
    parts += [f"<p>{html.escape(line)}</p>" for line in _header_lines(report)]
    if report["missing"]:
        items = "".join(f"<li>{html.escape(m)}</li>" for m in report["missing"])
        parts.append(f'<div class="missing"><b>Not finished yet</b> (the report shows what is):<ul>{items}</ul></div>')
    tables = _tables(report)
    for title, header, rows, note in tables:
        parts.append(f"<h2>{html.escape(title)}</h2>")
        parts.append(_html_table(header, rows) if rows else "<p class=note>(nothing to compare yet)</p>")
        if note:
            parts.append(f"<p class=note>{html.escape(note)}</p>")
        if title.startswith("Against the baseline"):
            parts.append("<h2>What this N can show</h2><ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in _power_lines(report)) + "</ul>")
    single = [p for p in plots if not p.name.startswith("confusion_")]
    confusion = [p for p in plots if p.name.startswith("confusion_")]
    for plot in single:
        parts.append(f"<h2>{html.escape(plot.title)}</h2>{_figure(plot)}")
    if confusion:
        parts.append("<h2>Confusion matrices (best run per cell)</h2><div class=grid>")
        parts += [f"<div><b>{html.escape(p.title.split(': ', 1)[-1])}</b>{_figure(p)}</div>" for p in confusion]
        parts.append("</div>")
    parts.append("</body></html>")
    return "\n".join(parts)
