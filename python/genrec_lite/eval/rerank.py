"""Fitting the re-ranker (runtime/rerank.py) on validation cases.

The served bundle answers the validation cases once with the re-ranker and transition weight off
(`Recommender.rerank_candidates`): each case's top k after the cold-start mixture, the places its
cold items hold, and the candidates with their feature rows, computed by the runtime's own code:
the warm ones, and the `COLD` cold items closest in content to the newest history items. Two
kinds of re-ranker are fitted on them: one that re-ranks the warm candidates around the
mixture's cold places, and one that ranks warm and cold candidates together (it learns where
items without model evidence belong from the cases whose next item was cold). The weights are a
conditional logit over each case's candidates (the probability that the next item is candidate
i is softmax(w . x_i) over the case's candidates), fitted by Newton's method with an L2 penalty
on standardised features; a case whose next item is not among its candidates does not enter the
fit (nothing can lift it). The kind and the penalty are chosen by k-fold cross-validation on
NDCG@10 of the lists the runtime would serve (`lists`); the re-ranker is kept only when its
cross-validated NDCG@10 beats the model's own order (with the mixture) on the same cases, and is
then refitted on all of them. Where the cases whose next item is cold are known, the joint kind
is tried with offsets added to the cold candidates' scores, and the exposure price of the
cold-start settings (eval/cold_start.py) chooses among the trials (`choose_reranker`), stated
against what the same model and procedure score with cold start off (`choose_served`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..errors import InvalidArgumentError
from ..runtime.rerank import COLD, FEATURES, SUCCESSORS, WARM_FEATURES, Reranker, columns, serve
from .cold_start import MAX_COST, at_share, check_rule, most_exposed
from .metrics import rank_metrics

if TYPE_CHECKING:  # pragma: no cover
    from ..runtime import Recommender

LAMBDAS = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0)   # L2 penalties tried (on the summed log-loss)
FOLDS = 2
OFFSETS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)   # log-odds added to cold candidates, tried
_WARM_COLS = columns(WARM_FEATURES)


def rerank_inputs(rec: "Recommender", cases, *, profiles=None, k: int = 10,
                  batch_size: int = 32, cold: int = COLD) -> list[tuple]:
    """(places, answer, pool) per case (Recommender.rerank_candidates, with `cold` cold
    candidates), the bundle's serving point and cold-start settings as they are."""
    out = []
    for s in range(0, len(cases), batch_size):
        reqs = [{"history": list(c.history), "k": k,
                 "profile": profiles.get(c.user_id) if profiles is not None else None}
                for c in cases[s:s + batch_size]]
        out.extend(rec.rerank_candidates(reqs, cold=cold))
    return out


def lists(inputs: Sequence[tuple], reranker: Reranker | None, k: int = 10) -> list[list[int]]:
    """The item lists the runtime serves for `inputs` with `reranker` (None: the answer as the
    model and the cold-start mixture ordered it)."""
    if reranker is None:
        return [[int(i) for i in answer[0]] for _, answer, _ in inputs]
    return [serve(reranker, slots, answer, pool, k)[0] for slots, answer, pool in inputs]


def fit_weights(rows: Sequence[np.ndarray], targets: Sequence[int], lam: float,
                iters: int = 100) -> np.ndarray:
    """The conditional logit's weights: rows[n] holds case n's candidates' standardised feature
    rows, targets[n] the index of its next item among them (cases without one are left out by
    the caller). Newton steps with a halving line search on the penalised log-loss."""
    f = rows[0].shape[1]
    m = max(len(r) for r in rows)
    A = np.zeros((len(rows), m, f))
    mask = np.zeros((len(rows), m), dtype=bool)
    for n, r in enumerate(rows):
        A[n, :len(r)] = r
        mask[n, :len(r)] = True
    Y = A[np.arange(len(rows)), np.asarray(targets)]

    def loss_terms(w):
        s = np.where(mask, A @ w, -np.inf)
        top = s.max(axis=1, keepdims=True)
        e = np.exp(s - top)
        z = e.sum(axis=1, keepdims=True)
        loss = float(np.sum(np.log(z[:, 0]) + top[:, 0] - Y @ w) + lam * w @ w)
        return loss, e / z

    w = np.zeros(f)
    loss, p = loss_terms(w)
    for _ in range(iters):
        ex = np.einsum("nm,nmf->nf", p, A)
        g = (ex - Y).sum(axis=0) + 2 * lam * w
        h = np.einsum("nm,nmf,nmg->fg", p, A, A) - ex.T @ ex + 2 * lam * np.eye(f)
        step = np.linalg.solve(h, g)
        t = 1.0
        while True:
            new_loss, new_p = loss_terms(w - t * step)
            if new_loss <= loss or t < 1e-6:
                break
            t /= 2
        w, loss, p = w - t * step, new_loss, new_p
        if np.max(np.abs(t * step)) < 1e-8:
            break
    return w


