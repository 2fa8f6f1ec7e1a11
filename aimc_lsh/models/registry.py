"""Named pretrained backbones: architecture, weights source, checksum and input normalisation.

``get_backbone(name)`` builds the architecture, finds the weights file, verifies its checksum *before*
parsing it, loads it strictly and returns the model in eval mode, taking images scaled to [0, 1] (its
first submodule ``normalize`` applies the normalisation the weights were trained with).

Weights are looked up in this order:

1. ``path=`` (a file, or a folder searched like the next two);
2. the folder in ``$AIMC_LSH_MODELS``;
3. the cache folder (``cache_dir=``, else ``$AIMC_LSH_CACHE/models``, else ``~/.cache/aimc_lsh/models``);
4. a download from the upstream URL into the cache (checksummed and atomic), if ``download=True``.

In a folder, a file matches if its name is the upstream file name or ends with it (so
``akamaster_resnet20-12fca82f.th`` matches ``resnet20-12fca82f.th``).

Registered backbones:

* ``cifar10_resnet20``: akamaster/pytorch_resnet_cifar10 ResNet-20, option-A shortcuts, classifier
  ``linear``; trained on ``x / 255`` normalised with the ImageNet mean/std (that repository's
  ``trainer.py``); full SHA-256 known. 91.78% stored in the checkpoint for the 10k test set.
* ``cifar10_resnet20_b`` / ``cifar100_resnet20_b``: chenyaofo/pytorch-cifar-models ResNet-20,
  option-B shortcuts, classifier ``fc``; CIFAR-10 92.60% / CIFAR-100 68.83% (its README). Only the
  first 8 hex digits of their SHA-256 are published (in the file name, torch-hub convention), so only
  that prefix is verified. Mean/std are those in the repository's training logs
  (``logs/cifar10/resnet20/default.log``: mean (0.4914, 0.4822, 0.4465), std (0.2023, 0.1994, 0.201);
  ``logs/cifar100/resnet20/default.log``: mean (0.507, 0.4865, 0.4409), std (0.2673, 0.2564, 0.2761)).
* ``digits_cnn``: :class:`~aimc_lsh.models.digits.DigitsNet` trained on the spot (a few seconds,
  deterministic), for offline smoke runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from aimc_lsh.data.cifar import default_cache_dir
from aimc_lsh.data.download import Checksum, download_file
from aimc_lsh.models.checkpoints import load_state_dict_strict, read_checkpoint
from aimc_lsh.models.resnet import CifarResNet

__all__ = [
    "MODELS_ENV",
    "BackboneSpec",
    "register_backbone",
    "unregister_backbone",
    "backbone_names",
    "backbone_spec",
    "find_weights",
    "get_backbone",
]

MODELS_ENV = "AIMC_LSH_MODELS"
"""Environment variable naming a folder of pretrained weight files."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)
CIFAR100_MEAN = (0.5070, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2761)


@dataclass(frozen=True)
class BackboneSpec:
    """Everything needed to build a named backbone and fetch and verify its weights."""

    name: str
    """Registry name (``"cifar10_resnet20"``)."""
    build: Callable[[], nn.Module]
    """Returns the architecture (with its ``normalize`` submodule); for specs without weights, the
    finished model."""
    description: str = ""
    """One line for listings."""
    filename: str | None = None
    """Upstream weight file name; ``None`` for backbones built without a weights file."""
    url: str | None = None
    """Upstream download URL."""
    checksum: Checksum | None = None
    """Expected digests of the weights file (required when ``filename`` is set)."""
    num_classes: int = 10
    """Classifier outputs."""
    dataset: str = "cifar10"
    """Dataset the weights were trained on (a name :func:`aimc_lsh.data.make_loader` accepts)."""
    reported_accuracy: float | None = None
    """Top-1 accuracy (percent) published upstream for the full test set, for reference."""
    source: str = ""
    """Where the weights come from (repository, licence)."""

    def __post_init__(self) -> None:
        if self.filename is not None and self.checksum is None:
            raise ValueError(f"backbone {self.name!r}: a weights file needs a checksum")


