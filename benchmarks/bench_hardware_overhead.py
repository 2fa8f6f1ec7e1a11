"""Cost of the hardware simulation on ResNet-20 / CIFAR-10 (exact test subset).

(a) Hashed ResNet-20 forward with every non-ideality on (``pcm``: programming noise, drift to 1 day,
    accumulated and per-read noise, sense-amp offsets and noise, 8-bit ADC, drift compensation) versus
    the same hashed forward on ideal hardware (``ideal`` device, exact comparators and ADCs), for both
    placements; target <= 1.2x. The pure digital hashed forward (``HashConfig``) is shown for reference.
(b) Conventional-AIMC baseline (real weights on ``pcm`` tiles, 8-bit ADC): the fast path
    (``aimc_lsh.nn.conventional``) versus aihwkit's own ``convert_to_analog`` model on the same device
    (``backend="aihwkit"``); target >= 10x faster, same accuracy within the seed-to-seed spread.

Run: ``.venv/bin/python benchmarks/bench_hardware_overhead.py`` (``--help`` for options). Timings are
the minimum over interleaved repetitions with ``torch.set_num_threads(--threads)``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

import aimc_lsh as al
from aimc_lsh.hardware import HardwareConfig, drift, program
from aimc_lsh.kernels import HashConfig
from aimc_lsh.nn.conventional import convert_conventional
from aimc_lsh.utils import atomic_write_text, tune_allocator

DAY = 86_400.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-root", default=None, help="CIFAR-10 root (default: $AIMC_LSH_DATA)")
    parser.add_argument("--batch-size", type=int, default=128, help="images per timed forward")
    parser.add_argument("--reps", type=int, default=5, help="interleaved repetitions per timing")
    parser.add_argument("--hash-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--limit", type=int, default=None, help="images for the accuracy part (default: all)")
    parser.add_argument("--fast-seeds", type=int, default=3, help="programming seeds, fast conventional path")
    parser.add_argument("--aihwkit-seeds", type=int, default=2, help="programming seeds, aihwkit model")
    parser.add_argument("--out", default=None, help="also write the figures as JSON here")
    return parser.parse_args()


def time_models(models: dict[str, torch.nn.Module], x: torch.Tensor, reps: int) -> dict[str, float]:
    """Minimum forward time (s) of each model, repetitions interleaved across models."""
    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.no_grad():
        for model in models.values():
            model(x)  # warm-up
        for _ in range(reps):
            for name, model in models.items():
                start = time.perf_counter()
                model(x)
                times[name].append(time.perf_counter() - start)
    return {name: min(values) for name, values in times.items()}


def accuracy(model: torch.nn.Module, loader) -> float:
    """Top-1 accuracy in percent."""
    return 100 * al.eval.evaluate(model, loader, progress=False).accuracy


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    tune_allocator()  # as the studies, evaluate and fine_tune do: no page-fault storms
    backbone = al.models.get_backbone("cifar10_resnet20")
    data = al.data.load_dataset("cifar10", root=args.data_root, train=False, limit=args.limit)
    loader = al.data.make_loader(data, batch_size=args.batch_size, augment=False, shuffle=False)
    x = next(iter(loader))[0]
    k = args.hash_length
    results: dict = {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "threads": args.threads,
        "batch_size": int(x.shape[0]),
        "torch": torch.__version__,
    }

    # ---------------------------------------------------------------- (a) hashed overhead
    models = {
        "hashed digital (HashConfig)": al.nn.patch_model(backbone, HashConfig(hash_length=k), skip=["conv1"])
    }
    for placement in ("codes_on_array", "projection_on_array"):
        ideal = HardwareConfig(hash_length=k, placement=placement, device="ideal")
        noisy = HardwareConfig(hash_length=k, placement=placement, device="pcm")
        models[f"{placement} ideal"] = program(al.nn.patch_model(backbone, ideal, skip=["conv1"]), seed=0)
        models[f"{placement} pcm"] = drift(
            program(al.nn.patch_model(backbone, noisy, skip=["conv1"]), seed=0), DAY
        )
    times = time_models(models, x, args.reps)
    print(f"(a) hashed ResNet-20 forward, k={k}, batch {x.shape[0]}, {args.threads} thread(s)")
    print(f"    {'model':42s} {'s/batch':>8s}")
    for name, seconds in times.items():
        print(f"    {name:42s} {seconds:8.3f}")
    overhead = {}
    for placement in ("codes_on_array", "projection_on_array"):
        ratio = times[f"{placement} pcm"] / times[f"{placement} ideal"]
        overhead[placement] = ratio
        verdict = "meets" if ratio <= 1.2 else "MISSES"
        print(
            f"    {placement}: all non-idealities / ideal hardware = {ratio:.2f}x ({verdict} the 1.2x target)"
        )
    results["hashed_times_s"] = times
    results["hashed_overhead"] = overhead

    # ---------------------------------------------------------------- (b) conventional fast vs aihwkit
    config = HardwareConfig(placement="conventional", device="pcm")
    fast = drift(program(convert_conventional(backbone, config), seed=0), DAY)
    reference = drift(program(convert_conventional(backbone, config.replace(backend="aihwkit")), seed=0), DAY)
    times = time_models({"digital": backbone, "fast": fast, "aihwkit": reference}, x, max(2, args.reps // 2))
    speedup = times["aihwkit"] / times["fast"]
    print(f"\n(b) conventional AIMC on pcm (8-bit ADC, drift 1 day), batch {x.shape[0]}")
    for name, seconds in times.items():
        print(f"    {name:10s} {seconds:8.3f} s/batch")
    verdict = "meets" if speedup >= 10 else "MISSES"
    print(
        f"    fast path is {speedup:.1f}x faster than aihwkit convert_to_analog ({verdict} the 10x target); "
        f"fast / digital = {times['fast'] / times['digital']:.2f}x"
    )
    digital_acc = accuracy(backbone, loader)
    fast_accs, ref_accs = [], []
    for seed in range(args.fast_seeds):
        fast_accs.append(accuracy(drift(program(fast, seed=seed), DAY), loader))
    for seed in range(args.aihwkit_seeds):
        ref_accs.append(accuracy(drift(program(reference, seed=seed), DAY), loader))

    def summary(values: list[float]) -> str:
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        each = ", ".join(f"{v:.2f}" for v in values)
        return f"{statistics.fmean(values):.2f} +- {spread:.2f} % ({len(values)} seeds: {each})"

    print(f"    accuracy on {len(data)} test images: digital {digital_acc:.2f} %")
    print(f"      fast path : {summary(fast_accs)}")
    print(f"      aihwkit   : {summary(ref_accs)}")
    results.update(
        conventional_times_s=times,
        conventional_speedup=speedup,
        accuracy={"digital": digital_acc, "fast": fast_accs, "aihwkit": ref_accs, "images": len(data)},
    )
    if args.out:
        atomic_write_text(args.out, json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
