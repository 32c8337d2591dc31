"""The C++ batched beam search (genrec_lite._core.BeamSearch) against exhaustive references."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genrec_lite._core import BeamSearch, SidTrie
from genrec_lite.errors import InvalidArgumentError

VOCAB = 64


def logits_for(prefix: tuple, salt: int, coarse: bool = False) -> np.ndarray:
    """A deterministic toy model: the logit row depends on the prefix only (coarse: a few values,
    so that scores tie)."""
    rng = np.random.default_rng(abs(hash((salt,) + prefix)) % 2**32)
    if coarse:
        return rng.integers(0, 2, size=VOCAB).astype(np.float32)
    return rng.normal(scale=2.0, size=VOCAB).astype(np.float32)


def run(trie, table, requests, salt, delta=None, coarse=False):
    code_of = {int(t): c for lv in range(table.shape[0]) for c, t in enumerate(table[lv]) if t >= 0}
    bs = BeamSearch(trie, table, requests, delta=delta)
    prefixes = [()] * len(requests)
    while True:
        rows = [logits_for(p, salt, coarse) for p in prefixes]
        bs.step(np.stack(rows) if rows else np.zeros((0, VOCAB), np.float32))
        if bs.done:
            return bs.results()
        prefixes = [prefixes[p] + (code_of[int(t)],) for p, t in zip(bs.parents, bs.tokens)]


def raw_logprob(sid, table, salt) -> float:
    """The model's own log-probability of a SID: per level, log-softmax over the whole row (float64)."""
    total = 0.0
    for lv in range(len(sid)):
        row = logits_for(tuple(sid[:lv]), salt).astype(np.float64)
        total += row[table[lv, sid[lv]]] - np.logaddexp.reduce(row)
    return total


def exhaustive(codes, ids, table, salt, k, ok=lambda item: True):
    """Score every SID that has an eligible item: sum of per-level log-softmax over eligible codes."""
    rows = [(tuple(c), int(i)) for c, i in zip(codes.tolist(), ids.tolist()) if ok(int(i))]
    sids = sorted({s for s, _ in rows})
    levels = codes.shape[1]

    def lp(prefix, c):
        allowed = sorted({s[len(prefix)] for s in sids if s[:len(prefix)] == prefix})
        lg = logits_for(prefix, salt).astype(np.float64)[table[len(prefix), allowed]]
        m = lg.max()
        return lg[allowed.index(c)] - m - np.log(np.exp(lg - m).sum())

    score = {s: sum(lp(s[:lv], s[lv]) for lv in range(levels)) for s in sids}
    items = []
    for s in sorted(sids, key=lambda s: (-score[s], s)):
        items += [i for c, i in rows if c == s]
    return items[:k], score


@st.composite
def tables(draw):
    levels = draw(st.integers(1, 3))
    size = draw(st.integers(2, 5))
    n = draw(st.integers(1, 30))
    codes = np.array(draw(st.lists(st.lists(st.integers(0, size - 1), min_size=levels, max_size=levels),
                                   min_size=n, max_size=n)), dtype=np.int32)
    ids = np.array(draw(st.lists(st.integers(0, 10**6), min_size=n, max_size=n, unique=True)),
                   dtype=np.int64)
    return codes, ids, size


def token_table(levels, size):
    return (np.arange(levels * size).reshape(levels, size) + 3).astype(np.int32)


@settings(max_examples=60, deadline=None)
@given(tables(), st.integers(1, 8), st.integers(0, 10**6))
def test_wide_beam_equals_exhaustive_top_k(tab, k, salt):
    codes, ids, size = tab
    trie = SidTrie(codes, ids, size)
    table = token_table(codes.shape[1], size)
    got = run(trie, table, [{"k": k, "beam": 10_000}], salt)[0]
    want, score = exhaustive(codes, ids, table, salt, k)
    assert got["items"].tolist() == want
    for s, sc, lp in zip(map(tuple, got["sids"].tolist()), got["sid_scores"].tolist(),
                         got["sid_logprobs"].tolist()):
        assert sc == pytest.approx(score[s], abs=1e-4)
        assert lp == pytest.approx(raw_logprob(s, table, salt), abs=1e-5)
    by_item = {int(i): tuple(trie.codes_of(int(i))) for i in got["items"].tolist()}
    for i, lp in zip(got["items"].tolist(), got["logprobs"].tolist()):
        assert lp == pytest.approx(raw_logprob(by_item[i], table, salt), abs=1e-5)


