"""Property: any malformed study or override gets exit 2 and a message naming the key, with nothing started.

A seeded generator mutates valid studies (the classifier on a tiny image folder, the noop
trainable) one way each: an unknown key at every level, a wrong type at a leaf, a typo of a
name, a bad path, an out-of-range value, or a malformed ``--set``. Every case goes through
``validate`` and ``run`` in-process; each must exit 2 with ``error:``, the key it broke and no
traceback, and leave no study folder and no Ray behind.
"""

from __future__ import annotations

import copy
import random
import sys
from dataclasses import dataclass, field

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from orchestrator._known_names import augmentation_names, timm_model_names
from orchestrator.cli import app
from orchestrator.spec import (
    AblationSpec, CheckpointSpec, FailureSpec, ObjectiveSpec, RaySpec, ResourcesSpec, SchedulerSpec, SearchSpec,
    StopSpec, Study, TrackingSpec, WandbSpec,
)
from trainables import TRAINABLES
from trainables.data.config import DataConfig, SyntheticConfig

SEED, CASES = 20261201, 112
runner = CliRunner()

SECTIONS = {
    "": Study, "data": DataConfig, "data.synthetic": SyntheticConfig, "search": SearchSpec, "objective": ObjectiveSpec,
    "scheduler": SchedulerSpec, "stop": StopSpec, "resources": ResourcesSpec, "checkpoints": CheckpointSpec,
    "failure": FailureSpec, "tracking": TrackingSpec, "tracking.wandb": WandbSpec, "ray": RaySpec, "ablation": AblationSpec,
}
"""Every section of a study and its model (``params`` is the trainable's config)."""

WRONG = {
    "int": ["many", [3], {"n": 3}, True, 2.5, None],
    "float": ["fast", [0.1], {"x": 1}, False, float("inf"), float("nan")],
    "str": [3, [1, 2], {"a": 1}],
    "choice": [7, ["asha"], {"a": 1}],
    "bool": ["maybe", [True], {"x": 1}],
    "list": [{"a": 1}, 5],
}
LEAVES = {
    "classifier": {
        "name": "str", "trainable": "str", "data.path": "str", "data.split": "list", "data.on_bad_files": "choice",
        "params.epochs": "int", "params.image_size": "int", "params.batch_size": "int", "params.lr": "float",
        "params.dropout": "float", "params.pooling": "choice", "params.amp": "bool", "params.backbone": "str",
        "search.num_samples": "int", "search.seed": "int", "search.sampler": "choice", "objective.mode": "choice",
        "objective.metric": "str", "scheduler.grace_period": "int", "scheduler.reduction_factor": "float",
        "scheduler.name": "choice", "resources.cpu": "float", "max_concurrent_trials": "int",
        "checkpoints.num_to_keep": "int", "tracking.wandb.mode": "choice", "tracking.wandb.tags": "list",
        "ray.num_cpus": "int", "stop.patience": "int", "stop.time_budget_s": "float",
    },
    "noop": {"params.epochs": "int", "params.x": "float", "params.seed": "int", "params.sleep_s": "float", "name": "str"},
}
NAMES = {
    "classifier": {
        "trainable": lambda: list(TRAINABLES), "search.space": lambda: ["classifier_basic", "classifier_full"],
        "search.sampler": lambda: ["random", "cmaes", "nsga2"], "scheduler.name": lambda: ["asha", "median", "hyperband", "fifo"],
        "params.backbone": lambda: sorted(timm_model_names()), "params.augmentation": lambda: list(augmentation_names()),
        "params.loss": lambda: ["auto", "bce", "focal", "modified_focal"], "params.optimizer": lambda: ["adam", "adamw"],
        "params.resize": lambda: ["stretch", "letterbox", "center_crop"], "params.normalization": lambda: ["imagenet", "unit", "caffe"],
        "objective.metric": lambda: ["val/accuracy", "val/loss", "val/kappa"], "tracking.wandb.mode": lambda: ["offline", "disabled"],
        "data.on_bad_files": lambda: ["skip", "stop"], "params.positive_class": lambda: ["rusty", "bare"],
    },
    "noop": {"trainable": lambda: list(TRAINABLES), "objective.metric": lambda: ["score"]},
}


@dataclass
class Case:
    what: str
    raw: dict
    expected: str
    overrides: list[str] = field(default_factory=list)
    storage: str | None = None


def _typo(rng: random.Random, word: str, taken) -> str:
    for _ in range(50):
        i = rng.randrange(len(word))
        kind = rng.choice("delete insert swap replace".split())
        letter = rng.choice("abcdefghijklmnopqrstuvwxyz")
        if kind == "delete" and len(word) > 3:
            out = word[:i] + word[i + 1:]
        elif kind == "insert":
            out = word[:i] + letter + word[i:]
        elif kind == "swap" and i + 1 < len(word):
            out = word[:i] + word[i + 1] + word[i] + word[i + 2:]
        else:
            out = word[:i] + letter + word[i + 1:]
        if out != word and out not in taken:
            return out
    return word + "zz"


