"""The project's shared CIFAR-10 subset and pretrained weights, for tests that need the real files."""

import os

import pytest

DATA, MODELS = os.environ.get("AIMC_LSH_DATA"), os.environ.get("AIMC_LSH_MODELS")
"""``$AIMC_LSH_DATA`` (a folder holding ``cifar-10-batches-py/``) and ``$AIMC_LSH_MODELS`` (weights)."""

needs_data_and_models = pytest.mark.skipif(
    not (DATA and MODELS),
    reason="AIMC_LSH_DATA and AIMC_LSH_MODELS must both be set (CI points them at shared/data/"
    "cifar10-exact-subset and shared/models)",
)
"""Skip marker of a test that reads both."""
