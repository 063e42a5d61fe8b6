"""The study spec: defaults, overrides, and a clear message for every malformed study."""

from pathlib import Path

import pytest
import yaml

from orchestrator.spec import Study, StudyError, apply_overrides, load_study, validate_study
from search_spaces import SPACES
from tests.conftest import REPO

DEMO = REPO / "studies" / "demo.yaml"


def _raw() -> dict:
    return yaml.safe_load(DEMO.read_text())


def _problems(raw: dict) -> list[str]:
    with pytest.raises(StudyError) as err:
        validate_study(raw, "study.yaml")
    return err.value.problems


def test_demo_study_is_valid():
    study = load_study(DEMO)
    assert isinstance(study, Study)
    assert study.trainable == "classifier" and study.search.space == "classifier_basic"
    assert study.num_samples == 8 and study.epochs() == 6
    space = study.trial_param_space()
    assert space["backbone"] == "resnet10t" and space["data"]["path"] == "synthetic:corrosion"


def test_overrides_set_nested_keys_with_yaml_values():
    raw = apply_overrides(_raw(), ["params.epochs=2", "search.num_samples=3", "tracking.wandb.tags=[a, b]", "ray.num_cpus=2"])
    study = validate_study(raw)
    assert study.epochs() == 2 and study.num_samples == 3
    assert study.tracking.wandb.tags == ["a", "b"] and study.ray.num_cpus == 2


@pytest.mark.parametrize("item", ["params.epochs", "=3", "name.sub=1"])
def test_malformed_override_is_rejected(item):
    with pytest.raises(StudyError):
        apply_overrides(_raw(), [item])


def test_unknown_keys_get_did_you_mean_hints_everywhere():
    raw = _raw()
    raw["schedular"] = {}
    raw["params"]["dropuot"] = 0.3
    raw["data"]["synthetc"] = {}
    raw["search"]["num_sample"] = 3
    problems = "\n".join(_problems(raw))
    assert "schedular: unknown key; did you mean 'scheduler'?" in problems
    assert "params.dropuot: unknown key; did you mean 'dropout'?" in problems
    assert "data.synthetc: unknown key; did you mean 'synthetic'?" in problems
    assert "search.num_sample: unknown key; did you mean 'num_samples'?" in problems


def test_wrong_types_and_ranges_name_the_key_and_value():
    raw = _raw()
    raw["params"]["lr"] = "fast"
    raw["search"]["num_samples"] = 0
    problems = _problems(raw)
    assert any(p.startswith("params.lr:") and "'fast'" in p for p in problems)
    assert any(p.startswith("search.num_samples:") and "greater than or equal to 1" in p for p in problems)


@pytest.mark.parametrize(
    "section, key, value, expected",
    [
        (None, "trainable", "clasifier", "Unknown trainable 'clasifier'; did you mean 'classifier'? Valid names: classifier"),
        ("search", "space", "classifier_basc", "did you mean 'classifier_basic'?"),
        ("search", "sampler", "bayes", "unknown name 'bayes'; did you mean 'cmaes'? (valid: tpe, random, cmaes, gp, nsga2, grid)"),
        ("scheduler", "name", "pbt2", "did you mean 'pbt'? (valid: asha, hyperband, pbt, median, fifo)"),
        ("data", "path", "synthetic:steel", "the built-in one is 'synthetic:corrosion'"),
        ("data", "split", [0.5, 0.2, 0.2], "split ratios must sum to 1"),
        (None, "name", "bad name/with slash", "name:"),
    ],
)
def test_unknown_names_list_the_valid_ones(section, key, value, expected):
    raw = _raw()
    (raw[section] if section else raw)[key] = value
    assert any(expected in p for p in _problems(raw)), _problems(raw)


def test_missing_required_keys_and_data_folder(tmp_path):
    raw = _raw()
    del raw["trainable"]
    assert "trainable: required key is missing" in _problems(raw)
    raw = _raw()
    raw["data"]["path"] = str(tmp_path / "nope")
    assert any("does not exist" in p and "nope" in p for p in _problems(raw))
    (tmp_path / "file.txt").write_text("x")
    raw["data"]["path"] = str(tmp_path / "file.txt")
    assert any("is a file" in p for p in _problems(raw))


