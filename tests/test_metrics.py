"""genrec_lite.eval.metrics: hand-computed HR@K / NDCG@K, edge cases, top-k, the table."""

from __future__ import annotations

import math

import numpy as np
import pytest

from genrec_lite.errors import GenrecError, InvalidArgumentError
from genrec_lite.eval import (metric_names, metrics_table, rank_metrics, target_ranks,
                              top_k_from_scores)

KEYS = ["HR@1", "HR@3", "HR@5", "HR@10", "NDCG@1", "NDCG@3", "NDCG@5", "NDCG@10", "n_cases"]


def test_keys_exact_and_ordered():
    out = rank_metrics([[1, 2, 3]], [1])
    assert list(out) == KEYS
    assert metric_names() == KEYS[:-1]


def test_hand_computed_four_cases():
    ranked = [
        [7, 1, 2, 3, 4, 5, 6, 8, 9, 10],      # target 7 at rank 1
        [1, 2, 7, 3, 4, 5, 6, 8, 9, 10],      # rank 3
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],      # rank 7
        [1, 2, 3, 4, 5, 6, 8, 9, 10, 11],     # absent
    ]
    out = rank_metrics(ranked, [7, 7, 7, 7])
    assert out["n_cases"] == 4
    assert out["HR@1"] == pytest.approx(1 / 4)
    assert out["HR@3"] == pytest.approx(2 / 4)
    assert out["HR@5"] == pytest.approx(2 / 4)
    assert out["HR@10"] == pytest.approx(3 / 4)
    assert out["NDCG@1"] == pytest.approx(1 / 4)
    assert out["NDCG@3"] == pytest.approx((1 + 0.5) / 4)          # 1/log2(4) = 0.5
    assert out["NDCG@5"] == pytest.approx((1 + 0.5) / 4)
    assert out["NDCG@10"] == pytest.approx((1 + 0.5 + 1 / 3) / 4)  # 1/log2(8) = 1/3


def test_rank_two_ndcg():
    out = rank_metrics([[5, 9]], [9])
    assert out["HR@1"] == 0.0 and out["HR@3"] == 1.0
    assert out["NDCG@3"] == pytest.approx(1 / math.log2(3))


def test_short_lists_count_missing_slots_as_misses():
    out = rank_metrics([[3], [], [1, 2]], [3, 4, 2])
    assert out["HR@1"] == pytest.approx(1 / 3)
    assert out["HR@10"] == pytest.approx(2 / 3)
    assert out["NDCG@10"] == pytest.approx((1 + 1 / math.log2(3)) / 3)


def test_longer_lists_only_top_k_counts():
    ranked = [list(range(100, 120)) + [1]]
    out = rank_metrics(ranked, [1])
    assert out["HR@10"] == 0.0 and out["NDCG@10"] == 0.0
    out = rank_metrics([list(range(100, 115))], [110], ks=(5, 20))
    assert list(out) == ["HR@5", "HR@20", "NDCG@5", "NDCG@20", "n_cases"]
    assert out["HR@5"] == 0.0 and out["HR@20"] == 1.0
    assert out["NDCG@20"] == pytest.approx(1 / math.log2(12))


def test_dense_array_matches_lists():
    rng = np.random.default_rng(0)
    ranked = np.stack([rng.permutation(50)[:10] for _ in range(200)])
    targets = rng.integers(0, 50, size=200)
    dense = rank_metrics(ranked, targets)
    lists = rank_metrics([list(map(int, r)) for r in ranked], list(map(int, targets)))
    assert dense == pytest.approx(lists)
    np.testing.assert_array_equal(target_ranks(ranked, targets),
                                  target_ranks(ranked.tolist(), targets.tolist()))


def test_numpy_rows_in_a_list():
    out = rank_metrics([np.array([4, 5]), np.array([6], dtype=np.int32)], np.array([5, 6]))
    assert out["HR@1"] == 0.5 and out["HR@3"] == 1.0


def test_duplicates_are_an_error_by_default():
    with pytest.raises(InvalidArgumentError, match="item 2 more than once"):
        rank_metrics([[1, 2, 3, 2]], [3])
    with pytest.raises(InvalidArgumentError, match="ranked list 1 lists item 4"):
        rank_metrics(np.array([[1, 2, 3], [4, 5, 4]]), [1, 4])
    # a duplicate beyond the cut-off is still a bug upstream
    with pytest.raises(GenrecError):
        rank_metrics([list(range(20)) + [0]], [0])


