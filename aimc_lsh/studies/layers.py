"""Layer sensitivity: which hashed layers cost a hashed model its accuracy?

For a hashed model (a fine-tuned checkpoint, or the pretrained backbone hashed as is) the study evaluates,
digitally, one model per hashed layer:

* ``--mode digital_one``: that layer computed exactly (its digital convolution or linear map with the same
  weights), every other hashed layer still hashed: the accuracy it gains is what hashing that layer costs
  the trained network.
* ``--mode hashed_one``: only that layer hashed, every other layer exact: what hashing it costs alone.

plus the reference (layer ``none``: nothing changed in ``digital_one``, nothing hashed in ``hashed_one``).
A network fine-tuned with hashed layers has BatchNorm statistics that expect the hashed layers' outputs, so
changing a layer shifts them: ``--recalibrate-bn N`` (default 1024) re-estimates every BatchNorm layer on N
augmented training images before each evaluation (the reference too), and ``--seeds`` draws those images'
augmentation. The CLI is ``studies/layer_sensitivity.py``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pandas as pd

from aimc_lsh.studies.cli import StudyParser, UsageError, add_common_arguments, parse_int_list, run_main
from aimc_lsh.studies.common import check_model_options, check_recalibration, source_from_args
from aimc_lsh.studies.grid import Params
from aimc_lsh.studies.plotting import plot_bands
from aimc_lsh.studies.runner import Sweep
from aimc_lsh.studies.workload import (
    accuracy_row,
    bn_calibration_images,
    calibration_batches,
    checkpoint_kind,
    pretrained_model,
    resolve_checkpoint,
)

__all__ = ["MODES", "REFERENCE", "build_parser", "build_sweep", "layer_point", "plot_layers", "main"]

MODES = ("digital_one", "hashed_one")
"""``--mode`` values: one layer made exact (the others hashed), or one layer hashed (the others exact)."""

REFERENCE = "none"
"""The ``layer`` value of the reference point (no layer changed by the mode)."""

DEFAULT_BN_IMAGES = 1024
"""Default ``--recalibrate-bn``."""


def build_parser() -> StudyParser:
    """The ``layer_sensitivity.py`` command line."""
    parser = StudyParser(
        prog="layer_sensitivity.py",
        description="Accuracy of a hashed model with one layer computed exactly (or only one layer hashed), "
        "for every hashed layer, evaluated digitally, BatchNorm re-estimated. Writes "
        "<out>/layers_<mode>_<dataset>.csv/.json/.png; interrupted runs resume.",
    )
    study = parser.add_argument_group("layer study")
    study.add_argument(
        "--mode",
        choices=MODES,
        default="digital_one",
        help="digital_one: one layer exact, the others hashed; hashed_one: one layer hashed, the others "
        "exact. Default: %(default)s",
    )
    study.add_argument(
        "--layers",
        nargs="+",
        default=None,
        help="Hashed layers to study (module paths, e.g. layer1.0.conv1). Default: every hashed layer.",
    )
    study.add_argument(
        "--recalibrate-bn",
        type=int,
        default=DEFAULT_BN_IMAGES,
        help="Training images (augmented, drawn with each seed) that re-estimate the BatchNorm statistics "
        "before each evaluation; 0 keeps the stored statistics. Default: %(default)s",
    )
    study.add_argument(
        "--kernel",
        default="random_projection",
        help="Kernel of the hashed model when no checkpoint file is given: --checkpoint auto/default look "
        "up this kernel's default checkpoint, none hashes the pretrained backbone with it. "
        "Default: %(default)s",
    )
    study.add_argument(
        "--hash-length",
        type=int,
        default=256,
        help="k of the hashed model when no checkpoint file is given. Default: %(default)s",
    )
    add_common_arguments(parser, study="layers", default_seeds="0")
    return parser


def build_sweep(args: argparse.Namespace) -> Sweep:
    """Validate the options and build the layer sweep (no heavy compute)."""
    check_model_options(args)
    seeds = parse_int_list(args.seeds, "seed", minimum=0)
    if not args.recalibrate_bn and len(seeds) > 1:
        raise UsageError(
            "--seeds draws the BatchNorm re-estimation images; with --recalibrate-bn 0 every seed gives the "
            "same numbers: pass one seed"
        )
    source = source_from_args(args)
    context = source.context()
    checkpoint = resolve_checkpoint(source, args.checkpoint, args.hash_length, args.kernel)
    if checkpoint is not None and checkpoint_kind(checkpoint) != "hashed":
        raise UsageError(
            f"checkpoint {checkpoint} holds a network of real weights (no hashed layer): pass a checkpoint "
            "of a hashed model written by studies/finetune.py"
        )
    context.update(checkpoint=checkpoint, kernel=args.kernel, hash_length=args.hash_length)
    if args.recalibrate_bn:
        check_recalibration(source, args.recalibrate_bn, "pass --recalibrate-bn 0")
    layers = _hashed_layer_shapes(hashed_model(context))
    chosen = list(layers) if args.layers is None else args.layers
    unknown = [name for name in chosen if name not in layers]
    if unknown:
        raise UsageError(
            f"--layers names no hashed layer of this model: {', '.join(unknown)}; hashed layers: "
            f"{', '.join(layers)}"
        )
    identity = {**source.params(), **_model_params(checkpoint, args.kernel, args.hash_length)}
    points = [
        {
            **identity,
            "mode": args.mode,
            "layer": name,
            "bn_recalibration_images": args.recalibrate_bn,
            "bn_seed": seed,
            **layers.get(name, _NO_LAYER),
        }
        for name in [REFERENCE, *chosen]
        for seed in seeds
    ]
    what = "digital (the others hashed)" if args.mode == "digital_one" else "hashed (the others digital)"
    model = (
        f"checkpoint {Path(checkpoint).name}"
        if checkpoint
        else f"{args.kernel} k={args.hash_length}, not fine-tuned"
    )
    statistics = (
        f"BatchNorm re-estimated on {args.recalibrate_bn} images, mean +- std over {len(seeds)} draws"
        if args.recalibrate_bn
        else "stored BatchNorm statistics"
    )
    title = f"{source.backbone} on {source.dataset}: one layer {what}; {model}; {statistics}"
    return Sweep(
        name=f"layers_{args.mode}_{source.dataset}",
        points=points,
        fn=layer_point,
        context=context,
        config={"study": "layers", "args": vars(args), "checkpoint": checkpoint, "layers": chosen},
        plot=lambda frame, path: plot_layers(frame, path, title=title),
    )


_NO_LAYER = {"hash_length": None, "patch_length": None, "out_features": None}
"""Shape columns of the reference point."""


def _model_params(checkpoint: str | None, kernel: str, hash_length: int) -> dict[str, Any]:
    """Columns naming the hashed model (a checkpoint by its content: a replaced file is not resumed)."""
    from aimc_lsh.utils import sha256_file

    if checkpoint is None:
        return {"checkpoint": None, "checkpoint_sha256": None, "kernel": kernel, "model_k": hash_length}
    digest = sha256_file(checkpoint)
    return {"checkpoint": checkpoint, "checkpoint_sha256": digest, "kernel": None, "model_k": None}


def hashed_model(context: dict[str, Any]) -> Any:
    """The digital hashed model of the sweep: the checkpoint's, or the pretrained backbone hashed as is."""
    from aimc_lsh.kernels import HashConfig
    from aimc_lsh.nn import needs_data, patch_model, prepare_model
    from aimc_lsh.train import model_from_checkpoint

    if context["checkpoint"] is not None:
        model = model_from_checkpoint(context["checkpoint"], pretrained_model(context))
    else:
        config = HashConfig(kernel=context["kernel"], hash_length=context["hash_length"])
        model = patch_model(pretrained_model(context), config, inplace=True)
    if needs_data(model):
        prepare_model(model, calibration_batches(context))
    return model.eval()


