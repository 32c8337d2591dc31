"""Choosing the cold-start settings (runtime/cold_start.py) on validation data.

The procedure: the model's answers with cold start off, on validation cases whose targets come
after its training data (so the items it never trained on are cold there as they will be when
served); every setting of a fixed grid (weight x temperature x history depth x how the history is
compared, its nearest item or its mean direction x cap on the cold items a list, the broad
settings also with a narrow kernel for near-duplicates), and cold start off, applied to those
answers by the runtime's mixing (`mix`, done for all the cases at once: the same operations on
the same numbers, so the same lists; the tests compare them). The cold
items of a case's own history get the rate at which such an item was the next one on these
cases (`repeat_rate`, counted, not searched). The best overall setting is the one with the best
NDCG@10 over all the validation cases (ties: the better HR@10, then off, then the grid order). Kept: among the settings whose overall HR@10 and NDCG@10 are each within `max_cost`
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

import math
from itertools import islice
from typing import Sequence

import numpy as np

from .._sorted import find_sorted
from ..errors import InvalidArgumentError
from ..runtime.cold_start import (QUERIES, ColdStartConfig, _best_first, content_scores,
                                    history_mass, history_rows, item_directions, mix,
                                    query_directions, similarities)
from .bundle import served_answers
from .metrics import rank_metrics_of

WEIGHTS = (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0)
TEMPERATURES = (0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5)
HISTORY = (1, 3, 10)
SLOTS = (None, 1, 3)
# The share of the best validation HR@10 and NDCG@10 (all cases) a deployment gives up by
# default to show the items without interactions: new ads need exposure to earn any, and one
# percent was the tolerance the project set for cold start (issue 27)
MAX_COST = 0.01


# The narrow second kernel for near-duplicates of a recent item: masses at or above a confident
# top item's probability, falling to 1/e by a cosine of 0.97-0.99; added only to a broad kernel
# (temperature at least BROAD, 1/e no sooner than a cosine of 0.9), so the two scales stay apart
NEAR = tuple((w, t) for w in (0.3, 1.0, 3.0) for t in (0.01, 0.02, 0.03))
BROAD = 0.1


def settings_grid(repeat: float | None = None) -> tuple[ColdStartConfig, ...]:
    """Every setting the procedure tries, with the history's cold items at mass `repeat` (the
    mean of one item is the item: that query only once); each broad setting also with each
    near kernel."""
    return tuple(ColdStartConfig(w, t, h, slots, repeat, query, *near) for query in QUERIES
                 for slots in SLOTS for h in HISTORY if query == "max" or h > 1
                 for w in WEIGHTS for t in TEMPERATURES
                 for near in ((None, None), *(NEAR if t >= BROAD else ())))


GRID = settings_grid()   # without a repeat rate


def trained_items(train) -> set[int]:
    """The items that occur in a split's training sequences (user -> item ids): a case whose
    target is not among them is a natural cold case (only cold start can reach it)."""
    return {int(i) for seq in train.values() for i in np.asarray(seq).tolist()}


def repeat_rate(cases, cold_ids) -> float | None:
    """The chance that a cold item of a case's history is its next item: the cases whose target
    is one of their history's cold items over the (case, cold history item) pairs (None without
    any pair: no evidence). The mass a just-seen cold item gets (ColdStartConfig.repeat): counted
    rather than searched, because a handful of such cases, each a first-place hit when the item
    keeps its likeness to itself, would otherwise decide it for every request (amazon: 4 to 10
    validation cases at a rate of 1%; on test 0.1 to 0.9%)."""
    cold = np.unique(np.asarray(list(cold_ids), dtype=np.int64))
    pairs = events = 0
    for c in cases:
        mine = history_rows(cold, c.history)
        pairs += len(mine)
        events += bool(len(mine)) and int(c.target) in cold[mine]
    return None if pairs == 0 else events / pairs


def runtime_answers(rec, cases, *, profiles=None, k: int = 10, beam: int | None = None,
                    batch_size: int = 32) -> list[tuple[list[int], list[float], list[float]]]:
    """(items, scores, logprobs) of a Recommender for each case, with its cold start off for the
    duration (the grid adds the cold items itself)."""
    saved = rec.cold_start
    rec.set_cold_start(None)
    try:
        return served_answers(rec, cases, profiles=profiles, k=k, beam=beam,
                              batch_size=batch_size)
    finally:
        rec.set_cold_start(saved)


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
        # the positions of each case's own history items among the cold ones (`repeat`)
        self.seen = [history_rows(self.cold, h) for h in self.known]
        self._cos: dict[tuple[int, str], list[np.ndarray]] = {}
        self._short: tuple = ()  # (view, k, answers, shortlists) of the last call
        self._pack: tuple = ()   # (view, k, answers, packed arrays) of the last call

    def cosines(self, history: int, query: str = "max") -> list[np.ndarray]:
        """Per case, each cold item's cosine to its newest `history` items under `query` (the
        largest, or to their mean direction; cached)."""
        key = (history, query)
        if key not in self._cos:
            self._cos[key] = [similarities(self.dirs, query_directions(
                None if q is None else q[-history:], query)) for q in self.queries]
        return self._cos[key]

    def lists(self, answers, cfg: ColdStartConfig | None, k: int = 10,
              eligible=None) -> list[list[int]]:
        """Each case's top k: the answer alone (cfg None) or mixed with the cold items
        (`eligible(item)`: whether a cold item outside the beam may be answered; None: all)."""
        if cfg is None or len(self.cold) == 0:
            return [list(a[0][:k]) for a in answers]
        if eligible is not None:
            return [mix(*a, self.cold, history_mass(self.cold, content_scores(cos, cfg), h,
                                                    cfg.repeat), eligible, k, cfg.slots)[0]
                    for a, cos, h in zip(answers, self.cosines(cfg.history, cfg.query),
                                         self.known)]
        items, valid = self.table(answers, cfg, k)
        return [row[ok].tolist() for row, ok in zip(items, valid)]

    def table(self, answers, cfg: ColdStartConfig | None, k: int = 10
              ) -> tuple[np.ndarray, np.ndarray]:
        """(items, valid): every case's top k as one (cases x k) array, with every item eligible,
        and where a list is shorter than k, negative placeholders (valid False). `mix` over
        each case's shortlist, done for all the cases at once: the same operations on the same
        numbers, so the same lists (the tests compare them), about 30x faster over a grid."""
        view = (1, "max") if cfg is None else (cfg.history, cfg.query)
        bi, bs, bvalid, bcold, ci, cc, cseen, cinb = self._packed(answers, view, k)
        if cfg is None or len(self.cold) == 0:
            items, valid = bi[:, :k], bvalid[:, :k]
        else:
            sc = content_scores(cc, cfg)
            if cfg.repeat is not None:
                sc[cseen] = math.log(cfg.repeat) if cfg.repeat > 0 else -math.inf
            # a cold item the beam reached: both masses (log-sum-exp)
            beam = bs.copy()
            r, c = np.nonzero(bcold >= 0)
            beam[r, c] = np.logaddexp(bs[r, c], sc[r, bcold[r, c]])
            # the best cold items from outside the beam, ties to the lower id, up to the cap
            out = np.where(cinb, -math.inf, sc)
            room = k if cfg.slots is None else min(k, cfg.slots)
            at = np.argsort(-out, axis=1, kind="stable")[:, :room]
            ps = np.take_along_axis(out, at, axis=1)
            scores = np.concatenate([beam, ps], axis=1)
            ids = np.concatenate([bi, np.take_along_axis(ci, at, axis=1)], axis=1)
            ok = np.concatenate([bvalid, ps > -math.inf], axis=1)
            # best score first, ties in the order mix lists them (the beam's, then the cold)
            fin = np.argsort(np.where(ok, -scores, math.inf), axis=1, kind="stable")[:, :k]
            items = np.take_along_axis(ids, fin, axis=1)
            valid = np.take_along_axis(ok, fin, axis=1)
        items = np.where(valid, items, -1 - np.arange(items.shape[1]))
        return items, valid

    def _packed(self, answers, view: tuple[int, str], k: int) -> tuple:
        """The answers and their shortlists (`_shortlists`) as padded arrays, for `table`:
        beam items, scores, valid, the shortlist column of a cold beam item (-1: warm); the
        shortlist's items, cosines (-inf: padding), whether in the history, in the beam.
        Cached for the last `answers` list and (history, query) `view` asked for."""
        cached = self._pack
        if cached and cached[:2] == (view, k) and cached[2] is answers:
            return cached[3]
        short = self._shortlists(answers, view, k)
        n = len(answers)
        width = max([len(a[0]) for a in answers] + [1])
        depth = max([len(s[0]) for s in short] + [1])
        bi = np.full((n, width), -1, dtype=np.int64)
        bs = np.full((n, width), -math.inf)
        bvalid = np.zeros((n, width), dtype=bool)
        bcold = np.full((n, width), -1, dtype=np.int64)
        ci = np.zeros((n, depth), dtype=np.int64)
        cc = np.full((n, depth), -math.inf)
        cseen = np.zeros((n, depth), dtype=bool)
        cinb = np.zeros((n, depth), dtype=bool)
        for row, (a, (ids, cos, seen)) in enumerate(zip(answers, short)):
            first: dict[int, float] = {}
            for item, score in zip(a[0], a[1]):   # mix keeps an item's first entry
                first.setdefault(int(item), float(score))
            m = len(first)
            bi[row, :m] = list(first)
            bs[row, :m] = list(first.values())
            bvalid[row, :m] = True
            ci[row, :len(ids)] = ids
            cc[row, :len(ids)] = cos
            cseen[row, seen] = True
            if len(ids):
                at, hit = find_sorted(ids, bi[row, :m])
                bcold[row, :m][hit] = at[hit]
                cinb[row, at[hit]] = True
        packed = (bi, bs, bvalid, bcold, ci, cc, cseen, cinb)
        self._pack = (view, k, answers, packed)
        return packed

    def _shortlists(self, answers, view: tuple[int, str], k: int
                    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per case, the only cold items `mix` can use when every item is eligible, with their
        cosines and the positions of the case's own history items among them: the answer's own
        cold items, the history's, and the best k + len(answer) of the others by cosine (a
        content mass rises with the cosine under any settings, and `repeat` only sets the
        history's, so the best cold items are among these for every setting). The same lists as
        the whole cold set, faster over a grid (about 1.7x on 700 cold items); cached for the
        last `answers` list asked for."""
        cached = self._short
        if cached and cached[:2] == (view, k) and cached[2] is answers:
            return cached[3]
        out = []
        for a, cos, seen in zip(answers, self.cosines(*view), self.seen):
            m = k + len(a[0])
            others = cos
            if len(seen):
                others = cos.copy()
                others[seen] = -math.inf
            best = np.fromiter(islice(_best_first(others, m), m), dtype=np.int64)
            own = np.flatnonzero(np.isin(self.cold, a[0]))
            sub = np.union1d(np.union1d(best, own), seen)
            out.append((self.cold[sub], cos[sub], np.searchsorted(sub, seen)))
        self._short = (view, k, answers, out)
        return out


