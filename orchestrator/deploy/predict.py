"""``corrotune predict``: runs a model on a folder of images with exactly its training preprocessing.

The model is an exported model folder (its ``model.json`` says how: ONNX through ONNX Runtime,
TorchScript, or safetensors weights in a rebuilt network) or a study directory (its best trial,
or ``trial``, with PyTorch). Images are found recursively; each is decoded, resized and
normalised by the data layer's own code as the model card describes (:class:`Preprocessing`),
and every file that cannot be used is skipped with the data scan's reason and listed, never
dropped silently.

Classification writes a CSV: ``path`` (relative to the folder), ``predicted_class``, and
``prob_<class>`` per class; the skipped files go to ``<name>.skipped.csv`` beside it.
Segmentation writes a folder: ``masks/<stem>.png`` (0/255, or class indices for K classes) and
``overlays/<stem>.png`` in each image's own size, ``predictions.csv`` with the foreground
fraction of each image, and ``skipped.csv`` (:mod:`orchestrator.deploy._masks`).

Example:
    >>> summary = predict_folder("exports/44cd2532-onnx", "/data/new", "predictions.csv")  # doctest: +SKIP
    >>> print(summary.line())  # doctest: +SKIP
    12 images predicted, 3 skipped (junk 1, truncated 1, unreadable 1) -> predictions.csv [onnxruntime, 410 img/s]
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from orchestrator.deploy._card import CARD_FILE, build_card, read_card
from orchestrator.deploy._images import Skipped, decode_image, list_images
from orchestrator.deploy._masks import SegmentationOutputs
from orchestrator.deploy._outputs import ClassificationCsv, output_path, write_skipped
from orchestrator.deploy._runtimes import LoadedModel, load_trial_network, open_model_dir, torch_runner
from orchestrator.deploy.trials import STUDY_FILE, DeployError, select_trials
from trainables.data.checks import strict_truncation
from trainables.inference import Preprocessing

__all__ = ["PROGRESS_MIN_IMAGES", "PredictSummary", "card_summary", "open_model", "predict_folder"]

PROGRESS_MIN_IMAGES = 300
"""Folders with at least this many candidate images show a progress bar."""


@dataclass
class PredictSummary:
    """What one predict did.

    Attributes:
        out: The predictions file.
        skipped_file: The list of skipped files.
        predicted: Images predicted.
        skipped: Files left out, with their reasons.
        seconds: Wall time of decoding and running the model.
        engine: ``onnxruntime``, ``torchscript`` or ``pytorch``.
    """

    out: Path
    skipped_file: Path
    predicted: int
    skipped: list[Skipped] = field(default_factory=list)
    seconds: float = 0.0
    engine: str = ""

    def line(self) -> str:
        """The one-line summary printed at the end."""
        kinds = Counter(s.kind for s in self.skipped)
        why = f" ({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))})" if kinds else ""
        rate = self.predicted / self.seconds if self.seconds > 0 else 0.0
        return (f"{self.predicted} images predicted, {len(self.skipped)} skipped{why} -> {self.out} "
                f"[{self.engine}, {rate:.1f} img/s]")


def open_model(source: str | Path, trial: str | None = None, device: str = "cpu") -> LoadedModel:
    """A model folder (``model.json``) or a study directory (its best trial, or ``trial``) ready to predict.

    Raises:
        DeployError: ``source`` is neither, or its model cannot be loaded.
    """
    source = Path(source).expanduser().resolve()
    if (source / CARD_FILE).is_file():
        if trial is not None:
            raise DeployError(f"--trial applies to a study directory; {source} is an exported model folder")
        return open_model_dir(source, read_card(source), device)
    if (source / STUDY_FILE).is_file():
        [chosen] = select_trials(source, trial=trial, best=trial is None)
        adapter, network = load_trial_network(chosen)
        card = build_card(chosen, adapter, network)
        return LoadedModel(card, adapter, torch_runner(network, device), "pytorch")
    raise DeployError(
        f"{source} is neither an exported model folder ({CARD_FILE}) nor a study directory ({STUDY_FILE})"
    )


def _threshold(model: LoadedModel, threshold: float | None) -> float | None:
    """``--threshold``, else the card's decision threshold (an edited card changes predict's rule)."""
    if threshold is not None:
        return threshold
    return (model.card.get("decision") or {}).get("threshold")


def predict_folder(
    source: str | Path | LoadedModel,
    folder: str | Path,
    out: str | Path | None = None,
    *,
    trial: str | None = None,
    batch_size: int = 32,
    device: str = "cpu",
    threshold: float | None = None,
    console: Console | None = None,
) -> PredictSummary:
    """Predicts every usable image under ``folder`` and writes the task's outputs.

    Args:
        source: A model folder, a study directory, or a model from :func:`open_model`.
        folder: Images to score (searched recursively).
        out: Classification: the CSV (or a folder to put ``predictions.csv`` in), default
            ``./predictions.csv``; segmentation: the output folder, default ``./predictions/``.
        trial: With a study directory: this trial instead of the best one.
        batch_size: Images per forward pass.
        device: ``cpu``, ``cuda`` or ``auto``.
        threshold: Two-class models: predict the positive class from this probability on.
        console: Where skipped files and the progress bar go (stderr by default).

    Returns:
        The :class:`PredictSummary`; its ``line()`` is the summary to print.

    Raises:
        DeployError: no such folder, a bad batch size or threshold, or a model that cannot load.
    """
    console = console or Console(stderr=True)
    folder = Path(folder).expanduser().resolve()
    if not folder.is_dir():
        raise DeployError(f"{folder}: not a folder of images")
    if batch_size < 1:
        raise DeployError(f"--batch-size must be at least 1, got {batch_size}")
    model = source if isinstance(source, LoadedModel) else open_model(source, trial, device)
    threshold = _threshold(model, threshold)
    try:
        model.adapter.check_threshold(threshold)
    except ValueError as err:
        raise DeployError(str(err)) from None
    preprocessing = Preprocessing.from_json(model.card["preprocessing"])
    target = output_path(Path(out) if out is not None else None, model.adapter.task)
    segmentation = model.adapter.task == "segmentation"
    if segmentation:
        writer: Any = SegmentationOutputs(target, model.adapter.classes, preprocessing.resize)
        skipped_path = target / "skipped.csv"
    else:
        writer = ClassificationCsv(target, model.adapter.classes)
        skipped_path = target.with_name(f"{target.stem}.skipped.csv")
    candidates, skipped = list_images(folder)
    started = time.perf_counter()
    with writer, strict_truncation(), _progress(console, len(candidates)) as progress:
        task = progress.add_task("predicting", total=len(candidates))
        batch: list[tuple[str, Any]] = []

        def flush() -> None:
            if batch:
                prepared = [value[0] if segmentation else value for _, value in batch]
                originals = [value[1] for _, value in batch] if segmentation else None
                outputs = model.run(preprocessing.to_input(np.stack(prepared)))
                writer.add([rel for rel, _ in batch], model.adapter.decode(outputs, threshold), originals)
                progress.advance(task, len(batch))
                batch.clear()

        for rel, path in candidates:
            value, error = decode_image(path, preprocessing, keep_original=segmentation)
            if error is not None:
                skipped.append(Skipped(rel, *error))
                progress.advance(task)
            else:
                batch.append((rel, value))
            if len(batch) == batch_size:
                flush()
        flush()
    seconds = time.perf_counter() - started
    skipped.sort(key=lambda s: s.path)
    skipped_file = write_skipped(skipped_path, skipped)
    return PredictSummary(writer.path, skipped_file, writer.rows, skipped, seconds, model.engine)


def _progress(console: Console, total: int) -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=console, transient=True, disable=total < PROGRESS_MIN_IMAGES,
    )


def card_summary(card: dict[str, Any]) -> str:
    """One line naming the model: trainable, architecture, classes, its trial."""
    study = card.get("study") or {}
    architecture = card.get("architecture") or {}
    name = architecture.get("backbone") or "/".join(str(architecture[k]) for k in ("arch", "encoder") if k in architecture)
    return (f"{card.get('trainable')} {name} ({', '.join(card.get('classes', []))}) from study "
            f"{study.get('name')} trial {study.get('trial_id')}")
