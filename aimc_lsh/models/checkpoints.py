"""Reading checkpoint files safely: checksum first, then ``torch.load(weights_only=True)``.

The bytes of a checkpoint are read once, hashed, and only then parsed (from the same bytes), so the
file that was verified is the file that is loaded. ``module.`` prefixes left by ``nn.DataParallel`` are
stripped, and state dicts are loaded strictly; the only tolerated gap is BatchNorm's
``num_batches_tracked`` counter, which older checkpoints (e.g. akamaster's) do not store and which does
not affect inference.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from aimc_lsh.data.download import Checksum

__all__ = [
    "CheckpointError",
    "LOAD_ERRORS",
    "load_error_message",
    "check_map_location",
    "strip_prefix",
    "extract_state_dict",
    "read_checkpoint",
    "load_state_dict_strict",
]

_TOLERATED_MISSING_SUFFIX = "num_batches_tracked"

LOAD_ERRORS: tuple[type[Exception], ...] = (
    pickle.UnpicklingError,
    RuntimeError,
    EOFError,
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    AttributeError,
    AssertionError,
    struct.error,
    zipfile.BadZipFile,
)
"""What ``torch.load(weights_only=True)`` raises on a truncated, corrupt or foreign file (seen on empty,
text, random and truncated files and on checkpoints and pickles with flipped bytes)."""


class CheckpointError(ValueError):
    """A checkpoint cannot be parsed or does not fit the model."""


def strip_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str = "module.") -> dict[str, torch.Tensor]:
    """Remove ``prefix`` from every key that starts with it (``module.conv1.weight`` -> ``conv1.weight``).

    Args:
        state_dict: Parameter name -> tensor.
        prefix: Prefix to strip (default: the ``nn.DataParallel`` wrapper's ``module.``).

    Returns:
        A new dict; keys without the prefix are kept unchanged.

    Raises:
        CheckpointError: If stripping makes two keys collide.

    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        new = key[len(prefix) :] if key.startswith(prefix) else key
        if new in out:
            raise CheckpointError(f"stripping {prefix!r} makes key {key!r} collide with {new!r}")
        out[new] = value
    return out


def extract_state_dict(obj: object, what: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Return the state dict inside a loaded checkpoint.

    Accepts a plain ``{name: tensor}`` mapping or a dict holding one under ``"state_dict"``,
    ``"model_state_dict"`` or ``"model"``.

    Raises:
        CheckpointError: If no tensor mapping is found.

    """
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, Mapping):
                return extract_state_dict(inner, what)
        if obj and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
            return dict(obj)
    keys = sorted(obj)[:8] if isinstance(obj, Mapping) else None
    raise CheckpointError(
        f"{what} holds no state dict (a mapping of parameter names to tensors); "
        f"got {type(obj).__name__}{' with keys ' + str(keys) if keys is not None else ''}"
    )


def load_error_message(path: str | os.PathLike[str], err: BaseException) -> str:
    """One line saying why ``torch.load`` could not read ``path``.

    torch's weights-only refusal spans many lines of advice about ``weights_only``; only the reason
    after ``WeightsUnpickler error:`` (or the first non-empty line of another error) is kept.

    Args:
        path: The file that failed to load.
        err: What ``torch.load`` raised (one of :data:`LOAD_ERRORS`).

    Returns:
        ``cannot load <path> as a weights-only torch checkpoint: ...`` naming the error type and reason.

    Examples:
        >>> load_error_message("a.pt", EOFError())
        'cannot load a.pt as a weights-only torch checkpoint: the file is truncated, corrupt ... (EOFError)'

    """
    text = str(err).split("WeightsUnpickler error:", 1)[-1]
    reason = next((line.strip() for line in text.splitlines() if line.strip()), "")
    detail = f"{type(err).__name__}: {reason[:200]}" if reason else type(err).__name__
    return (
        f"cannot load {path} as a weights-only torch checkpoint: the file is truncated, corrupt or not a "
        f"torch checkpoint ({detail})"
    )


def check_map_location(map_location: str | torch.device) -> None:
    """Raise a ValueError unless ``map_location`` is a torch device this machine has.

    Checked before ``torch.load``, whose errors for a bad device would otherwise read like a corrupt file.
    """
    try:
        device = torch.device(map_location)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"map_location {map_location!r} is not a torch device: {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"map_location {map_location!r}: torch sees no CUDA device here; use 'cpu'")


def read_checkpoint(
    path: str | os.PathLike[str], checksum: Checksum | None, *, map_location: str | torch.device = "cpu"
) -> dict[str, torch.Tensor]:
    """Verify a checkpoint file, load it with ``weights_only=True`` and return its state dict.

    Args:
        path: Checkpoint file.
        checksum: Expected digests (``None`` skips the check: only for files the user vouches for).
        map_location: Device the tensors are loaded to.

    Returns:
        The state dict with ``module.`` prefixes stripped.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        aimc_lsh.data.ChecksumError: If the digest differs (names the file, expected and actual hash).
        CheckpointError: If the file is not a loadable weights-only checkpoint.
        ValueError: If ``map_location`` is not a device of this machine.

    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    check_map_location(map_location)
    data = path.read_bytes()
    if checksum is not None:
        checksum.verify_bytes(data, str(path))
    try:
        obj = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except LOAD_ERRORS as err:
        raise CheckpointError(load_error_message(path, err)) from err
    return strip_prefix(extract_state_dict(obj, str(path)))


def load_state_dict_strict(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str = "checkpoint"
) -> None:
    """Load ``state_dict`` into ``model`` strictly (only BN ``num_batches_tracked`` may be missing).

    Args:
        model: Target model.
        state_dict: Parameter name -> tensor, prefixes already stripped.
        what: Name of the source for error messages.

    Raises:
        CheckpointError: Listing missing, unexpected and shape-mismatched keys.

    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict and not k.endswith(_TOLERATED_MISSING_SUFFIX)]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in state_dict.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or mismatched:
        parts = []
        for label, items in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("shape mismatch", mismatched),
        ):
            if items:
                more = f" (+{len(items) - 6} more)" if len(items) > 6 else ""
                parts.append(f"{label}: {items[:6]}{more}")
        raise CheckpointError(f"{what} does not fit {type(model).__name__}: " + "; ".join(parts))
    model.load_state_dict(dict(state_dict), strict=False)