def choose_cold_start(answers, cases, sids, cold_ids, *, k: int = 10, grid=None,
                      max_loss: float | None = None, max_cost: float = MAX_COST,
                      cold_share: float | None = None
                      ) -> tuple[ColdStartConfig | None, list[dict]]:
    """(the chosen settings or None for off, every trial's metrics) on validation `cases` with
    the model's `answers` (runtime_answers, or the reference decoder's), `sids` the served SID
    table, `cold_ids` the items the model never trained on; see the module doc (`cold_share`:
    `pick`'s)."""
    check_rule(max_loss, max_cost, cold_share)
    cand = ColdCandidates(sids, cold_ids, cases)
    if grid is None:
        grid = settings_grid(repeat_rate(cases, cand.cold))
    targets = np.array([c.target for c in cases], dtype=np.int64)
    cold_case = np.isin(targets, cand.cold)
    trials = []
    for cfg in (None, *grid):
        hit = cand.table(answers, cfg, k)[0] == targets[:, None]
        ranks = np.where(hit.any(axis=1), hit.argmax(axis=1) + 1, 0)
        m = {"all": rank_metrics_of(ranks)}
        for part, mask in (("cold", cold_case), ("warm", ~cold_case)):
            if mask.any():
                m[part] = rank_metrics_of(ranks[mask])
        trials.append({"settings": None if cfg is None else cfg.to_dict(), "metrics": m})
    return pick(trials, max_loss=max_loss, max_cost=max_cost, cold_share=cold_share), trials


