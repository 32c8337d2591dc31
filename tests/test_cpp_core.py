"""The C++ core builds without Python and passes its own tests (tests/cpp, run by ctest).

Configures the project with -DGENREC_BUILD_TESTS=ON (and no Python module) in a temporary build
folder, compiles genrec_core and the test executables, and runs ctest. Skipped when cmake, ctest
or a C++ compiler is missing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not on PATH (the C++ tests need cmake, ctest and a C++ compiler)")
    return path


def _compiler() -> str:
    for name in filter(None, (os.environ.get("CXX"), "c++", "g++", "clang++")):
        if shutil.which(name):
            return name
    pytest.skip("no C++ compiler found (set CXX, or install c++ / g++ / clang++)")


def _run(cmd: list[str], timeout: int) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"
    return res.stdout


def test_cpp_core_builds_without_python_and_its_tests_pass(tmp_path):
    cmake, ctest = _tool("cmake"), _tool("ctest")
    build = tmp_path / "build"
    _run([cmake, "-S", str(ROOT), "-B", str(build), "-DGENREC_BUILD_TESTS=ON",
          "-DGENREC_BUILD_PYTHON=OFF", f"-DCMAKE_CXX_COMPILER={_compiler()}",
          "-DCMAKE_BUILD_TYPE=Release"], timeout=300)
    cache = (build / "CMakeCache.txt").read_text()
    assert "nanobind_DIR" not in cache and "Python_EXECUTABLE" not in cache  # no Python involved
    _run([cmake, "--build", str(build), "-j2"], timeout=900)
    out = _run([ctest, "--test-dir", str(build), "--output-on-failure"], timeout=300)
    m = re.search(r"100% tests passed, 0 tests failed out of (\d+)|100% tests passed out of (\d+)", out)
    assert m, out
    assert int(m.group(1) or m.group(2)) >= 3, out  # sid_trie, beam_search, rq_lookup
    assert not list(build.rglob("_core*")), "the tests build must not build the Python module"
