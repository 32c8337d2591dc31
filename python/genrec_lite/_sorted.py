"""Looking ids up in a sorted id array: numpy only, shared by the runtime, SIDs and evaluation."""

from __future__ import annotations

import numpy as np


def find_sorted(sorted_ids: np.ndarray, query) -> tuple[np.ndarray, np.ndarray]:
    """(each query id's position in the sorted `sorted_ids`, whether it is there). Where an id is
    absent its position is a valid index (clamped), so `sorted_ids[at]` never raises; an empty
    `sorted_ids` finds nothing (positions 0)."""
    q = np.asarray(query, dtype=np.int64)
    if not len(sorted_ids):
        return np.zeros(q.shape, np.int64), np.zeros(q.shape, bool)
    at = np.minimum(np.searchsorted(sorted_ids, q), len(sorted_ids) - 1)
    return at, sorted_ids[at] == q
