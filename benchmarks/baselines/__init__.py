"""Classical next-item baselines for the quality benchmarks: popularity, first-order Markov
(item transitions) and SASRec.

They share one small interface, so ``run.py`` and the tests treat them alike::

    model = Popularity().fit(train, item_ids)        # train: user -> item ids, oldest first
    ranked = model.recommend(histories, k=10)        # (n_cases, k) array of item ids, best first
    metrics = evaluate(model, cases)                 # rank_metrics over Case objects

``item_ids`` is the full catalog: every model ranks the whole catalog (full ranking, items never
seen in training included) and does not filter the case's history (repeat purchases are real
targets: 2.8% of amazon-industrial's test targets are in their history; the published
MiniOneRec numbers do not filter either).

Import them from the repository root (``benchmarks`` is a package):
``from benchmarks.baselines import Popularity, Markov, SASRec``. SASRec needs torch;
popularity and Markov need numpy only (SASRec is imported lazily).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import numpy as np

from genrec_lite.errors import InvalidArgumentError, UnknownItemError
from genrec_lite.eval import DEFAULT_KS, rank_metrics

if TYPE_CHECKING:  # pragma: no cover
    from genrec_lite.data import Case


class ItemIndex:
    """Item ids <-> dense indices ``0..n_items-1`` (in the order the ids are given)."""

    def __init__(self, item_ids: Sequence[int] | np.ndarray):
        ids = np.asarray(item_ids, dtype=np.int64).ravel()
        if ids.size == 0:
            raise InvalidArgumentError("the catalog (item_ids) is empty")
        self.ids = ids
        self._order = np.argsort(ids, kind="stable")
        self._sorted = ids[self._order]
        if np.any(self._sorted[1:] == self._sorted[:-1]):
            dup = int(self._sorted[1:][self._sorted[1:] == self._sorted[:-1]][0])
            raise InvalidArgumentError(f"item_ids lists item {dup} more than once")

    def __len__(self) -> int:
        return int(self.ids.size)

    def index(self, ids: Iterable[int] | np.ndarray) -> np.ndarray:
        """Dense indices of ``ids``; an id outside the catalog is an UnknownItemError."""
        arr = np.asarray(ids if isinstance(ids, np.ndarray) else list(ids), dtype=np.int64)
        pos = np.searchsorted(self._sorted, arr)
        pos_c = np.minimum(pos, len(self._sorted) - 1)
        bad = self._sorted[pos_c] != arr
        if bad.any():
            v = int(arr[bad][0])
            raise UnknownItemError(f"item id {v} is not in the catalog", value=v)
        return self._order[pos_c]


def evaluate(model: Any, cases: Sequence["Case"], ks: Iterable[int] = DEFAULT_KS, *,
             exclude_history: bool = False) -> dict:
    """``rank_metrics`` of ``model.recommend`` over ``cases`` (each: history -> target).

    ``exclude_history``: each list drops the items of its case's whole history (the model
    ranks deeper to fill it), as a server that never re-shows a consumed item would. On a
    data set without repeats (ml-100k: a user rates a film once) that alone is a large gain,
    and a re-ranker that learns it on validation gets it too; this row is its like-for-like
    baseline."""
    ks = tuple(ks)
    k = max(ks)
    histories = [c.history for c in cases]
    if not exclude_history:
        return rank_metrics(model.recommend(histories, k=k), [c.target for c in cases], ks)
    ranked = []
    for s in range(0, len(cases), 256):  # the depth a batch needs: k + its longest history
        part = histories[s:s + 256]
        deep = model.recommend(part, k=k + max(len(set(h)) for h in part))
        for row, h in zip(deep, part):
            seen = set(int(i) for i in h)
            ranked.append([int(i) for i in row if int(i) not in seen][:k])
    return rank_metrics(ranked, [c.target for c in cases], ks)


def sequences_as_indices(train: Mapping[str, np.ndarray], index: ItemIndex) -> list[np.ndarray]:
    """The training sequences as dense-index arrays (users in the mapping's order)."""
    return [index.index(np.asarray(seq)) for seq in train.values()]


from .markov import Markov  # noqa: E402
from .popularity import Popularity  # noqa: E402


def __getattr__(name: str):  # SASRec pulls in torch: import it only when asked for
    if name in ("SASRec", "SASRecConfig"):
        from . import sasrec

        return getattr(sasrec, name)
    raise AttributeError(name)


__all__ = ["ItemIndex", "Markov", "Popularity", "SASRec", "SASRecConfig", "evaluate",
           "sequences_as_indices"]
