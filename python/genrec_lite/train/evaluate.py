"""Scoring a checkpoint: next-item HR@K/NDCG@K with the reference decoder, title -> SID accuracy."""

from __future__ import annotations

import time

import numpy as np

from ..eval.metrics import rank_metrics
from ..prompts import PromptSet, profile_text
from .decode import ReferenceDecoder
from .tasks import next_item_prompt, short_title


def validation_sample(cases: list, n: int, seed: int) -> list:
    """The fixed sample of at most `n` validation cases scored every epoch (seeded, in order)."""
    if len(cases) <= n:
        return list(cases)
    rows = np.sort(np.random.default_rng(seed).choice(len(cases), n, replace=False))
    return [cases[i] for i in rows]


def case_prompts(cases, sids, prompts: PromptSet, *, profiles=None, profile_template=None,
                 max_history: int = 10) -> list[str]:
    out = []
    for c in cases:
        prof = profile_text(profiles.get(c.user_id), profile_template) if profiles is not None else ""
        out.append(next_item_prompt(c.history[-max_history:], sids, prompts, prof))
    return out


def recommend_cases(model, tokenizer, sids, cases, prompts: PromptSet, *, profiles=None,
                    profile_template=None, max_history=10, beam=20, k=10, batch_size=32,
                    constrained=True, progress=False, side_beam: int | None = None
                    ) -> tuple[list[tuple[list[int], list[float]]], list[bool]]:
    """The reference decoder's top-k (items, scores) per case, and per case whether the best
    beam was a real item (free decoding). With several SID views (SidViews) each view is
    decoded from the history written in it, its whole beam kept, and the views fused; the views
    after the first search at most `side_beam` (None: `beam`), as the runtime's do."""
    from tqdm.auto import tqdm

    from ..sid import SidViews, fuse, view_beam

    views = SidViews.of(sids)
    answers, valid = [[] for _ in cases], [True] * len(cases)
    bar = tqdm(total=len(views) * len(cases), desc="eval", unit="case", disable=not progress)
    for v, view in enumerate(views):
        width = view_beam(v, beam, side_beam)
        per_view = k if len(views) == 1 else max(k, width) if v == 0 else width
        dec = ReferenceDecoder(model, tokenizer, view)
        texts = case_prompts(cases, view, prompts, profiles=profiles,
                             profile_template=profile_template, max_history=max_history)
        for s in range(0, len(texts), batch_size):
            recs = dec.recommend(texts[s:s + batch_size], k=per_view, beam=width,
                                 batch_size=batch_size, constrained=constrained)
            for i, r in enumerate(recs, s):
                answers[i].append((r.items, r.scores))
                valid[i] = valid[i] and r.valid
            bar.update(len(recs))
    bar.close()
    return [fuse(a, k) for a in answers], valid


def evaluate_cases(model, tokenizer, sids, cases, prompts: PromptSet, *, profiles=None,
                   profile_template=None, max_history=10, beam=20, k=10, batch_size=32,
                   constrained=True, progress=False, side_beam: int | None = None) -> dict:
    """HR@K / NDCG@K (K = 1, 3, 5, 10) over `cases`; with constrained=False also the share of
    free generations whose best beam is not a real item (in any view). `side_beam`: see
    recommend_cases."""
    t0 = time.perf_counter()
    recs, valid = recommend_cases(model, tokenizer, sids, cases, prompts, profiles=profiles,
                                  profile_template=profile_template, max_history=max_history,
                                  beam=beam, k=k, batch_size=batch_size, constrained=constrained,
                                  progress=progress, side_beam=side_beam)
    metrics = rank_metrics([items for items, _ in recs], [c.target for c in cases])
    metrics["seconds"] = round(time.perf_counter() - t0, 2)
    if not constrained:
        metrics["invalid_rate"] = float(np.mean([not v for v in valid])) if valid else 0.0
    return metrics


def title_to_sid_accuracy(model, tokenizer, sids, catalog, prompts: PromptSet, *, beam=20,
                          batch_size=32, limit: int | None = None, seed: int = 0) -> dict:
    """Exact-match accuracy of title -> SID search over the catalog (best beam's SID equals the
    item's SID). `limit` scores a seeded random sample instead of every item. With several SID
    views, the search runs in each (the same prompt, that view's trie) and the accuracy is
    their mean, each view's beside it."""
    from ..sid import SidViews

    views = SidViews.of(sids)
    ids = [i for i in catalog.item_ids.tolist() if i in views]
    if limit and limit < len(ids):
        rng = np.random.default_rng(seed)
        ids = sorted(rng.choice(ids, size=limit, replace=False).tolist())
    titles = {i: t for i, t in zip(catalog.item_ids.tolist(), catalog.titles)}
    texts = [prompts.title_to_sid_prompt(short_title(titles[i])) for i in ids]
    per_view = []
    for view in views:
        recs = ReferenceDecoder(model, tokenizer, view).recommend(texts, k=1, beam=beam,
                                                                  batch_size=batch_size)
        hits = [bool(r.sids) and tuple(r.sids[0]) == view.codes_of(i) for r, i in zip(recs, ids)]
        per_view.append(float(np.mean(hits)) if hits else 0.0)
    out = {"title_to_sid_accuracy": float(np.mean(per_view)), "n_items": len(ids)}
    if len(views) > 1:
        out["title_to_sid_accuracy_per_view"] = per_view
    return out
