"""Wall time per epoch of a corrotune classifier trial vs a hand-written PyTorch loop.

Prints JSON. The baseline is a minimal script of the kind one writes by hand: the same timm
backbone and head (Linear 256 → ReLU → Dropout 0.5 → Linear), the same decoded uint8 tensors,
batch size, Adam, horizontal flips and ImageNet normalisation, and each epoch a validation pass
that computes accuracy; no corrotune code runs in it (corrotune only generates and decodes
the data beforehand, which neither side times). corrotune runs the ``classifier`` trainable as
one Ray Tune trial with all CPUs: train pass, validation with its seven metrics, best-weights
copy, a checkpoint every epoch (weights, Adam state, RNG, history: exact resume) and the report.

Measure: ``ratio_bare_over_corrotune`` = median bare epoch time / median corrotune epoch time
(epochs 2..N; epoch 1 includes start-up), equivalently corrotune's epoch throughput over the
bare loop's; goal ≥ 0.97. The two run interleaved in one process (A B, B A, ...) ``--repeats``
times, with the load average noted (the machine is shared). ``corrotune_split_s`` says where a
corrotune epoch's time goes (medians of the steady epochs).

    python benchmarks/classifier_throughput.py [--repeats 3] [--epochs 4] [--image-size 128] [--backbone resnet18]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # run as a script: the helper beside it
from _epoch_split import EpochClock, measure_with_ray, timed_trial  # noqa: E402

CPUS = os.cpu_count() or 1  # --threads overrides
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _config(args) -> dict:
    return {
        "data": {"path": "synthetic:corrosion", "synthetic": {"num_images": args.num_images, "image_size": args.image_size}},
        "backbone": args.backbone, "image_size": args.image_size, "epochs": args.epochs, "batch_size": args.batch_size,
        "augmentation": "hflip", "profile": False, "artifacts": False, "positive_class": "corrosion", "seed": 0,
    }


def _tensors(args) -> dict:
    """The decoded uint8 splits corrotune trains on (set up once, untimed)."""
    from trainables.classifier import load_training_data
    from trainables.classifier_config import ClassifierConfig

    dataset, splits = load_training_data(ClassifierConfig.model_validate(_config(args)))
    positive = dataset.classes.index("corrosion")
    return {name: (s.images, (s.labels == positive).float()) for name, s in splits.items()}


# --------------------------------------------------------------------------- the hand-written loop


def bare_loop(args, data: dict) -> list[tuple[float, float]]:
    """A minimal timm + PyTorch training script; returns each epoch's (wall, CPU) seconds (train + val + accuracy)."""
    import timm

    torch.manual_seed(0)
    backbone = timm.create_model(args.backbone, pretrained=False, num_classes=0)  # pooled features
    model = nn.Sequential(backbone, nn.Linear(backbone.num_features, 256), nn.ReLU(inplace=True), nn.Dropout(0.5), nn.Linear(256, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.BCEWithLogitsLoss()
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    (train_x, train_y), (val_x, val_y) = data["train"], data["val"]
    clock = EpochClock()
    for epoch in range(args.epochs):
        model.train()
        for index in torch.randperm(len(train_x)).split(args.batch_size):
            x = train_x[index]
            flip = torch.rand(len(index), 1, 1, 1) < 0.5
            x = torch.where(flip, x.flip(-1), x)
            x = (x.float() / 255 - mean) / std
            optimizer.zero_grad()
            loss = loss_fn(model(x)[:, 0], train_y[index])
            loss.backward()
            optimizer.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for start in range(0, len(val_x), 128):
                x = (val_x[start : start + 128].float() / 255 - mean) / std
                correct += int(((model(x)[:, 0] > 0).float() == val_y[start : start + 128]).sum())
        print(f"epoch {epoch + 1}: loss {loss.item():.4f} val accuracy {correct / len(val_x):.3f}", file=sys.stderr)
        clock.lap()
    return clock.laps


def corrotune_trial(args) -> list[dict]:
    return timed_trial("classifier", "trainables.classifier", "ClassifierTask", _config(args), CPUS)


def main() -> None:
    global CPUS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--num-images", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--threads", type=int, default=CPUS, help="CPUs of the trial and torch threads of both (default: all)")
    args = parser.parse_args()
    CPUS = args.threads
    os.environ.setdefault("WANDB_MODE", "disabled")
    started = time.perf_counter()
    data = _tensors(args)  # generates and decodes the data before anything is timed
    measured = measure_with_ray(args.repeats, CPUS, lambda: bare_loop(args, data), lambda: corrotune_trial(args))
    print(json.dumps({
        "backbone": args.backbone, "image_size": args.image_size, "batch_size": args.batch_size, "cpus": CPUS,
        "epochs": args.epochs, "repeats": args.repeats, "train_images": len(data["train"][0]), "val_images": len(data["val"][0]),
        "bare_torch_threads": torch.get_num_threads(), **measured, "total_s": round(time.perf_counter() - started, 1),
    }, indent=2))


if __name__ == "__main__":
    main()
