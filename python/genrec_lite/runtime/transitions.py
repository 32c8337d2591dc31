"""Item-to-item transitions of the training log, to order the items the model answers.

The compact model generalises to transitions it never saw, but recalls the ones it did poorly:
on amazon-industrial's test cases whose transition (last item -> target) occurs in training, its
first item was the target in 20% of cases, a transition-count table's in 43% (docs/quality.md).
So a served answer can be re-ordered by how often the request's last item was followed by each
answered item in the training sequences:

    score'(i) = score(i) + weight * log(1 + count(last item -> i))

Only the order of the k items answered moves (the beam, the cold-start mixture and the filters
decide which items they are), so HR@k is unchanged and the top of the list gains. Cold items
(never a next item in training, or added since) have no counts by construction: they keep the
places the cold-start mixture gave them, and the warm items are re-ordered among the others (an
earlier version that ranked them all together pushed new items down: on amazon's natural cold
cases NDCG@10 fell from 0.0950 to 0.0740). `fit` chooses
the weight on validation (0: off, the default of a bundle without one).

The table keeps, for every item followed by another somewhere in the training sequences, its
successors and their counts: the `max_successors` most frequent ones, which bounds the bundle's
size for large catalogs. Numpy only: the serving side imports nothing from training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .._sorted import find_sorted
from ..errors import ArtifactError, InvalidArgumentError

TRANSITIONS = "transitions.npz"
MAX_SUCCESSORS = 64
WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0)   # the grid fit chooses from on validation


def checked_weight(weight) -> float | None:
    """`weight` as a transition weight: None or 0 (off), else a finite number > 0 (returned as a
    float); InvalidArgumentError naming the value otherwise."""
    if weight is None:
        return None
    if isinstance(weight, bool) or not isinstance(weight, (int, float, np.integer, np.floating)) \
            or not math.isfinite(weight) or weight < 0:
        raise InvalidArgumentError(f"transition weight {weight!r}; expected a finite number >= 0 "
                                   "(0 or None: off)")
    return float(weight) or None


@dataclass(frozen=True, eq=False)
class Transitions:
    """Successor counts: the successors of ``sources[s]`` are ``targets[offsets[s]:offsets[s+1]]``
    (sorted by id) with their ``counts``."""

    sources: np.ndarray   # sorted unique item ids, int64
    offsets: np.ndarray   # int64, len(sources) + 1, from 0 to len(targets)
    targets: np.ndarray   # int64
    counts: np.ndarray    # int64, >= 1

    def __post_init__(self):
        s, o, t, c = self.sources, self.offsets, self.targets, self.counts
        problem = None
        if any(a.ndim != 1 for a in (s, o, t, c)):
            problem = "arrays that are not one-dimensional"
        elif len(o) != len(s) + 1 or len(t) != len(c) or (len(o) and (o[0] != 0 or o[-1] != len(t))):
            problem = (f"{len(s)} sources, {len(o)} offsets, {len(t)} targets and {len(c)} counts "
                       "(expected sources + 1 offsets from 0 to the number of targets)")
        elif np.any(np.diff(o) < 1) or np.any(np.diff(s) <= 0) or np.any(c < 1):
            problem = "unsorted sources, an empty row or a count < 1"
        if problem:
            raise InvalidArgumentError(f"a transition table with {problem}")

    def __len__(self) -> int:
        """The number of (item, successor) pairs kept."""
        return len(self.targets)

    @classmethod
    def from_sequences(cls, sequences: Iterable[Sequence[int]],
                       max_successors: int = MAX_SUCCESSORS) -> "Transitions":
        """The table of consecutive pairs in `sequences` (item ids, oldest first), each item's
        `max_successors` most frequent successors kept (ties: the smaller id)."""
        if isinstance(max_successors, bool) or not isinstance(max_successors, (int, np.integer)) \
                or max_successors < 1:
            raise InvalidArgumentError(f"max_successors={max_successors!r}; expected an integer >= 1")
        src, dst = [], []
        for seq in sequences:
            a = np.asarray(seq, dtype=np.int64)
            if len(a) > 1:
                src.append(a[:-1])
                dst.append(a[1:])
        if not src:
            empty = np.zeros(0, dtype=np.int64)
            return cls(empty, np.zeros(1, dtype=np.int64), empty, empty)
        pairs = np.stack([np.concatenate(src), np.concatenate(dst)], axis=1)
        pairs, counts = np.unique(pairs, axis=0, return_counts=True)   # sorted by (src, dst)
        # per source: most frequent first, ties by id; then keep the first max_successors
        order = np.lexsort((pairs[:, 1], -counts, pairs[:, 0]))
        pairs, counts = pairs[order], counts[order]
        sources, first = np.unique(pairs[:, 0], return_index=True)
        rank = np.arange(len(pairs)) - np.repeat(first, np.diff(np.append(first, len(pairs))))
        keep = rank < max_successors
        pairs, counts = pairs[keep], counts[keep]
        order = np.lexsort((pairs[:, 1], pairs[:, 0]))   # back to (src, dst) order for lookups
        pairs, counts = pairs[order], counts[order].astype(np.int64)
        sizes = np.bincount(np.searchsorted(sources, pairs[:, 0]), minlength=len(sources))
        return cls(sources.astype(np.int64), np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
                   pairs[:, 1].copy(), counts)

    def successors(self, item: int) -> tuple[np.ndarray, np.ndarray]:
        """(the kept successors of `item`, sorted by id; their counts), both int64 views (empty
        when the item was never followed by another)."""
        s = int(np.searchsorted(self.sources, item))
        if s == len(self.sources) or self.sources[s] != item:
            return self.targets[:0], self.counts[:0]
        lo, hi = int(self.offsets[s]), int(self.offsets[s + 1])
        return self.targets[lo:hi], self.counts[lo:hi]

    def counts_of(self, last: int, items: Sequence[int]) -> np.ndarray:
        """count(last -> item) for each of `items` (0 where the pair never occurred or was not
        kept), int64."""
        out = np.zeros(len(items), dtype=np.int64)
        targets, counts = self.successors(last)
        if not len(targets) or not len(items):
            return out
        at, found = find_sorted(targets, items)
        out[found] = counts[at[found]]
        return out

    def save(self, path: str | Path) -> None:
        with open(path, "wb") as f:  # np.savez would add .npz to a name without it
            np.savez(f, sources=self.sources, offsets=self.offsets, targets=self.targets,
                     counts=self.counts)

    @classmethod
    def load(cls, path: str | Path) -> "Transitions":
        """ArtifactError naming the file when it is not a transition table."""
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: np.asarray(z[k]) for k in ("sources", "offsets", "targets", "counts")}
        except (OSError, ValueError, KeyError, EOFError) as exc:
            raise ArtifactError(f"{path} is not a transition table ({exc!r})") from exc
        if any(a.dtype.kind not in "iu" for a in arrays.values()):
            raise ArtifactError(f"{path} holds non-integer arrays; expected a transition table")
        try:
            return cls(**{k: a.astype(np.int64) for k, a in arrays.items()})
        except InvalidArgumentError as exc:
            raise ArtifactError(f"{path} is damaged: {exc}") from exc


def reorder(items: Sequence[int], scores: Sequence[float], logprobs: Sequence[float],
            counts: np.ndarray, weight: float, keep: np.ndarray | None = None
            ) -> tuple[list[int], list[float], list[float]]:
    """One answer re-ordered by score + weight * log1p(count), ties in the answer's order; the
    scores returned are the re-ordering ones, the log-probabilities the model's. `keep`: a mask
    of positions whose items stay where they are (the cold items: placed by the cold-start
    mixture, never a successor in training), the others re-ordered among the remaining places."""
    if not len(items) or not np.any(counts):
        return list(items), list(scores), list(logprobs)
    new = np.asarray(scores, dtype=np.float64) + weight * np.log1p(counts)
    places = np.arange(len(items)) if keep is None else np.flatnonzero(~np.asarray(keep, bool))
    order = np.arange(len(items))
    order[places] = places[np.argsort(-new[places], kind="stable")]
    return ([int(items[i]) for i in order], [float(new[i]) for i in order],
            [float(logprobs[i]) for i in order])


def ordered(answer: tuple, last: int | None, table: "Transitions | None",
            weight: float | None, cold_ids: np.ndarray) -> tuple:
    """One answer (items, scores, logprobs) as the Recommender serves it at `weight`: re-ordered
    by the table's counts from `last` (the newest history item the bundle knows; None: none),
    the items in the sorted `cold_ids` kept in their places; unchanged when off."""
    if weight is None or table is None or last is None:
        return answer
    items = answer[0]
    return reorder(*answer, table.counts_of(last, items), weight, cold_positions(items, cold_ids))


def cold_positions(items: Sequence[int], cold_ids: np.ndarray) -> np.ndarray | None:
    """The mask of `items` that are in the sorted `cold_ids` (None when there are none)."""
    if not len(cold_ids) or not len(items):
        return None
    mask = find_sorted(cold_ids, items)[1]
    return mask if mask.any() else None
