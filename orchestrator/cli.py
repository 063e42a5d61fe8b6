"""The ``corrotune`` command line.

Examples:
    corrotune run studies/demo.yaml
    corrotune run studies/demo.yaml --storage /mnt/results --set search.num_samples=16
    corrotune run studies/examples/ablation_tiny.yaml --address auto --storage s3://bucket/studies
    corrotune resume corrotune-results/demo
    corrotune status corrotune-results/demo
    corrotune validate studies/demo.yaml
    corrotune scan /data/corrosion --json scan.json
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from orchestrator.exit_status import EXIT_INVALID, EXIT_OK
from orchestrator.spec import StudyError, load_study
from orchestrator.storage import DEFAULT_STORAGE

__all__ = ["app", "main"]

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Hyperparameter and ablation studies on Ray Tune + Optuna + W&B.")
err = Console(stderr=True)
if not err.is_terminal:
    err.width = 200  # logs and CI: keep tables and messages unwrapped


def _end(outcome) -> None:
    """Ends ``run``/``resume`` with the outcome's last line and exit status (orchestrator.exit_status)."""
    style = "green" if outcome.exit_status == EXIT_OK else "red"
    err.print(outcome.last_line(), style=style, markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(outcome.exit_status)


def _fail(error: StudyError) -> None:
    err.print(f"[red]error:[/red] {error}", highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_INVALID)


_ADDRESS_HELP = "Join this Ray cluster (auto, or HOST:PORT of its head) instead of starting Ray here."


@app.command()
def run(
    study: Path = typer.Argument(..., help="Study YAML file."),
    storage: Optional[str] = typer.Option(
        None, "--storage",
        help="Results root: a path, an NFS mount or a URI (s3://, gs://, file://); the study goes to <storage>/<name>/. "
        "Default: the study's storage key, else corrotune-results.",
    ),
    overrides: Optional[List[str]] = typer.Option(None, "--set", help="Override a study key: dotted.key=value (repeatable)."),
    address: Optional[str] = typer.Option(None, "--address", help=_ADDRESS_HELP),
) -> None:
    """Validate a study and run it to completion, ending with a leaderboard.

    Exit status: 0 every trial finished; 1 every trial errored; 2 the study cannot run (nothing
    was started); 3 some trials errored (the others finished).
    """
    try:
        spec = load_study(study, overrides or [])
        from orchestrator.runner import run_study

        outcome = run_study(spec, storage, err, address=address)
    except StudyError as error:
        _fail(error)
    _end(outcome)


@app.command()
def resume(
    study_dir: str = typer.Argument(..., help="A study directory or URI (<storage>/<name>)."),
    address: Optional[str] = typer.Option(None, "--address", help=_ADDRESS_HELP),
) -> None:
    """Resume a crashed or interrupted study and finish it.

    Exit status: as for run (0 all finished, 1 all errored, 2 cannot resume, 3 some errored).
    """
    try:
        from orchestrator.runner import resume_study

        outcome = resume_study(study_dir, err, address=address)
    except StudyError as error:
        _fail(error)
    _end(outcome)


@app.command()
def status(study_dir: Path = typer.Argument(..., help="A study directory (<storage>/<name>/).")) -> None:
    """Show whether a study is finished, running or crashed; its trials by state; the best per cell."""
    from orchestrator.status import show_status

    out = Console()
    if not out.is_terminal:
        out.width = 200
    raise typer.Exit(show_status(study_dir, out))


@app.command()
def validate(
    study: Path = typer.Argument(..., help="Study YAML file."),
    overrides: Optional[List[str]] = typer.Option(None, "--set", help="Override a study key: dotted.key=value (repeatable)."),
    storage: Optional[str] = typer.Option(None, "--storage", help="Check this results root as `run` would use it."),
    address: Optional[str] = typer.Option(None, "--address", help="Check against this Ray cluster (it is joined, nothing is started)."),
) -> None:
    """Check a study file (and, with --address, the cluster it would run on) without starting anything."""
    try:
        spec = load_study(study, overrides or [])
        from orchestrator.cluster import target_problems

        problems = target_problems(spec, storage or spec.storage or DEFAULT_STORAGE, address)
        if problems:
            raise StudyError(str(study), problems)
    except StudyError as error:
        _fail(error)
    err.print(f"[green]ok[/green]: study {spec.name!r} ({spec.trainable}, {spec.num_samples} trials)")


@app.command()
def scan(
    path: Path = typer.Argument(..., help="Dataset folder (classification or segmentation layout)."),
    json_file: Optional[Path] = typer.Option(None, "--json", help="Also write the full report as JSON here."),
) -> None:
    """Decode every file once and report what the dataset really holds (exit 0 unless unreadable)."""
    import json

    from trainables.data.scan import scan_path

    if not path.is_dir():
        err.print(f"[red]error:[/red] {path} is not a folder", highlight=False)
        raise typer.Exit(EXIT_INVALID)
    with err.status(f"Scanning {path}..."):
        report = scan_path(path)
    typer.echo(report.summary())
    if json_file is not None:
        json_file.write_text(json.dumps(report.to_json(), indent=1))
        err.print(f"JSON report written to {json_file}")


@app.command()
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
            verify_images=verify_images, force=force, log=lambda line: err.print(line, highlight=False, soft_wrap=True),
        )
    except DeployError as error:
        err.print(f"[red]error:[/red] {error}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_INVALID)


@app.command()
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
    from orchestrator.deploy import DeployError, predict_folder

    try:
        summary = predict_folder(model, folder, out, trial=trial, batch_size=batch_size, device=device,
                                 threshold=threshold, console=err)
    except DeployError as error:
        err.print(f"[red]error:[/red] {error}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_INVALID)
    if summary.skipped:
        err.print(f"[yellow]{len(summary.skipped)} file(s) skipped[/yellow] (also listed in {summary.skipped_file}):", highlight=False, soft_wrap=True)
    for skipped in summary.skipped:
        err.print(f"  {skipped.path}: {skipped.kind}: {skipped.detail}", highlight=False, soft_wrap=True, markup=False)
    typer.echo(summary.line())
    if not summary.predicted:
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
