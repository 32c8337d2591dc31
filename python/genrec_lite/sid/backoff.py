"""Back-off for items the model has no evidence about (cold items): rank them under their prefix.

A model trained on interactions learns the full SIDs of the items it saw as targets; an item
added later (or never clicked in the training period) has a SID from its text whose last levels
the model never wrote, so its full-SID probability is negligible and the beam never reaches it.
Its first level, though, is shared with trained items of similar text and behaviour, and the model
does predict that level. The back-off mixture scores every item as

    p(i | h) = p_model(SID_i | h) + weight * [i cold] * p_model(a_i | h) ** prefix_power
                                   * exp((affinity(i, h) - 1) / temperature)

where a_i is the item's first-level code, p_model(a | h) the model's first-level distribution
(the first step of the beam search, over the trie's allowed codes), and affinity a content score
of the item against the request's history (e.g. the cosine of the item-text embeddings to the
last history item; a cosine of 1, identical text, contributes `weight` alone). Warm items keep the model's full-SID probability (the beam's scores), so with
no cold items the ranking is the beam's. prefix_power 0 gives a plain content mixture (cold items
ranked by affinity alone), 1 the back-off to the prefix. numpy only: the reference decoder and the
runtime share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import InvalidArgumentError


@dataclass(frozen=True)
class BackoffConfig:
    weight: float = 0.1           # mixing weight of the cold items' back-off mass
    temperature: float = 0.1      # of the affinity (cosine) in the back-off term
    prefix_power: float = 1.0     # exponent of p_model(first level | h): 0 content only, 1 back-off

    def validate(self) -> "BackoffConfig":
        if not (self.weight > 0 and np.isfinite(self.weight)):
            raise InvalidArgumentError(f"back-off weight={self.weight!r}; expected a finite number > 0")
        if not (self.temperature > 0 and np.isfinite(self.temperature)):
            raise InvalidArgumentError(
                f"back-off temperature={self.temperature!r}; expected a finite number > 0")
        if not (self.prefix_power >= 0 and np.isfinite(self.prefix_power)):
            raise InvalidArgumentError(
                f"back-off prefix_power={self.prefix_power!r}; expected a finite number >= 0")
        return self


def backoff_scores(level0_logprobs: np.ndarray, cold_first: np.ndarray, affinity: np.ndarray,
                   cfg: BackoffConfig) -> np.ndarray:
    """(n_requests, n_cold) log back-off mass of each cold item for each request.

    level0_logprobs: (n_requests, codebook_size) the model's first-level log-probabilities (-inf
    where the trie allows no code); cold_first: (n_cold,) each cold item's first-level code;
    affinity: (n_requests, n_cold) content scores (cosines) of the cold items against each request."""
    cfg.validate()
    lp = np.asarray(level0_logprobs, dtype=np.float64)
    first = np.asarray(cold_first, dtype=np.int64)
    aff = np.asarray(affinity, dtype=np.float64)
    if lp.ndim != 2 or first.ndim != 1 or aff.shape != (lp.shape[0], first.shape[0]):
        raise InvalidArgumentError(
            f"level0_logprobs {lp.shape}, cold_first {first.shape}, affinity {aff.shape}; expected "
            "(n, codebook_size), (n_cold,) and (n, n_cold)")
    if first.size and (first.min() < 0 or first.max() >= lp.shape[1]):
        raise InvalidArgumentError(f"a cold item's first-level code is outside 0..{lp.shape[1] - 1}")
    prefix = lp[:, first]
    with np.errstate(invalid="ignore"):  # -inf * 0 (a code the trie lacks, prefix_power 0)
        prefix = np.where(np.isneginf(prefix), -np.inf, cfg.prefix_power * prefix)
    return np.log(cfg.weight) + prefix + (aff - 1.0) / cfg.temperature


def merge_backoff(items: Sequence[int], scores: Sequence[float], cold_ids: np.ndarray,
                  cold_scores: np.ndarray, k: int) -> tuple[list[int], list[float]]:
    """One request's top k: the beam's (items, log-probability scores) with the cold items'
    back-off log-masses (`backoff_scores` row) added to them (log-sum-exp where a cold item is in
    the beam too). Ties keep the beam's order, then the cold items' order."""
    if k < 1:
        raise InvalidArgumentError(f"k={k}; expected >= 1")
    ids = np.asarray(cold_ids, dtype=np.int64)
    cs = np.asarray(cold_scores, dtype=np.float64)
    if ids.shape != cs.shape:
        raise InvalidArgumentError(f"cold_ids {ids.shape} and cold_scores {cs.shape}; expected one "
                                   "score per cold item")
    total: dict[int, float] = {}
    for item, s in zip(items, scores):
        total.setdefault(int(item), float(s))   # an item's best beam
    # only the cold items that can enter the top k matter: the k best of them, and those the
    # beam holds too (their sum may pass a better back-off)
    take = set(np.argsort(-cs, kind="stable")[:k].tolist())
    take.update(j for j, item in enumerate(ids.tolist()) if item in total)
    for j in sorted(take):
        item, s = int(ids[j]), float(cs[j])
        if not np.isfinite(s):
            continue
        total[item] = float(np.logaddexp(total[item], s)) if item in total else s
    order = sorted(enumerate(total.items()), key=lambda t: (-t[1][1], t[0]))[:k]
    return [item for _, (item, _) in order], [s for _, (_, s) in order]
