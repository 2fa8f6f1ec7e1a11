"""Accuracy vs hash length k on a simulated device, with the conventional-AIMC baseline.

    python studies/k_sweep.py --device pcm                    # CIFAR-10 ResNet-20 (needs the data root)
    python studies/k_sweep.py --device pcm --dataset digits   # embedded benchmark
    python studies/k_sweep.py --help                          # every option

See docs/studies.md for outputs and runtimes.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runs from a clone without installing

from aimc_lsh.studies.ksweep import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
