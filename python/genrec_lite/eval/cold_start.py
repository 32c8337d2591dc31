"""Choosing the cold-start settings (runtime/cold_start.py) on validation data.

The procedure: the model's answers with cold start off, on validation cases whose targets come
after its training data (so the items it never trained on are cold there as they will be when
served); every setting of a fixed grid (weight x temperature x history depth x cap on the cold
items a list x whether the history's own cold items are excluded), and cold start off,
applied to those answers with the runtime's own mixing code. The best overall setting is the
one with the best NDCG@10 over all the validation cases (ties: the better HR@10, then off, then the
grid order). Kept: among the settings whose overall HR@10 and NDCG@10 are each within `max_cost`
(default 1%) of the best overall setting's, the one that ranks the cold cases best (their NDCG@10,
then HR@10, then the overall NDCG@10): a price for exposing new items, stated and paid on
validation (on test it can differ: docs/cold_start.md); `max_cost=0` keeps the best overall
setting itself. Where the served model is not the tuning model, `cold_share` pays the price at
the share of cold cases the served model will see (`served_cold_share`): the overall metrics
compared are then the cold and warm cases' reweighted to it. `max_loss` optionally also bounds
what the cases whose target is warm may lose (their HR@10 and NDCG@10 each at least (1 - max_loss)
times the model alone's), for a deployment that must not trade warm hits for cold ones. Nothing
in it depends on a data set's name: the grid spans masses from far below to above a typical
top-10 item's probability, and the data decide. Why this rule and not a bound on the warm cases
(the earlier default): docs/cold_start.md. numpy only.
"""

from __future__ import annotations

from itertools import islice
from typing import Sequence

import numpy as np

from ..errors import InvalidArgumentError
from ..runtime.cold_start import (ColdStartConfig, _best_first, content_scores,
                                    item_directions, mix, similarities, without_history)
from .metrics import rank_metrics

WEIGHTS = (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0)
TEMPERATURES = (0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5)
HISTORY = (1, 3, 10)
SLOTS = (None, 1, 3)
EXCLUDE_HISTORY = (False, True)
# The share of the best validation HR@10 and NDCG@10 (all cases) a deployment gives up by
# default to show the items without interactions: new ads need exposure to earn any, and one
# percent was the tolerance the project set for cold start (issue 27)
MAX_COST = 0.01
GRID = tuple(ColdStartConfig(w, t, h, slots, ex) for ex in EXCLUDE_HISTORY for slots in SLOTS
             for h in HISTORY for w in WEIGHTS for t in TEMPERATURES)


def runtime_answers(rec, cases, *, profiles=None, k: int = 10, beam: int | None = None,
                    batch_size: int = 32) -> list[tuple[list[int], list[float], list[float]]]:
    """(items, scores, logprobs) of a Recommender for each case, with its cold start off for the
    duration (the grid adds the cold items itself)."""
    saved = rec.cold_start
    rec.set_cold_start(None)
    try:
        out = []
        for s in range(0, len(cases), batch_size):
            reqs = [{"history": list(c.history), "k": k, "beam": beam,
                     "profile": profiles.get(c.user_id) if profiles is not None else None}
                    for c in cases[s:s + batch_size]]
            for recs in rec.recommend_batch(reqs):
                out.append(([r.item_id for r in recs], [r.score for r in recs],
                            [r.logprob for r in recs]))
        return out
    finally:
        rec.set_cold_start(saved)


def _ALL(item: int) -> bool:
    return True


