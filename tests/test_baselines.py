"""benchmarks/baselines: popularity, first-order Markov and SASRec (smoke + behaviour tests).

The baselines live in ``benchmarks/baselines`` (their home; not part of the package), imported
as the ``benchmarks`` package from the repository root (pytest's ``pythonpath``).
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.baselines import ItemIndex, Markov, Popularity, evaluate
from genrec_lite.data import leave_one_out, make_synthetic
from genrec_lite.errors import GenrecError, InvalidArgumentError, UnknownItemError

ITEMS = np.array([10, 20, 30, 40, 50])
TRAIN = {
    "u1": np.array([10, 20, 30]),
    "u2": np.array([10, 20, 20]),
    "u3": np.array([30, 10, 40]),
    "u4": np.array([20]),
}


@pytest.fixture(scope="module")
def synthetic_split():
    ds = make_synthetic()
    return ds, leave_one_out(ds.interactions)


# ------------------------------------------------------------------ shared helpers


def test_item_index_round_trip_and_errors():
    idx = ItemIndex([7, 3, 5])
    np.testing.assert_array_equal(idx.index([5, 7, 3]), [2, 0, 1])
    assert len(idx) == 3
    with pytest.raises(UnknownItemError, match="item id 4"):
        idx.index([3, 4])
    with pytest.raises(UnknownItemError, match="item id 9"):
        idx.index([9])
    with pytest.raises(InvalidArgumentError, match="item 3 more than once"):
        ItemIndex([3, 5, 3])


# ------------------------------------------------------------------ popularity


def test_popularity_hand_computed():
    m = Popularity().fit(TRAIN, ITEMS)
    # counts: 10 x3, 20 x4, 30 x2, 40 x1, 50 x0
    np.testing.assert_array_equal(m.counts, [3, 4, 2, 1, 0])
    out = m.recommend([(10,), (), (40, 30)], k=5)
    np.testing.assert_array_equal(out, np.tile([20, 10, 30, 40, 50], (3, 1)))
    assert m.recommend([(10,)], k=2).shape == (1, 2)


def test_evaluate_with_history_excluded_ranks_deeper_past_the_history():
    from genrec_lite.data import Case

    m = Popularity().fit(TRAIN, ITEMS)  # order 20, 10, 30, 40, 50 for every history
    cases = [Case("a", (20, 10, 20), 30), Case("b", (), 20), Case("c", (30,), 30)]
    plain = evaluate(m, cases, ks=(1, 2))
    assert plain["HR@1"] == pytest.approx(1 / 3) and plain["HR@2"] == pytest.approx(1 / 3)
    excluded = evaluate(m, cases, ks=(1, 2), exclude_history=True)
    # a: 30 moves to the top past its history; b: nothing to drop; c: its target is in its
    # history, so it can never be recommended
    assert excluded["HR@1"] == pytest.approx(2 / 3) and excluded["HR@2"] == pytest.approx(2 / 3)
    assert excluded["n_cases"] == 3


def test_popularity_ties_go_to_catalog_order():
    m = Popularity().fit({"u": np.array([30, 10])}, ITEMS)
    np.testing.assert_array_equal(m.recommend([()], k=5)[0], [10, 30, 20, 40, 50])


def test_unfitted_models_raise():
    with pytest.raises(GenrecError, match="fit"):
        Popularity().recommend([(1,)])
    with pytest.raises(GenrecError, match="fit"):
        Markov().recommend([(1,)])


# ------------------------------------------------------------------ Markov


def test_markov_counts_and_back_off():
    m = Markov().fit(TRAIN, ITEMS)
    assert m.transition_counts(10) == {20: 2, 40: 1}
    assert m.transition_counts(20) == {30: 1, 20: 1}
    assert m.transition_counts(50) == {}
    # after 10: 20 (2), 40 (1), then back-off by popularity: 10, 30, 50
    np.testing.assert_array_equal(m.recommend([(30, 10)], k=5)[0], [20, 40, 10, 30, 50])
    # after 20: 20 and 30 tie on count 1 -> the more popular 20 first; then 10, 40, 50
    np.testing.assert_array_equal(m.recommend([(20,)], k=5)[0], [20, 30, 10, 40, 50])
    # unseen last item and empty history: popularity
    pop = Popularity().fit(TRAIN, ITEMS).recommend([()], k=5)[0]
    np.testing.assert_array_equal(m.recommend([(50,), ()], k=5), np.tile(pop, (2, 1)))
    # only the last item matters (first order)
    np.testing.assert_array_equal(m.recommend([(40, 30, 10)], k=3),
                                  m.recommend([(10,)], k=3))


def test_markov_without_self_transitions():
    m = Markov(self_transitions=False).fit(TRAIN, ITEMS)
    assert m.transition_counts(20) == {30: 1}
    assert m.name == "Markov (no self-transitions)"
    np.testing.assert_array_equal(m.recommend([(20,)], k=3)[0], [30, 20, 10])


def test_markov_unknown_item_in_history():
    m = Markov().fit(TRAIN, ITEMS)
    with pytest.raises(UnknownItemError):
        m.recommend([(99,)])


def test_markov_batches_agree():
    ds = make_synthetic(n_items=80, n_users=60, seed=3)
    split = leave_one_out(ds.interactions)
    hist = [c.history for c in split.test]
    a = Markov().fit(split.train, ds.catalog.item_ids).recommend(hist, k=10)
    b = Markov(batch_size=7).fit(split.train, ds.catalog.item_ids).recommend(hist, k=10)
    np.testing.assert_array_equal(a, b)


def test_markov_beats_popularity_on_synthetic(synthetic_split):
    ds, split = synthetic_split
    pop = evaluate(Popularity().fit(split.train, ds.catalog.item_ids), split.test)
    mk = evaluate(Markov().fit(split.train, ds.catalog.item_ids), split.test)
    assert mk["n_cases"] == pop["n_cases"] == len(split.test)
    assert mk["NDCG@10"] > 1.5 * pop["NDCG@10"]
    assert mk["HR@10"] > pop["HR@10"] + 0.05


# ------------------------------------------------------------------ SASRec

torch = pytest.importorskip("torch")


def test_training_windows_cover_every_target_once():
    from benchmarks.baselines.sasrec import training_windows

    seqs = [np.arange(1, 13), np.array([5, 6]), np.array([7])]
    x, y = training_windows(seqs, max_len=5)
    assert x.shape == y.shape and x.shape[1] == 5
    targets = sorted(int(v) for v in y[y > 0])
    assert targets == sorted(list(range(2, 13)) + [6])
    # each input slot holds the item right before its target in the original sequence
    for xi, yi in zip(x, y):
        real = yi > 0
        np.testing.assert_array_equal(xi > 0, real)
        for a, b in zip(xi[real], yi[real]):
            assert b == a + 1 or (a, b) == (5, 6)
    # left padding: the most recent target is in the last slot
    assert y[0, -1] == 12


def test_sasrec_network_is_causal():
    from benchmarks.baselines.sasrec import SASRecConfig, SASRecNet

    torch.manual_seed(0)
    net = SASRecNet(20, SASRecConfig(hidden=16, max_len=6, n_heads=2)).eval()
    a = torch.tensor([[0, 0, 3, 4, 5, 6]])
    b = torch.tensor([[0, 0, 3, 4, 9, 11]])
    with torch.no_grad():
        ha, hb = net(a), net(b)
    assert torch.allclose(ha[:, :4], hb[:, :4], atol=1e-6)
    assert not torch.allclose(ha[:, 5], hb[:, 5])
    assert torch.isfinite(ha).all()
    # a fully padded row (empty history) is finite too
    with torch.no_grad():
        assert torch.isfinite(net(torch.zeros(1, 6, dtype=torch.long))).all()


def test_sasrec_config_validation():
    from benchmarks.baselines.sasrec import SASRecConfig

    with pytest.raises(InvalidArgumentError, match="divisible"):
        SASRecConfig(hidden=30, n_heads=4)
    with pytest.raises(InvalidArgumentError, match="loss"):
        SASRecConfig(loss="bpr")
    with pytest.raises(InvalidArgumentError, match="dropout"):
        SASRecConfig(dropout=1.0)


def _small_sasrec(**kw):
    from benchmarks.baselines import SASRec

    base = dict(hidden=32, max_len=10, lr=5e-3, batch_size=64, max_epochs=6, n_threads=1,
                seed=0)
    return SASRec(**{**base, **kw})


def test_sasrec_beats_popularity_on_synthetic(synthetic_split):
    ds, split = synthetic_split
    pop = evaluate(Popularity().fit(split.train, ds.catalog.item_ids), split.test)
    model = _small_sasrec().fit(split.train, ds.catalog.item_ids)
    sas = evaluate(model, split.test)
    assert model.best_epoch == 6 and len(model.history) == 6
    assert model.history[-1]["loss"] < model.history[0]["loss"]
    assert sas["NDCG@10"] > 1.5 * pop["NDCG@10"]
    ranked = model.recommend([c.history for c in split.test[:5]], k=10)
    assert ranked.shape == (5, 10)
    assert set(ranked.ravel().tolist()) <= set(ds.catalog.item_ids.tolist())


def test_sasrec_is_deterministic_and_early_stops():
    ds = make_synthetic(n_items=120, n_users=150, seed=1)
    split = leave_one_out(ds.interactions)
    hist = [c.history for c in split.test]
    runs = []
    for _ in range(2):
        m = _small_sasrec(hidden=16, max_epochs=4, patience=1).fit(
            split.train, ds.catalog.item_ids, split.valid)
        runs.append(m)
    np.testing.assert_array_equal(runs[0].scores(hist), runs[1].scores(hist))
    m = runs[0]
    assert 1 <= m.best_epoch <= len(m.history) <= 4
    assert m.best_valid["NDCG@10"] == max(h["valid_NDCG@10"] for h in m.history)
    assert m.evaluate(split.valid)["NDCG@10"] == pytest.approx(m.best_valid["NDCG@10"])


def test_sasrec_reads_a_history_without_the_items_it_never_trained_on():
    """An item of no training sequence (a launched one) has an embedding nothing trained: the
    history is read without it, so the scores are those of the rest of the history."""
    ds = make_synthetic(n_items=120, n_users=150, seed=1)
    split = leave_one_out(ds.interactions)
    hidden = set(ds.catalog.item_ids[:12].tolist())
    train = {u: np.array([i for i in s.tolist() if i not in hidden], dtype=np.int64)
             for u, s in split.train.items()}
    m = _small_sasrec(hidden=16, max_epochs=2).fit(train, ds.catalog.item_ids)
    hist = [c.history for c in split.test if hidden & set(c.history)][:5]
    assert hist
    kept = [[i for i in h if i not in hidden] for h in hist]
    np.testing.assert_allclose(m.scores(hist), m.scores(kept), rtol=1e-5, atol=1e-6)
    m.trained[:] = True   # read with them, the scores differ: the test can fail
    assert not np.allclose(m.scores(hist), m.scores(kept), rtol=1e-5, atol=1e-6)


def test_sasrec_bce_loss_trains():
    ds = make_synthetic(n_items=120, n_users=150, seed=1)
    split = leave_one_out(ds.interactions)
    m = _small_sasrec(hidden=16, max_epochs=2, loss="bce").fit(split.train,
                                                              ds.catalog.item_ids)
    assert np.isfinite([h["loss"] for h in m.history]).all()
    assert m.recommend([(), split.test[0].history], k=3).shape == (2, 3)


# ------------------------------------------------------------------ real data


def test_markov_reproduces_amazon_reference(amazon_industrial_dir):
    """README: a first-order transition model reaches HR@10 ~ 0.13 on the official test cases
    when trained on everything before 2,000,000."""
    from genrec_lite.data import Dataset, temporal_split

    ds = Dataset.load(amazon_industrial_dir)
    split = temporal_split(ds.interactions, 2_000_000, 10)
    assert split.test == ds.test_cases
    out = evaluate(Markov().fit(split.train, ds.catalog.item_ids), ds.test_cases)
    assert out["n_cases"] == 4533
    assert out["HR@10"] == pytest.approx(0.1332, abs=0.002)


@pytest.mark.slow
def test_run_script_quick(amazon_industrial_dir, tmp_path):
    import json

    from benchmarks.baselines.run import main

    out = tmp_path / "b.json"
    assert main(["--quick", "--datasets", "amazon-industrial", "--data",
                 str(amazon_industrial_dir.parent), "--out", str(out)]) == 0
    rep = json.loads(out.read_text())
    res = rep["datasets"]["amazon-industrial"]
    assert res["n_test_cases"] == 4533 and res["n_valid_cases"] == 4532
    assert set(res["models"]) == {"Popularity", "Markov", "Markov (no self-transitions)",
                                  "SASRec"}
    assert res["models"]["SASRec"]["test"]["n_cases"] == 4533


# ------------------------------------------------------------------ content kNN


def test_content_knn_ranks_by_cosine_to_the_last_item_and_reaches_untrained_items():
    from benchmarks.baselines.content import ContentKNN

    vec = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9], [-1, 0]], dtype=float)
    m = ContentKNN(vec * 3).fit(TRAIN, ITEMS)   # the scale of a vector does not matter
    got = m.recommend([[30, 10], [40], []], k=3)
    assert got[0].tolist() == [10, 20, 40]     # 50 never occurs in TRAIN: still ranked
    assert got[1].tolist() == [40, 30, 20]
    assert got[2].tolist() == [10, 20, 30]     # no history: catalog order
    ex = ContentKNN(vec, exclude_history=True).fit(TRAIN, ITEMS).recommend([[30, 10], [40]], k=3)
    assert ex[0].tolist() == [20, 40, 50]       # 30 and 10 go behind every other item
    assert ex[1].tolist() == [30, 20, 10]


def test_content_knn_refuses_bad_vectors():
    from benchmarks.baselines.content import ContentKNN

    with pytest.raises(InvalidArgumentError, match="one vector per item"):
        ContentKNN(np.ones((3, 2))).fit(TRAIN, ITEMS)
    with pytest.raises(InvalidArgumentError, match="finite 2-D"):
        ContentKNN(np.array([[np.nan, 1.0]]))
    with pytest.raises(GenrecError, match="fit"):
        ContentKNN(np.ones((5, 2))).scores([[10]])
