"""The precision of the tiled layers' two large products in training: float32, or bfloat16 where it is faster.

In a training step of a layer with many small input tiles (:func:`aimc_lsh.kernels.stacked_tiles_forward`)
most of the time goes to two batched products and their gradients: the projection of the input patches,
``(T, k, C_t kh kw) @ (T, C_t kh kw, M)``, and the code agreements, ``(T, out, k) @ (T, k, M)``. On CPUs with
bfloat16 dot-product instructions (AVX512-BF16, AMX) both run several times faster in bfloat16, and the
(T, k, M) codes between them take half the memory traffic. Inside :func:`product_precision` with
``"bfloat16"`` the stacked path computes them so:

* the projection's operands are rounded to bfloat16 (8 significant bits) before the product, which sums in
  float32: an input bit flips only where its projection lies within rounding of zero;
* the agreements of the +-1 codes are exact: the products sum in float32 and every partial sum of at most
  256 codes is an integer that bfloat16 holds exactly (longer codes are summed in chunks of 256, in float32);
* their gradients run in bfloat16, as in mixed-precision training; the weights, the projections, the norms,
  the cosine and everything outside the two products stay float32.

Nothing else changes: evaluation, the tile-by-tile and hardware paths and untiled layers always compute in
the model's dtype, and outside the block (or with ``"float32"``) so do the products. Where the CPU has no
bfloat16 dot-product instructions the products are still correct but emulated, and slower than float32
(measured with tiles of 4: 1.7x slower steps with oneDNN limited to AVX512, 17x with AVX2);
:func:`slow_product_warning` says so before a run starts. ``benchmarks/bench_training_step.py`` measures both.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
from torch import Tensor

PRODUCT_DTYPES: dict[str, torch.dtype | None] = {"float32": None, "bfloat16": torch.bfloat16}
"""Name -> dtype of the tiled products (``TrainConfig.product_dtype``); None: the operands' own dtype (float32
for a float32 model), as outside any :func:`product_precision` block."""

EXACT_CODE_CHUNK = 256
"""Codes summed per bfloat16 product: a sum of at most 256 terms of +-1 is an integer in [-256, 256], which
bfloat16 (8 significant bits) holds exactly."""

_current: ContextVar[torch.dtype | None] = ContextVar("aimc_lsh_product_dtype", default=None)


def check_product_dtype(name: str) -> torch.dtype | None:
    """Return the product dtype called ``name`` (None for ``"float32"``: the operands' own).

    Raises:
        ValueError: When ``name`` is not one of :data:`PRODUCT_DTYPES`.
    """
    if name not in PRODUCT_DTYPES:
        raise ValueError(f"unknown product dtype {name!r}; allowed: {', '.join(PRODUCT_DTYPES)}")
    return PRODUCT_DTYPES[name]


@contextmanager
def product_precision(name: str) -> Iterator[None]:
    """Compute the tiled layers' projection and agreement products in dtype ``name`` within the block.

    >>> with product_precision("bfloat16"):
    ...     product_dtype()
    torch.bfloat16
    >>> product_dtype() is None
    True

    Args:
        name: ``"bfloat16"``, or ``"float32"``: the operands' own dtype, as outside any block.

    Raises:
        ValueError: For any other name.
    """
    token = _current.set(check_product_dtype(name))
    try:
        yield
    finally:
        _current.reset(token)


def product_dtype() -> torch.dtype | None:
    """The tiled products' dtype here: None (the operands' own) unless :func:`product_precision` set it."""
    return _current.get()


def code_agreements(codes: Tensor, signs: Tensor) -> Tensor:
    """``codes @ signs`` of +-1 tensors (T, out, k) and (T, k, M), exact in any dtype.

    In float32 or float64 one product of that dtype; in bfloat16 the product is split into chunks of
    :data:`EXACT_CODE_CHUNK` codes whose integer sums bfloat16 holds exactly, and returned in float32.
    """
    if codes.dtype != torch.bfloat16:
        return torch.bmm(codes, signs)
    length = codes.shape[2]
    total = None
    for start in range(0, length, EXACT_CODE_CHUNK):
        stop = start + EXACT_CODE_CHUNK
        part = torch.bmm(codes[:, :, start:stop], signs[:, start:stop]).float()
        total = part if total is None else total + part
    return total


def slow_product_warning(name: str, device: str | torch.device = "cpu") -> str | None:
    """Why products in dtype ``name`` would be slow on ``device``, or None where they run natively.

    bfloat16 products are native on a CUDA device that supports bfloat16, and on a CPU with bfloat16
    dot-product instructions (AVX512-BF16 or AMX) for which oneDNN has bfloat16 kernels. Elsewhere they are
    emulated: training steps with tiles of 4 measured 1.7x slower than float32 with oneDNN limited to AVX512
    (``ONEDNN_MAX_CPU_ISA=AVX512_CORE``) and 17x slower with AVX2. float32 is always native. A limit below
    AVX512-BF16 set through ``ONEDNN_MAX_CPU_ISA`` (or its older name ``DNNL_MAX_CPU_ISA``) counts as a CPU
    without the instructions; the variable is read at each call, while oneDNN reads it once, when it starts.

    Raises:
        ValueError: When ``name`` is not one of :data:`PRODUCT_DTYPES`.
    """
    if check_product_dtype(name) is None:
        return None
    device = torch.device(device)
    variable, isa_limit = _onednn_isa_limit() if device.type == "cpu" else (None, None)
    if isa_limit in _ISAS_WITHOUT_BFLOAT16_DOT:
        cause = f"oneDNN, limited to {isa_limit} by {variable}, has no {name} dot-product instructions"
    elif device.type == "cuda" and torch.cuda.is_bf16_supported():
        return None
    elif device.type == "cpu" and _cpu_has_native_bfloat16():
        return None
    else:
        cause = f"this {device.type.upper()} has no {name} dot-product instructions (AVX512-BF16 or AMX)"
    return (
        f"product_dtype {name!r}: {cause}: the products are emulated, measured 1.7x (AVX512) to 17x (AVX2) "
        "slower per training step than float32. Use 'float32'."
    )


_ISAS_WITHOUT_BFLOAT16_DOT = frozenset(
    {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"}
)
"""``ONEDNN_MAX_CPU_ISA`` values below AVX512_CORE_BF16: under them oneDNN has no bfloat16 dot products."""


def _onednn_isa_limit() -> tuple[str | None, str | None]:
    """The environment variable that limits oneDNN's instruction set and its value (upper case), or Nones."""
    for variable in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        value = os.environ.get(variable, "").strip()
        if value:
            return variable, value.upper()
    return None, None


def _cpu_has_native_bfloat16() -> bool:
    """AVX512-BF16 or AMX instructions, and oneDNN bfloat16 kernels (torch's own probes; False if absent)."""

    def probe(module: object, name: str) -> bool:
        function = getattr(module, name, None)
        return function is not None and bool(function())

    instructions = probe(torch.cpu, "_is_avx512_bf16_supported") or probe(torch.cpu, "_is_amx_tile_supported")
    return instructions and probe(torch.ops.mkldnn, "_is_mkldnn_bf16_supported")
