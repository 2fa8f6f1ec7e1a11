"""The native Hamming stage: packed bits, the cosine table, and equality with the PyTorch steps."""

import os
import shlex
import shutil
import subprocess
import warnings

import pytest
import torch

from aimc_lsh.kernels import (
    HashStages,
    cosine_table,
    hamming_cosine,
    hard_sign,
    native_hamming,
    native_hamming_available,
    pack_code_bits,
)
from aimc_lsh.kernels import hamming as hamming_module

HAVE_COMPILER = shutil.which(shlex.split(os.environ.get("CC") or "cc")[0]) is not None
needs_compiler = pytest.mark.skipif(not HAVE_COMPILER, reason="no C compiler")


def torch_steps(pre, codes, w_norm, x_norm):
    """The three PyTorch steps the native stage replaces (on a copy of pre)."""
    with native_hamming(False), torch.no_grad():
        return HashStages().match_and_reconstruct(pre.clone(), codes, w_norm, x_norm, (0, 0))


def random_case(n, k, out, h, w, seed):
    g = torch.Generator().manual_seed(seed)
    pre = torch.randn(n, k, h, w, generator=g).contiguous(memory_format=torch.channels_last)
    codes = hard_sign(torch.randn(out, k, generator=g))
    return pre, codes, torch.rand(out, generator=g) * 3, torch.rand(n, 1, h, w, generator=g) * 5


def test_pack_code_bits_sets_bit_b_of_word_w_for_code_64w_plus_b():
    codes = -torch.ones(2, 130)
    codes[0, [0, 63, 64, 129]] = 1.0
    words = pack_code_bits(codes)
    assert words.shape == (2, 3) and words.dtype == torch.int64
    assert words[0].tolist() == [1 - 2**63, 1, 2]  # bit 63 is the sign bit of an int64
    assert words[1].tolist() == [0, 0, 0]


def test_cosine_table_holds_the_rescaled_cosine_for_each_count_of_disagreeing_bits():
    table = cosine_table(torch.tensor([1.0, 2.0]), 4)
    expected = torch.tensor([[1.0, 2**-0.5, 0.0, -(2**-0.5), -1.0]])
    torch.testing.assert_close(table, torch.cat([expected, 2 * expected]))


@needs_compiler
def test_the_native_stage_is_available_where_a_compiler_is():
    """Guards the tests below: with a compiler they must exercise the native stage, not the fallback."""
    assert native_hamming_available()
    compiler = shlex.split(os.environ.get("CC") or "cc")
    if "gcc" in subprocess.run([*compiler, "--version"], capture_output=True, text=True).stdout.lower():
        assert hamming_module._load().aimc_hamming_parallel() == 1  # built with OpenMP
    with native_hamming(False):
        assert not native_hamming_available()


@needs_compiler
@pytest.mark.parametrize("k", [1, 7, 63, 64, 65, 128, 200, 1024])
def test_native_stage_equals_the_pytorch_steps(k):
    pre, codes, w_norm, x_norm = random_case(3, k, 5, 4, 6, seed=k)
    expected = torch_steps(pre, codes, w_norm, x_norm)
    out = hamming_cosine(pre, codes, w_norm, x_norm)
    assert out.shape == expected.shape == (3, 5, 4, 6)
    assert torch.equal(out, expected)  # same bits, and the table repeats the float32 rounding of the steps


@needs_compiler
def test_signed_zeros_follow_copysign_like_the_pytorch_sign():
    """+0.0 is a +1 bit, -0.0 a -1 bit (tiny values too): the same bits as HashStages.binarize."""
    k = 70
    pre = torch.zeros(1, k, 1, 4)
    pre[0, :, 0, 1] = -0.0
    pre[0, ::2, 0, 2] = -1e-38
    pre[0, 1::3, 0, 3] = 1e-45
    codes = hard_sign(torch.randn(6, k, generator=torch.Generator().manual_seed(0)))
    w_norm, x_norm = torch.ones(6), torch.ones(1, 1, 1, 4)
    expected = torch_steps(pre, codes, w_norm, x_norm)
    torch.testing.assert_close(hamming_cosine(pre, codes, w_norm, x_norm), expected)


