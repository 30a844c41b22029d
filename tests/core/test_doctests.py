"""Every `>>>` example in tunesmith's docstrings runs here and must give what it shows; an example
that cannot run (it needs a model, a file, a network) is written as plain code, not as a doctest."""
from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import tunesmith

MODULES = sorted(m.name for m in pkgutil.walk_packages(tunesmith.__path__, "tunesmith.")
                 if m.name != "tunesmith.cli.__main__")


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    tests = [t for t in doctest.DocTestFinder().find(module, name) if t.examples]
    skipped = [t.name for t in tests if any(ex.options.get(doctest.SKIP) for ex in t.examples)]
    assert not skipped, f"{skipped}: write examples that cannot run as plain code, not as skipped doctests"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in tests:
        runner.run(test)
    assert runner.failures == 0, f"{runner.failures} docstring example(s) in {name} failed (output above)"
