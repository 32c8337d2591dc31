"""Cases and splits, including the exact rebuild of amazon-industrial's official cases."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from genrec_lite.data import (Case, Catalog, Interactions, Split, leave_one_out, load_cases,
                              save_cases, temporal_split, windows)
from genrec_lite.errors import InvalidArgumentError


def test_case_is_frozen():
    c = Case("u", (1, 2), 3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.target = 4  # type: ignore[misc]
    assert Case.from_dict(c.to_dict()) == c and hash(c) == hash(Case("u", (1, 2), 3))


def test_windows():
    cases = windows([5, 6, 7, 8], max_len=2, user_id="u")
    assert cases == [Case("u", (5,), 6), Case("u", (5, 6), 7), Case("u", (6, 7), 8)]
    assert windows([5, 6, 7], max_len=None, start=0) == [Case("", (), 5), Case("", (5,), 6),
                                                         Case("", (5, 6), 7)]
    assert windows([5], 3) == []
    with pytest.raises(InvalidArgumentError):
        windows([1, 2], max_len=0)


@given(st.lists(st.integers(0, 50), max_size=30), st.integers(1, 8), st.integers(0, 5))
def test_windows_property(seq, max_len, start):
    cases = windows(seq, max_len, start=start)
    assert len(cases) == max(0, len(seq) - start)
    for i, case in zip(range(start, len(seq)), cases):
        assert case.target == seq[i]
        assert list(case.history) == seq[max(0, i - max_len):i]


def _toy() -> Interactions:
    # user a: 4 items, b: 2 items (too few for leave-one-out), c: 3 items
    return Interactions(["a", "b", "a", "c", "a", "c", "b", "a", "c"],
                        [1, 2, 3, 4, 5, 6, 7, 8, 9],
                        [1, 1, 2, 2, 3, 3, 4, 5, 6])


def test_leave_one_out_toy():
    split = leave_one_out(_toy(), max_len=2)
    assert {u: s.tolist() for u, s in split.train.items()} == {"a": [1, 3], "b": [2, 7],
                                                               "c": [4]}
    assert split.valid == [Case("a", (1, 3), 5), Case("c", (4,), 6)]
    assert split.test == [Case("a", (3, 5), 8), Case("c", (4, 6), 9)]
    assert split.train_cases(2) == [Case("a", (1,), 3), Case("b", (2,), 7)]


def test_leave_one_out_train_on_valid_toy():
    """The final model's split: the validation item is trained on, the test cases are unchanged."""
    base = leave_one_out(_toy(), max_len=2)
    split = leave_one_out(_toy(), max_len=2, train_on_valid=True)
    assert {u: s.tolist() for u, s in split.train.items()} == {"a": [1, 3, 5], "b": [2, 7],
                                                               "c": [4, 6]}
    assert split.valid == [] and split.test == base.test
    # each test prompt's history is the end of a training sequence
    for case in split.test:
        assert tuple(split.train[case.user_id][-len(case.history):].tolist()) == case.history


def test_temporal_split_toy():
    split = temporal_split(_toy(), at=4, max_len=3)
    assert {u: s.tolist() for u, s in split.train.items()} == {"a": [1, 3, 5], "b": [2],
                                                               "c": [4, 6]}
    # ordered by time; history spans the split (b's item 7 follows 2; a's 8 follows 1,3,5)
    assert split.test == [Case("b", (2,), 7), Case("a", (1, 3, 5), 8), Case("c", (4, 6), 9)]
    assert split.valid == []
    s2 = temporal_split(_toy(), at=5, valid_at=3, max_len=1)
    assert list(s2.train) == ["a", "b", "c"] and s2.train["c"].tolist() == [4]
    assert s2.valid == [Case("a", (3,), 5), Case("c", (4,), 6), Case("b", (2,), 7)]
    assert s2.test == [Case("a", (5,), 8), Case("c", (6,), 9)]
    # a user first seen after the split has no history: skipped unless min_history=0
    inter = Interactions(["a", "z"], [1, 2], [1, 10])
    assert temporal_split(inter, at=5).test == []
    assert temporal_split(inter, at=5, min_history=0).test == [Case("z", (), 2)]
    with pytest.raises(InvalidArgumentError):
        temporal_split(inter, at=5, valid_at=6)


def test_amazon_test_cases_rebuilt_exactly(amazon_industrial_dir):
    cat = Catalog.load(amazon_industrial_dir / "items.jsonl")
    inter = Interactions.load(amazon_industrial_dir / "interactions.csv", catalog=cat)
    official_test = load_cases(amazon_industrial_dir / "test.jsonl", catalog=cat)
    official_valid = load_cases(amazon_industrial_dir / "valid.jsonl", catalog=cat)
    assert len(official_test) == 4533 and len(official_valid) == 4532

    split = temporal_split(inter, at=2_000_000, max_len=10)
    assert split.test == official_test  # same cases, same order
    assert sum(len(s) for s in split.train.values()) == len(inter) - 4533

    # valid.jsonl: the same rule one period earlier, both ways of asking for it
    early = temporal_split(inter.between(before=2_000_000), at=1_000_000, max_len=10)
    assert early.test == official_valid
    both = temporal_split(inter, at=2_000_000, valid_at=1_000_000, max_len=10)
    assert both.valid == official_valid and both.test == official_test


