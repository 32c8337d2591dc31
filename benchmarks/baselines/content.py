"""Content kNN baseline: rank the catalog by the cosine of item-text embeddings to the last history
item.

It needs no interactions at all, so it reaches items never seen in training (cold start) as
easily as any other: the reference a cold-start mechanism must beat. The vectors are given (one
row per catalog item, e.g. all-MiniLM-L6-v2 embeddings of title + brand); ``fit`` ignores the
training sequences. An empty history gets the catalog order. ``exclude_history`` pushes the
history's own items behind all others (the last item is always its own nearest neighbour): better
on targets the user never had, worse on repeat purchases.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from genrec_lite.errors import GenrecError, InvalidArgumentError
from genrec_lite.eval import top_k_from_scores


class ContentKNN:
    name = "Content kNN"

    def __init__(self, vectors: np.ndarray, *, exclude_history: bool = False) -> None:
        v = np.asarray(vectors, dtype=np.float64)
        if v.ndim != 2 or not np.isfinite(v).all():
            raise InvalidArgumentError(
                f"vectors must be a finite 2-D (n_items, dim) array, got shape {v.shape}")
        norms = np.linalg.norm(v, axis=1, keepdims=True)
        self.vectors = v / np.where(norms > 0, norms, 1.0)
        self.index = None
        self.exclude_history = bool(exclude_history)
        if self.exclude_history:
            self.name = "Content kNN (history excluded)"

    def fit(self, train: Mapping[str, np.ndarray], item_ids: Sequence[int] | np.ndarray
            ) -> "ContentKNN":
        from . import ItemIndex

        self.index = ItemIndex(item_ids)
        if len(self.index) != len(self.vectors):
            raise InvalidArgumentError(f"{len(self.index)} catalog items but {len(self.vectors)} "
                                       "vectors; expected one vector per item, in catalog order")
        return self

    def scores(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        """(len(histories), n_items) cosine of every item to each history's last item."""
        if self.index is None:
            raise GenrecError("ContentKNN: call fit() before scores()")
        out = np.zeros((len(histories), len(self.index)))
        rows = [i for i, h in enumerate(histories) if len(h)]
        if rows:
            last = self.index.index([histories[i][-1] for i in rows])
            out[rows] = self.vectors[last] @ self.vectors.T
        return out

    def recommend(self, histories: Sequence[Sequence[int]], k: int = 10) -> np.ndarray:
        """(len(histories), k) item ids, best first."""
        if not len(histories):
            return np.zeros((0, k), np.int64)
        exclude = ([self.index.index(list(h)) for h in histories] if self.exclude_history
                   else None)
        return self.index.ids[top_k_from_scores(self.scores(histories), k, exclude)]
