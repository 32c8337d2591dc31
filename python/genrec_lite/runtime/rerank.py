"""A second stage over the search's answer: a linear re-ranker fitted on validation.

The beam ranks items by the model's probability alone. What else is known at serving time says
more about the top of the list: how often the request's recent items were followed by a
candidate in the training log (the compact model recalls seen transitions poorly:
docs/quality.md), how popular it is, how close its content is to what was just seen, and how
many SID views' beams reached it. So the answer is re-ranked over a wider pool of candidates:

- every item the views' beams reached (the whole beam of each view, not only the k answered);
- the `successors` most frequent successors of the newest history item in the training log
  that the beam missed (eligible ones only: active, allowed, not denied, not cold);

each scored by ``w . (x - mean) / scale`` over the features ``FEATURES`` (below). Cold items
(never a next item in training, or added since: runtime/cold_start.py) keep the places the
cold-start mixture gave them in the top k; the warm candidates, best first, fill the other
places. `fit` fits the weights on its validation cases (eval/rerank.py: a conditional logit, the
L2 penalty chosen by two-fold cross-validation on NDCG@10, off unless it beats the model's own
order there) and writes them into the bundle's manifest.

Serving code: numpy only, nothing from training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..errors import InvalidArgumentError
from .transitions import Transitions

# one row per candidate; the order is the weights' order, and a bundle's list must equal it
FEATURES = (
    "logprob",           # the fused score: log of the mean over views of the SID probability
    "in_beam",           # 1 when some view's beam reached the item, 0 for an added successor
    "beam_rank",         # log(1 + its rank in the fused beam); ABSENT_RANK when not in it
    "count_1",           # log(1 + count(newest history item -> item)) in the training log
    "share_1",           # that count over all the newest item's kept successor counts
    "count_2",           # the same from the second newest history item
    "count_3",           # and from the third
    "popularity",        # log(1 + the item's count as a successor in the table)
    "in_history",        # 1 when the item is in the request's history
    "is_last",           # 1 when it is the newest history item
    "views",             # how many views' beams reached it
    "logprob_first",     # the first view's score for it (FLOOR when its beam missed it)
    "cos_last",          # cosine of its content vector to the newest history item's
    "cos_recent",        # its largest cosine to the newest DEPTH history items
    "cos_recent_sq",     # cos_recent squared (near-duplicates apart from related items)
    "near",              # max(0, cos_recent - 0.9) * 10
    "duplicate",         # 1 when cos_recent > 0.97 (another size, colour or pack of one seen)
)
FLOOR = math.log(1e-5)   # the log-probability of an item no beam reached
ABSENT_RANK = 50
DEPTH = 3                # history items the counts and the cosines look back over
SUCCESSORS = 20          # default number of successors of the newest item added to the pool


@dataclass(frozen=True, eq=False)
class Reranker:
    """The re-ranking model: weights over standardised FEATURES, and the pool's size."""

    weights: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    successors: int = SUCCESSORS

    def __post_init__(self):
        n = len(FEATURES)
        arrays = {}
        for name in ("weights", "mean", "scale"):
            a = np.asarray(getattr(self, name), dtype=np.float64)
            if a.shape != (n,) or not np.all(np.isfinite(a)):
                raise InvalidArgumentError(
                    f"re-ranker {name} of shape {a.shape}; expected {n} finite numbers, one per "
                    f"feature of {FEATURES}")
            arrays[name] = a
        if not np.all(arrays["scale"] > 0):
            raise InvalidArgumentError(f"re-ranker scale {arrays['scale'].tolist()}; expected "
                                       "every value > 0")
        s = self.successors
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or not 0 <= s <= 1000:
            raise InvalidArgumentError(f"re-ranker successors={s!r}; expected an integer from 0 "
                                       "to 1000")
        for name, a in arrays.items():
            a.setflags(write=False)
            object.__setattr__(self, name, a)
        object.__setattr__(self, "successors", int(s))

    def scores(self, X: np.ndarray) -> np.ndarray:
        """Each candidate row's score (rows of FEATURES, unstandardised)."""
        return ((X - self.mean) / self.scale) @ self.weights

    def to_dict(self) -> dict:
        return {"features": list(FEATURES), "weights": self.weights.tolist(),
                "mean": self.mean.tolist(), "scale": self.scale.tolist(),
                "successors": self.successors}

    @classmethod
    def from_dict(cls, d) -> "Reranker":
        """InvalidArgumentError naming what is wrong (another feature list included: a bundle
        written by a version with other features cannot be served by this one's)."""
        if not isinstance(d, dict):
            raise InvalidArgumentError(f"re-ranker settings {d!r:.60}; expected an object")
        unknown = set(d) - {"features", "weights", "mean", "scale", "successors"}
        if unknown:
            raise InvalidArgumentError(f"re-ranker settings with unknown keys {sorted(unknown)}")
        if list(d.get("features", ())) != list(FEATURES):
            raise InvalidArgumentError(f"re-ranker features {d.get('features')!r:.200}; this "
                                       f"version computes {list(FEATURES)}")
        try:
            return cls(np.asarray(d["weights"], float), np.asarray(d["mean"], float),
                       np.asarray(d["scale"], float), d.get("successors", SUCCESSORS))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidArgumentError(f"re-ranker settings are incomplete or not numbers "
                                       f"({exc!r})") from exc


def popularity(table: Transitions | None, n_items: int = 0) -> np.ndarray:
    """Each item id's count as a successor in the table (index = item id; ids past the end: 0)."""
    if table is None or not len(table):
        return np.zeros(n_items, dtype=np.float64)
    return np.bincount(table.targets, weights=table.counts.astype(np.float64),
                       minlength=n_items)


