import hashlib

import pytest
import torch

from aimc_lsh.data import Checksum, ChecksumError
from aimc_lsh.models import (
    BackboneSpec,
    CheckpointError,
    backbone_names,
    backbone_spec,
    find_weights,
    get_backbone,
    register_backbone,
    resnet20_a,
    resnet20_b,
    unregister_backbone,
)


@pytest.fixture
def isolated_env(monkeypatch, tmp_path):
    monkeypatch.delenv("AIMC_LSH_MODELS", raising=False)
    monkeypatch.setenv("AIMC_LSH_CACHE", str(tmp_path / "cache_root"))
    return tmp_path


@pytest.fixture
def chenyaofo_style(isolated_env):
    # a plain state-dict file (chenyaofo layout: no prefix, BN counters) registered as a test backbone
    source = resnet20_b(10)
    for param in source.parameters():
        param.data.normal_()
    upstream = isolated_env / "upstream"
    upstream.mkdir()
    path = upstream / "test_resnet20-abcd.pt"
    torch.save(source.state_dict(), path)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    spec = register_backbone(
        BackboneSpec(
            name="test_resnet20_b",
            build=lambda: resnet20_b(10, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)),
            filename="test_resnet20-abcd.pt",
            url=path.as_uri(),
            checksum=Checksum(sha256_prefix=sha[:8]),
        )
    )
    yield spec, source, path, sha
    unregister_backbone("test_resnet20_b")


def _same_weights(model, source):
    return all(torch.equal(model.state_dict()[k], v) for k, v in source.state_dict().items())


def test_registry_lists_the_published_backbones():
    assert {"cifar10_resnet20", "cifar10_resnet20_b", "cifar100_resnet20_b", "digits_cnn"} <= set(
        backbone_names()
    )
    aka = backbone_spec("cifar10_resnet20")
    assert aka.checksum.sha256 == "12fca82f0bebc4135bf1f32f6e3710e61d5108578464b84fd6d7f5c1b04036c8"
    assert backbone_spec("cifar100_resnet20_b").num_classes == 100
    assert backbone_spec("cifar10_resnet20_b").checksum.sha256_prefix == "4118986f"
    with pytest.raises(ValueError, match="unknown backbone 'resnet18'.*cifar10_resnet20"):
        get_backbone("resnet18")
    with pytest.raises(ValueError, match="already registered"):
        register_backbone(aka)
    with pytest.raises(ValueError, match="needs a checksum"):
        BackboneSpec(name="x", build=resnet20_a, filename="x.pt")


def test_download_into_cache_then_reuse(chenyaofo_style, isolated_env):
    spec, source, path, _ = chenyaofo_style
    model = get_backbone("test_resnet20_b")  # nothing local: "downloads" from the file:// URL
    cached = isolated_env / "cache_root" / "models" / spec.filename
    assert cached.is_file() and not model.training
    assert _same_weights(model, source)
    path.unlink()  # upstream gone: the cache is used
    assert _same_weights(get_backbone("test_resnet20_b", download=False), source)
    x = torch.rand(2, 3, 32, 32)
    assert model(x).shape == (2, 10)


def test_lookup_order_path_then_env_then_cache(chenyaofo_style, isolated_env, monkeypatch):
    spec, source, path, _ = chenyaofo_style
    env_dir = isolated_env / "shared_models"
    env_dir.mkdir()
    renamed = env_dir / f"mirror_{spec.filename}"  # any name ending with the upstream file name
    renamed.write_bytes(path.read_bytes())
    monkeypatch.setenv("AIMC_LSH_MODELS", str(env_dir))
    assert find_weights(spec, download=False) == renamed
    assert find_weights(spec, path=path) == path
    assert find_weights(spec, path=path.parent) == path
    cache = isolated_env / "explicit_cache"
    cache.mkdir()
    (cache / spec.filename).write_bytes(path.read_bytes())
    assert find_weights(spec, cache_dir=cache) == renamed  # env dir comes before the cache
    monkeypatch.delenv("AIMC_LSH_MODELS")
    assert find_weights(spec, cache_dir=cache) == cache / spec.filename
    with pytest.raises(FileNotFoundError, match="not found at path="):
        find_weights(spec, path=isolated_env / "nowhere")


def test_not_found_message(chenyaofo_style, isolated_env):
    spec, _, path, _ = chenyaofo_style
    path.unlink()
    with pytest.raises(FileNotFoundError, match=r"searched.*cache.*download failed.*AIMC_LSH_MODELS"):
        get_backbone("test_resnet20_b")
    with pytest.raises(FileNotFoundError, match=r"download=False"):
        get_backbone("test_resnet20_b", download=False)


def test_corrupt_local_file_is_rejected(chenyaofo_style, isolated_env):
    spec, _, path, sha = chenyaofo_style
    bad = isolated_env / "bad.pt"
    data = bytearray(path.read_bytes())
    data[-100] ^= 1
    bad.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match=rf"starting with {sha[:8]}.*"):
        get_backbone("test_resnet20_b", path=bad)


def test_weights_that_do_not_fit_are_rejected(isolated_env):
    path = isolated_env / "a.pt"
    torch.save(resnet20_a(100).state_dict(), path)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    register_backbone(
        BackboneSpec(name="test_misfit", build=resnet20_a, filename="a.pt", checksum=Checksum(sha256=sha))
    )
    try:
        with pytest.raises(
            CheckpointError, match=r"linear.weight: checkpoint \(100, 64\) vs model \(10, 64\)"
        ):
            get_backbone("test_misfit", path=path)
    finally:
        unregister_backbone("test_misfit")


def test_real_spec_checks_prefix_of_a_wrong_file(isolated_env, monkeypatch):
    models = isolated_env / "models"
    models.mkdir()
    torch.save(resnet20_b().state_dict(), models / "cifar10_resnet20-4118986f.pt")
    monkeypatch.setenv("AIMC_LSH_MODELS", str(models))
    with pytest.raises(ChecksumError, match="expected a digest starting with 4118986f"):
        get_backbone("cifar10_resnet20_b", download=False)
