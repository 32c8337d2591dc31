"""Cold start: recommend items the model was never trained to write.

A generative model learns the full SIDs of the items it saw as next-item targets. An item it
never saw (a new ad given to add_items, or a catalog item without training interactions) has a
SID from its text, but the model puts almost no probability on that SID's last levels, so the
beam never reaches it. The Recommender therefore adds to the model's probability of each cold
item a content mass:

    p(i | h) = p_model(i | h) + [i cold] * (weight * exp((cos(z_i, h) - 1) / temperature)
                                   [+ near_weight * exp((cos(z_i, h) - 1) / near_temperature)])

where p_model is the beam's constrained probability (the `score` of an answer), z_i the item's
content vector (sid/content.py: the principal components of the embedding its SID was made from,
kept beside the SID; for tables built without them, the residual-quantiser reconstruction, the sum
of its codewords) and cos(z_i, h) its cosine to the newest `history` known history items (0
without one): with `query` "max" the largest cosine to any of them (the next item is like one
just seen), with "mean" the cosine to their mean direction (the next item is like the user's
recent taste as a whole). A cold item identical in content to the query gets `weight`;
`temperature` sets how fast the mass falls with dissimilarity. The optional second, narrow
kernel (`near_weight`, `near_temperature`) is for near-duplicates of a recent item (the same
product in another size or colour): one exponential cannot give them a high mass and keep a
broad tail for merely related items. `slots` optionally caps how many cold items from outside
the beam one list may take;
`repeat` (optional) is the probability a cold item of the request's own history gets instead of
its content mass: its likeness to itself would give it `weight` and the first place, where the
chance that the next item is one just seen is a rate of the catalog's users (about 1% an item on
amazon, 0 on ml-100k), estimated on validation by counting (eval/cold_start.repeat_rate). All are
chosen on validation data (eval/cold_start.py), never set by hand. Warm items keep the model's
values and order; a cold item enters a list where its mass beats the model's for the items below
it, and its mass does not depend on how many other cold items there are. numpy only: the runtime
and the reference evaluation share it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._sorted import find_sorted
from ..errors import InvalidArgumentError
from ..sid.content import unit_rows


QUERIES = ("max", "mean")


def _positive(v) -> bool:
    """Whether a setting is a finite number > 0 (a bool is not a number here)."""
    return not isinstance(v, bool) and isinstance(v, (int, float, np.floating)) \
        and 0.0 < float(v) < math.inf


@dataclass(frozen=True)
class ColdStartConfig:
    weight: float         # content mass of a cold item identical to a recent history item, > 0
    temperature: float    # of the cosine in the content mass, > 0
    history: int = 1      # how many of the newest known history items the cosine looks at
    slots: int | None = None   # at most this many cold items from outside the beam a list
    repeat: float | None = None   # mass of a cold item of the request's history; None: content
    query: str = "max"    # "max": largest cosine to a recent item; "mean": to their mean direction
    near_weight: float | None = None        # mass of a second, narrow kernel; None: none
    near_temperature: float | None = None   # its temperature, below `temperature`

    def __post_init__(self):
        for name in ("weight", "temperature"):
            v = getattr(self, name)
            if not _positive(v):
                raise InvalidArgumentError(f"cold start {name}={v!r}; expected a finite number > 0")
        h = self.history
        if isinstance(h, bool) or not isinstance(h, (int, np.integer)) or not 1 <= h <= 1000:
            raise InvalidArgumentError(f"cold start history={h!r}; expected an integer in 1..1000")
        s = self.slots
        if s is not None and (isinstance(s, bool) or not isinstance(s, (int, np.integer))
                              or not 1 <= s <= 1000):
            raise InvalidArgumentError(f"cold start slots={s!r}; expected null or an integer in "
                                       "1..1000")
        r = self.repeat
        if r is not None and (isinstance(r, bool) or not isinstance(r, (int, float, np.floating))
                              or not 0.0 <= float(r) <= 1.0):
            raise InvalidArgumentError(f"cold start repeat={r!r}; expected null or a number in "
                                       "0..1")
        near = (self.near_weight, self.near_temperature)
        if (near[0] is None) != (near[1] is None):
            raise InvalidArgumentError(f"cold start near_weight={near[0]!r}, near_temperature="
                                       f"{near[1]!r}; expected both or neither")
        for name, v in zip(("near_weight", "near_temperature"), near):
            if v is not None and not _positive(v):
                raise InvalidArgumentError(f"cold start {name}={v!r}; expected null or a finite "
                                           "number > 0")
        if near[1] is not None and not float(near[1]) < float(self.temperature):
            raise InvalidArgumentError(f"cold start near_temperature={near[1]!r}; expected a "
                                       f"number below temperature={self.temperature!r} (the "
                                       "narrow kernel)")
        if self.query not in QUERIES:
            raise InvalidArgumentError(f"cold start query={self.query!r}; expected one of "
                                       f"{', '.join(map(repr, QUERIES))}")

    def describe(self) -> str:
        """The settings in words, for reports and logs."""
        return (f"weight {self.weight:g}, temperature {self.temperature:g}, "
                + ("the mean of " if self.query == "mean" else "")
                + f"{self.history} recent item" + ("s" if self.history > 1 else "")
                + ("" if self.near_weight is None else f", near-duplicates weight "
                   f"{self.near_weight:g}, temperature {self.near_temperature:g}")
                + ("" if self.slots is None else f", at most {self.slots} cold a list")
                + ("" if self.repeat is None else ", history items excluded"
                   if self.repeat == 0 else f", history items at mass {self.repeat:.3g}"))

    def to_dict(self) -> dict:
        """The settings as written to a manifest; slots, repeat, the near kernel and a query
        other than "max" only where set, so that settings without them read the same in a
        bundle of any version."""
        d = {"weight": float(self.weight), "temperature": float(self.temperature),
             "history": int(self.history)}
        if self.slots is not None:
            d["slots"] = int(self.slots)
        if self.repeat is not None:
            d["repeat"] = float(self.repeat)
        if self.query != "max":
            d["query"] = self.query
        if self.near_weight is not None:
            d["near_weight"] = float(self.near_weight)
            d["near_temperature"] = float(self.near_temperature)
        return d

    @classmethod
    def from_dict(cls, d) -> "ColdStartConfig":
        keys = {"weight", "temperature", "history", "slots", "repeat", "query", "near_weight",
                "near_temperature"}
        if not isinstance(d, dict) or not {"weight", "temperature"} <= set(d) \
                or not set(d) <= keys | {"exclude_history"} \
                or {"repeat", "exclude_history"} <= set(d):
            raise InvalidArgumentError(f"cold start settings {d!r}; expected {{'weight': w, "
                                       "'temperature': t[, 'history': n, 'slots': n or "
                                       "null, 'repeat': null or 0..1, 'query': 'max' or "
                                       "'mean', 'near_weight': w2, 'near_temperature': t2]}")
        d = dict(d)
        if "exclude_history" in d:  # the flag of earlier bundles: true is repeat 0
            ex = d.pop("exclude_history")
            if not isinstance(ex, (bool, np.bool_)):
                raise InvalidArgumentError(f"cold start exclude_history={ex!r}; expected true "
                                           "or false")
            d["repeat"] = 0.0 if ex else None
        return cls(**d)


def directions(codebooks: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """(n, dim) unit vectors of the residual-quantiser reconstructions of `codes` (n, >= levels):
    the sum over the levels of each row's codewords (an extra collision level is ignored)."""
    cb = np.asarray(codebooks, dtype=np.float32)
    c = np.asarray(codes)
    if c.ndim != 2 or c.shape[1] < cb.shape[0]:
        raise InvalidArgumentError(f"codes of shape {c.shape}; expected (n, >= {cb.shape[0]})")
    z = np.zeros((c.shape[0], cb.shape[2]), dtype=np.float32)
    for level in range(cb.shape[0]):
        z += cb[level][c[:, level]]
    norm = np.linalg.norm(z, axis=1, keepdims=True)
    return z / np.where(norm > 0, norm, 1.0)


