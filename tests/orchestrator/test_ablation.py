"""AblationSearcher: equal budgets per cell, confirm runs of each cell's best config, save/restore."""

from __future__ import annotations

import json
import pickle
from collections import Counter

import pytest
from ray.tune.search import ConcurrencyLimiter, Searcher

from orchestrator.ablation import CONFIRM, SEARCH, AblationSearcher, search_algorithm
from orchestrator.ray_repairs.search_state import RecordedStateSearchGenerator
from orchestrator.spec import validate_study
from trainables import TRIAL_META_KEY


def _space(trial):
    trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    return {"dense_units": 64}


CELLS = [({"pooling": "gap"}, {"pooling": "gap"}), ({"pooling": "gmp"}, {"pooling": "gmp"})]


def _searcher(**kwargs) -> AblationSearcher:
    defaults = dict(cells=CELLS, objectives=[("val/accuracy", "max")], space=_space, sampler="random",
                    trials_per_cell=3, repeats=2, first_seed=10, seed=0, study_name="s")
    return AblationSearcher(**{**defaults, **kwargs})


def _score(config: dict) -> float:
    """A deterministic objective: gmp beats gap, higher lr is better."""
    return (0.5 if config.get("pooling") == "gmp" else 0.0) + config.get("lr", 0.0)


def _drain(searcher: AblationSearcher, prefix: str = "t") -> list[dict]:
    """Runs the searcher to FINISHED, completing each trial as soon as it is suggested."""
    configs = []
    for i in range(100):
        config = searcher.suggest(f"{prefix}{i}")
        if config == Searcher.FINISHED:
            return configs
        assert config is not None, "nothing running, yet the searcher waits"
        configs.append(config)
        searcher.on_trial_result(f"{prefix}{i}", {"val/accuracy": _score(config), "training_iteration": 1})
        searcher.on_trial_complete(f"{prefix}{i}", {"val/accuracy": _score(config)})
    raise AssertionError("never finished")


def test_every_cell_gets_the_same_budget_then_its_best_config_with_each_seed():
    configs = _drain(_searcher())
    phases = Counter((c[TRIAL_META_KEY]["cell"], c[TRIAL_META_KEY]["phase"]) for c in configs)
    assert phases == {("pooling=gap", SEARCH): 3, ("pooling=gmp", SEARCH): 3, ("pooling=gap", CONFIRM): 2, ("pooling=gmp", CONFIRM): 2}
    for cell in ("gap", "gmp"):
        search = [c for c in configs if c["pooling"] == cell and c[TRIAL_META_KEY]["phase"] == SEARCH]
        confirm = [c for c in configs if c["pooling"] == cell and c[TRIAL_META_KEY]["phase"] == CONFIRM]
        best_lr = max(c["lr"] for c in search)
        assert {c["lr"] for c in confirm} == {best_lr}  # the cell's best search config is confirmed
        assert sorted(c["seed"] for c in confirm) == [10, 11]
        assert [c[TRIAL_META_KEY]["repeat"] for c in confirm] == [0, 1]
        assert all(c["dense_units"] == 64 for c in search + confirm)  # the space's constants


def test_search_trials_alternate_between_cells():
    searcher = _searcher()
    cells = [searcher.suggest(f"t{i}")[TRIAL_META_KEY]["cell"] for i in range(6)]
    assert cells == ["pooling=gap", "pooling=gmp"] * 3


def test_confirm_runs_wait_for_their_cells_search():
    searcher = _searcher(trials_per_cell=1, repeats=1)
    first, second = searcher.suggest("a"), searcher.suggest("b")
    assert {first["pooling"], second["pooling"]} == {"gap", "gmp"}
    assert searcher.suggest("c") is None  # both searches still running
    searcher.on_trial_complete("b", {"val/accuracy": 0.7})
    confirm = searcher.suggest("c")
    assert confirm["pooling"] == second["pooling"] and confirm[TRIAL_META_KEY]["phase"] == CONFIRM
    assert searcher.suggest("d") is None
    searcher.on_trial_complete("a", {"val/accuracy": 0.6})
    assert searcher.suggest("d")["pooling"] == first["pooling"]
    assert searcher.suggest("e") == Searcher.FINISHED


def test_the_best_epoch_not_the_last_is_what_counts():
    searcher = _searcher(cells=CELLS[:1], trials_per_cell=2, repeats=1)
    a, b = searcher.suggest("a"), searcher.suggest("b")
    for value in (0.9, 0.1):  # a peaked at 0.9, ended at 0.1
        searcher.on_trial_result("a", {"val/accuracy": value})
    searcher.on_trial_complete("a", {"val/accuracy": 0.1})
    searcher.on_trial_complete("b", {"val/accuracy": 0.5})
    assert searcher.suggest("c")["lr"] == a["lr"] != b["lr"]


