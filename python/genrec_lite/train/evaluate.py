"""Scoring a checkpoint: next-item HR@K/NDCG@K with the reference decoder, title -> SID accuracy."""

from __future__ import annotations

import time

import numpy as np

from ..eval.metrics import rank_metrics
from ..prompts import PromptSet, profile_text
from .decode import ReferenceDecoder
from .tasks import next_item_prompt, short_title


def case_prompts(cases, sids, prompts: PromptSet, *, profiles=None, profile_template=None,
                 max_history: int = 10) -> list[str]:
    out = []
    for c in cases:
        prof = profile_text(profiles.get(c.user_id), profile_template) if profiles is not None else ""
        out.append(next_item_prompt(c.history[-max_history:], sids, prompts, prof))
    return out


def evaluate_cases(model, tokenizer, sids, cases, prompts: PromptSet, *, profiles=None,
                   profile_template=None, max_history=10, beam=20, k=10, batch_size=32,
                   constrained=True, progress=False) -> dict:
    """HR@K / NDCG@K (K = 1, 3, 5, 10) over `cases`; with constrained=False also the share of
    free generations whose best beam is not a real item."""
    from tqdm.auto import tqdm

    dec = ReferenceDecoder(model, tokenizer, sids)
    texts = case_prompts(cases, sids, prompts, profiles=profiles, profile_template=profile_template,
                         max_history=max_history)
    t0 = time.perf_counter()
    recs = []
    for s in tqdm(range(0, len(texts), batch_size), desc="eval", unit="batch", disable=not progress):
        recs.extend(dec.recommend(texts[s:s + batch_size], k=k, beam=beam, batch_size=batch_size,
                                  constrained=constrained))
    metrics = rank_metrics([r.items for r in recs], [c.target for c in cases])
    metrics["seconds"] = round(time.perf_counter() - t0, 2)
    if not constrained:
        metrics["invalid_rate"] = float(np.mean([not r.valid for r in recs])) if recs else 0.0
    return metrics


def title_to_sid_accuracy(model, tokenizer, sids, catalog, prompts: PromptSet, *, beam=20,
                          batch_size=32, limit: int | None = None, seed: int = 0) -> dict:
    """Exact-match accuracy of title -> SID search over the catalog (best beam's SID equals the
    item's SID). `limit` scores a seeded random sample instead of every item."""
    ids = [i for i in catalog.item_ids.tolist() if i in sids]
    if limit and limit < len(ids):
        rng = np.random.default_rng(seed)
        ids = sorted(rng.choice(ids, size=limit, replace=False).tolist())
    titles = {i: t for i, t in zip(catalog.item_ids.tolist(), catalog.titles)}
    texts = [prompts.title_to_sid_prompt(short_title(titles[i])) for i in ids]
    dec = ReferenceDecoder(model, tokenizer, sids)
    recs = dec.recommend(texts, k=1, beam=beam, batch_size=batch_size)
    hits = [bool(r.sids) and tuple(r.sids[0]) == sids.codes_of(i) for r, i in zip(recs, ids)]
    return {"title_to_sid_accuracy": float(np.mean(hits)) if hits else 0.0, "n_items": len(ids)}