def item_directions(sids, item_ids) -> np.ndarray:
    """(n, dim) unit content directions of items of a SID table: its content vectors
    (sid/content.py) where it keeps them, else the RQ reconstructions of their codes. Stored
    dim-major (Fortran order): the product of a few history items with every cold item then
    reads the cold set contiguously, 2.5x faster at 10k cold items than row-major."""
    rows = sids.rows_of(np.asarray(list(item_ids), dtype=np.int64))
    if sids.content is not None:
        return np.asfortranarray(unit_rows(sids.content[rows]))
    if sids.encoder is None:
        raise InvalidArgumentError("the catalog's SID table has neither content vectors nor "
                                   "quantiser codebooks; cold start needs one of them")
    return np.asfortranarray(directions(sids.encoder.codebooks, sids.codes[rows, :sids.levels]))


def similarities(cold_dirs: np.ndarray, queries: np.ndarray | None) -> np.ndarray:
    """Each cold item's largest cosine to the query directions ((m, dim) unit vectors, the
    newest history items'; None or none: 0), float64."""
    if queries is None or len(queries) == 0:
        return np.zeros(len(cold_dirs))
    # float32, and (queries x items) reduced over its short first axis: converting every cold
    # row to float64, or a row-wise max over (items x 3), costs more than the product itself
    q = np.asarray(queries, dtype=np.float32).reshape(-1, cold_dirs.shape[1])
    return (q @ np.asarray(cold_dirs, dtype=np.float32).T).max(axis=0).astype(np.float64)