def test_errored_trials_fail_in_optuna_and_a_cell_with_only_failures_skips_its_confirm_runs():
    searcher = _searcher(cells=CELLS, trials_per_cell=1, repeats=2)
    searcher.suggest("a")
    b = searcher.suggest("b")
    searcher.on_trial_result("a", {"val/accuracy": 0.99})
    searcher.on_trial_complete("a", error=True)
    searcher.on_trial_complete("b", {"val/accuracy": 0.5})
    rest = [searcher.suggest(t) for t in ("c", "d", "e")]
    assert [r["pooling"] for r in rest[:2]] == [b["pooling"]] * 2 and rest[2] == Searcher.FINISHED
    state = searcher._cells[0].study.trials[0].state.name
    assert state == "FAIL"


def test_save_and_restore_keep_every_cell_study_and_the_trial_map(tmp_path):
    searcher = _searcher()
    for i in range(4):  # 2 trials per cell handed out, 3 of them finished
        config = searcher.suggest(f"t{i}")
        if i < 3:
            searcher.on_trial_complete(f"t{i}", {"val/accuracy": _score(config)})
    searcher.save(str(tmp_path / "state.pkl"))

    restored = _searcher()
    restored.restore(str(tmp_path / "state.pkl"))
    assert restored.cell_counts == searcher.cell_counts
    assert [len(c.study.trials) for c in restored._cells] == [2, 2]
    restored.on_trial_complete("t3", {"val/accuracy": 0.3})  # a trial running at the crash completes
    configs = _drain(restored, prefix="r")
    counts = Counter((c[TRIAL_META_KEY]["cell"], c[TRIAL_META_KEY]["phase"]) for c in configs)
    assert counts == {("pooling=gap", SEARCH): 1, ("pooling=gmp", SEARCH): 1, ("pooling=gap", CONFIRM): 2, ("pooling=gmp", CONFIRM): 2}


def test_without_search_each_cell_runs_its_fixed_config_per_seed():
    configs = _drain(_searcher(space=None, trials_per_cell=0, repeats=3))
    assert [(c["pooling"], c["seed"]) for c in configs] == [("gap", 10), ("gap", 11), ("gap", 12), ("gmp", 10), ("gmp", 11), ("gmp", 12)]


def test_a_single_fixed_run_keeps_the_configured_seed():
    configs = _drain(_searcher(cells=[({}, {})], space=None, trials_per_cell=0, repeats=1, first_seed=None))
    assert len(configs) == 1 and "seed" not in configs[0] and configs[0][TRIAL_META_KEY]["cell"] == "base"


def test_grid_sampler_visits_every_point_once_per_cell():
    searcher = _searcher(space=None, sampler="grid", grid={"lr": [0.1, 0.01, 0.001]}, trials_per_cell=3, repeats=0)
    configs = _drain(searcher)
    for cell in ("gap", "gmp"):
        assert sorted(c["lr"] for c in configs if c["pooling"] == cell) == [0.001, 0.01, 0.1]


def test_a_grid_searcher_survives_the_pickling_of_every_snapshot():
    """Ray pickles the search algorithm with each experiment snapshot (a local function did not)."""
    searcher = _searcher(space=None, sampler="grid", grid={"lr": [0.1, 0.01]}, trials_per_cell=2, repeats=0)
    searcher.suggest("t0")
    restored = pickle.loads(pickle.dumps(searcher))
    restored.on_trial_complete("t0", {"val/accuracy": 0.5})
    assert sorted(c["lr"] for c in _drain(restored, prefix="r")) == [0.01, 0.1, 0.1]  # t0 took one gap point


def test_several_objectives_give_each_cell_a_pareto_front():
    searcher = _searcher(cells=CELLS[:1], objectives=[("val/accuracy", "max"), ("model/gflops", "min")], trials_per_cell=4, repeats=0)
    for i in range(4):
        searcher.suggest(f"t{i}")
        searcher.on_trial_complete(f"t{i}", {"val/accuracy": [0.9, 0.8, 0.7, 0.6][i], "model/gflops": [4.0, 1.0, 2.0, 3.0][i]})
    front = {t.number for t in searcher._cells[0].study.best_trials}
    assert front == {0, 1}


def test_from_study_builds_cells_budget_and_seeds(demo_raw):
    raw = {**demo_raw, "ablation": {"factors": {"attention_placement": ["head", "last_stage"]}, "repeats": 2, "first_seed": 5}}
    raw["params"] = {**raw["params"], "attention": "eca"}
    raw["search"] = {**raw["search"], "num_samples": 3}
    study = validate_study(raw)
    searcher = AblationSearcher.from_study(study)
    assert study.num_samples == 2 * (3 + 2)
    configs = [searcher.suggest(f"t{i}") for i in range(6)]
    assert Counter(c["attention_placement"] for c in configs) == {"head": 3, "last_stage": 3}


@pytest.fixture
def demo_raw():
    import yaml

    from tests.conftest import REPO

    return yaml.safe_load((REPO / "studies" / "demo.yaml").read_text())


def _experiment_state(folder, session: str, statuses: dict[str, str]) -> None:
    trial_data = [[json.dumps({"trial_id": t, "status": status}), json.dumps({})] for t, status in statuses.items()]
    (folder / f"experiment_state-{session}.json").write_text(json.dumps({"trial_data": trial_data}))


