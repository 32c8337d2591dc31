"""Shared pytest fixtures.

- ``shared_data``: the real benchmark data (``../shared/data`` next to the project root); tests
  that use it are skipped with a clear reason when the folder is absent.
- ``amazon_industrial_dir`` / ``ml100k_dir``: one data set folder each.
- ``synthetic_dataset``: the built-in synthetic data set with its defaults (built once).
- ``runtime_checkpoint`` / ``runtime_bundle``: a tiny compact model trained on the synthetic data
  and its F32 bundle (with model.onnx), built once for the serving tests; ``rec``: a
  Recommender on that bundle (two contexts), one per test module.
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


# A tiny compact model: fast to train, but with every task and the extra SID level.
TINY = ["--hidden", "64", "--layers", "2", "--heads", "4", "--prompts", "en-seq",
        "--tasks", "next_item=1,sid_to_title=0.1,title_to_sid=0.1"]


def train_tiny(root: Path, sid_args: list[str], train_args: list[str]) -> Path:
    """`sid build` on the synthetic catalog into root/sids, then `train` into root/ckpt."""
    from genrec_lite.cli import main

    sids, ckpt = root / "sids", root / "ckpt"
    assert main(["sid", "build", "--out", str(sids), "--quiet", *sid_args]) == 0
    assert main(["train", "--sids", str(sids), "--out", str(ckpt), "--batch-size", "32",
                 "--eval-cases", "0", "--lr", "3e-3", "--quiet", *train_args]) == 0
    return ckpt


@pytest.fixture(scope="session")
def runtime_checkpoint(tmp_path_factory):
    pytest.importorskip("torch")
    return train_tiny(tmp_path_factory.mktemp("runtime"),
                      ["--codebook-size", "64", "--epochs", "150", "--collisions", "extra_level"],
                      ["--max-steps", "120", *TINY])


@pytest.fixture(scope="session")
def runtime_bundle(runtime_checkpoint, tmp_path_factory):
    pytest.importorskip("llama_cpp")
    from genrec_lite.cli import main

    out = tmp_path_factory.mktemp("bundle") / "b32"
    assert main(["export", "--model", str(runtime_checkpoint), "--out", str(out), "--quant", "f32",
                 "--onnx", "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def rec(runtime_bundle):
    from genrec_lite.runtime import Recommender

    r = Recommender.load(runtime_bundle, n_threads=1, n_contexts=2)
    yield r
    r.close()


def bundle_without_transitions(bundle: Path, out: Path) -> Path:
    """A copy of `bundle` as exported before transition tables existed: no file, no manifest
    entry."""
    import shutil
    from dataclasses import replace

    from genrec_lite.runtime.bundle import Bundle
    from genrec_lite.runtime.manifest import TransitionFacts

    shutil.copytree(bundle, out)
    m = Bundle.open(out).manifest
    (out / "transitions.npz").unlink()
    replace(m, transitions=TransitionFacts(),
            files={k: v for k, v in m.files.items() if k != "transitions.npz"}).save(out)
    return out
