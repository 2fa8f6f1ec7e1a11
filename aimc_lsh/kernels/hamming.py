"""Bit-packed Hamming stage for inference: binarize, match and reconstruct in one pass over the projections.

A hashed layer's inference path after the projection is three PyTorch steps: the sign of the k
projections (a k-channel pass), the code agreement ``S = h_W . h_x`` (a 1x1 convolution of +-1
values) and ``cos(pi/2 (1 - S/k)) ||w|| ||x_patch||`` (several output-sized passes). This module does
what the hardware's Hamming-distance stage does instead: it packs the signs of each position's
projections into 64-bit words, counts disagreeing bits against the packed weight codes with
``popcount`` (``S = k - 2 d``) and looks the rescaled cosine up in a per-output table of the k + 1
possible values, writing each output once: the same output bits as the three steps, with several
times less memory traffic.

The C source (``native/hamming.c``) is compiled on first use with the system's C compiler
(:func:`aimc_lsh.utils.build_shared_library`, cached per machine), with OpenMP where the compiler
has it (sharing PyTorch's OpenMP threads; serial otherwise). Without a compiler, or with
``AIMC_LSH_NATIVE=0`` in the environment, or inside :func:`native_hamming` ``(False)``, layers use the
PyTorch steps (a warning says once why, when the build fails). Only float32 CPU tensors without
autograd take this path; training always runs the PyTorch steps (they carry the straight-through
gradients).
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor

from aimc_lsh.utils.native import DEFAULT_FLAGS, NativeBuildError, build_shared_library

__all__ = [
    "NATIVE_ENV",
    "cosine_table",
    "hamming_cosine",
    "hamming_weights",
    "native_hamming",
    "native_hamming_available",
    "pack_code_bits",
]

NATIVE_ENV = "AIMC_LSH_NATIVE"
"""Environment variable: ``0`` (or ``false``, ``no``, ``off``) keeps layers on the PyTorch steps."""

SOURCE = Path(__file__).with_name("native") / "hamming.c"
"""The C source of the stage."""

_ABI_VERSION = 2
_MIN_POSITIONS_PER_THREAD = 1024
_library: ctypes.CDLL | None = None
_load_failed = False
_switch: bool | None = None  # set by native_hamming(); None: follow the environment


def _enabled_by_environment() -> bool:
    return os.environ.get(NATIVE_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def _build() -> ctypes.CDLL:
    """Build (with OpenMP if the compiler has it, else serially) and load the library."""
    try:
        path = build_shared_library(SOURCE, flags=(*DEFAULT_FLAGS, "-fopenmp"))
    except NativeBuildError:
        path = build_shared_library(SOURCE)  # a compiler without OpenMP (e.g. clang without libomp)
    return ctypes.CDLL(str(path))


def _load() -> ctypes.CDLL | None:
    """Build (once per machine) and load the library; None, with one warning, if that fails."""
    global _library, _load_failed
    if _library is not None or _load_failed:
        return _library
    try:
        library = _build()
        library.aimc_hamming_version.restype = ctypes.c_int64
        version = library.aimc_hamming_version()
        if version != _ABI_VERSION:
            raise NativeBuildError(f"{SOURCE.name}: ABI version {version}, expected {_ABI_VERSION}")
    except (NativeBuildError, OSError) as error:
        _load_failed = True
        warnings.warn(
            f"the native Hamming stage is not available ({error}); hashed layers use the slower PyTorch "
            f"steps (set {NATIVE_ENV}=0 to silence this)",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    library.aimc_hamming_parallel.restype = ctypes.c_int64
    function = library.aimc_hamming_cosine
    function.restype = None
    i64, pointer = ctypes.c_int64, ctypes.c_void_p
    function.argtypes = [pointer, i64, i64, pointer, i64, i64, pointer, pointer, pointer, i64]
    _library = library
    return library


def native_hamming_available() -> bool:
    """Whether layers use the native stage now: switched on, and the library built and loaded."""
    enabled = _switch if _switch is not None else _enabled_by_environment()
    return enabled and _load() is not None


@contextlib.contextmanager
def native_hamming(enabled: bool) -> Iterator[None]:
    """Switch the native stage on or off for the block (e.g. to time or check the PyTorch steps).

    Args:
        enabled: False keeps every layer on the PyTorch steps; True uses the native stage where it
            applies (even if ``AIMC_LSH_NATIVE=0``).

    """
    global _switch
    previous, _switch = _switch, bool(enabled)
    try:
        yield
    finally:
        _switch = previous


def pack_code_bits(codes: Tensor) -> Tensor:
    """Pack +-1 codes (rows, k) into (rows, ceil(k / 64)) int64 words: bit b of word w is code 64 w + b > 0.

    >>> pack_code_bits(torch.tensor([[1.0, -1.0, 1.0]]))
    tensor([[5]])
    """
    rows, k = codes.shape
    n_words = -(-k // 64)
    bits = torch.zeros(rows, n_words * 64, dtype=torch.int64)
    bits[:, :k] = (codes > 0).to(torch.int64)
    shifts = torch.arange(64, dtype=torch.int64)
    return (bits.view(rows, n_words, 64) << shifts).sum(dim=-1)  # distinct bits: the sum is their OR


def cosine_table(w_norm: Tensor, k: int) -> Tensor:
    """Rescaled cosine for every number of disagreeing bits: ``table[o, d] = sin(pi/2 (k - 2d)/k) ||w_o||``.

    Computed with the float32 operations of :meth:`HashStages.reconstruct <aimc_lsh.kernels.HashStages>`
    in the same order (``S / k``, times pi/2, sine, times the norm), so the native stage reproduces the
    PyTorch steps' rounding, not only their value.

    Args:
        w_norm: Weight row norms (out,).
        k: Hash length.

    Returns:
        (out, k + 1) float32 table.

    """
    agreement = k - 2 * torch.arange(k + 1, dtype=torch.float32)  # S for d = 0 .. k disagreeing bits
    cosine = agreement.div_(k).mul_(0.5 * math.pi).sin_()
    return (w_norm.detach().to(torch.float32).view(-1, 1) * cosine).contiguous()


def hamming_weights(codes: Tensor, w_norm: Tensor) -> tuple[Tensor, Tensor]:
    """The weight side of the stage: ``(pack_code_bits(codes), cosine_table(w_norm, k))``.

    Callers that run the same weights many times keep it and pass it to :func:`hamming_cosine`.
    """
    return pack_code_bits(codes), cosine_table(w_norm, codes.shape[1])


def hamming_cosine(
    pre: Tensor,
    codes: Tensor,
    w_norm: Tensor,
    x_norm: Tensor,
    *,
    weights: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """``cos(pi/2 (1 - S/k)) ||w|| ||x_patch||`` for every output and position, via packed bits.

    The same bits as ``reconstruct(match(binarize(pre), codes) / k, w_norm, x_norm)`` of
    :class:`aimc_lsh.kernels.HashStages`: the same signs (``copysign`` semantics) and a cosine table
    built with the steps' float32 operations. Positions are split over ``torch.get_num_threads()``
    OpenMP threads.

    Args:
        pre: Projections (N, k, H, W), float32 (channels-last memory avoids a copy).
        codes: Weight codes h_W (out, k), +-1.
        w_norm: Weight row norms (out,).
        x_norm: Patch norms (N, 1, H, W).
        weights: :func:`hamming_weights` of ``codes`` and ``w_norm`` if the caller kept them (computed
            here otherwise).

    Returns:
        (N, out, H, W) float32 in channels-last memory.

    Raises:
        RuntimeError: The native stage is not available (see :func:`native_hamming_available`).
        ValueError: Tensors that are not float32 on the CPU, or shapes that do not fit together.

    """
    if not native_hamming_available():  # it loads the library (once) when switched on
        raise RuntimeError(f"the native Hamming stage is not available (compiler missing, or {NATIVE_ENV}=0)")
    named = {"projections": pre, "codes": codes, "weight norms": w_norm, "patch norms": x_norm}
    for name, tensor in named.items():
        if tensor.dtype != torch.float32 or tensor.device.type != "cpu":
            raise ValueError(
                f"hamming_cosine: {name} are {tensor.dtype} on {tensor.device}; only float32 CPU tensors "
                "are allowed (HashStages runs the PyTorch steps for the others)"
            )
    if pre.dim() != 4 or codes.dim() != 2:
        raise ValueError(
            f"hamming_cosine: projections must be (N, k, H, W) and codes (out, k), got {tuple(pre.shape)} "
            f"and {tuple(codes.shape)}"
        )
    n, k, h, w = pre.shape
    n_out = codes.shape[0]
    if codes.shape[1] != k or w_norm.shape != (n_out,) or x_norm.shape != (n, 1, h, w):
        raise ValueError(
            f"hamming_cosine: projections {tuple(pre.shape)}, codes {tuple(codes.shape)}, weight norms "
            f"{tuple(w_norm.shape)} and patch norms {tuple(x_norm.shape)} do not fit (need (N, k, H, W), "
            "(out, k), (out,), (N, 1, H, W))"
        )
    rows = pre.permute(0, 2, 3, 1).contiguous()  # (N, H, W, k): no copy when pre is channels-last
    weight_bits, table = weights if weights is not None else hamming_weights(codes, w_norm)
    scales = x_norm.reshape(-1).contiguous()
    out = torch.empty(n, h, w, n_out, dtype=torch.float32)
    n_positions = n * h * w
    threads = max(1, min(torch.get_num_threads(), n_positions // _MIN_POSITIONS_PER_THREAD))
    _library.aimc_hamming_cosine(
        rows.data_ptr(),
        n_positions,
        k,
        weight_bits.data_ptr(),
        n_out,
        weight_bits.shape[1],
        table.data_ptr(),
        scales.data_ptr(),
        out.data_ptr(),
        threads,
    )
    return out.permute(0, 3, 1, 2)
