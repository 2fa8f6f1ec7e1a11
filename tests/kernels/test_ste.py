import pytest
import torch

from aimc_lsh.kernels import hard_sign, sign_ste


def test_sign_never_returns_zero():
    x = torch.tensor([-1.0, -0.0, 0.0, 1e-30, 2.0])
    assert set(hard_sign(x).tolist()) <= {-1.0, 1.0}
    assert hard_sign(torch.zeros(3)).tolist() == [1.0, 1.0, 1.0]


def test_identity_ste_passes_gradient_unchanged():
    x = torch.tensor([-3.0, -0.2, 0.4, 5.0], requires_grad=True)
    (sign_ste(x, "identity") * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    assert x.grad.tolist() == [1.0, 2.0, 3.0, 4.0]


def test_clipped_ste_blocks_gradient_outside_unit_interval():
    x = torch.tensor([-3.0, -0.2, 0.4, 5.0], requires_grad=True)
    sign_ste(x, "clipped").sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 0.0]


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="unknown STE mode 'tanh'; allowed: identity, clipped"):
        sign_ste(torch.zeros(2), "tanh")
