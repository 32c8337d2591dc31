"""SemanticIds: tokens, lookups, collisions, cold-start assignment and the saved format."""

from __future__ import annotations

import json

import numpy as np
import pytest

from genrec_lite.errors import (ArtifactError, FormatVersionError, GenrecError, InvalidArgumentError,
                                UnknownItemError)
from genrec_lite.sid import SemanticIds, SidEncoder
from genrec_lite.sid.collisions import extra_level, sid_report


def _table(collisions="none", n=200, levels=3, k=8, seed=0):
    rng = np.random.default_rng(seed)
    books = rng.normal(size=(levels, k, 6)).astype(np.float32)
    layers = [(rng.normal(size=(16, 10)).astype(np.float32), rng.normal(size=16).astype(np.float32)),
              (rng.normal(size=(6, 16)).astype(np.float32), rng.normal(size=6).astype(np.float32))]
    enc = SidEncoder(books, layers)
    vecs = rng.normal(size=(n, 10)).astype(np.float32)
    base = enc.encode(vecs)
    codes = base
    extra = 0
    if collisions == "extra_level":
        numbers = extra_level(base)
        codes = np.concatenate([base, numbers[:, None]], axis=1)
        extra = max(16, int(numbers.max()) + 1)
    ids = np.arange(1000, 1000 + n)
    return SemanticIds(ids, codes, levels=levels, codebook_size=k, collisions=collisions,
                       extra_level_size=extra, encoder=enc, config={"seed": seed}), vecs


def test_tokens_format_and_parse():
    sids, _ = _table()
    item = int(sids.item_ids[5])
    s = sids.sid(item)
    assert s == "".join(f"<{'abc'[i]}_{c}>" for i, c in enumerate(sids.codes[5]))
    assert sids.parse(s) == sids.codes_of(item)
    assert item in sids.items_of(s)
    assert len(sids.vocabulary()) == 3 * 8 and sids.vocabulary()[0] == "<a_0>"
    for bad in ["<a_1><b_2>", "<a_1><c_2><b_3>", "<a_1><b_2><c_99>", "a_1 b_2 c_3"]:
        with pytest.raises(InvalidArgumentError):
            sids.parse(bad)
    with pytest.raises(UnknownItemError, match="item id 7"):
        sids.sid(7)


def test_collisions_none_groups_items_in_table_order():
    sids, _ = _table(n=400, k=4)  # 64 possible SIDs for 400 items: many collisions
    rep = sids.report()
    assert rep["n_items"] == 400 and rep["n_sids"] < 400
    assert rep["collision_rate"] == pytest.approx((400 - rep["n_sids"]) / 400)
    assert sum(int(k) * v for k, v in rep["items_per_sid"].items()) == 400
    row = int(np.flatnonzero((sids.codes == sids.codes[0]).all(axis=1))[-1])
    members = sids.items_of(sids.codes[0])
    assert members == sorted(members) and members[0] == sids.item_ids[0] and sids.item_ids[row] in members


def test_extra_level_makes_sids_unique_and_cold_start_continues_numbering():
    sids, vecs = _table("extra_level", n=400, k=4)
    assert len(np.unique(sids.codes, axis=0)) == len(sids)
    assert sids.report()["collision_rate"] == 0.0
    assert sids.report()["base_collision_rate"] > 0.0
    assert len(sids.vocabulary()) == 3 * 4 + sids.extra_level_size
    # a new item identical to an existing one joins its group under the next free number
    grown = sids.with_items([5000, 5001], vecs[[0, 0]])
    group = (grown.codes[:, :3] == sids.codes[0, :3]).all(axis=1)
    assert sorted(grown.codes[group, 3].tolist()) == list(range(int(group.sum())))
    assert len(np.unique(grown.codes, axis=0)) == len(grown)


def test_extra_level_capacity_is_checked():
    sids, vecs = _table("extra_level", n=400, k=4)
    small = SemanticIds(sids.item_ids, sids.codes, levels=3, codebook_size=4, collisions="extra_level",
                        extra_level_size=int(sids.codes[:, 3].max()) + 1, encoder=sids.encoder)
    biggest = np.bincount(np.unique(sids.codes[:, :3], axis=0, return_inverse=True)[1].ravel()).argmax()
    row = int(np.flatnonzero(np.unique(sids.codes[:, :3], axis=0, return_inverse=True)[1].ravel()
                             == biggest)[0])
    with pytest.raises(InvalidArgumentError, match="extra level holds"):
        small.assign(vecs[[row]])


def test_assign_reproduces_codes_of_known_items():
    sids, vecs = _table()
    np.testing.assert_array_equal(sids.assign(vecs), sids.codes)
    np.testing.assert_array_equal(sids.assign(vecs[3]), sids.codes[[3]])


def test_assign_rejects_bad_vectors():
    sids, vecs = _table()
    with pytest.raises(InvalidArgumentError, match=r"shape \(n, 10\)"):
        sids.assign(np.zeros((2, 9), np.float32))
    bad = vecs[:3].copy()
    bad[1, 2] = np.nan
    with pytest.raises(InvalidArgumentError, match="row 1 has NaN"):
        sids.assign(bad)
    with pytest.raises(InvalidArgumentError, match="already has a semantic ID"):
        sids.with_items([int(sids.item_ids[0])], vecs[:1])


def test_constructor_validates():
    with pytest.raises(InvalidArgumentError, match="expected 0 <= code < 8"):
        SemanticIds([1, 2], np.array([[0, 0, 0], [0, 9, 0]]), levels=3, codebook_size=8)
    with pytest.raises(InvalidArgumentError, match="appears more than once"):
        SemanticIds([1, 1], np.zeros((2, 3)), levels=3, codebook_size=8)
    with pytest.raises(InvalidArgumentError, match="shape"):
        SemanticIds([1, 2], np.zeros((2, 2)), levels=3, codebook_size=8)
    with pytest.raises(InvalidArgumentError, match="collisions mode"):
        SemanticIds([1], np.zeros((1, 3)), levels=3, codebook_size=8, collisions="sinkhorn")


