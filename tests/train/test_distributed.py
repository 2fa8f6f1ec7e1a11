import socket

import pytest
import torch
import torch.multiprocessing as mp

from aimc_lsh.kernels import HashConfig
from aimc_lsh.nn import patch_model
from aimc_lsh.train import DistContext, EpochBatches, TrainConfig, fine_tune, load_checkpoint


def _config():
    return TrainConfig.for_recipe(
        "kd",
        epochs=1.0,
        batch_size=128,
        augment=True,
        crop_padding=1,
        progress=False,
        warmup_steps=2,
        kd_alpha=0.5,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, teacher_state: dict, out: str) -> None:
    import os

    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    from aimc_lsh.data import digits_dataset
    from aimc_lsh.models import DigitsNet

    teacher = DigitsNet()
    teacher.load_state_dict(teacher_state)
    student = patch_model(teacher, HashConfig(kernel="learned_projection", hash_length=32, seed=7))
    fine_tune(student, digits_dataset(True), _config(), teacher=teacher, checkpoint=out, device="cpu")


@pytest.mark.slow
def test_ddp_two_cpu_processes_match_single_process(digits_teacher, digits_data, tmp_path):
    train, _ = digits_data
    single = patch_model(digits_teacher, HashConfig(kernel="learned_projection", hash_length=32, seed=7))
    reference = fine_tune(single, train, _config(), teacher=digits_teacher, checkpoint=tmp_path / "single.pt")
    out = str(tmp_path / "ddp.pt")
    mp.spawn(_worker, args=(2, _free_port(), digits_teacher.state_dict(), out), nprocs=2, join=True)
    ddp = load_checkpoint(out)
    assert ddp["step"] == reference.steps == 10
    start = digits_teacher.state_dict()
    for key, value in single.state_dict().items():
        other = ddp["model_state"][key]
        assert torch.allclose(value, other, rtol=1e-3, atol=1e-4), key
    # training really moved the weights (the comparison is not between two untouched models)
    assert not torch.allclose(single.state_dict()["fc.weight"], start["fc.weight"])
    single_loss = [r.get("train_loss") for r in load_checkpoint(tmp_path / "single.pt")["history"]]
    ddp_loss = [r.get("train_loss") for r in ddp["history"]]
    assert ddp_loss[-1] == pytest.approx(single_loss[-1], rel=1e-3)


def test_shards_of_all_ranks_make_the_single_process_batch(digits_data):
    train, _ = digits_data
    full = EpochBatches(train, 8, seed=3, augment=True, crop_padding=1)
    shards = [
        EpochBatches(train, 8, seed=3, augment=True, crop_padding=1, rank=r, world_size=2) for r in range(2)
    ]
    images, labels = full.batch(2, 5)
    parts = [s.batch(2, 5) for s in shards]
    assert torch.equal(images[0::2], parts[0][0]) and torch.equal(images[1::2], parts[1][0])
    assert torch.equal(labels[1::2], parts[1][1])
    assert not torch.equal(full.batch(2, 5)[0], full.batch(3, 5)[0])
    with pytest.raises(ValueError, match="divisible"):
        EpochBatches(train, 7, world_size=2)


def test_single_process_context_without_torchrun(monkeypatch):
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    ctx = DistContext.from_env("cpu")
    assert (ctx.rank, ctx.world_size, ctx.distributed, ctx.is_main) == (0, 1, False, True)
    model = torch.nn.Linear(2, 2)
    assert ctx.wrap(model) is model
    assert ctx.sum([1.0, 2.0]) == [1.0, 2.0]
