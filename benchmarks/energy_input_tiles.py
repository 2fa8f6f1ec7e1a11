"""Energy per image of the hashed ResNet-20 with and without input tiles, on PCM, for both placements.

The model is the best measured k-bit setting (learned projections, the first convolution and the classifier
digital) patched with ``HardwareConfig(device="pcm", placement=...)`` and programmed; the event counts
do not depend on the weights' values, so the architecture is randomly initialised. Prints, per placement
and tile size, the energy model's events and total (:func:`aimc_lsh.hardware.energy_report`) and the
bitbybit HDOPs (:mod:`aimc_lsh.eval.score`), which input tiles leave unchanged.

    python benchmarks/energy_input_tiles.py --tiles 16 32
"""

from __future__ import annotations

import argparse

import pandas as pd
import torch

from aimc_lsh.eval.score import bitbybit_breakdown
from aimc_lsh.hardware import HardwareConfig, energy_report, program
from aimc_lsh.models.resnet import resnet20_a
from aimc_lsh.nn import patch_model

PLACEMENTS = ("codes_on_array", "projection_on_array")
COLUMNS = ("cell_reads", "sense_amp_decisions", "popcount_bits", "adc_8b", "total_nJ")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--k", type=int, default=256, help="hash length")
    parser.add_argument("--tiles", type=int, nargs="+", default=[16], help="input tile sizes (channels)")
    args = parser.parse_args()
    if args.k <= 0 or any(t <= 0 for t in args.tiles):
        parser.error(f"--k and --tiles must be positive ints, got {args.k} and {args.tiles}")
    torch.manual_seed(0)
    base = resnet20_a().eval()
    models, hdops = {}, {}
    for placement in PLACEMENTS:
        for tile in (None, *args.tiles):
            config = HardwareConfig(
                kernel="learned_projection",
                hash_length=args.k,
                input_tile_size=tile,
                device="pcm",
                placement=placement,
            )
            model = patch_model(base, config, skip=["conv1", "linear"]).eval()
            program(model, 0)
            name = f"{placement}, tiles of {tile}" if tile else f"{placement}, one tile"
            models[name] = model
            hdops[name] = bitbybit_breakdown(model, 0.0).hdops
    report = energy_report(models, torch.randn(1, 3, 32, 32)).set_index("model")
    table = report.reindex(columns=list(COLUMNS)).fillna(0.0)
    table["hdops"] = pd.Series(hdops)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(f"# hashed ResNet-20, k = {args.k}, PCM, per image (conv1 and linear digital)")
        print(table.to_string(float_format=lambda v: f"{v:,.1f}"))


if __name__ == "__main__":
    main()
