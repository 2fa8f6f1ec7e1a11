import pytest
import torch
from torch import nn

from aimc_lsh.data import make_loader
from aimc_lsh.eval import evaluate
from aimc_lsh.kernels import HashConfig
from aimc_lsh.nn import patch_model
from aimc_lsh.train import TrainConfig, fine_tune, load_checkpoint
from aimc_lsh.train.anneal import blend_factor
from aimc_lsh.train.averaging import WeightAverage, averaged_tensors


def _small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(12, 2))


def _set_all(model, value):
    with torch.no_grad():
        for tensor in averaged_tensors(model).values():
            tensor.fill_(value)


def test_average_follows_the_warm_up_formula_over_parameters_and_batchnorm_statistics():
    net = _small_net()
    names = set(averaged_tensors(net))
    assert {"1.running_mean", "1.running_var", "0.weight", "1.weight", "3.bias"} <= names
    assert "1.num_batches_tracked" not in names
    average = WeightAverage(0.9)
    expected = None
    for n, value in enumerate([1.0, 3.0, -2.0, 5.0]):
        _set_all(net, value)
        average.update(net)
        if expected is None:
            expected = value  # the first update copies
        else:
            d = min(0.9, (1 + n) / (10 + n))  # n updates were folded in before this one
            expected = d * expected + (1 - d) * value
    assert average.updates == 4
    for name, tensor in average.shadow.items():
        assert torch.allclose(tensor, torch.full_like(tensor, expected)), name


def test_applied_swaps_the_average_in_and_back_and_copy_to_keeps_it():
    net = _small_net()
    _set_all(net, 1.0)
    average = WeightAverage(0.5)
    average.update(net)
    _set_all(net, 7.0)
    net.eval()
    x = torch.randn(4, 2, 4, 4)
    live_output = net(x)
    with average.applied(net):
        assert all(bool((t == 1.0).all()) for t in averaged_tensors(net).values())
    assert all(bool((t == 7.0).all()) for t in averaged_tensors(net).values())
    assert torch.equal(net(x), live_output)
    average.copy_to(net)
    assert all(bool((t == 1.0).all()) for t in averaged_tensors(net).values())


def test_state_round_trip_reset_and_bad_inputs():
    net = _small_net()
    average = WeightAverage(0.99)
    with pytest.raises(ValueError, match="holds no weights yet"):
        average.copy_to(net)
    average.update(net)
    _set_all(net, 2.0)
    average.update(net)
    restored = WeightAverage(0.99)
    restored.load_state_dict(average.state_dict())
    assert restored.updates == 2
    assert all(torch.equal(restored.shadow[k], v) for k, v in average.shadow.items())
    with pytest.raises(ValueError, match="decay 0.99"):
        WeightAverage(0.9).load_state_dict(average.state_dict())
    with pytest.raises(ValueError, match="not the ones this average was started with"):
        average.update(nn.Linear(2, 2))
    average.reset()
    assert average.updates == 0 and not average.shadow
    for decay in (0.0, 1.0, -0.5, float("nan")):
        with pytest.raises(ValueError, match="decay must be in"):
            WeightAverage(decay)
    for decay in (1.0, -0.1):
        with pytest.raises(ValueError, match="ema_decay must be in"):
            TrainConfig(ema_decay=decay)


def _config(**changes):
    base = dict(epochs=1.0, batch_size=128, augment=False, progress=False, warmup_steps=2, lr_weights=3e-3)
    return TrainConfig.for_recipe("ce", **{**base, **changes})


def test_fine_tune_returns_the_average_of_its_fully_hashed_steps(digits_teacher, digits_data, tmp_path):
    train, test = digits_data
    hashing = HashConfig(kernel="learned_projection", hash_length=16, seed=2)
    blend = {"blend_fraction": 0.5, "blend_start": 0.2}
    # the live trajectory, one step per call (resumed), without averaging: the weights after every step
    live_model = patch_model(digits_teacher, hashing)
    path = tmp_path / "live.pt"
    states = []
    while True:
        run = fine_tune(
            live_model, train, _config(**blend), val_set=test, checkpoint=path, resume=True, stop_after=1
        )
        states.append({k: v.clone() for k, v in averaged_tensors(live_model).items()})
        if not run.stopped_early:
            break
    planned = run.steps
    assert planned == len(states) == 10
    # the same run with averaging: the live weights train exactly as before, the average is returned
    averaged_model = patch_model(digits_teacher, hashing)
    result = fine_tune(
        averaged_model, train, _config(ema_decay=0.6, **blend), val_set=test, checkpoint=tmp_path / "a.pt"
    )
    hashed_steps = [s for s in range(planned) if blend_factor(s, planned, 0.5, 0.2) >= 1.0]
    assert hashed_steps == list(range(5, 10))  # the average restarts after the ramp
    expected = None
    for n, s in enumerate(hashed_steps):
        state = states[s]  # the weights after step s
        if expected is None:
            expected = {k: v.clone() for k, v in state.items()}
        else:
            d = min(0.6, (1 + n) / (10 + n))
            expected = {k: d * expected[k] + (1 - d) * state[k] for k in state}
    got = averaged_tensors(averaged_model)
    for name, tensor in expected.items():
        assert torch.allclose(got[name], tensor, atol=1e-6), name
        assert not torch.allclose(got[name], states[-1][name]), name  # not the last step's weights
    assert result.final_live_accuracy == pytest.approx(run.final_accuracy)
    history = result.history
    assert history[-1]["val_accuracy_ema"] == result.final_accuracy
    assert history[-1]["val_accuracy"] == result.final_live_accuracy
    # the returned model is the one that scored final_accuracy, and the checkpoint keeps it
    loader = make_loader(test, batch_size=256, augment=False, shuffle=False)
    assert evaluate(averaged_model, loader, progress=False).accuracy == result.final_accuracy
    saved = load_checkpoint(tmp_path / "a.pt")
    assert all(torch.equal(saved["model_state"][k], v) for k, v in averaged_model.state_dict().items())
    assert saved["weight_average"]["updates"] == len(hashed_steps)


def test_averaged_run_resumes_into_the_same_average(digits_teacher, digits_data, tmp_path):
    train, _ = digits_data
    hashing = HashConfig(kernel="learned_projection", hash_length=16, seed=2)
    config = _config(ema_decay=0.8, blend_fraction=0.3)
    straight = patch_model(digits_teacher, hashing)
    fine_tune(straight, train, config, checkpoint=tmp_path / "a.pt")
    chunked = patch_model(digits_teacher, hashing)
    first = fine_tune(chunked, train, config, checkpoint=tmp_path / "b.pt", stop_after=6)
    assert first.stopped_early and load_checkpoint(tmp_path / "b.pt")["weight_average"]["updates"] == 3
    resumed = patch_model(digits_teacher, hashing)
    fine_tune(resumed, train, config, checkpoint=tmp_path / "b.pt", resume=True)
    a, b = straight.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
