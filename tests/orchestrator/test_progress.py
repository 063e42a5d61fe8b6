"""Progress output: event and summary lines in logs and the study's log file, a live status line on a terminal."""

from __future__ import annotations

import io
import pickle
from types import SimpleNamespace

from rich.console import Console

from orchestrator.progress import ProgressPrinter

OBJECTIVES = [("val/accuracy", "max")]


def _trial(trial_id: str, cell: str, status: str = "RUNNING") -> SimpleNamespace:
    config = {"lr": 0.1, "seed": 0, "corrotune": {"cell": cell, "phase": "search", "repeat": None}}
    return SimpleNamespace(trial_id=trial_id, status=status, config=config, last_result={}, path=f"/study/t_{trial_id}", num_failures=1)


def _result(epoch: int, accuracy: float) -> dict:
    return {"training_iteration": epoch, "epoch": epoch, "val/accuracy": accuracy, "train/loss": 1 - accuracy}


def _log_console() -> Console:
    return Console(file=io.StringIO(), width=60, force_terminal=False)  # narrower than any line


def _drive(printer: ProgressPrinter, trials: list[SimpleNamespace]) -> None:
    """Two epochs per trial, then each ends; the last one errors."""
    printer.setup(total_num_samples=len(trials))
    printer.on_step_end(0, trials)
    for epoch in (1, 2):
        for i, trial in enumerate(trials):
            printer.on_trial_result(epoch, trials, trial, _result(epoch, 0.5 + 0.1 * i + 0.01 * epoch))
    for trial in trials[:-1]:
        printer.on_trial_complete(3, trials, trial)
        trial.status = "TERMINATED"
    trials[-1].status = "ERROR"
    printer.on_trial_error(4, trials, trials[-1])
    printer.on_experiment_end(trials)


def test_log_output_has_one_line_per_event_and_summaries():
    console = _log_console()
    printer = ProgressPrinter(OBJECTIVES, console, summary_every=2, summary_interval_s=3600)
    assert not printer._is_live  # not a terminal
    trials = [_trial("a", "attention=eca"), _trial("b", "attention=none"), _trial("c", "attention=none")]
    _drive(printer, trials)
    lines = console.file.getvalue().splitlines()
    results = [line for line in lines if " epoch " in line]
    assert len(results) == 6
    assert "trial a [attention=eca] epoch 1: val/accuracy=0.5100 train/loss=0.4900  new best" in results[0]
    assert "new best" not in results[3]  # epoch 2 of trial a (0.52) is below trial c's 0.71
    assert any(line.endswith("trial a [attention=eca] finished (1/3 trials done)") for line in lines)
    assert any("trial c [attention=none] errored" in line and "/study/t_c/error.txt" in line for line in lines)
    summaries = [line for line in lines if "done, " in line and "best val/accuracy per cell" in line]
    # after two trials ended, then at the end
    assert summaries[0].startswith("2/3 done, 1 running, 0 errored")
    assert len(summaries) == len(set(summaries)) == 2  # the end repeats no unchanged summary
    assert summaries[-1] == (
        "2/3 done, 0 running, 1 errored; best val/accuracy per cell: "
        "attention=eca 0.5200 (a), attention=none 0.6200 (b)"  # errored c (0.72) ranks below finished b
    )


def test_a_summary_line_every_interval_while_nothing_ends():
    console = _log_console()
    printer = ProgressPrinter(OBJECTIVES, console, summary_every=100, summary_interval_s=0.0)
    trials = [_trial("a", "base")]
    printer.setup(total_num_samples=4)
    printer.on_trial_result(1, trials, trials[0], _result(1, 0.6))
    printer.on_step_end(1, trials)
    lines = console.file.getvalue().splitlines()
    assert "trial a epoch 1" in lines[0]  # the base cell is not labelled
    assert lines[-1] == "0/4 done, 1 running, 0 errored; best val/accuracy per cell: base 0.6000 (a)"


