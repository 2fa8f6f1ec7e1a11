import pytest
import torch
from torch import nn

from aimc_lsh.data import digits_dataset
from aimc_lsh.kernels import HashConfig
from aimc_lsh.models import get_backbone
from aimc_lsh.nn import hashed_layers, patch_model, to_digital
from aimc_lsh.nn.projection_fit import _input_statistics, fit_projections, input_second_moments


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


@pytest.mark.parametrize("weights_in, fitted", [("strong", True), ("weak", False)])
def test_only_where_better_keeps_the_projections_where_the_fit_would_lose(weights_in, fitted):
    # inputs: 93% of the energy in the first 4 of 32 directions; weights reading only those (the fit
    # sees all of them, with less noise) or only the 28 others (the fit would see nothing of them)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 32, generator=g) * torch.cat([torch.full((4,), 10.0), torch.ones(28)])
    w = torch.randn(8, 32, generator=g)
    w[:, 4:] = 0.0 if weights_in == "strong" else w[:, 4:]
    w[:, :4] = w[:, :4] if weights_in == "strong" else 0.0
    model = nn.Sequential(nn.Linear(32, 8, bias=False))
    model[0].weight.data.copy_(w)
    config = HashConfig(hash_length=16, orthogonal=True)
    hashed = patch_model(model, config)
    before = hashed[0].kernel(0, 0).P.clone()
    bases = fit_projections(hashed, x, energy=0.9, only_where_better=True, sample_rows=256)
    assert bases["0"][0].shape == ((32, 4) if fitted else (32, 0))
    assert torch.equal(hashed[0].kernel(0, 0).P, before) is not fitted
    plain = patch_model(model, config)
    assert fit_projections(plain, x, energy=0.9)["0"][0].shape == (32, 4)  # unchecked: fitted either way
    if fitted:
        assert torch.equal(plain[0].kernel(0, 0).P, hashed[0].kernel(0, 0).P)


def test_only_where_better_needs_sample_rows(digits):
    model, images = digits
    for bad in (0, -3, 1.5, True):
        with pytest.raises(ValueError, match="sample_rows must be a positive integer"):
            fit_projections(_patched(model), images, only_where_better=True, sample_rows=bad)


def test_the_fit_is_checked_on_patches_from_all_over_the_image():
    # patch rows run along image rows: every s-th row would take one image column (here the left border)
    # in every image; the check must see the whole map. Each pixel holds its column index + 1.
    conv = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False))
    hashed = patch_model(conv, HashConfig(hash_length=16, orthogonal=True))
    images = torch.arange(1.0, 33.0).expand(8, 1, 32, 32).contiguous()  # 8 images, 8,192 patch rows
    _, samples = _input_statistics(hashed, images, sample_rows=64)
    rows = samples["0"][0]
    columns = rows[:, 4].long()  # the patch centre: its column + 1
    assert 56 <= len(rows) <= 72
    assert len(columns.unique()) >= 24  # of 32 (every 128th row: only column 1)
    assert (columns > 16).any() and (columns <= 16).any()
    _, again = _input_statistics(hashed, images, sample_rows=64)
    assert torch.equal(again["0"][0], rows)  # seeded: the same rows every time