def test_save_load_round_trip(tmp_path):
    sids, vecs = _table("extra_level")
    out = sids.save(tmp_path / "sids")
    assert {p.name for p in out.iterdir()} == {"semantic_ids.json", "arrays.npz", "sids.tsv",
                                              "report.json"}
    back = SemanticIds.load(out)
    np.testing.assert_array_equal(back.codes, sids.codes)
    np.testing.assert_array_equal(back.item_ids, sids.item_ids)
    assert back.collisions == "extra_level" and back.extra_level_size == sids.extra_level_size
    assert back.config == sids.config
    np.testing.assert_array_equal(back.encoder.encode(vecs), sids.codes[:, :3])
    lines = (out / "sids.tsv").read_text().splitlines()
    assert lines[1] == f"{sids.item_ids[0]}\t{sids.sid(int(sids.item_ids[0]))}"
    assert json.loads((out / "report.json").read_text())["n_items"] == len(sids)


def test_load_errors(tmp_path):
    sids, _ = _table()
    with pytest.raises(ArtifactError, match="not a semantic-ID directory"):
        SemanticIds.load(tmp_path / "nope")
    out = sids.save(tmp_path / "s")
    meta = json.loads((out / "semantic_ids.json").read_text())
    meta["format_version"] = 99
    (out / "semantic_ids.json").write_text(json.dumps(meta))
    with pytest.raises(FormatVersionError, match="format version 99"):
        SemanticIds.load(out)
    out = sids.save(tmp_path / "s")
    raw = bytearray((out / "arrays.npz").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (out / "arrays.npz").write_bytes(bytes(raw))
    with pytest.raises(ArtifactError, match="checksum"):
        SemanticIds.load(out)
    out = sids.save(tmp_path / "s")
    (out / "semantic_ids.json").write_text('{"format": ')
    with pytest.raises(ArtifactError, match="not valid JSON"):
        SemanticIds.load(out)
    (out / "semantic_ids.json").unlink()
    with pytest.raises(ArtifactError, match="missing"):
        SemanticIds.load(out)


def test_failed_save_leaves_previous_artefact_intact(tmp_path, monkeypatch):
    sids, _ = _table()
    out = sids.save(tmp_path / "s")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    other, _ = _table(seed=1)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("genrec_lite.sid.semantic_ids.write_json", boom)
    with pytest.raises(OSError, match="disk full"):
        other.save(out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["s"]  # no temporary folder left behind


def test_report_utilisation_and_perplexity():
    codes = np.array([[0, 1], [0, 2], [1, 1], [1, 1]])
    rep = sid_report(codes, levels=2, codebook_size=4, mode="none")
    assert rep["utilization"] == [0.5, 0.5]
    assert rep["perplexity"][0] == pytest.approx(2.0)
    assert rep["items_per_sid"] == {"1": 2, "2": 1}
    assert rep["collision_rate"] == pytest.approx(0.25)
    assert rep["items_sharing_sid"] == pytest.approx(0.5)


def test_errors_are_one_family():
    assert issubclass(FormatVersionError, GenrecError) and issubclass(UnknownItemError, GenrecError)


def test_extended_tables_share_append_only_columns_and_never_see_each_other():
    """extended() writes new rows past the newest table's end in shared buffers: every older
    table keeps exactly its own rows, extending an older table again (a branch) copies instead
    of overwriting its sibling's rows, and growing past the capacity moves to a larger buffer
    (crossing it several times here), with the id index's tail folding on the way."""
    from genrec_lite.sid.semantic_ids import delta_limit

    rng = np.random.default_rng(3)

    def table(n):
        return SemanticIds(np.arange(n) * 2, rng.integers(0, 4, (n, 2)).astype(np.int32),
                           levels=2, codebook_size=4)

    states = [table(10).growable()]
    rows = [(states[0].item_ids.copy(), states[0].codes.copy())]
    next_id = 1
    for step in range(12):  # 10 rows, then 10 + 12 batches up to 3,000 rows: past 4,106 twice
        m = int(rng.integers(1, 3000)) if step % 3 else 1
        ids = np.arange(next_id, next_id + 2 * m, 2)
        next_id += 2 * m
        codes = rng.integers(0, 4, (m, 2)).astype(np.int32)
        new = states[-1].extended(ids, codes)
        assert new.rows_of(ids).tolist() == list(range(len(states[-1]), len(new)))
        states.append(new)
        rows.append((new.item_ids.copy(), new.codes.copy()))
    for s, (ids, codes) in zip(states, rows):  # nobody's rows were overwritten
        assert np.array_equal(s.item_ids, ids) and np.array_equal(s.codes, codes)
        assert s.rows_of(ids).tolist() == list(range(len(ids)))
    assert len(states[-1]) > 2 * (len(states[0]) + 4096)  # the capacity was passed
    assert len(states[-1]._index.tail_ids) <= delta_limit(len(states[-1]))
    # a branch: extending an older table again must not touch the newer one's rows
    old, newer = states[3], states[4]
    branch = old.extended(np.array([-7]), np.array([[1, 1]], np.int32))
    assert np.array_equal(newer.item_ids, rows[4][0]) and np.array_equal(newer.codes, rows[4][1])
    assert branch.item_ids[-1] == -7 and len(branch) == len(old) + 1 and -7 not in newer
    with pytest.raises(InvalidArgumentError, match="already"):
        newer.extended(np.array([int(newer.item_ids[5])]), np.array([[0, 0]], np.int32))
