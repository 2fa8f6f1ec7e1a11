"""Test accuracy of fine-tuned hashed checkpoints with their BatchNorm statistics re-estimated (no hardware).

A recovery run ends with the BatchNorm running statistics it accumulated while training (momentum 0.1 over
batches of 8 augmented images, or their weight average). This script asks whether re-estimating them on the
training images afterwards (:func:`aimc_lsh.train.recalibrate_bn`, cumulative averages) changes the ideal
(noise-free) hashed model's test accuracy: for every checkpoint it prints the accuracy as saved and after
re-estimation on the first N training images, augmented as in training (random crop and flip) and as stored.

    python benchmarks/bn_reestimation.py results/recovery22/lp-k256-lrp3e-4-skip-b8-t16-ema.pt \
        --images 1024 5085 --data-root ../shared/data/cifar10-exact-subset \
        --weights ../shared/models/akamaster_resnet20-12fca82f.th
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch

from aimc_lsh.data import calibration_images, load_dataset, make_loader
from aimc_lsh.eval import evaluate
from aimc_lsh.models import get_backbone
from aimc_lsh.train import load_checkpoint, model_from_checkpoint, recalibrate_bn
from aimc_lsh.utils import tune_allocator


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "checkpoints", nargs="+", type=Path, help="checkpoints written by studies/finetune.py"
    )
    parser.add_argument(
        "--images", type=int, nargs="+", default=[1024], help="training images to re-estimate on (each count)"
    )
    parser.add_argument("--data-root", default=None, help="CIFAR-10 folder (default: $AIMC_LSH_DATA)")
    parser.add_argument("--weights", default=None, help="the backbone's pretrained weights file")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    args = parser.parse_args()
    if any(count < 1 for count in args.images):
        parser.error(f"--images must be positive counts, got {args.images}")
    if args.threads < 1:
        parser.error(f"--threads must be a positive int, got {args.threads}")
    torch.set_num_threads(args.threads)
    tune_allocator()
    test_set = load_dataset("cifar10", root=args.data_root)
    test = make_loader(test_set, batch_size=256, augment=False, shuffle=False)
    images = {
        count: [
            calibration_images("cifar10", count=count, root=args.data_root, augment=a) for a in (True, False)
        ]
        for count in args.images
    }
    print(
        "# test accuracy (%): as saved | BatchNorm re-estimated on N training images, augmented / as stored"
    )
    for path in args.checkpoints:
        checkpoint = load_checkpoint(path)
        model = model_from_checkpoint(checkpoint, get_backbone(checkpoint["backbone"], path=args.weights))
        cells = [f"as saved {accuracy(model, test):.2f}"]
        for count, variants in images.items():
            scores = [accuracy(reestimated(model, variant), test) for variant in variants]
            cells.append(f"N = {count}: {scores[0]:.2f} / {scores[1]:.2f}")
        print(f"{path}: " + " | ".join(cells), flush=True)


def reestimated(model: torch.nn.Module, images: torch.Tensor) -> torch.nn.Module:
    """A copy of ``model`` with its BatchNorm statistics re-estimated on ``images``."""
    copied = copy.deepcopy(model)
    recalibrate_bn(copied, images)
    return copied


def accuracy(model: torch.nn.Module, loader: object) -> float:
    """Test accuracy in percent."""
    return 100 * evaluate(model.eval(), loader, progress=False).accuracy


if __name__ == "__main__":
    main()
