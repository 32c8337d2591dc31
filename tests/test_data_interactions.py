"""Interactions and user profiles: loading, normalisation, sequences, round trips."""

from __future__ import annotations


import numpy as np
import pytest

from genrec_lite.data import Catalog, Interactions, UserProfiles
from genrec_lite.errors import InvalidArgumentError


def test_real_amazon_interactions(amazon_industrial_dir):
    cat = Catalog.load(amazon_industrial_dir / "items.jsonl")
    inter = Interactions.load(amazon_industrial_dir / "interactions.csv", catalog=cat)
    assert len(inter) == 22743 and inter.n_users == 3285
    assert inter.user_ids.dtype.kind == "U" and inter.user_ids[0] == "A0"
    assert inter.item_ids.dtype == np.int64 and inter.timestamps.dtype == np.int64
    assert inter.ratings is None
    assert int(inter.timestamps.max()) == 2_004_532


def test_real_ml100k_interactions(ml100k_dir):
    inter = Interactions.load(ml100k_dir / "interactions.csv")
    assert len(inter) == 100_000 and inter.n_users == 943 and inter.n_items == 1682
    assert inter.user_ids[0] == "196"  # ids are text
    assert inter.ratings is not None and inter.ratings[:3].tolist() == [3.0, 3.0, 1.0]
    seqs = inter.sequences()
    assert len(seqs) == 943 and sum(len(s) for s in seqs.values()) == 100_000
    # chronological: each user's timestamps never decrease
    order = inter.chronological_order()
    codes = {u: k for k, u in enumerate(inter.users.tolist())}
    c = np.array([codes[u] for u in inter.user_ids[order].tolist()])
    t = inter.timestamps[order]
    assert np.all((np.diff(c) > 0) | ((np.diff(c) == 0) & (np.diff(t) >= 0)))


def test_real_profiles(ml100k_dir):
    prof = UserProfiles.load(ml100k_dir / "users.jsonl")
    assert len(prof) == 943 and prof.fields == ("age", "gender", "occupation", "zip_code")
    assert prof.get(1) == prof.get("1") == {"user_id": "1", "age": 24, "gender": "M",
                                            "occupation": "technician", "zip_code": "85711"}
    assert prof.get("no such user") is None
    assert prof.render(2, "A {age}-year-old[ {occupation}]") == "A 53-year-old other"
    assert prof.render("nobody", "{age}", default="unknown") == "unknown"
    with pytest.raises(InvalidArgumentError, match="'income'"):
        prof.render(1, "{income}")


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_sequences_stable_and_windowed(tmp_path):
    p = _write(tmp_path, "i.csv", "user_id,item_id,timestamp\n"
               "b,1,5\na,2,3\nb,3,5\na,4,1\nb,5,2\nc,6,9\n")
    inter = Interactions.load(p)
    seqs = inter.sequences()
    assert list(seqs) == ["b", "a", "c"]  # first-appearance order
    assert seqs["b"].tolist() == [5, 1, 3]  # ties (time 5) keep file order
    assert seqs["a"].tolist() == [4, 2]
    assert {u: s.tolist() for u, s in inter.sequences(before=5).items()} == {"b": [5],
                                                                              "a": [4, 2]}
    assert {u: s.tolist() for u, s in inter.sequences(since=3, before=9).items()} == {
        "b": [1, 3], "a": [2]}
    assert len(inter.between(since=5)) == 3


def test_timestamps_int_float_and_missing(tmp_path):
    p = _write(tmp_path, "i.csv", "user_id,item_id,timestamp\n1,1,3.0\n1,2,4\n")
    assert Interactions.load(p).timestamps.dtype == np.int64
    p = _write(tmp_path, "j.csv", "user_id,item_id,timestamp\n1,1,3.5\n1,2,4\n")
    inter = Interactions.load(p)
    assert inter.timestamps.dtype == np.float64 and inter.timestamps.tolist() == [3.5, 4.0]
    p = _write(tmp_path, "k.csv", "user_id,item_id\nu,9\nu,8\n")
    inter = Interactions.load(p, time_field=None)
    assert inter.timestamps.tolist() == [0, 1] and inter.sequences()["u"].tolist() == [9, 8]


def test_jsonl_interactions_with_int_user_ids(tmp_path):
    p = _write(tmp_path, "i.jsonl", '{"user_id": 7, "item_id": 1, "timestamp": 2}\n'
               '{"user_id": "7", "item_id": 2, "timestamp": 1}\n')
    inter = Interactions.load(p)
    assert inter.n_users == 1 and inter.sequences()["7"].tolist() == [2, 1]


@pytest.mark.parametrize("suffix", ["csv", "jsonl", "parquet"])
def test_interactions_round_trip(tmp_path, suffix):
    if suffix == "parquet":
        pytest.importorskip("pyarrow", reason="pyarrow is not installed (Parquet is optional)")
    inter = Interactions(["u1", "u2", "u1"], [3, 4, 5], [10, 11, 12], ratings=[4, 3.5, 5])
    path = inter.save(tmp_path / f"inter.{suffix}")
    back = Interactions.load(path)
    assert back == inter
    assert back.ratings.tolist() == [4.0, 3.5, 5.0]


@pytest.mark.parametrize("suffix", ["jsonl", "csv", "parquet"])
def test_profiles_round_trip(tmp_path, suffix):
    if suffix == "parquet":
        pytest.importorskip("pyarrow", reason="pyarrow is not installed (Parquet is optional)")
    prof = UserProfiles.from_records([{"user_id": 1, "age_band": "25-34", "role": "buyer"},
                                      {"user_id": "x", "age_band": "65+", "role": "nurse"}])
    back = UserProfiles.load(prof.save(tmp_path / f"users.{suffix}"))
    assert back == prof
    assert back.render(1, "{role}, {age_band}") == "buyer, 25-34"