def pick(trials: list[dict], *, max_loss: float | None = None, max_cost: float = MAX_COST,
         cold_share: float | None = None) -> ColdStartConfig | None:
    """The rule of the module doc applied to `choose_cold_start`'s trials (off first), so that
    other rules can be compared on the same trials. `cold_share`: the share of the served cases
    whose target is cold, where it differs from validation's (`served_cold_share`); the overall
    metrics the rule compares are then the cold and warm cases' reweighted to it."""
    check_rule(max_loss, max_cost, cold_share)
    ok = range(len(trials))
    parts = trials[0]["metrics"]
    both = "cold" in parts and "warm" in parts

    def overall(n: int, key: str) -> float:
        m = trials[n]["metrics"]
        if cold_share is None or not both:
            return m["all"][key]
        return at_share(m["cold"], m["warm"], cold_share, key)

    if max_loss is not None and both:
        off = parts["warm"]
        ok = [n for n in ok if all(trials[n]["metrics"]["warm"][key] >= (1 - max_loss) * off[key]
                                   for key in ("HR@10", "NDCG@10"))]
    if max_cost > 0 and "cold" in parts:
        best = most_exposed(ok, overall, lambda n, key: trials[n]["metrics"]["cold"][key],
                            max_cost)
    else:
        best = max(ok, key=lambda n: (overall(n, "NDCG@10"), overall(n, "HR@10"), -n))
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


