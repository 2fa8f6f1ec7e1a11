"""The acceptance figure: akamaster ResNet-20 via get_backbone on the CIFAR-10 exact test subset."""

import pytest

from aimc_lsh.data import make_loader
from aimc_lsh.eval import evaluate
from aimc_lsh.models import get_backbone
from tests.shared_files import needs_data_and_models


@pytest.mark.slow
@needs_data_and_models
def test_fp32_resnet20_scores_91_64_on_exact_subset():
    model = get_backbone("cifar10_resnet20", download=False)
    result = evaluate(model, make_loader("cifar10", train=False, batch_size=256), progress=False)
    assert result.n_images == 1017
    assert result.percent == pytest.approx(91.64, abs=0.1)  # measured 932/1017 = 91.64%
