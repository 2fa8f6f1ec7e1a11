"""Evaluate a pretrained backbone (and optionally hashed versions of it) on its test set.

Examples::

    python studies/evaluate_backbone.py --data-root ../shared/data/cifar10-exact-subset
    python studies/evaluate_backbone.py --hash-length 64 256 1024 --skip conv1 linear
    python studies/evaluate_backbone.py --backbone digits_cnn --hash-length 32 128

Prints top-1 accuracy and the image count for the FP32 model, and for every ``--hash-length`` the
accuracy of the model patched with :func:`aimc_lsh.nn.patch_model` (ideal digital hashing), its drop
and the bitbybit score. Weights come from ``--weights``, ``$AIMC_LSH_MODELS``, the cache, or a
download; data from ``--data-root`` or ``$AIMC_LSH_DATA``.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from aimc_lsh.data import make_loader, resolve_data_root
from aimc_lsh.eval import bitbybit_score, evaluate
from aimc_lsh.kernels import HashConfig
from aimc_lsh.models import backbone_names, backbone_spec, get_backbone
from aimc_lsh.studies.cli import check_output_files, positive_int
from aimc_lsh.utils import atomic_write_text


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="cifar10_resnet20", choices=backbone_names())
    parser.add_argument("--data-root", default=None, help="CIFAR data root (default: $AIMC_LSH_DATA)")
    parser.add_argument("--weights", default=None, help="weights file or folder (default: search)")
    parser.add_argument("--no-download", action="store_true", help="never download weights or data")
    parser.add_argument("--batch-size", type=positive_int, default=256)
    parser.add_argument(
        "--limit", type=positive_int, default=None, help="evaluate only the first N test images"
    )
    parser.add_argument(
        "--hash-length", type=positive_int, nargs="*", default=[], help="also evaluate hashed models"
    )
    parser.add_argument("--kernel", default="random_projection", help="hash kernel for --hash-length")
    parser.add_argument("--skip", nargs="*", default=[], help="module paths left digital when hashing")
    parser.add_argument("--seed", type=int, default=0, help="projection seed for hashed models")
    parser.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    check_output_files(parser, {"--json": args.json})
    return args


def main(argv: list[str] | None = None) -> dict:
    """Run the evaluation and print one line per model; return the results as a dict."""
    args = parse_args(argv)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _run(args)
    finally:
        torch.set_num_threads(previous_threads)


def _hash_configs(args: argparse.Namespace, model: torch.nn.Module) -> list[HashConfig]:
    """The config of every ``--hash-length``, with ``--kernel`` and ``--skip`` checked before any evaluation.

    Raises:
        ValueError: For an unknown kernel or a ``--skip`` path that names no layer of ``model``.

    """
    from aimc_lsh.nn import check_layer_paths

    configs = [HashConfig(kernel=args.kernel, hash_length=k, seed=args.seed) for k in args.hash_length]
    if configs:
        check_layer_paths(model, skip=args.skip)
    return configs


def _run(args: argparse.Namespace) -> dict:
    spec = backbone_spec(args.backbone)
    download = not args.no_download
    model = get_backbone(args.backbone, path=args.weights, download=download)
    configs = _hash_configs(args, model)
    root = resolve_data_root(spec.dataset, args.data_root, download=download)
    loader = make_loader(spec.dataset, root=root, train=False, batch_size=args.batch_size, limit=args.limit)
    progress = not args.no_progress
    base = evaluate(model, loader, progress=progress, desc=args.backbone)
    print(
        f"{args.backbone} FP32: accuracy {base.percent:.2f}% on {base.n_images} images "
        f"({base.n_correct} correct)"
    )
    results = {
        "backbone": args.backbone,
        "n_images": base.n_images,
        "fp32_accuracy": base.accuracy,
        "hashed": [],
    }
    if configs:
        from aimc_lsh.nn import patch_model

        for config in configs:
            k = config.hash_length
            hashed = patch_model(model, config, skip=args.skip)
            res = evaluate(hashed, loader, progress=progress, desc=f"k={k}")
            drop = base.accuracy - res.accuracy
            try:
                score: float | None = bitbybit_score(hashed, drop)
            except ValueError as err:  # e.g. HDOPs < FLOPs: the hackathon did not allow it
                score, reason = None, str(err)
            score_text = f"{score:.4f}" if score is not None else f"n/a ({reason.split(':')[0]})"
            print(
                f"{args.backbone} hashed k={k} ({args.kernel}): accuracy {res.percent:.2f}% "
                f"on {res.n_images} images, drop {100 * drop:.2f} points, bitbybit score {score_text}"
            )
            results["hashed"].append(
                {
                    "hash_length": k,
                    "kernel": args.kernel,
                    "accuracy": res.accuracy,
                    "drop": drop,
                    "score": score,
                }
            )
    if args.json:
        atomic_write_text(args.json, json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    try:
        main()
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"error: {err}")