def query_directions(recent: np.ndarray | None, query: str) -> np.ndarray | None:
    """The directions the cold items are compared with: the newest history items' unit content
    vectors ((m, dim); None: none) for "max", their mean direction ((1, dim)) for "mean"."""
    if recent is None or len(recent) == 0 or query == "max":
        return recent
    m = np.asarray(recent, dtype=np.float32).mean(axis=0)
    norm = float(np.linalg.norm(m))
    # opposite vectors cancel: no direction is no evidence, like an empty history
    return None if norm < 1e-6 else (m / norm)[None, :]


def content_scores(cos: np.ndarray, cfg: ColdStartConfig) -> np.ndarray:
    """log of each cold item's content mass: log weight + (cos - 1) / temperature, and with a
    near kernel the log of the two masses' sum (still rising with the cosine, so the best cold
    items by cosine are the best by mass under any settings)."""
    d = np.asarray(cos, dtype=np.float64) - 1.0
    out = d / cfg.temperature
    out += math.log(cfg.weight)
    if cfg.near_weight is not None:
        # log(narrow / broad mass) = d * slope + lift, added (as log1p(exp)) only where it is
        # above -40, so for the few items near a recent one: a log-sum-exp over every cold item
        # cost a request 0.1 ms at 10k cold items
        slope = 1.0 / cfg.near_temperature - 1.0 / cfg.temperature   # > 0: the narrow kernel
        lift = math.log(cfg.near_weight / cfg.weight)
        at = np.nonzero(d > (-40.0 - lift) / slope)
        out[at] += np.log1p(np.exp(d[at] * slope + lift))
    return out


def history_rows(cold_ids: np.ndarray, history) -> np.ndarray:
    """Positions in the sorted `cold_ids` of the items of `history` that are cold."""
    h = np.asarray(list(history), dtype=np.int64)
    if not len(h) or not len(cold_ids):
        return np.zeros(0, dtype=np.int64)
    at, found = find_sorted(cold_ids, h)
    return np.unique(at[found])