def test_relative_data_path_is_stored_absolute(tmp_path, monkeypatch):
    (tmp_path / "images").mkdir()
    monkeypatch.chdir(tmp_path)
    raw = _raw()
    raw["data"]["path"] = "images"
    assert validate_study(raw).data.path == str(tmp_path / "images")


def test_searched_key_cannot_also_be_fixed():
    raw = _raw()
    raw["params"]["lr"] = 0.01
    assert any("params.lr is fixed but search.space 'classifier_basic' suggests it too" in p for p in _problems(raw))


def test_space_suggesting_a_non_config_key_is_rejected(monkeypatch):
    def space(trial):
        trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True)

    monkeypatch.setitem(SPACES._items, "bad_space", space)
    raw = _raw()
    raw["search"]["space"] = "bad_space"
    assert any("suggests 'learning_rate', which is not a classifier config key" in p for p in _problems(raw))


@pytest.mark.parametrize("text, expected", [("- a\n- b\n", "YAML mapping"), ("name: [unclosed\n", "not valid YAML")])
def test_unparseable_files(tmp_path, text, expected):
    path = tmp_path / "study.yaml"
    path.write_text(text)
    with pytest.raises(StudyError) as err:
        load_study(path)
    assert expected in str(err.value)


def test_missing_file():
    with pytest.raises(StudyError, match="study file not found"):
        load_study(Path("no/such/study.yaml"))


def test_every_problem_is_reported_at_once():
    raw = _raw()
    raw["search"]["sampler"] = "bayes"
    raw["params"]["dropuot"] = 0.1
    problems = _problems(raw)
    assert any(p.startswith("search.sampler") for p in problems)
    assert any(p.startswith("params.dropuot") for p in problems)


def _ablation(raw: dict, **ablation) -> dict:
    raw["ablation"] = ablation
    raw["params"].pop("pooling")
    return raw


def test_ablation_cells_are_the_product_of_factor_levels():
    raw = _ablation(_raw(), factors={
        "attention": {"none": {"attention": "none", "attention_placement": "none"},
                      "eca": {"attention": "eca", "attention_placement": "head"}},
        "pooling": ["gap", "gmp"],
    }, repeats=2)
    study = validate_study(raw)
    labels = [",".join(f"{k}={v}" for k, v in levels.items()) for levels, _ in study.cells]
    assert labels == ["attention=none,pooling=gap", "attention=none,pooling=gmp", "attention=eca,pooling=gap", "attention=eca,pooling=gmp"]
    assert study.cells[3][1] == {"attention": "eca", "attention_placement": "head", "pooling": "gmp"}
    assert study.num_samples == 4 * (8 + 2)


def test_a_factor_that_is_not_a_config_key_is_rejected_with_a_hint():
    problems = _problems(_ablation(_raw(), factors={"poolin": ["gap", "gmp"]}))
    assert problems == ["ablation.factors.poolin: not a classifier config key; did you mean 'pooling'?"]


def test_a_factor_level_with_an_invalid_value_names_its_cell():
    problems = _problems(_ablation(_raw(), factors={"pooling": ["gap", "median"]}))
    assert len(problems) == 1 and problems[0].startswith("ablation cell pooling=median: params.pooling:")