@dataclass
class Pool:
    """One request's candidates and their feature rows."""

    items: list[int]
    X: np.ndarray          # (len(items), len(FEATURES))
    logprobs: list[float]  # the fused model log-probability (-inf for an added successor)


def pool(fused: tuple, views: Sequence[tuple], history: Sequence[int], table: Transitions | None,
         pop: np.ndarray, directions: Callable[[list[int]], np.ndarray], successors: int,
         skip: Callable[[int], bool]) -> Pool:
    """The warm candidates of one request and their FEATURES rows.

    fused: (items, scores, logprobs) of the views' beams fused, best first (the whole pool);
    views: each view's (items, scores[, logprobs]); history: the known history ids, oldest
    first; pop: `popularity(table)`; directions(ids): their unit content vectors (n, dim);
    skip(item): True for items that may not be candidates (cold, inactive, filtered out)."""
    items = [int(i) for i in fused[0]]
    score = {}
    logprob = {}
    rank = {}
    for r, (i, s, p) in enumerate(zip(items, fused[1], fused[2])):
        if i not in score:
            score[i], logprob[i], rank[i] = float(s), float(p), r
    recent = list(history[-DEPTH:])[::-1]          # newest first
    # the newest item's row: its successors join the pool, and its total is the share's base
    empty = np.zeros(0, np.int64)
    first = table.successors(recent[0]) if table is not None and recent else (empty, empty)
    cand = [i for i in score if not skip(i)]
    if successors and len(first[0]):
        tg, c = first
        taken = 0
        for j in np.lexsort((tg, -c)).tolist():    # most frequent first, ties by id
            if taken >= successors:
                break
            i = int(tg[j])
            if i not in score and not skip(i):
                cand.append(i)
                taken += 1
    n = len(cand)
    X = np.zeros((n, len(FEATURES)), dtype=np.float64)
    if not n:
        return Pool([], X, [])
    ids = np.asarray(cand, dtype=np.int64)
    X[:, 0] = [score.get(i, FLOOR) for i in cand]
    X[:, 1] = [i in score for i in cand]
    X[:, 2] = np.log1p([rank.get(i, ABSENT_RANK) for i in cand])
    counts = [table.counts_of(last, ids) if table is not None else np.zeros(n, np.int64)
              for last in recent]
    for j, col in ((0, 3), (1, 5), (2, 6)):
        if j < len(counts):
            X[:, col] = np.log1p(counts[j])
    if len(first[1]):
        X[:, 4] = counts[0] / first[1].sum()
    X[:, 7] = np.log1p(np.where(ids < len(pop), pop[np.minimum(ids, len(pop) - 1)], 0.0)
                       if len(pop) else 0.0)
    hist = set(int(i) for i in history)
    X[:, 8] = [i in hist for i in cand]
    if history:
        X[:, 9] = ids == int(history[-1])
    seen: dict[int, int] = {}
    first = {}
    for v, answer in enumerate(views):
        for i, s in zip(answer[0], answer[1]):
            i = int(i)
            seen[i] = seen.get(i, 0) + 1
            if v == 0 and i not in first:
                first[i] = float(s)
    X[:, 10] = [seen.get(i, 0) for i in cand]
    X[:, 11] = [first.get(i, FLOOR) for i in cand]
    if recent:
        cos = directions(cand) @ directions(recent).T   # (n, len(recent)), newest first
        X[:, 12] = cos[:, 0]
        best = cos.max(axis=1)
        X[:, 13] = best
        X[:, 14] = best ** 2
        X[:, 15] = np.maximum(0.0, best - 0.9) * 10
        X[:, 16] = best > 0.97
    return Pool(cand, X, [logprob.get(i, -math.inf) for i in cand])


def places(answer: tuple, is_cold: Callable[[int], bool]) -> list[int | None]:
    """The served top k's places: the cold item kept at each place the cold-start mixture gave
    one (None: a place the warm candidates fill)."""
    return [int(i) if is_cold(int(i)) else None for i in answer[0]]


def fill(slots: list[int | None], answer: tuple, candidates: Pool, order: np.ndarray,
         scores: np.ndarray) -> tuple[list[int], list[float], list[float]]:
    """The final answer: the cold items in their places (their values from `answer`, the
    mixed top k), the warm candidates in `order` (indices into candidates.items, best first)
    in the other places, each with its re-ranking score and model log-probability."""
    kept = {int(i): (float(s), float(p)) for i, s, p in zip(*answer)}
    items, out_s, out_p = [], [], []
    nxt = iter(order.tolist())
    for slot in slots:
        if slot is not None:
            s, p = kept[slot]
            items.append(slot)
            out_s.append(s)
            out_p.append(p)
            continue
        j = next(nxt, None)
        if j is None:
            continue
        items.append(candidates.items[j])
        out_s.append(float(scores[j]))
        out_p.append(float(candidates.logprobs[j]))
    return items, out_s, out_p


def ranked(reranker: Reranker | None, candidates: Pool) -> tuple[np.ndarray, np.ndarray]:
    """(the candidates' order, best first; their scores): by the re-ranker, or without one by
    the model's fused log-probability (the pool's own order), ties in the pool's order."""
    if reranker is None:
        s = candidates.X[:, 0] if len(candidates.items) else np.zeros(0)
    else:
        s = reranker.scores(candidates.X)
    return np.argsort(-s, kind="stable"), s
