import pytest
import torch

from aimc_lsh.kernels import HashConfig
from aimc_lsh.nn import patch_model
from aimc_lsh.train.anneal import HashBlend, blend_factor


def test_blend_factor_ramps_to_one():
    assert blend_factor(0, 100, 0.5) == 0.0
    assert blend_factor(25, 100, 0.5) == pytest.approx(0.5)
    assert blend_factor(50, 100, 0.5) == 1.0 and blend_factor(99, 100, 0.5) == 1.0
    assert blend_factor(0, 100, 0.5, start=0.2) == pytest.approx(0.2)
    assert blend_factor(0, 100, 0.0) == 1.0


def test_blend_interpolates_exact_and_hashed_outputs_in_training_only(digits_teacher, digits_data):
    x = digits_data[1].tensors()[0][:8]
    hashed = patch_model(digits_teacher, HashConfig(hash_length=16))
    hashed.train()
    pure = hashed(x)
    blend = HashBlend(hashed, lam=0.0)
    assert torch.allclose(hashed(x), digits_teacher(x), atol=1e-5)  # every layer exact
    blend.lam = 0.5
    mixed = hashed(x)
    assert not torch.allclose(mixed, pure) and not torch.allclose(mixed, digits_teacher(x))
    hashed.eval()
    assert torch.equal(hashed(x), pure)  # evaluation is always fully hashed
    blend.remove()
    hashed.train()
    assert torch.equal(hashed(x), pure)