def test_min_objectives_rank_the_lowest_and_every_objective_is_printed():
    console = _log_console()
    printer = ProgressPrinter([("val/loss", "min"), ("val/accuracy", "max")], console)
    trial = _trial("a", "base")
    for epoch, loss in [(1, 0.9), (2, 0.4), (3, 0.6)]:
        printer.on_trial_result(epoch, [trial], trial, {"training_iteration": epoch, "val/loss": loss, "val/accuracy": 1 - loss})
    lines = console.file.getvalue().splitlines()
    assert "val/loss=0.4000 val/accuracy=0.6000" in lines[1] and lines[1].endswith("new best")
    assert "new best" not in lines[2]
    assert printer.summary().endswith("best val/loss per cell: base 0.4000 (a)")


def test_live_status_line_on_a_terminal_shows_states_eta_and_best_per_cell_with_errors_above_it(tmp_path):
    console = Console(file=io.StringIO(), width=160, force_terminal=True, color_system=None)
    printer = ProgressPrinter(OBJECTIVES, console, epochs_per_trial=2, log_path=tmp_path / "corrotune.log")
    assert printer._is_live
    trials = [_trial("a", "attention=eca"), _trial("b", "attention=none"), _trial("c", "attention=none")]
    trials[1].status = trials[2].status = "PENDING"
    printer.setup(total_num_samples=3)
    assert pickle.loads(pickle.dumps(printer)).console is not None  # picklable while live (no file handle)
    printer.on_step_end(0, trials)
    printer.on_trial_result(1, trials, trials[0], _result(1, 0.8))
    line = printer.render()
    assert "\n" not in line.plain  # one line
    assert line.plain.startswith("Study  0/3 done · 1 running · 0 errored · 0m00s · ETA ")
    assert line.plain.endswith("best val/accuracy: attention=eca 0.8000 (a) | attention=none -")
    _drive(printer, trials)
    output = console.file.getvalue()
    assert printer._live is None  # stopped at experiment end, its last view left on screen
    assert "Study  2/3 done · 0 running · 1 errored" in output
    last_view = [line for line in output.splitlines() if "Study  " in line][-1]
    assert "attention=none 0.6200 (b)" in last_view  # errored c (0.72) ranks below finished b
    assert "trial c [attention=none] errored" in output  # errors get a line of their own
    assert " epoch 1: " not in output and "finished (" not in output  # routine events only in the log
    assert "done, " not in output.replace("trials done", "")  # no log-style summary lines
    log = (tmp_path / "corrotune.log").read_text().splitlines()
    assert any(line.endswith("trial a [attention=eca] epoch 1: val/accuracy=0.8000 train/loss=0.2000  new best") for line in log)
    assert any(line.endswith("trial a [attention=eca] finished (1/3 trials done)") for line in log)
    assert any("trial c [attention=none] errored" in line for line in log)
    assert log[-1].endswith("2/3 done, 0 running, 1 errored; best val/accuracy per cell: attention=eca 0.5200 (a), attention=none 0.6200 (b)")
    assert all(line[:4].isdigit() and "[" not in line.split(" ", 2)[2][:1] for line in log)  # timestamped, no markup


def test_log_file_gets_the_lines_a_log_console_gets_and_a_bad_path_costs_a_warning(tmp_path, caplog):
    console = _log_console()
    printer = ProgressPrinter(OBJECTIVES, console, summary_every=2, summary_interval_s=3600, log_path=tmp_path / "corrotune.log")
    _drive(printer, [_trial("a", "attention=eca"), _trial("b", "attention=none"), _trial("c", "attention=none")])
    printed = [line for line in console.file.getvalue().splitlines() if line]
    logged = [line.split(" ", 2)[2] for line in (tmp_path / "corrotune.log").read_text().splitlines()]
    assert logged == printed
    (tmp_path / "taken").write_text("a file, not a folder")
    broken = ProgressPrinter(OBJECTIVES, _log_console(), log_path=tmp_path / "taken" / "corrotune.log")
    _drive(broken, [_trial("a", "base")])
    assert "could not write its log" in caplog.text and caplog.text.count("could not write its log") == 1


