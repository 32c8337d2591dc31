"""The re-ranker (runtime/rerank.py, eval/rerank.py): its settings, the candidates and features
of one request, the served lists (equal to the offline ones), the bundle plumbing and the fit."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from genrec_lite.errors import ArtifactError, InvalidArgumentError
from genrec_lite.eval.rerank import choose_reranker, fit_weights, fitted, lists
from genrec_lite.runtime.rerank import (FEATURES, FLOOR, SEEN, WARM_FEATURES, Pool, Reranker,
                                        fill, places, pool, popularity, ranked)
from genrec_lite.runtime.transitions import Transitions

F = len(WARM_FEATURES)


def _reranker(**kw) -> Reranker:
    rng = np.random.default_rng(0)
    return Reranker(**{"weights": rng.normal(size=F), "mean": np.zeros(F), "scale": np.ones(F),
                       **kw})


# --- settings ----------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [dict(weights=np.ones(F - 1)), dict(mean=np.full(F, np.nan)),
                                 dict(scale=np.zeros(F)), dict(successors=-1),
                                 dict(successors=True), dict(successors=2.5)])
def test_settings_are_checked(bad):
    with pytest.raises(InvalidArgumentError, match="re-ranker"):
        _reranker(**bad)


def test_settings_round_trip_and_an_unknown_feature_is_refused():
    r = _reranker(successors=7)
    back = Reranker.from_dict(json.loads(json.dumps(r.to_dict())))
    assert back.successors == 7 and np.array_equal(back.weights, r.weights)
    d = r.to_dict()
    assert "cold" not in d and d["features"] == list(WARM_FEATURES)   # as earlier bundles wrote
    # a bundle of an earlier version names fewer features (no seen_*): served by its names
    old = FEATURES[:17]
    X = np.random.default_rng(4).normal(size=(6, len(FEATURES)))
    earlier = Reranker.from_dict({"features": list(old), "weights": [1.0] * 17,
                                  "mean": [0.0] * 17, "scale": [1.0] * 17})
    assert np.allclose(earlier.scores(X), X[:, :17].sum(axis=1))
    with pytest.raises(InvalidArgumentError, match="this version computes"):
        Reranker.from_dict(dict(d, features=d["features"][:-1] + ["dwell_time"]))
    with pytest.raises(InvalidArgumentError, match="distinct"):
        Reranker.from_dict(dict(d, features=d["features"][:-1] + ["logprob"]))
    # the weights follow the names, in any order
    X = np.random.default_rng(3).normal(size=(6, len(FEATURES)))
    flip = Reranker.from_dict(dict(d, features=d["features"][::-1], weights=d["weights"][::-1],
                                   mean=d["mean"][::-1], scale=d["scale"][::-1]))
    assert np.allclose(flip.scores(X), r.scores(X))
    n = len(FEATURES)
    c = Reranker(np.ones(n), np.zeros(n), np.ones(n), features=FEATURES, cold=5)
    back = Reranker.from_dict(json.loads(json.dumps(c.to_dict())))
    assert back.cold == 5 and back.features == FEATURES
    with pytest.raises(InvalidArgumentError, match="'cold' feature"):
        _reranker(cold=5)
    with pytest.raises(InvalidArgumentError, match="cold=-1"):
        Reranker(np.ones(n), np.zeros(n), np.ones(n), features=FEATURES, cold=-1)
    with pytest.raises(InvalidArgumentError, match="unknown keys"):
        Reranker.from_dict(dict(d, bias=1.0))
    with pytest.raises(InvalidArgumentError, match="incomplete"):
        Reranker.from_dict({k: v for k, v in d.items() if k != "mean"})


# --- one request's candidates ------------------------------------------------------------------
def _dirs(n_items=40, dim=8, seed=0):
    v = np.random.default_rng(seed).normal(size=(n_items, dim))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_the_pool_holds_the_beams_items_and_the_newest_items_successors():
    # 5 -> 7 (3 times), 5 -> 8 (2), 5 -> 9 (1), 4 -> 7 (1); 3 -> 2 (1)
    table = Transitions.from_sequences([[5, 7]] * 3 + [[5, 8]] * 2 + [[5, 9], [4, 7], [3, 2]])
    pop = popularity(table)
    dirs = _dirs()
    fused = ([1, 2, 7], [-1.0, -2.0, -3.0], [-1.5, -2.5, -3.5])
    views = [([1, 7], [-0.5, -4.0]), ([2, 1, 7], [-1.0, -2.0, -2.0])]
    history = [3, 4, 5]
    p = pool(fused, views, history, table, pop, lambda ids: dirs[ids], successors=5,
             skip=lambda i: i == 9)                    # 9 is filtered out (cold, denied...)
    assert p.items == [1, 2, 7, 8]                     # the beam's, then 8 (7 is in the beam)
    X = dict(zip(FEATURES, p.X.T))
    assert X["logprob"].tolist() == [-1.0, -2.0, -3.0, FLOOR]
    assert p.logprobs[:3] == [-1.5, -2.5, -3.5] and p.logprobs[3] == -math.inf
    assert X["in_beam"].tolist() == [1, 1, 1, 0]
    assert X["beam_rank"].tolist() == pytest.approx(np.log1p([0, 1, 2, 50]).tolist())
    assert X["count_1"].tolist() == pytest.approx(np.log1p([0, 0, 3, 2]).tolist())   # from 5
    assert X["share_1"].tolist() == pytest.approx([0, 0, 0.5, 2 / 6])
    assert X["count_2"].tolist() == pytest.approx(np.log1p([0, 0, 1, 0]).tolist())   # from 4
    assert X["count_3"].tolist() == pytest.approx(np.log1p([0, 1, 0, 0]).tolist())   # from 3
    assert X["popularity"].tolist() == pytest.approx(np.log1p([0, 1, 4, 2]).tolist())
    assert X["in_history"].tolist() == [0, 0, 0, 0] and X["is_last"].tolist() == [0, 0, 0, 0]
    assert X["views"].tolist() == [2, 1, 2, 0]
    assert X["logprob_first"].tolist() == [-0.5, FLOOR, -4.0, FLOOR]
    cos = dirs[[1, 2, 7, 8]] @ dirs[[5, 4, 3]].T
    assert X["cos_last"] == pytest.approx(cos[:, 0])
    assert X["cos_recent"] == pytest.approx(cos.max(axis=1))
    assert X["near"] == pytest.approx(np.maximum(0, cos.max(axis=1) - 0.9) * 10)
    assert not p.X[:, [FEATURES.index(f) for f in SEEN]].any()     # none is in the history
    # a history item's own features; no history: no counts, no cosines
    p = pool(([5, 1], [-1.0, -2.0], [-1.0, -2.0]), [([5, 1], [-1.0, -2.0])], [5], table, pop,
             lambda ids: dirs[ids], 0, lambda i: False)
    X = dict(zip(FEATURES, p.X.T))
    assert X["in_history"].tolist() == [1, 0] and X["is_last"].tolist() == [1, 0]
    assert X["duplicate"].tolist() == [1, 0] and X["cos_recent"][0] == pytest.approx(1)
    # its features again under seen_*, 0 for the item not in the history
    for f in SEEN:
        assert X[f].tolist() == [X[f[len("seen_"):]][0], 0], f
    assert X["seen_logprob"][0] == -1.0 and X["seen_views"][0] == 1
    p = pool(([1], [-1.0], [-1.0]), [([1], [-1.0])], [], table, pop, lambda ids: dirs[ids], 5,
             lambda i: False)
    assert p.items == [1] and not p.X[0, 3:10].any() and not p.X[0, 12:].any()


def test_cold_candidates_follow_the_warm_ones_with_their_own_features():
    table = Transitions.from_sequences([[5, 7]] * 3 + [[4, 7]])
    dirs = _dirs()
    fused = ([1, 7], [-1.0, -2.0], [-1.0, -2.0])
    p = pool(fused, [fused[:2]], [4, 5], table, popularity(table), lambda ids: dirs[ids], 5,
             skip=lambda i: i >= 30, cold=[31, 30, 7, 31],   # 7 is warm here: not again
             cold_mass=[-1.0, -2.5, -3.0, -4.0])
    assert p.items == [1, 7, 31, 30] and p.n_warm == 2
    X = dict(zip(FEATURES, p.X.T))
    assert X["cold"].tolist() == [0, 0, 1, 1]
    assert X["cold_cos"][:2].tolist() == [0, 0]
    assert X["cold_cos"][2:] == pytest.approx(X["cos_recent"][2:])
    assert X["cold_rank"].tolist() == pytest.approx(np.log1p([0, 0, 0, 1]).tolist())
    assert X["cold_mass"].tolist() == [0, 0, -1.0, -2.5]   # an item's first mass
    assert X["in_beam"][2:].tolist() == [0, 0] and X["logprob"][2:].tolist() == [FLOOR, FLOOR]
    assert p.logprobs[2:] == [-math.inf, -math.inf]
    # a warm re-ranker ranks the warm rows only; one with cold candidates ranks them all
    n = len(FEATURES)
    w = np.zeros(n)
    w[FEATURES.index("cold")] = 5.0
    assert sorted(ranked(None, p)[0].tolist()) == [0, 1]
    assert sorted(ranked(_reranker(), p)[0].tolist()) == [0, 1]
    joint = Reranker(w, np.zeros(n), np.ones(n), features=FEATURES, cold=2)
    order, scores = ranked(joint, p)
    assert order.tolist() == [2, 3, 0, 1] and scores.tolist() == [0, 0, 5, 5]


def test_cold_items_keep_their_places_and_warm_candidates_fill_the_rest():
    answer = ([4, 30, 5, 31], [-1.0, -1.5, -2.0, -2.5], [-1.0, -1.5, -2.0, -2.5])
    slots = places(answer, lambda i: i >= 30)
    assert slots == [None, 30, None, 31]
    cands = Pool([4, 5, 6], np.zeros((3, F)), [-1.0, -2.0, -math.inf])
    items, scores, logprobs = fill(slots, answer, cands, np.array([2, 0, 1]),
                                   np.array([0.1, 0.2, 0.9]))
    assert items == [6, 30, 4, 31]
    assert scores == [0.9, -1.5, 0.1, -2.5] and logprobs == [-math.inf, -1.5, -1.0, -2.5]
    # without a re-ranker the warm candidates keep the model's order
    X = np.zeros((3, F))
    X[:, 0] = [-1.0, -2.0, FLOOR]
    order, _ = ranked(None, Pool([4, 5, 6], X, [-1.0, -2.0, -math.inf]))
    assert order.tolist() == [0, 1, 2]


# --- fitting -----------------------------------------------------------------------------------
def test_the_logit_recovers_the_weights_that_drew_the_targets():
    rng = np.random.default_rng(1)
    truth = np.zeros(F)
    truth[[0, 3, 13]] = [1.5, 1.0, -0.8]
    rows, at = [], []
    for _ in range(3000):
        X = rng.normal(size=(int(rng.integers(5, 15)), F))
        p = np.exp(X @ truth)
        rows.append(X)
        at.append(int(rng.choice(len(X), p=p / p.sum())))
    w = fit_weights(rows, at, lam=0.1)
    assert np.abs(w - truth).max() < 0.15
    # a large penalty pulls them to 0
    assert np.abs(fit_weights(rows, at, lam=1e6)).max() < 0.01


def _inputs(n_cases, signal, seed=0):
    """Cases of 12 warm candidates in the model's order; with `signal`, the next item is the
    candidate with the largest count_1 (the model's order knows nothing of it)."""
    rng = np.random.default_rng(seed)
    inputs, targets = [], []
    for _ in range(n_cases):
        X = rng.normal(size=(12, len(FEATURES)))
        X[:, 0] = -np.sort(rng.exponential(size=12))     # the model's order
        items = list(rng.permutation(1000)[:12] + 1)
        answer = (items[:10], X[:10, 0].tolist(), X[:10, 0].tolist())
        inputs.append(([None] * 10, answer, Pool(items, X, X[:, 0].tolist())))
        targets.append(items[int(np.argmax(X[:, 3]))] if signal else items[int(rng.integers(12))])
    return inputs, targets


def test_the_choice_keeps_a_reranker_that_helps_and_its_lists_are_the_runtimes():
    inputs, targets = _inputs(400, signal=True)
    chosen, rows = choose_reranker(inputs, targets, lambdas=(0.1, 10.0))
    assert [r["lambda"] for r in rows] == [None, 0.1, 10.0]
    assert chosen is not None
    assert max(r["NDCG@10"] for r in rows[1:]) > rows[0]["NDCG@10"] + 0.2
    served = lists(inputs, chosen)
    assert all(len(s) == 10 for s in served)
    hits = np.mean([t in s[:1] for s, t in zip(served, targets)])
    assert hits > 0.9
    assert lists(inputs, None) == [a[0] for _, a, _ in inputs]


def test_history_items_get_slopes_of_their_own():
    # the model's score means the opposite for an item already in the history: a new item is
    # the more likely the higher it scores, a history item the less (targets drawn that way)
    rng = np.random.default_rng(5)
    col = {f: FEATURES.index(f) for f in ("logprob", "in_history", "seen_logprob")}
    inputs, targets = [], []
    for _ in range(600):
        X = np.zeros((12, len(FEATURES)))
        X[:, col["logprob"]] = -np.sort(rng.exponential(size=12))
        X[:, col["in_history"]] = rng.random(12) < 0.3
        X[:, col["seen_logprob"]] = X[:, col["logprob"]] * X[:, col["in_history"]]
        u = 3 * X[:, col["logprob"]] - 6 * X[:, col["seen_logprob"]]
        items = list(rng.permutation(1000)[:12] + 1)
        answer = (items[:10], X[:10, 0].tolist(), X[:10, 0].tolist())
        inputs.append(([None] * 10, answer, Pool(items, X, X[:, 0].tolist())))
        targets.append(items[int(rng.choice(12, p=np.exp(u) / np.exp(u).sum()))])
    chosen, rows = choose_reranker(inputs, targets, lambdas=(1.0,))
    assert chosen is not None and rows[1]["NDCG@10"] > rows[0]["NDCG@10"] + 0.05
    w = dict(zip(chosen.features, chosen.weights))
    assert w["logprob"] > 0 > w["seen_logprob"]


def test_the_choice_is_off_when_nothing_beats_the_models_order():
    inputs, targets = _inputs(300, signal=False)
    # the next item is the model's first: no re-ranking can do better
    targets = [a[0][0] for _, a, _ in inputs]
    chosen, rows = choose_reranker(inputs, targets, lambdas=(1.0,))
    assert chosen is None and rows[0]["HR@1"] == 1.0
    with pytest.raises(InvalidArgumentError, match="targets"):
        choose_reranker(inputs, targets[:-1])
    with pytest.raises(InvalidArgumentError, match="folds=1"):
        choose_reranker(inputs, targets, folds=1)


def _cold_inputs(n_cases, seed=0, shift=0.5):
    """Cases of 12 warm and 4 cold candidates; the next item is cold in a third of them, the
    cold candidate of the largest cold_cos (the model's order never holds a cold item), whose
    values are `shift` larger in those cases."""
    rng = np.random.default_rng(seed)
    n = len(FEATURES)
    c = FEATURES.index("cold")
    inputs, targets = [], []
    for _ in range(n_cases):
        X = rng.normal(size=(16, n))
        X[:, 0] = -np.sort(rng.exponential(size=16))
        X[:12, c:] = 0
        X[12:, c] = 1
        X[12:, :c] = 0                   # no model evidence about a cold item
        X[12:, 0] = FLOOR
        cold_case = rng.random() < 1 / 3
        X[12:, c + 1] = rng.uniform(0.2, 0.5, size=4) + (shift if cold_case else 0)
        items = list(rng.permutation(1000)[:16] + 1)
        answer = (items[:10], X[:10, 0].tolist(), X[:10, 0].tolist())
        inputs.append(([None] * 10, answer, Pool(items, X, X[:, 0].tolist(), n_warm=12,
                                                  joint=True)))
        targets.append(items[12 + int(np.argmax(X[12:, c + 1]))] if cold_case else items[0])
    return inputs, targets


def test_the_choice_takes_cold_candidates_where_cold_next_items_are_learnable():
    inputs, targets = _cold_inputs(450)
    chosen, rows = choose_reranker(inputs, targets, lambdas=(0.01,))
    assert [(r["lambda"], r["cold"]) for r in rows] == [(None, 0), (0.01, 0), (0.01, 4)]
    assert chosen is not None and chosen.cold == 4 and chosen.features == FEATURES
    assert rows[2]["NDCG@10"] > rows[1]["NDCG@10"] + 0.2
    served = lists(inputs, chosen)
    assert np.mean([t == s[0] for s, t in zip(served, targets)]) > 0.9
    # pools without cold rows: the warm kind only
    warm = [(sl, a, Pool(p.items[:12], p.X[:12], p.logprobs[:12])) for sl, a, p in inputs]
    _, rows = choose_reranker(warm, targets, lambdas=(1.0,))
    assert [r["cold"] for r in rows] == [0, 0]


def test_a_cold_offset_buys_cold_cases_at_the_stated_price():
    # a weak content signal: the fitted logit leaves cold next items below the model's first
    inputs, targets = _cold_inputs(600, seed=3, shift=0.1)
    flags = [t not in a[0] for (_, a, _), t in zip(inputs, targets)]
    plain, plain_rows = choose_reranker(inputs, targets, lambdas=(1.0,))
    assert [r["offset"] for r in plain_rows] == [0.0, 0.0, 0.0]      # no flags: no offsets
    chosen, rows = choose_reranker(inputs, targets, lambdas=(1.0,), cold_targets=flags,
                                   max_cost=0.2)
    assert sorted({r["offset"] for r in rows if r["cold"]}) == [0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0]
    pick = [r for r in rows if r.get("chosen")]
    assert len(pick) == 1 and pick[0]["cold"] == 4 and pick[0]["offset"] > 0
    joint0 = next(r for r in rows if r["cold"] and r["offset"] == 0.0)
    assert pick[0]["cold_cases"]["NDCG@10"] > joint0["cold_cases"]["NDCG@10"]
    best = max(r["priced"]["NDCG@10"] for r in rows[1:])
    assert best > pick[0]["priced"]["NDCG@10"] >= 0.8 * best
    # the offset is folded into the cold weight: the lists are those of the shifted scores
    base = fitted(inputs, targets, 1.0, cold=4)
    j = FEATURES.index("cold")
    assert chosen.weights[j] == pytest.approx(base.weights[j] + pick[0]["offset"] * base.scale[j])
    X = inputs[0][2].X
    gap = chosen.scores(X) - base.scores(X) - pick[0]["offset"] * X[:, j]
    assert np.allclose(gap, gap[0])          # the same up to a constant: the same order
    # no price: the best trial itself
    _, rows0 = choose_reranker(inputs, targets, lambdas=(1.0,), cold_targets=flags, max_cost=0)
    top = next(r for r in rows0 if r.get("chosen"))
    assert top["priced"]["NDCG@10"] == max(r["priced"]["NDCG@10"] for r in rows0[1:])
    with pytest.raises(InvalidArgumentError, match="cold_targets"):
        choose_reranker(inputs, targets, cold_targets=flags[:-1])
    with pytest.raises(InvalidArgumentError, match="max_cost=1"):
        choose_reranker(inputs, targets, cold_targets=flags, max_cost=1)
    with pytest.raises(InvalidArgumentError, match="offsets"):
        choose_reranker(inputs, targets, cold_targets=flags, offsets=(0.5,))


def test_the_price_can_be_stated_against_the_recipe_without_cold_start():
    inputs, targets = _cold_inputs(600, seed=3, shift=0.1)
    flags = [t not in a[0] for (_, a, _), t in zip(inputs, targets)]
    kw = dict(lambdas=(1.0,), cold_targets=flags, max_cost=0.2)
    _, rows = choose_reranker(inputs, targets, **kw)
    trials = rows[1:]
    best = max(trials, key=lambda r: (r["priced"]["NDCG@10"], r["priced"]["HR@10"]))

    def kept(reference):
        _, got = choose_reranker(inputs, targets, reference=reference, **kw)
        assert [r["priced"] for r in got] == [r["priced"] for r in rows]   # the same trials
        return next(n for n, r in enumerate(got) if r.get("chosen"))

    # the best trial as the reference: the rule without one
    assert kept(dict(best["priced"])) == next(n for n, r in enumerate(rows) if r.get("chosen"))
    # a reference every trial that beats the model's order meets: the best cold ranking of them
    beats = [n for n, r in enumerate(rows)
             if n and r["priced"]["NDCG@10"] > rows[0]["priced"]["NDCG@10"]]
    n = kept({"HR@10": 0.0, "NDCG@10": 0.0})
    assert n in beats and rows[n]["cold_cases"]["NDCG@10"] == max(
        rows[m]["cold_cases"]["NDCG@10"] for m in beats)
    # a reference no trial comes within: the best trial, the smallest cost there is
    assert kept({"HR@10": 1.0, "NDCG@10": 1.0}) == rows.index(best)
    # a reference between: every kept trial is within the price of it
    mid = {k: (rows[0]["priced"][k] + best["priced"][k]) / 2 for k in ("HR@10", "NDCG@10")}
    m = kept(mid)
    assert all(rows[m]["priced"][k] >= 0.8 * mid[k] for k in mid)
    for bad in ({"HR@10": 0.1}, {"HR@10": float("nan"), "NDCG@10": 0.1}, [0.1, 0.1]):
        with pytest.raises(InvalidArgumentError, match="reference"):
            choose_reranker(inputs, targets, reference=bad, **kw)


def test_a_joint_reranker_answers_as_the_runtime_does_on_pools_without_cold_candidates():
    inputs, targets = _cold_inputs(300)
    chosen, _ = choose_reranker(inputs, targets, lambdas=(0.01,))
    assert chosen is not None and chosen.cold
    # collected with cold start off: no cold candidates asked for, and a cold item the beam
    # reached (5000) keeps its place, as the runtime serves it; asked for, the ranking decides
    slots, answer, p = inputs[0]
    slots = [None, None, 5000] + [None] * 7
    answer = (answer[0][:2] + [5000] + answer[0][3:], answer[1], answer[2])
    off = Pool(p.items[:12], p.X[:12], p.logprobs[:12])
    served = lists([(slots, answer, off)], chosen)[0]
    assert served[2] == 5000 and len(served) == 10 and set(served) - {5000} <= set(p.items[:12])
    assert 5000 not in lists([(slots, answer, p)], chosen)[0]


def test_fitted_standardises_with_the_cases_statistics():
    inputs, targets = _inputs(200, signal=True)
    r = fitted(inputs, targets, 1.0)
    X = np.concatenate([p.X for _, _, p in inputs])[:, [FEATURES.index(f) for f in r.features]]
    assert r.features == WARM_FEATURES
    assert np.allclose(r.mean, X.mean(axis=0)) and np.allclose(r.scale, X.std(axis=0))


# --- served by the Recommender -----------------------------------------------------------------
def _cases(runtime_checkpoint, n=40):
    from genrec_lite.data import make_synthetic, resolve_split
    from genrec_lite.data.splits import Case

    meta = json.loads((runtime_checkpoint / "genrec.json").read_text())
    ds = make_synthetic()
    seqs = resolve_split(meta["train"]["split"], ds).apply(ds, meta["train"]["max_history"]).train
    return [Case(str(u), tuple(int(i) for i in s[:-1]), int(s[-1]))
            for u, s in list(seqs.items())[:n] if len(s) >= 3]


def test_the_served_lists_are_the_offline_ones(runtime_checkpoint, runtime_bundle, tmp_path):
    from genrec_lite.eval.rerank import rerank_inputs
    from genrec_lite.export.bundle import set_reranker
    from genrec_lite.runtime import Recommender

    bundle = tmp_path / "b"
    shutil.copytree(runtime_bundle, bundle)
    cases = _cases(runtime_checkpoint)
    reqs = [{"history": list(c.history), "k": 10} for c in cases]
    with Recommender.load(bundle, n_threads=1) as rec:
        assert rec.reranker is None
        plain = [[r.item_id for r in recs] for recs in rec.recommend_batch(reqs)]
        inputs = rerank_inputs(rec, cases)
        assert [a[0] for _, a, _ in inputs] == plain           # the answer as served without
        assert all(set(a[0]) <= set(p.items) | {s for s in sl if s is not None}
                   for sl, a, p in inputs)
        rr = fitted(inputs, [c.target for c in cases], 1.0)
        rr = Reranker(rr.weights + np.eye(F)[3] * 2, rr.mean, rr.scale)  # counts matter
        rec.set_reranker(rr.to_dict())
        on = rec.recommend_batch(reqs)
        assert [[r.item_id for r in recs] for recs in on] == lists(inputs, rr)
        assert sum([r.item_id for r in recs] != p for recs, p in zip(on, plain)) > 0
        # an added successor has no model log-probability; every item answered is active
        assert all(r.logprob == -math.inf or r.logprob <= 0 for recs in on for r in recs)
        assert any(r.logprob == -math.inf for recs in on for r in recs)   # successors were added
        # filters hold for the added successors too
        first = on[0][0].item_id
        assert first not in [r.item_id for r in rec.recommend(reqs[0]["history"], k=10,
                                                              deny=[first])]
        rec.set_active([first], False)
        assert first not in [r.item_id for r in rec.recommend(reqs[0]["history"], k=10)]
        rec.set_active([first], True)
        rec.set_reranker(None)
        assert [[r.item_id for r in recs] for recs in rec.recommend_batch(reqs)] == plain
    set_reranker(bundle, rr)
    with Recommender.load(bundle, n_threads=1) as rec:
        assert np.array_equal(rec.reranker.weights, rr.weights)
        assert [[r.item_id for r in recs] for recs in rec.recommend_batch(reqs)] == lists(inputs, rr)


def test_cold_items_keep_the_mixtures_places_under_the_reranker(runtime_bundle, runtime_checkpoint):
    from genrec_lite.runtime import Recommender

    cases = _cases(runtime_checkpoint, 10)
    with Recommender.load(runtime_bundle, n_threads=1) as rec:
        state = rec.catalog.state
        hist = [i for i in cases[0].history if i in state.sids]
        rec.add_items([dict(state.records[hist[-1]], item_id=900_500)])
        rec.set_cold_start({"weight": 0.5, "temperature": 0.1})
        plain = [r.item_id for r in rec.recommend(hist, k=10)]
        assert 900_500 in plain
        rec.set_reranker(_reranker())
        got = [r.item_id for r in rec.recommend(hist, k=10)]
        cold = set(rec.catalog.state.cold.tolist())
        assert [i if i in cold else None for i in got] == [i if i in cold else None for i in plain]


def test_cold_candidates_are_ranked_as_offline_and_replace_the_mixture(runtime_bundle,
                                                                      runtime_checkpoint):
    from genrec_lite.eval.rerank import rerank_inputs
    from genrec_lite.runtime import Recommender

    cases = _cases(runtime_checkpoint, 20)
    with Recommender.load(runtime_bundle, n_threads=1) as rec:
        state = rec.catalog.state
        hist = [i for i in cases[0].history if i in state.sids]
        added = [dict(state.records[i], item_id=900_500 + n) for n, i in enumerate(hist[-3:])]
        rec.add_items(added)
        rec.set_cold_start({"weight": 0.5, "temperature": 0.1})
        inputs = rerank_inputs(rec, cases, cold=3)
        cold = set(rec.catalog.state.cold.tolist())
        assert all(set(p.items[p.n_warm:]) <= cold and len(p.items) - p.n_warm <= 3
                   for _, _, p in inputs)
        assert any(900_500 + 2 in p.items[p.n_warm:] for _, _, p in inputs)
        # the cold rows carry the mixture's masses, best first (finite: none without mass)
        m = FEATURES.index("cold_mass")
        for _, _, p in inputs:
            masses = p.X[p.n_warm:, m]
            assert np.isfinite(masses).all() and (np.diff(masses) <= 0).all()
        n = len(FEATURES)
        w = np.zeros(n)
        w[FEATURES.index("logprob")] = 0.01   # warm items score in (-0.12, 0]
        w[FEATURES.index("cold")] = 2.0       # cold ones in (0.88, 3): first
        w[FEATURES.index("cold_cos")] = 1.0
        rr = Reranker(w, np.zeros(n), np.ones(n), features=FEATURES, cold=3)
        rec.set_reranker(rr)
        reqs = [{"history": list(c.history), "k": 10} for c in cases]
        got = [[r.item_id for r in recs] for recs in rec.recommend_batch(reqs)]
        assert got == lists(inputs, rr)
        assert all(set(g[:len(p.items) - p.n_warm]) <= cold for g, (_, _, p) in zip(got, inputs))
        # filters hold for cold candidates; the mixture's cap does not apply
        first = got[0][0]
        assert first in cold and first not in [r.item_id for r in rec.recommend(
            reqs[0]["history"], k=10, deny=[first])]
        rec.set_active([first], False)
        assert first not in [r.item_id for r in rec.recommend(reqs[0]["history"], k=10)]
        # cold start off: no cold candidates, and the joint kind serves as the warm one (the
        # cold features read 0 on warm rows), cold items the beam reached keeping their places
        rec.set_active([first], True)
        rec.set_cold_start(None)
        assert all(p.n_warm == len(p.items) for _, _, p in rerank_inputs(rec, cases, cold=3))
        off = [[r.item_id for r in recs] for recs in rec.recommend_batch(reqs)]
        keep = [n for n, f in enumerate(FEATURES) if f in WARM_FEATURES]
        rec.set_reranker(Reranker(w[keep], np.zeros(len(keep)), np.ones(len(keep))))
        assert off == [[r.item_id for r in recs] for recs in rec.recommend_batch(reqs)]
        assert off != got


def test_the_served_choice_prices_exposure_against_cold_start_off(runtime_bundle,
                                                                  runtime_checkpoint):
    from genrec_lite.data.splits import Case
    from genrec_lite.eval.rerank import choose_served, cold_flags, rerank_inputs
    from genrec_lite.runtime import Recommender
    from genrec_lite.runtime.cold_start import ColdStartConfig

    cases = _cases(runtime_checkpoint, 40)
    with Recommender.load(runtime_bundle, n_threads=1) as rec:
        state = rec.catalog.state
        # every third case's next item is a new copy of its newest history item: cold
        added, moved = [], []
        for n, c in enumerate(cases):
            last = [i for i in c.history if i in state.sids][-1]
            if n % 3 == 0:
                added.append(dict(state.records[last], item_id=900_000 + n))
                c = Case(c.user_id, c.history, 900_000 + n)
            moved.append(c)
        rec.add_items(added)
        flags = cold_flags(rec, moved)
        assert flags.tolist() == [n % 3 == 0 for n in range(len(moved))]
        targets = [c.target for c in moved]
        settings = {"weight": 0.5, "temperature": 0.1}
        rec.set_cold_start(settings)
        got = choose_served(rec, moved, seed=1, cold_share=0.2)
        assert rec.cold_start == ColdStartConfig.from_dict(settings)    # restored
        # the reference: the same choice on the answers with cold start off
        rec.set_cold_start(None)
        plain = rerank_inputs(rec, moved)
        assert all(p.n_warm == len(p.items) for _, _, p in plain)
        _, off_rows = choose_reranker(plain, targets, seed=1, cold_targets=flags,
                                      cold_share=0.2)
        ref = next((r for r in off_rows if r.get("chosen")), off_rows[0])["priced"]
        assert got.reference == ref
        rec.set_cold_start(settings)
        assert [p.items for _, _, p in got.inputs] == [p.items for _, _, p in
                                                       rerank_inputs(rec, moved)]
        assert any(len(p.items) > p.n_warm for _, _, p in got.inputs)
        _, rows = choose_reranker(got.inputs, targets, seed=1, cold_targets=flags,
                                  cold_share=0.2, reference=ref)
        assert got.rows == rows
        # cold start off: no exposure to price, no reference
        rec.set_cold_start(None)
        assert choose_served(rec, moved, seed=1).reference is None


def test_a_reranker_needs_a_transition_table(runtime_bundle, tmp_path):
    from conftest import bundle_without_transitions
    from genrec_lite.export.bundle import set_reranker
    from genrec_lite.runtime import Recommender
    from genrec_lite.runtime.manifest import Manifest

    bundle = bundle_without_transitions(runtime_bundle, tmp_path / "old")
    with Recommender.load(bundle, n_threads=1) as rec:
        with pytest.raises(InvalidArgumentError, match="no transition table"):
            rec.set_reranker(_reranker())
    with pytest.raises(InvalidArgumentError, match="no transition table"):
        set_reranker(bundle, _reranker())
    # a manifest that names one anyway is damaged; a malformed one is named
    d = json.loads((bundle / "manifest.json").read_text())
    with pytest.raises(ArtifactError, match="rerank"):
        Manifest.from_dict(dict(d, rerank={"weights": [1.0]}))
    back = Manifest.from_dict(dict(d, rerank=_reranker().to_dict()))
    back.save(bundle)
    with pytest.raises(ArtifactError, match="re-ranker but no transition table"):
        Recommender.load(bundle, n_threads=1)
