"""runtime/transitions.py: the training log's successor counts, the re-ordering of served
answers by them, the bundle and manifest plumbing, and the choice of the weight on validation."""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pytest

from genrec_lite.errors import ArtifactError, InvalidArgumentError
from genrec_lite.runtime.manifest import Manifest, TransitionFacts
from genrec_lite.runtime.transitions import Transitions, checked_weight, reorder


def _pairs(seqs) -> Counter:
    return Counter((int(a), int(b)) for s in seqs for a, b in zip(s, s[1:]))


def test_the_table_counts_every_consecutive_pair():
    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, 30, size=rng.integers(0, 12)) for _ in range(200)]
    t = Transitions.from_sequences(seqs, max_successors=1000)
    want = _pairs(seqs)
    assert len(t) == len(want)
    for (a, b), n in want.items():
        assert t.counts_of(a, [b])[0] == n
    # an item never followed by another, and a pair that never occurred, count 0
    assert t.counts_of(10_000, [1, 2]).tolist() == [0, 0]
    absent = next(b for b in range(30) if (0, b) not in want)
    assert t.counts_of(0, [absent]).tolist() == [0]


def test_the_table_keeps_each_items_most_frequent_successors():
    seqs = [[1, 5]] * 3 + [[1, 4]] * 3 + [[1, 9]] * 2 + [[1, 2]] + [[7, 1]]
    t = Transitions.from_sequences(seqs, max_successors=2)
    # 5 and 4 (3 each) are kept, 9 (2) and 2 (1) are not; ties do not depend on input order
    assert t.counts_of(1, [2, 4, 5, 9]).tolist() == [0, 3, 3, 0]
    assert t.counts_of(7, [1]).tolist() == [1]
    with pytest.raises(InvalidArgumentError, match="max_successors=0"):
        Transitions.from_sequences(seqs, max_successors=0)


def test_an_empty_log_gives_an_empty_table(tmp_path):
    t = Transitions.from_sequences([[3], []])
    assert len(t) == 0 and t.counts_of(3, [3]).tolist() == [0]
    t.save(tmp_path / "t.npz")
    assert len(Transitions.load(tmp_path / "t.npz")) == 0


def test_the_table_round_trips_and_a_damaged_file_is_named(tmp_path):
    t = Transitions.from_sequences([[1, 2, 3, 1, 2]])
    t.save(tmp_path / "t.npz")
    back = Transitions.load(tmp_path / "t.npz")
    assert all(np.array_equal(getattr(t, k), getattr(back, k))
               for k in ("sources", "offsets", "targets", "counts"))
    (tmp_path / "bad.npz").write_bytes(b"not a table")
    with pytest.raises(ArtifactError, match="bad.npz"):
        Transitions.load(tmp_path / "bad.npz")
    with open(tmp_path / "torn.npz", "wb") as f:  # offsets that do not fit the targets
        np.savez(f, sources=np.array([1]), offsets=np.array([0, 5]), targets=np.array([2]),
                 counts=np.array([1]))
    with pytest.raises(ArtifactError, match="torn.npz is damaged"):
        Transitions.load(tmp_path / "torn.npz")


@pytest.mark.parametrize("bad", [-1, math.nan, math.inf, True, "2"])
def test_a_bad_weight_is_refused_with_its_value(bad):
    with pytest.raises(InvalidArgumentError, match="transition weight"):
        checked_weight(bad)


def test_zero_or_none_is_off():
    assert checked_weight(None) is None and checked_weight(0) is None
    assert checked_weight(2) == 2.0


def test_reorder_adds_the_weighted_log_count_and_keeps_ties_in_order():
    items, scores, lps = [10, 11, 12, 13], [-1.0, -1.5, -2.0, -2.0], [-3.0, -3.5, -4.0, -4.0]
    counts = np.array([0, 0, 3, 0])
    got_items, got_scores, got_lps = reorder(items, scores, lps, counts, 1.0)
    new = -2.0 + math.log(4)
    assert got_items == [12, 10, 11, 13]          # -0.61 > -1 > -1.5 > -2
    assert got_scores == pytest.approx([new, -1.0, -1.5, -2.0])
    assert got_lps == [-4.0, -3.0, -3.5, -4.0]     # the model's, moved with their items
    assert reorder(items, scores, lps, np.zeros(4, dtype=np.int64), 5.0) == (items, scores, lps)


