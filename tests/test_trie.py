"""The C++ SID trie against a plain-Python reference, with collisions and an active mask."""

from __future__ import annotations

import itertools
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genrec_lite._core import SidTrie
from genrec_lite.errors import GenrecError, InvalidArgumentError, UnknownItemError


class Reference:
    """What the trie must answer, computed with dicts."""

    def __init__(self, codes: np.ndarray, ids: np.ndarray, active: set[int]):
        self.codes = codes
        self.ids = ids
        self.active = set(active)

    def allowed_next(self, prefix: tuple[int, ...]) -> list[int]:
        p = len(prefix)
        return sorted({int(row[p]) for row, i in zip(self.codes, self.ids)
                       if tuple(row[:p]) == prefix and int(i) in self.active})

    def items(self, sid: tuple[int, ...], active_only: bool = True) -> list[int]:
        return [int(i) for row, i in zip(self.codes, self.ids)
                if tuple(row) == sid and (not active_only or int(i) in self.active)]


@st.composite
def tables(draw):
    levels = draw(st.integers(1, 4))
    k = draw(st.integers(1, 4))
    n = draw(st.integers(0, 40))
    codes = np.array(draw(st.lists(st.lists(st.integers(0, k - 1), min_size=levels, max_size=levels),
                                   min_size=n, max_size=n)), dtype=np.int32).reshape(n, levels)
    dense = draw(st.booleans())
    if dense:
        start = draw(st.integers(-5, 1000))
        ids = start + np.array(draw(st.permutations(range(n))), dtype=np.int64)
    else:
        ids = np.array(draw(st.lists(st.integers(-2**63, 2**63 - 1), min_size=n, max_size=n,
                                     unique=True)), dtype=np.int64)
    inactive = draw(st.lists(st.sampled_from(ids.tolist()), max_size=n)) if n else []
    return codes, ids, k, inactive


def _check(trie: SidTrie, ref: Reference, k: int) -> None:
    levels = ref.codes.shape[1]
    assert trie.n_items == len(trie) == len(ref.ids)
    assert trie.n_active == len(ref.active)
    assert trie.n_sids == len({tuple(r) for r in ref.codes})
    for p in range(levels):
        prefixes = list(itertools.product(range(k), repeat=p))
        for prefix in prefixes:
            got = trie.allowed_next(list(prefix))
            assert got.dtype == np.int32
            assert got.tolist() == ref.allowed_next(prefix), prefix
        if prefixes:
            arr = np.array(prefixes, dtype=np.int32).reshape(len(prefixes), p)
            offsets, codes = trie.allowed_next_batch(arr)
            assert offsets.tolist()[0] == 0 and len(offsets) == len(prefixes) + 1
            for j, prefix in enumerate(prefixes):
                assert codes[offsets[j]:offsets[j + 1]].tolist() == ref.allowed_next(prefix)
    for sid in itertools.product(range(k), repeat=levels):
        assert trie.items(sid).tolist() == ref.items(sid)
        assert trie.items(np.array(sid), active_only=False).tolist() == ref.items(sid, False)
    for row, i in zip(ref.codes, ref.ids):
        assert trie.codes_of(int(i)).tolist() == row.tolist()
        assert int(i) in trie and trie.contains(int(i))
        assert trie.is_active(int(i)) == (int(i) in ref.active)