@settings(max_examples=60, deadline=None)
@given(tables(), st.integers(1, 6), st.integers(0, 10**6), st.data())
def test_filters_never_leak(tab, k, salt, data):
    codes, ids, size = tab
    trie = SidTrie(codes, ids, size)
    table = token_table(codes.shape[1], size)
    all_ids = ids.tolist()
    inactive = data.draw(st.lists(st.sampled_from(all_ids), max_size=len(all_ids)))
    deny = data.draw(st.lists(st.sampled_from(all_ids), max_size=len(all_ids)))
    allow = data.draw(st.none() | st.lists(st.sampled_from(all_ids) | st.integers(-5, -1)))
    trie.set_active(np.array(inactive, dtype=np.int64), False)
    req = {"k": k, "beam": 10_000, "deny": deny, "allow": allow}
    got = run(trie, table, [req], salt)[0]["items"].tolist()

    def ok(i):
        return i not in inactive and i not in deny and (allow is None or i in allow)

    eligible = [i for i in all_ids if ok(i)]
    assert all(ok(i) for i in got)
    assert len(got) == min(k, len(eligible))  # a filtered request still fills k when it can
    assert got == exhaustive(codes, ids, table, salt, k, ok)[0]


@settings(max_examples=80, deadline=None)
@given(tables(), st.integers(1, 6), st.integers(1, 12), st.integers(0, 10**6), st.booleans(), st.data())
def test_base_and_delta_search_like_one_trie(tab, k, beam, salt, coarse, data):
    """A catalog split in a base trie and a delta trie (the rows added since) searches exactly as
    the one trie holding both: items, order (ties included), scores, SIDs, with pauses and
    filters on either side."""
    codes, ids, size = tab
    levels = codes.shape[1]
    m = data.draw(st.integers(0, len(ids)))
    sizes = [size] * levels
    merged = SidTrie(codes, ids, sizes)
    base, delta = SidTrie(codes[:m], ids[:m], sizes), SidTrie(codes[m:], ids[m:], sizes)
    all_ids = ids.tolist()
    inactive = np.array(data.draw(st.lists(st.sampled_from(all_ids), max_size=len(all_ids))), np.int64)
    for t in (merged, base, delta):
        t.set_active(inactive[np.isin(inactive, [int(i) for i in ids if i in t])], False)
    deny = data.draw(st.lists(st.sampled_from(all_ids), max_size=len(all_ids)))
    allow = data.draw(st.none() | st.lists(st.sampled_from(all_ids) | st.integers(-5, -1)))
    table = token_table(levels, size)
    reqs = [{"k": k, "beam": beam}, {"k": k, "beam": beam, "deny": deny, "allow": allow}]
    if merged.n_active == 0:
        return
    want = run(merged, table, reqs, salt, coarse=coarse)
    got = run(base, table, reqs, salt, delta=delta, coarse=coarse)
    for w, g in zip(want, got):
        assert set(w) == set(g)
        for key in w:
            np.testing.assert_array_equal(g[key], w[key], err_msg=key)


def test_delta_must_match_the_base():
    base = SidTrie(np.array([[0, 1]], np.int32), np.array([5]), [2, 2])
    other = SidTrie(np.array([[0, 1]], np.int32), np.array([6]), [2, 3])
    with pytest.raises(InvalidArgumentError, match="delta trie"):
        BeamSearch(base, token_table(2, 3), [{"k": 1, "beam": 1}], delta=other)


def test_narrow_beam_is_deterministic_and_batched_like_single():
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 8, size=(300, 3)).astype(np.int32)
    ids = np.arange(300, dtype=np.int64) * 3
    trie = SidTrie(codes, ids, 8)
    table = token_table(3, 8)
    reqs = [{"k": 5, "beam": 4}, {"k": 10, "beam": 10, "deny": [0, 3]}, {"k": 3, "beam": 3}]
    together = run(trie, table, reqs, salt=7)
    for r, res in zip(reqs, together):
        alone = run(trie, table, [r], salt=7)[0]
        assert alone["items"].tolist() == res["items"].tolist()


def test_errors_name_the_value():
    trie = SidTrie(np.array([[0, 1], [1, 0]], np.int32), np.array([5, 6]), 2)
    table = token_table(2, 2)
    with pytest.raises(InvalidArgumentError, match=r"\['k'\] is 0"):
        BeamSearch(trie, table, [{"k": 0, "beam": 3}])
    with pytest.raises(InvalidArgumentError, match="unknown key 'bream'"):
        BeamSearch(trie, table, [{"k": 1, "bream": 3}])
    with pytest.raises(InvalidArgumentError, match="levels"):
        BeamSearch(trie, token_table(3, 2), [{"k": 1}])
    bs = BeamSearch(trie, table, [{"k": 1, "beam": 2}])
    with pytest.raises(InvalidArgumentError, match=r"expected \(1, vocab\)"):
        bs.step(np.zeros((2, VOCAB), np.float32))
    with pytest.raises(InvalidArgumentError, match="has id 4"):
        bs.step(np.zeros((1, 4), np.float32))  # token ids 3..6 do not fit a row of 4
    bs.step(np.zeros((1, VOCAB), np.float32))
    bs.step(np.zeros((bs.rows, VOCAB), np.float32))
    with pytest.raises(InvalidArgumentError, match="done"):
        bs.step(np.zeros((bs.rows, VOCAB), np.float32))
    assert bs.results()[0]["items"].tolist() in ([5], [6])
