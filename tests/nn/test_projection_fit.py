import pytest
import torch

from aimc_lsh.data import digits_dataset
from aimc_lsh.kernels import HashConfig
from aimc_lsh.models import get_backbone
from aimc_lsh.nn import hashed_layers, patch_model, to_digital
from aimc_lsh.nn.projection_fit import fit_projections, input_second_moments


@pytest.fixture(scope="module")
def digits():
    images = digits_dataset(train=True, limit=256).tensors()[0]
    return get_backbone("digits_cnn"), images


def _patched(model, **config):
    return patch_model(model, HashConfig(**{"hash_length": 16, "orthogonal": True, **config}))


def test_fitted_rows_lie_in_each_input_tiles_subspace_and_the_fit_is_reproducible(digits):
    model, images = digits
    hashed = _patched(model, kernel="learned_projection", input_tile_size=128)  # fc: 256 features, 2 tiles
    bases = fit_projections(hashed, images, energy=0.95)
    layers = dict(hashed_layers(hashed))
    assert [len(b) for b in bases.values()] == [len(layers[p].in_tiles) for p in bases] == [1, 2]
    for path, layer in layers.items():
        for i, j, _, _ in layer.tile_pairs():
            p, basis = layer.kernel(i, j).P.detach().double(), bases[path][i]
            assert (p - p @ basis @ basis.T).abs().max() < 1e-5
            assert int(torch.linalg.matrix_rank(p, rtol=1e-4)) == min(basis.shape[1], p.shape[0])
            assert basis.shape[1] < p.shape[1]
        assert all(k.P.requires_grad for k in layer.kernels)  # still a trainable parameter
    again = _patched(model, kernel="learned_projection", input_tile_size=128)
    fit_projections(again, images, energy=0.95)
    for a, b in zip(hashed.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_second_moments_are_those_of_the_digital_layers_inputs(digits):
    model, images = digits
    hashed = _patched(model, kernel="random_projection")
    moments = input_second_moments(hashed, images)
    digital = to_digital(hashed).eval()
    seen = {}
    digital.fc.register_forward_pre_hook(lambda _m, args: seen.setdefault("fc", args[0]))
    with torch.no_grad():
        digital(images)
    x = seen["fc"].double()
    torch.testing.assert_close(moments["fc"][0], x.T @ x / len(x))


def test_fitted_projection_tracks_the_exact_output_more_closely(digits):
    # the classifier's 256 inputs span few directions: at the same k the fitted codes follow the exact
    # logits better (correlation, which ignores the per-output scale ||w|| / ||B^T w|| BatchNorm absorbs)
    model, images = digits
    digital = to_digital(_patched(model)).eval()
    seen = {}
    digital.fc.register_forward_pre_hook(lambda _m, args: seen.setdefault("fc", args[0]))
    with torch.no_grad():
        digital(images)
    x = seen["fc"]
    exact = digital.fc(x).detach()

    def correlation(fit: bool, seed: int) -> float:
        hashed = _patched(model, kernel="random_projection", seed=seed)
        if fit:
            fit_projections(hashed, images, energy=0.9)
        with torch.no_grad():
            out = hashed.fc(x) - hashed.fc.bias
            target = exact - digital.fc.bias
        return float(torch.corrcoef(torch.stack([out.flatten(), target.flatten()]))[0, 1])

    random = sum(correlation(False, s) for s in range(3)) / 3
    fitted = sum(correlation(True, s) for s in range(3)) / 3
    assert fitted > random + 0.1, (fitted, random)


def test_bad_input_is_named(digits):
    model, images = digits
    with pytest.raises(ValueError, match="no hashed layers"):
        fit_projections(model, images)
    with pytest.raises(ValueError, match="at least one image"):
        fit_projections(_patched(model), images[:0])
    with pytest.raises(ValueError, match="energy must be a fraction"):
        fit_projections(_patched(model), images, energy=0.0)
    pq = patch_model(model, HashConfig(kernel="product_quantization", hash_length=4))
    with pytest.raises(ValueError, match="no hashed layers"):
        fit_projections(pq, images)
    hashed = _patched(model)
    before = hashed.conv.kernel(0, 0).P.clone()
    bases = fit_projections(hashed, torch.zeros_like(images))  # the first layer sees only zeros
    assert bases["conv"][0].shape == (9, 0) and torch.equal(hashed.conv.kernel(0, 0).P, before)
