"""Throughput of the hashed ResNet-20: conv-shaped layers vs the unfold reference vs FP32.

Prints images/s on the CIFAR-10 exact test subset for k in --ks, each figure the best of
--repeats timed passes over the whole set (after one warm-up batch), with --threads torch threads.
The conv-shaped layers are timed twice: as the library runs them (the native bit-packed Hamming stage
after the projection convolution, ``conv_img_s``) and with the PyTorch steps (sign, 1x1 match
convolution, cosine; ``conv_torch_img_s``, what runs without a C compiler or with AIMC_LSH_NATIVE=0).

    python benchmarks/bench_hashed_conv.py --data-root ../shared/data/cifar10-exact-subset
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
from torch import nn

from aimc_lsh.data import make_loader
from aimc_lsh.kernels import HashConfig, native_hamming, native_hamming_available
from aimc_lsh.models import get_backbone
from aimc_lsh.nn import patch_model, unfold_reference_model
from aimc_lsh.utils import tune_allocator


@torch.no_grad()
def images_per_second(model: nn.Module, batches: list[torch.Tensor], repeats: int) -> float:
    model.eval()
    model(batches[0])
    n_images = sum(len(b) for b in batches)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for images in batches:
            model(images)
        best = min(best, time.perf_counter() - start)
    return n_images / best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-root", default=None, help="CIFAR-10 root (default: $AIMC_LSH_DATA)")
    parser.add_argument("--ks", type=int, nargs="+", default=[64, 256, 1024], help="hash lengths k")
    parser.add_argument("--batch-size", type=int, default=128, help="images per forward")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N test images")
    parser.add_argument("--repeats", type=int, default=2, help="timed passes; the best is reported")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tune_allocator()  # as the studies, evaluate and fine_tune do: no page-fault storms

    loader = make_loader("cifar10", root=args.data_root, batch_size=args.batch_size, limit=args.limit)
    batches = [images for images, _ in loader]
    model = get_backbone("cifar10_resnet20")
    print(
        f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, threads {args.threads}, "
        f"{sum(len(b) for b in batches)} images, batch {args.batch_size}"
    )
    fp32 = images_per_second(model, batches, args.repeats)
    print(f"fp32: {fp32:.1f} img/s")
    if not native_hamming_available():
        print("# the native Hamming stage is not available: conv_img_s uses the PyTorch steps too")
    print("k,conv_img_s,conv_torch_img_s,unfold_img_s,conv_over_unfold,conv_torch_over_unfold,fp32_over_conv")
    for k in args.ks:
        hashed = patch_model(model, HashConfig(hash_length=k))
        conv = images_per_second(hashed, batches, args.repeats)
        with native_hamming(False):
            conv_torch = images_per_second(hashed, batches, args.repeats)
            unfold = images_per_second(unfold_reference_model(hashed), batches, args.repeats)
        print(
            f"{k},{conv:.1f},{conv_torch:.1f},{unfold:.1f},{conv / unfold:.2f},{conv_torch / unfold:.2f},"
            f"{fp32 / conv:.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
