"""CPU time of one training step of the hashed ResNet-20: plain, with comparator thresholds, with input tiles.

A step is what ``aimc_lsh.train.fine_tune`` repeats: forward of a batch in training mode, cross-entropy,
backward, Adam update. The model is the best measured k = 256 setting (learned projections, the first
convolution and the classifier digital); inputs are random (the cost does not depend on the pixels).
Prints the median process CPU seconds per step over --steps timed steps after two warm-up steps, and the
hashed operations (HDOPs, :mod:`aimc_lsh.eval.score`) of each setting.

    python benchmarks/bench_training_step.py --batch-size 8 --threads 1
    python benchmarks/bench_training_step.py --only "input tiles of 8 channels" "input tiles of 4 channels"
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from aimc_lsh.eval.score import bitbybit_breakdown
from aimc_lsh.kernels import HashConfig, HashStages, product_precision
from aimc_lsh.models.resnet import resnet20_a
from aimc_lsh.nn import HashedLayer, patch_model
from aimc_lsh.utils import tune_allocator

SETTINGS: dict[str, dict[str, object]] = {
    "plain SimHash": {},
    "comparator thresholds": {"comparator_thresholds": True},
    "input tiles of 32 channels": {"input_tile_size": 32},
    "input tiles of 16 channels": {"input_tile_size": 16},
    "input tiles of 8 channels": {"input_tile_size": 8},
    "input tiles of 4 channels": {"input_tile_size": 4},
    "tiles of 4, bfloat16 products": {"input_tile_size": 4, "product_dtype": "bfloat16"},
    "input tiles of 2 channels": {"input_tile_size": 2},
    "tiles of 2, bfloat16 products": {"input_tile_size": 2, "product_dtype": "bfloat16"},
    "tiles of 16, one at a time": {"input_tile_size": 16, "one_at_a_time": True},
    "k = 64, tiles of 4 channels": {"input_tile_size": 4, "hash_length": 64},
    "k = 64, tiles of 4, one at a time": {"input_tile_size": 4, "hash_length": 64, "one_at_a_time": True},
    "k = 64, tiles of 2 channels": {"input_tile_size": 2, "hash_length": 64},
    "k = 64, tiles of 1 channel": {"input_tile_size": 1, "hash_length": 64},
    "k = 64, tiles of 1, bfloat16 products": {
        "input_tile_size": 1,
        "hash_length": 64,
        "product_dtype": "bfloat16",
    },
}
"""Setting name -> ``HashConfig`` fields on top of the learned-projection k-bit config; ``one_at_a_time``
makes the layers compute their input tiles one after the other, as they did before the stacked path
(:func:`aimc_lsh.kernels.stacked_tiles_forward`) and as they still do with hardware stages;
``product_dtype`` runs the step inside :func:`aimc_lsh.kernels.product_precision` (``--product-dtype``)."""


class _OneTileAtATime(HashStages):
    """Ideal stages that make the layers take the tile-by-tile path (for the comparison only)."""

    def steps_are_ideal(self) -> bool:  # noqa: D102
        return False


def seconds_per_step(
    options: dict[str, object], batch_size: int, k: int, steps: int
) -> tuple[float, int, float]:
    """Median CPU seconds of a training step of the hashed ResNet-20, its HDOPs and efficiency term."""
    options = dict(options)
    one_at_a_time = options.pop("one_at_a_time", False)
    dtype_name = str(options.pop("product_dtype", "float32"))
    config = HashConfig(**{"kernel": "learned_projection", "hash_length": k, **options})
    torch.manual_seed(0)  # the weights' values do not change the cost: the architecture, randomly initialised
    model = patch_model(resnet20_a(), config, skip=["conv1", "linear"]).train()
    if one_at_a_time:
        for module in model.modules():
            if isinstance(module, HashedLayer):
                module.stages = _OneTileAtATime(module.stages.ste)
    breakdown = bitbybit_breakdown(model, 0.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch_size, 3, 32, 32, generator=generator)
    labels = torch.randint(0, 10, (batch_size,), generator=generator)
    times = []
    for step in range(steps + 2):
        start = time.process_time()
        optimizer.zero_grad(set_to_none=True)
        with product_precision(dtype_name):
            F.cross_entropy(model(images), labels).backward()
        optimizer.step()
        if step >= 2:
            times.append(time.process_time() - start)
    return statistics.median(times), breakdown.hdops, breakdown.efficiency_term


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch-size", type=int, default=8, help="images per step")
    parser.add_argument("--k", type=int, default=256, help="hash length")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per setting")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument(
        "--only", nargs="+", choices=list(SETTINGS), metavar="SETTING",
        help=f"time only these settings (the first is the 1.00x reference); one of: {', '.join(SETTINGS)}",
    )  # fmt: skip
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
    plain = None
    for name in args.only or SETTINGS:
        options = SETTINGS[name]
        seconds, hdops, efficiency = seconds_per_step(options, args.batch_size, args.k, args.steps)
        plain = plain or seconds
        print(
            f"{name + ':':<40}{seconds:.4f} CPU-s per step ({seconds / plain:.2f}x), {hdops:,} HDOPs, "
            f"efficiency term {efficiency:.3f}"
        )


if __name__ == "__main__":
    main()