def test_duplicates_first_keeps_first_occurrence_and_closes_the_gap():
    out = rank_metrics([[1, 1, 1, 2]], [2], duplicates="first")
    assert out["HR@1"] == 0.0 and out["HR@3"] == 1.0
    assert out["NDCG@3"] == pytest.approx(1 / math.log2(3))       # rank 2 after the dedupe
    dense = rank_metrics(np.array([[1, 1, 1, 2]]), [2], duplicates="first")
    assert dense == out
    with pytest.raises(InvalidArgumentError, match="duplicates must be one of"):
        rank_metrics([[1]], [1], duplicates="drop")


@pytest.mark.parametrize("ranked, targets, match", [
    ([[1], [2]], [1], "one ranked list per target"),
    ([], [], "no cases"),
    ([[1.5]], [1], "integer item id"),
    ([[1]], [1.5], "integer item ids"),
    ([[True]], [1], "integer item id"),
    ([[1]], [[1]], "1-D"),
    (["abc"], [1], "sequence of item ids"),
    ([np.array([1.0])], [1], "dtype"),
    (np.array([[1.0, 2.0]]), [1], "dtype"),
])
def test_bad_inputs(ranked, targets, match):
    with pytest.raises(InvalidArgumentError, match=match):
        rank_metrics(ranked, targets)


@pytest.mark.parametrize("ks", [(), (0,), (-1, 3), (2.5,), [True]])
def test_bad_ks(ks):
    with pytest.raises(InvalidArgumentError, match="ks|K"):
        rank_metrics([[1]], [1], ks=ks)


def test_errors_are_value_errors():
    with pytest.raises(ValueError):
        rank_metrics([[1]], [1, 2])


# ------------------------------------------------------------------ top_k_from_scores


def test_top_k_orders_best_first():
    s = np.array([[0.1, 0.9, 0.5, 0.7], [3.0, 2.0, 1.0, 0.0]])
    np.testing.assert_array_equal(top_k_from_scores(s, 3), [[1, 3, 2], [0, 1, 2]])


def test_top_k_ties_go_to_lower_index():
    s = np.array([[1.0, 2.0, 2.0, 2.0, 0.0, 2.0]])
    np.testing.assert_array_equal(top_k_from_scores(s, 2), [[1, 2]])
    np.testing.assert_array_equal(top_k_from_scores(s, 5), [[1, 2, 3, 5, 0]])
    z = np.zeros((3, 1000))
    np.testing.assert_array_equal(top_k_from_scores(z, 4), np.tile(np.arange(4), (3, 1)))