@settings(max_examples=150, deadline=None)
@given(tables(), st.data())
def test_matches_dict_reference(table, data):
    codes, ids, k, inactive = table
    trie = SidTrie(codes, ids, codebook_sizes=k)
    assert trie.levels == codes.shape[1] and trie.codebook_sizes == (k,) * codes.shape[1]
    ref = Reference(codes, ids, set(ids.tolist()))
    changed = trie.set_active(inactive, False)
    assert changed == len(set(inactive))
    ref.active -= set(inactive)
    _check(trie, ref, k)
    # flip a few more, then check again: no inactive subtree may leak
    if len(ids):
        on = data.draw(st.lists(st.sampled_from(ids.tolist()), max_size=10))
        off = data.draw(st.lists(st.sampled_from(ids.tolist()), max_size=10))
        trie.set_active(np.array(on, dtype=np.int64), True)
        ref.active |= set(on)
        trie.set_active(off, active=False)
        ref.active -= set(off)
        _check(trie, ref, k)
    assert trie.set_all_active(False) == len(ref.active)
    assert trie.n_active == 0 and trie.allowed_next([]).tolist() == []
    assert trie.set_all_active() == len(ids)
    ref.active = set(ids.tolist())
    _check(trie, ref, k)


def test_collisions_keep_build_row_order():
    codes = np.array([[1, 2], [0, 0], [1, 2], [1, 2], [0, 1]], dtype=np.int32)
    ids = np.array([50, 10, 30, 40, 20], dtype=np.int64)
    trie = SidTrie(codes, ids)
    assert trie.n_sids == 3 and trie.codebook_sizes == (2, 3)
    assert trie.items([1, 2]).tolist() == [50, 30, 40]
    trie.set_active(30, False)
    assert trie.items([1, 2]).tolist() == [50, 40]
    assert trie.items([1, 2], active_only=False).tolist() == [50, 30, 40]
    trie.set_active([50, 40], False)
    assert trie.allowed_next([1]).tolist() == []
    assert trie.allowed_next([]).tolist() == [0]
    assert trie.items([1, 1]).tolist() == []  # an SID no item has


def test_inferred_and_given_ranges():
    codes = np.array([[0, 5], [2, 1]], dtype=np.int64)  # int64 input is range-checked to int32
    trie = SidTrie(codes, [7, 8])
    assert trie.codebook_sizes == (3, 6)
    trie = SidTrie(codes, np.array([7, 8], dtype=np.uint8), codebook_sizes=[4, 8])
    assert trie.allowed_next([3]).tolist() == []
    with pytest.raises(InvalidArgumentError, match=r"prefix\[0\] is 4; expected 0 <= code < 4"):
        trie.allowed_next([4])


def test_errors():
    codes = np.array([[0, 1], [1, 0]], dtype=np.int32)
    trie = SidTrie(codes, [1, 2])
    with pytest.raises(UnknownItemError, match="item id 99 is not in the SID trie") as err:
        trie.codes_of(99)
    assert isinstance(err.value, KeyError) and isinstance(err.value, GenrecError)
    assert err.value.value == 99
    with pytest.raises(UnknownItemError):
        trie.is_active(-1)
    with pytest.raises(UnknownItemError):
        trie.set_active([1, 99], False)
    assert trie.n_active == 2  # nothing changed
    with pytest.raises(InvalidArgumentError, match="prefix has length 2; expected 0 <= length < 2"):
        trie.allowed_next([0, 1])
    with pytest.raises(InvalidArgumentError, match=r"prefix\[0\] is -1"):
        trie.allowed_next([-1])
    with pytest.raises(InvalidArgumentError, match="expected an integer"):
        trie.allowed_next([0.5])
    with pytest.raises(InvalidArgumentError, match="sid has length 1; expected 2"):
        trie.items([0])
    with pytest.raises(InvalidArgumentError, match="prefixes has shape"):
        trie.allowed_next_batch([0, 1])
    with pytest.raises(InvalidArgumentError, match="length 3"):
        trie.allowed_next_batch(np.zeros((4, 3), dtype=np.int32))
    with pytest.raises(InvalidArgumentError, match="item_ids has 5 at rows 0 and 2; expected unique ids"):
        SidTrie(np.zeros((3, 2), dtype=np.int32), [5, 6, 5])
    with pytest.raises(InvalidArgumentError, match="unique"):
        SidTrie(np.zeros((2, 2), dtype=np.int32), [2**62, 2**62])
    with pytest.raises(InvalidArgumentError, match="codes row 1 level 0 has code -3"):
        SidTrie(np.array([[0, 0], [-3, 0]]), [1, 2])
    with pytest.raises(InvalidArgumentError, match="codes row 0 level 1 has code 9; expected 0 <= code < 8"):
        SidTrie(np.array([[0, 9]]), [1], codebook_sizes=8)
    with pytest.raises(InvalidArgumentError, match="codebook_sizes has 3 entries"):
        SidTrie(codes, [1, 2], codebook_sizes=[2, 2, 2])
    with pytest.raises(InvalidArgumentError, match="fits in int32"):
        SidTrie(np.array([[2**40, 0]]), [1])
    with pytest.raises(InvalidArgumentError, match="item_ids has shape"):
        SidTrie(codes, [1, 2, 3])
    with pytest.raises(InvalidArgumentError, match="codes has shape"):
        SidTrie(np.zeros(4, dtype=np.int32), [1, 2, 3, 4])
    with pytest.raises(InvalidArgumentError, match="dtype float"):
        SidTrie(codes.astype(np.float32), [1, 2])


