"""PQ through patch_model and calibration: ResNet-20, determinism, exact collection, per-layer kernels."""

import pytest
import torch
from torch import nn

from aimc_lsh.kernels import HashConfig
from aimc_lsh.models import resnet20_a
from aimc_lsh.nn import (
    HashedLinear,
    PQConv2d,
    PQLinear,
    calibrate_pq,
    needs_data,
    patch_model,
    patchable_layers,
    pq_layers,
    prepare_model,
    to_digital,
)

PQ = HashConfig(kernel="product_quantization", hash_length=8)


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return resnet20_a().eval()


@pytest.fixture(scope="module")
def images():
    return torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_resnet20_runs_with_pq_layers_after_calibration_and_converts_back(resnet, images):
    model = patch_model(resnet, PQ)
    kinds = {type(m) for _, m in pq_layers(model)}
    assert kinds == {PQConv2d, PQLinear} and len(list(pq_layers(model))) == len(patchable_layers(resnet))
    assert model.linear.kernel.subvector_length == 4 and model.layer3[0].conv1.kernel.n_books == 32
    assert len(needs_data(model)) == len(patchable_layers(resnet))
    with pytest.raises(RuntimeError, match="not calibrated"):
        model(images)
    calibrate_pq(model, [images[:4], (images[4:], torch.zeros(4))], max_samples=256)
    assert needs_data(model) == []
    with torch.no_grad():
        logits = model(images)
    assert logits.shape == (8, 10) and torch.isfinite(logits).all()
    assert not torch.allclose(logits, resnet(images))  # it is an approximation
    digital = to_digital(model)
    assert not list(pq_layers(digital))
    with torch.no_grad():
        torch.testing.assert_close(digital(images), resnet(images))


def test_calibration_is_deterministic_and_seeded(resnet, images):
    def centroids(seed):
        model = calibrate_pq(
            patch_model(resnet, PQ, skip=["layer2", "layer3"]), [images], max_samples=128, seed=seed
        )
        return {path: layer.kernel.centroids.clone() for path, layer in pq_layers(model)}

    first, again, other = centroids(0), centroids(0), centroids(1)
    assert all(torch.equal(first[p], again[p]) for p in first)
    assert any(not torch.equal(first[p], other[p]) for p in first)


def test_calibration_sees_digital_activations_and_restores_modes(resnet, images):
    model = patch_model(resnet, PQ, filter_fn=lambda path, _m: path.startswith("layer1.0"))
    model.train()
    model.bn1.eval()
    seen = []
    handle = model.layer1[0].conv2.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    calibrate_pq(model, [images], max_samples=64)
    handle.remove()
    with torch.no_grad():
        expected = torch.relu(
            resnet.layer1[0].bn1(resnet.layer1[0].conv1(torch.relu(resnet.bn1(resnet.conv1(images)))))
        )
    torch.testing.assert_close(seen[0], expected)  # conv1 ran exactly, in eval mode
    assert model.training and not model.bn1.training and model.layer1[0].bn1.training
    assert not any(layer.exact for _, layer in pq_layers(model))


def test_prepare_model_calibrates_only_what_needs_data(resnet, images):
    model = patch_model(resnet, PQ, skip=["layer2", "layer3"])
    assert prepare_model(patch_model(resnet, HashConfig(hash_length=8)), [images]) is not None  # no-op
    prepare_model(model, [images[:1]])
    before = {p: layer.kernel.centroids.clone() for p, layer in pq_layers(model)}
    prepare_model(model, [images * 0.5])  # nothing needs data any more: centroids unchanged
    assert all(torch.equal(before[p], layer.kernel.centroids) for p, layer in pq_layers(model))


def test_per_layer_overrides_mix_kernels(resnet):
    model = patch_model(resnet, PQ, overrides={"linear": {"kernel": "random_projection"}}, skip=["conv1"])
    assert isinstance(model.linear, HashedLinear) and isinstance(model.layer1[0].conv1, PQConv2d)
    assert type(model.conv1) is nn.Conv2d


def test_calibration_errors_are_named(resnet, images):
    with pytest.raises(ValueError, match="no product-quantized layers"):
        calibrate_pq(resnet, [images])
    model = patch_model(resnet, PQ, skip=["layer2", "layer3"])
    with pytest.raises(ValueError, match="max_samples"):
        calibrate_pq(model, [images], max_samples=0)
    with pytest.raises(ValueError, match="no batches"):
        calibrate_pq(model, [])
    with pytest.raises(ValueError, match="tensors or \\(images, labels\\)"):
        calibrate_pq(model, ["not a tensor"])
    assert all(not layer.exact for _, layer in pq_layers(model))
