"""Time from ``corrotune run studies/demo.yaml`` to its first trial result, by phase.

Runs the real CLI as a subprocess (what the ``corrotune`` script runs) on the demo study with W&B
offline, a temporary storage and a temporary cache folder holding the demo's generated dataset
(generated beforehand, untimed, as a user's second run finds it). The demo is shortened with
``--set params.epochs=2 --set params.artifacts=false --set search.num_samples=2``: two trials
start at once as in the demo (``max_concurrent_trials: 2``) and their first epoch is the demo's
(not their last: the last epoch also scores the test split), so the first result comes as in
the demo while the run ends soon after.

A ``sitecustomize`` (``_phase_marks.py``) timestamps each process's start, module imports and
the driver's and trial's steps; the JSON gives, in seconds since the command started, each
phase's duration and ``first_result_s`` (the driver receiving the first result; goal ≤ 20 s on
2 cores), per run and as the median over ``--runs``. Run 1 has a cold decode cache.

    python benchmarks/time_to_first_result.py [--runs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEMO = REPO / "studies" / "demo.yaml"


def _marks(folder: Path) -> list[dict]:
    marks = []
    for file in folder.glob("*.jsonl"):
        marks += [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
    return sorted(marks, key=lambda m: m["t"])


def phases(marks: list[dict], launched: float, driver_pid: int) -> dict[str, float]:
    """Phase durations (s) from the marks; the trial phases are those of the first trial to report."""

    def first(name: str, pid: int | None = None) -> float | None:
        return next((m["t"] for m in marks if m["name"] == name and (pid is None or m["pid"] == pid)), None)

    report = next((m for m in marks if m["name"] == "trial.tune_report:start"), None)
    if report is None or first("driver.first_result:start") is None:
        raise RuntimeError("no trial reported a result (see the CLI's output above)")
    worker = report["pid"]
    points = [  # (phase that ends at this point, time)
        ("interpreter_start", first("process:start", driver_pid)),
        ("cli_imports", first("import.orchestrator.cli:end", driver_pid)),
        ("study_validation", first("driver.run_study:start", driver_pid)),
        ("study_folder", first("driver._prepare_data:start", driver_pid)),
        ("data_scan_and_split", first("driver._prepare_data:end", driver_pid)),
        ("driver_environment", first("driver._init_ray:start", driver_pid)),
        ("ray_start", first("driver._init_ray:end", driver_pid)),
        ("tuner_build", first("driver._fit:start", driver_pid)),
        ("until_trial_worker_exists", first("process:start", worker)),
        ("worker_to_trial_imports", first("import.trainables:start", worker)),
        ("trial_imports", first("trial.fit:start", worker)),
        ("trial_data_load_and_decode", first("trial.load_data:end", worker)),
        ("model_build", first("trial.build_model:end", worker)),
        ("until_first_epoch", first("trial.train_one_epoch:start", worker)),
        ("first_train_pass", first("trial.train_one_epoch:end", worker)),
        ("first_validation", first("trial.evaluate:end", worker)),
        ("checkpoint_serialise", first("trial.checkpoint_save:end", worker)),
        ("until_tune_report", first("trial.tune_report:start", worker)),
        ("persist_and_deliver_to_driver", first("driver.first_result:start", driver_pid)),
    ]
    out, previous = {}, launched
    for name, t in points:
        if t is None:
            out[name] = None
            continue
        # a worker started before the driver reached tuner.fit (Ray prestarts workers): 0 s waiting
        out[name] = round(max(t - previous, 0.0), 3)
        previous = max(previous, t)
    out["first_result_s"] = round(first("driver.first_result:start", driver_pid) - launched, 3)
    out["trial_worker_started_at_s"] = round(first("process:start", worker) - launched, 3)
    return out


def one_run(work: Path, run: int, python: str) -> dict:
    marks = work / f"marks{run}"
    site = work / "site"
    marks.mkdir()
    env = dict(os.environ)
    env.update({
        "CORROTUNE_PHASES_DIR": str(marks), "CORROTUNE_CACHE_DIR": str(work / "cache"), "WANDB_MODE": "offline",
        "WANDB_DIR": str(work / "wandb"), "RAY_TMPDIR": str(work / "ray"),
        "PYTHONPATH": os.pathsep.join([str(site), str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    })
    env.pop("WANDB_API_KEY", None)
    command = [python, "-c", "from orchestrator.cli import main; main()", "run", str(DEMO),
               "--storage", str(work / f"results{run}"), "--set", "params.epochs=2", "--set", "params.artifacts=false", "--set", "search.num_samples=2"]
    launched = time.time()
    proc = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    total = time.time() - launched
    if proc.returncode != 0:
        print(proc.stdout, file=sys.stderr)
        raise RuntimeError(f"the CLI exited with {proc.returncode}")
    out = phases(_marks(marks), launched, _driver_pid(_marks(marks)))
    out["command_total_s"] = round(total, 2)
    out["load"] = [round(v, 2) for v in os.getloadavg()]
    return out


def _driver_pid(marks: list[dict]) -> int:
    return next(m["pid"] for m in marks if m["name"] == "import.orchestrator.cli:end")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--python", default=sys.executable, help="interpreter of the CLI (default: this one)")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="corrotune-ttfr-") as tmp:
        work = Path(tmp)
        (work / "site").mkdir()
        shutil.copy(HERE / "_phase_marks.py", work / "site" / "sitecustomize.py")
        os.environ["CORROTUNE_CACHE_DIR"] = str(work / "cache")
        sys.path.insert(0, str(REPO))
        from trainables.data.config import DataConfig
        from trainables.data.folder import resolve_root

        import yaml

        resolve_root(DataConfig(**yaml.safe_load(DEMO.read_text())["data"]))  # the demo's images, untimed
        runs = [one_run(work, run, args.python) for run in range(args.runs)]
    keys = [k for k in runs[0] if k != "load"]
    median = {k: round(statistics.median(r[k] for r in runs if r[k] is not None), 3) for k in keys
              if any(r[k] is not None for r in runs)}
    print(json.dumps({
        "study": "studies/demo.yaml (--set params.epochs=2 --set params.artifacts=false --set search.num_samples=2)", "cpus": os.cpu_count(),
        "first_result_s": median["first_result_s"], "goal": "<= 20 s", "median_phases_s": median, "runs": runs,
        "total_s": round(time.perf_counter() - started, 1),
        "note": "phases in order, each from the end of the one before (a phase that overlapped the one "
                "before counts 0: Ray starts workers early); persist_and_deliver_to_driver = Ray copying the "
                "checkpoint into storage and the result reaching the driver's loggers; first_result_s = the driver receiving the first "
                "trial result, from the command's start; run 1 has a cold decode cache",
    }, indent=2))


if __name__ == "__main__":
    main()