def _node(raw: dict, dotted: str) -> dict:
    node = raw
    for part in filter(None, dotted.split(".")):
        node = node.setdefault(part, {})
    return node


def _set(raw: dict, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    _node(raw, ".".join(parents))[leaf] = value


def _unknown_key(rng, base, trainable) -> Case:
    raw = copy.deepcopy(base)
    section = rng.choice([*SECTIONS, "params"])
    model = TRAINABLES.get(trainable).config_model if section == "params" else SECTIONS[section]
    valid = [f for f in model.model_fields if not (section == "params" and f == "data")] + (["objective"] if not section else [])
    key = _typo(rng, rng.choice([f for f in valid if len(f) >= 3]), set(valid))
    _node(raw, section)[key] = 1
    where = f"{section}.{key}" if section else key
    return Case(f"unknown key {where}", raw, f"{where}: unknown key")


def _wrong_type(rng, base, trainable) -> Case:
    raw = copy.deepcopy(base)
    path, kind = rng.choice(sorted(LEAVES[trainable].items()))
    _set(raw, path, rng.choice(WRONG[kind]))
    return Case(f"wrong type at {path}", raw, path)


def _bad_name(rng, base, trainable) -> Case:
    raw = copy.deepcopy(base)
    path, names = rng.choice(sorted(NAMES[trainable].items()))
    valid = names()
    right = rng.choice([n for n in valid if len(n) >= 4])
    wrong = _typo(rng, right, set(valid) | {"val/f1"})
    if path == "objective.metric" and wrong.startswith("val/f1/"):
        wrong = "x" + wrong
    if path == "params.augmentation" and rng.random() < 0.5:
        wrong_value = ["hflip", {wrong: {}}]
    else:
        wrong_value = wrong
    _set(raw, path, wrong_value)
    return Case(f"unknown name {path}={wrong!r}", raw, f"{wrong!r}")


def _bad_path(rng, base, trainable, tmp) -> Case:
    raw = copy.deepcopy(base)
    odd = rng.choice(["[x]", "[/y]", "[bold]z", "sp ace", "ünï", "a]b[c"])
    choice = rng.choice(["data.path", "data.file", "pretrained", "pretrained_rel", "storage", "storage_key", "annotations"])
    missing = tmp / f"missing-{rng.randrange(10**6)}-{odd}" / "deeper"
    if choice == "data.path":
        _set(raw, "data.path", str(missing))
        return Case("missing data folder", raw, str(missing))
    if choice == "data.file":
        _set(raw, "data.path", str(tmp / "a_file.txt"))
        return Case("data.path is a file", raw, "is a file")
    if choice == "annotations":
        _set(raw, "data.annotations", str(missing / "coco.json"))
        return Case("missing COCO file", raw, "data.annotations")
    if choice == "storage":
        return Case("storage is a file", raw, "is a file; give a folder", storage=str(tmp / "a_file.txt"))
    if choice == "storage_key":
        raw["storage"] = f"{rng.choice(['ftp', 'http', 'memory'])}://bucket/{odd}"
        return Case("unsupported storage scheme", raw, "unsupported scheme")
    if trainable != "classifier":
        _set(raw, "data.path", str(missing))
        return Case("missing data folder", raw, str(missing))
    _set(raw, "params.pretrained", str(missing / "w.pth") if choice == "pretrained" else f"weights-{odd}.pth")
    return Case("bad weights path", raw, "params.pretrained")


def _bad_value(rng, base, trainable) -> Case:
    raw = copy.deepcopy(base)
    seed_key = "params.seed" if "seed" in TRAINABLES.get(trainable).config_model.model_fields else "search.seed"
    options = [
        (seed_key, rng.choice([-1, -(2**40), 2**32, 2**63])),
        ("params.epochs", rng.choice([True, 0, -3, 10**9])),
        ("search.seed", rng.choice([-5, 2**33])) if "search" in raw else ("params.epochs", 0),
        ("data.split_seed", -1),
        ("ablation.first_seed", -2),
        ("max_concurrent_trials", rng.choice([0, 10**9, True])),
    ]
    if trainable == "classifier":
        options += [("params.image_size", rng.choice([10**6, 8])), ("params.batch_size", 10**12), ("params.dropout", True)]
    path, value = rng.choice(options)
    _set(raw, path, value)
    return Case(f"bad value {path}={value!r}", raw, path)


def _duplicate_levels(rng, base, trainable) -> Case:
    raw = copy.deepcopy(base)
    key = "x" if trainable == "noop" else "dropout"
    raw["params"].pop(key, None)
    raw.pop("search", None)
    raw["ablation"] = {"factors": {key: rng.choice([[0, 0.0], [0.5, 0.5], [1, True]])}}
    return Case("equal ablation levels", raw, f"factor {key!r}")


def _bad_override(rng, base, trainable) -> Case:
    item, expected = rng.choice([
        ("params.epochs", "expected dotted.key=value"), ("=3", "expected dotted.key=value"),
        ("params..lr=0.1", "expected dotted.key=value"), ("params.augmentation=[hflip", "not valid YAML"),
        ("params.lr={a: [1}", "not valid YAML"), ("name.sub=1", "name is not a section"),
        ("params.epochs=@3", "not valid YAML"), ("tracking.wandb.tags=[a, 'b]", "not valid YAML"),
    ])
    return Case(f"override {item!r}", copy.deepcopy(base), expected, overrides=[item])


def _cases(tmp, bases) -> list[Case]:
    rng = random.Random(SEED)
    makers = [_unknown_key, _wrong_type, _bad_name, _bad_value, _duplicate_levels, _bad_override,
              lambda r, b, t: _bad_path(r, b, t, tmp)]
    cases = []
    for i in range(CASES):
        trainable = rng.choice(sorted(bases))
        cases.append(makers[i % len(makers)](rng, bases[trainable], trainable))
    return cases


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    return _bases(tmp_path_factory.mktemp("bad-studies"))


def _bases(tmp):
    """A tiny image folder, a file, and a valid classifier and noop study (raw)."""
    rng = np.random.default_rng(0)
    for name in ("bare", "rusty"):
        (tmp / "data" / name).mkdir(parents=True)
        for i in range(8):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp / "data" / name / f"{i}.png")
    (tmp / "a_file.txt").write_text("not a folder")
    classifier = {
        "name": "bad", "trainable": "classifier", "data": {"path": str(tmp / "data")},
        "params": {"backbone": "resnet10t", "epochs": 1, "image_size": 32, "positive_class": "rusty", "augmentation": "hflip"},
        "search": {"space": "classifier_basic", "num_samples": 2, "seed": 0},
        "objective": {"metric": "val/accuracy", "mode": "max"},
        "scheduler": {"name": "asha", "grace_period": 1}, "tracking": {"wandb": {"mode": "disabled", "tags": ["t"]}},
        "ray": {"num_cpus": 1}, "stop": {"patience": 2},
    }
    noop = {
        "name": "bad-noop", "trainable": "noop", "data": {"path": "synthetic:corrosion"},
        "params": {"epochs": 2, "seed": 0}, "search": {"space": "noop", "num_samples": 2},
        "objective": {"metric": "score", "mode": "max"}, "tracking": {"wandb": {"mode": "disabled"}},
    }
    return tmp, {"classifier": classifier, "noop": noop}


