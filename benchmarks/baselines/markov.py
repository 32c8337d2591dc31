"""First-order Markov baseline: item-to-item transition counts from the training sequences.

For a case, the candidates are scored by ``count(last history item -> candidate)``: the number
of times, over all training sequences, that the candidate came right after that item. Ties
(including all the zero-count items) are broken by training popularity, then by catalog index,
so when the last item has fewer than K successors the top-K is filled with the most popular
items (the back-off). A history whose last item never occurs in training gets the popularity
ranking.

``self_transitions``: whether ``a -> a`` pairs (a user buying the same item twice in a row)
count. Counting them is the plain maximum-likelihood transition estimate (the standard one, and
the default); it lets the model predict repeat purchases, which are real targets on
amazon-industrial (5.8% of its training transitions are self-transitions, 2.7% of its test
targets repeat the last item). ``self_transitions=False`` drops those pairs, so the last item is
then ranked by popularity only. ``run.py`` picks between the two on validation.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from genrec_lite.errors import GenrecError, InvalidArgumentError
from genrec_lite.eval import top_k_from_scores


class Markov:
    def __init__(self, self_transitions: bool = True, batch_size: int = 1024) -> None:
        self.self_transitions = bool(self_transitions)
        self.batch_size = int(batch_size)
        self.name = "Markov" if self.self_transitions else "Markov (no self-transitions)"
        self._indptr: np.ndarray | None = None

    def fit(self, train: Mapping[str, np.ndarray], item_ids: Sequence[int] | np.ndarray
            ) -> "Markov":
        from . import ItemIndex, sequences_as_indices

        self.index = ItemIndex(item_ids)
        n = len(self.index)
        seqs = sequences_as_indices(train, self.index)
        flat = np.concatenate(seqs) if seqs else np.zeros(0, np.int64)
        self.popularity = np.bincount(flat, minlength=n).astype(np.int64)
        src = np.concatenate([s[:-1] for s in seqs]) if seqs else np.zeros(0, np.int64)
        dst = np.concatenate([s[1:] for s in seqs]) if seqs else np.zeros(0, np.int64)
        if not self.self_transitions:
            keep = src != dst
            src, dst = src[keep], dst[keep]
        # transition counts as CSR: row = previous item, column = next item
        pair, counts = np.unique(src * n + dst, return_counts=True)
        rows, self._cols = pair // n, pair % n
        self._vals = counts.astype(np.int64)
        self._indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))])
        self.n_transitions = int(src.size)
        return self

    def transition_counts(self, item_id: int) -> dict[int, int]:
        """``{next item id: count}`` after ``item_id`` in the training sequences."""
        i = int(self.index.index([item_id])[0])
        lo, hi = self._indptr[i], self._indptr[i + 1]
        return {int(self.index.ids[c]): int(v) for c, v in zip(self._cols[lo:hi],
                                                               self._vals[lo:hi])}

    def scores(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        """(n, n_items) float scores: transition count, plus popularity as a fraction below 1."""
        if self._indptr is None:
            raise GenrecError("Markov: call fit() before scores() or recommend()")
        n = len(self.index)
        tie = self.popularity / (self.popularity.max() + 1.0)   # in [0, 1): breaks ties only
        out = np.tile(tie, (len(histories), 1))
        for r, h in enumerate(histories):
            if len(h) == 0:
                continue
            last = int(self.index.index([h[-1]])[0])
            lo, hi = self._indptr[last], self._indptr[last + 1]
            out[r, self._cols[lo:hi]] += self._vals[lo:hi]
        assert out.shape[1] == n
        return out

    def recommend(self, histories: Sequence[Sequence[int]], k: int = 10) -> np.ndarray:
        """(len(histories), k) item ids, best first."""
        if k < 1:
            raise InvalidArgumentError(f"k must be positive, got {k}")
        parts = []
        for s in range(0, len(histories), self.batch_size):
            sc = self.scores(histories[s:s + self.batch_size])
            parts.append(self.index.ids[top_k_from_scores(sc, k)])
        if not parts:
            return np.zeros((0, min(k, len(self.index))), dtype=np.int64)
        return np.concatenate(parts)
