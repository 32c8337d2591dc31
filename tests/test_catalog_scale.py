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


def _search(tries, requests, salt):
    """The items a BeamSearch over (base, delta) returns, with a toy model whose logits depend on
    the prefix only (coarse, so that scores tie)."""
    from genrec_lite._core import BeamSearch

    vocab = (LEVELS + 1) * EXTRA
    table = (np.arange((LEVELS + 1) * EXTRA).reshape(LEVELS + 1, EXTRA)).astype(np.int32)
    code_of = {int(t): c for lv in range(LEVELS + 1) for c, t in enumerate(table[lv])}
    bs = BeamSearch(tries[0], table, requests, delta=tries[1])
    prefixes = [()] * len(requests)
    while True:
        rows = [np.random.default_rng(abs(hash((salt,) + p)) % 2**32).integers(0, 3, vocab)
                .astype(np.float32) for p in prefixes]
        bs.step(np.stack(rows))
        if bs.done:
            return [r["items"].tolist() for r in bs.results()]
        prefixes = [prefixes[p] + (code_of[int(t)],) for p, t in zip(bs.parents, bs.tokens)]


def test_small_adds_go_to_a_delta_and_fold(catalog):
    """Adds smaller than the delta limit append to the column buffers (no copy of the catalog)
    and to the delta trie; the add that passes the limit folds the delta into a new base. At
    every step the search over (base, delta) equals the one over a fresh trie, paused items in
    the delta carry into the folded base, and ids resolve through the index's tail."""
    from genrec_lite.sid.semantic_ids import delta_limit

    sids, records, _ = catalog
    rng = np.random.default_rng(5)
    live = LiveCatalog(sids, records)
    next_id = int(sids.item_ids.max()) + 1
    paused: set[int] = set()
    limit = delta_limit(N)
    folds = 0
    for step in range(6):
        before = live.state.sids
        n = limit // 3 + 1
        new = np.arange(next_id, next_id + n, dtype=np.int64)
        next_id += n
        base = np.concatenate([before.codes[rng.integers(0, len(before), n // 2), :LEVELS],
                               rng.integers(0, K, size=(n - n // 2, LEVELS))]).astype(np.int32)
        live.add(new, [base], {int(i): {"item_id": int(i), "title": f"new {i}"} for i in new})
        got = live.state.sids
        b, d = live.state.tries[0]
        if d is None:
            folds += 1
            assert b.n_items == len(got)
        else:
            assert b is before.tries()[0] and b.n_items + d.n_items == len(got)
        if step:  # the second add on: appended in place, the columns not copied
            assert np.shares_memory(got.codes, before.codes)
        pick = rng.choice(new, size=50, replace=False)  # pause some new (delta) items
        live.set_active(pick, False)
        paused |= set(pick.tolist())
        assert got.rows_of(new).tolist() == list(range(len(got) - n, len(got)))
        assert all(not got.is_active(i) for i in pick.tolist())
        fresh = _fresh(got).trie()
        fresh.set_active(np.array(sorted(paused), dtype=np.int64), False)
        assert got.n_active == fresh.n_active == len(got) - len(paused)
        assert got.trie().n_active == fresh.n_active
        reqs = [{"k": 10, "beam": 20}, {"k": 5, "beam": 8, "deny": new[:30].tolist()},
                {"k": 5, "beam": 8, "allow": new[::7].tolist() + sids.item_ids[:50].tolist()}]
        assert _search(live.state.tries[0], reqs, step) == _search((fresh, None), reqs, step)
    assert folds >= 1
