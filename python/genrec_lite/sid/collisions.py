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


def extra_level(base_codes: np.ndarray, existing: np.ndarray | None = None) -> np.ndarray:
    """The appended level for `base_codes` (n, L): each row's rank among rows with equal codes.

    `existing` (m, L+1) are full codes already handed out (cold start): a new row continues the
    numbering of its group after the largest index in use there.
    """
    base_codes = np.asarray(base_codes, dtype=np.int32)
    next_index: dict[bytes, int] = {}
    if existing is not None and len(existing):
        existing = np.asarray(existing, dtype=np.int32)
        for row in existing:
            key = row[:-1].tobytes()
            next_index[key] = max(next_index.get(key, 0), int(row[-1]) + 1)
    out = np.empty(len(base_codes), dtype=np.int32)
    for i, row in enumerate(base_codes):
        key = row.tobytes()
        k = next_index.get(key, 0)
        out[i] = k
        next_index[key] = k + 1
    return out


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
        _, counts = np.unique(arr, axis=0, return_counts=True)
        return counts

    full_sizes = group_sizes(codes)
    base_sizes = group_sizes(base)
    utilization, perplexity = [], []
    for level in range(levels):
        counts = np.bincount(base[:, level], minlength=codebook_size).astype(np.float64)
        utilization.append(float((counts > 0).sum() / codebook_size))
        p = counts[counts > 0] / max(n, 1)
        perplexity.append(float(np.exp(-(p * np.log(p)).sum())) if n else 0.0)
    hist = Counter(int(s) for s in full_sizes)
    base_hist = Counter(int(s) for s in base_sizes)
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
