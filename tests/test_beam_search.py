"""The C++ batched constrained beam search (genrec_lite._core.BeamSearch) against Python references.

A deterministic toy "model" gives each row logits that depend only on (request, SID prefix), so a
Python loop can drive the search the way a real backend does (tracking each row's prefix through
parents/tokens) and plain-Python references can score the same rows. The references repeat the
search's arithmetic exactly (float64, log-sum-exp summed in code order, score = parent + (logit -
lse); the raw log-probability = parent + (logit - the float32 kernel's logsumexp of the whole
row)), so results, tie order included, must match exactly.
"""

from __future__ import annotations

import gc
import itertools
import math
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genrec_lite._core import BeamSearch, SidTrie
from genrec_lite.errors import InvalidArgumentError, ModelOutputError

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ------------------------------------------------------------------------------------------------
# The toy world: SID table, token table, model.

class World:
    def __init__(self, codes: np.ndarray, ids: np.ndarray, k: int, vocab_extra: int, seed: int,
                 ties: bool, inactive=()):
        self.codes = codes
        self.ids = ids
        self.levels = codes.shape[1]
        self.k = k
        self.trie = SidTrie(codes, ids, codebook_sizes=k)
        self.inactive = set(int(i) for i in inactive)
        if self.inactive:
            self.trie.set_active(sorted(self.inactive), False)
        # SID tokens scattered over a vocabulary with other tokens in between
        self.vocab = self.levels * k + vocab_extra
        perm = np.random.default_rng(seed).permutation(self.vocab)
        self.table = perm[: self.levels * k].reshape(self.levels, k).astype(np.int32)
        self.code_of = {int(t): (lv, c) for lv in range(self.levels) for c, t in enumerate(self.table[lv])}
        self.seed = seed
        self.ties = ties
        self._cache: dict = {}

    def logits(self, request: int, prefix: tuple[int, ...]) -> np.ndarray:
        key = (request, prefix)
        if key not in self._cache:
            self._cache[key] = self._make_logits(request, prefix)
        return self._cache[key]

    def _make_logits(self, request: int, prefix: tuple[int, ...]) -> np.ndarray:
        rng = np.random.default_rng([self.seed, request, len(prefix), *prefix])
        if self.ties:  # few distinct values: many exactly equal scores
            return (rng.integers(-2, 3, size=self.vocab) * 0.5).astype(np.float32)
        return rng.normal(0.0, 2.0, size=self.vocab).astype(np.float32)

    def eligible_items(self, allow=None, deny=()) -> set[int]:
        out = {int(i) for i in self.ids} - self.inactive - {int(d) for d in deny}
        if allow is not None:
            out &= {int(a) for a in allow}
        return out

    def items_of(self, sid: tuple[int, ...], eligible: set[int]) -> list[int]:
        """A SID's eligible items in build-row order."""
        return [int(i) for row, i in zip(self.codes, self.ids) if tuple(int(c) for c in row) == sid
                and int(i) in eligible]


def run_search(world: World, requests: list[dict], check_protocol: bool = True) -> list[dict]:
    """Drive a BeamSearch as a backend would: feed each row the logits of its prefix."""
    search = BeamSearch(world.trie, world.table, requests)
    prefixes = [() for _ in requests]
    assert search.rows == len(requests) and search.level == 0
    assert search.row_request.tolist() == list(range(len(requests)))
    while not search.done:
        req = search.row_request.tolist()
        rows = np.stack([world.logits(r, p) for r, p in zip(req, prefixes)]) if req else \
            np.zeros((0, world.vocab), np.float32)
        level = search.level
        search.step(rows)
        parents, tokens, new_req = search.parents.tolist(), search.tokens.tolist(), search.row_request.tolist()
        assert len(parents) == len(tokens) == len(new_req) == search.rows
        new_prefixes = []
        for p, t, r in zip(parents, tokens, new_req):
            lv, c = world.code_of[t]
            assert lv == level and req[p] == r
            new_prefixes.append(prefixes[p] + (c,))
        if check_protocol:
            assert new_req == sorted(new_req)  # grouped by request, in request order
            scores = search.row_scores.tolist()
            for a, b in zip(range(len(new_req)), range(1, len(new_req))):
                if new_req[a] == new_req[b]:  # ranked best first, ties by SID
                    assert (-scores[a], new_prefixes[a]) < (-scores[b], new_prefixes[b])
            for r in set(new_req):
                assert new_req.count(r) <= requests[r].get("beam", 20)
        prefixes = new_prefixes
    out = search.results()
    assert len(out) == len(requests)
    final = search.row_scores.tolist()  # float64 scores of the final beams, in result order
    final_raw = search.row_logprobs.tolist()
    for r, res in enumerate(out):
        res["scores64"] = [sc for sc, q in zip(final, search.row_request.tolist()) if q == r]
        res["logprobs64"] = [lp for lp, q in zip(final_raw, search.row_request.tolist()) if q == r]
    for res in out:
        assert res["items"].dtype == np.int64 and res["scores"].dtype == np.float32
        assert res["sids"].dtype == np.int32 and res["sid_scores"].dtype == np.float32
        assert res["logprobs"].dtype == np.float32 and res["sid_logprobs"].dtype == np.float32
        assert res["sids"].shape == (len(res["sid_scores"]), world.levels)
        assert len(res["logprobs"]) == len(res["items"]) and len(res["sid_logprobs"]) == len(res["sid_scores"])
    return out


