"""Every `>>>` example in lstmkit's docstrings runs and prints what it shows (`help()` is
where many users learn an API)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest
import torch

import lstmkit

MODULES = sorted(module.name for module in pkgutil.walk_packages(lstmkit.__path__, "lstmkit.")
                 if not module.name.endswith("__main__"))


def importable(name: str):
    """The module `name`, or a skip where an extra it needs is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        pytest.skip(f"{name} needs an extra: {error}")


@pytest.mark.parametrize("name", ["lstmkit", *MODULES])
def test_the_docstring_examples_run(name):
    torch.manual_seed(0)
    results = doctest.testmod(importable(name), extraglobs={"torch": torch, "lstmkit": lstmkit}, verbose=False,
                              optionflags=doctest.ELLIPSIS)
    assert results.failed == 0, f"{results.failed} of {results.attempted} examples in {name} failed (above)"


@pytest.mark.parametrize("name", [name for name in lstmkit.__all__ if isinstance(getattr(lstmkit, name), type)
                                  and issubclass(getattr(lstmkit, name), torch.nn.Module)])
def test_every_layer_and_cell_module_has_an_example_that_calls_it(name):
    """A template change that dropped the examples would pass the test above with nothing run."""
    (test,) = doctest.DocTestFinder(recurse=False).find(getattr(lstmkit, name))
    assert any("(torch.randn(" in example.source for example in test.examples), test.examples
