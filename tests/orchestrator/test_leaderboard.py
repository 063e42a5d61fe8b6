from types import SimpleNamespace

import pandas as pd

from orchestrator.leaderboard import build_leaderboard, print_leaderboard, write_leaderboard


def _result(trial_id, values, config, error=None, test=None):
    frame = pd.DataFrame({"training_iteration": range(1, len(values) + 1), "val/accuracy": values}) if values else None
    metrics = {"trial_id": trial_id, **(test or {})}
    return SimpleNamespace(metrics_dataframe=frame, metrics=metrics, config=config, error=error, path=f"/x/{trial_id}")


RESULTS = [
    _result("a", [0.5, 0.7, 0.6], {"lr": 0.1, "dropout": 0.2, "epochs": 3, "data": {"p": 1}}),
    _result("b", [0.55, 0.9], {"lr": 0.01, "dropout": 0.2, "epochs": 3, "data": {"p": 1}}, test={"test/accuracy": 0.88}),
    _result("c", None, {"lr": 0.001, "dropout": 0.2, "epochs": 3, "data": {"p": 1}}, error=RuntimeError("boom")),
]


def test_rows_rank_by_best_value_and_show_only_varying_config():
    rows = build_leaderboard(RESULTS, "val/accuracy", "max")
    assert [r["trial_id"] for r in rows] == ["b", "a", "c"]
    assert [r["rank"] for r in rows] == [1, 2, 3]
    assert rows[0]["best"] == 0.9 and rows[0]["best_epoch"] == 2 and rows[0]["test/accuracy"] == 0.88
    assert rows[1]["best"] == 0.7 and rows[1]["best_epoch"] == 2 and rows[1]["last"] == 0.6
    assert rows[2]["status"] == "ERROR" and rows[2]["best"] is None  # never reported: ranked last
    config_keys = [k for k in rows[0] if k.startswith("config/")]
    assert config_keys == ["config/lr"]  # dropout and epochs are the same everywhere; data is excluded


def test_an_errored_trial_never_ranks_above_a_finished_one():
    failed_late = _result("d", [0.95, 0.99], {"lr": 0.5, "epochs": 3}, error=RuntimeError("diverged"))
    for mode in ("max", "min"):
        rows = build_leaderboard([failed_late, *RESULTS], "val/accuracy", mode)
        assert [r["status"] for r in rows] == ["TERMINATED", "TERMINATED", "ERROR", "ERROR"]
        assert [r["trial_id"] for r in rows][2:] == ["d", "c"]  # among errored ones: reported first
        assert [r["rank"] for r in rows] == [1, 2, 3, 4]
    from orchestrator.leaderboard import cell_summary

    (cell,) = cell_summary(build_leaderboard([failed_late, *RESULTS], "val/accuracy", "max"))
    assert cell["runs"] == 2 and cell["max"] == 0.9  # the errored run's 0.99 is not in the cell's statistics


def test_min_mode_ranks_lowest_first():
    rows = build_leaderboard(RESULTS[:2], "val/accuracy", "min")
    assert [r["trial_id"] for r in rows] == ["a", "b"] and rows[0]["best"] == 0.5


def test_written_files_and_printed_table(tmp_path):
    from rich.console import Console

    rows = build_leaderboard(RESULTS, "val/accuracy", "max")
    csv_path, json_path = write_leaderboard(rows, tmp_path, "val/accuracy", "max")
    assert csv_path.read_text().splitlines()[0].startswith("rank,trial_id,cell,phase,seed,status,epochs,best")
    assert len(csv_path.read_text().splitlines()) == 4
    assert '"trial_id": "b"' in json_path.read_text()
    console = Console(record=True, width=200)
    print_leaderboard(rows, "val/accuracy", console)
    text = console.export_text()
    assert "Leaderboard by best val/accuracy" in text and "0.9" in text
