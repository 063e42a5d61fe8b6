"""Wall time per epoch of a corrotune segmenter trial vs a hand-written smp training loop.

Prints JSON. The baseline is a minimal script written by hand: ``smp.create_model`` (the same
arch and encoder), the same decoded uint8 images and masks, batch size, ``smp.losses.DiceLoss``,
Adam, horizontal flips (image and mask together) and ImageNet normalisation, and each epoch a
validation pass scoring per-image IoU with ``smp.metrics``; no corrotune code runs in it
(corrotune only generates and decodes the data beforehand, untimed). corrotune runs the
``segmenter`` trainable as one Ray Tune trial with all CPUs: train pass, validation with its
metrics, best-weights copy, a checkpoint every epoch (exact resume) and the report.

Measure: ``ratio_bare_over_corrotune`` = median bare epoch time / median corrotune epoch time
(epochs 2..N), goal ≥ 0.97; the two run interleaved (A B, B A, ...) ``--repeats`` times in one
process with the load average noted. ``corrotune_split_s`` says where a corrotune epoch goes;
``data_share_of_train_pass`` = batch production (indexing, augmentation, normalisation) over the
train pass (goal ≤ 5 %); ``data_load_s``: reading the splits from the warm decode cache.

    python benchmarks/segmenter_throughput.py [--repeats 3] [--epochs 4] [--image-size 128] [--num-images 200]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # run as a script: the helper beside it
from _epoch_split import EpochClock, measure_with_ray, timed_trial  # noqa: E402

CPUS = os.cpu_count() or 1  # --threads overrides
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _config(args) -> dict:
    return {
        "data": {"path": "synthetic:corrosion", "synthetic": {"num_images": args.num_images, "image_size": args.image_size}},
        "arch": "unet", "encoder": args.encoder, "image_size": args.image_size, "epochs": args.epochs,
        "batch_size": args.batch_size, "loss": "dice", "augmentation": "hflip", "profile": False, "artifacts": False,
        "seed": 0,
    }


def _splits(args):
    """The decoded uint8 splits corrotune trains on, and the seconds a warm-cache read takes."""
    from trainables.data.prepare import load_index
    from trainables.data.segmentation import load_segmentation_tensors
    from trainables.segmenter_config import SegmenterConfig

    cfg = SegmenterConfig.model_validate(_config(args))
    started = time.perf_counter()
    data = load_segmentation_tensors(load_index(cfg.data, "segmentation"), cfg.image_size, cfg.resize)
    return data, time.perf_counter() - started


def bare_loop(args, data) -> list[tuple[float, float]]:
    """A minimal smp training script; returns each epoch's (wall, CPU) seconds (train + val + IoU)."""
    import segmentation_models_pytorch as smp

    torch.manual_seed(0)
    model = smp.create_model("unet", encoder_name=args.encoder, encoder_weights=None, classes=1)
    loss_fn = smp.losses.DiceLoss("binary", from_logits=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    train_x, train_y = data.images["train"], data.masks["train"]
    val_x, val_y = data.images["val"], data.masks["val"]
    clock = EpochClock()
    for epoch in range(args.epochs):
        model.train()
        for index in torch.randperm(len(train_x)).split(args.batch_size):
            x, y = train_x[index], train_y[index].unsqueeze(1)
            flip = torch.rand(len(index), 1, 1, 1) < 0.5
            x, y = torch.where(flip, x.flip(-1), x), torch.where(flip, y.flip(-1), y)
            x = (x.float() / 255 - mean) / std
            optimizer.zero_grad()
            loss = loss_fn(model(x), y.long())
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            logits = torch.cat([model((val_x[i : i + 32].float() / 255 - mean) / std) for i in range(0, len(val_x), 32)])
        tp, fp, fn, tn = smp.metrics.get_stats(logits.sigmoid(), val_y.unsqueeze(1).long(), mode="binary", threshold=0.5)
        iou = smp.metrics.iou_score(tp, fp, fn, tn, reduction="micro-imagewise")
        print(f"epoch {epoch + 1}: loss {loss.item():.4f} val IoU {float(iou):.3f}", file=sys.stderr)
        clock.lap()
    return clock.laps


def corrotune_trial(args) -> list[dict]:
    return timed_trial("segmenter", "trainables.segmenter", "SegmenterTask", _config(args), CPUS)


def main() -> None:
    global CPUS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--num-images", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--encoder", default="mobilenet_v2")
    parser.add_argument("--threads", type=int, default=CPUS, help="CPUs of the trial and torch threads of both (default: all)")
    args = parser.parse_args()
    CPUS = args.threads
    os.environ.setdefault("WANDB_MODE", "disabled")
    started = time.perf_counter()
    data, _ = _splits(args)  # generates the data and builds the decode cache, untimed
    _, warm_load = _splits(args)
    measured = measure_with_ray(args.repeats, CPUS, lambda: bare_loop(args, data), lambda: corrotune_trial(args))
    train_pass = measured["corrotune_split_s"]["train_pass_s"]
    print(json.dumps({
        "arch": "unet", "encoder": args.encoder, "image_size": args.image_size, "batch_size": args.batch_size,
        "cpus": CPUS, "epochs": args.epochs, "repeats": args.repeats, "train_images": len(data.images["train"]),
        "val_images": len(data.images["val"]), "bare_torch_threads": torch.get_num_threads(), **measured,
        "data_share_of_train_pass": round(measured["corrotune_batch_production_s"] / train_pass, 4) if train_pass else None,
        "data_load_s": round(warm_load, 3), "total_s": round(time.perf_counter() - started, 1),
    }, indent=2))


if __name__ == "__main__":
    main()
