"""One module owns the import of the compiled extension: genrec_lite._ext.

The package's import graph has one arrow into genrec_lite._core (from _ext), and a missing build
raises one clear GenrecError that says how to build it.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import genrec_lite
from genrec_lite import _ext
from genrec_lite.errors import ExtensionNotBuiltError, GenrecError, MissingDependencyError

PACKAGE = Path(genrec_lite.__file__).resolve().parent


def _imports_of_core(path: Path) -> list[int]:
    """Lines of `path` that import genrec_lite._core (absolute or relative, any form)."""
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    package = list(rel.parts[:-1])  # the module's package, e.g. ['genrec_lite', 'sid']
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        else:
            continue
        if "genrec_lite._core" in targets or any(t.startswith("genrec_lite._core.") for t in targets):
            lines.append(node.lineno)
    return lines


def test_only_ext_imports_the_extension():
    found = {str(p.relative_to(PACKAGE)): lines for p in sorted(PACKAGE.rglob("*.py"))
             if (lines := _imports_of_core(p))}
    assert list(found) == ["_ext.py"], found


def test_core_is_the_extension_module():
    import genrec_lite._core as module

    assert _ext.core() is module
    assert _ext.core() is _ext.core()


def test_missing_extension_raises_one_clear_error(monkeypatch):
    monkeypatch.setattr(_ext, "_module", None)
    monkeypatch.delattr(genrec_lite, "_core", raising=False)
    monkeypatch.setitem(sys.modules, "genrec_lite._core", None)  # import fails like a missing .so
    with pytest.raises(ExtensionNotBuiltError) as info:
        _ext.core()
    assert isinstance(info.value, GenrecError) and isinstance(info.value, MissingDependencyError)
    assert isinstance(info.value, ImportError)
    msg = str(info.value)
    assert "genrec_lite._core" in msg and "pip install ." in msg and "GENREC_BUILD_PYTHON=ON" in msg
