"""Every docstring example that can run here runs and shows what it says (examples that need
data, a trained model, a network or an optional extra are marked ``+SKIP``)."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

import earmark


def _modules() -> list[str]:
    """Every module of the package, from its files: nothing is imported while tests are collected
    (importing earmark.transfer registers models that other tests' parameters would then list)."""
    root = Path(earmark.__file__).parent
    names = []
    for path in sorted(root.rglob("*.py")):
        parts = ["earmark", *path.relative_to(root).with_suffix("").parts]
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    try:
        module = importlib.import_module(name)
    except ImportError as exc:  # a module of an optional extra that is not installed
        pytest.skip(f"{name}: {exc}")
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(verbose=False, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    failures = []
    for test in finder.find(module, name):
        if test.examples and (test.filename or "").endswith(".py") and "earmark" in (test.filename or ""):
            result = runner.run(test, out=failures.append, clear_globs=True)
            del result
    assert not failures, "".join(failures)
