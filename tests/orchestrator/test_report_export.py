"""The report in users' tools: every cell's Optuna study in a JournalStorage file, and a W&B run."""

from __future__ import annotations

import time

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from orchestrator._wandb_history import read_offline_run
from orchestrator.ablation import AblationSearcher
from orchestrator.report._export import JOURNAL_FILE, export_optuna_journal, log_to_wandb
from orchestrator.report._plots import Plot
from orchestrator.spec import Study
from search_spaces import get_space
from tests.orchestrator.test_report import TINY, make_study


def _searched_state(folder) -> AblationSearcher:
    cells = [({"x": "a"}, {}), ({"x": "b"}, {})]
    searcher = AblationSearcher(cells, [("score", "max")], space=get_space("noop"), trials_per_cell=3, study_name="s")
    for n in range(6):
        config = searcher.suggest(f"t{n}")
        searcher.on_trial_complete(f"t{n}", {"score": config["x"] + (n % 2)})
    searcher.save(str(folder / "searcher-state-2026-01-01_00-00-00.pkl"))
    return searcher


def test_every_cells_optuna_study_is_read_back_from_the_journal(tmp_path):
    searcher = _searched_state(tmp_path)
    path = export_optuna_journal(tmp_path)
    assert path == tmp_path / JOURNAL_FILE
    storage = JournalStorage(JournalFileBackend(str(path)))
    names = sorted(s.study_name for s in optuna.get_all_study_summaries(storage))
    assert names == ["s/x=a", "s/x=b"]
    for cell in searcher._cells:
        loaded = optuna.load_study(study_name=cell.study.study_name, storage=storage)
        assert [t.values for t in loaded.trials] == [t.values for t in cell.study.trials]
        assert [t.params for t in loaded.trials] == [t.params for t in cell.study.trials]
        assert loaded.user_attrs["cell"] == cell.label
    export_optuna_journal(tmp_path)  # a second report replaces the file, it does not add the studies twice
    assert len(optuna.load_study(study_name="s/x=a", storage=JournalStorage(JournalFileBackend(str(path)))).trials) == 3


def test_no_search_no_journal(tmp_path):
    assert export_optuna_journal(tmp_path) is None


def test_the_report_run_is_logged_offline_with_its_table_and_plots(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    folder = make_study(tmp_path, {"a": [0.5, 0.6], "b": [0.6, 0.7]}, extra={"tracking": {"wandb": {"mode": "auto"}}})
    study = Study.model_validate({"name": "s", "trainable": "noop", "data": {"path": "synthetic:corrosion"}})
    report = {"metric": "score", "phase": "confirm", "baseline": "x=a", "pairwise": [],
              "cells": [{"cell": "x=a", "n": 2, "mean": 0.55, "std": 0.07, "ci95": [0.0, 1.0], "min": 0.5, "max": 0.6}]}
    png = (TINY.parent / "tiny.png").read_bytes()
    assert log_to_wandb(report, [Plot("cells", "Cells", png)], study, folder) == "offline"
    runs = list((folder / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    run = read_offline_run(runs[0])
    deadline = time.monotonic() + 60
    while run.exit_code is None and time.monotonic() < deadline:  # wandb's service may still be writing
        time.sleep(0.5)
        run = read_offline_run(runs[0])
    assert (run.job_type, run.group, run.exit_code) == ("report", "s", 0)
    assert run.rows[0]["report/cell_table/_type"] == "table-file" and run.rows[0]["report/plot/cells/_type"] == "image-file"
    assert run.config["baseline"] == "x=a"
    disabled = Study.model_validate({**study.model_dump(), "tracking": {"wandb": {"mode": "disabled"}}})
    assert log_to_wandb(report, [], disabled, folder) is None