def as_lists(res: dict) -> tuple:
    return (res["items"].tolist(), res["scores"].tolist(),
            [tuple(s) for s in res["sids"].tolist()], res["sid_scores"].tolist(),
            res["logprobs"].tolist(), res["sid_logprobs"].tolist())


# ------------------------------------------------------------------------------------------------
# References (same arithmetic as the C++ search).

def deny_of(q: dict) -> list[int]:
    d = q.get("deny")
    return [] if d is None else [int(x) for x in d]


# The search's exp kernel for x <= 0, step by step (each numpy operation rounds once, like the
# C++ code compiled without FMA contraction): x = k ln2 + r, Taylor series of exp(r) to degree 13,
# times 2^k; 0 below -700.
LOG2E, SHIFT = 1.4426950408889634, 6755399441055744.0
LN2_HI, LN2_LO = 0.6931471803691238, 1.9082149292705877e-10
TAYLOR = [1.0 / math.factorial(i) for i in range(14)]


def exp_kernel(v: np.ndarray) -> np.ndarray:
    xc = np.maximum(v, -700.0)
    kd = xc * LOG2E + SHIFT
    k = kd - SHIFT
    r = (xc - k * LN2_HI) - k * LN2_LO
    p = np.full_like(r, TAYLOR[13])
    for c in TAYLOR[12::-1]:
        p = p * r + c
    return np.where(v < -700.0, 0.0, np.ldexp(p, k.astype(np.int64)))


# The float32 kernel of the whole-row logsumexp (log_sum_exp_row), step by step: each numpy
# operation rounds once in float32, and fma32 rounds a*b+c once, like the FMA instruction.
F32 = np.float32
LOG2E_F, SHIFT_F = F32(1.4426950216293335), F32(12582912.0)
LN2_HI_F, LN2_LO_F = F32(0.693145751953125), F32(1.428606765330187e-06)
TAYLOR_F = [F32(1.0 / math.factorial(i)) for i in range(8)]


def fma32(a, b, c) -> np.ndarray:
    """float32 a*b + c rounded once: the product is exact in float64; the float64 sum's rounding
    error e (TwoSum) decides the one case where rounding the sum again could go wrong, a sum
    exactly halfway between two float32s."""
    a, b, c = (np.asarray(x, F32).astype(np.float64) for x in (a, b, c))
    p = a * b
    s = p + c
    bb = s - p
    e = (p - (s - bb)) + (c - bb)
    r = s.astype(F32)
    other = np.nextafter(r, np.where(s > r.astype(np.float64), F32(np.inf), F32(-np.inf)).astype(F32))
    halfway = (r.astype(np.float64) + other.astype(np.float64)) / 2 == s
    toward = np.where(e > 0, np.maximum(r, other), np.minimum(r, other))
    return np.where(halfway & (e != 0), toward, r).astype(F32)


def exp_kernel_f32(d: np.ndarray) -> np.ndarray:
    xc = np.maximum(np.asarray(d, F32), F32(-80.0))
    kd = fma32(xc, LOG2E_F, SHIFT_F)
    k = kd - SHIFT_F
    r = fma32(-k, LN2_LO_F, fma32(-k, LN2_HI_F, xc))
    p = np.full_like(r, TAYLOR_F[7])
    for c in TAYLOR_F[6::-1]:
        p = fma32(p, r, c)
    return (p * np.ldexp(F32(1.0), k.astype(np.int32)).astype(F32)).astype(F32)


