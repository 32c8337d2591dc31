"""Most-popular baseline: the same ranking for every case, by training interaction count.

Ties (items with the same count, e.g. the never-seen ones) go to the lower catalog index, so the
ranking is deterministic. Repeat interactions count each time.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from genrec_lite.errors import GenrecError
from genrec_lite.eval import top_k_from_scores


class Popularity:
    name = "Popularity"

    def __init__(self) -> None:
        self.counts: np.ndarray | None = None

    def fit(self, train: Mapping[str, np.ndarray], item_ids: Sequence[int] | np.ndarray
            ) -> "Popularity":
        from . import ItemIndex, sequences_as_indices

        self.index = ItemIndex(item_ids)
        seqs = sequences_as_indices(train, self.index)
        flat = np.concatenate(seqs) if seqs else np.zeros(0, np.int64)
        self.counts = np.bincount(flat, minlength=len(self.index)).astype(np.int64)
        self._top = top_k_from_scores(self.counts[None, :], len(self.index))[0]
        return self

    def recommend(self, histories: Sequence[Sequence[int]], k: int = 10) -> np.ndarray:
        """(len(histories), k) item ids, best first; the same row for every history."""
        if self.counts is None:
            raise GenrecError("Popularity: call fit() before recommend()")
        row = self.index.ids[self._top[:k]]
        return np.tile(row, (len(histories), 1))