def test_top_k_matches_stable_argsort_on_random_ties():
    rng = np.random.default_rng(1)
    s = rng.integers(0, 5, size=(50, 300)).astype(np.float32)
    want = np.argsort(-s.astype(np.float64), axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(top_k_from_scores(s, 10), want)
    ints = rng.integers(0, 3, size=(5, 20))
    np.testing.assert_array_equal(top_k_from_scores(ints, 20),
                                  np.argsort(-ints, axis=1, kind="stable"))


def test_top_k_exclude_and_clip():
    s = np.array([[5.0, 4.0, 3.0, 2.0], [1.0, 2.0, 3.0, 4.0]])
    out = top_k_from_scores(s, 2, exclude=[[0], []])
    np.testing.assert_array_equal(out, [[1, 2], [3, 2]])
    # excluded columns only appear when nothing else is left
    np.testing.assert_array_equal(top_k_from_scores(s, 10, exclude=[[0, 1], [3]]),
                                  [[2, 3, 0, 1], [2, 1, 0, 3]])
    # the input is not modified
    assert s[0, 0] == 5.0


@pytest.mark.parametrize("kwargs, match", [
    (dict(scores=np.zeros(3), k=1), "2-D"),
    (dict(scores=np.zeros((2, 3)), k=0), "positive int"),
    (dict(scores=np.array([[0.0, np.nan]]), k=1), "NaN"),
    (dict(scores=np.zeros((2, 3)), k=1, exclude=[[0]]), "one collection"),
    (dict(scores=np.zeros((1, 3)), k=1, exclude=[[3]]), "outside"),
])
def test_top_k_bad_inputs(kwargs, match):
    with pytest.raises(InvalidArgumentError, match=match):
        top_k_from_scores(**kwargs)


def test_top_k_then_metrics_end_to_end():
    scores = np.array([[0.0, 0.3, 0.2, 0.9], [0.5, 0.1, 0.4, 0.0]])
    ranked = top_k_from_scores(scores, 10)
    out = rank_metrics(ranked, [1, 2])                 # ranks 2 and 2
    assert out["HR@1"] == 0.0 and out["HR@3"] == 1.0
    assert out["NDCG@10"] == pytest.approx(1 / math.log2(3))


# ------------------------------------------------------------------ metrics_table


def test_metrics_table_renders_markdown():
    rows = {
        "Popularity": rank_metrics([[1, 2]], [2]),
        "SASRec (published)": {"HR@3": 0.079, "NDCG@3": 0.07},
    }
    text = metrics_table(rows)
    lines = text.splitlines()
    assert lines[0] == ("| model | HR@1 | HR@3 | HR@5 | HR@10 | NDCG@1 | NDCG@3 | NDCG@5 | "
                        "NDCG@10 | n_cases |")
    assert lines[1] == "|" + "---|" * 10
    assert lines[2].startswith("| Popularity | 0.0000 | 1.0000 |")
    assert lines[2].endswith("| 1 |")
    assert lines[3] == ("| SASRec (published) | - | 0.0790 | - | - | - | 0.0700 | - | - | - |")


def test_metrics_table_leaves_evaluation_time_out_unless_asked():
    row = dict(rank_metrics([[1, 2]], [2]), seconds=3.5)
    assert "seconds" not in metrics_table({"m": row}).splitlines()[0]
    assert metrics_table({"m": row}, columns=["HR@1", "seconds"]).splitlines()[2] == \
        "| m | 0.0000 | 3.5000 |"


def test_metrics_table_columns_and_digits():
    text = metrics_table({"a|b": {"HR@10": 0.123456, "extra": "x"}}, columns=["HR@10", "extra"],
                         digits=2, name_header="run")
    assert text.splitlines() == ["| run | HR@10 | extra |", "|---|---|---|",
                                 "| a\\|b | 0.12 | x |"]
    with pytest.raises(InvalidArgumentError):
        metrics_table({})


def test_metrics_module_does_not_import_torch():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "python"
    code = ("import sys; sys.path.insert(0, %r); import genrec_lite.eval; "
            "print('torch' in sys.modules)" % str(root))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_segment_metrics_scores_every_case_and_each_segment():
    from genrec_lite.eval import rank_metrics, segment_metrics

    ranked = [[1, 2, 3], [4, 5, 6], [7, 8, 9], [1, 4, 7]]
    targets = [2, 9, 5, 1]
    mask = np.array([True, False, True, False])
    out = segment_metrics(ranked, targets, {"some": mask, "none": np.zeros(4, bool)})
    assert set(out) == {"all", "some"}  # an empty segment is left out
    assert out["all"] == rank_metrics(ranked, targets)
    assert out["some"] == rank_metrics([ranked[0], ranked[2]], [2, 5])


def test_first_place_counts_lists_that_open_with_the_newest_item():
    from genrec_lite.eval.metrics import first_place

    # case 0: opens with the newest item, a repeat (hit); case 1: opens with it, no repeat (miss);
    # case 2: opens elsewhere, hit; case 3: empty history, empty list; case 4: a repeat missed
    ranked = [[5, 1], [7, 2], [3, 9], [], [4, 8]]
    newest = [5, 7, 6, -1, 8]
    targets = [5, 2, 3, 1, 8]
    f = first_place(ranked, newest, targets)
    assert f["share_first_is_last"] == pytest.approx(2 / 5)
    assert f["HR@1_first_is_last"] == pytest.approx(1 / 2)
    assert f["HR@1_otherwise"] == pytest.approx(1 / 3)
    assert f["repeat_cases"] == 2 and f["HR@1_repeat_cases"] == pytest.approx(1 / 2)
    none = first_place([[1]], [2], [3])
    assert none["HR@1_first_is_last"] is None and none["HR@1_repeat_cases"] is None
    with pytest.raises(InvalidArgumentError, match="one of each per case"):
        first_place([[1]], [2, 3], [3])