def test_redraws_are_throttled(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr("orchestrator.progress.time.monotonic", clock)
    console = Console(file=io.StringIO(), width=160, force_terminal=True, color_system=None)
    printer = ProgressPrinter(OBJECTIVES, console, refresh_interval_s=0.5)
    renders = []
    monkeypatch.setattr(printer, "render", lambda original=printer.render: renders.append(1) or original())
    trial = _trial("a", "base")
    printer.setup(total_num_samples=1)
    first = len(renders)
    for epoch in range(1, 101):  # 100 results within 0.1 s: no redraw until the interval passed
        clock.now += 0.001
        printer.on_trial_result(epoch, [trial], trial, _result(epoch, 0.5))
    assert len(renders) == first
    clock.now += 0.5
    printer.on_trial_result(101, [trial], trial, _result(101, 0.5))
    assert len(renders) == first + 1
    printer.close()


def test_the_earlier_metric_mode_console_call_still_works():
    console = _log_console()
    printer = ProgressPrinter("val/loss", "min", console)
    assert printer.objectives == [("val/loss", "min")] and printer.console is console


def test_restored_printer_has_a_console_and_keeps_its_best():
    printer = ProgressPrinter(OBJECTIVES, _log_console())
    trial = _trial("a", "base")
    printer.on_trial_result(1, [trial], trial, _result(1, 0.7))
    restored = pickle.loads(pickle.dumps(printer))
    assert isinstance(restored.console, Console) and restored.best == 0.7
    assert restored.summary() == printer.summary()


def test_a_printer_pickled_by_the_earlier_version_still_restores():
    old = ProgressPrinter.__new__(ProgressPrinter)
    old.__setstate__({"metric": "val/loss", "mode": "min", "console": None, "best": 0.3, "started": 1.0})
    assert old.objectives == [("val/loss", "min")] and old.best == 0.3 and isinstance(old.console, Console)
    trial = _trial("a", "base")
    old.on_trial_result(1, [trial], trial, {"training_iteration": 1, "val/loss": 0.2})
    assert old.best == 0.2


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _paced(monkeypatch, **budget) -> tuple[ProgressPrinter, list[SimpleNamespace], _Clock]:
    """Two trials of 4 epochs; each epoch takes 10 s of the study's clock."""
    clock = _Clock()
    monkeypatch.setattr("orchestrator.progress.time.monotonic", clock)
    printer = ProgressPrinter(OBJECTIVES, _log_console(), summary_interval_s=3600, **budget)
    trials = [_trial("a", "base"), _trial("b", "base")]
    printer.setup(total_num_samples=2)
    return printer, trials, clock


def test_eta_follows_the_epoch_budget_at_the_pace_so_far(monkeypatch):
    printer, trials, clock = _paced(monkeypatch, epochs_per_trial=4)
    assert printer.eta_s() is None and "ETA" not in printer.summary()  # nothing to go by yet
    for epoch in (1, 2):
        clock.now += 10
        printer.on_trial_result(epoch, trials, trials[0], _result(epoch, 0.5))
        printer.on_trial_result(epoch, trials, trials[1], _result(epoch, 0.5))
    assert printer.eta_s() == 20.0  # half of 2 x 4 epochs in 20 s
    assert "2 running, 0 errored, ETA 0m20s; best" in printer.summary()
    clock.now += 5  # trial a ends early (a scheduler stopped it): its epochs count whole
    printer.on_trial_complete(3, trials, trials[0])
    assert printer.eta_s() == 25.0 * 2 / 6
    assert "ETA" in printer.render().plain


def test_eta_counts_trials_without_an_epoch_budget_and_never_passes_the_time_budget(monkeypatch):
    printer, trials, clock = _paced(monkeypatch, time_budget_s=100)
    assert printer.eta_s() == 100.0  # nothing done yet: the time budget is all there is
    clock.now += 30
    printer.on_trial_result(1, trials, trials[0], _result(1, 0.5))
    printer.on_trial_complete(1, trials, trials[0])
    assert printer.eta_s() == 30.0  # one of two trials in 30 s
    clock.now += 50
    assert printer.eta_s() == 20.0  # 80 s at this pace, but the budget ends in 20


def test_a_printer_pickled_before_the_eta_still_resumes():
    printer = ProgressPrinter(OBJECTIVES, _log_console())
    state = printer.__getstate__()
    del state["epochs_per_trial"], state["time_budget_s"]
    restored = ProgressPrinter.__new__(ProgressPrinter)
    restored.__setstate__(state)
    assert restored.eta_s() is None and restored.summary().startswith("0/0 done")


def test_a_started_trial_without_a_result_spends_no_epoch_of_the_eta(monkeypatch):
    printer, trials, clock = _paced(monkeypatch, epochs_per_trial=1)
    trials[0].last_result = {"trial_id": "a"}  # what Ray holds for a trial that has just started
    clock.now += 30
    printer.on_step_end(1, trials)
    assert printer.eta_s() is None and "ETA" not in printer.summary()


def test_summaries_after_ended_trials_take_at_most_their_share_of_the_time(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr("orchestrator.progress.time.monotonic", clock)
    console = _log_console()
    printer = ProgressPrinter(OBJECTIVES, console, summary_every=1, summary_interval_s=3600)
    trials = [_trial(f"t{n}", "base") for n in range(6)]
    printer.setup(total_num_samples=len(trials))

    def summaries() -> int:
        return sum("done, " in line for line in console.file.getvalue().splitlines())

    slow = printer.summary
    monkeypatch.setattr(printer, "summary", lambda: (setattr(clock, "now", clock.now + 0.1), slow())[1])  # 0.1 s each
    printer.on_trial_complete(1, trials, trials[0])
    assert summaries() == 1
    clock.now += 5.0  # less than 0.1 s / SUMMARY_SHARE since
    printer.on_trial_complete(2, trials, trials[1])
    assert summaries() == 1
    clock.now += 5.0
    printer.on_trial_complete(3, trials, trials[2])
    assert summaries() == 2 and "3/6 done" in console.file.getvalue().splitlines()[-1]


class _Both:
    """The study's order: the trials table's callback first, then the printer reading its table."""

    def __init__(self, *callbacks) -> None:
        self.callbacks = callbacks

    def __getattr__(self, hook: str):
        return lambda *args, **kwargs: [getattr(c, hook)(*args, **kwargs) for c in self.callbacks][-1]


def test_a_printer_reading_the_trials_tables_rows_prints_the_same_and_counts_each_epoch_once(tmp_path):
    from orchestrator.trials_table import TrialsTableCallback

    def trials() -> list[SimpleNamespace]:
        return [_trial("a", "attention=eca"), _trial("b", "attention=none"), _trial("c", "attention=none")]

    alone = ProgressPrinter(OBJECTIVES, _log_console(), summary_every=2, summary_interval_s=3600)
    _drive(alone, trials())
    table = TrialsTableCallback(tmp_path, OBJECTIVES)
    reader = ProgressPrinter(OBJECTIVES, _log_console(), summary_every=2, summary_interval_s=3600, table=table.table)
    _drive(_Both(table, reader), trials())

    assert reader.table is table.table
    assert _lines(reader) == _lines(alone)
    assert [row["epochs"] for row in table.table.rows()] == [2, 2, 2]
    assert [row["status"] for row in table.table.rows()] == ["TERMINATED", "TERMINATED", "ERROR"]
    restored = pickle.loads(pickle.dumps([table, reader]))  # as in tuner.pkl: still one table
    assert restored[1].table is restored[0].table


def _lines(printer: ProgressPrinter) -> list[str]:
    """The printer's lines without their elapsed-time prefix."""
    return [line.split("s ", 1)[-1] if " epoch " in line else line for line in printer.console.file.getvalue().splitlines()]


def test_a_quiet_console_prints_nothing_and_the_log_file_still_gets_every_line(tmp_path):
    console = Console(file=io.StringIO(), quiet=True)
    printer = ProgressPrinter(OBJECTIVES, console, summary_every=2, summary_interval_s=3600, log_path=tmp_path / "corrotune.log")
    _drive(printer, [_trial("a", "attention=eca"), _trial("b", "attention=none"), _trial("c", "attention=none")])
    assert console.file.getvalue() == ""
    logged = (tmp_path / "corrotune.log").read_text().splitlines()
    assert sum(" epoch " in line for line in logged) == 6 and any("finished (2/3 trials done)" in line for line in logged)
