"""The shared sorted-id lookup (genrec_lite/_sorted.py)."""

import numpy as np

from genrec_lite._sorted import find_sorted


def test_find_sorted_positions_and_hits():
    ids = np.array([3, 7, 7, 10, 42], dtype=np.int64)
    at, found = find_sorted(ids, [7, 1, 42, 43, 10, 8])
    assert found.tolist() == [True, False, True, False, True, False]
    assert ids[at[found]].tolist() == [7, 42, 10]
    assert at[found].tolist() == [1, 4, 3]          # the first of equal ids
    assert (0 <= at).all() and (at < len(ids)).all()  # absent ids: still a valid index
    brute = [q in set(ids.tolist()) for q in range(-2, 50)]
    assert find_sorted(ids, range(-2, 50))[1].tolist() == brute


def test_find_sorted_empty_inputs():
    at, found = find_sorted(np.zeros(0, np.int64), [1, 2])
    assert at.tolist() == [0, 0] and found.tolist() == [False, False]
    at, found = find_sorted(np.array([1, 2]), [])
    assert at.shape == found.shape == (0,)