@needs_compiler
def test_non_channels_last_projections_and_several_threads_give_the_same_numbers():
    pre, codes, w_norm, x_norm = random_case(4, 96, 7, 32, 33, seed=5)  # 4224 positions: two threads
    expected = torch_steps(pre, codes, w_norm, x_norm)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        two = hamming_cosine(pre, codes, w_norm, x_norm)
        torch.set_num_threads(1)
        one = hamming_cosine(pre.contiguous(), codes, w_norm, x_norm)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)
    assert torch.equal(one, expected)


@needs_compiler
def test_shapes_that_do_not_fit_are_rejected_by_name():
    pre, codes, w_norm, x_norm = random_case(2, 16, 3, 4, 4, seed=1)
    with pytest.raises(ValueError, match=r"codes \(3, 15\).*do not fit"):
        hamming_cosine(pre, codes[:, :15], w_norm, x_norm)
    with pytest.raises(ValueError, match=r"patch norms \(2, 1, 4, 3\)"):
        hamming_cosine(pre, codes, w_norm, x_norm[..., :3])
    with pytest.raises(ValueError, match="patch norms are torch.float64 on cpu; only float32 CPU tensors"):
        hamming_cosine(pre, codes, w_norm, x_norm.double())
    with pytest.raises(ValueError, match=r"projections must be \(N, k, H, W\)"):
        hamming_cosine(pre[0], codes, w_norm, x_norm)


def test_switched_off_it_refuses_and_the_stages_use_the_pytorch_steps(monkeypatch):
    pre, codes, w_norm, x_norm = random_case(2, 16, 3, 4, 4, seed=2)
    expected = torch_steps(pre, codes, w_norm, x_norm)
    monkeypatch.setenv("AIMC_LSH_NATIVE", "0")
    assert not native_hamming_available()
    with pytest.raises(RuntimeError, match="AIMC_LSH_NATIVE=0"):
        hamming_cosine(pre, codes, w_norm, x_norm)
    with torch.no_grad():
        out = HashStages().match_and_reconstruct(pre, codes, w_norm, x_norm, (0, 0))
    torch.testing.assert_close(out, expected)


class CountingStages(HashStages):
    """Replaces one step: match_and_reconstruct must then run the steps, this one included."""

    calls = 0

    def match(self, h_x, codes, tile):
        CountingStages.calls += 1
        return super().match(h_x, codes, tile)


def test_a_subclass_that_replaces_a_step_keeps_its_step_in_inference():
    pre, codes, w_norm, x_norm = random_case(2, 16, 3, 4, 4, seed=3)
    with torch.no_grad():
        CountingStages().match_and_reconstruct(pre, codes, w_norm, x_norm, (0, 0))
    assert CountingStages.calls == 1


def test_without_a_compiler_layers_fall_back_with_one_warning(tmp_path, monkeypatch):
    monkeypatch.setattr(hamming_module, "_library", None)
    monkeypatch.setattr(hamming_module, "_load_failed", False)
    monkeypatch.setenv("AIMC_LSH_CACHE", str(tmp_path))  # no cached build to find
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    pre, codes, w_norm, x_norm = random_case(2, 16, 3, 4, 4, seed=4)
    expected = torch_steps(pre, codes, w_norm, x_norm)
    warning = "native Hamming stage is not available.*no-such-cc"
    with pytest.warns(RuntimeWarning, match=warning), torch.no_grad():
        out = HashStages().match_and_reconstruct(pre.clone(), codes, w_norm, x_norm, (0, 0))
    torch.testing.assert_close(out, expected)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # only once
        assert not native_hamming_available()
