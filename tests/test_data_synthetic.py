"""The built-in synthetic data set: deterministic, realistic enough, and learnable."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pytest

from genrec_lite.data import Dataset, leave_one_out, make_synthetic, resolve_dataset
from genrec_lite.errors import InvalidArgumentError


def test_defaults(synthetic_dataset):
    ds = synthetic_dataset
    assert ds.name == "synthetic"
    assert len(ds.catalog) == 600 and ds.interactions.n_users == 1000
    assert 10 <= len(ds.interactions) / 1000 <= 14  # about 12 interactions a user
    assert ds.catalog.fields == ("title", "brand", "description", "categories", "price")
    assert len(set(ds.catalog.titles)) == 600  # titles are distinct
    assert ds.profiles is not None and len(ds.profiles) == 1000
    assert ds.profiles.fields == ("age_band", "occupation", "account_type")
    assert ds.valid_cases is None and ds.test_cases is None
    seqs = ds.interactions.sequences()
    assert min(len(s) for s in seqs.values()) >= 5
    assert np.all(np.diff(ds.interactions.timestamps) >= 0)  # the log is in time order
    assert ds.interactions.n_items > 0.9 * len(ds.catalog)
    rec = ds.catalog.record(int(ds.catalog.item_ids[0]))
    assert rec["title"].startswith(rec["brand"] + " ")
    assert rec["categories"].startswith("Industrial & Scientific > ")
    assert float(rec["price"]) > 0


def test_deterministic():
    a = make_synthetic(n_items=120, n_users=150, seed=3)
    b = make_synthetic(n_items=120, n_users=150, seed=3)
    c = make_synthetic(n_items=120, n_users=150, seed=4)
    assert a == b
    assert a.catalog.to_records() == b.catalog.to_records()
    assert a != c
    assert a.catalog.titles != c.catalog.titles
    assert not np.array_equal(a.interactions.item_ids, c.interactions.item_ids)


def test_sizes_and_arguments():
    tiny = make_synthetic(n_items=10, n_users=5, seed=1)
    assert len(tiny.catalog) == 10 and tiny.interactions.n_users == 5
    with pytest.raises(InvalidArgumentError):
        make_synthetic(n_items=0)
    with pytest.raises(InvalidArgumentError):
        make_synthetic(p_complement=0.9, p_repeat=0.2)


def _popularity_vs_markov(ds: Dataset, k: int = 10) -> tuple[float, float]:
    """HR@k on the leave-one-out test cases: popularity vs a first-order item-to-item model
    (counts of training transitions, filled up with popular items)."""
    split = leave_one_out(ds.interactions, max_len=20)
    pop: Counter = Counter()
    trans: dict[int, Counter] = defaultdict(Counter)
    for seq in split.train.values():
        s = seq.tolist()
        pop.update(s)
        for a, b in zip(s, s[1:]):
            trans[a][b] += 1
    top = [i for i, _ in pop.most_common(k)]
    hit_pop = hit_markov = 0
    for case in split.test:
        hit_pop += case.target in top
        ranked = [i for i, _ in trans[case.history[-1]].most_common(k)]
        ranked += [i for i in top if i not in ranked][:k - len(ranked)]
        hit_markov += case.target in ranked
    return hit_pop / len(split.test), hit_markov / len(split.test)


def test_learnable(synthetic_dataset):
    pop, markov = _popularity_vs_markov(synthetic_dataset)
    # measured with the defaults: popularity 0.11, first-order Markov 0.30
    assert 0.03 < pop < 0.2
    assert markov > 0.2 and markov > 2 * pop


def test_profiles_predict_tastes(synthetic_dataset):
    ds = synthetic_dataset
    cats = ds.catalog.field("categories")
    cat_of = {int(i): c.split(" > ")[1] for i, c in zip(ds.catalog.item_ids.tolist(), cats)}
    share: dict[str, Counter] = defaultdict(Counter)
    for user, seq in ds.interactions.sequences().items():
        occ = ds.profiles.get(user)["occupation"]
        share[occ].update(cat_of[i] for i in seq.tolist())
    lab = share["lab technician"]
    assert lab["Lab Equipment"] > 0.5 * sum(lab.values())
    elec = share["electrician"]
    assert elec["Electrical"] > 0.4 * sum(elec.values())
    assert elec["Lab Equipment"] < 0.1 * sum(elec.values())


def test_resolve_dataset(tmp_path):
    ds = resolve_dataset("synthetic", n_items=50, n_users=20, seed=2)
    assert len(ds.catalog) == 50
    assert resolve_dataset(ds) is ds
    folder = ds.save(tmp_path / "syn")
    back = resolve_dataset(str(folder))
    assert back == ds and back.name == "syn"
    with pytest.raises(InvalidArgumentError):
        resolve_dataset(str(folder), seed=1)
    with pytest.raises(InvalidArgumentError):
        resolve_dataset(42)  # type: ignore[arg-type]
