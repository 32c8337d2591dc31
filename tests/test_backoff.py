"""sid/backoff.py: the back-off mixture that ranks cold items under their first-level prefix."""

from __future__ import annotations

import math

import numpy as np
import pytest

from genrec_lite.errors import InvalidArgumentError
from genrec_lite.sid.backoff import BackoffConfig, backoff_scores, merge_backoff


def test_backoff_score_is_the_mixture_term():
    lp = np.array([[np.log(0.5), np.log(0.3), np.log(0.2), -np.inf]])  # code 3: not allowed
    first = np.array([0, 2, 3])
    aff = np.array([[1.0, 0.5, 1.0]])
    cfg = BackoffConfig(weight=0.1, temperature=0.25, prefix_power=1.0)
    got = backoff_scores(lp, first, aff, cfg)
    want = [math.log(0.1 * 0.5), math.log(0.1 * 0.2) - 0.5 / 0.25, -math.inf]
    np.testing.assert_allclose(got[0, :2], want[:2])
    assert got[0, 2] == -math.inf
    # prefix_power 0: content alone, but a code the trie lacks stays unreachable
    got0 = backoff_scores(lp, first, aff, BackoffConfig(weight=0.1, temperature=0.25,
                                                         prefix_power=0.0))
    np.testing.assert_allclose(got0[0, :2], [math.log(0.1), math.log(0.1) - 2.0])
    assert got0[0, 2] == -math.inf


def test_merge_keeps_the_beam_order_and_inserts_cold_items_by_mass():
    items, scores = [5, 6, 7], [math.log(0.4), math.log(0.2), math.log(0.1)]
    cold = np.array([100, 101])
    extra = np.log(np.array([0.3, 0.05]))
    got, sc = merge_backoff(items, scores, cold, extra, k=4)
    assert got == [5, 100, 6, 7]
    np.testing.assert_allclose(np.exp(sc), [0.4, 0.3, 0.2, 0.1])
    # no cold mass: the beam's answer, cut to k
    assert merge_backoff(items, scores, cold, np.full(2, -np.inf), k=2)[0] == [5, 6]


def test_merge_adds_the_backoff_to_a_cold_item_the_beam_holds():
    # item 100 is cold and in the beam with 0.05; its back-off 0.3 is not in the top 1 of the
    # cold items, yet beam + back-off = 0.35 puts it first.
    items, scores = [5, 100], [math.log(0.34), math.log(0.05)]
    cold = np.array([101, 100])
    extra = np.log(np.array([0.32, 0.30]))
    got, sc = merge_backoff(items, scores, cold, extra, k=1)
    assert got == [100]
    assert np.exp(sc[0]) == pytest.approx(0.35)


@pytest.mark.parametrize("field,value", [("weight", 0.0), ("weight", float("nan")),
                                         ("temperature", 0.0), ("prefix_power", -1.0)])
def test_bad_settings_are_refused(field, value):
    cfg = BackoffConfig(**{field: value})
    with pytest.raises(InvalidArgumentError, match=field.split("_")[0]):
        backoff_scores(np.zeros((1, 2)), np.array([0]), np.zeros((1, 1)), cfg)


def test_bad_shapes_are_refused():
    cfg = BackoffConfig()
    with pytest.raises(InvalidArgumentError, match="expected"):
        backoff_scores(np.zeros((2, 4)), np.array([0, 1]), np.zeros((2, 3)), cfg)
    with pytest.raises(InvalidArgumentError, match="outside 0..3"):
        backoff_scores(np.zeros((1, 4)), np.array([4]), np.zeros((1, 1)), cfg)
    with pytest.raises(InvalidArgumentError, match="one score per cold item"):
        merge_backoff([1], [0.0], np.array([2, 3]), np.zeros(1), k=1)
    with pytest.raises(InvalidArgumentError, match="k=0"):
        merge_backoff([1], [0.0], np.array([2]), np.zeros(1), k=0)
