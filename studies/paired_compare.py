"""Compare two sweeps of the same simulated chips draw by draw (B - A per programming seed).

    python studies/paired_compare.py results/drift_plain/drift_pcm_cifar10.csv \
        results/drift_hwa/drift_pcm_cifar10.csv

Both sweeps must use the same device, placements, times and --seeds: the same programming seed programs
the same chip (programming noise, drift exponents, sense-amplifier offsets). See docs/studies.md.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runs from a clone without installing

from aimc_lsh.studies.paired_cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
