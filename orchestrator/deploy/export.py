"""``corrotune export``: a trial's best weights as a model folder that runs outside corrotune.

The network is rebuilt from the trial's stored resolved config, the best epoch's weights are
loaded (``best_model`` of its checkpoint, not the last epoch's), and the folder gets the graph or
weights plus ``model.json`` (:mod:`orchestrator.deploy._card`). Every export is checked before it
is kept: the written file is loaded back in its runtime (ONNX Runtime, TorchScript, or a network
rebuilt from the card) and its outputs on real images of the trial's test split are compared
with PyTorch eager; above the tolerance nothing is written.

Formats:
    * ``onnx``: ``torch.onnx.export`` (the dynamo exporter) with a dynamic batch axis, and dynamic
      height and width when the network runs at another size (checked, else fixed);
    * ``torchscript``: ``torch.jit.trace`` (scripting is deprecated);
    * ``safetensors``: the weights alone; ``predict`` rebuilds the network with PyTorch.

Example:
    >>> [result] = export_study("corrotune-results/demo", best=True, fmt="onnx")  # doctest: +SKIP
    >>> result.max_abs_diff  # doctest: +SKIP
    2.9e-07
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from orchestrator.deploy._card import CARD_FILE, build_card
from orchestrator.deploy._images import decode_image, list_images
from orchestrator.deploy._runtimes import (
    FORMATS,
    MODEL_FILES,
    load_torchscript,
    load_trial_network,
    onnx_runner,
    save_torchscript,
    torch_runner,
    trace,
)
from orchestrator.deploy.trials import DeployError, StudyTrial, select_trials
from trainables.data.checks import strict_truncation
from trainables.inference import InferenceAdapter, Preprocessing

__all__ = ["TOLERANCE", "ExportResult", "export_study", "export_trial", "write_onnx"]

TOLERANCE = 1e-4
"""Largest absolute difference allowed between the exported model's and PyTorch's fp32 outputs."""

VERIFY_IMAGES = 8
OTHER_SIZE_STEP = 32  # the second size tried is image_size + 32 (keeps strides of 32 whole)


@dataclass(frozen=True)
class ExportResult:
    """What one export wrote.

    Attributes:
        trial_id: The trial exported.
        out_dir: The model folder.
        max_abs_diff: Largest |exported - PyTorch| over the check images at the trained size.
        dynamic_hw: The model accepts other heights and widths (checked at a second size).
        images: How many real images the check used.
    """

    trial_id: str
    out_dir: Path
    max_abs_diff: float
    dynamic_hw: bool
    images: int


def _verification_files(adapter: InferenceAdapter, folder: Path | None) -> list[Path]:
    """Real images to check against: ``folder``'s, else the trial's test split (val without one)."""
    if folder is not None:
        if not folder.is_dir():
            raise DeployError(f"--verify-images {folder}: not a folder")
        return [path for _, path in list_images(folder)[0]]
    from trainables.data.config import DataConfig
    from trainables.data.prepare import load_index

    try:
        index = load_index(DataConfig.model_validate(adapter.config["data"]), adapter.task)
    except (OSError, ValueError, KeyError) as err:
        raise DeployError(
            f"the trial's dataset cannot be read to check the export ({err}); pass --verify-images FOLDER "
            "with a few real images"
        ) from None
    samples = index.split("test") or index.split("val") or list(index.samples)
    paths = sorted(s.path for s in samples)
    step = max(1, len(paths) // VERIFY_IMAGES)  # spread over the (class-sorted) split
    return [Path(p) for p in paths[::step]]


def _decode_batch(files: list[Path], preprocessing: Preprocessing, limit: int) -> tuple[np.ndarray, list[Path]]:
    images, used = [], []
    with strict_truncation():
        for path in files:
            image, _ = decode_image(path, preprocessing)
            if image is not None:
                images.append(image)
                used.append(path)
            if len(images) == limit:
                break
    if not images:
        raise DeployError("no readable image to check the export with; pass --verify-images FOLDER")
    return np.stack(images), used


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        raise DeployError(f"the exported model's output shape {a.shape} differs from PyTorch's {b.shape}")
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def write_onnx(network: nn.Module, example: torch.Tensor, path: Path, dynamic_hw: bool) -> None:
    """``torch.onnx.export`` (dynamo) of ``network`` to ``path``: a dynamic batch axis, and height and
    width dynamic where the network allows (``dynamic_hw``); weights in the file unless over 1.5 GiB."""
    dim = torch.export.Dim
    axes: dict[int, Any] = {0: dim("batch")}
    if dynamic_hw:  # AUTO: torch.export keeps a side fixed when the network needs it fixed
        axes.update({2: dim.AUTO, 3: dim.AUTO})
    large = sum(p.numel() * p.element_size() for p in network.parameters()) > 1.5 * 2**30  # protobuf's 2 GiB cap
    with torch.no_grad():
        torch.onnx.export(
            network, (example,), str(path), input_names=["images"], output_names=["logits"],
            dynamic_shapes=(axes,), dynamo=True, external_data=large, verbose=False,
        )


def _onnx_facts(path: Path) -> dict[str, Any]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    return {"opset": max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), "input_shape": dims}


class _Check:
    """Outputs of PyTorch eager on the check images, at the trained size and at a second size."""

    def __init__(self, network: nn.Module, adapter: InferenceAdapter, folder: Path | None) -> None:
        files = _verification_files(adapter, folder)
        prep = adapter.preprocessing()
        images, self.files = _decode_batch(files, prep, VERIFY_IMAGES)
        self.x = prep.to_input(images)  # (N, 3, S, S)
        other = Preprocessing(prep.image_size + OTHER_SIZE_STEP, prep.resize, prep.normalization)
        self.x_other = other.to_input(_decode_batch(self.files, other, VERIFY_IMAGES)[0])
        eager = torch_runner(network)
        self.reference = eager(self.x)
        try:
            self.reference_other: np.ndarray | None = eager(self.x_other)
            self.fixed_size_reason = None
        except Exception as err:  # noqa: BLE001 - any refusal means: this network has one input size
            self.reference_other = None
            self.fixed_size_reason = f"the network refuses {other.image_size} px input in PyTorch ({type(err).__name__}: {err})"

    def example(self) -> torch.Tensor:
        """Two images (the batch axis must not be 1, which torch.export would fix)."""
        return self.x[:2] if len(self.x) >= 2 else self.x.repeat(2, 1, 1, 1)

    def compare(self, run: Callable[[torch.Tensor], np.ndarray], tolerance: float, what: str) -> float:
        diff = _max_diff(run(self.x), self.reference)
        if not diff <= tolerance:
            raise DeployError(
                f"{what} disagrees with PyTorch on {len(self.x)} real images: max |difference| {diff:.3g} > "
                f"tolerance {tolerance:g}; nothing was written"
            )
        return diff

    def other_size_works(self, run: Callable[[torch.Tensor], np.ndarray], tolerance: float) -> str | None:
        """None when ``run`` matches PyTorch at the second size, else why not."""
        if self.reference_other is None:
            return self.fixed_size_reason
        try:
            diff = _max_diff(run(self.x_other), self.reference_other)
        except Exception as err:  # noqa: BLE001 - the exported graph fixed the size
            return f"the exported graph refuses another size ({type(err).__name__}: {str(err).splitlines()[0]})"
        return None if diff <= tolerance else f"at another size it differs from PyTorch by {diff:.3g}"


def _write_format(fmt: str, network: nn.Module, adapter: InferenceAdapter, check: _Check, staging: Path,
                  tolerance: float, log: Callable[[str], None]) -> tuple[float, bool, dict[str, Any]]:
    """Writes the model file into ``staging`` and checks it; returns (max diff, dynamic H/W, card facts)."""
    path = staging / MODEL_FILES[fmt]
    architecture = adapter.describe(network)["architecture"]
    name = architecture.get("backbone") or architecture.get("network") or adapter.trainable
    facts: dict[str, Any] = {}
    if fmt == "onnx":
        dynamic = check.reference_other is not None
        try:
            write_onnx(network, check.example(), path, dynamic)
        except Exception as err:  # noqa: BLE001 - any exporter failure: say which architecture and why
            raise DeployError(_cannot(name, "ONNX", err)) from None
        run = onnx_runner(path)
        diff = check.compare(run, tolerance, "the ONNX model")
        why_fixed = check.other_size_works(run, tolerance) if dynamic else check.fixed_size_reason
        if dynamic and why_fixed:  # export again with height and width fixed
            log(f"  height/width fixed in the ONNX graph: {why_fixed}")
            write_onnx(network, check.example(), path, False)
            run = onnx_runner(path)
            diff = check.compare(run, tolerance, "the ONNX model")
        facts = _onnx_facts(path)
    elif fmt == "torchscript":
        try:
            traced = trace(network, check.example())
            save_torchscript(traced, path)
        except Exception as err:  # noqa: BLE001
            raise DeployError(_cannot(name, "TorchScript (tracing)", err)) from None
        run = torch_runner(load_torchscript(path))
        diff = check.compare(run, tolerance, "the TorchScript model")
        why_fixed = check.other_size_works(run, tolerance)
    else:
        from safetensors.torch import load_model, save_model

        save_model(network, str(path))
        rebuilt = adapter.build_network()
        load_model(rebuilt, str(path))
        run = torch_runner(rebuilt)
        diff = check.compare(run, tolerance, "the network rebuilt from the safetensors file")
        why_fixed = check.fixed_size_reason
    files = {"model": path.name, **{"data": p.name for p in staging.glob(path.name + ".data")}}
    return diff, why_fixed is None, {"files": files, "fixed_size_reason": why_fixed, **facts}


def _cannot(architecture: str, what: str, err: BaseException) -> str:
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return (f"{architecture} cannot be exported to {what}: {type(err).__name__}: {first[:500]}. Try another "
            "--format (safetensors always works: predict then rebuilds the network with PyTorch)")


def _commit(staging: Path, out_dir: Path, force: bool) -> None:
    """Moves the finished folder into place; an earlier export there is replaced only with ``force``."""
    if out_dir.exists():
        if not force:
            raise DeployError(f"{out_dir} already exists; pass --force to replace it, or choose --out")
        if not (out_dir / CARD_FILE).is_file():
            raise DeployError(f"{out_dir} exists and is not a model folder ({CARD_FILE} missing); choose another --out")
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        os.replace(out_dir, old)
        os.replace(staging, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, out_dir)


def export_trial(
    trial: StudyTrial,
    fmt: str,
    out_dir: str | Path,
    *,
    verify_images: str | Path | None = None,
    tolerance: float = TOLERANCE,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> ExportResult:
    """Exports one trial's best weights to ``out_dir`` (written whole, or not at all).

    Args:
        trial: From :func:`~orchestrator.deploy.trials.select_trials`.
        fmt: ``onnx``, ``torchscript`` or ``safetensors``.
        out_dir: The model folder to create.
        verify_images: A folder of real images to check with (default: the trial's test split).
        tolerance: Largest absolute output difference from PyTorch allowed.
        force: Replace an earlier export at ``out_dir``.
        log: Receives progress lines.

    Raises:
        DeployError: unknown format, an architecture the format cannot hold (with why), a check
            above the tolerance, or an existing ``out_dir`` without ``force``.
    """
    if fmt not in FORMATS:
        raise DeployError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    out_dir = Path(out_dir).expanduser().resolve()
    if out_dir.exists() and not force:
        raise DeployError(f"{out_dir} already exists; pass --force to replace it, or choose --out")
    adapter, network = load_trial_network(trial)
    limits = adapter.export_limits(network)
    if fmt in limits:
        raise DeployError(f"trial {trial.trial_id} cannot be exported to {fmt}: {limits[fmt]}")
    log(f"Exporting trial {trial.trial_id} (cell {trial.cell}, best epoch {trial.best_state().get('best_epoch')}) to {fmt}...")
    check = _Check(network, adapter, Path(verify_images) if verify_images is not None else None)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.with_name(f".{out_dir.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        diff, dynamic_hw, facts = _write_format(fmt, network, adapter, check, staging, tolerance, log)
        card = build_card(trial, adapter, network)
        prep = adapter.preprocessing()
        size: list[Any] = ["height", "width"] if dynamic_hw else [prep.image_size, prep.image_size]
        card.update({
            "format": fmt,
            "files": facts.pop("files"),
            "input": {"name": "images", "shape": ["batch", 3, *size], "dtype": "float32", "trained_size": prep.image_size,
                      "dynamic_batch": True, "dynamic_height_width": dynamic_hw,
                      "fixed_size_reason": facts.pop("fixed_size_reason")},
            "verification": {"max_abs_diff": diff, "tolerance": tolerance, "images": len(check.files),
                             "against": "PyTorch eager, fp32, CPU", "files": [str(p) for p in check.files]},
            **({"onnx": facts} if facts else {}),
        })
        (staging / CARD_FILE).write_text(json.dumps(card, indent=1, default=str))
        _commit(staging, out_dir, force)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log(f"  checked on {len(check.files)} real images: max |{fmt} - PyTorch| = {diff:.3g} (tolerance {tolerance:g}); "
        f"dynamic batch{', height and width' if dynamic_hw else ''}")
    log(f"  wrote {out_dir}")
    return ExportResult(trial.trial_id, out_dir, diff, dynamic_hw, len(check.files))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("_") or "cell"


def export_study(
    study_dir: str | Path,
    *,
    trial: str | None = None,
    best: bool = False,
    best_per_cell: bool = False,
    fmt: str = "onnx",
    out: str | Path | None = None,
    **options: Any,
) -> list[ExportResult]:
    """Exports the chosen trials of a study (the best one by default).

    The folder is ``out`` for one trial (default ``<study>/exports/<trial id>-<format>``); with
    ``best_per_cell``, ``<out>/<cell>`` (default ``<study>/exports/<cell>-<format>``).
    ``options`` go to :func:`export_trial`.
    """
    trials = select_trials(study_dir, trial=trial, best=best, best_per_cell=best_per_cell)
    results = []
    for chosen in trials:
        exports = chosen.study_dir / "exports"
        if best_per_cell:
            target = Path(out) / _slug(chosen.cell) if out else exports / f"{_slug(chosen.cell)}-{fmt}"
        else:
            target = Path(out) if out else exports / f"{chosen.trial_id}-{fmt}"
        results.append(export_trial(chosen, fmt, target, **options))
    return results
