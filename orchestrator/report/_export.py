"""The report in the tools users already have: a W&B run, and the cells' Optuna studies on disk.

* :func:`log_to_wandb`: one run per report (job type ``report``, the study's group and
  project) with the cell table as a ``wandb.Table`` and every plot; offline unless the study
  or ``WANDB_MODE`` says otherwise, never a login prompt.
* :func:`export_optuna_journal`: every cell's Optuna study, taken from the searcher state Ray
  saved (``searcher-state-*.pkl``), written to ``optuna_journal.log`` in the study folder, which
  ``optuna-dashboard <file>`` opens and ``optuna.load_study`` reads.
"""

from __future__ import annotations

import io
import json
import os
import pickle
from pathlib import Path
from typing import Any, Optional

from optuna.storages.journal import BaseJournalBackend

from corrotune.files import atomic_path
from orchestrator.report._plots import Plot

__all__ = ["JOURNAL_FILE", "export_optuna_journal", "log_to_wandb", "searcher_cells"]

JOURNAL_FILE = "optuna_journal.log"


def searcher_cells(study_dir: Path) -> list[Any]:
    """The cells (label + Optuna study) of the newest saved :class:`AblationSearcher` state."""
    for path in sorted(study_dir.glob("searcher-state-*.pkl"), reverse=True):
        try:
            with path.open("rb") as handle:
                state = pickle.load(handle)
        except Exception:  # noqa: BLE001 - a snapshot being replaced, or from another version
            continue
        for _ in range(3):  # a ConcurrencyLimiter's state may wrap the searcher's
            if isinstance(state, dict) and "_cells" in state:
                return list(state["_cells"])
            inner = state.get("searcher") if isinstance(state, dict) else None
            state = getattr(inner, "__dict__", inner)
    return []


def export_optuna_journal(study_dir: Path) -> Optional[Path]:
    """Writes each cell's Optuna study (``<study>/<cell>``) to ``<study_dir>/optuna_journal.log``.

    Returns:
        The file, or ``None`` when the study has no search (no Optuna studies) or no saved state.
    """
    import optuna
    from optuna.storages import JournalStorage

    cells = [c for c in searcher_cells(study_dir) if getattr(c, "study", None) is not None]
    if not cells:
        return None
    target = study_dir / JOURNAL_FILE
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    journal = JournalInMemory()
    storage = JournalStorage(journal)
    for cell in cells:
        source = cell.study
        copy = optuna.create_study(storage=storage, study_name=source.study_name, directions=source.directions)
        copy.add_trials([t for t in source.get_trials(deepcopy=False) if t.state.is_finished()])
        for key, value in {"cell": cell.label, **{f"factor/{k}": v for k, v in cell.levels.items()}}.items():
            copy.set_user_attr(key, value)
    with atomic_path(target) as temporary:  # a reader never sees half a journal
        journal.write(Path(temporary))
    return target


class JournalInMemory(BaseJournalBackend):
    """Optuna's journal kept in memory, then written once in ``JournalFileBackend``'s format.

    ``JournalFileBackend`` takes a lock file and fsyncs for every operation (each trial is
    several): at thousands of trials the export took seconds for what is one file write.
    """

    def __init__(self) -> None:
        self.logs: list[dict[str, Any]] = []

    def read_logs(self, log_number_from: int) -> list[dict[str, Any]]:
        return self.logs[log_number_from:]

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        self.logs.extend(logs)

    def write(self, path: Path) -> None:
        """The journal as ``JournalFileBackend`` writes it: one compact JSON object a line."""
        with path.open("w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(log, separators=(",", ":")) + "\n" for log in self.logs)


def _wandb_mode(study: Any) -> str:
    from orchestrator.tracking import resolve_wandb_mode

    spec = study.tracking.wandb
    if spec.mode != "auto":
        return spec.mode
    return os.environ.get("WANDB_MODE") or resolve_wandb_mode("auto")


def log_to_wandb(report: dict[str, Any], plots: list[Plot], study: Any, out_dir: Path) -> Optional[str]:
    """Logs the report as one W&B run; returns its mode (``None`` when tracking is disabled)."""
    mode = _wandb_mode(study)
    if mode == "disabled":
        return None
    import wandb
    from PIL import Image

    spec = study.tracking.wandb
    os.environ.setdefault("WANDB_SILENT", "true")
    run = wandb.init(
        project=spec.project, entity=spec.entity, group=study.name, job_type="report", name=f"{study.name}/report",
        tags=[*spec.tags, "report"], mode=mode, dir=str(out_dir), reinit="create_new",
        config={"metric": report["metric"], "phase": report["phase"], "baseline": report["baseline"]},
    )
    try:
        columns = ["cell", "n", "mean", "std", "ci95_low", "ci95_high", "min", "max"]
        rows = [[c["cell"], c["n"], c["mean"], c["std"], *(c["ci95"] or [None, None]), c["min"], c["max"]] for c in report["cells"]]
        logged: dict[str, Any] = {"report/cell_table": wandb.Table(columns=columns, data=rows)}
        if report["pairwise"]:
            keys = ["a", "b", "mean_diff", "p_value", "significant"]
            logged["report/pairwise_table"] = wandb.Table(columns=keys, data=[[p[k] for k in keys] for p in report["pairwise"]])
        for plot in plots:
            logged[f"report/plot/{plot.name}"] = wandb.Image(Image.open(io.BytesIO(plot.png)), caption=plot.title)
        run.log(logged)
    finally:
        run.finish()
    return mode
