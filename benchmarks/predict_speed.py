"""``corrotune predict`` speed: ONNX Runtime vs PyTorch eager on the same model and folder (CPU).

Prints JSON: images/s of a whole predict (decode, resize, normalise, run, write the CSV) with the
model exported to ONNX and run by ONNX Runtime, and with the same network (same weights) in
PyTorch eager, the ratio ONNX Runtime / PyTorch, and the share of each run spent in the model.
Both runs read the same folder in the same process with the same thread count, after one warm-up
batch each; the weights are random (speed does not depend on them).

    python benchmarks/predict_speed.py [--folder DIR] [--backbone resnet18] [--image-size 128] [--batch-size 32]

The default folder is ../shared/datasets/fastener_corrosion (real photos), else the generated
corrosion set.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

REPO = Path(__file__).resolve().parents[1]
SHARED_PHOTOS = REPO.parent / "shared" / "datasets" / "fastener_corrosion"


def _folder(path: str | None) -> Path:
    if path:
        return Path(path)
    if SHARED_PHOTOS.is_dir():
        return SHARED_PHOTOS
    from trainables.data.synthetic import ensure_corrosion_dataset

    return ensure_corrosion_dataset(num_images=300, image_size=256) / "classification"


def _timed(model):
    """Wraps a LoadedModel's runner to add up the seconds spent in the model."""
    spent = [0.0]
    run = model.run

    def timed_run(x):
        started = time.perf_counter()
        out = run(x)
        spent[0] += time.perf_counter() - started
        return out

    model.run = timed_run
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    from orchestrator.deploy._runtimes import LoadedModel, onnx_runner, torch_runner
    from orchestrator.deploy.export import write_onnx
    from orchestrator.deploy.predict import predict_folder
    from trainables.classifier_config import ClassifierConfig
    from trainables.inference import get_adapter

    folder = _folder(args.folder)
    config = ClassifierConfig(data={"path": str(folder)}, backbone=args.backbone, image_size=args.image_size).model_dump(mode="json")
    torch.manual_seed(0)
    adapter = get_adapter("classifier", config, ("corroded", "non_corroded"))
    network = adapter.build_network().eval()
    card = {**adapter.describe(network), "preprocessing": adapter.preprocessing().to_json()}
    quiet = Console(file=io.StringIO())
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        example = adapter.preprocessing().to_input(np.zeros((2, args.image_size, args.image_size, 3), np.uint8))
        write_onnx(network, example, onnx_path, dynamic_hw=False)
        engines = {
            "onnxruntime": LoadedModel(card, adapter, onnx_runner(onnx_path), "onnxruntime"),
            "pytorch_eager": LoadedModel(card, adapter, torch_runner(network), "pytorch"),
        }
        warm = adapter.preprocessing().to_input(np.zeros((args.batch_size, args.image_size, args.image_size, 3), np.uint8))
        for name, model in engines.items():
            model.run(warm)  # one warm-up batch: first-call allocations, ORT's graph set-up
            spent = _timed(model)
            summary = predict_folder(model, folder, Path(tmp) / f"{name}.csv", batch_size=args.batch_size, console=quiet)
            results[name] = {
                "images": summary.predicted, "skipped": len(summary.skipped), "seconds": round(summary.seconds, 3),
                "images_per_s": round(summary.predicted / summary.seconds, 2),
                "model_share": round(spent[0] / summary.seconds, 3),
            }
    print(json.dumps({
        "folder": str(folder), "backbone": args.backbone, "image_size": args.image_size, "batch_size": args.batch_size,
        "threads": {"torch": torch.get_num_threads(), "cpus": os.cpu_count()},
        **results,
        "ratio_onnxruntime_vs_pytorch": round(results["onnxruntime"]["images_per_s"] / results["pytorch_eager"]["images_per_s"], 3),
    }, indent=1))


if __name__ == "__main__":
    main()
