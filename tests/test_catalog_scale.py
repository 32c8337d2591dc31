"""The live catalog's derived states (SemanticIds.extended / without, SidTrie.derive, ItemRecords)
equal what a rebuild from scratch gives, on a catalog large enough to cross every internal size
boundary: more than 2^16 records (ItemRecords reads ids in chunks of 2^16 lines), sparse and
dense item ids (the trie's two id maps), records from the file and added ones."""

from __future__ import annotations

import json

import numpy as np
import pytest

from genrec_lite.errors import InvalidArgumentError, UnknownItemError
from genrec_lite.runtime.catalog import LiveCatalog
from genrec_lite.runtime.items import ItemRecords
from genrec_lite.sid import SemanticIds
from genrec_lite.sid.collisions import extra_level

N = 70_000  # > 2^16
LEVELS, K, EXTRA = 3, 16, 512


def _table(ids: np.ndarray, rng) -> SemanticIds:
    base = rng.integers(0, K, size=(len(ids), LEVELS)).astype(np.int32)
    codes = np.concatenate([base, extra_level(base)[:, None]], axis=1)
    return SemanticIds(ids, codes, levels=LEVELS, codebook_size=K, collisions="extra_level",
                       extra_level_size=EXTRA)


def _fresh(s: SemanticIds) -> SemanticIds:
    return SemanticIds(s.item_ids, s.codes, levels=LEVELS, codebook_size=K,
                       collisions="extra_level", extra_level_size=EXTRA)


@pytest.fixture(scope="module", params=["sparse", "dense"])
def catalog(request, tmp_path_factory):
    rng = np.random.default_rng(7)
    ids = (rng.choice(1 << 40, size=N, replace=False) if request.param == "sparse"
           else np.arange(N) + 100).astype(np.int64)
    path = tmp_path_factory.mktemp("items") / "items.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for i in rng.permutation(ids).tolist():  # not in table order
            f.write(json.dumps({"item_id": i, "title": f"item {i}", "n": [i % 7]}) + "\n")
    return _table(ids, rng), ItemRecords.open(path), request.param


def test_records_file_index(catalog):
    sids, records, _ = catalog
    assert len(records) == N
    for i in sids.item_ids[[0, 1, N // 2, N - 1]].tolist():
        assert records[i] == {"item_id": i, "title": f"item {i}", "n": [i % 7]}
        assert records.title(i) == f"item {i}"
    assert records.get(-1) is None and -1 not in records
    with pytest.raises(KeyError):
        records[-1]


def test_changes_equal_a_rebuild(catalog, tmp_path):
    sids, records, kind = catalog
    rng = np.random.default_rng(11)
    live = LiveCatalog(sids, records)
    next_id = int(sids.item_ids.max()) + 1
    paused: set[int] = set()
    for step in range(12):
        state = live.state
        op = step % 3
        if op == 0:  # add, some joining existing SIDs (the extra level numbers them)
            n = int(rng.integers(1, 3000))
            new = np.arange(next_id, next_id + n, dtype=np.int64)
            next_id += n
            base = np.concatenate([state.sids.codes[rng.integers(0, len(state.sids), n // 2), :LEVELS],
                                   rng.integers(0, K, size=(n - n // 2, LEVELS))]).astype(np.int32)
            full = np.concatenate([base, extra_level(base, existing=state.sids.codes)[:, None]], 1)
            want_ids = np.concatenate([state.sids.item_ids, new])
            want_codes = np.concatenate([state.sids.codes, full])
            live.add(new, [base], {int(i): {"item_id": int(i), "title": f"new {i}"} for i in new})
        elif op == 1:  # pause and resume
            pick = rng.choice(state.sids.item_ids, size=5000, replace=False)
            live.set_active(pick, False)
            paused |= set(pick.tolist())
            back = pick[:1000]
            live.set_active(back, True)
            paused -= set(back.tolist())
            continue
        else:  # remove, paused items among them
            pick = np.concatenate([rng.choice(state.sids.item_ids, size=2000, replace=False),
                                   np.array(sorted(paused)[:10], dtype=np.int64)])
            keep = ~np.isin(state.sids.item_ids, pick)
            want_ids, want_codes = state.sids.item_ids[keep], state.sids.codes[keep]
            live.remove(pick)
            paused -= set(pick.tolist())
        got = live.state.sids
        assert np.array_equal(got.item_ids, want_ids) and np.array_equal(got.codes, want_codes)
        trie = live.state.trie
        fresh = _fresh(got).trie()
        fresh.set_active(np.array(sorted(paused), dtype=np.int64), False)
        assert (trie.n_items, trie.n_sids, trie.n_active) == (fresh.n_items, fresh.n_sids, fresh.n_active)
        rows = rng.integers(0, len(got), 300)
        for r in rows.tolist():
            i = int(got.item_ids[r])
            assert got.row_of(i) == r and i in got
            assert np.array_equal(trie.codes_of(i), got.codes[r])
            assert trie.is_active(i) == fresh.is_active(i)
            sid = got.codes[r]
            assert list(trie.items(sid, active_only=False)) == list(fresh.items(sid, active_only=False))
            for length in range(LEVELS + 1):
                assert list(trie.allowed_next(sid[:length])) == list(fresh.allowed_next(sid[:length]))
        prefixes = got.codes[rows, :LEVELS]
        assert np.array_equal(trie.next_codes(prefixes), fresh.next_codes(prefixes))
        assert live.inactive() == paused
    # the records of every state: file ones parsed, added ones as given; saved and read back
    state = live.state
    path = tmp_path / "saved.jsonl"
    with open(path, "wb") as f:
        state.records.write_jsonl(state.sids.item_ids, f)
    again = ItemRecords.open(path)
    assert len(again) == len(state.sids)
    for i in state.sids.item_ids[rng.integers(0, len(state.sids), 500)].tolist():
        assert again[i] == state.records[i]
        assert again[i]["title"] in (f"item {i}", f"new {i}")
    with open(path, encoding="utf-8") as f:
        assert [json.loads(line)["item_id"] for line in f] == state.sids.item_ids.tolist()


def test_derived_errors(catalog):
    sids, records, _ = catalog
    live = LiveCatalog(sids, records)
    before = live.state
    held = int(sids.item_ids[3])
    with pytest.raises(InvalidArgumentError, match="already"):
        live.add(np.array([held], np.int64), [np.zeros((1, LEVELS), np.int32)], {})
    with pytest.raises(UnknownItemError):
        live.remove([held, -5])
    with pytest.raises(UnknownItemError):
        before.trie.derive(np.zeros((0, LEVELS + 1), np.int32), np.zeros(0, np.int64), [-5])
    with pytest.raises(InvalidArgumentError):
        before.trie.derive(np.zeros((1, LEVELS + 1), np.int32), np.array([held], np.int64))
    assert live.state is before and before.trie.n_items == N  # nothing changed


def test_records_added_are_per_state(catalog):
    _, records, _ = catalog
    held = int(next(iter(records)))
    a = records.with_added({5: {"item_id": 5, "title": "five"}})
    b = a.with_added({6: {"item_id": 6, "title": "six"}})
    c = b.with_added({held: {"item_id": held, "title": "again"}})  # an id that comes back
    side = a.with_added({7: {"item_id": 7}})  # from an older state: must not leak into b
    assert 6 not in a and 5 in b and 6 in b and 7 not in b and 7 in side and 6 not in side
    assert b[held]["title"] == f"item {held}" and c[held]["title"] == "again"
    assert len(a) == len(records) + 1 and len(b) == len(records) + 2