def test_a_factor_cannot_also_be_fixed_or_searched():
    raw = _ablation(_raw(), factors={"lr": [0.1, 0.01], "backbone": ["resnet10t", "resnet18"]})
    problems = _problems(raw)
    assert "ablation.factors.lr: also searched by the search; remove one" in problems
    assert "ablation.factors.backbone: also fixed in params.backbone; remove one" in problems


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"search": {"space": "classifier_basic", "sampler": "cmaes"}, "objectives": [{"metric": "val/accuracy"}, {"metric": "model/gflops", "mode": "min"}]},
         "cmaes optimises one objective"),
        ({"scheduler": {"name": "pbt", "mutations": {"lr": [0.1, 0.01]}}, "ablation": {"repeats": 2}}, "pbt copies weights and configs"),
        ({"scheduler": {"name": "hyperband"}, "ablation": {"factors": {"optimizer": ["adam", "sgd"]}}}, "hyperband compares every trial"),
        ({"scheduler": {"name": "pbt"}}, "pbt needs `mutations:`"),
        ({"scheduler": {"name": "pbt", "mutations": {"lrr": [0.1]}}}, "scheduler.mutations.lrr: not a classifier config key; did you mean 'lr'?"),
        ({"search": {"sampler": "grid", "grid": {"lr": [0.1, 0.01]}, "num_samples": 3}}, "exceeds the 2 grid points"),
        ({"search": {"sampler": "grid", "space": "classifier_basic", "grid": {"lr": [0.1]}}}, "the grid sampler takes `grid:`"),
        ({"search": {"sampler": "tpe"}}, "`space:` is required"),
        ({"search": {"space": "classifier_basic", "seed": 0}, "ablation": {"repeats": 2}, "params": {"seed": 3}}, None),
        ({"objective": {"metric": "val/f1"}, "objectives": [{"metric": "val/f1"}]}, "either `objective:` or `objectives:`"),
        ({"resources": {"gpu": 1.5}}, "fractions are only possible below 1"),
        ({"stop": {"patience": 0}}, "stop.patience"),
    ],
)
def test_inconsistent_phase_rules_are_rejected(change, expected):
    raw = {**_raw(), **change}
    if "objectives" in change:
        raw.pop("objective", None) if "objective" not in change else None
    if expected is None:
        validate_study(raw)
        return
    assert any(expected in p for p in _problems(raw)), _problems(raw)


def test_grid_search_budget_defaults_to_the_grid_size():
    raw = {**_raw(), "search": {"sampler": "grid", "grid": {"lr": [0.1, 0.01], "dropout": [0.1, 0.2, 0.3]}}}
    study = validate_study(raw)
    assert study.trials_per_cell == 6 and study.num_samples == 6


def test_several_objectives_the_first_is_primary():
    raw = {**_raw(), "objectives": [{"metric": "val/f1"}, {"metric": "model/gflops", "mode": "min"}]}
    raw.pop("objective")
    study = validate_study(raw)
    assert study.objective.metric == "val/f1" and [o.mode for o in study.objectives] == ["max", "min"]


@pytest.mark.parametrize("path", sorted((REPO / "studies").rglob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_study_validates(path, tmp_path):
    paper = path.parent.name == "papers"  # their data.path is left for the user to set
    study = load_study(path, [f"data.path={tmp_path}"] if paper else [])
    assert study.num_samples >= 1
    if paper:
        assert study.reference is not None and study.reference.values
        with pytest.raises(StudyError, match=r"data.path: .* does not exist .*--set data.path=FOLDER"):
            load_study(path)


def test_a_reference_must_name_cells_of_the_study():
    raw = {**_ablation(_raw(), factors={"pooling": ["gap", "gmp"]}),
           "reference": {"source": "paper", "values": {"pooling=gmp": {"test/accuracy": 0.9}, "pooling=gapp": {"test/accuracy": 0.8}}}}
    problems = _problems(raw)
    assert problems == ["reference.values: 'pooling=gapp' is not a cell of this study; did you mean 'pooling=gap'? "
                        "(cells: pooling=gap, pooling=gmp)"]
    raw["reference"]["values"].pop("pooling=gapp")
    assert validate_study(raw).reference.values == {"pooling=gmp": {"test/accuracy": 0.9}}


def test_the_tiny_ablation_plans_four_cells_with_search_and_confirm_runs():
    study = load_study(REPO / "studies" / "examples" / "ablation_tiny.yaml")
    assert len(study.cells) == 4 and study.trials_per_cell == 2 and study.repeats == 2
    assert study.num_samples == 16 and study.epochs() <= 2 and study.params["image_size"] == 32