def row_lse(row: np.ndarray) -> float:
    """log_sum_exp_row: d = x - max in float32, the float32 kernel, summed in float64 in 8 lanes
    (j mod 8, each lane in order), lanes added pairwise."""
    row = np.asarray(row, dtype=F32)
    m = row.max()
    e = exp_kernel_f32(row - m).astype(np.float64)
    e = np.concatenate([e, np.zeros(-len(e) % 8)]).reshape(-1, 8)
    a = np.cumsum(e, axis=0)[-1]  # each lane summed in order
    return float(m) + math.log(((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7])))


def log_probs(row: np.ndarray, table_level: np.ndarray, codes: list[int]) -> dict[int, float] | None:
    x = [float(row[table_level[c]]) for c in codes]
    if any(math.isnan(v) for v in x):
        return None
    m = max(x)
    if not math.isfinite(m):
        return None
    s = 0.0
    for e in exp_kernel(np.array(x) - m).tolist():  # summed in code order
        s += e
    lse = m + math.log(s)
    return {c: v - lse for c, v in zip(codes, x)}


def eligible_sids(world: World, eligible: set[int]) -> set[tuple[int, ...]]:
    return {tuple(int(c) for c in row) for row, i in zip(world.codes, world.ids) if int(i) in eligible}


def allowed_after(sids: set[tuple[int, ...]], prefix: tuple[int, ...]) -> list[int]:
    n = len(prefix)
    return sorted({s[n] for s in sids if s[:n] == prefix})


def raw_step(row: np.ndarray, token: int) -> float:
    """The raw log-probability of one level: logit - logsumexp of the whole row."""
    return float(row[token]) - row_lse(row)


def expand(world: World, beams, k: int, eligible: set[int]) -> dict:
    """beams: (sid, score, raw log-probability), best first."""
    items, scores, logprobs = [], [], []
    for sid, sc, raw in beams:
        for it in world.items_of(sid, eligible):
            if len(items) < k:
                items.append(it)
                scores.append(float(np.float32(sc)))
                logprobs.append(float(np.float32(raw)))
    return {"items": items, "scores": scores, "sids": [b[0] for b in beams],
            "sid_scores": [float(np.float32(b[1])) for b in beams], "scores64": [b[1] for b in beams],
            "logprobs": logprobs, "sid_logprobs": [float(np.float32(b[2])) for b in beams],
            "logprobs64": [b[2] for b in beams]}


def reference_beam(world: World, request: int, q: dict) -> dict:
    """The reference decoder's rule, level by level, in plain Python."""
    eligible = world.eligible_items(q.get("allow"), deny_of(q))
    sids = eligible_sids(world, eligible)
    beams = [((), 0.0, 0.0)]
    for level in range(world.levels):
        cands = []
        for prefix, sc, raw in beams:
            codes = allowed_after(sids, prefix)
            if not codes:
                continue
            row = world.logits(request, prefix)
            lp = log_probs(row, world.table[level], codes)
            if lp is None:
                continue
            for c in codes:
                s2 = sc + lp[c]
                if s2 > -math.inf:
                    cands.append((prefix + (c,), s2, raw + raw_step(row, world.table[level][c])))
        cands.sort(key=lambda t: (-t[1], t[0]))
        beams = cands[: q.get("beam", 20)]
    return expand(world, beams, q.get("k", 10), eligible)


def reference_exhaustive(world: World, request: int, q: dict) -> dict:
    """Every eligible full SID scored by its summed per-level allowed log-softmax."""
    eligible = world.eligible_items(q.get("allow"), deny_of(q))
    sids = eligible_sids(world, eligible)
    scored = []
    for sid in sids:
        sc = raw = 0.0
        for level in range(world.levels):
            prefix = sid[:level]
            row = world.logits(request, prefix)
            lp = log_probs(row, world.table[level], allowed_after(sids, prefix))
            sc = sc + lp[sid[level]]
            raw = raw + raw_step(row, world.table[level][sid[level]])
        scored.append((sid, sc, raw))
    scored.sort(key=lambda t: (-t[1], t[0]))
    return expand(world, scored, q.get("k", 10), eligible)


