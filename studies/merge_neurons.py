r"""Merge a pretrained model's neurons with LSH buckets at several ratios; report size, FLOPs and accuracy.

Examples (one CPU thread)::

    # CIFAR-10 ResNet-20 at 75% and 50% of the mergeable channels, no fine-tuning
    AIMC_LSH_DATA=/path/to/cifar10 AIMC_LSH_MODELS=/path/to/weights \\
        python studies/merge_neurons.py --dataset cifar10 --ratios 0.75 0.5 --out results/merge_cifar10.csv

    # digits CNN, then 100 steps of fine-tuning of each merged model (distilled from the original),
    # and merge-aware training with rehashing before merging
    python studies/merge_neurons.py --dataset digits --ratios 0.5 0.25 --finetune-steps 100 \\
        --merge-aware-steps 100

For every ratio the script plans SimHash buckets (:func:`aimc_lsh.nn.merging.plan_merges`, activation
weights from ``--calib-images`` training images), merges, and evaluates the merged model on the test
split. Only channels inside ``conv -> BN -> ReLU -> conv`` chains are merged (block-internal channels of
a ResNet); the residual stream keeps its width. Rows (``--out``, written atomically): ``method`` is
``merge`` (merged as is), ``merge+finetune`` (then ``--finetune-steps`` of
:func:`aimc_lsh.train.fine_tune`), ``merge_aware`` (``--merge-aware-steps`` of cohesion training with
rehashing before the merge, :func:`aimc_lsh.train.merge_aware.merge_aware_fine_tune`) and
``merge_aware+finetune``. With ``--save-dir`` every row's network is also saved as a checkpoint
(``<method>_<ratio>.pt``, with its narrower layer widths) that the hardware studies evaluate on the
device: ``python studies/drift_sweep.py --device pcm --checkpoint <dir>/merge_0.75.pt`` (conventional
tiles and hashed placements), ``python studies/k_sweep.py --checkpoint <dir>/merge_0.75.pt``.
Parameters count every parameter of the model, FLOPs are ``2 x`` the conv/linear multiply-accumulates
per image (:func:`aimc_lsh.eval.complexity.count_params_flops`).
"""

from __future__ import annotations

import argparse
import copy
import csv
import io
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aimc_lsh.data import load_dataset, make_loader, resolve_data_root  # noqa: E402
from aimc_lsh.eval import evaluate  # noqa: E402
from aimc_lsh.eval.complexity import count_params_flops  # noqa: E402
from aimc_lsh.models import get_backbone  # noqa: E402
from aimc_lsh.nn.merging import MergeConfig, apply_merge_plan, plan_merges  # noqa: E402
from aimc_lsh.studies.runner import check_output_file  # noqa: E402
from aimc_lsh.train import save_checkpoint  # noqa: E402
from aimc_lsh.utils import atomic_write_text  # noqa: E402

