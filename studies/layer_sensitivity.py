"""Which hashed layers cost a hashed model its accuracy: one layer exact (or only one hashed) at a time.

    python studies/layer_sensitivity.py --checkpoint results/b8/lp256_b8_e15.pt   # a finetune.py checkpoint
    python studies/layer_sensitivity.py --checkpoint none --mode hashed_one        # pretrained, hashed as is
    python studies/layer_sensitivity.py --dataset digits --hash-length 32 --recalibrate-bn 0  # digits
    python studies/layer_sensitivity.py --help                                       # every option

See docs/studies.md for outputs and runtimes.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runs from a clone without installing

from aimc_lsh.studies.layers import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