def at_share(m_cold: dict, m_warm: dict, share: float, key: str) -> float:
    """Metric `key` of all cases from the cold and warm cases', the cold ones at `share`."""
    return share * m_cold[key] + (1 - share) * m_warm[key]


def most_exposed(candidates: Sequence, overall, cold, max_cost: float, reference=None):
    """The exposure rule, shared by the cold-start settings and the re-ranker's cold offset:
    among `candidates` whose overall HR@10 and NDCG@10 (`overall(c, key)`) are each within
    `max_cost` of the reference's, the one that ranks the cold cases best (`cold(c, key)`:
    NDCG@10, then HR@10, then overall NDCG@10, then the first): the exposure a deployment buys
    for new items at a stated price. The reference is the best overall candidate (best NDCG@10,
    then HR@10, then the first), or `reference` ({"HR@10": .., "NDCG@10": ..}) where given:
    what the same recipe scores without cold start, the price's own terms (issue 27); where no
    candidate is within it, the best overall one."""
    keys = ("HR@10", "NDCG@10")
    # max() keeps the first of equal keys
    best = max(candidates, key=lambda c: (overall(c, "NDCG@10"), overall(c, "HR@10")))
    top = {key: overall(best, key) for key in keys} if reference is None else reference
    within = [c for c in candidates if all(overall(c, key) >= (1 - max_cost) * top[key]
                                           for key in keys)]
    if not within:
        return best
    return max(within, key=lambda c: (cold(c, "NDCG@10"), cold(c, "HR@10"),
                                      overall(c, "NDCG@10")))


def check_rule(max_loss, max_cost, cold_share=None) -> None:
    """A clear error for an exposure rule's arguments out of range."""
    if cold_share is not None and (isinstance(cold_share, bool) or not (
            isinstance(cold_share, (int, float)) and 0 <= cold_share <= 1)):
        raise InvalidArgumentError(f"cold_share={cold_share!r}; expected None or a number in "
                                   "[0, 1]")
    if max_loss is not None and (isinstance(max_loss, bool) or not (
            isinstance(max_loss, (int, float)) and 0 <= max_loss < 1)):
        raise InvalidArgumentError(f"max_loss={max_loss!r}; expected None or a number in [0, 1)")
    if isinstance(max_cost, bool) or not (isinstance(max_cost, (int, float)) and 0 <= max_cost < 1):
        raise InvalidArgumentError(f"max_cost={max_cost!r}; expected a number in [0, 1)")
