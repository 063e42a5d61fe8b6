"""Training throughput of the segmenter as a Ray Tune trial vs a bare smp training loop.

Prints JSON with, on the generated corrosion set (same images, masks, model, batch size, loss,
optimiser and thread count for both):

* ``bare_smp_img_per_s``: a hand-written loop over in-memory tensors (``smp.create_model`` +
  ``smp.losses.DiceLoss`` + Adam, no augmentation, no validation timed);
* ``corrotune_trial_img_per_s``: ``time/train_img_per_s`` of the ``segmenter`` trainable run as
  one Ray Tune trial, and ``ratio_trial_over_bare`` (goal ≥ 0.97);
* ``data_share_of_epoch``: with the decode cache warm, the share of the trainable's training
  time spent producing batches (indexing, augmentation, normalisation), measured in-process
  (goal ≤ 5 %), and ``data_load_s``: reading the splits from the warm cache at trial start.

    python benchmarks/segmenter_throughput.py [--epochs 3] [--image-size 128] [--num-images 200] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # run as a script: the helper beside it
from _tune_rate import steady, tune_train_rate  # noqa: E402

CPUS = os.cpu_count() or 1  # --threads overrides: the trial's CPUs and both loops' torch threads


def _config(args) -> dict:
    return {
        "data": {"path": "synthetic:corrosion", "synthetic": {"num_images": args.num_images, "image_size": args.image_size}},
        "arch": "unet", "encoder": args.encoder, "image_size": args.image_size, "epochs": args.epochs,
        "batch_size": args.batch_size, "loss": "dice", "augmentation": "none", "profile": False, "artifacts": False,
        "channels_last": True, "seed": 0,
    }


def _train_split(args):
    from trainables.data.prepare import load_index
    from trainables.data.segmentation import load_segmentation_tensors
    from trainables.segmenter_config import SegmenterConfig

    cfg = SegmenterConfig.model_validate(_config(args))
    started = time.perf_counter()
    data = load_segmentation_tensors(load_index(cfg.data, "segmentation"), cfg.image_size, cfg.resize)
    return data, time.perf_counter() - started


def bare_smp(args) -> float:
    """A minimal smp training loop over the same train split; median images/s of epochs 2..N."""
    import segmentation_models_pytorch as smp

    from trainables.data.augment import normalize_batch

    data, _ = _train_split(args)
    images, masks = data.images["train"], data.masks["train"].long()
    torch.manual_seed(0)
    model = smp.create_model("unet", encoder_name=args.encoder, encoder_weights=None, classes=1)
    loss_fn = smp.losses.DiceLoss("binary", from_logits=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    rates = []
    for epoch in range(args.epochs):
        model.train()
        started = time.perf_counter()
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(epoch))
        for index in torch.split(order, args.batch_size):
            x = normalize_batch(images[index], "imagenet")
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), masks[index])
            loss.backward()
            optimizer.step()
        rates.append(len(images) / (time.perf_counter() - started))
    return steady(rates)


def in_process(args) -> tuple[float, float]:
    """The trainable in this process with timers around batch production: (img/s, data share)."""
    import trainables.loop as loop
    import trainables.segmenter as segmenter

    spent = [0.0]

    def timed(fn):
        def wrapper(*a, **k):
            started = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[0] += time.perf_counter() - started
        return wrapper

    reported, shares = [], []
    saved = (loop.load_trial_checkpoint, loop.report_with_checkpoint, loop.prepare_batch, loop.train_one_epoch,
             segmenter.SegmenterTask.train_batch)

    def train_one_epoch(*a, **k):  # batch time / training time of each epoch (validation excluded)
        spent[0] = 0.0
        started = time.perf_counter()
        loss = saved[3](*a, **k)
        shares.append(spent[0] / (time.perf_counter() - started))
        return loss

    loop.load_trial_checkpoint, loop.report_with_checkpoint = (lambda: None), (lambda metrics, state: reported.append(metrics))
    loop.prepare_batch, loop.train_one_epoch = timed(saved[2]), train_one_epoch
    segmenter.SegmenterTask.train_batch = timed(saved[4])
    try:
        segmenter.train_segmenter(_config(args))
    finally:
        (loop.load_trial_checkpoint, loop.report_with_checkpoint, loop.prepare_batch, loop.train_one_epoch,
         segmenter.SegmenterTask.train_batch) = saved
    return steady([m["time/train_img_per_s"] for m in reported]), statistics.median(shares[1:] or shares)


def under_tune(args) -> float:
    return tune_train_rate("segmenter", _config(args), CPUS)


def main() -> None:
    global CPUS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--num-images", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--encoder", default="mobilenet_v2")
    parser.add_argument("--threads", type=int, default=CPUS, help="CPUs of the trial and torch threads (default: all)")
    args = parser.parse_args()
    CPUS = args.threads
    os.environ.setdefault("WANDB_MODE", "disabled")
    torch.set_num_threads(CPUS)
    started = time.perf_counter()
    data, _ = _train_split(args)  # generates the data and builds the decode cache
    _, warm_load = _train_split(args)
    bare_rate = bare_smp(args)
    local_rate, share = in_process(args)
    tune_rate = under_tune(args)
    print(json.dumps({
        "arch": "unet", "encoder": args.encoder, "image_size": args.image_size, "batch_size": args.batch_size,
        "cpus": CPUS, "epochs": args.epochs, "train_images": len(data.images["train"]),
        "bare_smp_img_per_s": round(bare_rate, 2), "corrotune_in_process_img_per_s": round(local_rate, 2),
        "corrotune_trial_img_per_s": round(tune_rate, 2), "ratio_trial_over_bare": round(tune_rate / bare_rate, 3),
        "data_share_of_epoch": round(share, 4), "data_load_s": round(warm_load, 3),
        "total_s": round(time.perf_counter() - started, 1),
        "note": "median over epochs 2..N (epoch 1 warms up); data share = batch production time / training time",
    }, indent=2))


if __name__ == "__main__":
    main()
