"""A second stage over the search's answer: a linear re-ranker fitted on validation.

The beam ranks items by the model's probability alone. What else is known at serving time says
more about the top of the list: how often the request's recent items were followed by a
candidate in the training log (the compact model recalls seen transitions poorly:
docs/quality.md), how popular it is, how close its content is to what was just seen, and how
many SID views' beams reached it. So the answer is re-ranked over a wider pool of candidates:

- every item the views' beams reached (the whole beam of each view, not only the k answered);
- the `successors` most frequent successors of the newest history item in the training log
  that the beam missed (eligible ones only: active, allowed, not denied, not cold);
- with `cold` > 0, the `cold` eligible cold items (never a next item in training, or added
  since: runtime/cold_start.py) closest in content to the newest history items;

each scored by ``w . (x - mean) / scale`` over its features (``FEATURES``, below). A re-ranker
with cold candidates ranks warm and cold items on one scale: the model has no evidence about a
cold item, so where it belongs against the warm ones is learnt from validation cases whose next
item was cold. Without them, cold items keep the places the cold-start mixture gave them in the
top k and the warm candidates, best first, fill the other places. `fit` fits the weights on its
validation cases (eval/rerank.py: a conditional logit, the L2 penalty and the cold candidates
chosen by two-fold cross-validation on NDCG@10, off unless it beats the model's own order there)
and writes them into the bundle's manifest.

Serving code: numpy only, nothing from training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..errors import InvalidArgumentError
from .transitions import Transitions

# one row per candidate; a re-ranker names the features it weighs (any of these, in its order)
_BASE = (
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
    "cold",              # 1 for a cold candidate (no model evidence), 0 for a warm one
    "cold_cos",          # cos_recent of a cold candidate, 0 for a warm one (its own slope)
    "cold_rank",         # log(1 + its rank among the request's cold items by content), 0 warm
    "cold_mass",         # the cold-start mixture's log content mass for it, 0 for a warm one
)
SEEN = tuple(f"seen_{f}" for f in ("logprob", "beam_rank", "count_1", "share_1", "count_2",
                                   "popularity", "views", "logprob_first", "cos_recent"))
FEATURES = _BASE + SEEN
# seen_<f>: <f> of an item in the request's history, 0 for the others. A repeat is another kind
# of next item: the model and the log's counts favour the items just seen, and how far to trust
# them for an item the user already has is not how far to trust them for a new one, so those
# items get slopes of their own (on amazon the re-ranker put the newest history item first in
# a third of the test cases, right 3% of the time: docs/rerank.md).
# the features of a re-ranker without cold candidates: all but the cold_* ones
WARM_FEATURES = tuple(f for f in FEATURES if not f.startswith("cold"))
FLOOR = math.log(1e-5)   # the log-probability of an item no beam reached
ABSENT_RANK = 50
DEPTH = 3                # history items the counts and the cosines look back over
SUCCESSORS = 20          # default number of successors of the newest item added to the pool
COLD = 20                # cold candidates of a re-ranker that ranks cold items too


def columns(names: Sequence[str]) -> np.ndarray:
    """The columns of a FEATURES row that hold `names`, in their order."""
    return np.array([FEATURES.index(f) for f in names], dtype=np.int64)


_SEEN_OF = columns([f[len("seen_"):] for f in SEEN])   # the columns SEEN gates


@dataclass(frozen=True, eq=False)
class Reranker:
    """The re-ranking model: weights over the standardised `features` (names of FEATURES), the
    number of successors and of cold candidates (0: cold items keep the mixture's places)."""

    weights: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    successors: int = SUCCESSORS
    features: tuple = WARM_FEATURES
    cold: int = 0

    def __post_init__(self):
        names = tuple(self.features) if isinstance(self.features, (list, tuple)) else None
        if not names or len(set(names)) != len(names) or not set(names) <= set(FEATURES):
            raise InvalidArgumentError(f"re-ranker features {self.features!r:.200}; expected "
                                       f"distinct names of {list(FEATURES)}")
        n = len(names)
        arrays = {}
        for name in ("weights", "mean", "scale"):
            a = np.asarray(getattr(self, name), dtype=np.float64)
            if a.shape != (n,) or not np.all(np.isfinite(a)):
                raise InvalidArgumentError(
                    f"re-ranker {name} of shape {a.shape}; expected {n} finite numbers, one per "
                    f"feature of {names}")
            arrays[name] = a
        if not np.all(arrays["scale"] > 0):
            raise InvalidArgumentError(f"re-ranker scale {arrays['scale'].tolist()}; expected "
                                       "every value > 0")
        for name in ("successors", "cold"):
            s = getattr(self, name)
            if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or not 0 <= s <= 1000:
                raise InvalidArgumentError(f"re-ranker {name}={s!r}; expected an integer from 0 "
                                           "to 1000")
            object.__setattr__(self, name, int(s))
        if self.cold and "cold" not in names:
            raise InvalidArgumentError(f"re-ranker with cold={self.cold} candidates but no "
                                       "'cold' feature; expected it among the features")
        for name, a in arrays.items():
            a.setflags(write=False)
            object.__setattr__(self, name, a)
        object.__setattr__(self, "features", names)
        cols = columns(names)
        cols.setflags(write=False)
        object.__setattr__(self, "_cols", cols)

    def scores(self, X: np.ndarray) -> np.ndarray:
        """Each candidate row's score (rows of FEATURES, unstandardised)."""
        return ((X[:, self._cols] - self.mean) / self.scale) @ self.weights

    def to_dict(self) -> dict:
        """The settings as written to a manifest; `cold` only where set, so that a re-ranker
        without cold candidates reads the same in a bundle of any version."""
        return {"features": list(self.features), "weights": self.weights.tolist(),
                "mean": self.mean.tolist(), "scale": self.scale.tolist(),
                "successors": self.successors, **({"cold": self.cold} if self.cold else {})}

    @classmethod
    def from_dict(cls, d) -> "Reranker":
        """InvalidArgumentError naming what is wrong (another feature list included: a bundle
        written by a version with other features cannot be served by this one's)."""
        if not isinstance(d, dict):
            raise InvalidArgumentError(f"re-ranker settings {d!r:.60}; expected an object")
        unknown = set(d) - {"features", "weights", "mean", "scale", "successors", "cold"}
        if unknown:
            raise InvalidArgumentError(f"re-ranker settings with unknown keys {sorted(unknown)}")
        names = d.get("features")
        if not isinstance(names, list) or not set(names) <= set(FEATURES):
            raise InvalidArgumentError(f"re-ranker features {names!r:.200}; this version "
                                       f"computes {list(FEATURES)}")
        try:
            return cls(np.asarray(d["weights"], float), np.asarray(d["mean"], float),
                       np.asarray(d["scale"], float), d.get("successors", SUCCESSORS),
                       tuple(names), d.get("cold", 0))
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
    """One request's candidates and their feature rows: the warm ones, then the cold ones."""

    items: list[int]
    X: np.ndarray          # (len(items), len(FEATURES))
    logprobs: list[float]  # the fused model log-probability (-inf where the search has none)
    n_warm: int | None = None   # the first n_warm candidates are warm (None: all of them)
    # cold candidates were asked for (a joint re-ranker with cold start on): the answer is the
    # first k of the ranking; otherwise cold items keep the places the mixture gave them
    joint: bool = False

    def __post_init__(self):
        if self.n_warm is None:
            self.n_warm = len(self.items)


def pool(fused: tuple, views: Sequence[tuple], history: Sequence[int], table: Transitions | None,
         pop: np.ndarray, directions: Callable[[list[int]], np.ndarray], successors: int,
         skip: Callable[[int], bool], cold: Sequence[int] = (),
         cold_mass: Sequence[float] = (), joint: bool = False) -> Pool:
    """The candidates of one request and their FEATURES rows.

    fused: (items, scores, logprobs) of the views' beams fused, best first (the whole pool);
    views: each view's (items, scores[, logprobs]); history: the known history ids, oldest
    first; pop: `popularity(table)`; directions(ids): their unit content vectors (n, dim);
    skip(item): True for items that may not be warm candidates (cold, inactive, filtered out);
    cold: eligible cold candidates, closest in content first (they follow the warm ones; one
    the beam reached keeps its beam features); cold_mass: their log content masses by the
    cold-start settings (runtime/cold_start.py), where known; joint: cold candidates were asked
    for (Pool.joint), even where none was eligible."""
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
    n_warm = len(cand)
    warm = set(cand)
    mass: dict[int, float] = {}
    for i, m in zip(cold, cold_mass):
        mass.setdefault(int(i), float(m))
    cand += [i for i in dict.fromkeys(int(i) for i in cold) if i not in warm]
    n = len(cand)
    X = np.zeros((n, len(FEATURES)), dtype=np.float64)
    if not n:
        return Pool([], X, [], joint=joint)
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
    if n > n_warm:
        X[n_warm:, 17] = 1.0
        X[n_warm:, 18] = X[n_warm:, 13]
        X[n_warm:, 19] = np.log1p(np.arange(n - n_warm))
        X[n_warm:, 20] = [mass.get(i, 0.0) for i in cand[n_warm:]]
    X[:, len(_BASE):] = X[:, _SEEN_OF] * X[:, 8:9]
    return Pool(cand, X, [logprob.get(i, -math.inf) for i in cand], n_warm, joint)


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


def top(candidates: Pool, order: np.ndarray, scores: np.ndarray, k: int
        ) -> tuple[list[int], list[float], list[float]]:
    """The final answer of a re-ranker with cold candidates: the first k of `order` (indices
    into candidates.items, best first), each with its score and model log-probability."""
    at = order[:k].tolist()
    return ([candidates.items[j] for j in at], [float(scores[j]) for j in at],
            [float(candidates.logprobs[j]) for j in at])


def serve(reranker: Reranker, slots: list[int | None], answer: tuple, candidates: Pool, k: int
          ) -> tuple[list[int], list[float], list[float]]:
    """One request's served top k under `reranker`: the first k of its ranking where it ranks
    cold candidates and the pool holds them (`top`), else the warm candidates around the cold
    items' places (`fill`). The runtime and the evaluation (eval/rerank.lists) both answer
    through it, so what is fitted is what is served."""
    order, scores = ranked(reranker, candidates)
    if reranker.cold and candidates.joint:
        return top(candidates, order, scores, k)
    return fill(slots, answer, candidates, order, scores)


def ranked(reranker: Reranker | None, candidates: Pool) -> tuple[np.ndarray, np.ndarray]:
    """(the candidates' order, best first; their scores): by the re-ranker, or without one by
    the model's fused log-probability (the pool's own order), ties in the pool's order. Only
    a re-ranker with cold candidates ranks the cold rows; the others rank the warm ones."""
    n = len(candidates.items) if reranker is not None and reranker.cold else candidates.n_warm
    X = candidates.X[:n]
    if reranker is None:
        s = X[:, 0] if n else np.zeros(0)
    else:
        s = reranker.scores(X)
    return np.argsort(-s, kind="stable"), s