def history_mass(cold_ids: np.ndarray, cold_scores: np.ndarray, history,
                 repeat: float | None) -> np.ndarray:
    """`cold_scores` (log masses of the sorted `cold_ids`) with the items of `history` at mass
    `repeat` (0: none, -inf; None: unchanged): a cold item the request has just seen is not
    recommended for its likeness to itself, only at the rate users come back to one."""
    if repeat is None:
        return cold_scores
    hit = history_rows(cold_ids, history)
    if not len(hit):
        return cold_scores
    out = np.array(cold_scores, dtype=np.float64)
    out[hit] = math.log(repeat) if repeat > 0 else -math.inf
    return out


def mix(items, scores, logprobs, cold_ids: np.ndarray, cold_scores: np.ndarray, eligible,
        k: int, slots: int | None = None) -> tuple[list[int], list[float], list[float]]:
    """One request's top k: the beam's (items, scores, logprobs) with the cold items' content
    masses (`content_scores`, cold_ids sorted) added, as log-sum-exp where the beam holds the item
    too (one value for a cold item's score and log-probability otherwise). `eligible(item)` says
    whether a cold item outside the beam may be answered (in the catalog, active, allowed, not
    denied); only the best cold items are asked, in order, until k (or `slots`) are found, and
    none without mass (-inf: `history_mass` at repeat 0). Ties keep the beam's order, then the cold
    order."""
    score: dict[int, float] = {}
    lp: dict[int, float] = {}
    order: list[int] = []
    for item, s, p in zip(items, scores, logprobs):
        item = int(item)
        if item not in score:
            score[item], lp[item] = float(s), float(p)
            order.append(item)
    n = len(cold_ids)
    if n:
        if order:
            beam = np.fromiter(order, dtype=np.int64, count=len(order))
            at, found = find_sorted(cold_ids, beam)
            for item, j, hit in zip(order, at.tolist(), found.tolist()):
                if hit:  # a cold item the beam reached: both masses
                    c = float(cold_scores[j])
                    score[item] = float(np.logaddexp(score[item], c))
                    lp[item] = float(np.logaddexp(lp[item], c))
        room = k if slots is None else min(k, slots)
        for item, c in best_cold(cold_ids, cold_scores,
                                 lambda i: i not in score and eligible(i), room):
            score[item] = lp[item] = c
            order.append(item)
    rank = {item: r for r, item in enumerate(order)}
    best = sorted(order, key=lambda i: (-score[i], rank[i]))[:k]
    return best, [score[i] for i in best], [lp[i] for i in best]


def best_cold(cold_ids: np.ndarray, cold_scores: np.ndarray, eligible, n: int
              ) -> list[tuple[int, float]]:
    """The (item, log mass) of the n cold items of most content mass that `eligible(item)`
    accepts, best first (ties: the lower position in cold_ids), none without mass (-inf)."""
    out: list[tuple[int, float]] = []
    if n <= 0 or not len(cold_ids):
        return out
    for j in _best_first(cold_scores, max(4 * n, 64)):
        if len(out) >= n or cold_scores[j] == -math.inf:
            break
        item = int(cold_ids[j])
        if eligible(item):
            out.append((item, float(cold_scores[j])))
    return out


def _best_first(scores: np.ndarray, m: int):
    """Indices of `scores`, best first (ties: lower index first); the m best are sorted at once
    (a partial sort: most requests need no more), the rest only if asked for."""
    n = len(scores)
    if m < n:
        kth = -np.partition(-scores, m - 1)[m - 1]       # the m-th best value
        above = np.flatnonzero(scores > kth)
        head = np.concatenate([above, np.flatnonzero(scores == kth)[:m - len(above)]])
        head = head[np.lexsort((head, -scores[head]))]
        yield from head.tolist()
        rest = np.setdiff1d(np.arange(n), head)
        yield from rest[np.lexsort((rest, -scores[rest]))].tolist()
    else:
        yield from np.lexsort((np.arange(n), -scores)).tolist()
