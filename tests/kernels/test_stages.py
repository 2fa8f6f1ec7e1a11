import torch

from aimc_lsh.kernels import HashStages, cosine_from_similarity, hard_sign


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