class ColdCandidates:
    """The cold items of one SID table and each case's query (its newest history items the table
    knows, oldest first), ready to score under any settings."""

    def __init__(self, sids, cold_ids: Sequence[int], cases):
        cold = np.unique(np.asarray(list(cold_ids), dtype=np.int64))
        self.cold = cold[np.isin(cold, sids.item_ids)]
        self.dirs = item_directions(sids, self.cold.tolist())
        self.known = [[i for i in c.history if i in sids] for c in cases]
        self.queries = [item_directions(sids, h[-max(HISTORY):]) if h else None
                        for h in self.known]
        self._cos: dict[tuple[int, bool], list[np.ndarray]] = {}
        self._short: tuple = ()  # (key, k, answers, shortlists) of the last call

    def cosines(self, history: int, exclude: bool = False) -> list[np.ndarray]:
        """Per case, each cold item's largest cosine to its newest `history` items (cached);
        `exclude`: -inf for the cold items of the case's own history (no mass under any
        settings: `exclude_history`)."""
        key = (history, exclude)
        if key not in self._cos:
            if exclude:
                self._cos[key] = [without_history(self.cold, cos, h)
                                  for cos, h in zip(self.cosines(history), self.known)]
            else:
                self._cos[key] = [similarities(self.dirs, None if q is None else q[-history:])
                                  for q in self.queries]
        return self._cos[key]

    def lists(self, answers, cfg: ColdStartConfig | None, k: int = 10,
              eligible=None) -> list[list[int]]:
        """Each case's top k: the answer alone (cfg None) or mixed with the cold items
        (`eligible(item)`: whether a cold item outside the beam may be answered; None: all)."""
        eligible = _ALL if eligible is None else eligible
        if cfg is None or len(self.cold) == 0:
            return [list(a[0][:k]) for a in answers]
        key = (cfg.history, cfg.exclude_history)
        pairs = (self._shortlists(answers, key, k) if eligible is _ALL
                 else ((self.cold, cos) for cos in self.cosines(*key)))
        return [mix(*a, ids, content_scores(cos, cfg), eligible, k, cfg.slots)[0]
                for a, (ids, cos) in zip(answers, pairs)]

    def _shortlists(self, answers, key: tuple[int, bool], k: int
                    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per case, the only cold items `mix` can use when every item is eligible, with their
        cosines: the answer's own cold items and the best k + len(answer) by cosine (a content
        mass rises with the cosine under any settings, so the best cold items are the same for
        every setting). The same lists as the whole cold set, faster over a grid (about 1.7x on
        700 cold items); cached for the last `answers` list asked for."""
        cached = self._short
        if cached and cached[:2] == (key, k) and cached[2] is answers:
            return cached[3]
        out = []
        for a, cos in zip(answers, self.cosines(*key)):
            m = k + len(a[0])
            best = np.fromiter(islice(_best_first(cos, m), m), dtype=np.int64)
            own = np.flatnonzero(np.isin(self.cold, a[0]))
            sub = np.union1d(best, own)
            out.append((self.cold[sub], cos[sub]))
        self._short = (key, k, answers, out)
        return out


def choose_cold_start(answers, cases, sids, cold_ids, *, k: int = 10, grid=GRID,
                      max_loss: float | None = None, max_cost: float = MAX_COST,
                      cold_share: float | None = None
                      ) -> tuple[ColdStartConfig | None, list[dict]]:
    """(the chosen settings or None for off, every trial's metrics) on validation `cases` with
    the model's `answers` (runtime_answers, or the reference decoder's), `sids` the served SID
    table, `cold_ids` the items the model never trained on; see the module doc (`cold_share`:
    `pick`'s)."""
    _check_rule(max_loss, max_cost, cold_share)
    cand = ColdCandidates(sids, cold_ids, cases)
    targets = [c.target for c in cases]
    cold_case = np.isin(targets, cand.cold)
    trials = []
    for cfg in (None, *grid):
        lists = cand.lists(answers, cfg, k)
        m = {"all": rank_metrics(lists, targets)}
        for part, mask in (("cold", cold_case), ("warm", ~cold_case)):
            if mask.any():
                m[part] = rank_metrics([lst for lst, c in zip(lists, mask) if c],
                                       [t for t, c in zip(targets, mask) if c])
        trials.append({"settings": None if cfg is None else cfg.to_dict(), "metrics": m})
    return pick(trials, max_loss=max_loss, max_cost=max_cost, cold_share=cold_share), trials


def pick(trials: list[dict], *, max_loss: float | None = None, max_cost: float = MAX_COST,
         cold_share: float | None = None) -> ColdStartConfig | None:
    """The rule of the module doc applied to `choose_cold_start`'s trials (off first), so that
    other rules can be compared on the same trials. `cold_share`: the share of the served cases
    whose target is cold, where it differs from validation's (`served_cold_share`); the overall
    metrics the rule compares are then the cold and warm cases' reweighted to it."""
    _check_rule(max_loss, max_cost, cold_share)
    ok = range(len(trials))
    parts = trials[0]["metrics"]
    both = "cold" in parts and "warm" in parts

    def overall(n: int, key: str) -> float:
        m = trials[n]["metrics"]
        if cold_share is None or not both:
            return m["all"][key]
        return cold_share * m["cold"][key] + (1 - cold_share) * m["warm"][key]

    if max_loss is not None and both:
        off = parts["warm"]
        ok = [n for n in ok if all(trials[n]["metrics"]["warm"][key] >= (1 - max_loss) * off[key]
                                   for key in ("HR@10", "NDCG@10"))]
    best = max(ok, key=lambda n: (overall(n, "NDCG@10"), overall(n, "HR@10"), -n))
    if max_cost > 0 and "cold" in parts:
        # the exposure a deployment buys: the best ranking of the cold cases among the settings
        # within max_cost of the best overall ranking (which is among them)
        top = {key: overall(best, key) for key in ("HR@10", "NDCG@10")}
        within = [n for n in ok if all(overall(n, key) >= (1 - max_cost) * top[key]
                                       for key in ("HR@10", "NDCG@10"))]
        best = max(within, key=lambda n: (trials[n]["metrics"]["cold"]["NDCG@10"],
                                          trials[n]["metrics"]["cold"]["HR@10"],
                                          overall(n, "NDCG@10"), -n))
    chosen = trials[best]["settings"]
    return None if chosen is None else ColdStartConfig.from_dict(chosen)


def served_cold_share(valid_share: float, valid_cold: int, served_cold: int) -> float:
    """The share of a served model's cases whose target is cold, estimated from validation's
    (`valid_share` of the cases, with `valid_cold` cold items beside the tuning model) as the
    same traffic per cold item over the served model's `served_cold` cold items. The tuning model
    trains on less of the log than the model it stands in for, so it has more cold items (amazon:
    701 against 383) and validation more cold cases: priced at validation's share, the exposure
    costs the served model more than it was said to."""
    if valid_cold <= 0:
        return 0.0
    return float(min(1.0, valid_share * served_cold / valid_cold))


def _check_rule(max_loss, max_cost, cold_share=None) -> None:
    if cold_share is not None and (isinstance(cold_share, bool) or not (
            isinstance(cold_share, (int, float)) and 0 <= cold_share <= 1)):
        raise InvalidArgumentError(f"cold_share={cold_share!r}; expected None or a number in "
                                   "[0, 1]")
    if max_loss is not None and (isinstance(max_loss, bool) or not (
            isinstance(max_loss, (int, float)) and 0 <= max_loss < 1)):
        raise InvalidArgumentError(f"max_loss={max_loss!r}; expected None or a number in [0, 1)")
    if isinstance(max_cost, bool) or not (isinstance(max_cost, (int, float)) and 0 <= max_cost < 1):
        raise InvalidArgumentError(f"max_cost={max_cost!r}; expected a number in [0, 1)")
