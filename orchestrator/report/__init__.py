"""``corrotune report``: which ablation cell is really better, with the statistics to show it.

From a study folder (finished, running or crashed) it writes ``report/report.json`` (the
scriptable contract: cells, pairwise Tukey HSD, Dunnett against a baseline with paired
bootstrap intervals, factor effects, power, paper-vs-ours), ``report/report.md`` and a
self-contained ``report/report.html`` with every plot embedded.

Example:
    >>> paths = write_report("corrotune-results/ablation_tiny")
    >>> json.loads(paths["json"].read_text())["pairwise"][0]["p_value"]
"""

from orchestrator.report._build import build_report
from orchestrator.report._gather import ReportError, StudyData, gather
from orchestrator.report._write import report_after_run, write_report

__all__ = ["ReportError", "StudyData", "build_report", "gather", "report_after_run", "write_report"]