def test_the_manifest_keeps_the_table_and_weight_and_refuses_a_bad_weight(tmp_path):
    facts = TransitionFacts(file="transitions.npz", pairs=12, weight=2.0)
    d = {"format": "genrec-lite.bundle", "format_version": 1, "max_history": 2,
         "prompts": {}, "model": {}, "files": {"x": {"bytes": 1, "sha256": "0"}},
         "sid": {"levels": 3, "level_sizes": [4, 4, 4], "collisions": "none", "n_items": 5,
                 "input_dim": 8},
         "tokenizer": {"bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 2, "vocab_size": 9}}
    base = Manifest.from_dict(d)
    assert base.transitions == TransitionFacts() and "transitions" not in base.to_dict()
    m = Manifest.from_dict(dict(d, transitions=facts.to_dict()))
    assert m.transitions == facts
    assert Manifest.from_dict(json.loads(json.dumps(m.to_dict()))).transitions == facts
    with pytest.raises(ArtifactError, match="transitions.weight"):
        Manifest.from_dict(dict(d, transitions=dict(facts.to_dict(), weight=-1)))


# --- the served bundle ------------------------------------------------------------------------
def _training_sequences(ckpt):
    from genrec_lite.data import make_synthetic, resolve_split

    meta = json.loads((ckpt / "genrec.json").read_text())
    ds = make_synthetic()
    train = meta["train"]
    return resolve_split(train["split"], ds).apply(ds, train["max_history"]).train, ds


def test_training_records_the_splits_transitions_and_export_ships_them(runtime_checkpoint,
                                                                       runtime_bundle):
    from genrec_lite.runtime.bundle import Bundle

    seqs, _ = _training_sequences(runtime_checkpoint)
    table = Transitions.load(runtime_checkpoint / "transitions.npz")
    want = Transitions.from_sequences(seqs.values())
    assert len(table) == len(want) > 0
    assert np.array_equal(table.targets, want.targets) and np.array_equal(table.counts, want.counts)
    m = Bundle.open(runtime_bundle).manifest
    assert m.transitions == TransitionFacts(file="transitions.npz", pairs=len(table), weight=None)


def test_a_weight_reorders_the_served_items_exactly_as_offline(runtime_checkpoint, runtime_bundle,
                                                               tmp_path):
    import shutil

    from genrec_lite.eval.transitions import choose_transition_weight, last_known, reordered, \
        answers_unordered
    from genrec_lite.export.bundle import set_transition_weight
    from genrec_lite.runtime import Recommender

    bundle = tmp_path / "b"
    shutil.copytree(runtime_bundle, bundle)
    seqs, ds = _training_sequences(runtime_checkpoint)
    cases = resolve_cases(seqs)
    with Recommender.load(bundle, n_threads=1) as rec:
        assert rec.transition_weight is None and rec.transitions is not None
        off = answers_unordered(rec, cases)
        rec.set_transition_weight(4.0)
        on = [[r.item_id for r in recs] for recs in
              rec.recommend_batch([{"history": list(c.history), "k": 10} for c in cases])]
        assert rec.transition_weight == 4.0
        # the same items, in the order the offline re-ordering gives them
        assert on == reordered(off, last_known(rec, cases), rec.transitions, 4.0,
                               rec.catalog.state.cold)
        assert all(sorted(a) == sorted(b[0]) for a, b in zip(on, off))
        assert sum(a != b[0] for a, b in zip(on, off)) > 0  # the check is not vacuous
        weight, rows = choose_transition_weight(rec, cases, weights=(0, 1, 4))
        assert [r["weight"] for r in rows] == [0.0, 1.0, 4.0]
        assert len({r["HR@10"] for r in rows}) == 1       # only the order moves
        best = max(rows, key=lambda r: r["NDCG@10"])
        assert weight == (None if best["weight"] == 0 else best["weight"])
        assert rec.transition_weight == 4.0               # the trial put it back
        rec.set_transition_weight(None)
    set_transition_weight(bundle, 4.0)
    with Recommender.load(bundle, n_threads=1) as rec:
        assert rec.transition_weight == 4.0
        assert [[r.item_id for r in recs] for recs in rec.recommend_batch(
            [{"history": list(c.history), "k": 10} for c in cases])] == on


def resolve_cases(seqs, n: int = 60):
    """Next-item cases from the training sequences (their last transition held out)."""
    from genrec_lite.data.splits import Case

    out = []
    for user, seq in list(seqs.items())[:n]:
        if len(seq) >= 3:
            out.append(Case(str(user), tuple(int(i) for i in seq[:-1]), int(seq[-1])))
    return out


def test_a_weight_needs_a_table(runtime_bundle, tmp_path):
    from conftest import bundle_without_transitions
    from genrec_lite.export.bundle import set_transition_weight
    from genrec_lite.runtime import Recommender

    bundle = bundle_without_transitions(runtime_bundle, tmp_path / "old")
    with Recommender.load(bundle, n_threads=1) as rec:
        assert rec.transitions is None and rec.transition_weight is None
        with pytest.raises(InvalidArgumentError, match="no transition table"):
            rec.set_transition_weight(1.0)
        rec.set_transition_weight(None)
    with pytest.raises(InvalidArgumentError, match="no transition table"):
        set_transition_weight(bundle, 1.0)


def test_reorder_leaves_the_kept_places_alone():
    from genrec_lite.runtime.transitions import cold_positions

    items, scores, lps = [10, 20, 11, 12], [-1.0, -1.2, -1.5, -2.0], [-1.0, -1.2, -1.5, -2.0]
    cold = np.array([20, 99], dtype=np.int64)
    keep = cold_positions(items, cold)
    assert keep.tolist() == [False, True, False, False]
    counts = np.array([0, 0, 0, 50])          # the last warm item has the evidence
    got, got_scores, _ = reorder(items, scores, lps, counts, 1.0, keep)
    assert got == [12, 20, 10, 11]            # 20 (cold) stays second; the warm ones re-ordered
    assert got_scores[1] == -1.2 and got_scores[0] == pytest.approx(-2.0 + math.log(51))
    # without the mask the cold item would have been pushed down
    assert reorder(items, scores, lps, counts, 1.0)[0] == [12, 10, 20, 11]
    assert cold_positions(items, np.zeros(0, dtype=np.int64)) is None
    assert cold_positions([1, 2], cold) is None


def test_export_writes_a_weight_and_refuses_a_bad_one_before_writing(runtime_checkpoint, tmp_path):
    pytest.importorskip("llama_cpp")
    from genrec_lite.cli import main
    from genrec_lite.runtime.bundle import Bundle

    out = tmp_path / "b"
    assert main(["export", "--model", str(runtime_checkpoint), "--out", str(out), "--quant", "f32",
                 "--transition-weight", "-1", "--quiet"]) != 0
    assert not out.exists()                     # nothing half-written
    assert main(["export", "--model", str(runtime_checkpoint), "--out", str(out), "--quant", "f32",
                 "--transition-weight", "2", "--quiet"]) == 0
    assert Bundle.open(out).manifest.transitions.weight == 2.0


def test_export_refuses_a_weight_for_a_checkpoint_without_counts(runtime_checkpoint, tmp_path):
    import shutil

    from genrec_lite.export.bundle import export_bundle

    old = tmp_path / "old-ckpt"
    shutil.copytree(runtime_checkpoint, old)
    (old / "transitions.npz").unlink()          # trained before the counts were recorded
    with pytest.raises(InvalidArgumentError, match="no transitions.npz"):
        export_bundle(old, tmp_path / "b", transition_weight=1.0)
    assert not (tmp_path / "b").exists()
