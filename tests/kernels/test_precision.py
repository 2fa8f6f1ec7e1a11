import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from aimc_lsh.kernels import (
    ConvGeometry,
    product_dtype,
    product_precision,
    slow_product_warning,
    stacked_tiles_forward,
)
from aimc_lsh.kernels.precision import code_agreements
from tests.kernels.test_tiled import tile_by_tile

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("k", [64, 256, 1000])
def test_bfloat16_code_agreements_are_exact_at_any_code_length(k):
    gen = torch.Generator().manual_seed(k)
    codes = torch.randn(3, 7, k, generator=gen).sign()
    signs = torch.randn(3, k, 300, generator=gen).sign()
    # all codes alike: the largest agreement, k, which bfloat16 alone could not hold for k = 1000
    codes[0, 0], signs[0, :, 0] = 1.0, 1.0
    exact = torch.bmm(codes, signs)
    assert exact[0, 0, 0] == k
    agreement = code_agreements(codes.bfloat16(), signs.bfloat16())
    assert agreement.dtype == torch.float32 and torch.equal(agreement, exact)


def test_product_precision_applies_inside_its_block_only_and_names_the_allowed_dtypes():
    assert product_dtype() is None  # the operands' own dtype
    with product_precision("bfloat16"):
        assert product_dtype() == torch.bfloat16
        with product_precision("float32"):
            assert product_dtype() is None
        assert product_dtype() == torch.bfloat16
    with pytest.raises(RuntimeError), product_precision("bfloat16"):
        raise RuntimeError
    assert product_dtype() is None
    with pytest.raises(ValueError, match="unknown product dtype 'float16'; allowed: float32, bfloat16"):
        with product_precision("float16"):
            pass


def _layer(gen: torch.Generator, bf16_exact: bool):
    """Inputs, weight and projections of a layer with 4 tiles of 4 channels, k = 256."""
    n_tiles, tile_channels, k = 4, 4, 256
    x = torch.rand(2, n_tiles * tile_channels, 8, 8, generator=gen)
    weight = torch.randn(6, n_tiles * tile_channels, 3, 3, generator=gen)
    projections = torch.randn(n_tiles, k, tile_channels * 9, generator=gen)
    if bf16_exact:
        x, projections = x.bfloat16().float(), projections.bfloat16().float()
    return x.requires_grad_(), weight.requires_grad_(), projections.requires_grad_()


def _output_and_grads(x, weight, projections, dtype_name):
    geometry = ConvGeometry((1, 1), (1, 1))
    with product_precision(dtype_name):
        out = stacked_tiles_forward(x, weight, projections, geometry)
    grads = torch.autograd.grad(out.square().sum(), (x, weight, projections))
    return out, grads


def test_bfloat16_products_give_float32_outputs_where_the_operands_are_bfloat16_numbers():
    x, weight, projections = _layer(torch.Generator().manual_seed(0), bf16_exact=True)
    out, grads = _output_and_grads(x, weight, projections, "bfloat16")
    assert out.dtype == torch.float32 and all(g.dtype == torch.float32 for g in grads)
    expected, expected_grads = _output_and_grads(x, weight, projections, "float32")
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)  # the same codes, exact agreements
    for grad, reference in zip(grads, expected_grads, strict=True):  # gradients in bfloat16: ~3 digits
        assert (grad - reference).norm() <= 0.01 * reference.norm()


def test_bfloat16_products_round_the_projections_operands():
    x, weight, projections = _layer(torch.Generator().manual_seed(0), bf16_exact=False)
    out, _ = _output_and_grads(x, weight, projections, "bfloat16")
    exact, _ = _output_and_grads(x, weight, projections, "float32")
    assert not torch.allclose(out, exact, rtol=1e-4, atol=1e-4)  # some input codes flipped
    assert (out - exact).norm() <= 0.05 * exact.norm()  # a few of them


def test_float32_products_are_the_default_path_and_keep_float64_models_in_float64():
    x, weight, projections = _layer(torch.Generator().manual_seed(1), bf16_exact=False)
    default = stacked_tiles_forward(x, weight, projections, ConvGeometry((1, 1), (1, 1)))
    out, _ = _output_and_grads(x, weight, projections, "float32")
    assert torch.equal(out, default)
    wide = [t.detach().double() for t in (x, weight, projections)]
    out, _ = _output_and_grads(*[t.clone().requires_grad_() for t in wide], "float32")
    reference = tile_by_tile(*wide, ConvGeometry((1, 1), (1, 1)))  # (N, L, out), float64 throughout
    assert out.dtype == torch.float64
    torch.testing.assert_close(out.flatten(2).transpose(1, 2), reference, rtol=1e-12, atol=1e-12)


def test_float32_products_are_always_native_and_unknown_names_are_refused():
    assert slow_product_warning("float32") is None
    with pytest.raises(ValueError, match="unknown product dtype 'int8'"):
        slow_product_warning("int8")


def test_a_cpu_without_bfloat16_instructions_is_warned_before_training(tmp_path):
    """oneDNN limited to AVX2 (no bfloat16 kernels): the probe and the trainer both say so."""
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    probe = "from aimc_lsh.kernels import slow_product_warning as w; print(w('bfloat16'))"
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    assert "limited to AVX2 by ONEDNN_MAX_CPU_ISA, has no bfloat16 dot-product" in run.stdout, run.stderr
    finetune = [
        sys.executable, str(REPO / "studies" / "finetune.py"), "--model", "digits_cnn", "--k", "16",
        "--kernel", "learned_projection", "--input-tile-size", "64", "--epochs", "0", "--no-augment",
        "--quiet", "--threads", "1", "--product-dtype", "bfloat16",
    ]  # fmt: skip
    run = subprocess.run(finetune, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert run.returncode == 0 and "RuntimeWarning: product_dtype 'bfloat16'" in run.stderr, run.stderr


@pytest.mark.parametrize(
    ("variable", "value", "shown"),
    [
        ("ONEDNN_MAX_CPU_ISA", "AVX512_CORE", "AVX512_CORE"),
        ("DNNL_MAX_CPU_ISA", " avx512_core_vnni ", "AVX512_CORE_VNNI"),
    ],
)
def test_a_onednn_limit_below_bfloat16_is_warned_even_on_a_cpu_that_has_the_instructions(
    monkeypatch, variable, value, shown
):
    """Under AVX512_CORE bfloat16 steps measured 1.7x slower, and torch's probes still report bfloat16."""
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    monkeypatch.setenv(variable, value)
    message = slow_product_warning("bfloat16")
    assert message is not None and f"oneDNN, limited to {shown} by {variable}" in message
    assert "emulated" in message and "Use 'float32'" in message
    assert slow_product_warning("float32") is None


def test_a_onednn_limit_that_keeps_bfloat16_changes_nothing(monkeypatch):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    unlimited = slow_product_warning("bfloat16")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")
    assert slow_product_warning("bfloat16") == unlimited
