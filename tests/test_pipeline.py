"""genrec_lite.pipeline: the steps the CLI and benchmarks/quality.py share. The steps that train
are exercised through the CLI (test_train.py, conftest's tiny model); these are the cheap ones."""

from __future__ import annotations

import math

import numpy as np
import pytest

from genrec_lite import pipeline
from genrec_lite.data import Case, make_split, resolve_split, save_cases


def test_hold_out_launch_removes_a_seeded_tenth(synthetic_dataset):
    kept, launched = pipeline.hold_out_launch(synthetic_dataset)
    n = len(synthetic_dataset.catalog)
    assert len(launched) == n // 10 and list(launched) == sorted(launched)
    assert not np.isin(kept.catalog.item_ids, launched).any()
    assert not np.isin(kept.interactions.item_ids, launched).any()
    again = pipeline.hold_out_launch(synthetic_dataset)[1]
    assert np.array_equal(launched, again)


def test_test_cases_prefers_the_file_then_the_folder_then_the_split(synthetic_dataset, tmp_path):
    ds = synthetic_dataset
    assert not ds.test_cases  # the synthetic data set has no case files: the split's test cases
    from_split = make_split(ds, "leave-one-out", 5).test
    assert pipeline.test_cases(ds, "leave-one-out", 5) == from_split
    assert pipeline.test_cases(ds, resolve_split("leave-one-out", ds), 5, limit=3) == from_split[:3]
    path = save_cases([Case("u", [1, 2], 3)], tmp_path / "cases.jsonl")
    assert [c.target for c in pipeline.test_cases(ds, "leave-one-out", 5, cases_file=path)] == [3]


def test_recorded_log_applies_only_to_the_training_data():
    recorded = {"time_unit": "ms", "kcore": 5}
    assert pipeline.recorded_log("auto", None, None, recorded) == ("ms", 5)
    assert pipeline.recorded_log("s", 2, None, recorded) == ("s", 2)
    assert pipeline.recorded_log("auto", None, "other-folder", recorded) == ("auto", None)


def test_popularity_counts_the_log_before_a_temporal_test_period(synthetic_dataset):
    ds = synthetic_dataset
    cases = make_split(ds, "leave-one-out", 10).test
    m = pipeline.popularity_baseline(ds, resolve_split("leave-one-out", ds), cases)
    counts = np.bincount(ds.interactions.item_ids)
    top = np.argsort(-counts, kind="stable")[:10]
    hits = np.mean([c.target in top for c in cases])
    assert m["HR@10"] == pytest.approx(hits) and m["n_cases"] == len(cases)
    plan = resolve_split("temporal:0.9", ds)
    before = pipeline.popularity_baseline(ds, plan, cases)
    counts = np.bincount(ds.interactions.between(before=plan.test_from).item_ids)
    top = np.argsort(-counts, kind="stable")[:10]
    assert before["HR@10"] == pytest.approx(np.mean([c.target in top for c in cases]))


def test_hit_rate_where():
    cases = [Case("a", [1], 5), Case("b", [1], 6), Case("c", [1], 7)]
    ranked = [[5, 9], [9, 8], [7]]
    assert pipeline.hit_rate_where(ranked, cases, [True, True, False]) == 0.5
    assert math.isnan(pipeline.hit_rate_where(ranked, cases, [False] * 3))


def test_collab_sids_need_a_split():
    from genrec_lite.errors import InvalidArgumentError
    from genrec_lite.sid.build import SidConfig

    with pytest.raises(InvalidArgumentError, match="needs a data set and a split"):
        pipeline.build_sids(None, SidConfig(collab_weight=1.0))
