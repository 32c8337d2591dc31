"""Scoring an exported bundle: the same cases and metric code as a checkpoint, through the runtime."""

from __future__ import annotations

import time

from .metrics import rank_metrics


def evaluate_bundle(rec, cases, *, profiles=None, beam: int | None = None, k: int = 10,
                    batch_size: int = 32, progress: bool = False, ranked: list | None = None) -> dict:
    """HR@K / NDCG@K (K = 1, 3, 5, 10) of a Recommender over `cases` (user_id, history, target).
    `beam`: None for the bundle's own (its search_beam). `ranked`: a list that receives each
    case's ranked item ids."""
    from tqdm.auto import tqdm

    reqs = []
    for c in cases:  # a profile record: the Recommender writes it with the bundle's template
        prof = profiles.get(c.user_id) if profiles is not None else None
        reqs.append({"history": list(c.history), "profile": prof, "k": k, "beam": beam})
    t0 = time.perf_counter()
    ranked = [] if ranked is None else ranked
    for s in tqdm(range(0, len(reqs), batch_size), desc="eval", unit="batch", disable=not progress):
        ranked.extend([r.item_id for r in recs] for recs in rec.recommend_batch(reqs[s:s + batch_size]))
    metrics = rank_metrics(ranked, [c.target for c in cases])
    metrics["seconds"] = round(time.perf_counter() - t0, 2)
    return metrics


def served_answers(rec, cases, *, profiles=None, k: int = 10, beam: int | None = None,
                   batch_size: int = 32) -> list[tuple[list[int], list[float], list[float]]]:
    """(items, scores, logprobs) a Recommender serves for each case, with its settings as they
    are (the procedures that choose a setting switch it off around this call)."""
    out = []
    for s in range(0, len(cases), batch_size):
        reqs = [{"history": list(c.history), "k": k, "beam": beam,
                 "profile": profiles.get(c.user_id) if profiles is not None else None}
                for c in cases[s:s + batch_size]]
        for recs in rec.recommend_batch(reqs):
            out.append(([r.item_id for r in recs], [r.score for r in recs],
                        [r.logprob for r in recs]))
    return out
