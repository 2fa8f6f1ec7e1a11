import pytest
import torch
import torch.nn.functional as F

from aimc_lsh.kernels import ConvGeometry, HashStages, cosine_from_similarity, hard_sign, patch_norms

PATCH_GEOMETRIES = [  # (kernel, stride, padding, dilation)
    ((3, 3), (1, 1), (1, 1), (1, 1)),
    ((3, 3), (2, 2), (1, 1), (1, 1)),
    ((3, 2), (1, 2), (2, 1), (2, 1)),
    ((3, 2), (2, 1), (0, 2), (2, 1)),
    ((1, 1), (1, 1), (0, 0), (1, 1)),
    ((1, 1), (2, 2), (0, 0), (1, 1)),
    ((1, 1), (1, 1), (1, 0), (3, 1)),
    ((2, 3), (3, 1), (0, 2), (1, 2)),
    ((5, 5), (3, 2), (2, 0), (1, 2)),
]


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize(("kernel", "stride", "padding", "dilation"), PATCH_GEOMETRIES)
def test_patch_norms_equal_unfolded_norms_and_the_former_full_channel_formula(
    kernel, stride, padding, dilation, channels_last
):
    """The one patch-norm function the hashed layers and the analog comparators share."""
    x = torch.randn(3, 7, 11, 10, generator=torch.Generator().manual_seed(0))
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    norms = patch_norms(x, kernel, ConvGeometry(stride, padding, dilation))
    patches = F.unfold(x, kernel, dilation, padding, stride)  # (N, C kh kw, L)
    torch.testing.assert_close(norms, patches.norm(dim=1).view(norms.shape), rtol=1e-5, atol=1e-6)
    ones = torch.ones(1, 7, *kernel)  # the former formula: one conv of x**2 over all channels
    former = F.conv2d(x * x, ones, None, stride, padding, dilation).clamp(min=0).sqrt()
    torch.testing.assert_close(norms, former, rtol=1e-5, atol=1e-6)


def test_binarize_in_inference_overwrites_pre_with_the_hard_sign():
    stages = HashStages()
    pre = torch.tensor([-2.0, -0.0, 0.0, 3.0, -1e-30])
    expected = hard_sign(pre)
    with torch.no_grad():
        h = stages.binarize(pre, (0, 0))
    assert h.data_ptr() == pre.data_ptr()
    assert torch.equal(h, expected)


def test_binarize_in_training_keeps_pre_and_the_straight_through_gradient():
    stages = HashStages(ste="clipped")
    pre = torch.tensor([-2.0, -0.5, 0.5, 2.0], requires_grad=True)
    h = stages.binarize(pre, (0, 0))
    h.sum().backward()
    assert torch.equal(pre.detach(), torch.tensor([-2.0, -0.5, 0.5, 2.0]))
    assert torch.equal(pre.grad, torch.tensor([0.0, 1.0, 1.0, 0.0]))


def test_reconstruct_in_inference_equals_the_autograd_formula():
    torch.manual_seed(0)
    stages = HashStages()
    k = 64
    similarity = (torch.randint(0, k + 1, (3, 5, 4, 4)) * 2 - k).float() / k
    w_norm, x_norm = torch.rand(5) * 3, torch.rand(3, 1, 4, 4) * 7
    expected = cosine_from_similarity(similarity) * w_norm.view(1, -1, 1, 1) * x_norm
    with torch.no_grad():
        out = stages.reconstruct(similarity.clone(), w_norm, x_norm, (0, 0))
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("channels_last", [False, True])
def test_apply_thresholds_equals_the_broadcast_formula_with_its_gradients(channels_last):
    generator = torch.Generator().manual_seed(0)
    pre = torch.randn(3, 5, 4, 6, generator=generator, dtype=torch.float64)
    x_norm = torch.rand(3, 1, 4, 6, generator=generator, dtype=torch.float64)
    shift = torch.randn(5, generator=generator, dtype=torch.float64)
    if channels_last:
        pre, x_norm = (t.contiguous(memory_format=torch.channels_last) for t in (pre, x_norm))
    leaves = [t.clone().requires_grad_(True) for t in (pre, x_norm, shift)]
    out = HashStages().apply_thresholds(*leaves, (0, 0))
    expected = pre - x_norm * shift.view(1, -1, 1, 1)
    torch.testing.assert_close(out, expected)
    assert torch.autograd.gradcheck(lambda *t: HashStages().apply_thresholds(*t, (0, 0)), leaves)
    with torch.no_grad():  # inference: in place on pre
        kept = pre.clone()
        assert HashStages().apply_thresholds(kept, x_norm, shift, (0, 0)) is kept
        torch.testing.assert_close(kept, expected)


@pytest.mark.parametrize(("kernel", "stride", "padding", "dilation"), PATCH_GEOMETRIES[:6])
def test_grouped_patch_norms_equal_each_channel_groups_own_norms(kernel, stride, padding, dilation):
    x = torch.randn(2, 12, 9, 8, generator=torch.Generator().manual_seed(1))
    x = x.contiguous(memory_format=torch.channels_last)  # as the layers pass it
    geometry = ConvGeometry(stride, padding, dilation)
    grouped = patch_norms(x, kernel, geometry, groups=3)
    assert grouped.shape[1] == 3
    for g in range(3):
        own = patch_norms(x[:, 4 * g : 4 * g + 4], kernel, geometry)
        torch.testing.assert_close(grouped[:, g : g + 1], own, rtol=1e-5, atol=1e-6)


def test_patch_norms_refuse_groups_that_do_not_divide_the_channels():
    with pytest.raises(ValueError, match="groups must divide the 6 channels, got 4"):
        patch_norms(torch.ones(1, 6, 3, 3), (1, 1), ConvGeometry(), groups=4)


def test_steps_are_ideal_until_a_subclass_replaces_one():
    class OffsetProjection(HashStages):
        def project(self, x, filters, geometry, tile):
            return super().project(x, filters, geometry, tile) + 0.1

    assert HashStages().steps_are_ideal()
    assert not OffsetProjection().steps_are_ideal()
