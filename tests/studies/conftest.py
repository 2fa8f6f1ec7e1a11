"""Shared setup of the study tests: a private checkpoint cache and a small digits drift configuration."""

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STUDIES = REPO / "studies"

# A digits drift sweep small enough for tests (16 points of ~0.5 s) yet long enough to interrupt.
DRIFT_ARGS = [
    "--dataset", "digits", "--times", "1s,1d,1y", "--seeds", "0,1,2,3",
    "--placements", "codes_on_array,conventional", "--no-progress",
]  # fmt: skip
DRIFT_POINTS = 2 * 2 * 4  # placements x compensation x seeds
DRIFT_CSV = "drift_pcm_digits.csv"


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Digits checkpoints are trained once per session into a temporary cache (not the user's)."""
    cache = tmp_path_factory.mktemp("aimc_lsh_cache")
    previous = os.environ.get("AIMC_LSH_CACHE")
    os.environ["AIMC_LSH_CACHE"] = str(cache)
    yield cache
    if previous is None:
        os.environ.pop("AIMC_LSH_CACHE", None)
    else:
        os.environ["AIMC_LSH_CACHE"] = previous


def script(name):
    return [sys.executable, str(STUDIES / name)]


@pytest.fixture(scope="session")
def drift_reference(tmp_path_factory):
    """The uninterrupted serial run every other drift test compares with: (csv bytes, out dir)."""
    from aimc_lsh.studies.drift import main

    out = tmp_path_factory.mktemp("drift_reference")
    assert main([*DRIFT_ARGS, "--workers", "1", "--out", str(out)]) == 0
    return (out / DRIFT_CSV).read_bytes(), out