def test_ml100k_leave_one_out(ml100k_dir):
    inter = Interactions.load(ml100k_dir / "interactions.csv")
    split = leave_one_out(inter, max_len=50)
    assert len(split.test) == len(split.valid) == 943
    assert sum(len(s) for s in split.train.values()) == 100_000 - 2 * 943
    seqs = inter.sequences()
    for case in split.test[:50]:
        seq = seqs[case.user_id].tolist()
        assert case.target == seq[-1] and list(case.history) == seq[-51:-1]
    assert isinstance(split, Split)


def test_cases_round_trip(tmp_path):
    cases = [Case("A1", (1, 2, 3), 4), Case("7", (), 9)]
    path = save_cases(cases, tmp_path / "cases.jsonl")
    assert load_cases(path) == cases
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    assert load_cases(tmp_path / "empty.jsonl", allow_empty=True) == []


# ---------------------------------------------------------------- splits as arrays

def _reference_leave_one_out(inter, max_len, train_on_valid):
    """The split by the definition, with plain dicts and lists (what the arrays must equal)."""
    by_user: dict[str, list[tuple]] = {}
    for row, (u, i, t) in enumerate(zip(inter.user_ids.tolist(), inter.item_ids.tolist(),
                                        inter.timestamps.tolist())):
        by_user.setdefault(u, []).append((t, row, i))
    train, valid, test = {}, [], []
    for u, rows in by_user.items():
        seq = [i for _, _, i in sorted(rows)]
        hist = lambda end: tuple(seq[0 if max_len is None else max(0, end - max_len):end])  # noqa
        if len(seq) < 3:
            train[u] = seq
            continue
        train[u] = seq[:-1] if train_on_valid else seq[:-2]
        if not train_on_valid:
            valid.append(Case(u, hist(len(seq) - 2), seq[-2]))
        test.append(Case(u, hist(len(seq) - 1), seq[-1]))
    return train, valid, test


_logs = st.lists(st.tuples(st.sampled_from("abcdef"), st.integers(0, 30), st.integers(0, 12)),
                 max_size=60)


@given(_logs, st.sampled_from([None, 1, 3]), st.booleans())
def test_leave_one_out_arrays_equal_the_definition(rows, max_len, final):
    inter = Interactions([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])
    split = leave_one_out(inter, max_len, train_on_valid=final)
    train, valid, test = _reference_leave_one_out(inter, max_len, final)
    assert {u: s.tolist() for u, s in split.train.items()} == train
    assert list(split.train) == list(train) and len(split.train) == len(train)
    assert all(split.train[u].tolist() == s for u, s in train.items())
    assert split.valid == valid and split.test == test and list(split.test) == test
    assert [split.test[i] for i in range(-len(test), len(test))] == test + test


@given(_logs, st.integers(0, 12), st.sampled_from([None, 2]))
def test_temporal_split_arrays_equal_the_definition(rows, at, max_len):
    inter = Interactions([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])
    split = temporal_split(inter, at=at, max_len=max_len)
    seqs: dict[str, list[int]] = {}
    expected = []
    # by time, ties in file order: a case per event from `at` on with a non-empty history
    for t, row, u, i in sorted((r[2], k, r[0], r[1]) for k, r in enumerate(rows)):
        hist = seqs.setdefault(u, [])
        if t >= at and hist:
            expected.append(Case(u, tuple(hist[-max_len:] if max_len else hist), i))
        hist.append(i)
    assert split.test == expected
    assert {u: s.tolist() for u, s in split.train.items()} == {
        u: [i for t, _, i in sorted((r[2], k, r[1]) for k, r in enumerate(rows) if r[0] == u)
            if t < at] for u in dict.fromkeys(r[0] for r in rows)
        if any(r[0] == u and r[2] < at for r in rows)}


def test_case_table_reads_like_a_list():
    split = leave_one_out(_toy(), max_len=2)
    cases = split.test
    assert len(cases) == 2 and cases[0] == Case("a", (3, 5), 8) and cases[-1] == cases[1]
    assert cases[1:] == [cases[1]] and cases[:0] == [] and list(cases[::-1]) == [cases[1], cases[0]]
    with pytest.raises(IndexError, match="case index 2 out of range for 2 cases"):
        cases[2]
    assert cases != [cases[0]] and cases == tuple(cases)


def test_user_sequences_read_like_a_dict():
    seqs = _toy().sequences()
    assert list(seqs) == ["a", "b", "c"] and len(seqs) == 3 and "b" in seqs and "z" not in seqs
    assert seqs["c"].tolist() == [4, 6, 9] and seqs.lengths.tolist() == [4, 2, 3]
    assert [v.tolist() for v in seqs.values()] == [[1, 3, 5, 8], [2, 7], [4, 6, 9]]
    with pytest.raises(KeyError):
        seqs["z"]
    with pytest.raises(ValueError):
        seqs["a"][0] = 7  # views of the one flat array, read-only
    from genrec_lite.data.sequences import UserSequences
    with pytest.raises(InvalidArgumentError, match="offsets must be 3 non-decreasing positions"):
        UserSequences(seqs.users[:2], [0, 5, 4], seqs.flat)
    with pytest.raises(InvalidArgumentError, match="starts and ends must be 3 ranges"):
        UserSequences(seqs.users, None, seqs.flat, starts=[0, 1, 2], ends=[1, 2, 99])