def test_empty_trie():
    trie = SidTrie(np.zeros((0, 3), dtype=np.int32), np.zeros(0, dtype=np.int64), codebook_sizes=4)
    assert len(trie) == 0 and trie.n_sids == 0 and trie.n_active == 0
    assert trie.allowed_next([]).tolist() == [] and trie.allowed_next([1, 2]).tolist() == []
    assert trie.items([0, 0, 0]).tolist() == []
    assert 3 not in trie


def test_memory_is_flat_and_small():
    rng = np.random.default_rng(0)
    n = 50_000
    codes = rng.integers(0, 256, size=(n, 4), dtype=np.int32)
    dense = SidTrie(codes, np.arange(n, dtype=np.int64))
    sparse = SidTrie(codes, rng.choice(2**60, size=n, replace=False).astype(np.int64))
    for t in (dense, sparse):
        assert t.n_sids <= n
        assert t.memory_bytes() < 72 * n  # flat arrays: ~16 bytes per node + ~21 per item
    assert dense.memory_bytes() < sparse.memory_bytes()


def test_concurrent_readers_and_writer():
    rng = np.random.default_rng(1)
    n, levels, k = 20_000, 3, 8
    codes = rng.integers(0, k, size=(n, levels), dtype=np.int32)
    ids = rng.choice(10**12, size=n, replace=False).astype(np.int64)
    trie = SidTrie(codes, ids, codebook_sizes=k)
    prefixes = codes[rng.integers(0, n, size=2000)]
    existing = {tuple(r[:p]) + (int(r[p]),) for r in codes for p in range(levels)}
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader(seed: int) -> None:
        local = np.random.default_rng(seed)
        try:
            while not stop.is_set():
                row = prefixes[local.integers(0, len(prefixes))]
                p = int(local.integers(0, levels))
                for c in trie.allowed_next(row[:p]).tolist():
                    assert tuple(row[:p].tolist()) + (c,) in existing
                offsets, got = trie.allowed_next_batch(prefixes[:64, :p])
                assert offsets[-1] == len(got)
                for i in trie.items(row, active_only=True).tolist():
                    assert trie.codes_of(i).tolist() == row.tolist()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def writer() -> None:
        local = np.random.default_rng(99)
        try:
            for _ in range(200):
                trie.set_active(ids[local.integers(0, n, size=500)], bool(local.integers(0, 2)))
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(s,)) for s in range(3)]
    w = threading.Thread(target=writer)
    for t in threads:
        t.start()
    w.start()
    w.join()
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    # the counts are exact once the writer is done
    final = np.array([trie.is_active(int(i)) for i in ids])
    assert trie.n_active == int(final.sum())
    live = codes[final]
    for row in prefixes[:200]:
        for p in range(levels):
            below = live[(live[:, :p] == row[:p]).all(axis=1)]
            assert trie.allowed_next(row[:p]).tolist() == sorted(set(below[:, p].tolist()))
