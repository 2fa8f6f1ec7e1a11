import pytest
import torch

from aimc_lsh.data import digits_dataset
from aimc_lsh.models import train_digits_model


@pytest.fixture(scope="session")
def digits_teacher():
    torch.set_num_threads(1)
    return train_digits_model(epochs=15, seed=0).model


@pytest.fixture(scope="session")
def digits_data():
    return digits_dataset(True), digits_dataset(False)
