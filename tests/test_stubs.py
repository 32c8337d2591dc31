"""The committed type stubs of the extension (python/genrec_lite/_core.pyi) are current and ship.

The stub must equal what nanobind's stubgen writes for the built extension (regenerate it with
`python tools/gen_stubs.py` after changing the bindings).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "python" / "genrec_lite"


def test_committed_stub_matches_stubgen():
    if importlib.util.find_spec("nanobind") is None or importlib.util.find_spec("nanobind.stubgen") is None:
        pytest.skip("nanobind's stubgen is not installed (pip install nanobind)")
    res = subprocess.run([sys.executable, str(ROOT / "tools" / "gen_stubs.py"), "--check"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr


def test_stub_and_typed_marker_are_in_the_wheel_package():
    # scikit-build-core copies every file of wheel.packages that git does not ignore
    assert (PACKAGE / "_core.pyi").is_file() and (PACKAGE / "py.typed").is_file()
    wheel = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["scikit-build"]
    assert "python/genrec_lite" in wheel.get("wheel.packages", wheel.get("wheel", {}).get("packages", []))
    assert not wheel.get("wheel", {}).get("exclude") and "wheel.exclude" not in wheel
    ignored = subprocess.run(["git", "check-ignore", "python/genrec_lite/_core.pyi",
                              "python/genrec_lite/py.typed"], cwd=ROOT, capture_output=True, text=True)
    assert ignored.stdout == "", f"git ignores {ignored.stdout.split()} (then the wheel would lack them)"
