"""SIGKILL the driver at random moments, resume until done: are rows lost or repeated anywhere?

Each of ``--runs`` iterations starts the ablation study of ``tests/integration/test_ablation_resume.py``
(``noop`` trainable, 2 cells x (3 search + 2 confirm) = 10 trials of 4 epochs, ASHA, W&B offline)
with ``corrotune run`` in a subprocess, while ``--hogs`` busy-loop processes (default: one per
core) keep every CPU busy. The driver is SIGKILLed (with its Ray session) at a moment drawn
uniformly from ``--kill-within`` seconds after its start, then ``corrotune resume`` runs; a
resume is killed again with probability ``--kill-again`` while the run has had fewer than
``--max-kills`` kills, else it runs to the end. All draws come from ``--seed``.

After the last resume the study folder is checked:

* every planned trial is in Ray's newest experiment state exactly once, ``TERMINATED``, and the
  plan per (cell, phase) is whole (each trial finished exactly once);
* each trial's ``result.json``: rows ``1..n`` (``n`` = the last epoch Ray recorded for it), each
  exactly once and in order, and each row's ``score`` equals the value the trial computes for
  that epoch (``noop``'s score depends only on ``(x, seed, epoch)``);
* ``trials.csv``: one row per trial, with ``epochs`` = ``n`` and ``best/score`` = the best of
  those values;
* W&B: the trial's offline runs, read oldest first as ``wandb sync`` uploads them
  (:func:`orchestrator.tracking.logged_steps`), hold steps ``1..n`` exactly once, with the same
  ``score`` per step.

Each run also counts the rows its resumes put back into a ``result.json`` (the rows a kill had
left out of it, see ``orchestrator.ray_repairs.lost_results``). Prints one JSON line per run as it ends (on stderr) and one JSON object with every run and the
totals (on stdout). Exit status 1 when a run lost or repeated anything.

    python benchmarks/sigkill_resume_loop.py [--runs 20] [--seed 0] [--hogs 2] [--max-kills 2]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script: the study and the kill helper come from the tests

from tests.integration.helpers import kill_session  # noqa: E402
from tests.integration.test_ablation_resume import STUDY  # noqa: E402  (its resume test's study)

PLAN = {(f"sleep_s={s}", phase): n for s in (0.3, 0.5) for phase, n in (("search", 3), ("confirm", 2))}
DRIVER_TIMEOUT_S = 900
COUNTS = ("result_json", "trials_csv", "wandb")


# --------------------------------------------------------------------------- driving the CLI


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "orchestrator.cli", *args]


def _environment(root: Path) -> dict[str, str]:
    """This checkout first on the path; Ray, W&B and caches under ``root`` (as tests/conftest.py)."""
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_API_KEY", "WANDB_DIR")}
    env.update({
        "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "WANDB_MODE": "offline", "WANDB_SILENT": "true",
        "WANDB_CACHE_DIR": str(root / "wandb-cache"), "WANDB_CONFIG_DIR": str(root / "wandb-config"),
        "WANDB_DATA_DIR": str(root / "wandb-data"), "MPLCONFIGDIR": str(root / "mpl"),
        "RAY_TMPDIR": str(root / "ray"), "CORROTUNE_CACHE_DIR": str(root / "cache"),
    })
    (root / "ray").mkdir(parents=True, exist_ok=True)
    return env


def _processes_under(folder: Path) -> list[int]:
    """Ids of the processes whose command line names ``folder`` (this run's own Ray session:
    Ray's workers start sessions of their own, so the driver's process group misses them)."""
    mine = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if str(folder).encode() in (entry / "cmdline").read_bytes():
                    mine.append(int(entry.name))
            except OSError:
                continue
    return mine


def _kill_session(process: subprocess.Popen, folder: Path) -> None:
    """SIGKILLs the driver and its process group, then the rest of its Ray session (only
    processes of this run: Ray's workers start sessions of their own)."""
    kill_session(process)
    for pid in _processes_under(folder):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def drive(args: list[str], env: dict[str, str], cwd: Path, log: Path, kill_after_s: float | None) -> str:
    """Runs one driver; SIGKILLs it ``kill_after_s`` after its start unless it ended before.

    Returns ``"killed"``, ``"finished"`` (exit 0) or ``"exit <status>"``.
    """
    with log.open("a") as err:
        err.write(f"\n$ {' '.join(args[2:])} (kill after {kill_after_s})\n")
        err.flush()
        driver = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        try:
            driver.wait(timeout=kill_after_s if kill_after_s is not None else DRIVER_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return "killed" if kill_after_s is not None else "exit timeout"
        finally:  # killed, ended on its own, or this script interrupted: nothing of its session outlives it
            _kill_session(driver, cwd)
    return "finished" if driver.returncode == 0 else f"exit {driver.returncode}"


def start_hogs(count: int) -> list[subprocess.Popen]:
    """``count`` busy-loop processes (one core each while the OS lets them)."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def stop_hogs(hogs: list[subprocess.Popen]) -> None:
    for hog in hogs:
        hog.kill()
        hog.wait()


# --------------------------------------------------------------------------- checking the study


def expected_scores(x: float, seed: int, epochs: int) -> list[float]:
    """The ``score`` a ``noop`` trial reports at epochs ``1..epochs`` (seeded, RNG carried on)."""
    from trainables._runtime import seed_everything
    from trainables.noop import epoch_score

    seed_everything(seed)
    return [epoch_score(x, epoch) for epoch in range(1, epochs + 1)]


def _differences(steps: list[int], n: int) -> tuple[int, int, bool]:
    """``(lost, repeated, in order)`` of ``steps`` against ``1..n``."""
    counts = Counter(steps)
    lost = sum(1 for step in range(1, n + 1) if step not in counts)
    repeated = sum(c - 1 for c in counts.values() if c > 1) + sum(c for s, c in counts.items() if not 1 <= s <= n)
    return lost, repeated, steps == sorted(steps)


def _same(a: Any, b: float) -> bool:
    return isinstance(a, (int, float)) and math.isclose(a, b, rel_tol=0, abs_tol=1e-12)


def _saved_trials(study_dir: Path) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    from orchestrator.ray_repairs.experiment_state import newest_experiment_state

    state = newest_experiment_state(study_dir) or {"trial_data": []}
    return [(json.loads(trial), json.loads(run)) for trial, run in state["trial_data"]]


def _rows(path: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return []


def _wandb_scores(study_dir: Path) -> dict[str, list[tuple[int, Any]]]:
    """``trial id -> [(step, score), ...]`` over its offline runs, oldest first."""
    from orchestrator._wandb_history import offline_run_dirs, read_offline_run

    logged: dict[str, list[tuple[int, Any]]] = {}
    for folder in offline_run_dirs(study_dir):
        run = read_offline_run(folder)
        logged.setdefault(run.run_id, []).extend((step, row.get("score")) for step, row in zip(run.steps, run.rows))
    return logged


def check_study(study_dir: Path) -> dict[str, Any]:
    """What the finished study lost or repeated, per file (see the module doc); ``problems`` names each."""
    from trainables import NoopConfig, split_trial_meta

    saved = _saved_trials(study_dir)
    problems: list[str] = []
    lost, repeated, wrong = Counter(), Counter(), Counter()
    statuses = Counter(trial["status"] for trial, _ in saved)
    plan = Counter((t["config"]["corrotune"]["cell"], t["config"]["corrotune"]["phase"]) for t, _ in saved)
    ids = Counter(trial["trial_id"] for trial, _ in saved)
    finished_once = statuses == {"TERMINATED": sum(PLAN.values())} and plan == PLAN and max(ids.values(), default=0) == 1
    if not finished_once:
        problems.append(f"trials: statuses {dict(statuses)}, plan {dict(plan)}")
    table = {}
    if (study_dir / "trials.csv").is_file():
        with (study_dir / "trials.csv").open(newline="") as handle:
            table_rows = list(csv.DictReader(handle))
        table = {row["trial_id"]: row for row in table_rows}
        repeated["trials_csv"] += len(table_rows) - len(table)
    wandb = _wandb_scores(study_dir)
    for trial, run in saved:
        trial_id = trial["trial_id"]
        config = NoopConfig.model_validate(split_trial_meta(trial["config"])[0])  # its defaults filled in
        n = int((run.get("last_result") or {}).get("training_iteration") or 0)
        truth = expected_scores(config.x, config.seed, max(n, 1))
        rows = _rows(study_dir / trial["relative_logdir"] / "result.json")
        for name, pairs in (("result_json", [(r.get("training_iteration"), r.get("score")) for r in rows]),
                            ("wandb", wandb.get(trial_id, []))):
            steps = [s for s, _ in pairs]
            missing, again, ordered = _differences(steps, n)
            bad = sum(1 for s, v in pairs if isinstance(s, int) and 1 <= s <= n and not _same(v, truth[s - 1]))
            lost[name], repeated[name], wrong[name] = lost[name] + missing, repeated[name] + again, wrong[name] + bad
            if missing or again or bad or not ordered:
                problems.append(f"{trial_id} {name}: steps {steps}, expected 1..{n}" + (f", {bad} wrong score(s)" if bad else ""))
        row = table.get(trial_id)
        if row is None:
            lost["trials_csv"] += 1
            problems.append(f"{trial_id} trials.csv: no row")
            continue
        best = max(truth[:n]) if n else None
        if row.get("epochs") != str(n) or best is None or not _same(float(row.get("best/score") or "nan"), best):
            wrong["trials_csv"] += 1
            problems.append(f"{trial_id} trials.csv: epochs {row.get('epochs')} best {row.get('best/score')}, expected {n} {best}")
    return {
        "trials": len(saved), "finished_exactly_once": finished_once,
        "rows_lost": {k: lost[k] for k in COUNTS}, "rows_repeated": {k: repeated[k] for k in COUNTS},
        "wrong_values": {k: wrong[k] for k in COUNTS}, "problems": problems,
    }


def _clean(outcome: dict[str, Any]) -> bool:
    return outcome["finished_exactly_once"] and not any(
        sum(outcome[key].values()) for key in ("rows_lost", "rows_repeated", "wrong_values"))


# --------------------------------------------------------------------------- the loop


def one_run(index: int, rng: random.Random, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One study: run, SIGKILLs and resumes until it finishes; then :func:`check_study`."""
    import yaml

    folder = root / f"run{index:03d}"
    folder.mkdir()
    env = _environment(folder)
    (folder / "abl.yaml").write_text(yaml.safe_dump(STUDY))
    study_dir, log = folder / "results" / "abl", folder / "drivers.log"
    started, kills, drivers, ended = time.monotonic(), [], 0, None
    command = _cli("run", "abl.yaml", "--storage", "results")
    while ended is None and drivers < args.max_kills + 3:
        drivers += 1
        kill = len(kills) < args.max_kills and (drivers == 1 or rng.random() < args.kill_again)
        delay = round(rng.uniform(*args.kill_within), 2) if kill else None
        outcome = drive(command, env, folder, log, delay)
        if outcome == "killed":
            kills.append(delay)
        elif outcome == "finished":
            ended = outcome
        elif kill is False:  # failed without being killed: report it, don't loop on it
            ended = outcome
        # killed before the study was saved: a user runs it again
        command = _cli("resume", str(study_dir)) if (study_dir / "corrotune_study.yaml").is_file() else _cli("run", "abl.yaml", "--storage", "results")
    result = {"run": index, "kills": len(kills), "kill_after_s": kills, "drivers": drivers, "ended": ended or "gave up",
              "wall_s": round(time.monotonic() - started, 1), "rows_put_back_on_resume": rows_put_back(log.read_text())}
    if ended == "finished":
        result.update(check_study(study_dir))
        result["unrecorded_trials"] = len(list((study_dir / "unrecorded_trials").glob("*"))) if (study_dir / "unrecorded_trials").is_dir() else 0
    else:
        result.update({"finished_exactly_once": False, "problems": [log.read_text()[-2000:]]})
        result.update({key: dict.fromkeys(COUNTS, 0) for key in ("rows_lost", "rows_repeated", "wrong_values")})
    result["clean"] = _clean(result)
    if result["clean"] and not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    else:
        result["folder"] = str(folder)
    return result


_PUT_BACK = re.compile(r"result\.json lacked iteration\(s\) ([\d, -]+) that")


def rows_put_back(driver_log: str) -> int:
    """How many rows the resumes said they put back into a ``result.json`` (what the race had lost)."""
    rows = 0
    for match in _PUT_BACK.finditer(driver_log):
        for part in match.group(1).split(","):
            first, _, last = part.strip().partition("-")
            rows += int(last or first) - int(first) + 1
    return rows


def totals(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The sums over ``runs`` of kills, rows lost/repeated/wrong per file, and clean runs."""
    return {
        "runs": len(runs), "kills": sum(r["kills"] for r in runs),
        "rows_put_back_on_resume": sum(r["rows_put_back_on_resume"] for r in runs),
        "runs_clean": sum(r["clean"] for r in runs),
        "runs_every_trial_finished_once": sum(bool(r.get("finished_exactly_once")) for r in runs),
        **{key: {k: sum(r[key][k] for r in runs) for k in COUNTS} for key in ("rows_lost", "rows_repeated", "wrong_values")},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0, help="seeds every kill draw")
    parser.add_argument("--hogs", type=int, default=os.cpu_count() or 1, help="busy-loop processes (default: one per core)")
    parser.add_argument("--kill-within", type=float, nargs=2, default=(5.0, 60.0), metavar=("MIN_S", "MAX_S"),
                        help="a driver is killed at a uniform moment this many seconds after its start")
    parser.add_argument("--kill-again", type=float, default=0.5, help="chance that a resume is killed too")
    parser.add_argument("--max-kills", type=int, default=2, help="kills per run at most; then a resume runs to the end")
    parser.add_argument("--keep", action="store_true", help="keep every run's folder (default: only failing runs')")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="ct-kill-"))  # short: Ray's socket paths are length-limited
    hogs = start_hogs(args.hogs)
    runs, interrupted = [], False
    try:
        for index in range(args.runs):
            runs.append(one_run(index, rng, root, args))
            print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    except KeyboardInterrupt:  # Ctrl-C: the report of the runs that ended
        interrupted = True
    finally:
        stop_hogs(hogs)
    report = {"benchmark": "sigkill_resume_loop", "setup": {**vars(args), "study": STUDY["name"], "root": str(root)},
              "interrupted": interrupted, "totals": totals(runs), "runs": runs}
    print(json.dumps(report, indent=2))
    if not any("folder" in r for r in runs):
        shutil.rmtree(root, ignore_errors=True)
    return 0 if runs and not interrupted and all(r["clean"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