def check_equal(got: dict, want: dict) -> None:
    items, scores, sids, sid_scores, logprobs, sid_logprobs = as_lists(got)
    assert sids == want["sids"]
    assert sid_scores == want["sid_scores"]
    assert got["scores64"] == want["scores64"]  # the same float64 arithmetic, bit for bit
    assert items == want["items"]
    assert scores == want["scores"]
    assert got["logprobs64"] == want["logprobs64"]  # the same float32 kernel, bit for bit
    assert sid_logprobs == want["sid_logprobs"]
    assert logprobs == want["logprobs"]


def test_exp_kernel_is_accurate():
    rng = np.random.default_rng(0)
    x = np.concatenate([-rng.exponential(3.0, 200_000), -rng.uniform(0, 700, 100_000),
                        [0.0, -0.0, -1e-300, -0.34657359027997264, -700.0, -699.9999]])
    want = np.exp(x)
    got = exp_kernel(x)
    ulps = np.abs(got - want) / np.spacing(want)
    assert ulps.max() <= 2.0
    assert exp_kernel(np.array([-700.5, -1e6, -np.inf])).tolist() == [0.0, 0.0, 0.0]


def test_exp_kernel_f32_is_accurate():
    rng = np.random.default_rng(0)
    x = np.concatenate([-rng.exponential(3.0, 200_000), -rng.uniform(0, 80, 100_000),
                        [0.0, -0.0, -1e-30, -0.34657359, -80.0, -79.9999]]).astype(F32)
    want = np.exp(x.astype(np.float64))
    got = exp_kernel_f32(x).astype(np.float64)
    ulps = np.abs(got - want) / np.spacing(want.astype(F32)).astype(np.float64)
    assert ulps.max() <= 2.0
    floor = exp_kernel_f32(np.array([-80.0], F32))[0]  # below -80 counts as -80: ~2e-35, never NaN
    assert exp_kernel_f32(np.array([-80.5, -1e6, -np.inf], F32)).tolist() == [floor] * 3
    # the FMA emulation rounds once: a halfway case that rounding twice gets wrong
    a = F32(1 + 2.0**-12)  # a*a = 1 + 2^-11 + 2^-24: halfway between two float32s
    assert F32(float(a) * float(a) + 2.0**-80) == F32(1 + 2.0**-11)  # float64 then float32: wrong
    assert fma32(a, a, F32(2.0**-80)) == F32(1 + 2.0**-11 + 2.0**-23)
    assert fma32(a, a, F32(-(2.0**-80))) == F32(1 + 2.0**-11)


@pytest.mark.parametrize("vocab", [1, 7, 8, 13, 1_300, 49_157])
def test_raw_logprob_is_the_whole_row_log_softmax(vocab):
    """A one-level search of one code per token: logprobs = logit - logsumexp(row), equal to the
    numpy copy of the kernel bit for bit (AVX2 body and scalar tail) and to float64 within 1e-6."""
    rng = np.random.default_rng(vocab)
    k = min(vocab, 5)
    trie = SidTrie(np.arange(k, dtype=np.int32)[:, None], np.arange(k, dtype=np.int64) + 100, k)
    table = rng.permutation(vocab)[:k].astype(np.int32)[None, :]
    row = (rng.normal(0, 4, vocab) + rng.choice([0, 30, -60], vocab)).astype(F32)
    row[rng.random(vocab) < 0.05] = -np.inf  # masked tokens are legal
    row[table[0]] = rng.normal(0, 1, k)
    s = BeamSearch(trie, table, [{"k": k, "beam": k}])
    s.step(row[None, :])
    res = s.results()[0]
    lse = row_lse(row)
    want = [float(row[table[0, sid[0]]]) - lse for sid in res["sids"].tolist()]
    assert s.row_logprobs.tolist() == want
    assert res["sid_logprobs"].tolist() == [float(F32(w)) for w in want]
    exact = np.logaddexp.reduce(row.astype(np.float64))
    assert abs(lse - exact) < 1e-6


