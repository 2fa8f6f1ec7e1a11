"""Hashed ResNet-20 on simulated PCM tiles over time, beside the conventional-AIMC baseline.

Evaluates on the CIFAR-10 exact test subset, at t = 0, 1 hour, 1 day and 1 year after programming:

* the FP32 digital backbone;
* the hashed model on ideal hardware (the pure hashing error);
* the hashed model with both physical placements (``codes_on_array``, ``projection_on_array``) on the
  device (default ``pcm``: programming noise, drift, 1/f and per-read noise, sense amplifiers, 8-bit ADC);
* the conventional AIMC baseline (real weights on the same device, 8-bit ADC);

then prints an energy table for all of them (events per image priced with
:class:`aimc_lsh.hardware.EnergyTable`) with the bitbybit score of the hashed models (accuracy drop at 1 day).

Without ``--checkpoint`` the hashed model is the pretrained backbone hashed as is, which is known to
score only 10-18 % (hashing every conv without fine-tuning destroys the features); pass a checkpoint
written by ``aimc_lsh.train`` (``save_checkpoint``) to evaluate a fine-tuned hashed model.

Example::

    AIMC_LSH_DATA=/path/to/cifar10 .venv/bin/python studies/hardware_demo.py --out results/hardware_demo.csv
"""

from __future__ import annotations

import argparse
import math
import statistics

import pandas as pd
import torch

import aimc_lsh as al
from aimc_lsh.hardware import HardwareConfig, drift, energy_report, program
from aimc_lsh.hardware.programming import DRIFT_REFERENCES
from aimc_lsh.nn.conventional import convert_conventional
from aimc_lsh.studies.cli import check_output_files, positive_int
from aimc_lsh.utils import atomic_write_text

TIMES = {"t=0": 0.0, "1 hour": 3600.0, "1 day": 86_400.0, "1 year": 365 * 86_400.0}


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        prog="hardware_demo.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data-root", default=None, help="CIFAR-10 root (default: $AIMC_LSH_DATA, else the download cache)"
    )
    parser.add_argument("--no-download", action="store_true", help="never download CIFAR-10 or the weights")
    parser.add_argument(
        "--limit", type=positive_int, default=None, help="first N test images (default: all 1,017)"
    )
    parser.add_argument("--device", default="pcm", help="device profile name or YAML path")
    parser.add_argument("--kernel", default="learned_projection")
    parser.add_argument("--hash-length", type=positive_int, default=128)
    parser.add_argument("--checkpoint", default=None, help="fine-tuned hashed checkpoint (aimc_lsh.train)")
    parser.add_argument("--seeds", type=positive_int, default=2, help="programming seeds per point")
    parser.add_argument(
        "--drift-reference", choices=DRIFT_REFERENCES, default="random_sign",
        help="inputs of the global drift-compensation read-out (one_hot: aihwkit's). Default: %(default)s",
    )  # fmt: skip
    parser.add_argument("--batch-size", type=positive_int, default=256)
    parser.add_argument("--threads", type=positive_int, default=1)
    parser.add_argument("--out", default=None, help="write the accuracy table as CSV here")
    parser.add_argument("--energy-out", default=None, help="write the energy table as CSV here")
    return parser


def accuracy(model: torch.nn.Module, loader) -> float:
    """Top-1 accuracy in percent."""
    return 100 * al.eval.evaluate(model, loader, progress=False).accuracy


def over_time(model: torch.nn.Module, loader, seeds: int) -> dict[str, list[float]]:
    """Accuracy at every time of :data:`TIMES` for each programming seed."""
    results: dict[str, list[float]] = {label: [] for label in TIMES}
    for seed in range(seeds):
        program(model, seed=seed)
        for label, t in TIMES.items():
            results[label].append(accuracy(drift(model, t), loader))
    return results


def hashed_models(
    args: argparse.Namespace, backbone: torch.nn.Module, checkpoint: dict | None = None
) -> dict[str, torch.nn.Module]:
    """The hashed variants: ideal hardware and both placements on the device.

    Args:
        args: The parsed options (``--kernel``, ``--hash-length``, ``--device``, ``--drift-reference``).
        backbone: The pretrained digital model.
        checkpoint: A loaded fine-tuned checkpoint (``--checkpoint``), or None to hash ``backbone`` as is.

    """
    if checkpoint is not None:
        from aimc_lsh.train.robustness import hardware_model

        def build(device: str, placement: str) -> torch.nn.Module:
            return hardware_model(
                checkpoint, backbone, device=device, placement=placement, drift_reference=args.drift_reference
            )

    else:

        def build(device: str, placement: str) -> torch.nn.Module:
            config = HardwareConfig(
                kernel=args.kernel, hash_length=args.hash_length, device=device, placement=placement,
                drift_reference=args.drift_reference,
            )  # fmt: skip
            return al.nn.patch_model(backbone, config, skip=["conv1"])

    return {
        "hashed, ideal hardware": build("ideal", "codes_on_array"),
        f"hashed codes_on_array ({args.device})": build(args.device, "codes_on_array"),
        f"hashed projection_on_array ({args.device})": build(args.device, "projection_on_array"),
    }


