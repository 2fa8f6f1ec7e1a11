import random

import numpy as np
import pytest
import torch

from aimc_lsh.utils import check_seed, make_generator, set_seed


def test_set_seed_reproduces_all_generators():
    set_seed(123)
    first = (random.random(), np.random.rand(), torch.rand(3))
    set_seed(123)
    second = (random.random(), np.random.rand(), torch.rand(3))
    assert first[0] == second[0] and first[1] == second[1]
    assert torch.equal(first[2], second[2])


def test_make_generator_is_independent_of_global_state():
    a = torch.rand(4, generator=make_generator(7))
    torch.manual_seed(0)
    torch.rand(10)
    b = torch.rand(4, generator=make_generator(7))
    assert torch.equal(a, b)
    assert not torch.equal(a, torch.rand(4, generator=make_generator(8)))


@pytest.mark.parametrize("bad", [-1, 2**63, 1.5, "3", True, None])
def test_check_seed_rejects_bad_values(bad):
    with pytest.raises((TypeError, ValueError), match="seed"):
        check_seed(bad)


def test_check_seed_accepts_numpy_ints():
    assert check_seed(np.int64(5)) == 5
