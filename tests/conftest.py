"""Shared pytest fixtures.

- ``shared_data``: the real benchmark data (``../shared/data`` next to the project root); tests
  that use it are skipped with a clear reason when the folder is absent.
- ``amazon_industrial_dir`` / ``ml100k_dir``: one data set folder each.
- ``synthetic_dataset``: the built-in synthetic data set with its defaults (built once).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

try:  # an installed genrec-lite wins; a plain checkout runs from python/
    import genrec_lite  # noqa: F401
except ImportError:  # pragma: no cover - depends on how the tests are run
    sys.path.insert(0, str(ROOT / "python"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (relative to the project root), or skip."""
    if not SHARED_DATA.is_dir():
        pytest.skip("shared data folder ../shared/data not found (real-data tests need it)")
    return SHARED_DATA


def _data_set(shared: Path, name: str) -> Path:
    folder = shared / name
    if not folder.is_dir():
        pytest.skip(f"data set folder ../shared/data/{name} not found (real-data tests need it)")
    return folder


@pytest.fixture(scope="session")
def amazon_industrial_dir(shared_data: Path) -> Path:
    """``../shared/data/amazon-industrial``, or skip."""
    return _data_set(shared_data, "amazon-industrial")


@pytest.fixture(scope="session")
def ml100k_dir(shared_data: Path) -> Path:
    """``../shared/data/ml-100k``, or skip."""
    return _data_set(shared_data, "ml-100k")


@pytest.fixture(scope="session")
def synthetic_dataset():
    """The built-in synthetic data set (default size, seed 0), built once per session."""
    from genrec_lite.data import make_synthetic

    return make_synthetic()
