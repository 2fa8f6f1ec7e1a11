import hashlib
from collections import OrderedDict

import pytest
import torch

from aimc_lsh.data import Checksum, ChecksumError
from aimc_lsh.models import (
    CheckpointError,
    extract_state_dict,
    load_state_dict_strict,
    read_checkpoint,
    resnet20_a,
    strip_prefix,
)


def _akamaster_style(path, model):
    # laid out like akamaster's file: {'best_prec1', 'state_dict'}, 'module.' keys, no BN counters
    sd = {f"module.{k}": v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save({"best_prec1": 90.0, "state_dict": sd}, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_strip_prefix():
    t = torch.zeros(1)
    assert strip_prefix({"module.a.weight": t, "b": t}) == {"a.weight": t, "b": t}
    assert strip_prefix({"x.a": t}, "x.") == {"a": t}
    with pytest.raises(CheckpointError, match="collide"):
        strip_prefix({"module.a": t, "a": t})


def test_extract_state_dict_variants():
    t = torch.zeros(1)
    assert extract_state_dict({"a": t}) == {"a": t}
    assert extract_state_dict({"state_dict": {"a": t}, "epoch": 3}) == {"a": t}
    assert extract_state_dict({"model": OrderedDict(a=t)}) == {"a": t}
    with pytest.raises(CheckpointError, match="no state dict"):
        extract_state_dict({"epoch": 3})
    with pytest.raises(CheckpointError, match="no state dict"):
        extract_state_dict([t])


def test_round_trip_with_checksum(tmp_path):
    source = resnet20_a()
    path = tmp_path / "ckpt.th"
    sha = _akamaster_style(path, source)
    sd = read_checkpoint(path, Checksum(sha256=sha))
    assert "conv1.weight" in sd and not any(k.startswith("module.") for k in sd)
    target = resnet20_a()
    load_state_dict_strict(target, sd)
    for key, value in source.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(target.state_dict()[key], value)


def test_corrupt_checkpoint_is_rejected_by_checksum(tmp_path):
    path = tmp_path / "ckpt.th"
    sha = _akamaster_style(path, resnet20_a())
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside a weight tensor
    path.write_bytes(bytes(data))
    actual = hashlib.sha256(bytes(data)).hexdigest()
    with pytest.raises(ChecksumError) as info:
        read_checkpoint(path, Checksum(sha256=sha))
    message = str(info.value)
    assert sha in message and actual in message and str(path) in message
    with pytest.raises(ChecksumError, match="starting with"):
        read_checkpoint(path, Checksum(sha256_prefix=sha[:8]))


def test_checksum_is_checked_before_parsing(tmp_path):
    path = tmp_path / "garbage.th"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ChecksumError):  # never reaches torch.load
        read_checkpoint(path, Checksum(sha256="0" * 64))
    with pytest.raises(CheckpointError, match="weights-only"):
        read_checkpoint(path, None)
    with pytest.raises(FileNotFoundError):
        read_checkpoint(tmp_path / "missing.th", None)


def _broken_checkpoints(tmp_path, model):
    """Files torch.load fails on, each raising something else: empty, text, cut pickle, cut, bit-flipped."""
    torch.save(model.state_dict(), tmp_path / "good.th")
    good = (tmp_path / "good.th").read_bytes()
    flipped = bytearray(good[:4000])
    flipped[60] ^= 0xFF
    contents = {
        "empty": b"",  # EOFError
        "text": b"hello\n",  # KeyError
        "cut_pickle": b"\x80\x02}q\x00(X",  # struct.error
        "truncated": good[: len(good) // 2],  # RuntimeError
        "flipped": bytes(flipped),
    }
    paths = []
    for name, content in contents.items():
        paths.append(tmp_path / f"{name}.th")
        paths[-1].write_bytes(content)
    return paths


def test_unreadable_files_name_the_file_and_why_in_one_line(tmp_path):
    for path in _broken_checkpoints(tmp_path, resnet20_a()):
        with pytest.raises(CheckpointError) as info:
            read_checkpoint(path, None)
        message = str(info.value)
        expected = f"cannot load {path} as a weights-only torch checkpoint: the file is truncated, corrupt"
        assert message.startswith(expected), message
        assert "\n" not in message and "weights_only` argument" not in message  # no torch advice dump


def test_a_bad_map_location_is_named_not_blamed_on_the_file(tmp_path):
    path = tmp_path / "good.th"
    torch.save(resnet20_a().state_dict(), path)
    with pytest.raises(ValueError, match="map_location .tpu. is not a torch device: .*Expected one of cpu"):
        read_checkpoint(path, None, map_location="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="map_location 'cuda': torch sees no CUDA device here"):
            read_checkpoint(path, None, map_location="cuda")


def test_strict_loading_reports_every_problem():
    model = resnet20_a()
    sd = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    load_state_dict_strict(resnet20_a(), sd)  # BN counters may be missing
    broken = dict(sd)
    del broken["layer1.0.conv1.weight"]
    broken["extra.weight"] = torch.zeros(1)
    broken["linear.weight"] = torch.zeros(100, 64)
    with pytest.raises(CheckpointError) as info:
        load_state_dict_strict(resnet20_a(), broken, what="test.th")
    message = str(info.value)
    assert "test.th" in message and "missing: ['layer1.0.conv1.weight']" in message
    assert "unexpected: ['extra.weight']" in message and "linear.weight: checkpoint (100, 64)" in message