def _rows(pool, cold: bool) -> tuple[np.ndarray, list[int]]:
    """The feature rows and items a re-ranker of that kind ranks in one pool: all candidates
    over FEATURES, or the warm ones over WARM_FEATURES."""
    if cold:
        return pool.X, pool.items
    return pool.X[:pool.n_warm][:, _WARM_COLS], pool.items[:pool.n_warm]


def fitted(inputs: Sequence[tuple], targets: Sequence[int], lam: float,
           successors: int = SUCCESSORS, cold: int = 0) -> Reranker:
    """The re-ranker fitted on `inputs` (rerank_inputs) and their next items at penalty `lam`;
    with `cold` > 0 one that ranks the pools' cold candidates too (`cold` of them a request)."""
    names = FEATURES if cold else WARM_FEATURES
    X = np.concatenate([_rows(pool, bool(cold))[0] for _, _, pool in inputs if len(pool.items)]
                       or [np.zeros((1, len(names)))])
    mean, scale = X.mean(axis=0), X.std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    rows, at = [], []
    for (_, _, pool), t in zip(inputs, targets):
        Xp, items = _rows(pool, bool(cold))
        if int(t) in items:
            rows.append((Xp - mean) / scale)
            at.append(items.index(int(t)))
    w = fit_weights(rows, at, lam) if rows else np.zeros(len(names))
    return Reranker(w, mean, scale, successors, names, cold)


def choose_reranker(inputs: Sequence[tuple], targets: Sequence[int], *,
                    lambdas: Sequence[float] = LAMBDAS, folds: int = FOLDS, seed: int = 0,
                    cold_targets: Sequence[bool] | None = None, cold_share: float | None = None,
                    max_cost: float = MAX_COST, offsets: Sequence[float] = OFFSETS,
                    reference: dict | None = None) -> tuple[Reranker | None, list[dict]]:
    """(the re-ranker refitted on all cases with the kind, penalty and cold offset chosen by
    cross-validation, or None when none beats the model's order; one row per trial and one for
    off, each with the cross-validated HR/NDCG@1,3,5,10 of the lists served, the chosen one
    marked "chosen"). The kind with cold
    candidates is tried where the pools hold any (pools built for it: Pool.joint).

    Without `cold_targets` the trial of the best NDCG@10 is chosen. With them (a flag per case:
    its next item is cold) the joint kind is tried with each of `offsets` added to the cold
    candidates' scores too, and the exposure rule of the cold-start settings chooses
    (eval/cold_start.most_exposed): among the trials that beat the model's order and whose
    HR@10 and NDCG@10 are each within `max_cost` of `reference`'s (what the recipe scores
    without cold start: `choose_served`) or, without one, of the best trial's, the one that
    ranks the cold cases best (their NDCG@10, then HR@10, then all cases' NDCG@10); none within
    the reference: the best trial. All cases' metrics are taken with the cold ones at
    `cold_share` of them where given (the share the served model will see), else as they
    come."""
    if len(inputs) != len(targets):
        raise InvalidArgumentError(f"{len(inputs)} cases of candidates and {len(targets)} "
                                   "targets; expected one target per case")
    if folds < 2 or len(inputs) < folds:
        raise InvalidArgumentError(f"folds={folds} for {len(inputs)} cases; expected 2 <= folds "
                                   "<= the number of cases")
    if cold_targets is not None and len(cold_targets) != len(targets):
        raise InvalidArgumentError(f"{len(cold_targets)} cold_targets flags for {len(targets)} "
                                   "cases; expected one per case")
    check_rule(None, max_cost, cold_share)
    if reference is not None and not (isinstance(reference, dict) and all(
            isinstance(reference.get(k), (int, float)) and np.isfinite(reference[k])
            and reference[k] >= 0 for k in ("HR@10", "NDCG@10"))):
        raise InvalidArgumentError(f"reference={reference!r:.80}; expected None or a dict of "
                                   "finite 'HR@10' and 'NDCG@10' >= 0")
    if any(not (isinstance(b, (int, float)) and np.isfinite(b) and b >= 0) for b in offsets) \
            or 0.0 not in [float(b) for b in offsets]:
        raise InvalidArgumentError(f"offsets={list(offsets)!r}; expected finite numbers >= 0, "
                                   "0 among them")
    fold = np.random.default_rng(seed).permutation(len(inputs)) % folds
    targets = [int(t) for t in targets]
    flags = None if cold_targets is None else np.asarray(cold_targets, dtype=bool)
    priced = flags is not None and flags.any() and not flags.all()

    def scored(served: list) -> dict:
        m = rank_metrics(served, targets)
        if not priced:
            return {**m, "priced": {k: m[k] for k in ("HR@10", "NDCG@10")}}
        part = {name: rank_metrics([served[n] for n in idx], [targets[n] for n in idx])
                for name, idx in (("cold", np.flatnonzero(flags)),
                                  ("warm", np.flatnonzero(~flags)))}
        share = float(flags.mean()) if cold_share is None else float(cold_share)
        return {**m, "priced": {k: at_share(part["cold"], part["warm"], share, k)
                                for k in ("HR@10", "NDCG@10")},
                "cold_cases": {k: part["cold"][k] for k in ("HR@10", "NDCG@10")}}

    off = scored(lists(inputs, None))
    rows = [{"lambda": None, "cold": 0, "offset": 0.0, **off}]
    n_cold = max((len(p.items) - p.n_warm for _, _, p in inputs if p.joint), default=0)
    for cold in (0, n_cold) if n_cold else (0,):
        tried = sorted({float(b) for b in offsets}) if cold and priced else [0.0]
        for lam in lambdas:
            served: dict[float, list] = {b: [None] * len(inputs) for b in tried}
            for f in range(folds):
                train = [n for n in range(len(inputs)) if fold[n] != f]
                held = [n for n in range(len(inputs)) if fold[n] == f]
                model = fitted([inputs[n] for n in train], [targets[n] for n in train], lam,
                               cold=cold)
                for b in tried:
                    shifted = with_cold_offset(model, b)
                    for n, items in zip(held, lists([inputs[n] for n in held], shifted)):
                        served[b][n] = items
            for b in tried:
                rows.append({"lambda": float(lam), "cold": cold, "offset": b, **scored(served[b])})
    trials = rows[1:]
    best = max(trials, key=lambda r: (r["priced"]["NDCG@10"], r["priced"]["HR@10"]))
    if best["priced"]["NDCG@10"] <= off["priced"]["NDCG@10"]:
        return None, rows
    chosen = best
    if priced:   # the cold-start settings' exposure rule, among the trials that beat off
        chosen = most_exposed([r for r in trials
                               if r["priced"]["NDCG@10"] > off["priced"]["NDCG@10"]],
                              lambda r, key: r["priced"][key], lambda r, key: r["cold_cases"][key],
                              max_cost, reference)
    chosen["chosen"] = True
    model = fitted(inputs, targets, chosen["lambda"], cold=chosen["cold"])
    return with_cold_offset(model, chosen["offset"]), rows


