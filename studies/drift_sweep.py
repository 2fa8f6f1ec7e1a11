"""Accuracy vs time after programming on a simulated device: the product's main study.

    python studies/drift_sweep.py --device pcm                    # CIFAR-10 ResNet-20 (needs the data root)
    python studies/drift_sweep.py --device pcm --dataset digits   # embedded benchmark, under a minute
    python studies/drift_sweep.py --help                          # every option

See docs/studies.md for outputs, runtimes and the checkpoint it evaluates.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runs from a clone without installing

from aimc_lsh.studies.drift import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
