"""The serving package is closed: importing genrec_lite.runtime (and loading and using a
Recommender) brings in no training, export or data-preparation code and none of the heavy
training libraries. Each check runs in a fresh interpreter, since this test process has long
imported everything."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import genrec_lite

# What serving must never load. `genrec_lite.data` covers the data layer's splits and synthetic
# generator: importing any module of that package runs its __init__, which imports them all.
HEAVY = ("torch", "scipy", "transformers", "peft", "sentence_transformers")
FORBIDDEN = HEAVY + ("genrec_lite.train", "genrec_lite.export", "genrec_lite.data",
                     "genrec_lite.cli")

REPORT = """
import json, sys
forbidden = {forbidden!r}
{body}
loaded = sorted(m for m in sys.modules
                if any(m == f or m.startswith(f + ".") for f in forbidden))
print(json.dumps(loaded))
"""


def loaded_after(body: str, forbidden=FORBIDDEN) -> list[str]:
    """The forbidden modules present in sys.modules after running `body` in a fresh python."""
    package_root = str(Path(genrec_lite.__file__).resolve().parents[1])
    code = REPORT.format(forbidden=tuple(forbidden), body=body)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, cwd=package_root)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_package_import_is_torch_free():
    assert loaded_after("import genrec_lite", HEAVY) == []


def test_runtime_import_is_closed():
    assert loaded_after("import genrec_lite.runtime") == []


def test_old_template_paths_still_work():
    from genrec_lite.data import Template as from_data
    from genrec_lite.data.templates import Template as from_data_module
    from genrec_lite.templates import Template

    assert from_data is from_data_module is Template


def test_serving_a_bundle_is_closed(runtime_bundle):
    """Both backends, and cold start (ONNX text encoder -> SID) for a new item."""
    body = f"""
from genrec_lite.runtime import Recommender
for backend in ("llama", "onnx"):
    rec = Recommender.load({str(runtime_bundle)!r}, n_threads=1, backend=backend)
    assert rec.recommend([1, 2, 3], k=5)
    rec.add_items([{{"item_id": 990001, "title": "Cordless drill 18V"}}])
    assert rec.recommend([1, 2, 990001], k=5)
    rec.close()
"""
    assert loaded_after(body) == []


def test_cli_and_pipeline_import_is_torch_free():
    """The steps import torch when they train, not when the CLI starts."""
    assert loaded_after("import genrec_lite.cli, genrec_lite.pipeline", HEAVY) == []


def test_sid_build_collab_split_is_torch_free(tmp_path):
    """`sid build --collab-weight` splits the interactions in the data layer: with given vectors
    and RQ-KMeans (no text encoder, no RQ-VAE) the whole command runs without torch."""
    vectors, out = tmp_path / "v.npy", tmp_path / "sids"
    body = f"""
import numpy as np
from genrec_lite.cli import main
from genrec_lite.data import make_synthetic
n = len(make_synthetic().catalog)
np.save({str(vectors)!r}, np.random.default_rng(0).normal(size=(n, 16)).astype(np.float32))
assert main(["sid", "build", "--items", "synthetic", "--method", "rqkmeans", "--collab-weight", "1",
             "--vectors", {str(vectors)!r}, "--out", {str(out)!r}, "--codebook-size", "16",
             "--epochs", "5", "--quiet"]) == 0
"""
    assert loaded_after(body, ("torch",)) == []
    assert (out / "semantic_ids.json").is_file()
