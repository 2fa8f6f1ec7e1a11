import torch

from aimc_lsh.kernels import HashConfig
from aimc_lsh.nn import patch_model
from aimc_lsh.train import NoiseSpec, inject_training_noise, save_checkpoint
from aimc_lsh.train.ste_scale import NormalizedProjectionStages, normalize_projection_gradients, unwrap_stages


def test_normalized_ste_keeps_the_forward_and_rescales_the_input_gradient(digits_teacher, digits_data):
    x = digits_data[1].tensors()[0][:16]
    model = patch_model(digits_teacher, HashConfig(hash_length=32))
    model.train()
    big = (3.0 * x).requires_grad_()
    out = model(big)
    out.square().sum().backward()
    plain_grad = big.grad.clone()
    assert normalize_projection_gradients(model) == 2
    big.grad = None
    out2 = model(big)
    assert torch.equal(out, out2)
    out2.square().sum().backward()
    assert not torch.allclose(big.grad, plain_grad)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_wrappers_are_not_saved(digits_teacher, tmp_path):
    model = patch_model(digits_teacher, HashConfig(hash_length=32))
    keys = set(model.state_dict())
    inject_training_noise(model, NoiseSpec(code_std=0.1))
    normalize_projection_gradients(model)
    assert isinstance(model.conv.stages, NormalizedProjectionStages)
    save_checkpoint(tmp_path / "w.pt", model)
    assert set(torch.load(tmp_path / "w.pt", weights_only=True)["model_state"]) == keys
    assert isinstance(model.conv.stages, NormalizedProjectionStages)  # restored after saving
    unwrap_stages(model)
    assert type(model.conv.stages).__name__ == "HashStages"


def test_wrappers_hand_patch_norms_to_analog_stages(digits_teacher, digits_data, monkeypatch):
    """Analog stages keep the layer's patch norms for their comparators; a wrapper must not bypass that."""
    import aimc_lsh.hardware.stages as analog
    from aimc_lsh.hardware import HardwareConfig, program
    from aimc_lsh.train.noise import NoisyTrainingStages

    x = digits_data[1].tensors()[0][:8]
    config = HardwareConfig(device="pcm", hash_length=16, placement="projection_on_array")
    computed = []
    real = analog.patch_norms
    monkeypatch.setattr(analog, "patch_norms", lambda *a: computed.append(1) or real(*a))
    for wrap in (NormalizedProjectionStages, lambda inner: NoisyTrainingStages(inner, NoiseSpec())):
        model = program(patch_model(digits_teacher, config, skip=["fc"]), seed=0).eval()
        expected = model(x)
        program(model, seed=0)  # per-read noise restarts: the same draws again
        model.conv.stages = wrap(model.conv.stages).eval()
        computed.clear()
        assert torch.equal(model(x), expected)
        assert len(computed) == 1  # once, by the layer through the wrapper; the comparators reuse it


def test_normalized_ste_keeps_the_codes_of_thresholded_layers(digits_teacher, digits_data):
    """The wrapper divides P x by the patch norm in training, so the comparator references must follow."""
    x = 3.0 * digits_data[1].tensors()[0][:16]
    config = HashConfig(kernel="learned_projection", hash_length=32, comparator_thresholds=True)
    model = patch_model(digits_teacher, config).train()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("threshold"):
                p.uniform_(-0.2, 0.2, generator=torch.Generator().manual_seed(0))
    expected = model(x)
    normalize_projection_gradients(model)
    torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)