def bitbybit_scores(models: dict[str, torch.nn.Module], acc_drop: dict[str, float]) -> dict[str, float]:
    """The bitbybit score of every model at its accuracy drop (a fraction).

    Returns:
        Name -> score; NaN for a model without hashed layers (the score counts hashed tiles) or without
        a drop in ``acc_drop``.

    """
    scores = {}
    for name, model in models.items():
        hashed = any(True for _ in al.nn.hashed_layers(model))
        scores[name] = (
            al.eval.bitbybit_score(model, acc_drop[name]) if hashed and name in acc_drop else math.nan
        )
    return scores


def prepare(
    args: argparse.Namespace,
) -> tuple[torch.nn.Module, al.data.ImageTensorDataset, dict[str, torch.nn.Module]]:
    """Load and check everything the options name, before anything is evaluated.

    Returns:
        The pretrained backbone, the test set and the models to evaluate on the device.

    Raises:
        FileNotFoundError: For missing data, weights, checkpoint or device file.
        ValueError: For an unknown device or kernel, a bad k, weights of another checksum, a corrupt
            checkpoint or data file, or a checkpoint that does not fit the backbone.

    """
    from aimc_lsh.train.checkpoint import load_checkpoint

    download = not args.no_download
    al.hardware.load_device(args.device)
    checkpoint = load_checkpoint(args.checkpoint) if args.checkpoint else None
    backbone = al.models.get_backbone("cifar10_resnet20", download=download)
    root = al.data.resolve_cifar_dir(args.data_root, "cifar10", download=download)
    data = al.data.load_dataset("cifar10", root=root, train=False, limit=args.limit)
    models = hashed_models(args, backbone, checkpoint)
    conventional_config = HardwareConfig(
        placement="conventional", device=args.device, drift_reference=args.drift_reference
    )
    models[f"conventional AIMC ({args.device}, 8-bit ADC)"] = convert_conventional(
        backbone, conventional_config
    )
    return backbone, data, models


def main(argv: list[str] | None = None) -> None:
    """Run the accuracy sweep over time and print the accuracy and energy tables.

    Bad options (an unknown device or kernel, a missing or corrupt file) stop with one line and exit
    status 2 before anything is evaluated.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    check_output_files(parser, {"--out": args.out})
    torch.set_num_threads(args.threads)
    try:
        backbone, data, models = prepare(args)
    except (FileNotFoundError, ValueError) as err:
        parser.error(" ".join(str(err).split()))
    loader = al.data.make_loader(data, batch_size=args.batch_size, augment=False, shuffle=False)
    digital = accuracy(backbone, loader)

    rows = [{"model": "digital FP32", **{label: f"{digital:.2f}" for label in TIMES}}]
    means: dict[str, dict[str, float]] = {}
    for name, model in models.items():
        results = over_time(model, loader, args.seeds)
        means[name] = {label: statistics.fmean(values) for label, values in results.items()}
        row = {"model": name}
        for label, values in results.items():
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            row[label] = f"{statistics.fmean(values):.2f} +- {spread:.2f}"
        rows.append(row)
        print(f"{name}: " + ", ".join(f"{label} {row[label]}" for label in TIMES), flush=True)
    table = pd.DataFrame(rows)
    source = (
        args.checkpoint
        or f"pretrained backbone hashed without fine-tuning ({args.kernel}, k={args.hash_length})"
    )
    print(
        f"\nTop-1 accuracy (%) on the CIFAR-10 exact test subset ({len(data)} images), "
        f"device {args.device}, mean +- std over {args.seeds} programming seeds; hashed model: {source}"
    )
    print(table.to_string(index=False))
    if args.out:
        atomic_write_text(args.out, table.to_csv(index=False))

    # Energy per image, all models programmed at seed 0; bitbybit score from the 1-day accuracy drop.
    example = next(iter(loader))[0][:2]
    energy_models = {"digital FP32": backbone}
    acc_drop = {}
    for name, model in models.items():
        if "ideal hardware" in name:
            continue  # same events as the codes_on_array row
        energy_models[name] = program(model, seed=0)
        acc_drop[name] = max(0.0, (digital - means[name]["1 day"]) / 100)
    energy = energy_report(energy_models, example)
    energy["bitbybit"] = energy["model"].map(bitbybit_scores(energy_models, acc_drop))
    columns = ["model", "cells_pJ", "drives_pJ", "sense_amps_pJ", "adcs_pJ", "popcount_pJ", "digital_pJ"]
    shown = energy[[*columns, "total_nJ", "bitbybit"]].copy()
    for column in columns[1:]:
        shown[column] = (shown[column] / 1e3).round(1)
    shown = shown.rename(columns={c: c.replace("_pJ", "_nJ") for c in columns[1:]})
    print("\nEnergy per image (nJ) by event class; bitbybit score at the 1-day accuracy drop")
    print(shown.round({"total_nJ": 1, "bitbybit": 3}).to_string(index=False))
    if args.energy_out:
        atomic_write_text(args.energy_out, energy.to_csv(index=False))


if __name__ == "__main__":
    main()
