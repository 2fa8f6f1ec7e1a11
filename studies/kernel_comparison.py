"""Compare FP32, conventional AIMC, LSH, PQ and neuron merging under the same recovery budget.

    python studies/kernel_comparison.py --budget 4                  # CIFAR-10 ResNet-20, 4 min per row
    python studies/kernel_comparison.py --dataset digits --epochs 3 # embedded benchmark, under a minute
    python studies/kernel_comparison.py --help                      # every option

Writes <out>/<row>.json per row (reused on the next run: interrupted runs resume) and
<out>/comparison_<device>_<dataset>.md / .csv with accuracy, parameters, dense FLOPs and energy per
inference, at t = 0 and after --time of drift. See aimc_lsh/studies/comparison.py for what each row is.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runs from a clone without installing

from aimc_lsh.studies.comparison_cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
