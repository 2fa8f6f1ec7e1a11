"""Cost of product quantization on ResNet-20: calibration time, forward time, accuracy without training.

For each K in --ks: patch every layer with ``product_quantization`` (V = 9 for 3x3 convolutions, 4 for 1x1
and the classifier, int8 table), calibrate on the first --calib training images, then time one batch of
--batch-size test images (best of --repeats, after a warm-up) with the digital table and with the table on
PCM tiles, and evaluate top-1 on the first --limit test images (digital table, no fine-tuning).

    AIMC_LSH_DATA=... AIMC_LSH_MODELS=... python benchmarks/bench_pq.py --ks 16 64 --threads 1
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
from torch import nn

from aimc_lsh.data import make_loader
from aimc_lsh.eval import evaluate
from aimc_lsh.hardware import HardwareConfig, program
from aimc_lsh.kernels import HashConfig
from aimc_lsh.models import get_backbone
from aimc_lsh.nn import calibrate_pq, patch_model
from aimc_lsh.utils import tune_allocator


@torch.no_grad()
def seconds_per_batch(model: nn.Module, images: torch.Tensor, repeats: int) -> float:
    """Best wall time of one forward pass over ``images`` (after one warm-up pass)."""
    model.eval()
    model(images)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        model(images)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-root", default=None, help="CIFAR-10 root (default: $AIMC_LSH_DATA)")
    parser.add_argument("--ks", type=int, nargs="+", default=[16], help="centroids K per codebook")
    parser.add_argument("--batch-size", type=int, default=128, help="images per timed forward")
    parser.add_argument("--calib", type=int, default=512, help="training images used for calibration")
    parser.add_argument("--limit", type=int, default=1024, help="test images evaluated")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes; the best is reported")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tune_allocator()  # as the studies, evaluate and fine_tune do: no page-fault storms

    calib = make_loader(
        "cifar10",
        root=args.data_root,
        train=True,
        batch_size=128,
        limit=args.calib,
        shuffle=False,
        augment=False,
    )
    test = list(make_loader("cifar10", root=args.data_root, batch_size=args.batch_size, limit=args.limit))
    images = test[0][0]
    model = get_backbone("cifar10_resnet20")
    print(
        f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, threads {args.threads}, "
        f"batch {len(images)}, calibration {args.calib} training images, accuracy on {args.limit} test images"
    )
    fp32_time = seconds_per_batch(model, images, args.repeats)
    print(f"fp32: {fp32_time:.3f} s/batch, accuracy {evaluate(model, test, progress=False).accuracy:.4f}")
    print("K,calibration_s,digital_table_s_per_batch,pcm_table_s_per_batch,digital_over_fp32,accuracy")
    for k in args.ks:
        pq = patch_model(model, HashConfig(kernel="product_quantization", hash_length=k))
        start = time.perf_counter()
        calibrate_pq(pq, calib, seed=0)
        calibration = time.perf_counter() - start
        digital = seconds_per_batch(pq, images, args.repeats)
        analog = patch_model(
            model, HardwareConfig(kernel="product_quantization", hash_length=k, device="pcm")
        )
        analog.load_state_dict(pq.state_dict())
        pcm = seconds_per_batch(program(analog, seed=0), images, args.repeats)
        accuracy = evaluate(pq, test, progress=False).accuracy
        print(f"{k},{calibration:.2f},{digital:.3f},{pcm:.3f},{digital / fp32_time:.1f},{accuracy:.4f}")


if __name__ == "__main__":
    main()
