"""`corrotune report`: statistics with known answers, and the report folder written from study folders."""

from __future__ import annotations

import base64
import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

from orchestrator.report import ReportError, build_report, gather, write_report
from orchestrator.spec import Study

TINY = Path(__file__).parent / "report_data" / "ablation_tiny"  # a real finished ablation_tiny, checkpoints left out


def make_study(tmp_path: Path, values: dict[str, list[float]], *, factors=None, statuses=None, phase="confirm",
               curves: bool = False, extra: dict | None = None) -> Path:
    """A study folder of the noop trainable whose cells' runs scored ``values`` (seeds 1, 2, ...)."""
    if factors is None:  # one factor x whose levels are the keys of values
        factors, values = {"x": list(values)}, {f"x={k}": v for k, v in values.items()}
    raw = {"name": "synthetic", "trainable": "noop", "data": {"path": "synthetic:corrosion"},
           "ablation": {"factors": factors, "repeats": max(len(v) for v in values.values())},
           "objective": {"metric": "score", "mode": "max"}, "tracking": {"wandb": {"mode": "disabled"}}, **(extra or {})}
    study = Study.model_validate(raw)
    folder = tmp_path / "synthetic"
    folder.mkdir(parents=True)
    (folder / "corrotune_study.yaml").write_text(yaml.safe_dump(raw))
    rows, statuses = [], statuses or {}
    labels = [",".join(f"{k}={v}" for k, v in levels.items()) for levels, _ in study.cells]
    for label in labels:
        for seed, value in enumerate(values.get(label, []), start=1):
            trial_id = f"{len(rows):08x}"
            rows.append({"trial_id": trial_id, "cell": label, "seed": seed, "phase": phase, "repeat": seed - 1,
                         "status": statuses.get((label, seed), "TERMINATED"), "config/seed": seed, "best/score": value})
            if curves:
                trial = folder / f"noop_{trial_id}"
                trial.mkdir()
                lines = [json.dumps({"training_iteration": e, "score": value * e / 3}) for e in (1, 2, 3)]
                (trial / "result.json").write_text("\n".join(lines) + "\n")
    with (folder / "trials.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return folder


def _report(folder: Path, **kwargs) -> dict:
    return build_report(gather(folder, **kwargs))


def test_separated_groups_are_significant_and_identical_groups_are_not(tmp_path):
    rng = np.random.default_rng(0)
    values = {"a": list(0.70 + 0.01 * rng.standard_normal(5)), "b": list(0.70 + 0.01 * rng.standard_normal(5)),
              "c": list(0.90 + 0.01 * rng.standard_normal(5))}
    report = _report(make_study(tmp_path, values))
    pairs = {(p["a"], p["b"]): p for p in report["pairwise"]}
    assert pairs[("x=a", "x=c")]["significant"] and pairs[("x=b", "x=c")]["significant"]
    assert not pairs[("x=a", "x=b")]["significant"]
    against = {v["cell"]: v for v in report["vs_baseline"]}
    assert report["baseline"] == "x=a"
    assert against["x=c"]["significant"] and against["x=c"]["p_value"] < 1e-4
    assert not against["x=b"]["significant"]
    paired = against["x=c"]["paired"]  # seeds 1..5 shared: per-seed differences
    assert paired["n_pairs"] == 5 and paired["ci95"][0] > 0.15 and paired["ci95"][1] < 0.25


def test_identical_values_give_p_one_and_no_spread_gives_no_p(tmp_path):
    report = _report(make_study(tmp_path, {"a": [0.5, 0.6, 0.7], "b": [0.5, 0.6, 0.7]}))
    assert report["pairwise"][0]["p_value"] == pytest.approx(1.0)
    assert report["pairwise"][0]["significant"] is False
    flat = _report(make_study(tmp_path / "flat", {"a": [0.5, 0.5], "b": [0.5, 0.5]}))
    assert flat["pairwise"][0]["p_value"] is None and "no spread" in flat["pairwise_note"]
    assert flat["cells"][0]["ci95"] == [0.5, 0.5]


def test_tukey_p_values_equal_scipy_on_the_confirm_rows_of_a_real_ablation():
    report = _report(TINY)
    with (TINY / "trials.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if r["phase"] == "confirm" and r["status"] == "TERMINATED"]
    cells = list(dict.fromkeys(r["cell"] for r in rows))
    groups = [[float(r["last/test/accuracy"]) for r in rows if r["cell"] == c] for c in cells]
    expected = stats.tukey_hsd(*groups)
    assert report["metric"] == "test/accuracy" and report["phase"] == "confirm"
    assert [c["cell"] for c in report["cells"]] == cells
    for pair in report["pairwise"]:
        i, j = cells.index(pair["a"]), cells.index(pair["b"])
        assert pair["p_value"] == pytest.approx(expected.pvalue[i, j], rel=1e-12)
        assert pair["mean_diff"] == pytest.approx(expected.statistic[i, j], rel=1e-12)
    dunnett = stats.dunnett(*groups[1:], control=groups[0], rng=np.random.default_rng(0))
    assert [v["p_value"] for v in report["vs_baseline"]] == pytest.approx(list(dunnett.pvalue), rel=1e-6)


def test_intervals_cover_the_true_mean_and_difference_at_about_the_stated_rate():
    from orchestrator.report._stats import _paired, cell_summary

    rng = np.random.default_rng(1)
    covered_mean = covered_diff = 0
    runs = 300
    for _ in range(runs):
        lo, hi = cell_summary(rng.normal(0.0, 1.0, 5))["ci95"]
        covered_mean += lo <= 0.0 <= hi
        seed_effect = rng.normal(0.0, 1.0, 12)  # shared by both cells: what pairing removes
        base = dict(enumerate(seed_effect + rng.normal(0.0, 0.2, 12)))
        other = dict(enumerate(seed_effect + 0.3 + rng.normal(0.0, 0.2, 12)))
        dlo, dhi = _paired(base, other)["ci95"]
        covered_diff += dlo <= 0.3 <= dhi
    assert 0.92 <= covered_mean / runs <= 0.98  # t interval, stated 95 %
    assert 0.86 <= covered_diff / runs <= 0.98  # BCa bootstrap on 12 pairs: a little under 95 %


def test_bca_falls_back_to_percentile_where_it_degenerates():
    from orchestrator.report._stats import bootstrap_ci

    # the jackknife of a minimum of mostly-equal values is constant: BCa's acceleration is 0/0
    ci, method = bootstrap_ci([np.array([1.0, 1.0, 1.0, 1.0, 2.0])], lambda x, axis=-1: np.min(x, axis=axis))
    assert method == "percentile" and ci == [1.0, 1.0]
    ci, method = bootstrap_ci([np.array([0.1, 0.3, 0.2, 0.25])], lambda x, axis=-1: np.mean(x, axis=axis))
    assert method == "BCa" and 0.1 <= ci[0] < ci[1] <= 0.3


def test_power_says_when_n_cannot_reach_significance(tmp_path):
    five = _report(make_study(tmp_path, {"a": [0.1, 0.2, 0.3, 0.4, 0.5], "b": [1.1, 1.2, 1.3, 1.4, 1.5]}))
    power = five["power"][0]
    assert power["n_pairs"] == 5 and power["wilcoxon_min_p"] == pytest.approx(0.0625)
    assert power["rank_test_can_reach_p05"] is False and "can never reach p < 0.05" in power["verdict"]
    assert power["min_significant_diff"] > 0 and power["detectable_diff_80"] > power["min_significant_diff"]
    six = _report(make_study(tmp_path / "six", {"a": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], "b": [1.1, 1.2, 1.3, 1.4, 1.5, 1.6]}))
    assert six["power"][0]["wilcoxon_min_p"] == pytest.approx(0.03125) and six["power"][0]["rank_test_can_reach_p05"]
    noisy = _report(make_study(tmp_path / "noisy", {"a": [0.5, 0.7, 0.6], "b": [0.55, 0.75, 0.62]}))
    assert "not distinguishable from seed noise" in noisy["power"][0]["verdict"]


def test_main_effects_and_interaction_of_an_additive_design(tmp_path):
    rng = np.random.default_rng(2)
    truth = {(a, b): 0.5 + 0.1 * (a == "y") + 0.2 * (b == "q") for a in ("x", "y") for b in ("p", "q")}
    values = {f"f={a},g={b}": list(m + 0.005 * rng.standard_normal(4)) for (a, b), m in truth.items()}
    report = _report(make_study(tmp_path, values, factors={"f": ["x", "y"], "g": ["p", "q"]}))
    effects = {m["factor"]: m for m in report["factors"]["main_effects"]}
    assert effects["f"]["estimate"] == pytest.approx(0.1, abs=0.01) and effects["g"]["estimate"] == pytest.approx(0.2, abs=0.01)
    assert effects["f"]["ci95"][0] < 0.1 < effects["f"]["ci95"][1] or abs(effects["f"]["estimate"] - 0.1) < 0.005
    inter = report["factors"]["interaction"]
    assert inter["means"][1][1] == pytest.approx(0.8, abs=0.01)
    assert inter["contrasts"][0]["estimate"] == pytest.approx(0.0, abs=0.015)


def test_a_running_or_crashed_study_reports_what_is_finished_and_lists_the_rest(tmp_path):
    statuses = {("x=b", 3): "RUNNING", ("x=c", 2): "ERROR", ("x=c", 3): "PENDING"}
    folder = make_study(tmp_path, {"a": [0.5, 0.6, 0.7], "b": [0.6, 0.7, 0.8], "c": [0.7, 0.8, 0.9]}, statuses=statuses)
    paths = write_report(folder, wandb=False, say=lambda line: None)
    report = json.loads(paths["json"].read_text())
    assert [c["n"] for c in report["cells"]] == [3, 2, 1]
    assert any("x=c: 1 of 3 confirm runs finished" == m for m in report["missing"])
    assert any("RUNNING" in m for m in report["missing"]) and any("ERROR" in m for m in report["missing"])
    assert "x=c" in report["pairwise_note"]  # one run: left out of Tukey, and said so
    assert "Not finished yet" in paths["html"].read_text()


def test_search_runs_are_used_without_confirm_runs_and_said_so(tmp_path):
    report = _report(make_study(tmp_path, {"a": [0.5, 0.6], "b": [0.6, 0.7]}, phase="search"))
    assert report["phase"] == "search" and any("search trials" in n for n in report["notes"])


@pytest.mark.parametrize("kwargs, expected", [
    ({"metric": "scroe"}, "did you mean 'score'"),
    ({"baseline": "x=z"}, "--baseline 'x=z' is not a cell"),
])
def test_bad_metric_or_baseline_names_the_valid_ones(tmp_path, kwargs, expected):
    folder = make_study(tmp_path, {"a": [0.5, 0.6], "b": [0.6, 0.7]})
    with pytest.raises(ReportError, match=expected):
        gather(folder, **kwargs)


def test_not_a_study_folder(tmp_path):
    with pytest.raises(ReportError, match="corrotune_study.yaml is missing"):
        gather(tmp_path)


def test_report_files_embed_every_plot(tmp_path):
    folder = make_study(tmp_path, {"a": [0.5, 0.6, 0.55], "b": [0.6, 0.7, 0.65]}, curves=True)
    trial = next(folder.glob("noop_*"))
    (trial / "artifacts").mkdir()
    shutil.copy(Path(__file__).parent / "report_data" / "tiny.png", trial / "artifacts" / "confusion_matrix.png")
    paths = write_report(folder, wandb=False, say=lambda line: None)
    page = paths["html"].read_text()
    names = {p.stem for p in (folder / "report" / "plots").glob("*.png")}
    assert {"cells", "curves", "pvalues", "confusion_0"} <= names
    for name in names:
        assert f'id="plot-{name}"' in page and f"plots/{name}.png" in paths["md"].read_text()
    encoded = page.split('src="data:image/png;base64,', 1)[1].split('"', 1)[0]
    assert base64.b64decode(encoded).startswith(b"\x89PNG")
    assert "src=\"http" not in page and "<link" not in page  # self-contained


def test_real_ablation_report_has_every_section(tmp_path):
    folder = tmp_path / "ablation_tiny"
    shutil.copytree(TINY, folder)
    paths = write_report(folder, wandb=False, say=lambda line: None)
    report = json.loads(paths["json"].read_text())
    assert set(report) >= {"cells", "pairwise", "vs_baseline", "factors", "power", "reference"}
    cell = report["cells"][0]
    assert set(cell) >= {"cell", "factors", "n", "mean", "std", "ci95", "min", "max", "values", "best_config"}
    assert {"lr", "dropout", "dense_units"} <= set(cell["best_config"])
    assert len(report["pairwise"]) == 6 and len(report["vs_baseline"]) == 3
    assert {m["factor"] for m in report["factors"]["main_effects"]} == {"attention", "pooling"}
    assert {"search", "cost", "curves"} <= {p.stem for p in (folder / "report" / "plots").glob("*.png")}


def test_cli_report_writes_the_files_and_explains_a_bad_folder(tmp_path):
    from typer.testing import CliRunner

    from orchestrator.cli import app

    folder = make_study(tmp_path, {"a": [0.5, 0.6], "b": [0.6, 0.7]})
    result = CliRunner().invoke(app, ["report", str(folder), "--out", str(tmp_path / "out"), "--no-wandb"])
    assert result.exit_code == 0, result.output
    assert {p.name for p in (tmp_path / "out").iterdir()} >= {"report.html", "report.md", "report.json"}
    bad = CliRunner().invoke(app, ["report", str(tmp_path / "nowhere")])
    assert bad.exit_code == 2 and "corrotune_study.yaml is missing" in bad.output and "Traceback" not in bad.output


def test_a_failing_report_never_fails_the_run(tmp_path, monkeypatch):
    from rich.console import Console

    from orchestrator.report import _write
    from orchestrator.storage import StudyPlace

    console = Console(record=True, width=200)
    folder = make_study(tmp_path, {"a": [0.5, 0.6], "b": [0.6, 0.7]})
    monkeypatch.setattr(_write, "build_report", lambda data: 1 / 0)
    _write.report_after_run(StudyPlace.of_study(folder), console)
    assert "could not be written (ZeroDivisionError" in console.export_text()
    _write.report_after_run(StudyPlace.of_study(tmp_path / "empty"), console)
    assert "No report:" in console.export_text()


def test_paper_values_are_printed_beside_ours(tmp_path):
    reference = {"source": "Paper, Table 1", "values": {"x=a": {"score": 0.55}, "x=b": {"score": 0.95}}}
    folder = make_study(tmp_path, {"a": [0.5, 0.6, 0.55], "b": [0.6, 0.7, 0.65]}, extra={"reference": reference})
    paths = write_report(folder, wandb=False, say=lambda line: None)
    rows = {r["cell"]: r for r in json.loads(paths["json"].read_text())["reference"]}
    assert rows["x=a"]["paper_inside_ci"] is True and rows["x=a"]["difference"] == pytest.approx(0.0)
    assert rows["x=b"]["paper_inside_ci"] is False and rows["x=b"]["difference"] == pytest.approx(-0.3)
    assert rows["x=b"]["ours_ci95"][1] < 0.95 and rows["x=b"]["source"] == "Paper, Table 1"
    page = paths["html"].read_text()
    assert "Paper vs ours" in page and "0.9500" in page and "Source: Paper, Table 1" in page


def test_the_html_opens_in_a_headless_browser_with_every_plot(tmp_path):
    import subprocess
    import sys

    if not (shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")):
        pytest.skip("no Chromium here (apt-get install -y chromium)")
    folder = tmp_path / "ablation_tiny"
    shutil.copytree(TINY, folder)
    html = write_report(folder, wandb=False, say=lambda line: None)["html"]
    script = Path(__file__).resolve().parents[2] / "docs" / "report_screenshot.py"
    done = subprocess.run([sys.executable, str(script), str(html), "--png", str(tmp_path / "shot.png")],
                          capture_output=True, text=True, timeout=300)
    result = json.loads(done.stdout)
    assert done.returncode == 0 and result["loaded"] == result["images"] == len(list((folder / "report" / "plots").glob("*.png")))
    assert (tmp_path / "shot.png").read_bytes().startswith(b"\x89PNG") and result["png_bytes"] < 300_000


def test_trials_a_scheduler_stopped_early_are_a_note_not_missing_runs(tmp_path):
    folder = make_study(tmp_path, {"a": [0.5, 0.6, 0.7], "b": [0.6, 0.7, 0.8]}, phase="search",
                        extra={"scheduler": {"name": "asha"}})
    table = folder / "trials.csv"
    rows = list(csv.DictReader(table.open()))
    for row in rows:  # the first run of each cell ran 2 of its 6 epochs and scored no test value
        early = row["seed"] == "1"
        row.update({"epochs": 2 if early else 6, "config/epochs": 6, "best/score": "" if early else row["best/score"]})
    rows.append({**rows[-1], "trial_id": "ffffffff", "status": "ERROR", "best/score": "", "epochs": 1})
    with table.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    report = _report(folder)
    assert [c["n"] for c in report["cells"]] == [2, 2]
    assert any("2 search trial(s) were stopped early by the asha scheduler" in n for n in report["notes"])
    assert not any("TERMINATED" in m for m in report["missing"])  # stopped early is not missing
    assert "x=b: trial ffffffff is ERROR" in report["missing"]  # a failed trial still is


def test_trial_folders_find_each_trial_as_a_listing_per_trial_did(tmp_path):
    from orchestrator.report._gather import read_history, trial_folders

    for name in ("noop_abc", "noop_abc_00001", "classifier_x_00002", "data"):
        (tmp_path / name).mkdir()
    (tmp_path / "noop_abc_00001" / "result.json").write_text('{"training_iteration": 1}\nhalf a li')
    folders = trial_folders(tmp_path)
    for trial_id in ("abc", "abc_00001", "00001", "x_00002", "00002", "missing"):
        by_glob = sorted(tmp_path.glob(f"*_{trial_id}"))
        assert folders.get(trial_id) == (by_glob[0] if by_glob else None)
    assert read_history(tmp_path, {"trial_id": "abc_00001"}, folders) == [{"training_iteration": 1}]
    assert read_history(tmp_path, {"trial_id": "missing"}) == []
