"""Data set folders: loading the real ones, saving and reloading the neutral format."""

from __future__ import annotations

import time

import pytest

from genrec_lite.data import Case, Dataset, resolve_dataset
from genrec_lite.errors import DataError


def test_load_amazon(amazon_industrial_dir):
    start = time.perf_counter()
    ds = Dataset.load(amazon_industrial_dir)
    assert time.perf_counter() - start < 3.0  # about 0.3 s on a laptop
    assert ds.name == "amazon-industrial"
    assert len(ds.catalog) == 3686 and len(ds.interactions) == 22743
    assert ds.profiles is None
    assert len(ds.valid_cases) == 4532 and len(ds.test_cases) == 4533
    assert ds.test_cases[1] == Case("A474", (168,), 278)
    assert "4533 test cases" in repr(ds)


def test_load_ml100k(ml100k_dir):
    ds = resolve_dataset(ml100k_dir)
    assert ds.name == "ml-100k"
    assert len(ds.catalog) == 1682 and len(ds.interactions) == 100_000
    assert ds.profiles is not None and len(ds.profiles) == 943
    assert ds.valid_cases is None and ds.test_cases is None


def test_save_and_reload(amazon_industrial_dir, tmp_path):
    ds = Dataset.load(amazon_industrial_dir)
    out = ds.save(tmp_path / "copy")
    assert sorted(p.name for p in out.iterdir()) == ["interactions.csv", "items.jsonl",
                                                     "test.jsonl", "valid.jsonl"]
    back = Dataset.load(out)
    assert back == ds
    # the written files hold the originals' text (we write "\n" line ends, the CSV has "\r\n")
    for name in ("interactions.csv", "test.jsonl", "valid.jsonl"):
        mine = (out / name).read_text(encoding="utf-8").splitlines()
        assert mine == (amazon_industrial_dir / name).read_text(encoding="utf-8").splitlines()


def test_other_formats_in_a_folder(synthetic_dataset, tmp_path):
    pytest.importorskip("pyarrow", reason="pyarrow is not installed (Parquet is optional)")
    ds = synthetic_dataset
    folder = tmp_path / "pq"
    ds.catalog.save(folder / "items.parquet")
    ds.interactions.save(folder / "interactions.parquet")
    ds.profiles.save(folder / "users.csv")
    back = Dataset.load(folder)
    assert back.catalog == ds.catalog and back.interactions == ds.interactions
    assert back.profiles == ds.profiles
    (folder / "items.jsonl").write_text('{"item_id": 1}\n', encoding="utf-8")
    with pytest.raises(DataError, match="several items files"):
        Dataset.load(folder)
