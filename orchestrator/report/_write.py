"""Writes a report folder: ``report.json``, ``report.md`` (+ ``plots/*.png``) and ``report.html``."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Optional

from corrotune.files import write_text
from orchestrator.report._build import build_report
from orchestrator.report._gather import ReportError, gather
from orchestrator.report._plots import all_plots
from orchestrator.report._render import render_html, render_markdown

__all__ = ["REPORT_DIR", "report_after_run", "write_report"]

REPORT_DIR = "report"
log = logging.getLogger(__name__)


def write_report(
    study_dir: str | Path,
    metric: Optional[str] = None,
    baseline: Optional[str] = None,
    out: Optional[str | Path] = None,
    wandb: bool = True,
    say: Callable[[str], Any] = print,
) -> dict[str, Path]:
    """Reports on a study folder; returns ``{"json", "md", "html"[, "optuna"]}`` -> path.

    Args:
        study_dir: The study folder (``<storage>/<name>``), finished, running or crashed.
        metric: Metric to compare (default: the objective, scored on test when trials report it).
        baseline: Cell the others are compared with (default: first level of every factor).
        out: Report folder (default ``<study_dir>/report``).
        wandb: Also log the report as a W&B run (job type ``report``) when the study tracks to W&B.
        say: Where progress lines go.

    Raises:
        ReportError: the folder cannot be reported on (the message says why).
    """
    study_dir = Path(study_dir)
    data = gather(study_dir, metric, baseline)
    report = build_report(data)
    plots = all_plots(data, report)
    out_dir = Path(out) if out is not None else study_dir / REPORT_DIR
    (out_dir / "plots").mkdir(parents=True, exist_ok=True)
    for plot in plots:
        (out_dir / "plots" / f"{plot.name}.png").write_bytes(plot.png)
    paths = {"json": out_dir / "report.json", "md": out_dir / "report.md", "html": out_dir / "report.html"}
    from orchestrator.report._export import export_optuna_journal, log_to_wandb

    try:
        journal = export_optuna_journal(study_dir)
    except Exception as err:  # noqa: BLE001 - the report itself must still be written
        journal = None
        report["notes"].append(f"the Optuna studies could not be exported ({type(err).__name__}: {err})")
    if journal is not None:
        paths["optuna"] = journal
        report["optuna_journal"] = str(journal)
    write_text(paths["json"], json.dumps(report, indent=1, allow_nan=False))
    write_text(paths["md"], render_markdown(report, plots))
    write_text(paths["html"], render_html(report, plots))
    say(f"Report written to {paths['html']} (and report.md, report.json)")
    if journal is not None:
        say(f"Optuna studies of every cell: optuna-dashboard {journal}")
    if wandb:
        try:
            mode = log_to_wandb(report, plots, data.study, out_dir)
        except Exception as err:  # noqa: BLE001 - W&B trouble never costs the report on disk
            say(f"W&B: the report run could not be logged ({type(err).__name__}: {err}); the files above are complete")
        else:
            if mode == "offline":
                say(f"W&B report run written offline; to upload: wandb sync {out_dir}/wandb/offline-run-*")
    for line in data.missing[:10]:
        say(f"  missing: {line}")
    if len(data.missing) > 10:
        say(f"  ... and {len(data.missing) - 10} more (see report.json 'missing')")
    return paths


def report_after_run(place: Any, console: Any) -> None:
    """The end of ``run``/``resume``: writes the study's report; any failure is only a warning.

    The W&B report run is logged here when W&B is online (``corrotune report`` logs it offline too).

    Args:
        place: The study's :class:`~orchestrator.storage.StudyPlace` (the report is published
            to remote storage beside the study).
        console: A rich console for the lines it prints.
    """
    def say(line: str) -> None:
        console.print(line, markup=False, highlight=False, soft_wrap=True)

    # an offline report run would sit among the trials' offline runs, which W&B continuity is
    # checked on (one per trial); offline, `corrotune report` logs it on request
    online = os.environ.get("WANDB_MODE") == "online"
    try:
        write_report(place.local_dir, wandb=online, say=say)
        if not online:
            say(f"W&B report run: `corrotune report {place.uri}` logs one (offline runs are left to the trials here)")
        place.publish(REPORT_DIR)
    except ReportError as err:
        say(f"No report: {err}")
    except Exception as err:  # noqa: BLE001 - a report must never fail the study that ran
        log.debug("report failed", exc_info=True)
        say(f"The report could not be written ({type(err).__name__}: {err}); "
            f"the study is complete; try `corrotune report {place.local_dir}`")
