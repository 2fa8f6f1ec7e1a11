"""The examples in the library's docstrings run and print what they show."""

import doctest
import importlib
import pkgutil

import pytest

import aimc_lsh


def _modules_with_examples() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(aimc_lsh.__path__, "aimc_lsh."):
        module = importlib.import_module(info.name)
        if any(test.examples for test in doctest.DocTestFinder().find(module)):
            names.append(info.name)
    return names


MODULES = _modules_with_examples()


def test_the_library_has_docstring_examples():
    assert "aimc_lsh.kernels.base" in MODULES and len(MODULES) >= 8


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    flags = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS
    result = doctest.testmod(importlib.import_module(name), optionflags=flags, report=True)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
