"""CPU time of one training step of the hashed ResNet-20, with and without learned comparator thresholds.

A step is what ``aimc_lsh.train.fine_tune`` repeats: forward of a batch in training mode, cross-entropy,
backward, Adam update. The model is the best measured k = 256 setting (learned projections, the first
convolution and the classifier digital); inputs are random (the cost does not depend on the pixels).
Prints the median process CPU seconds per step over --steps timed steps after two warm-up steps.

    python benchmarks/bench_training_step.py --batch-size 8 --threads 1
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from aimc_lsh.kernels import HashConfig
from aimc_lsh.models.resnet import resnet20_a
from aimc_lsh.nn import patch_model
from aimc_lsh.utils import tune_allocator


def seconds_per_step(thresholds: bool, batch_size: int, k: int, steps: int) -> float:
    """Median CPU seconds of a training step of the hashed ResNet-20."""
    config = HashConfig(kernel="learned_projection", hash_length=k, comparator_thresholds=thresholds)
    torch.manual_seed(0)  # the weights' values do not change the cost: the architecture, randomly initialised
    model = patch_model(resnet20_a(), config, skip=["conv1", "linear"]).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch_size, 3, 32, 32, generator=generator)
    labels = torch.randint(0, 10, (batch_size,), generator=generator)
    times = []
    for step in range(steps + 2):
        start = time.process_time()
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()
        if step >= 2:
            times.append(time.process_time() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch-size", type=int, default=8, help="images per step")
    parser.add_argument("--k", type=int, default=256, help="hash length")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per setting")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    args = parser.parse_args()
    for name in ("batch_size", "k", "steps", "threads"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be a positive int, got {getattr(args, name)}")
    torch.set_num_threads(args.threads)
    tune_allocator()
    print(
        f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, threads {args.threads}, "
        f"batch {args.batch_size}, k {args.k}, median of {args.steps} steps"
    )
    plain = seconds_per_step(False, args.batch_size, args.k, args.steps)
    thresholds = seconds_per_step(True, args.batch_size, args.k, args.steps)
    print(f"plain SimHash:           {plain:.4f} CPU-s per step")
    print(f"comparator thresholds:   {thresholds:.4f} CPU-s per step ({thresholds / plain:.2f}x)")


if __name__ == "__main__":
    main()
