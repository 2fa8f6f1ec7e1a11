"""Build the recovery results table of docs/training.md: hashed ResNet-20 before/after fine-tuning.

Every row runs ``studies/finetune.py`` in-process with a wall-clock budget, then scores the result
(bitbybit) and, for the hardware-aware-training comparison, evaluates it under PCM noise measured from
aihwkit at 1 day of drift (:func:`aimc_lsh.train.accuracy_under_noise`). Each row writes
``<out>/<row>.json`` and is skipped when that file exists (``--force`` reruns), so the table can be
built over several sessions; ``<out>/recovery_table.md`` and ``.csv`` are rewritten from all rows found.

    python studies/recovery_table.py --data-root /path/cifar10-exact-subset --weights resnet20.th \
        --budget 10 --threads 1 --out results/recovery

Accuracies are on the CIFAR-10 test split under ``--data-root`` (the exact subset: 1,017 images).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import finetune  # noqa: E402  (studies/finetune.py)

from aimc_lsh.studies.runner import check_output_dir  # noqa: E402
from aimc_lsh.train.config import DEFAULT_RECIPE  # noqa: E402
from aimc_lsh.utils import atomic_write_text  # noqa: E402

_SKIP_B8 = ["--lr-projection", "3e-4", "--skip", "conv1", "linear", "--batch-size", "8"]
"""The best measured untiled settings (the ``lrp3e-4-skip-b8`` rows build on them)."""


def _tiled_row(k: str, tile: int, ema: bool = True, bn_refresh: bool = False, bf16: bool = False) -> dict:
    """A learned-projection ``skip-b8`` row at ``k``, input tiles of ``tile`` channels.

    ``ema``: the weight average is returned; ``bn_refresh``: BatchNorm re-estimated at the end on every
    training image, kept if the ``--holdout-root`` images agree; ``bf16``: the tiles' products in bfloat16 in
    the training steps (``--product-dtype bfloat16``).
    """
    args = [*_SKIP_B8, "--input-tile-size", str(tile)] + (["--ema-decay", "0.999"] if ema else [])
    args += ["--product-dtype", "bfloat16"] if bf16 else []
    row = {"kernel": "learned_projection", "k": k, "args": args, "noise_eval": True, "budget_scale": 1.75}
    if bn_refresh:
        row["args"] += ["--final-bn-images", str(EXACT_SUBSET_TRAIN_IMAGES)]
        row["holdout"] = True
    return row


EXACT_SUBSET_TRAIN_IMAGES = 5085
"""Training images of the CIFAR-10 exact subset (the first 1,017 of each of the five batches)."""


ROWS: dict[str, dict] = {
    "rp-k64": {"kernel": "random_projection", "k": "64"},
    "lp-k64": {"kernel": "learned_projection", "k": "64"},
    "rp-k256": {"kernel": "random_projection", "k": "256", "noise_eval": True, "budget_scale": 1.75},
    "rp-k256-long": {
        "kernel": "random_projection",
        "k": "256",
        "init_from": "rp-k256",
        "recipe": "kd",
        "budget": 20.0,
    },  # fmt: skip
    "lp-k256": {"kernel": "learned_projection", "k": "256", "noise_eval": True, "budget_scale": 1.75},
    "lp-k256-lrp3e-4": {
        "kernel": "learned_projection",
        "k": "256",
        "args": ["--lr-projection", "3e-4"],
        "noise_eval": True,
        "budget_scale": 1.75,
    },  # fmt: skip
    "lp-k256-lrp3e-4-skip": {
        "kernel": "learned_projection",
        "k": "256",
        "args": ["--lr-projection", "3e-4", "--skip", "conv1", "linear"],
        "noise_eval": True,
        "budget_scale": 1.75,
    },  # fmt: skip
    "lp-k256-lrp3e-4-skip-b16": {
        "kernel": "learned_projection",
        "k": "256",
        "args": ["--lr-projection", "3e-4", "--skip", "conv1", "linear", "--batch-size", "16"],
        "noise_eval": True,
        "budget_scale": 1.75,
    },  # fmt: skip
    "lp-k256-lrp3e-4-skip-b8": {
        "kernel": "learned_projection",
        "k": "256",
        "args": _SKIP_B8,
        "noise_eval": True,
        "budget_scale": 1.75,
    },  # fmt: skip
    "lp-k256-lrp3e-4-skip-b8-t16": _tiled_row("256", 16, ema=False),
    "lp-k256-lrp3e-4-skip-b8-t16-ema": _tiled_row("256", 16),
    "lp-k64-lrp3e-4-skip-b8-t4-ema": _tiled_row("64", 4),
    "lp-k256-lrp3e-4-skip-b8-t8-ema": _tiled_row("256", 8),
    "lp-k256-lrp3e-4-skip-b8-t4-ema": _tiled_row("256", 4),
    "lp-k256-lrp3e-4-skip-b8-t4-ema-bnr": _tiled_row("256", 4, bn_refresh=True),
    "lp-k256-lrp3e-4-skip-b8-t4-ema-bf16": _tiled_row("256", 4, bf16=True),
    "lp-k256-lrp3e-4-skip-b8-t2-ema-bf16": _tiled_row("256", 2, bf16=True),
    "lp-k64-lrp3e-4-skip-b8-t2-ema": _tiled_row("64", 2),
    "lp-k64-lrp3e-4-skip-b8-t1-ema": _tiled_row("64", 1),
    "rp-k256-fit": {
        "kernel": "random_projection",
        "k": "256",
        "args": ["--orthogonal", "--fit-projections", "0.9", "--fit-only-where-better"],
        "noise_eval": True,
        "budget_scale": 1.75,
    },  # fmt: skip
    "rp-kout": {"kernel": "random_projection", "k": "out"},
    "lp-kout": {"kernel": "learned_projection", "k": "out"},
    "rp-k256-hwa": {
        "kernel": "random_projection",
        "k": "256",
        "hwa": True,
        "noise_eval": True,
        "budget_scale": 1.75,
    },  # fmt: skip
    "conv-fp32": {"conventional": True, "budget": 0.0, "noise_eval": True},
    "conv-ft": {"conventional": True, "noise_eval": True, "budget_scale": 0.5},
    "conv-hwa": {"conventional": True, "hwa": True, "noise_eval": True, "budget_scale": 0.5},
}
"""Row name -> settings. ``rp``/``lp``: random / learned projection; ``kout``: k = out-channels per layer;
``long``: continues ``rp-k256`` for 20 more minutes with distillation (times in the table include the first
run); ``hwa``: hardware-aware training with PCM (1 day) noise; ``conv``: conventional real-weight baseline
(digital layers, cheaper to train: half the budget; distillation recipe). The k = 256 rows (random and
learned projection) get 1.75x the budget (the headline target is at k = 256). ``lrp3e-4``: the projection's
learning rate 3e-4 instead of the default 1e-4 (better at a fixed step count; see docs/training.md);
``skip``: the first convolution and the classifier stay digital (the 18 block convolutions hashed); ``b16``:
16 images per optimiser step instead of 64 (more, noisier steps for the same images; recovered more at the
same epochs); ``t16``: input tiles of 16 channels, each with its own projection and k bits (the partial
outputs summed; the HDOPs do not change); ``t4``: tiles of 4 channels (at k = 64: efficiency term 0.93
against 0.60 at k = 256, with as many code bits per output as 16-channel tiles at k = 256 in the 64-channel
layers); ``t8`` / ``t2``: tiles of 8 / 2 channels (twice the code bits per output of ``t16`` / ``t4``, a
quarter to a third less estimation error before training, about 1.5x the step cost); ``t4`` at k = 256:
tiles of 4 channels (0.34 relative error per layer before training against 0.49 for tiles of 8, about 1.6x
their step cost; see docs/training.md); ``t1`` at k = 64: every input channel its own 64-bit projection of
its 3x3 window (0.30-0.35 relative error before training against 0.45-0.51 for tiles of 2, about 1.6x their
step cost; not yet run); ``ema``: the returned
model is the average of the weights over the fully hashed steps (``--ema-decay 0.999``); ``bnr``: then the
BatchNorm statistics re-estimated on all 5,085 augmented training images, kept only if the last 1,000 training
images of ``--holdout-root`` agree (measured on t4 at k = 256: not a gain, see docs/training.md); ``bf16``:
the tiles' projection and code agreements in bfloat16 products (``--product-dtype bfloat16``; 1.6x the steps
on a CPU with AVX512-BF16, emulated and slower elsewhere; measured at k = 256 on t4: 88.30 / 86.63 / 88.10%,
on t2: 87.22 / 88.79 / 88.89 / 88.30%); ``fit``: orthonormal projection rows drawn inside each layer's input
subspace (90% of the second moment, fitted on the first 512 training images) where that estimates the layer
better, as in the default checkpoints.
"""

COLUMNS = (
    "row", "kernel", "k", "recipe", "hwa", "fp32_%", "hashed_before_%", "after_calib_%", "after_%",
    "drop_pts", "pcm1d_codes_%", "pcm1d_proj_%", "pcm1d_conv_%", "pcm1d_recal_%", "pcm1d_proxy_%", "steps",
    "epochs", "wall_min", "cpu_min", "bitbybit", "before_bn_refresh_%", "bn_refresh_holdout_%",
)  # fmt: skip


def row_budget(name: str, args: argparse.Namespace) -> float:
    """Minutes of wall clock for the row: its own budget, or ``--budget`` times its scale."""
    spec = ROWS[name]
    return spec.get("budget", args.budget * spec.get("budget_scale", 1.0))


def row_argv(name: str, args: argparse.Namespace, out: Path) -> list[str]:
    """The ``studies/finetune.py`` command line that trains the row."""
    spec = ROWS[name]
    budget = row_budget(name, args)
    argv = [
        "--data-root", args.data_root, "--recipe", args.recipe, "--epochs", str(args.epochs), "--quiet",
        "--checkpoint", str(out / f"{name}.pt"), "--log-csv", str(out / f"{name}.csv"), "--resume",
        "--seed", str(args.seed),
    ]  # fmt: skip
    if args.weights:
        argv += ["--weights", args.weights]
    if args.train_root:
        argv += ["--train-root", args.train_root]
    if args.threads:
        argv += ["--threads", str(args.threads)]
    if spec.get("conventional"):
        argv += ["--conventional", "--recipe", "kd"]
    else:
        argv += ["--kernel", spec["kernel"], "--k", spec["k"]]
    if spec.get("init_from"):
        argv += ["--init-from", str(out / f"{spec['init_from']}.pt")]
    if spec.get("recipe"):
        argv += ["--recipe", spec["recipe"]]
    argv += spec.get("args", [])
    if spec.get("hwa"):
        argv += ["--device-profile", "pcm", "--hwa-time", "86400"]
    if spec.get("holdout"):
        argv += ["--holdout-root", args.holdout_root]
    if budget == 0:
        argv += ["--epochs", "0", "--recipe", "ce"]
    else:
        argv += ["--time-budget", str(budget)]
    return argv


def run_row(name: str, args: argparse.Namespace, out: Path) -> dict:
    """Train and score one row; returns its JSON record."""
    spec = ROWS[name]
    summary = finetune.main(row_argv(name, args, out))
    record = {"row": name, **summary, "budget_min": row_budget(name, args)}
    if spec.get("noise_eval"):
        record.update(noise_evaluation(out / f"{name}.pt", args))
    atomic_write_text(out / f"{name}.json", json.dumps(record, indent=2) + "\n")
    return record


def reevaluate_row(name: str, args: argparse.Namespace, out: Path) -> dict:
    """Redo the PCM evaluation of a finished row from its checkpoint; the training figures are kept."""
    record = json.loads((out / f"{name}.json").read_text())
    record.update(noise_evaluation(out / f"{name}.pt", args))
    atomic_write_text(out / f"{name}.json", json.dumps(record, indent=2) + "\n")
    return record


def bn_images_of(args: argparse.Namespace) -> torch.Tensor:
    """The ``--bn-images`` augmented training images (loaded once per process)."""
    return _bn_images(args.train_root or args.data_root, args.bn_images)


@functools.lru_cache(maxsize=1)
def _bn_images(root: str, count: int) -> torch.Tensor:
    from aimc_lsh.data import calibration_images

    return calibration_images("cifar10", count=count, root=root)


def noise_evaluation(checkpoint: Path, args: argparse.Namespace) -> dict:
    """Accuracy under PCM at 1 day of drift: hardware pipeline and statistical proxy.

    The programmed-tile pipeline of aimc_lsh.hardware runs both hashed placements (or the conventional
    placement), and the first of them again with BatchNorm re-estimated on ``--bn-images`` training images
    through the drifted arrays (AdaBS); the proxy samples the noise levels used in hardware-aware training.
    """
    from aimc_lsh.data import load_dataset
    from aimc_lsh.hardware import HardwareConfig
    from aimc_lsh.models import get_backbone
    from aimc_lsh.train import (
        accuracy_under_noise,
        load_checkpoint,
        model_from_checkpoint,
        noise_spec_for_device,
    )
    from aimc_lsh.train.robustness import hardware_accuracy

    ckpt = load_checkpoint(checkpoint)
    test = load_dataset("cifar10", root=args.data_root)
    reference = HardwareConfig(device="pcm").effective_drift_reference  # what hardware_accuracy reads with
    record: dict = {"pcm_evaluated_on": datetime.date.today().isoformat(), "pcm_drift_reference": reference}
    placements = ("codes_on_array", "projection_on_array") if ckpt["layers"] else ("conventional",)
    runs = [(f"pcm_1day_{placement}", placement, None) for placement in placements]
    if args.bn_images:
        runs.append(("pcm_1day_recalibrated", placements[0], bn_images_of(args)))
        record["pcm_recalibration"] = {"placement": placements[0], "images": args.bn_images}
    for key, placement, bn_images in runs:
        t0 = time.perf_counter()
        try:
            acc = hardware_accuracy(
                ckpt, get_backbone("cifar10_resnet20", path=args.weights), test, device="pcm",
                placement=placement, t_inference=86_400.0, seeds=(0, 1), bn_images=bn_images,
            )  # fmt: skip
            record[key] = {"mean": acc.mean, "std": acc.std, "repeats": acc.repeats,
                           "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
        except Exception as err:  # noqa: BLE001 - record why the hardware path is unavailable
            record[key] = {"error": f"{type(err).__name__}: {err}"}
    model = model_from_checkpoint(ckpt, get_backbone("cifar10_resnet20", path=args.weights))
    noise = noise_spec_for_device("pcm", 86_400.0)
    acc = accuracy_under_noise(model, test, noise, repeats=2)
    record["pcm_1day_proxy"] = {
        "mean": acc.mean,
        "std": acc.std,
        "repeats": acc.repeats,
        "noise": noise.to_dict(),
    }
    return record


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.2f}"


def _refresh_cell(refresh: dict | None) -> str:
    """``kept 84.10 -> 85.30`` (held-out accuracy before -> after the final BatchNorm refresh), or empty."""
    if not refresh:
        return ""
    verdict = "kept" if refresh["kept"] else "rejected"
    if refresh.get("holdout_before") is None:
        return f"{verdict} (no held-out images)"
    return f"{verdict} {_pct(refresh['holdout_before'])} -> {_pct(refresh['holdout_after'])}"


def table(records: list[dict]) -> tuple[str, str]:
    """Markdown and CSV text of the records."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    csv_lines = [",".join(COLUMNS)]
    for r in records:
        # records written before the field existed trained on the exact subset (5,085 images, batch 64)
        steps_per_epoch = r.get("steps_per_epoch") or 5085 // 64
        drop = None
        if r.get("final_accuracy") is not None and r.get("fp32_accuracy") is not None:
            drop = 100 * (r["fp32_accuracy"] - r["final_accuracy"])

        def noisy(key: str, r: dict = r) -> str:
            v = r.get(key)
            return "" if not v or "mean" not in v else f"{100 * v['mean']:.2f} ± {100 * v['std']:.2f}"

        bb = r.get("bitbybit_score")
        cells = [
            r["row"], r.get("kernel") or "conventional", str(r.get("k") if r.get("kernel") else "-"),
            r.get("recipe", ""), "pcm" if r.get("noise") else "no", _pct(r.get("fp32_accuracy")),
            _pct(r.get("initial_accuracy")), _pct(r.get("calibrated_accuracy")),
            _pct(r.get("final_accuracy")),
            "" if drop is None else f"{drop:.2f}",
            noisy("pcm_1day_codes_on_array"), noisy("pcm_1day_projection_on_array"),
            noisy("pcm_1day_conventional"), noisy("pcm_1day_recalibrated"), noisy("pcm_1day_proxy"),
            str(r.get("steps", 0) + (r.get("prior_steps") or 0)),
            f"{(r.get('steps', 0) + (r.get('prior_steps') or 0)) / steps_per_epoch:.1f}",
            f"{(r.get('elapsed_s', 0) + (r.get('prior_elapsed_s') or 0)) / 60:.1f}",
            f"{(r.get('cpu_s', 0) + (r.get('prior_cpu_s') or 0)) / 60:.1f}",
            "" if bb is None else f"{bb:.3f}",
            _pct(r.get("accuracy_before_bn_refresh")), _refresh_cell(r.get("bn_refresh")),
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
        csv_lines.append(",".join(c.replace(",", ";") for c in cells))
    return "\n".join(lines) + "\n", "\n".join(csv_lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Run the requested rows and rewrite the table."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", required=True, help="CIFAR-10 root (exact subset) for training and testing")
    p.add_argument("--train-root", default=None, help="other CIFAR-10 root for training (e.g. the JPEG set)")
    p.add_argument("--weights", default=None, help="akamaster ResNet-20 weights file")
    p.add_argument(
        "--holdout-root", default=None,
        help="CIFAR-10 root whose last 1,000 training images decide the final BatchNorm refresh of the "
        "-bnr rows (the JPEG full set: the exact subset trains on the first 1,017 images of each batch)",
    )  # fmt: skip
    p.add_argument("--rows", nargs="*", default=list(ROWS), help=f"rows to run: {', '.join(ROWS)}")
    p.add_argument("--budget", type=float, default=10.0, help="minutes of wall clock per row")
    p.add_argument("--epochs", type=float, default=100.0, help="epoch cap per row (the budget usually binds)")
    p.add_argument("--recipe", default=DEFAULT_RECIPE)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="results/recovery")
    p.add_argument(
        "--bn-images", type=int, default=1024,
        help="PCM evaluation: also re-estimate BatchNorm on this many augmented training images after "
        "drift (the pcm1d_recal_%% column: codes on the array, or the conventional placement); 0: skip",
    )  # fmt: skip
    p.add_argument("--force", action="store_true", help="rerun rows whose JSON exists")
    p.add_argument(
        "--reevaluate", action="store_true",
        help="rows whose JSON exists: redo only their PCM evaluation (rows that have one) from the saved "
        "checkpoint, e.g. after a change of the hardware model; training figures are kept",
    )  # fmt: skip
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.bn_images < 0:
        p.error(f"--bn-images must be >= 0 (0: no re-estimation), got {args.bn_images}")
    unknown = [r for r in args.rows if r not in ROWS]
    if unknown:
        p.error(f"unknown rows {unknown}; allowed: {', '.join(ROWS)}")
    needs_holdout = [r for r in args.rows if ROWS[r].get("holdout")]
    if needs_holdout and not args.holdout_root:
        p.error(f"rows {needs_holdout} need --holdout-root (e.g. the JPEG full set's folder)")
    try:  # a file where the folder belongs, or no write permission: one line, before any training
        out = check_output_dir(args.out)
    except ValueError as err:
        p.error(str(err))
    if args.bn_images:
        try:  # before hours of training, not after (and loaded once for every row)
            bn_images_of(args)
        except (ValueError, OSError) as err:
            p.error(f"--bn-images: {err}")
    for name in args.rows:
        if (out / f"{name}.json").exists() and not args.force:
            if args.reevaluate and ROWS[name].get("noise_eval"):
                reevaluate_row(name, args, out)
            continue
        run_row(name, args, out)
    records = [json.loads((out / f"{n}.json").read_text()) for n in ROWS if (out / f"{n}.json").exists()]
    md, csv_text = table(records)
    atomic_write_text(out / "recovery_table.md", md)
    atomic_write_text(out / "recovery_table.csv", csv_text)
    print(md)


if __name__ == "__main__":
    main()