def _hashed_layer_shapes(model: Any) -> dict[str, dict[str, Any]]:
    """Hashed or PQ layer path -> its k, patch length d and output count (CSV columns)."""
    from aimc_lsh.nn import patched_layers

    shapes = {}
    for path, layer in patched_layers(model):
        weight = layer.weight
        shapes[path] = {
            "hash_length": int(layer.config.hash_length),
            "patch_length": int(weight[0].numel()),
            "out_features": int(weight.shape[0]),
        }
    return shapes


def layer_point(params: Params, context: dict[str, Any]) -> list[dict[str, Any]]:
    """Evaluate the model with the point's layer changed by its mode (BatchNorm re-estimated first).

    Returns:
        One row: ``accuracy``, ``n_correct``, ``n_images``, ``hashed_layers`` (how many layers stayed hashed).

    """
    from aimc_lsh.nn import patched_layers, to_digital
    from aimc_lsh.train import recalibrate_bn

    model = hashed_model(context)
    paths = [path for path, _ in patched_layers(model)]
    layer = params["layer"]
    if params["mode"] == "digital_one":
        exact = [] if layer == REFERENCE else [layer]
    else:
        exact = [path for path in paths if path != layer]
    model = to_digital(model, only=exact, inplace=True).eval()
    count = int(params["bn_recalibration_images"])
    if count:
        recalibrate_bn(model, bn_calibration_images(context, count, seed=int(params["bn_seed"])))
    return [{**accuracy_row(model, context), "hashed_layers": len(paths) - len(exact)}]


def plot_layers(frame: pd.DataFrame, path: str | Path, *, title: str | None = None) -> Any:
    """Accuracy (%) per layer (x: the layers in model order), the reference as a horizontal line."""
    layers = [name for name in dict.fromkeys(frame["layer"]) if name != REFERENCE]
    position = {name: float(i) for i, name in enumerate(layers)}
    studied = frame[frame["layer"] != REFERENCE].copy()
    studied["position"] = studied["layer"].map(position)
    mode = str(frame["mode"].iloc[0])
    return plot_bands(
        studied,
        x="position",
        y="accuracy",
        y_scale=100.0,
        path=path,
        xlabel="layer " + ("computed exactly" if mode == "digital_one" else "hashed alone"),
        ylabel="top-1 accuracy (%)",
        title=title,
        xtick_labels={p: name for name, p in position.items()},
        after=lambda ax: _label_layers_and_draw_reference(ax, frame, mode),
    )


def _label_layers_and_draw_reference(ax: Any, frame: pd.DataFrame, mode: str) -> None:
    """Vertical layer names; the reference point's accuracy as a dashed line."""
    ax.tick_params(axis="x", labelrotation=90, labelsize=6)
    reference = frame[frame["layer"] == REFERENCE]["accuracy"] * 100.0
    if reference.empty:
        return
    label = "every layer hashed" if mode == "digital_one" else "no layer hashed"
    ax.axhline(float(reference.mean()), color="black", linestyle="--", linewidth=1, label=label)


def main(argv: list[str] | None = None) -> int:
    """Run the layer study from the command line; returns the exit status."""
    return run_main(build_sweep, build_parser(), argv)
