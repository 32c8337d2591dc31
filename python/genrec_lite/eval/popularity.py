"""The popularity baseline: every case gets the same list, the most frequent items of a log."""

from __future__ import annotations

import numpy as np

from .metrics import rank_metrics


def popularity_metrics(interactions, cases, k: int = 10) -> dict:
    """HR@K / NDCG@K of ranking every case's next item by its count in ``interactions`` (ties:
    the smaller item id first)."""
    ids = interactions.item_ids
    counts = np.bincount(ids, minlength=int(ids.max()) + 1)
    top = np.argsort(-counts, kind="stable")[:k].tolist()
    return rank_metrics([top] * len(cases), [c.target for c in cases])
