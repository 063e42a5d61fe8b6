"""benchmarks/search_efficiency.py's replay on synthetic lookup tables: epoch counting, the
"within 1 point" rule, ASHA's stops, the budget cap, and the table file's checks. No training."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture()
def replay(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import _search_replay

    return _search_replay


def _table(curves: dict[int, list[float]]) -> dict:
    """A table over one grid key ``x`` with the given curve per value."""
    grid = {"x": sorted(curves)}
    epochs = len(next(iter(curves.values())))
    return {
        "setup": {"grid": grid, "params": {"epochs": epochs}, "metric": "val/accuracy"},
        "configs": [{"params": {"x": x}, "curve": curve} for x, curve in curves.items()],
    }


FLAT = {0: [50.0] * 4, 1: [60.0] * 4, 2: [70.0] * 4, 3: [90.0] * 4}


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_a_target_below_every_value_is_reached_by_the_first_epoch(replay, sampler):
    curves = {(x,): c for x, c in FLAT.items()}
    run = replay.replay_search(curves, {"x": [0, 1, 2, 3]}, epochs=4, sampler=sampler, seed=0, target=10.0, budget=16)
    assert run.epochs_to_target == 1
    assert run.epochs_used <= 2  # the other trial's epoch, already running, still finishes


def test_an_unreachable_target_spends_exactly_the_budget_and_reports_none(replay):
    curves = {(x,): c for x, c in FLAT.items()}
    run = replay.replay_search(curves, {"x": [0, 1, 2, 3]}, epochs=4, sampler="random", seed=1, target=99.0, budget=13)
    assert run.epochs_to_target is None
    assert run.epochs_used == 13
    assert sum(epochs for _, epochs in run.trials_run) == 13  # every epoch counted once
    assert run.best == max(curves[config][0] for config, _ in run.trials_run)  # flat curves


def test_epochs_are_counted_up_to_the_result_that_comes_within_reach(replay):
    # config 3 leads at every epoch (ASHA never stops it) but reaches the target only at its last
    curves = {(0,): [40.0, 41.0, 42.0, 43.0], (1,): [45.0, 46.0, 47.0, 48.0], (2,): [20.0] * 4, (3,): [50.0, 55.0, 60.0, 80.0]}
    run = replay.replay_search(curves, {"x": [0, 1, 2, 3]}, epochs=4, sampler="random", seed=0, target=79.0,
                               budget=64, concurrency=1)
    assert run.epochs_to_target is not None and run.best == 80.0
    # sequential: the target is the last epoch processed, and config 3 ran 4 epochs in its last trial
    assert run.epochs_to_target == run.epochs_used == sum(epochs for _, epochs in run.trials_run)
    assert run.trials_run[-1] == ((3,), 4)
    assert run.epochs_to(79.0) == run.epochs_to_target and run.epochs_to(81.0) is None
    assert run.best_trace == sorted(run.best_trace) and len(run.best_trace) == run.epochs_used


def test_asha_runs_the_first_trial_to_the_end_and_stops_worse_ones_at_a_rung(replay):
    curves = {(x,): c for x, c in FLAT.items()}
    run = replay.replay_search(curves, {"x": [0, 1, 2, 3]}, epochs=4, sampler="random", seed=3, target=99.0,
                               budget=40, concurrency=1)
    finished = run.trials_run[:-1]  # the last one may be cut off by the budget
    assert run.trials_run[0][1] == 4  # nothing recorded at any rung yet: no cutoff
    assert {epochs for _, epochs in finished} <= {1, 2, 4}  # stopped at a rung (grace 1, factor 2) or done
    assert all(epochs == 4 for config, epochs in finished if config == (3,))  # the best is never below a cutoff
    # one trial at a time, so every earlier trial is recorded at rung 1 (epoch 1) with its flat value; the
    # worst configuration stops there whenever more than half of those records are better than it
    rung1 = [curves[config][0] for config, _ in run.trials_run]
    below_median = [epochs for i, ((config,), epochs) in enumerate(finished)
                    if config == 0 and 2 * sum(v > 50.0 for v in rung1[:i]) > i]
    assert below_median and all(epochs == 1 for epochs in below_median)
    assert sum(epochs for _, epochs in run.trials_run) == 40


def test_report_targets_one_point_below_the_grid_best_and_counts_the_grid_in_full(replay):
    table = _table({0: [50.0, 60.0, 55.0], 1: [70.0, 88.0, 89.0], 2: [80.0, 89.5, 88.0], 3: [30.0, 30.0, 30.0]})
    out = replay.report(table, seeds=2, scheduler={"name": "asha"}, concurrency=2, within=1.0, goal=0.3)
    grid = out["grid"]
    assert grid["epochs"] == 4 * 3
    assert grid["best"] == 89.5 and grid["best_config"] == {"x": 2} and grid["best_per_training_seed"] == [89.5]
    assert grid["target_per_world"] == [88.5, 88.5] and grid["configs_within_target_per_world"] == [2, 2]  # 89.0 counts
    for method in ("tpe_asha", "random_asha"):
        found = out["methods"][method]["epochs_to_within"]
        assert len(found["per_seed"]) == 2
        assert all(e is None or 1 <= e <= 12 for e in found["per_seed"])
        if "ratio_vs_grid" in found:
            assert found["ratio_vs_grid"]["max"] == round(found["max"] / 12, 3)
    assert json.dumps(out)  # the benchmark prints it as JSON


def test_with_several_training_seeds_each_replay_is_scored_against_the_grid_of_its_own_world(replay):
    # seed 0's grid peaks at config 1 (a lucky 95), seed 1's at config 2; config 2 is best on average
    curves = {(0,): [[40.0, 50.0], [45.0, 52.0]], (1,): [[60.0, 95.0], [60.0, 61.0]], (2,): [[70.0, 84.0], [80.0, 86.0]]}
    table = {"setup": {"grid": {"x": [0, 1, 2]}, "params": {"epochs": 2}, "metric": "val/accuracy"},
             "configs": [{"params": {"x": x}, "curves": c} for (x,), c in curves.items()]}
    out = replay.report(table, seeds=6, scheduler={"name": "asha"}, concurrency=1, within=1.0, goal=0.3)
    grid = out["grid"]
    worlds = [replay.draw_world(curves, seed) for seed in range(6)]
    assert grid["best_per_world"] == [max(max(curves[c][i]) for c, i in w.items()) for w in worlds]
    assert set(grid["best_per_world"]) <= {95.0, 86.0, 84.0} and len(set(map(str, worlds))) > 1
    assert grid["target_per_world"] == [b - 1.0 for b in grid["best_per_world"]]
    assert grid["best_per_training_seed"] == [95.0, 86.0]
    assert grid["best_config"] == {"x": 2} and grid["best_config_mean"] == 85.0
    assert out["against_best_config_mean"]["target"] == 84.0
    assert grid["best_per_config"]["x=1"] == [95.0, 61.0] and grid["mean_curve_per_config"]["x=2"] == [75.0, 85.0]
    assert grid["epochs"] == 3 * 2  # the grid a user runs: every configuration once


def test_a_replay_follows_its_worlds_curve_for_every_trial_of_a_configuration_whatever_the_sampler(replay):
    # seed 0's curves end in 10 + x, seed 1's in 50 + x
    curves = {(x,): [[0.0, 10.0 + x], [0.0, 50.0 + x]] for x in range(4)}
    grid = {"x": [0, 1, 2, 3]}
    world = replay.draw_world(curves, 4)
    runs = {sampler: replay.replay_search(curves, grid, epochs=2, sampler=sampler, seed=4, target=99.0, budget=16,
                                          scheduler={"name": "fifo"}, concurrency=1, max_trials=8)
            for sampler in ("tpe", "random")}
    for run in runs.values():
        assert run.trials == 8
        assert run.training_seeds == [world[config] for config, _ in run.trials_run]  # repeats: the same curve
        last = [curves[config][world[config]][-1] for config, _ in run.trials_run]
        assert [run.best_trace[2 * i + 1] for i in range(8)] == [max(last[:i + 1]) for i in range(8)]  # FIFO: to the end
    assert world == replay.draw_world(curves, 4) and set(world.values()) <= {0, 1}
    assert len({str(replay.draw_world(curves, seed)) for seed in range(8)}) > 1  # the noise is drawn anew per seed
    again = replay.replay_search(curves, grid, epochs=2, sampler="tpe", seed=4, target=99.0, budget=16,
                                 scheduler={"name": "fifo"}, concurrency=1, max_trials=8)
    assert again == runs["tpe"]


def test_seeds_that_miss_are_reported_apart_and_fail_the_goal(replay):
    # the best configuration starts worst, so ASHA stops it at rung 1 whenever anything is recorded there
    table = _table({0: [10.0, 95.0], 1: [50.0, 50.0], 2: [60.0, 60.0], 3: [55.0, 56.0]})
    out = replay.report(table, seeds=4, scheduler={"name": "asha"}, concurrency=1, within=1.0, goal=0.3)
    for method in out["methods"].values():
        found = method["epochs_to_within"]
        if None in found["per_seed"]:
            assert "ratio_vs_grid" not in found and "mean" not in found  # no figure over every seed
    if None in out["methods"]["tpe_asha"]["epochs_to_within"]["per_seed"]:
        assert out["goal"]["met"] is False and out["goal"]["tpe_asha_mean_ratio"] is None
    sweep = out["methods"]["random_asha"]["epochs_to_within_sweep"]
    assert set(sweep) == {"2_points", "5_points", "10_points"}


def test_rung_rank_correlation_tells_early_leaders_that_finish_last(replay):
    curves = {(0,): [10.0, 20.0, 90.0], (1,): [20.0, 30.0, 60.0], (2,): [30.0, 40.0, 50.0]}
    assert replay.rung_rank_correlation(curves, [1, 2]) == {"epoch_1": -1.0, "epoch_2": -1.0}
    same = {(0,): [10.0, 20.0, 30.0], (1,): [20.0, 30.0, 40.0], (2,): [30.0, 40.0, 50.0]}
    assert replay.rung_rank_correlation(same, [1]) == {"epoch_1": 1.0}


def test_a_replay_is_deterministic_per_seed(replay):
    curves = {(x,): [v - 10 * (x % 2), v] for x, v in zip(range(6), [50.0, 80.0, 60.0, 85.0, 40.0, 70.0])}
    grid = {"x": list(range(6))}
    first, again = (replay.replay_search(curves, grid, epochs=2, sampler="tpe", seed=5, target=84.0, budget=12)
                    for _ in range(2))
    assert first == again


def test_a_table_of_another_setup_is_refused_with_the_key_that_differs(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from _search_grid import TABLE_VERSION, load_table, write_table

    setup = {"data": "/data/xsdd", "grid": {"lr": [0.001]}, "params": {"epochs": 8}, "metric": "val/accuracy"}
    path = tmp_path / "table.json"
    write_table(path, {"version": TABLE_VERSION, "setup": setup, "configs": []})
    assert load_table(path, setup)["setup"] == setup
    assert load_table(path, {**setup, "data": "/elsewhere/xsdd"})  # the same set in another checkout
    with pytest.raises(SystemExit, match=r"differs in data"):
        load_table(path, {**setup, "data": "/data/neu-det"})
    with pytest.raises(SystemExit, match=r"differs in params"):
        load_table(path, {**setup, "params": {"epochs": 4}})
    path.write_text("{not json")
    with pytest.raises(SystemExit, match=r"cannot read it.*delete it"):
        load_table(path, setup)
    assert not list(tmp_path.glob("*.partial"))  # the atomic write left nothing behind


def test_a_missing_grid_point_is_an_error_naming_the_study(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from _search_grid import read_table

    trial = tmp_path / "classifier_a"
    trial.mkdir()
    lines = [{"training_iteration": e, "val/accuracy": 0.5 + e / 10, "config": {"lr": 0.001}, "time_total_s": e} for e in (1, 2)]
    (trial / "result.json").write_text("\n".join(json.dumps(line) for line in lines))
    assert read_table(tmp_path, {"lr": [0.001]}, "val/accuracy", 2)[0]["curve"] == [60.0, 70.0]
    with pytest.raises(RuntimeError, match=r"1 of 2 grid points"):
        read_table(tmp_path, {"lr": [0.001, 0.01]}, "val/accuracy", 2)
    with pytest.raises(RuntimeError, match=r"expected 1..3"):
        read_table(tmp_path, {"lr": [0.001]}, "val/accuracy", 3)



@pytest.mark.parametrize(("argv", "message"), [
    (["--data", "/nonexistent/xsdd"], r"--data /nonexistent/xsdd: no such folder"),
    (["--seeds", "0"], r"--seeds and --training-seeds must be at least 1"),
    (["--training-seeds", "0"], r"--seeds and --training-seeds must be at least 1"),
    (["--epochs", "1"], r"--epochs must be at least 2"),
])
def test_the_command_refuses_bad_options_before_anything_runs(monkeypatch, argv, message):
    import importlib.util

    monkeypatch.setattr(sys, "path", list(sys.path))  # the script puts benchmarks/ on the path
    spec = importlib.util.spec_from_file_location("search_efficiency", BENCHMARKS / "search_efficiency.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(sys, "argv", ["search_efficiency.py", *argv])
    with pytest.raises(SystemExit, match=message):
        module.main()


@pytest.mark.parametrize(("space", "table"), [("small", "search_table.json"), ("wide", "search_table_wide.json")])
def test_each_shipped_table_is_the_grid_of_its_space_every_point_every_seed(monkeypatch, space, table):
    """The tables in benchmarks/ replay with ``--space``: their setup is what the benchmark would
    measure, and they hold every grid point with a full curve per training seed."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import search_efficiency
    from _search_grid import load_table

    if not search_efficiency.DATASET.is_dir():
        pytest.skip(f"{search_efficiency.DATASET} not here (the shared datasets)")
    grid = search_efficiency.SPACES[space]
    setup = search_efficiency._setup(search_efficiency.DATASET, search_efficiency.PARAMS["epochs"], 0,
                                     search_efficiency.TRAINING_SEEDS, grid)
    loaded = load_table(BENCHMARKS / table, setup)
    points = {tuple(c["params"][k] for k in grid) for c in loaded["configs"]}
    expected = 1
    for values in grid.values():
        expected *= len(values)
    assert len(points) == len(loaded["configs"]) == expected
    assert all(len(c["curves"]) == search_efficiency.TRAINING_SEEDS for c in loaded["configs"])
    assert all(len(curve) == search_efficiency.PARAMS["epochs"] for c in loaded["configs"] for curve in c["curves"])
