"""The ``corrotune`` command line.

Examples:
    corrotune run studies/demo.yaml
    corrotune run studies/demo.yaml --storage /mnt/results --set search.num_samples=16
    corrotune run studies/papers/p000_resnet_mhsa_focal.yaml --set data.path=/data/phase5 --smoke
    corrotune run studies/examples/ablation_tiny.yaml --address auto --storage s3://bucket/studies
    corrotune resume corrotune-results/demo
    corrotune status corrotune-results/demo
    corrotune report corrotune-results/ablation_tiny --baseline "attention=none,pooling=gap"
    corrotune validate studies/demo.yaml
    corrotune scan /data/corrosion --json scan.json
    corrotune --debug validate studies/demo.yaml   # any error also shows its Python traceback
    corrotune --verbose run studies/demo.yaml      # Ray's own output too (corrotune's lines only otherwise)
    corrotune --version

No command shows a Python traceback unless ``--debug`` is given: a study, override, path or
storage that cannot be used ends with ``error: ...`` naming the file or key and the fix, and
exit status 2 (:data:`EXIT_INVALID`); anything else that goes wrong ends with a one-line
summary and exit status :data:`EXIT_INTERNAL`. Every path and user string is printed verbatim
(never read as rich markup).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable, List, Optional, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from orchestrator.exit_status import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_INVALID, EXIT_OK, EXIT_SCAN_WARNINGS
from orchestrator.spec import StudyError, load_study
from orchestrator.storage import DEFAULT_STORAGE

__all__ = ["EXIT_INTERNAL", "EXIT_INVALID", "app", "main"]

app = typer.Typer(
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
    help="Hyperparameter and ablation studies on Ray Tune + Optuna + W&B.",
)
err = Console(stderr=True)
if not err.is_terminal:
    err.width = 200  # logs and CI: keep tables and messages unwrapped

_options = {"debug": False}

F = TypeVar("F", bound=Callable[..., None])


def versions() -> str:
    """``corrotune 0.1.0 (ray 2.60.0, optuna 5.0.0, torch 2.14.1, python 3.11.9)``.

    Read from the installed distributions' metadata: nothing (torch included) is imported.
    """
    import platform
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    runs_on = ", ".join(f"{name} {installed(name)}" for name in ("ray", "optuna", "torch"))
    return f"corrotune {installed('corrotune')} ({runs_on}, python {platform.python_version()})"


def _print_version(show: bool) -> None:
    if show:
        typer.echo(versions())
        raise typer.Exit(EXIT_OK)


@app.callback()
def _global_options(
    debug: bool = typer.Option(False, "--debug", help="Show the Python traceback of any error."),
    verbose: bool = typer.Option(
        False, "--verbose", help="Also show Ray's own output (its logs, status tables and the workers' output).",
    ),
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True,
        help="Show the versions of corrotune and of the Ray, Optuna and torch it runs on, and exit.",
    ),
) -> None:
    """Hyperparameter and ablation studies on Ray Tune + Optuna + W&B."""
    from orchestrator.quiet import set_verbose

    _options["debug"] = debug
    set_verbose(verbose)


def _end(outcome) -> None:
    """Ends ``run``/``resume`` with the outcome's last line and exit status (orchestrator.exit_status)."""
    style = "green" if outcome.exit_status == EXIT_OK else "yellow" if outcome.interrupted_by is not None else "red"
    err.print(outcome.last_line(), style=style, markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(outcome.exit_status)


def _fail(error: StudyError) -> None:
    err.print(f"[red]error:[/red] {escape(str(error))}", highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_INVALID)


def _guarded(command: F) -> F:
    """Turns every exception of ``command`` into a message and an exit status (traceback with --debug)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except KeyboardInterrupt:  # Ctrl-C outside a running study (a running one ends in orchestrator.interrupt)
            err.print("Interrupted (Ctrl-C).", markup=False, highlight=False)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except StudyError as error:
            if _options["debug"]:
                err.print_exception()
            _fail(error)
        except Exception as error:  # noqa: BLE001 - the one place that turns the rest into a message
            if _options["debug"]:
                err.print_exception()
            detail = escape(str(error).strip().splitlines()[0] if str(error).strip() else "")
            err.print(
                f"[red]error:[/red] corrotune failed unexpectedly: {type(error).__name__}: {detail}\n"
                "  run the same command with `corrotune --debug ...` for the traceback, and report it",
                highlight=False, soft_wrap=True,
            )
            raise typer.Exit(EXIT_INTERNAL) from None

    return wrapper  # type: ignore[return-value]


_ADDRESS_HELP = "Join this Ray cluster (auto, or HOST:PORT of its head) instead of starting Ray here."


@app.command()
@_guarded
def run(
    study: Path = typer.Argument(..., help="Study YAML file."),
    storage: Optional[str] = typer.Option(
        None, "--storage",
        help="Results root: a path, an NFS mount or a URI (s3://, gs://, file://); the study goes to <storage>/<name>/. "
        "Default: the study's storage key, else corrotune-results.",
    ),
    overrides: Optional[List[str]] = typer.Option(None, "--set", help="Override a study key: dotted.key=value (repeatable)."),
    address: Optional[str] = typer.Option(None, "--address", help=_ADDRESS_HELP),
    smoke: bool = typer.Option(False, "--smoke", help="Shrink the study (epochs, image size, trials, repeats, data) to a minutes-long CPU check of its structure."),
) -> None:
    """Validate a study and run it to completion, ending with a leaderboard.

    Exit status: 0 every trial finished; 1 every trial errored; 2 the study cannot run (nothing
    was started); 3 some trials errored (the others finished); 130/143 stopped by Ctrl-C/SIGTERM
    with the study saved (it prints the `corrotune resume` command; a second Ctrl-C exits at once).
    """
    from orchestrator.checks import data_problems, start_problems

    spec = load_study(study, overrides or [])
    if smoke:
        spec = _smoke_study(study, overrides or [], spec)
    target = storage or spec.storage or DEFAULT_STORAGE
    problems = start_problems(spec, target, address)
    if problems:
        raise StudyError(str(study), problems, "cannot run")
    # the data are scanned before the study folder exists: an unusable dataset leaves nothing behind
    problems = data_problems(spec, log=lambda line: err.print(line, markup=False, highlight=False))
    if problems:
        raise StudyError(spec.data.path, problems, "unusable data")
    from orchestrator.runner import run_study

    _end(run_study(spec, storage, err, address=address))


def _smoke_study(path: Path, overrides: list[str], spec):
    """The study shrunk by ``orchestrator.smoke``, saying what was shrunk."""
    from orchestrator.smoke import smoke_overrides

    extra, changes = smoke_overrides(spec)
    err.print("[bold]Smoke run[/bold], shrunk: " + escape("; ".join(changes)), highlight=False, soft_wrap=True)
    return load_study(path, [*overrides, *extra])


@app.command()
@_guarded
def resume(
    study_dir: str = typer.Argument(..., help="A study directory or URI (<storage>/<name>)."),
    address: Optional[str] = typer.Option(None, "--address", help=_ADDRESS_HELP),
) -> None:
    """Resume a crashed or interrupted study and finish it.

    Exit status: as for run (0 all finished, 1 all errored, 2 cannot resume, 3 some errored, 130/143 interrupted).
    """
    from orchestrator.runner import resume_study
    from orchestrator.storage import is_uri, split_study_uri, storage_problem

    if is_uri(study_dir) and not study_dir.startswith("file://"):
        problem = storage_problem(*split_study_uri(study_dir))
        if problem:
            raise StudyError(study_dir, [problem.replace("--storage ", "", 1)], "cannot resume")
    _end(resume_study(study_dir, err, address=address))


@app.command()
@_guarded
def status(study_dir: Path = typer.Argument(..., help="A study directory (<storage>/<name>/).")) -> None:
    """Show whether a study is finished, running or crashed; its trials by state; the best per cell."""
    from orchestrator.status import show_status

    out = Console()
    if not out.is_terminal:
        out.width = 200
    raise typer.Exit(show_status(study_dir, out))


@app.command()
@_guarded
def validate(
    study: Path = typer.Argument(..., help="Study YAML file."),
    overrides: Optional[List[str]] = typer.Option(None, "--set", help="Override a study key: dotted.key=value (repeatable)."),
    storage: Optional[str] = typer.Option(None, "--storage", help="Check this results root as `run` would use it."),
    address: Optional[str] = typer.Option(None, "--address", help="Check against this Ray cluster (it is joined, nothing is started)."),
) -> None:
    """Check a study file (and, with --address, the cluster it would run on) without starting anything."""
    from orchestrator.checks import start_problems

    spec = load_study(study, overrides or [])
    problems = start_problems(spec, storage or spec.storage or DEFAULT_STORAGE, address)
    if problems:
        raise StudyError(str(study), problems, "cannot run")
    err.print(f"[green]ok[/green]: study {escape(repr(spec.name))} ({spec.trainable}, {spec.num_samples} trials)", highlight=False)


@app.command()
@_guarded
def scan(
    path: Path = typer.Argument(..., help="Dataset folder (classification or segmentation layout)."),
    json_file: Optional[Path] = typer.Option(None, "--json", help="Also write the full report as JSON here."),
) -> None:
    """Decode every file once and report what the dataset really holds.

    Exit status: 0 clean, 1 warnings only, 2 errors (unusable files, or a layout no reader takes;
    also for a PATH that is not a folder or a --json file that cannot be written).
    """
    import json

    from trainables.data.scan import scan_path

    if not path.is_dir():
        raise StudyError(str(path), ["not a folder; give the dataset folder (<class>/*, {train,val,test}/<class>/*, images/+masks/)"], "cannot scan")
    if json_file is not None:
        _check_writable(json_file)
    with err.status(f"Scanning {escape(str(path))}..."):
        report = scan_path(path)
    typer.echo(report.summary())
    if json_file is not None:
        try:
            json_file.write_text(json.dumps(report.to_json(), indent=1))
        except OSError as error:
            raise StudyError(str(json_file), [f"--json: {error.strerror or error}"], "cannot write the report") from None
        err.print(f"JSON report written to {json_file}", markup=False, highlight=False)
    severities = {f.severity for f in report.findings}
    raise typer.Exit(EXIT_INVALID if "error" in severities else EXIT_SCAN_WARNINGS if "warning" in severities else EXIT_OK)


def _check_writable(target: Path) -> None:
    """Refuses, before the work, an output file that cannot be written."""
    if target.is_dir():
        raise StudyError(str(target), ["--json: is a folder; give a file name, e.g. scan.json"], "cannot write the report")
    parent = target.expanduser().absolute().parent
    if not parent.is_dir():
        raise StudyError(str(target), [f"--json: the folder {parent} does not exist"], "cannot write the report")
    import os

    if not os.access(parent, os.W_OK | os.X_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise StudyError(str(target), ["--json: permission denied; choose a file you can write"], "cannot write the report")


@app.command()
@_guarded
def export(
    study_dir: Path = typer.Argument(..., help="A study directory (<storage>/<name>/)."),
    trial: Optional[str] = typer.Option(None, "--trial", help="Export this trial (its id, as in trials.csv)."),
    best: bool = typer.Option(False, "--best", help="Export the best trial by the study objective (the default)."),
    best_per_cell: bool = typer.Option(False, "--best-per-cell", help="Export the best trial of every ablation cell."),
    fmt: str = typer.Option("onnx", "--format", help="onnx, torchscript or safetensors."),
    out: Optional[Path] = typer.Option(
        None, "--out", help="Model folder (with --best-per-cell: the folder of one sub-folder per cell). "
        "Default: <study>/exports/<trial id>-<format>.",
    ),
    verify_images: Optional[Path] = typer.Option(
        None, "--verify-images", help="Real images to check the export with (default: the trial's test split).",
    ),
    force: bool = typer.Option(False, "--force", help="Replace an earlier export in the same folder."),
) -> None:
    """Write a trial's best-epoch model as a folder usable outside corrotune, checked against PyTorch.

    Example: corrotune export corrotune-results/demo --best --format onnx --out winner/
    """
    from orchestrator.deploy import DeployError, export_study

    try:
        export_study(
            study_dir, trial=trial, best=best, best_per_cell=best_per_cell, fmt=fmt, out=out,
            verify_images=verify_images, force=force, log=lambda line: err.print(line, markup=False, highlight=False, soft_wrap=True),
        )
    except DeployError as error:
        err.print(f"[red]error:[/red] {escape(str(error))}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_INVALID)


@app.command()
@_guarded
def predict(
    model: Path = typer.Argument(..., help="An exported model folder (model.json), or a study directory."),
    folder: Path = typer.Argument(..., help="Images to score (searched recursively)."),
    out: Optional[Path] = typer.Option(
        None, "--out", help="Classification: the CSV to write (or a folder for predictions.csv), default ./predictions.csv. "
        "Segmentation: the folder for masks/, overlays/ and predictions.csv, default ./predictions/.",
    ),
    batch_size: int = typer.Option(32, "--batch-size", help="Images per forward pass."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or auto."),
    threshold: Optional[float] = typer.Option(
        None, "--threshold", help="Two-class models: predict the positive class (foreground pixels) from this probability on "
        "(default: model.json's).",
    ),
    trial: Optional[str] = typer.Option(None, "--trial", help="With a study directory: this trial instead of the best one."),
) -> None:
    """Score a folder of images with exactly the preprocessing the model was trained with.

    Example: corrotune predict winner/ /data/new_photos --out predictions.csv
    """
    from orchestrator.deploy import DeployError, card_summary, open_model, predict_folder

    try:
        loaded = open_model(model, trial, device)
        err.print(f"Model: {card_summary(loaded.card)} [{loaded.engine}]", highlight=False, soft_wrap=True, markup=False)
        summary = predict_folder(loaded, folder, out, batch_size=batch_size, threshold=threshold, console=err)
    except DeployError as error:
        err.print(f"[red]error:[/red] {escape(str(error))}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_INVALID)
    if summary.skipped:
        err.print(f"[yellow]{len(summary.skipped)} file(s) skipped[/yellow] (also listed in {escape(str(summary.skipped_file))}):", highlight=False, soft_wrap=True)
    for skipped in summary.skipped:
        err.print(f"  {skipped.path}: {skipped.kind}: {skipped.detail}", highlight=False, soft_wrap=True, markup=False)
    typer.echo(summary.line())
    if not summary.predicted:
        raise typer.Exit(1)


@app.command()
@_guarded
def report(
    study_dir: Path = typer.Argument(..., help="A study directory (<storage>/<name>/): finished, running or crashed."),
    metric: Optional[str] = typer.Option(None, "--metric", help="Metric to compare (default: the objective, on test when trials report it)."),
    baseline: Optional[str] = typer.Option(None, "--baseline", help="Cell the others are compared with (default: the first level of every factor)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Report folder (default: <study_dir>/report)."),
    no_wandb: bool = typer.Option(False, "--no-wandb", help="Do not log the report as a W&B run."),
) -> None:
    """Compare the cells of a study with statistics and plots: report.html, report.md, report.json."""
    from orchestrator.report import ReportError, write_report

    try:
        write_report(study_dir, metric=metric, baseline=baseline, out=out, wandb=not no_wandb,
                     say=lambda line: err.print(line, markup=False, highlight=False, soft_wrap=True))
    except ReportError as error:
        err.print(f"[red]error:[/red] {escape(str(error))}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_INVALID)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
