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
float32. Where the CPU lacks those instructions bfloat16 products are correct but can be slower
(``benchmarks/bench_training_step.py`` measures both).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
from torch import Tensor

PRODUCT_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16}
"""Name -> dtype of the tiled products (``TrainConfig.product_dtype``)."""

EXACT_CODE_CHUNK = 256
"""Codes summed per bfloat16 product: a sum of at most 256 terms of +-1 is an integer in [-256, 256], which
bfloat16 (8 significant bits) holds exactly."""

_current: ContextVar[torch.dtype] = ContextVar("aimc_lsh_product_dtype", default=torch.float32)


def check_product_dtype(name: str) -> torch.dtype:
    """Return the dtype called ``name``.

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
    >>> product_dtype()
    torch.float32

    Args:
        name: ``"float32"`` or ``"bfloat16"``.

    Raises:
        ValueError: For any other name.
    """
    token = _current.set(check_product_dtype(name))
    try:
        yield
    finally:
        _current.reset(token)


def product_dtype() -> torch.dtype:
    """The dtype the tiled products use here: float32 unless inside :func:`product_precision`."""
    return _current.get()


def code_agreements(codes: Tensor, signs: Tensor) -> Tensor:
    """``codes @ signs`` of +-1 tensors (T, out, k) and (T, k, M) in float32, exact in any product dtype.

    Both tensors must already have the product dtype; with bfloat16 the product is split into chunks of
    :data:`EXACT_CODE_CHUNK` codes whose integer sums bfloat16 holds exactly, summed in float32.
    """
    if codes.dtype == torch.float32:
        return torch.bmm(codes, signs)
    length = codes.shape[2]
    total = None
    for start in range(0, length, EXACT_CODE_CHUNK):
        stop = start + EXACT_CODE_CHUNK
        part = torch.bmm(codes[:, :, start:stop], signs[:, start:stop]).float()
        total = part if total is None else total + part
    return total