def _generator(**kwargs) -> RecordedStateSearchGenerator:
    return RecordedStateSearchGenerator(ConcurrencyLimiter(_searcher(trials_per_cell=2, repeats=1, **kwargs), max_concurrent=2))


def test_a_restored_search_generator_agrees_with_the_experiment_state_ray_restored(tmp_path):
    generator = _generator()
    limiter = generator.searcher
    generator._total_samples = 10  # what Ray's add_configurations sets from num_samples
    configs = {}
    for i in range(5):  # 2 search trials per cell, then cell gap's confirm run
        configs[f"t{i}"] = limiter.suggest(f"t{i}")
        generator._counter += 1
        if i < 3:
            limiter.on_trial_complete(f"t{i}", {"val/accuracy": _score(configs[f"t{i}"])})
    assert configs["t4"][TRIAL_META_KEY]["phase"] == CONFIRM and limiter.live_trials == {"t3", "t4"}
    generator.save_to_dir(str(tmp_path), session_str="2026-01-01_10-00-00")
    # killed before that snapshot's experiment state was stored: the stored one (the session's
    # previous snapshot) has t0, t1 done and t3 running; an older session's state does not count
    _experiment_state(tmp_path, "2026-01-01_09-00-00", {"old": "RUNNING"})
    _experiment_state(tmp_path, "2026-01-01_10-00-00", {"t0": "TERMINATED", "t1": "TERMINATED", "t3": "RUNNING"})

    restored = _generator()
    restored.restore_from_dir(str(tmp_path))

    assert restored._counter == 3 and not restored.is_finished()
    assert restored.searcher.live_trials == {"t3"} and restored.searcher.num_unfinished_live_trials == 1
    searcher = restored.searcher.searcher
    assert set(searcher._trials) == {"t0", "t1", "t3"}
    gap, gmp = searcher._cells
    assert (gap.issued, gap.done, gap.confirms_issued, gap.best_params) == (1, 1, 0, None)
    assert (gmp.issued, gmp.done) == (2, 1)
    assert [t.state.name for t in gap.study.trials] == ["COMPLETE", "COMPLETE"]  # t2 finished in Optuna's eyes
    restored.searcher.on_trial_complete("t3", {"val/accuracy": 0.9})  # the limiter passes t3 on
    assert (gmp.done, gmp.best_params is not None) == (2, True)
    rest = _drain(searcher, prefix="r")
    counts = Counter((c[TRIAL_META_KEY]["cell"], c[TRIAL_META_KEY]["phase"]) for c in rest)
    assert counts == {("pooling=gap", SEARCH): 1, ("pooling=gap", CONFIRM): 1, ("pooling=gmp", CONFIRM): 1}


def test_an_open_trial_taken_back_fails_in_optuna():
    searcher = _searcher(trials_per_cell=2, repeats=1)
    searcher.suggest("t0")
    searcher.suggest("t1")
    assert searcher.take_back({"t0"}) == ["t1"]
    assert searcher.cell_counts["pooling=gmp"]["search"] == 0
    assert [t.state.name for t in searcher._cells[1].study.trials] == ["FAIL"]
    assert searcher.suggest("t2")[TRIAL_META_KEY]["cell"] == "pooling=gmp"


def test_the_search_algorithm_limits_concurrency_like_ray_would(demo_raw):
    from ray.tune.execution.tune_controller import _get_max_pending_trials

    study = validate_study({**demo_raw, "max_concurrent_trials": 3}, "demo.yaml")
    algorithm = search_algorithm(study)
    assert isinstance(algorithm.searcher, ConcurrencyLimiter) and algorithm.searcher.max_concurrent == 3
    assert isinstance(algorithm.searcher.searcher, AblationSearcher) and _get_max_pending_trials(algorithm) == 3
    unlimited = search_algorithm(validate_study({**demo_raw, "max_concurrent_trials": None}, "demo.yaml"))
    assert isinstance(unlimited.searcher, AblationSearcher)


@pytest.mark.parametrize("budget, startup", [(8, 2), (16, 4), (40, 10), (400, 10)])
def test_tpe_draws_a_quarter_of_a_small_budget_at_random_then_models(budget, startup):
    """TPE's random start is sized to the cell's budget (Optuna's fixed 10 left a 16-trial search
    no modelled trial): its first ``startup`` suggestions are exactly a seeded random search's,
    the next one is TPE's own; and the same seed gives the same search."""
    def run(sampler: str) -> list[float]:
        searcher = _searcher(cells=[({}, {})], sampler=sampler, trials_per_cell=budget, repeats=0, seed=3)
        lrs = []
        for i in range(startup + 1):
            config = searcher.suggest(f"t{i}")
            lrs.append(config["lr"])
            searcher.on_trial_complete(f"t{i}", {"val/accuracy": _score(config)})
        return lrs

    tpe, random = run("tpe"), run("random")
    assert tpe[:startup] == random[:startup]
    assert tpe[startup] != random[startup]
    assert run("tpe") == tpe
