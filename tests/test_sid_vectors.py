"""`sid build --vectors`: SIDs from vectors the user already has (.npy by catalog row, Parquet
keyed by item_id), without loading the text encoder; clear errors for mismatched files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from genrec_lite.cli import main
from genrec_lite.data import Catalog
from genrec_lite.errors import DataError
from genrec_lite.sid import SemanticIds
from genrec_lite.sid.given_vectors import load_item_vectors

N, DIM = 48, 8
FAST = ["--method", "rqkmeans", "--levels", "2", "--codebook-size", "4", "--epochs", "5",
        "--quiet"]


@pytest.fixture()
def catalog_file(tmp_path):
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps({"item_id": 100 + 3 * i, "title": f"item {i}"}) + "\n"
                            for i in range(N)))
    return path


@pytest.fixture()
def vectors():
    return np.random.default_rng(0).normal(size=(N, DIM)).astype(np.float32)


@pytest.fixture()
def no_text_encoder(monkeypatch):
    """Any attempt to load the text encoder fails the test."""
    import genrec_lite.sid.embed as embed

    def refuse(*a, **k):
        raise AssertionError("the text encoder was loaded although vectors were given")

    monkeypatch.setattr(embed, "TextEncoder", refuse)


def _parquet(path, ids, rows):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"item_id": pa.array(ids, pa.int64()),
                             "vector": pa.array([list(map(float, r)) for r in rows])}), path)
    return path


def test_npy_and_parquet_give_the_same_sids(tmp_path, catalog_file, vectors, no_text_encoder,
                                            capsys):
    np.save(tmp_path / "v.npy", vectors)
    assert main(["sid", "build", "--items", str(catalog_file), "--vectors",
                 str(tmp_path / "v.npy"), "--out", str(tmp_path / "a"), *FAST]) == 0
    assert f"vectors: {N:,} x {DIM}" in capsys.readouterr().err
    a = SemanticIds.load(tmp_path / "a")
    assert len(a) == N and a.config["vectors"].endswith("v.npy")
    assert a.config["embedding_model"] is None and a.config["input_dim"] == DIM
    # the same vectors keyed by item id, rows shuffled
    ids = Catalog.load(catalog_file).item_ids
    perm = np.random.default_rng(1).permutation(N)
    _parquet(tmp_path / "v.parquet", ids[perm], vectors[perm])
    assert main(["sid", "build", "--items", str(catalog_file), "--vectors",
                 str(tmp_path / "v.parquet"), "--out", str(tmp_path / "b"), *FAST]) == 0
    b = SemanticIds.load(tmp_path / "b")
    assert np.array_equal(a.codes, b.codes) and np.array_equal(a.item_ids, b.item_ids)
    # new items cannot get SIDs from text in a space they were not built in
    assert main(["sid", "assign", "--sids", str(tmp_path / "a"), "--items",
                 str(catalog_file)]) == 2
    assert "built from given vectors" in capsys.readouterr().err


def test_fixed_size_parquet_lists_are_read(tmp_path, catalog_file, vectors):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    cat = Catalog.load(catalog_file)
    flat = pa.array(vectors.ravel())
    pq.write_table(pa.table({"item_id": cat.item_ids,
                             "vector": pa.FixedSizeListArray.from_arrays(flat, DIM)}),
                   tmp_path / "f.parquet")
    assert np.array_equal(load_item_vectors(tmp_path / "f.parquet", cat), vectors)


def test_npy_mismatches_are_clear(tmp_path, catalog_file, vectors):
    cat = Catalog.load(catalog_file)
    cases = {
        "rows.npy": (vectors[:-1], rf"has {N - 1} rows but the catalog has {N} items; expected "
                                   "row i to be the vector of the catalog's i-th item"),
        "flat.npy": (vectors.ravel(), r"shape \(384,\); expected 2-D \(items, dim\)"),
        "text.npy": (np.array([["a"] * DIM] * N), "dtype <U1; expected numbers"),
        "empty.npy": (np.zeros((N, 0), np.float32), "0 dimensions"),
    }
    for name, (arr, msg) in cases.items():
        np.save(tmp_path / name, arr)
        with pytest.raises(DataError, match=msg):
            load_item_vectors(tmp_path / name, cat)
    bad = vectors.copy()
    bad[5, 2] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(DataError, match=r"vector of item 115 \(catalog row 5\) holds NaN or inf"):
        load_item_vectors(tmp_path / "nan.npy", cat)
    (tmp_path / "v.txt").write_text("1 2 3")
    with pytest.raises(DataError, match=r"'\.txt' file; expected one of \.npy, \.parquet"):
        load_item_vectors(tmp_path / "v.txt", cat)
    with pytest.raises(DataError, match="vectors file not found"):
        load_item_vectors(tmp_path / "missing.npy", cat)


def test_parquet_mismatches_are_clear(tmp_path, catalog_file, vectors):
    pytest.importorskip("pyarrow")
    cat = Catalog.load(catalog_file)
    ids = cat.item_ids
    with pytest.raises(DataError, match=rf"catalog item {ids[-1]} has no vector \(1 of {N}"):
        load_item_vectors(_parquet(tmp_path / "short.parquet", ids[:-1], vectors[:-1]), cat)
    with pytest.raises(DataError, match="item 7 is not in the catalog"):
        load_item_vectors(_parquet(tmp_path / "extra.parquet", np.r_[ids, 7],
                                   np.r_[vectors, vectors[:1]]), cat)
    with pytest.raises(DataError, match=f"item {ids[0]} has 2 vectors"):
        load_item_vectors(_parquet(tmp_path / "dup.parquet", np.r_[ids, ids[0]],
                                   np.r_[vectors, vectors[:1]]), cat)
    ragged = [list(r) for r in vectors]
    ragged[3] = ragged[3][:-1]
    with pytest.raises(DataError, match=rf"item {ids[3]} \(row 4\) has a vector of {DIM - 1} "
                                        rf"numbers but the first has {DIM}"):
        load_item_vectors(_parquet(tmp_path / "ragged.parquet", ids, ragged), cat)
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": ids, "emb": [list(r) for r in vectors]}),
                   tmp_path / "names.parquet")
    with pytest.raises(DataError, match="missing column 'item_id', 'vector' \\(the file has: "
                                        "'id', 'emb'\\)"):
        load_item_vectors(tmp_path / "names.parquet", cat)


def test_cli_reports_bad_vectors_and_conflicting_options(tmp_path, catalog_file, vectors, capsys,
                                                         no_text_encoder):
    np.save(tmp_path / "rows.npy", vectors[:10])
    assert main(["sid", "build", "--items", str(catalog_file), "--vectors",
                 str(tmp_path / "rows.npy"), "--out", str(tmp_path / "o"), *FAST]) == 2
    assert "has 10 rows but the catalog has 48 items" in capsys.readouterr().err
    np.save(tmp_path / "v.npy", vectors)
    assert main(["sid", "build", "--items", str(catalog_file), "--vectors",
                 str(tmp_path / "v.npy"), "--encoder", "all-MiniLM-L6-v2", "--out",
                 str(tmp_path / "o"), *FAST]) == 2
    assert "expected one of them" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_build_records_the_template_and_the_sample(tmp_path, catalog_file, vectors, no_text_encoder):
    """--template is recorded whether or not --train-sample is given (a merge once applied it
    only with a sample size), and --train-sample reaches the build."""
    np.save(tmp_path / "v.npy", vectors)
    for name, extra in (("plain", []), ("sampled", ["--train-sample", "20"])):
        assert main(["sid", "build", "--items", str(catalog_file), "--vectors",
                     str(tmp_path / "v.npy"), "--out", str(tmp_path / name), "--template",
                     "{title}!", *FAST, *extra]) == 0
        s = SemanticIds.load(tmp_path / name)
        assert s.config["text_template"] == "{title}!", name
    assert SemanticIds.load(tmp_path / "sampled").report()["train_items"] <= max(20, 16)