def test_the_bases_are_valid(bases):
    from orchestrator.spec import validate_study

    for raw in bases[1].values():
        validate_study(copy.deepcopy(raw))


def test_malformed_studies_and_overrides_exit_2_with_a_message_and_start_nothing(bases, monkeypatch):
    import yaml

    import orchestrator.runner

    started = []
    monkeypatch.setattr(orchestrator.runner, "run_study", lambda *a, **k: started.append(a) or pytest.fail("run_study was called"))
    tmp, base = bases
    storage = tmp / "results"
    ray_was_up = "ray" in sys.modules and sys.modules["ray"].is_initialized()
    failures = []
    cases = _cases(tmp, base)
    for i, case in enumerate(cases):
        study = tmp / f"case-{i}.yaml"
        study.write_text(yaml.safe_dump(case.raw, allow_unicode=True))
        for command in ("validate", "run"):
            args = [command, str(study)] + ([] if "storage" in case.raw else ["--storage", case.storage or str(storage)])
            for item in case.overrides:
                args += ["--set", item]
            result = runner.invoke(app, args)
            problems = []
            if result.exit_code != 2:
                problems.append(f"exit {result.exit_code}")
            if "Traceback" in result.output or not isinstance(result.exception, (SystemExit, type(None))):
                problems.append(f"traceback/exception {result.exception!r}")
            if "error:" not in result.output or case.expected not in result.output:
                problems.append(f"message lacks {case.expected!r}")
            if problems:
                failures.append(f"{case.what} ({command}): {', '.join(problems)}\n{result.output[-600:]}")
    assert not failures, f"{len(failures)} of {2 * len(cases)} failed:\n" + "\n".join(failures[:8])
    assert not started and not storage.exists()  # nothing was launched, no study folder
    assert ("ray" in sys.modules and sys.modules["ray"].is_initialized()) == ray_was_up
    assert {c.what.split(" ")[0] for c in cases} >= {"unknown", "wrong", "bad", "equal", "override", "missing"}
