"""How well SimHash estimates each layer's dot products with random, orthogonal or data-fitted projections.

For every hashed layer of a pretrained backbone the script measures the estimate
``||x|| ||w|| cos(pi/2 (1 - s))`` against the exact layer output on test-image activations of the digital
model, for four estimates with the same k: i.i.d. Gaussian rows (the default), orthonormal rows
(``--orthogonal`` in finetune.py), and orthonormal rows drawn inside the principal subspace of the layer's
training-image input patches holding ``--energy`` of their second moment
(:func:`aimc_lsh.nn.projection_fit.fit_projections`; its estimate uses ``||B^T w||``, the part of a
weight row the inputs can meet), and Gaussian rows on centred inputs (``--center-inputs`` in finetune.py:
each input channel minus its mean on the training images, the mean's contribution added exactly,
:func:`aimc_lsh.nn.calibrate_input_centers`). It prints and writes (``--out``, CSV) the correlation, the
relative error and the affine residual (the share of the output variance that no per-channel scale and
shift of the estimate recovers: what BatchNorm could not undo) per layer, and whether ``fit_projections(...,
only_where_better=True)`` (``finetune.py --fit-only-where-better``, the default checkpoints) fits it: it
compares that residual on the training images' patches.

``--write-init PATH`` also saves the model hashed with the fitted projections (``--kernel``, orthonormal
rows, the ``--skip`` layers digital) as a checkpoint for ``finetune.py --init-from PATH`` with the same
``--kernel --k --skip --orthogonal --seed`` (``finetune.py --fit-projections ENERGY`` does the same fit
itself, on the same 512 training images). Its layers still scale by ``||w||``, so each output channel is
off by ``||w|| / ||B^T w||`` until BatchNorm re-adapts (training does this); it is a starting point for
fine-tuning, not a hashed model to evaluate as is.

    python studies/projection_init.py --data-root ../shared/data/cifar10-exact-subset \
        --weights ../shared/models/akamaster_resnet20-12fca82f.th --k 256 --out results/projection_init.csv
"""

from __future__ import annotations

import argparse
import copy
import io
import sys
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aimc_lsh.data import CALIBRATION_IMAGES  # noqa: E402
from aimc_lsh.nn.projection_fit import FITTABLE_KERNELS  # noqa: E402
from aimc_lsh.studies.cli import NO_DOWNLOAD_HELP, check_output_files, positive_int  # noqa: E402

