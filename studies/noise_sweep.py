"""Accuracy vs one non-ideality at a time (programming/read noise, sense-amp offset and noise).

    python studies/noise_sweep.py --device pcm                    # CIFAR-10 ResNet-20 (needs the data root)
    python studies/noise_sweep.py --device pcm --dataset digits   # embedded benchmark
    python studies/noise_sweep.py --help                          # every option

See docs/studies.md for outputs and runtimes.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runs from a clone without installing

from aimc_lsh.studies.noise import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