_REGISTRY: dict[str, BackboneSpec] = {}


def register_backbone(spec: BackboneSpec, *, overwrite: bool = False) -> BackboneSpec:
    """Add a backbone to the registry.

    Args:
        spec: The backbone description.
        overwrite: Replace an existing entry of the same name.

    Returns:
        ``spec``.

    Raises:
        ValueError: If the name is taken and ``overwrite`` is False.

    """
    if spec.name in _REGISTRY and not overwrite:
        raise ValueError(f"backbone {spec.name!r} is already registered (pass overwrite=True to replace it)")
    _REGISTRY[spec.name] = spec
    return spec


def unregister_backbone(name: str) -> BackboneSpec:
    """Remove ``name`` from the registry and return its spec (``ValueError`` if unknown)."""
    spec = backbone_spec(name)
    del _REGISTRY[name]
    return spec


def backbone_names() -> list[str]:
    """Return the registered backbone names, sorted."""
    return sorted(_REGISTRY)


def backbone_spec(name: str) -> BackboneSpec:
    """Return the :class:`BackboneSpec` of ``name`` (``ValueError`` listing the known names otherwise)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown backbone {name!r}; registered: {', '.join(backbone_names())}")
    return _REGISTRY[name]


def _match_in_dir(folder: Path, filename: str) -> Path | None:
    if not folder.is_dir():
        return None
    exact = folder / filename
    if exact.is_file():
        return exact
    matches = sorted(
        p for p in folder.iterdir() if p.is_file() and p.name.endswith(filename) and p.name[0] != "."
    )
    return matches[0] if matches else None


def find_weights(
    spec: BackboneSpec,
    *,
    path: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> Path:
    """Locate (or download) the weights file of ``spec``; see the module docstring for the order.

    Args:
        spec: Backbone with a weights file.
        path: Explicit file, or folder to search first.
        cache_dir: Cache folder (default ``$AIMC_LSH_CACHE/models`` or ``~/.cache/aimc_lsh/models``).
        download: Download into the cache when not found.

    Returns:
        Path of the (not yet verified) weights file.

    Raises:
        FileNotFoundError: If nothing is found and downloading is off or impossible; the message lists
            every place searched and how to provide the file.

    """
    if spec.filename is None:
        raise ValueError(f"backbone {spec.name!r} has no weights file")
    searched: list[str] = []
    if path is not None:
        path = Path(path).expanduser()
        if path.is_file():
            return path
        found = _match_in_dir(path, spec.filename)
        if found is not None:
            return found
        raise FileNotFoundError(
            f"weights for {spec.name!r} not found at path={str(path)!r} "
            f"(expected the file itself or a folder holding *{spec.filename})"
        )
    env_dir = os.environ.get(MODELS_ENV)
    if env_dir:
        found = _match_in_dir(Path(env_dir).expanduser(), spec.filename)
        if found is not None:
            return found
        searched.append(f"${MODELS_ENV}={env_dir}")
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir("models")
    found = _match_in_dir(cache, spec.filename)
    if found is not None:
        return found
    searched.append(f"cache {cache}")
    if download and spec.url:
        try:
            return download_file(
                spec.url,
                cache / spec.filename,
                sha256=spec.checksum.sha256,
                sha256_prefix=spec.checksum.sha256_prefix,
                md5=spec.checksum.md5,
            )
        except OSError as err:
            searched.append(f"download failed: {err}")
    raise FileNotFoundError(
        f"weights for {spec.name!r} ({spec.filename}) not found; searched {'; '.join(searched)}"
        f"{'' if download else ' (download=False)'}. Pass path=<file>, put the file in ${MODELS_ENV}, "
        f"or allow download from {spec.url}"
    )


def get_backbone(
    name: str,
    *,
    path: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    map_location: str | torch.device = "cpu",
) -> nn.Module:
    """Build a registered backbone with verified pretrained weights, in eval mode.

    Args:
        name: Registry name; see :func:`backbone_names`.
        path: Weights file (or folder holding it) to use instead of the search.
        cache_dir: Cache folder for downloads.
        download: Allow downloading from the upstream URL.
        map_location: Device for the loaded tensors (the model is moved there too).

    Returns:
        The model; it takes images scaled to [0, 1] of shape (N, 3, 32, 32) and returns logits.

    Raises:
        ValueError: If ``name`` is unknown.
        FileNotFoundError: If no weights file is found.
        aimc_lsh.data.ChecksumError: If the file's digest differs (names file, expected and actual).
        aimc_lsh.models.CheckpointError: If the file does not load or fit the architecture.

    """
    spec = backbone_spec(name)
    if spec.filename is None:
        return spec.build().to(map_location).eval()
    weights = find_weights(spec, path=path, cache_dir=cache_dir, download=download)
    state_dict = read_checkpoint(weights, spec.checksum, map_location=map_location)
    model = spec.build()
    load_state_dict_strict(model, state_dict, what=f"{weights} ({name})")
    return model.to(map_location).eval()


def _digits_cnn() -> nn.Module:
    from aimc_lsh.models.digits import train_digits_model

    return train_digits_model().model


register_backbone(
    BackboneSpec(
        name="cifar10_resnet20",
        build=lambda: CifarResNet(20, 10, shortcut="A", mean=IMAGENET_MEAN, std=IMAGENET_STD),
        description="ResNet-20 (option A) for CIFAR-10, akamaster weights",
        filename="resnet20-12fca82f.th",
        url="https://github.com/akamaster/pytorch_resnet_cifar10/raw/master/pretrained_models/resnet20-12fca82f.th",
        checksum=Checksum(sha256="12fca82f0bebc4135bf1f32f6e3710e61d5108578464b84fd6d7f5c1b04036c8"),
        num_classes=10,
        dataset="cifar10",
        reported_accuracy=91.78,
        source="github.com/akamaster/pytorch_resnet_cifar10 (BSD-2-Clause)",
    )
)
register_backbone(
    BackboneSpec(
        name="cifar10_resnet20_b",
        build=lambda: CifarResNet(20, 10, shortcut="B", mean=CIFAR10_MEAN, std=CIFAR10_STD),
        description="ResNet-20 (option B) for CIFAR-10, chenyaofo weights",
        filename="cifar10_resnet20-4118986f.pt",
        url="https://github.com/chenyaofo/pytorch-cifar-models/releases/download/resnet/cifar10_resnet20-4118986f.pt",
        # Only the 8-digit SHA-256 prefix in the file name is published (torch-hub convention).
        checksum=Checksum(sha256_prefix="4118986f"),
        num_classes=10,
        dataset="cifar10",
        reported_accuracy=92.60,
        source="github.com/chenyaofo/pytorch-cifar-models (BSD-3-Clause)",
    )
)
register_backbone(
    BackboneSpec(
        name="cifar100_resnet20_b",
        build=lambda: CifarResNet(20, 100, shortcut="B", mean=CIFAR100_MEAN, std=CIFAR100_STD),
        description="ResNet-20 (option B) for CIFAR-100, chenyaofo weights",
        filename="cifar100_resnet20-23dac2f1.pt",
        url="https://github.com/chenyaofo/pytorch-cifar-models/releases/download/resnet/cifar100_resnet20-23dac2f1.pt",
        checksum=Checksum(sha256_prefix="23dac2f1"),
        num_classes=100,
        dataset="cifar100",
        reported_accuracy=68.83,
        source="github.com/chenyaofo/pytorch-cifar-models (BSD-3-Clause)",
    )
)
register_backbone(
    BackboneSpec(
        name="digits_cnn",
        build=_digits_cnn,
        description="DigitsNet trained on the spot on scikit-learn digits (offline smoke runs)",
        num_classes=10,
        dataset="digits",
        source="trained by aimc_lsh.models.train_digits_model(seed=0)",
    )
)
