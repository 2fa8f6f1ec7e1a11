"""How well each hashed layer of ResNet-20 estimates its exact output before training, per k and input tile.

For every setting the pretrained FP32 ResNet-20 is patched (learned projections at their random start, the
first convolution and the classifier digital) and each hashed convolution is fed the input its FP32
counterpart sees on the first training images; the relative error ``||y_hashed - y|| / ||y||`` is averaged
over the six convolutions of each stage (16, 32, 64 channels). Also prints each setting's efficiency term E
(:mod:`aimc_lsh.eval.score`). Deterministic: the projections are drawn from the config's seed.

    python benchmarks/layer_error_tiles.py --settings 256 256:16 64:4 --images 64
"""

from __future__ import annotations

import argparse
import math

import torch

from aimc_lsh.data import load_dataset
from aimc_lsh.eval.score import bitbybit_breakdown
from aimc_lsh.kernels import HashConfig
from aimc_lsh.models import get_backbone
from aimc_lsh.nn import patch_model, patched_layers
from aimc_lsh.train.calibration import capture, reconstruction_error

STAGES = ("layer1", "layer2", "layer3")


def parse_setting(text: str) -> tuple[int, int | None]:
    """``"k"`` or ``"k:tile"`` -> (k, input tile size or None)."""
    k, _, tile = text.partition(":")
    try:
        parsed = int(k), int(tile) if tile else None
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"a setting is k or k:tile (e.g. 256 or 64:4), got {text!r}"
        ) from None
    if parsed[0] < 1 or (parsed[1] is not None and parsed[1] < 1):
        raise argparse.ArgumentTypeError(f"k and the tile size must be positive, got {text!r}")
    return parsed


def stage_errors(
    teacher: torch.nn.Module, images: torch.Tensor, k: int, tile: int | None
) -> dict[str, float]:
    """Mean relative output error of the hashed convolutions of each stage, and E."""
    config = HashConfig(kernel="learned_projection", hash_length=k, input_tile_size=tile)
    student = patch_model(teacher, config, skip=["conv1", "linear"]).eval()
    errors: dict[str, list[float]] = {stage: [] for stage in STAGES}
    for path, layer in patched_layers(student):
        inputs = capture(teacher, path, images, what="input")  # what the FP32 layer sees
        exact = capture(teacher, path, images, what="output")
        with torch.no_grad():  # sqrt of the relative squared error: ||y_hashed - y|| / ||y||
            errors[path.split(".")[0]].append(math.sqrt(reconstruction_error(layer, inputs, exact)))
    result = {stage: sum(values) / len(values) for stage, values in errors.items()}
    result["E"] = bitbybit_breakdown(student, 0.0).efficiency_term
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--settings", type=parse_setting, nargs="+", default=[(256, None), (256, 16), (64, 4)]
    )
    parser.add_argument("--images", type=int, default=64, help="first N training images")
    parser.add_argument("--data-root", default=None, help="CIFAR-10 folder (default: $AIMC_LSH_DATA)")
    parser.add_argument(
        "--weights", default=None, help="ResNet-20 weights (default: checksummed download/cache)"
    )
    args = parser.parse_args()
    if args.images < 1:
        parser.error(f"--images must be a positive int, got {args.images}")
    teacher = get_backbone("cifar10_resnet20", path=args.weights).eval()
    train = load_dataset("cifar10", root=args.data_root, train=True, limit=args.images)
    images = train.images.float().div(255.0) if train.images.dtype == torch.uint8 else train.images
    print(
        f"# relative output error ||y_hashed - y|| / ||y||, mean over each stage's 6 convolutions, "
        f"{args.images} images"
    )
    for k, tile in args.settings:
        row = stage_errors(teacher, images, k, tile)
        errors = " / ".join(f"{row[stage]:.3f}" for stage in STAGES)
        print(
            f"k = {k:4d}, tiles of {tile or 'all':>3} channels: {errors} (stages 1 / 2 / 3), "
            f"E = {row['E']:.3f}"
        )


if __name__ == "__main__":
    main()
