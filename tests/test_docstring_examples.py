"""Every public class shows how it is used, and every such example runs.

The project's style asks for a docstring example on every public class (learn2learn's habit):
an example is the first thing a researcher reads, so an example that no longer runs is a
broken promise. Examples are written as doctests (``>>>``); this module finds every one in the
library packages, runs it, and fails on the first output that differs, naming the module and
line. Examples run in a scratch working directory, with ``tempfile``'s folders inside it, so
one that writes files leaves nothing behind.
"""
from __future__ import annotations

import ast
import doctest
import importlib
import io
import pathlib
import tempfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("maml_tf", "rl", "data_generators", "flags")
# Base-class names that make a class an exception: raising it is its whole use.
EXCEPTION_SUFFIXES = ("Error", "Exception", "Warning", "Interrupt")


def _library_files():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield path


def _module_name(path: pathlib.Path, root: pathlib.Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _public_classes_without_example(path: pathlib.Path, root: pathlib.Path = ROOT):
    tree = ast.parse(path.read_text(), filename=str(path))
    exceptions = set()
    missing = []
    for node in tree.body:
        if not isinstance(node, ast.ClassDef) or node.name.startswith("_"):
            continue
        bases = {base.id if isinstance(base, ast.Name) else getattr(base, "attr", "")
                 for base in node.bases}
        if any(b.endswith(EXCEPTION_SUFFIXES) or b in exceptions for b in bases):
            exceptions.add(node.name)
            continue
        if ">>>" not in (ast.get_docstring(node) or ""):
            missing.append(f"{_module_name(path, root)}.{node.name} ({path.relative_to(root)}:"
                           f"{node.lineno})")
    return missing


def test_every_public_class_has_a_runnable_example():
    missing = [name for path in _library_files()
               for name in _public_classes_without_example(path)]
    assert not missing, ("public classes without a '>>>' example in their docstring:\n  "
                         + "\n  ".join(missing))


def test_the_class_check_can_fail(tmp_path):
    """The scan above finds a public class with no example, and skips exceptions."""
    module = tmp_path / "sample.py"
    module.write_text('class Shown:\n    """A.\n\n    >>> Shown()\n    """\n\n'
                      'class Hidden:\n    """No example."""\n\n'
                      'class BadInput(ValueError):\n    """Raised."""\n\n'
                      'class _Private:\n    pass\n')
    missing = _public_classes_without_example(module, root=tmp_path)
    assert missing == ["sample.Hidden (sample.py:7)"]


EXAMPLE_MODULES = [_module_name(path) for path in _library_files()
                   if ">>>" in path.read_text()]


def test_examples_exist():
    # Guards the parametrisation below: an empty list would pass vacuously.
    assert len(EXAMPLE_MODULES) >= 10, EXAMPLE_MODULES


@pytest.mark.parametrize("module_name", EXAMPLE_MODULES)
def test_docstring_examples_run(module_name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # Examples make their folders with tempfile.mkdtemp(), as a reader would: keep them here.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    module = importlib.import_module(module_name)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    finder = doctest.DocTestFinder(exclude_empty=True)
    report = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=flags)
    tests = finder.find(module, module_name)
    for test in tests:
        runner.run(test, out=report.write)
    results = runner.summarize(verbose=False)
    assert results.attempted > 0, f"{module_name}: no example was found to run"
    assert results.failed == 0, f"{module_name}: examples failed\n{report.getvalue()}"