def cold_flags(rec: "Recommender", cases) -> np.ndarray:
    """Per case, whether its next item is one of `rec`'s cold items (choose_reranker's
    `cold_targets`)."""
    return np.isin([int(c.target) for c in cases], rec.catalog.state.cold)


@dataclass
class Choice:
    """What `choose_served` chose, and on what."""
    reranker: Reranker | None       # None: off
    rows: list[dict]                # choose_reranker's rows
    inputs: list[tuple]             # the candidates the re-ranker was fitted on (rerank_inputs)
    reference: dict | None          # priced HR@10 / NDCG@10 without cold start (None: not used)


def choose_served(rec: "Recommender", cases, *, profiles=None, seed: int = 0,
                  cold_share: float | None = None, max_cost: float = MAX_COST) -> Choice:
    """The re-ranker for `rec` as it serves `cases` (its point and cold start as set), chosen by
    `choose_reranker`. Where cold start is on and some but not all next items are cold, the
    price of exposing them is stated against the same recipe without cold start: `rec` answers
    the cases once more with it off, a re-ranker is chosen on those answers, and its priced
    HR@10 / NDCG@10 (the model's order where none is kept) are the reference. Exposure then
    costs at most `max_cost` of what the deployment would have scored without cold start,
    rather than of the best trial with it (which cold start itself may have lifted)."""
    targets = [int(c.target) for c in cases]
    flags = cold_flags(rec, cases)
    reference = None
    if rec.cold_start is not None and flags.any() and not flags.all():
        saved = rec.cold_start
        rec.set_cold_start(None)
        try:
            plain = rerank_inputs(rec, cases, profiles=profiles)
        finally:
            rec.set_cold_start(saved)
        _, rows = choose_reranker(plain, targets, seed=seed, cold_targets=flags,
                                  cold_share=cold_share, max_cost=max_cost)
        row = next((r for r in rows if r.get("chosen")), rows[0])
        reference = dict(row["priced"])
    inputs = rerank_inputs(rec, cases, profiles=profiles)
    reranker, rows = choose_reranker(inputs, targets, seed=seed, cold_targets=flags,
                                     cold_share=cold_share, max_cost=max_cost,
                                     reference=reference)
    return Choice(reranker, rows, inputs, reference)


def with_cold_offset(model: Reranker, offset: float) -> Reranker:
    """`model` with `offset` added to every cold candidate's score: folded into the weight of
    its standardised `cold` feature, so that a bundle carries it as any re-ranker."""
    if not offset:
        return model
    if "cold" not in model.features:
        raise InvalidArgumentError(f"cold offset {offset} for a re-ranker without the 'cold' "
                                   f"feature (features {model.features})")
    w = model.weights.copy()
    j = model.features.index("cold")
    w[j] += offset * model.scale[j]
    return Reranker(w, model.mean, model.scale, model.successors, model.features, model.cold)
