"""The ``corrotune`` command line.

Examples:
    corrotune run studies/demo.yaml
    corrotune run studies/demo.yaml --storage /mnt/results --set search.num_samples=16
    corrotune resume corrotune-results/demo
    corrotune validate studies/demo.yaml
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from orchestrator.spec import StudyError, load_study

__all__ = ["app", "main"]

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Hyperparameter and ablation studies on Ray Tune + Optuna + W&B.")
err = Console(stderr=True)
if not err.is_terminal:
    err.width = 200  # logs and CI: keep tables and messages unwrapped

EXIT_INVALID = 2
"""Exit status for a study that cannot run (nothing was started)."""


def _fail(error: StudyError) -> None:
    err.print(f"[red]error:[/red] {error}", highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_INVALID)


@app.command()
def run(
    study: Path = typer.Argument(..., help="Study YAML file."),
    storage: Path = typer.Option(Path("corrotune-results"), "--storage", help="Results root; the study goes to <storage>/<name>/."),
    overrides: Optional[List[str]] = typer.Option(None, "--set", help="Override a study key: dotted.key=value (repeatable)."),
) -> None:
    """Validate a study and run it to completion, ending with a leaderboard."""
    try:
        spec = load_study(study, overrides or [])
        from orchestrator.runner import run_study

        outcome = run_study(spec, storage, err)
    except StudyError as error:
        _fail(error)
    if outcome.num_errors:
        err.print(f"[yellow]{outcome.num_errors} trial(s) errored; see their error.txt files.[/yellow]")


@app.command()
def resume(study_dir: Path = typer.Argument(..., help="A study directory (<storage>/<name>/).")) -> None:
    """Resume a crashed or interrupted study and finish it."""
    try:
        from orchestrator.runner import resume_study

        resume_study(study_dir, err)
    except StudyError as error:
        _fail(error)


@app.command()
def validate(
    study: Path = typer.Argument(..., help="Study YAML file."),
    overrides: Optional[List[str]] = typer.Option(None, "--set", help="Override a study key: dotted.key=value (repeatable)."),
) -> None:
    """Check a study file without starting anything."""
    try:
        spec = load_study(study, overrides or [])
    except StudyError as error:
        _fail(error)
    err.print(f"[green]ok[/green]: study {spec.name!r} ({spec.trainable}, {spec.num_samples} trials)")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