MAX_TEST_ROWS = 20_000
"""Test patches per layer kept for the quality figures (the first ones, in image order)."""


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="cifar10_resnet20", help="backbone (default: %(default)s)")
    p.add_argument("--weights", default=None, help="weights file (default: cache / $AIMC_LSH_MODELS)")
    p.add_argument("--data-root", default=None, help="CIFAR folder (default: $AIMC_LSH_DATA or the cache)")
    p.add_argument("--no-download", action="store_true", help=NO_DOWNLOAD_HELP)
    p.add_argument("--kernel", default="learned_projection", choices=FITTABLE_KERNELS,
                   help="kernel of the --write-init model (default: %(default)s)")  # fmt: skip
    p.add_argument("--k", type=int, default=256, help="hash bits per layer (default: %(default)s)")
    p.add_argument("--energy", type=float, default=0.9,
                   help="share of the input patches' second moment the fitted subspace holds, in (0, 1] "
                        "(default: %(default)s)")  # fmt: skip
    p.add_argument("--images", type=int, default=CALIBRATION_IMAGES,
                   help="training images to fit on, as finetune.py --fit-projections does "
                        "(default: %(default)s)")  # fmt: skip
    p.add_argument("--test-images", type=int, default=32, help="test images to measure on (default: 32)")
    p.add_argument("--skip", nargs="*", default=["conv1", "linear"],
                   help="layers left digital (default: %(default)s)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="projection seed, as finetune.py --seed (default: 0)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch threads")
    p.add_argument("--out", default=None, help="CSV of the per-layer figures (written atomically)")
    p.add_argument("--write-init", default=None, help="save the fitted hashed model here (for --init-from)")
    return p


def layer_inputs(model: nn.Module, paths: list[str], images: Tensor) -> dict[str, list[Tensor]]:
    """Inputs of the modules at ``paths`` while the digital ``model`` runs (eval mode) on ``images``."""
    from aimc_lsh.nn.patching import run_digital_inputs

    found: dict[str, list[Tensor]] = {p: [] for p in paths}
    hooks = {p: (lambda _m, args, p=p: found[p].append(args[0].detach())) for p in paths}
    run_digital_inputs(model, hooks, images, 128)
    return found


def quality(estimate: Tensor, exact: Tensor) -> tuple[float, float, float]:
    """Correlation with the exact outputs, relative error ``||e - y|| / ||y||`` and affine residual.

    The affine residual is the share of the outputs' variance no per-channel affine map of the estimate
    recovers (what ``fit_projections(..., only_where_better=True)`` compares;
    :func:`aimc_lsh.kernels.affine_residual`).
    """
    from aimc_lsh.kernels import affine_residual

    corr = torch.corrcoef(torch.stack([estimate.flatten(), exact.flatten()]))[0, 1]
    return float(corr), float((estimate - exact).norm() / exact.norm()), affine_residual(estimate, exact)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    """Run the CLI; returns the per-layer table."""
    parser = build_parser()
    args = parser.parse_args(argv)
    check_output_files(parser, {"--out": args.out, "--write-init": args.write_init})
    if args.k <= 0 or args.images <= 0 or args.test_images <= 0:
        counts = f"{args.k}, {args.images}, {args.test_images}"
        parser.error(f"--k, --images and --test-images must be > 0, got {counts}")
    if args.threads:
        torch.set_num_threads(args.threads)
    from aimc_lsh.data import load_dataset, resolve_data_root
    from aimc_lsh.kernels import HashConfig, random_projection
    from aimc_lsh.kernels.subspace import check_energy, simhash_estimate
    from aimc_lsh.models import get_backbone
    from aimc_lsh.nn import calibrate_input_centers, hashed_layers, patch_model
    from aimc_lsh.nn.projection_fit import fit_projections, input_patches
    from aimc_lsh.train.checkpoint import FORMAT
    from aimc_lsh.utils import atomic_write_bytes, atomic_write_text

    try:
        check_energy(args.energy, "--energy")
    except ValueError as err:
        parser.error(str(err))
    dataset = "cifar100" if "cifar100" in args.model else "cifar10"
    if args.model.startswith("digits"):
        dataset = "digits"
    download = not args.no_download
    try:  # unknown model; missing, corrupt or wrong-checksum weights or data: one line
        teacher = get_backbone(args.model, path=args.weights, download=download).eval()
        root = resolve_data_root(dataset, args.data_root, download=download)
        fit_images = load_dataset(dataset, root=root, train=True, limit=args.images).tensors()[0]
        test_images = load_dataset(dataset, root=root, limit=args.test_images).tensors()[0]
    except (FileNotFoundError, ValueError) as err:
        parser.error(str(err))
    try:
        config = HashConfig(kernel=args.kernel, hash_length=args.k, orthogonal=True, seed=args.seed)
        student = patch_model(teacher, config, skip=args.skip)
    except ValueError as err:
        parser.error(str(err))
    layers = dict(hashed_layers(student))
    if not layers:
        parser.error(f"--skip {' '.join(args.skip)} leaves no layer of {args.model} to hash")
    tiled = [p for p, layer in layers.items() if len(layer.kernels) != 1]
    if tiled:
        parser.error(f"{', '.join(tiled)}: tiled layers; this study compares one projection per layer")
    test = layer_inputs(teacher, list(layers), test_images)
    # which layers the checked fit (finetune.py --fit-only-where-better, the default checkpoints) fits
    checked = fit_projections(copy.deepcopy(student), fit_images, energy=args.energy, only_where_better=True)
    bases = fit_projections(student, fit_images, energy=args.energy)  # the fitted P, in place
    centred = patch_model(teacher, config.replace(center_inputs=True), skip=args.skip)
    centers = calibrate_input_centers(centred, fit_images)  # what finetune.py --center-inputs measures
    digital = dict(teacher.named_modules())
    rows = []
    for path, layer in layers.items():
        x_test = torch.cat([input_patches(digital[path], x) for x in test[path]])
        keep = x_test.norm(dim=1) > 0
        x_test = x_test[keep][:MAX_TEST_ROWS]
        c = centers[path].view(1, -1, *[1] * (test[path][0].dim() - 2))
        x_centred = torch.cat([input_patches(digital[path], x - c) for x in test[path]])[keep][:MAX_TEST_ROWS]
        c_patches = torch.cat([input_patches(digital[path], c.expand_as(x)) for x in test[path]])
        c_patches = c_patches[keep][:MAX_TEST_ROWS]
        w = layer.weight_tile(0, 0).detach().double()
        exact, basis, d = x_test @ w.T, bases[path][0], w.shape[1]
        seed = layer.kernel_seed(0, 0)
        gaussian = random_projection(args.k, d, seed=seed)
        estimates = {
            "gaussian": simhash_estimate(x_test, w, gaussian),
            "orthogonal": simhash_estimate(
                x_test, w, random_projection(args.k, d, orthogonal=True, seed=seed)
            ),
            "fitted": simhash_estimate(x_test, w, layer.kernel(0, 0).P.detach(), (w @ basis).norm(dim=1)),
            "centred": simhash_estimate(x_centred, w, gaussian) + c_patches @ w.T,
        }
        row = {"layer": path, "d": d, "rank": basis.shape[1], "k": args.k,
               "fitted_where_better": checked[path][0].shape[1] > 0}  # fmt: skip
        for name, estimate in estimates.items():
            row[f"{name}_corr"], row[f"{name}_rel_err"], row[f"{name}_residual"] = quality(estimate, exact)
        rows.append(row)
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.out:
        atomic_write_text(args.out, table.to_csv(index=False))
    if args.write_init:
        buffer = io.BytesIO()
        saved = {"format": FORMAT, "model_state": student.state_dict(), "projection_init": vars(args)}
        torch.save(saved, buffer)
        atomic_write_bytes(args.write_init, buffer.getvalue())
        print(f"fitted model: {args.write_init} (finetune.py --init-from it with --kernel {args.kernel} "
              f"--k {args.k} --orthogonal --seed {args.seed} --skip {' '.join(args.skip)})")  # fmt: skip
    return table


if __name__ == "__main__":
    main()