DEFAULT_BACKBONES = {"digits": "digits_cnn", "cifar10": "cifar10_resnet20"}
INPUT_SHAPES = {"digits": (1, 8, 8), "cifar10": (3, 32, 32)}
FIELDS = (
    "dataset",
    "backbone",
    "method",
    "target_ratio",
    "seed",
    "chains",
    "channels_before",
    "channels_after",
    "kept_fraction",
    "params_before",
    "params_after",
    "param_reduction",
    "flops_before",
    "flops_after",
    "flop_reduction",
    "n_test",
    "accuracy_before",
    "accuracy_after",
    "accuracy_drop",
    "finetune_steps",
    "merge_aware_steps",
    "rehashes",
    "wall_s",
    "checkpoint",
)
"""CSV columns (accuracies are fractions; reductions are fractions saved, 0.25 = 25% fewer)."""


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--dataset", choices=sorted(DEFAULT_BACKBONES), default="cifar10", help="data and model family"
    )
    p.add_argument("--backbone", default=None, help="registry name (default: digits_cnn / cifar10_resnet20)")
    p.add_argument(
        "--weights", default=None, help="weights file or folder (default: $AIMC_LSH_MODELS, cache)"
    )
    p.add_argument("--data-root", default=None, help="CIFAR data root (default: $AIMC_LSH_DATA)")
    p.add_argument("--no-download", action="store_true", help="never download weights or data")
    p.add_argument("--ratios", type=float, nargs="+", default=[0.75, 0.5], help="fractions of channels kept")
    p.add_argument("--seed", type=int, default=0, help="seed of the SimHash projections")
    p.add_argument("--skip", nargs="*", default=[], help="module paths (or prefixes) never merged")
    p.add_argument("--max-bits", type=int, default=64, help="longest fingerprint considered per layer")
    p.add_argument(
        "--calib-images", type=int, default=256, help="training images for activation weights (0: uniform)"
    )
    p.add_argument("--eval-limit", type=int, default=None, help="evaluate on the first N test images only")
    p.add_argument("--train-limit", type=int, default=None, help="train on the first N training images only")
    p.add_argument("--finetune-steps", type=int, default=0, help="fine-tuning steps after merging (0: none)")
    p.add_argument("--finetune-lr", type=float, default=1e-3, help="Adam learning rate of the fine-tuning")
    p.add_argument("--kd-alpha", type=float, default=0.9, help="distillation weight (teacher: the original)")
    p.add_argument("--merge-aware-steps", type=int, default=0, help="cohesion training steps before merging")
    p.add_argument("--cohesion", type=float, default=10.0, help="weight of the bucket-cohesion penalty")
    p.add_argument("--rehash-threshold", type=float, default=0.1, help="changed-bit fraction that rehashes")
    p.add_argument("--rehash-interval", type=int, default=20, help="steps between fingerprint checks")
    p.add_argument("--batch-size", type=int, default=64, help="training batch size")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--out", default=None, help="CSV file for the rows (written atomically)")
    p.add_argument(
        "--save-dir",
        default=None,
        help="folder for one checkpoint per row (<method>_<ratio>.pt): the merged network, which the "
        "drift/k/noise/ADC studies take with --checkpoint (on conventional tiles, or hashed)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _check(args: argparse.Namespace) -> None:
    if args.out:
        check_output_file(args.out, "--out")
    if not args.ratios or any(not 0 < r <= 1 for r in args.ratios):
        raise ValueError(f"--ratios must be fractions in (0, 1], got {args.ratios}")
    for name in ("calib_images", "finetune_steps", "merge_aware_steps"):
        if getattr(args, name) < 0:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    for name in ("threads", "batch_size", "rehash_interval", "max_bits", "eval_limit", "train_limit"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    # the training options too: checked here, not minutes later when the first model is trained
    if not 0 <= args.kd_alpha <= 1:
        raise ValueError(f"--kd-alpha must be a number in [0, 1], got {args.kd_alpha}")
    if not 0 <= args.rehash_threshold < 1:
        threshold = args.rehash_threshold
        raise ValueError(f"--rehash-threshold must be a fraction of bits in [0, 1), got {threshold}")
    for name in ("finetune_lr", "cohesion"):
        value = getattr(args, name)
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"--{name.replace('_', '-')} must be a finite number >= 0, got {value}")


def _accuracy(model: torch.nn.Module, test_set, progress: bool, desc: str) -> float:
    loader = make_loader(test_set, batch_size=256, augment=False, shuffle=False)
    return evaluate(model, loader, progress=progress, desc=desc).accuracy


def _finetune(model, teacher, train_set, args: argparse.Namespace) -> torch.nn.Module:
    from aimc_lsh.train import TrainConfig, fine_tune

    steps_per_epoch = len(train_set) // args.batch_size
    config = TrainConfig.for_recipe(
        "kd",
        epochs=args.finetune_steps / steps_per_epoch,
        batch_size=args.batch_size,
        lr_weights=args.finetune_lr,
        kd_alpha=args.kd_alpha,
        warmup_steps=min(20, args.finetune_steps // 5),
        augment=args.dataset != "digits",
        eval_every=0,
        progress=not args.no_progress,
        seed=args.seed,
    )
    teacher = copy.deepcopy(teacher)  # fine_tune freezes its teacher's parameters
    return fine_tune(model, train_set, config, teacher=teacher, fp32_accuracy=0.0).model.eval()


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the study; print one line per row and return the rows."""
    args = build_parser().parse_args(argv)
    _check(args)
    previous = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _run(args)
    finally:
        torch.set_num_threads(previous)


def _run(args: argparse.Namespace) -> list[dict]:
    backbone = args.backbone or DEFAULT_BACKBONES[args.dataset]
    download = not args.no_download
    model = get_backbone(backbone, path=args.weights, download=download).eval()
    root = resolve_data_root(args.dataset, args.data_root, download=download)
    test_set = load_dataset(args.dataset, root=root, train=False, limit=args.eval_limit)
    training = args.finetune_steps > 0 or args.merge_aware_steps > 0
    train_limit = args.train_limit if training else max(args.calib_images, 1)
    train_set = load_dataset(args.dataset, root=root, train=True, limit=train_limit)
    if training and args.batch_size > len(train_set):
        raise ValueError(f"--batch-size {args.batch_size} exceeds the {len(train_set)} training images")
    calib = train_set.tensors()[0][: args.calib_images].split(64) if args.calib_images else None
    progress = not args.no_progress
    shape = INPUT_SHAPES[args.dataset]
    base_cost = count_params_flops(model, shape)
    base_acc = _accuracy(model, test_set, progress, backbone)
    print(f"{backbone}: accuracy {100 * base_acc:.2f}% on {len(test_set)} images, {base_cost.params} params")
    rows: list[dict] = []

    def record(method: str, ratio: float, merged, report, started: float, rehashes: int = 0, **steps) -> None:
        cost = count_params_flops(merged, shape)
        acc = _accuracy(merged, test_set, progress, f"{method} {ratio}")
        p_red, f_red = base_cost.reduction(cost)
        row = {
            "dataset": args.dataset,
            "backbone": backbone,
            "method": method,
            "target_ratio": ratio,
            "seed": args.seed,
            "chains": len(report.layers),
            "channels_before": report.channels_before,
            "channels_after": report.channels_after,
            "kept_fraction": round(report.kept_fraction, 4),
            "params_before": base_cost.params,
            "params_after": cost.params,
            "param_reduction": round(p_red, 4),
            "flops_before": base_cost.flops,
            "flops_after": cost.flops,
            "flop_reduction": round(f_red, 4),
            "n_test": len(test_set),
            "accuracy_before": base_acc,
            "accuracy_after": acc,
            "accuracy_drop": round(base_acc - acc, 6),
            "finetune_steps": steps.get("finetune", 0),
            "merge_aware_steps": steps.get("aware", 0),
            "rehashes": rehashes,
            "wall_s": round(time.perf_counter() - started, 2),
            "checkpoint": None,
        }
        if args.save_dir:
            path = Path(args.save_dir) / f"{method}_{ratio:g}.pt"
            meta = {"source": "studies/merge_neurons.py", "argv": sys.argv, "row": dict(row)}
            save_checkpoint(path, merged, backbone=backbone, fp32_accuracy=base_acc, meta=meta)
            row["checkpoint"] = str(path)
        rows.append(row)
        print(
            f"ratio {ratio} {method}: channels {row['channels_before']} -> {row['channels_after']}, params "
            f"-{100 * p_red:.1f}%, FLOPs -{100 * f_red:.1f}%, accuracy {100 * acc:.2f}% "
            f"(drop {100 * row['accuracy_drop']:.2f} points), {row['wall_s']} s"
        )
        if args.out:
            _write(args.out, rows)

    for ratio in args.ratios:
        config = MergeConfig(
            target_ratio=ratio, seed=args.seed, skip=tuple(args.skip), max_bits=args.max_bits
        )
        started = time.perf_counter()
        merged, report = apply_merge_plan(model, plan_merges(model, config, calib))
        record("merge", ratio, merged, report, started)
        if args.finetune_steps:
            tuned = _finetune(merged, model, train_set, args)
            record("merge+finetune", ratio, tuned, report, started, finetune=args.finetune_steps)
        if args.merge_aware_steps:
            from aimc_lsh.train.merge_aware import MergeAwareConfig, merge_aware_fine_tune

            started = time.perf_counter()
            aware = MergeAwareConfig(
                steps=args.merge_aware_steps,
                batch_size=args.batch_size,
                lr=args.finetune_lr,
                cohesion=args.cohesion,
                rehash_threshold=args.rehash_threshold,
                rehash_interval=args.rehash_interval,
                augment=args.dataset != "digits",
                calib_images=args.calib_images,
                seed=args.seed,
            )
            result = merge_aware_fine_tune(copy.deepcopy(model), train_set, config, aware)
            rehashes = result.tracker.rehashes
            record("merge_aware", ratio, result.merged, result.report, started, rehashes, aware=aware.steps)
            if args.finetune_steps:
                tuned = _finetune(result.merged, model, train_set, args)
                steps = {"aware": aware.steps, "finetune": args.finetune_steps}
                record("merge_aware+finetune", ratio, tuned, result.report, started, rehashes, **steps)
    return rows


def _write(path: str, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


if __name__ == "__main__":
    try:
        main()
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"error: {err}")
