import platform

import torch

from aimc_lsh.utils import tune_allocator


def test_allocator_tuning_is_idempotent_and_changes_no_numbers():
    x = torch.randn(64, 256, 32, 32, generator=torch.Generator().manual_seed(0))
    before = torch.nn.functional.conv2d(x, torch.ones(8, 256, 3, 3))
    first = tune_allocator()
    assert tune_allocator() is first  # a second call is a no-op with the same answer
    assert first is (platform.libc_ver()[0] == "glibc")  # set on glibc, a no-op elsewhere
    after = torch.nn.functional.conv2d(x, torch.ones(8, 256, 3, 3))
    assert torch.equal(before, after)
