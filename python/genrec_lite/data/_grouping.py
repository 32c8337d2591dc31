"""Rows grouped by user and ordered by time, with memory that does not grow past the output.

A log of 10^7 rows sorted with ``np.lexsort`` needs several 8-byte temporaries per row on top
of the result. Users here are dense codes ``0..n_groups-1``, so a counting sort places every row
directly: a chunk of rows at a time, each row goes to its user's next free slot (file order
within a user). A log in time order (the usual case) is then already in time order inside each
user; only the users whose rows are not get sorted, by time and then file order.
"""

from __future__ import annotations

import numpy as np

CHUNK = 1 << 20  # rows handled at once: the temporaries are a few arrays of this length


def index_dtype(n: int) -> type:
    """int32 row indices while they fit (half the memory), else int64."""
    return np.int32 if n < 2 ** 31 else np.int64


def permutation(rng: np.random.Generator, n: int) -> np.ndarray:
    """``rng.permutation(n)`` (the same order, the same draws) in :func:`index_dtype`: shuffled
    in place, without the int64 array of an epoch's length that ``permutation`` makes."""
    out = np.arange(n, dtype=index_dtype(n))
    rng.shuffle(out)
    return out


def group_order(codes: np.ndarray, n_groups: int, times: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """``(order, offsets)``: ``order`` lists the row indices grouped by code (ascending), each
    group by time, ties in row order; ``order[offsets[g]:offsets[g + 1]]`` are group ``g``'s rows.
    The same order as ``np.lexsort((np.arange(n), times, codes))``."""
    n = len(codes)
    counts = np.bincount(codes, minlength=n_groups) if n else np.zeros(n_groups, np.int64)
    offsets = np.zeros(n_groups + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    order = np.empty(n, dtype=index_dtype(n))
    free = offsets[:-1].copy()  # each group's next free slot
    for lo in range(0, n, CHUNK):
        c = codes[lo:lo + CHUNK]
        by_code = np.argsort(c, kind="stable")
        cs = c[by_code]
        starts = np.flatnonzero(np.r_[True, cs[1:] != cs[:-1]])
        runs = np.diff(np.r_[starts, len(cs)])
        rank = np.arange(len(cs)) - np.repeat(starts, runs)
        order[free[cs] + rank] = by_code + lo
        free[cs[starts]] += runs
    _sort_groups_by_time(order, offsets, times)
    return order, offsets


def _sort_groups_by_time(order: np.ndarray, offsets: np.ndarray, times: np.ndarray) -> None:
    """Sort, in place, the groups whose rows are not in time order (stable: ties keep row order).
    Only those groups' rows are gathered, so a log in time order costs one pass."""
    n = len(order)
    bad_groups = []
    for lo in range(1, n, CHUNK):
        hi = min(n, lo + CHUNK)
        t = times[order[lo - 1:hi]]
        back = np.flatnonzero(t[1:] < t[:-1]) + lo  # positions that go back in time
        if len(back):
            groups = np.searchsorted(offsets, back, side="right") - 1
            inside = back != offsets[groups]  # a group's first row may be earlier than the last
            bad_groups.append(np.unique(groups[inside]))
    if not bad_groups:
        return
    groups = np.unique(np.concatenate(bad_groups))
    if not len(groups):
        return
    sizes = offsets[groups + 1] - offsets[groups]
    pos = np.repeat(offsets[groups] - np.cumsum(np.r_[0, sizes[:-1]]), sizes) + np.arange(
        int(sizes.sum()))
    rows = order[pos]
    owner = np.repeat(np.arange(len(groups)), sizes)
    order[pos] = rows[np.lexsort((rows, times[rows], owner))]  # ties: row order
