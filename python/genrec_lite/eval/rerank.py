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
then refitted on all of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..errors import InvalidArgumentError
from ..runtime.rerank import COLD, FEATURES, SUCCESSORS, WARM_FEATURES, Reranker, columns, serve
from .metrics import rank_metrics

if TYPE_CHECKING:  # pragma: no cover
    from ..runtime import Recommender

LAMBDAS = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0)   # L2 penalties tried (on the summed log-loss)
FOLDS = 2
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
                    lambdas: Sequence[float] = LAMBDAS, folds: int = FOLDS, seed: int = 0
                    ) -> tuple[Reranker | None, list[dict]]:
    """(the re-ranker refitted on all cases with the kind and penalty of the best
    cross-validated NDCG@10, or None when none beats the model's order; one row per kind and
    penalty and one for off, each with the cross-validated HR/NDCG@1,3,5,10 of the lists
    served). The kind with cold candidates is tried where the pools hold any (pools built for
    it: Pool.joint)."""
    if len(inputs) != len(targets):
        raise InvalidArgumentError(f"{len(inputs)} cases of candidates and {len(targets)} "
                                   "targets; expected one target per case")
    if folds < 2 or len(inputs) < folds:
        raise InvalidArgumentError(f"folds={folds} for {len(inputs)} cases; expected 2 <= folds "
                                   "<= the number of cases")
    fold = np.random.default_rng(seed).permutation(len(inputs)) % folds
    targets = [int(t) for t in targets]
    off = rank_metrics(lists(inputs, None), targets)
    rows = [{"lambda": None, "cold": 0, **off}]
    n_cold = max((len(p.items) - p.n_warm for _, _, p in inputs if p.joint), default=0)
    best = None
    for cold in (0, n_cold) if n_cold else (0,):
        for lam in lambdas:
            served: list = [None] * len(inputs)
            for f in range(folds):
                train = [n for n in range(len(inputs)) if fold[n] != f]
                held = [n for n in range(len(inputs)) if fold[n] == f]
                model = fitted([inputs[n] for n in train], [targets[n] for n in train], lam,
                               cold=cold)
                for n, items in zip(held, lists([inputs[n] for n in held], model)):
                    served[n] = items
            m = rank_metrics(served, targets)
            rows.append({"lambda": float(lam), "cold": cold, **m})
            if best is None or m["NDCG@10"] > best[2]:
                best = (float(lam), cold, m["NDCG@10"])
    if best is None or best[2] <= off["NDCG@10"]:
        return None, rows
    return fitted(inputs, targets, best[0], cold=best[1]), rows