def test_pausing_a_sibling_moves_the_score_not_the_logprob():
    world = small_world()
    req = [{"k": 30, "beam": 100}]
    before = run_search(world, req)[0]
    items = before["items"].tolist()
    sid0 = tuple(world.trie.codes_of(items[0]))
    sibling = next(tuple(world.trie.codes_of(i)) for i in items[1:]
                   if tuple(world.trie.codes_of(i))[:-1] == sid0[:-1] and tuple(world.trie.codes_of(i)) != sid0)
    world.trie.set_active(world.trie.items(np.array(sibling, np.int32)), False)  # the ad(s) of that SID
    after = run_search(world, req)[0]
    a, b = items.index(items[0]), after["items"].tolist().index(items[0])
    assert after["scores"][b] > before["scores"][a]  # renormalised over fewer codes
    assert after["logprobs"][b] == before["logprobs"][a]  # the model's own probability
    assert before["logprobs"][a] < before["scores"][a]


# ------------------------------------------------------------------------------------------------
# Strategies.

@st.composite
def worlds(draw, max_n: int = 30):
    levels = draw(st.integers(1, 4))
    k = draw(st.integers(1, 4))
    n = draw(st.integers(0, max_n))
    flat = draw(st.lists(st.integers(0, k - 1), min_size=n * levels, max_size=n * levels))
    codes = np.array(flat, dtype=np.int32).reshape(n, levels)
    if n >= 2 and draw(st.booleans()):  # force some collisions
        for _ in range(draw(st.integers(1, max(1, n // 3)))):
            a, b = draw(st.integers(0, n - 1)), draw(st.integers(0, n - 1))
            codes[a] = codes[b]
    start = draw(st.integers(-3, 100))
    ids = start + np.array(draw(st.permutations(range(n))), dtype=np.int64) * draw(st.sampled_from([1, 7]))
    inactive = draw(st.lists(st.sampled_from(ids.tolist()), max_size=n // 2)) if n else []
    world = World(codes, ids, k, vocab_extra=draw(st.integers(0, 9)), seed=draw(st.integers(0, 2**32 - 1)),
                  ties=draw(st.booleans()), inactive=inactive)
    return world


# ------------------------------------------------------------------------------------------------
# 1-3: properties.

@settings(max_examples=120, **SETTINGS)
@given(worlds(), st.data())
def test_wide_beam_equals_exhaustive_top_k(world, data):
    n_sids = len({tuple(r) for r in world.codes.tolist()})
    reqs = [{"k": data.draw(st.integers(1, len(world.ids) + 2)),
             "beam": n_sids + data.draw(st.integers(0, 3)) if n_sids else data.draw(st.integers(1, 3))}
            for _ in range(data.draw(st.integers(1, 3)))]
    got = run_search(world, reqs)
    for r, q in enumerate(reqs):
        check_equal(got[r], reference_exhaustive(world, r, q))


@settings(max_examples=120, **SETTINGS)
@given(worlds(), st.data())
def test_narrow_beam_equals_reference_algorithm(world, data):
    n_sids = len({tuple(r) for r in world.codes.tolist()})
    reqs = [{"k": data.draw(st.integers(1, 6)), "beam": data.draw(st.integers(1, max(1, n_sids - 1)))}
            for _ in range(data.draw(st.integers(1, 4)))]
    got = run_search(world, reqs)
    for r, q in enumerate(reqs):
        check_equal(got[r], reference_beam(world, r, q))


@settings(max_examples=150, **SETTINGS)
@given(worlds(), st.data())
def test_filters_act_inside_the_walk(world, data):
    ids = world.ids.tolist()
    pool = st.sampled_from(ids + [10**12, -(10**12)])  # unknown ids are ignored
    reqs = []
    for _ in range(data.draw(st.integers(1, 4))):
        q: dict = {"k": data.draw(st.integers(1, 6))}
        q["beam"] = data.draw(st.integers(q["k"], q["k"] + 4))
        if data.draw(st.booleans()):
            q["allow"] = data.draw(st.lists(pool, max_size=len(ids) + 2))
            if data.draw(st.booleans()):
                q["allow"] = set(q["allow"])  # any iterable will do
        else:
            q["allow"] = None
        if data.draw(st.booleans()):
            q["deny"] = np.array(data.draw(st.lists(pool, max_size=len(ids) + 2)), dtype=np.int64)
        reqs.append(q)
    got = run_search(world, reqs)
    for r, q in enumerate(reqs):
        eligible = world.eligible_items(q.get("allow"), deny_of(q))
        items = got[r]["items"].tolist()
        assert set(items) <= eligible, (items, eligible)
        assert len(items) == len(set(items))
        assert len(items) == min(q["k"], len(eligible))  # beam >= k: exactly k when k exist
        check_equal(got[r], reference_beam(world, r, q))


# ------------------------------------------------------------------------------------------------
# Fixed cases.

def small_world(ties: bool = False) -> World:
    codes = np.array(list(itertools.product(range(3), range(3), range(2))), dtype=np.int32)
    codes = np.concatenate([codes, codes[:4]])  # 4 collisions
    ids = np.arange(len(codes), dtype=np.int64) * 3 + 5
    return World(codes, ids, 3, vocab_extra=7, seed=11, ties=ties)


def test_ties_break_by_sid_and_collisions_keep_build_order():
    # all logits equal: every SID of the same branching has the same score
    world = small_world()
    world.logits = lambda request, prefix: np.zeros(world.vocab, np.float32)
    got = run_search(world, [{"k": 30, "beam": 100}])[0]
    sids = [tuple(s) for s in got["sids"].tolist()]
    assert sids == sorted(sids)  # equal scores: SID ascending
    assert len(set(got["sid_scores"].tolist())) == 1
    # items of a shared SID come in build-row order
    first = [i for i in got["items"].tolist() if tuple(world.trie.codes_of(i)) == (0, 0, 0)]
    assert first == [5, 18 * 3 + 5]


@pytest.mark.parametrize("ties", [False, True])
def test_larger_table_matches_reference(ties):
    # wide nodes (up to 24 children): the vectorised paths run, not only their scalar tails
    rng = np.random.default_rng(7)
    codes = rng.integers(0, 24, size=(600, 3), dtype=np.int32)
    codes[:, 0] %= 6
    codes[500:] = codes[:100]  # collisions
    ids = rng.choice(10**6, size=600, replace=False).astype(np.int64)
    world = World(codes, ids, 24, vocab_extra=40, seed=3, ties=ties, inactive=ids[::17])
    reqs = [{"k": 10, "beam": 12}, {"k": 3, "beam": 5, "deny": ids[:300]},
            {"k": 10, "beam": 20, "allow": ids[100:400:2], "deny": ids[100:120]}, {"k": 1, "beam": 1}]
    got = run_search(world, reqs)
    for r, q in enumerate(reqs):
        check_equal(got[r], reference_beam(world, r, q))
        assert len(got[r]["items"]) == q["k"]


def test_empty_batch_dead_requests_and_empty_trie():
    world = small_world()
    assert run_search(world, []) == []
    # a request whose allow list holds nothing known dies at level 0; the others go on
    out = run_search(world, [{"k": 2, "allow": [10**9]}, {"k": 2, "beam": 3}, {"allow": []}])
    assert out[0]["items"].size == 0 and out[0]["sids"].shape == (0, 3)
    assert out[1]["items"].size == 2
    assert out[2]["items"].size == 0
    empty = World(np.zeros((0, 2), np.int32), np.zeros(0, np.int64), 2, 3, seed=1, ties=False)
    assert run_search(empty, [{"k": 3}])[0]["items"].size == 0
    world.trie.set_all_active(False)
    assert run_search(world, [{"k": 3}])[0]["items"].size == 0


def test_strided_and_converted_logits_give_the_same_result():
    world = small_world()
    reqs = [{"k": 4, "beam": 5}, {"k": 3, "beam": 2, "deny": [5, 8]}]
    want = run_search(world, reqs)

    def drive(make):
        s = BeamSearch(world.trie, world.table, reqs)
        prefixes = [()] * len(reqs)
        while not s.done:
            rows = np.stack([world.logits(r, p) for r, p in zip(s.row_request.tolist(), prefixes)])
            s.step(make(rows))
            prefixes = [prefixes[p] + (world.code_of[t][1],) for p, t in zip(s.parents.tolist(), s.tokens.tolist())]
        return s.results()

    wide = lambda rows: np.concatenate([rows, np.full_like(rows, 99.0)], axis=1)[:, : rows.shape[1]]
    cube = lambda rows: np.repeat(rows[:, None, :], 3, axis=1)[:, -1, :]  # (batch, seq, vocab)[:, -1]
    for make in (wide, cube, lambda rows: rows.astype(np.float64), lambda rows: np.asfortranarray(rows)):
        got = drive(make)
        for g, w in zip(got, want):
            assert as_lists(g) == as_lists(w)


def test_search_keeps_the_trie_alive():
    world = small_world()
    s = BeamSearch(world.trie, world.table, [{"k": 2}])
    world.trie = None
    gc.collect()
    rng = np.random.default_rng(0)
    while not s.done:
        s.step(rng.normal(size=(s.rows, world.vocab)).astype(np.float32))
    assert s.results()[0]["items"].size == 2


# ------------------------------------------------------------------------------------------------
# 4: errors.

def test_errors():
    world = small_world()
    V = world.vocab
    s = BeamSearch(world.trie, world.table, [{"k": 2}, {"k": 1}])
    for bad in (np.zeros((3, V), np.float32), np.zeros((2,), np.float32), np.zeros((2, V, 1), np.float32),
                np.zeros((2, 0), np.float32), "logits"):
        with pytest.raises(InvalidArgumentError):
            s.step(bad)
    # SID token ids beyond the row: an error that names the id; the search is unchanged
    narrow = int(world.table[0].max())
    with pytest.raises(InvalidArgumentError, match=f"has id {narrow}"):
        s.step(np.zeros((2, narrow), np.float32))
    assert s.level == 0 and s.rows == 2
    while not s.done:
        s.step(np.zeros((s.rows, V), np.float32))
    with pytest.raises(InvalidArgumentError, match="done"):
        s.step(np.zeros((s.rows, V), np.float32))
    assert len(s.results()) == 2
    with pytest.raises(InvalidArgumentError, match="results"):
        BeamSearch(world.trie, world.table, [{}]).results()

    for q, what in (({"k": 0}, "k"), ({"beam": 0}, "beam"), ({"k": -3}, "k"), ({"k": 1.5}, "k"),
                    ({"beam": True}, "beam"), ({"k": "2"}, "k"), ({"kk": 2}, "kk"),
                    ({"deny": 5}, "deny"), ({"allow": [1.5]}, "allow")):
        with pytest.raises(InvalidArgumentError, match=what):
            BeamSearch(world.trie, world.table, [{"k": 1}, q])
    with pytest.raises(InvalidArgumentError, match="requests"):
        BeamSearch(world.trie, world.table, {"k": 1})
    with pytest.raises(InvalidArgumentError, match="requests\\[0\\]"):
        BeamSearch(world.trie, world.table, [3])
    with pytest.raises(InvalidArgumentError, match="levels"):
        BeamSearch(world.trie, world.table[:2], [{}])
    with pytest.raises(InvalidArgumentError, match="token_table"):
        BeamSearch(world.trie, world.table[0], [{}])
    # a table narrower than the codes the trie holds: an error when such a code comes up
    s = BeamSearch(world.trie, world.table[:, :2], [{}])
    with pytest.raises(InvalidArgumentError, match="level 0 code 2"):
        s.step(np.zeros((1, V), np.float32))
    # a trie whose code range is wider than the table, but whose codes all have tokens: fine
    wide = SidTrie(world.codes, world.ids, codebook_sizes=1000)
    s = BeamSearch(wide, world.table, [{"k": 3}])
    while not s.done:
        s.step(np.zeros((s.rows, V), np.float32))
    assert s.results()[0]["items"].size == 3
    # a code the trie holds without a token
    table = world.table.copy()
    table[1, 2] = -1
    s = BeamSearch(world.trie, table, [{}])
    s.step(np.zeros((1, V), np.float32))
    with pytest.raises(InvalidArgumentError, match="level 1 code 2"):
        s.step(np.zeros((s.rows, V), np.float32))


def test_minus_inf_logits_are_masks():
    world = small_world()
    s = BeamSearch(world.trie, world.table, [{"k": 3, "beam": 4}, {"k": 3}])
    row = np.zeros((2, world.vocab), np.float32)
    row[0, world.table[0, 0]] = -np.inf  # code 0 impossible for request 0
    row[1, :] = -np.inf                  # request 1: nothing possible, a dead beam
    s.step(row)
    assert s.row_request.tolist() == [0, 0]
    assert sorted(world.code_of[t][1] for t in s.tokens.tolist()) == [1, 2]
    assert np.isfinite(s.row_logprobs).all()


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nan_or_inf_among_allowed_logits_is_an_error(value):
    """A broken model output fails the search with ModelOutputError naming the request, level,
    token and value; it never comes back as an empty list. The search is unchanged after it."""
    world = small_world()
    s = BeamSearch(world.trie, world.table, [{"k": 3}, {"k": 3}])
    row = np.zeros((2, world.vocab), np.float32)
    tok = int(world.table[0, 2])
    row[1, tok] = value
    shown = "nan" if np.isnan(value) else "inf"
    with pytest.raises(ModelOutputError, match=f"request 1, SID level 0: .*token {tok} "
                                               rf"\(SID code 2, allowed\) is {shown}") as e:
        s.step(row)
    assert (e.value.request, e.value.level, e.value.token, e.value.code) == (1, 0, tok, 2)
    assert str(e.value) == str(ModelOutputError.at(1, 0, tok, 2, float(value)))
    assert s.level == 0 and s.rows == 2
    s.step(np.zeros((2, world.vocab), np.float32))
    assert s.level == 1


def test_nan_in_a_row_that_cannot_place_a_candidate_is_an_error():
    world = small_world()
    V = world.vocab
    s = BeamSearch(world.trie, world.table, [{"k": 2, "beam": 2}])
    first = np.zeros((1, V), np.float32)
    first[0, world.table[0, 0]] = 10.0  # prefix (0) best, prefix (1) far behind
    first[0, world.table[0, 2]] = -30.0
    s.step(first)
    assert [world.code_of[t][1] for t in s.tokens.tolist()] == [0, 1]
    rows = np.zeros((2, V), np.float32)  # row 0 fills the beam; row 1 cannot beat it
    rows[1, world.table[1, 1]] = np.nan
    with pytest.raises(ModelOutputError, match="request 0, SID level 1"):
        s.step(rows)
    # a NaN outside the allowed codes of a row that keeps no candidate is never read
    rows[1, world.table[1, 1]] = 0.0
    rows[1, world.table[0, 0]] = np.nan
    s.step(rows)
    assert s.row_request.tolist() == [0, 0] and s.parents.tolist() == [0, 0]


def test_nan_elsewhere_in_a_continuing_row_is_an_error():
    """The raw log-probability reads the whole row of a beam that continues: a NaN or +inf
    anywhere in it is an error too (code None: not an allowed SID code)."""
    world = small_world()
    s = BeamSearch(world.trie, world.table, [{"k": 2}])
    row = np.zeros((1, world.vocab), np.float32)
    other = next(t for t in range(world.vocab) if t not in world.code_of)
    row[0, other] = np.inf
    with pytest.raises(ModelOutputError, match=f"token {other} \\(in the row of a beam that continues\\) is inf") as e:
        s.step(row)
    assert e.value.code is None and e.value.value == np.inf


# ------------------------------------------------------------------------------------------------
# 5: threads.

def test_concurrent_searches_while_the_mask_changes():
    rng = np.random.default_rng(3)
    n, levels, k = 3000, 3, 12
    codes = rng.integers(0, k, size=(n, levels), dtype=np.int32)
    ids = rng.choice(10**9, size=n, replace=False).astype(np.int64)
    trie = SidTrie(codes, ids, codebook_sizes=k)
    never = ids[:300]                 # inactive all along
    toggled = ids[300:1500]           # flipped on and off while the searches run
    trie.set_active(never, False)
    allowed = set(ids.tolist()) - set(never.tolist())
    vocab = 2000
    table = rng.permutation(vocab)[: levels * k].reshape(levels, k).astype(np.int32)
    stop = threading.Event()
    errors: list[BaseException] = []

    def toggle():
        r = np.random.default_rng(5)
        while not stop.is_set():
            pick = r.choice(toggled, size=200, replace=False)
            trie.set_active(pick, False)
            trie.set_active(pick, True)

    def searcher(seed):
        try:
            r = np.random.default_rng(seed)
            for _ in range(12):
                reqs = [{"k": 10, "beam": 20, "deny": ids[1500:1520]} if j % 2 else {"k": 10, "beam": 20}
                        for j in range(4)]
                s = BeamSearch(trie, table, reqs)
                while not s.done:
                    s.step(r.normal(size=(s.rows, vocab)).astype(np.float32))
                for q, res in zip(reqs, s.results()):
                    items = res["items"].tolist()
                    assert set(items) <= allowed - set(q.get("deny", np.array([], np.int64)).tolist())
                    assert len(items) == len(set(items)) <= 10
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    tog = threading.Thread(target=toggle)
    tog.start()
    workers = [threading.Thread(target=searcher, args=(s,)) for s in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    stop.set()
    tog.join()
    assert not errors, errors[0]
    assert trie.n_active == n - len(never)
