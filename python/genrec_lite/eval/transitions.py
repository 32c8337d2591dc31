"""Choosing the transition weight (runtime/transitions.py) on validation.

The served bundle answers the validation cases once, with its serving point and cold-start
settings and no re-ordering; every weight of the grid then re-orders those same answers with the
bundle's own table and the runtime's `reorder`, so a trial is exactly what the Recommender would
serve at that weight. The best NDCG@10 wins, ties going to the smaller weight (0: off). HR@10
does not move: only the order of the answered items does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..errors import InvalidArgumentError
from ..runtime.transitions import WEIGHTS, checked_weight, ordered
from .bundle import served_answers
from .metrics import rank_metrics

if TYPE_CHECKING:  # pragma: no cover
    from ..runtime import Recommender


def answers_unordered(rec: "Recommender", cases, *, profiles=None, k: int = 10
                      ) -> list[tuple[list[int], list[float], list[float]]]:
    """(items, scores, logprobs) the Recommender serves for each case, its re-ordering off for
    the duration (everything else, cold start included, as the bundle serves)."""
    saved = rec.transition_weight
    rec.set_transition_weight(None)
    try:
        return served_answers(rec, cases, profiles=profiles, k=k)
    finally:
        rec.set_transition_weight(saved)


def reordered(answers, last_items: Sequence[int | None], table, weight: float | None,
              cold_ids=None) -> list[list[int]]:
    """Each case's item ids as the Recommender orders them at `weight` (runtime `ordered`): by
    the table's counts from the case's newest history item the bundle knows (`last_items`;
    None: none), the items in the sorted `cold_ids` (the catalog's cold set) kept in their
    places."""
    weight = checked_weight(weight)
    cold = np.zeros(0, dtype=np.int64) if cold_ids is None else np.asarray(cold_ids, np.int64)
    return [list(ordered(a, last, table, weight, cold)[0]) for a, last in zip(answers, last_items)]


def last_known(rec: "Recommender", cases) -> list[int | None]:
    """Each case's newest history item in the Recommender's catalog (None: none), the item the
    runtime looks its transitions up from."""
    sids = rec.catalog.state.sids
    return [next((int(i) for i in reversed(list(c.history)) if i in sids), None) for c in cases]


def weight_trials(answers, last_items, cold_ids, targets, table,
                  weights: Sequence[float] = WEIGHTS) -> tuple[float | None, list[dict]]:
    """(the weight whose re-ordering of `answers` gives the best NDCG@10, ties to the smaller,
    None for 0; one row per weight with its HR/NDCG@1,3,5,10)."""
    rows, best = [], None
    for w in sorted(set(float(x) for x in weights)):
        m = rank_metrics(reordered(answers, last_items, table, w, cold_ids), targets)
        rows.append({"weight": w, **{key: v for key, v in m.items() if key != "n_cases"}})
        if best is None or m["NDCG@10"] > best[1]:
            best = (w, m["NDCG@10"])
    return checked_weight(best[0]), rows


def choose_transition_weight(rec: "Recommender", cases, *, profiles=None,
                             weights: Sequence[float] = WEIGHTS) -> tuple[float | None, list[dict]]:
    """`weight_trials` on the Recommender's own answers to `cases` and its own table.
    InvalidArgumentError without cases; (None, []) for a bundle without a transition table."""
    if not cases:
        raise InvalidArgumentError("no validation cases to choose the transition weight on")
    table = rec.transitions
    if table is None:
        return None, []
    return weight_trials(answers_unordered(rec, cases, profiles=profiles), last_known(rec, cases),
                         rec.catalog.state.cold, [c.target for c in cases], table, weights)
