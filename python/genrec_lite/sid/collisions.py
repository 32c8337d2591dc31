"""Collision handling and the statistics reported about a SID table.

Two items whose embeddings quantise to the same codes collide. Mode `none` keeps them under one SID
(the SID names several items); mode `extra_level` appends one level that numbers the items sharing
base codes, 0, 1, 2… in catalog order (TIGER's scheme), so every SID names one item.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from ..errors import InvalidArgumentError

MODES = ("none", "extra_level")


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise InvalidArgumentError(f"collisions mode {mode!r} is not known; expected one of {MODES}")
    return mode


def extra_level(base_codes: np.ndarray, existing: np.ndarray | None = None,
                start: np.ndarray | None = None) -> np.ndarray:
    """The appended level for `base_codes` (n, L): each row's rank among rows with equal codes.

    `existing` (m, L+1) are full codes already handed out (cold start): a new row continues the
    numbering of its group after the largest index in use there. `start` (n,) says that number
    for each row directly (e.g. SidTrie.next_codes), so the existing rows need not be scanned.
    """
    base_codes = np.asarray(base_codes, dtype=np.int32)
    n = len(base_codes)
    if n == 0:
        return np.zeros(0, dtype=np.int32)
    # rank of each row within its group of equal rows, in row order (vectorised: a Python loop
    # over 10^6 rows takes seconds)
    _, group = np.unique(row_keys(base_codes.reshape(n, -1)), axis=0, return_inverse=True)
    group = group.reshape(-1)
    order = np.argsort(group, kind="stable")
    first = np.r_[True, group[order][1:] != group[order][:-1]]
    run_start = np.maximum.accumulate(np.where(first, np.arange(n), 0))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - run_start
    if start is None and existing is not None and len(existing):
        existing = np.asarray(existing, dtype=np.int32)
        keys = np.concatenate([existing[:, :-1], base_codes.reshape(n, -1)])
        _, g = np.unique(row_keys(keys), axis=0, return_inverse=True)
        g = g.reshape(-1)
        top = np.full(g.max() + 1, 0, dtype=np.int64)
        np.maximum.at(top, g[:len(existing)], existing[:, -1].astype(np.int64) + 1)
        start = top[g[len(existing):]]
    if start is not None:
        rank += np.asarray(start, dtype=np.int64).reshape(-1)
    return rank.astype(np.int32)


def row_keys(codes: np.ndarray) -> np.ndarray:
    """One int64 per row that orders and compares like the rows (non-negative codes), when the
    columns' bit widths fit in 63 bits; else the rows themselves. np.unique(axis=0) sorts rows
    as structured values, several times slower than sorting integers."""
    codes = np.asarray(codes)
    if codes.ndim != 2 or len(codes) == 0:
        return codes
    bits = [max(int(c.max()), 1).bit_length() for c in codes.T]
    if sum(bits) > 63 or int(codes.min()) < 0:
        return codes
    key = np.zeros(len(codes), dtype=np.int64)
    for col, b in zip(codes.T, bits):
        key = (key << b) | col.astype(np.int64)
    return key


def sid_report(codes: np.ndarray, *, levels: int, codebook_size: int, mode: str) -> dict:
    """Collision rate, codebook utilisation per level and the items-per-SID distribution.

    collision_rate = (items - distinct SIDs) / items, on the full SIDs (after the extra level, if
    any); base_collision_rate is the same on the L quantiser codes alone.
    """
    codes = np.asarray(codes, dtype=np.int32)
    n = len(codes)
    base = codes[:, :levels]

    def group_sizes(arr: np.ndarray) -> np.ndarray:
        if len(arr) == 0:
            return np.zeros(0, dtype=np.int64)
        _, counts = np.unique(row_keys(arr), axis=0, return_counts=True)
        return counts

    full_sizes = group_sizes(codes)
    base_sizes = group_sizes(base)
    utilization, perplexity = [], []
    for level in range(levels):
        counts = np.bincount(base[:, level], minlength=codebook_size).astype(np.float64)
        utilization.append(float((counts > 0).sum() / codebook_size))
        p = counts[counts > 0] / max(n, 1)
        perplexity.append(float(np.exp(-(p * np.log(p)).sum())) if n else 0.0)
    hist = Counter(dict(zip(*(x.tolist() for x in np.unique(full_sizes, return_counts=True)))))
    base_hist = Counter(dict(zip(*(x.tolist() for x in np.unique(base_sizes, return_counts=True)))))
    report = {
        "n_items": int(n),
        "n_sids": int(len(full_sizes)),
        "levels": int(levels),
        "codebook_size": int(codebook_size),
        "collisions": mode,
        "collision_rate": float((n - len(full_sizes)) / n) if n else 0.0,
        "items_sharing_sid": float(full_sizes[full_sizes > 1].sum() / n) if n else 0.0,
        "max_items_per_sid": int(full_sizes.max()) if n else 0,
        "items_per_sid": {str(k): hist[k] for k in sorted(hist)},
        "base_collision_rate": float((n - len(base_sizes)) / n) if n else 0.0,
        "base_items_per_sid": {str(k): base_hist[k] for k in sorted(base_hist)},
        "utilization": utilization,
        "perplexity": perplexity,
    }
    if codes.shape[1] > levels:
        report["extra_level_max"] = int(codes[:, levels].max()) if n else 0
    return report
