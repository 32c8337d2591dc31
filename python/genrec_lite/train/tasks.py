"""Training examples: (prompt, response) pairs for next-item prediction and SID/title alignment."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from ..data._grouping import index_dtype, permutation
from ..errors import InvalidArgumentError
from ..prompts import PromptSet, profile_text

TASKS = ("next_item", "sid_to_title", "title_to_sid")
MAX_TITLE_CHARS = 160  # long catalog titles are cut: the alignment tasks need the gist, not all of it


@dataclass(frozen=True)
class Example:
    task: str
    prompt: str
    response: str
    target: int | None = None  # the target item of next-item / title-to-SID examples


def short_title(title: str) -> str:
    title = " ".join(str(title).split())
    return title if len(title) <= MAX_TITLE_CHARS else title[:MAX_TITLE_CHARS].rsplit(" ", 1)[0]


def next_item_prompt(history: Sequence[int], sids, prompts: PromptSet, profile: str = "") -> str:
    return prompts.next_item_prompt([sids.sid(i) for i in history], profile)


def next_item_examples(cases: Iterable, sids, prompts: PromptSet, *, profiles=None,
                       profile_template: str | None = None) -> list[Example]:
    out = []
    for case in cases:
        prof = profile_text(profiles.get(case.user_id), profile_template) if profiles is not None else ""
        out.append(Example("next_item", next_item_prompt(case.history, sids, prompts, prof),
                           sids.sid(case.target), int(case.target)))
    return out


def alignment_examples(catalog, sids, prompts: PromptSet, *, title_field: str = "title"
                       ) -> dict[str, list[Example]]:
    if title_field not in catalog.fields:
        raise InvalidArgumentError(f"the catalog has no field {title_field!r} for the alignment "
                                   f"tasks; fields: {list(catalog.fields)}")
    s2t, t2s = [], []
    for item, title in zip(catalog.item_ids.tolist(), catalog.field(title_field)):
        if item not in sids or not str(title).strip():
            continue
        sid, title = sids.sid(item), short_title(title)
        s2t.append(Example("sid_to_title", prompts.sid_to_title_prompt(sid), title, item))
        t2s.append(Example("title_to_sid", prompts.title_to_sid_prompt(title), sid, item))
    return {"sid_to_title": s2t, "title_to_sid": t2s}


def mix_indices(sizes: dict[str, int], weights: dict[str, float], rng: np.random.Generator
                ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """One epoch's examples as indices: each task's pool (of ``sizes[task]`` examples) scaled by
    its weight (2.5 = every example twice plus a random half), shuffled together. Returns the
    task names, then per chosen example its task (a position in the names) and its index."""
    tasks, parts = [], []
    for t, (task, size) in enumerate(sizes.items()):
        w = float(weights.get(task, 0.0))
        if w < 0:
            raise InvalidArgumentError(f"task weight {task}={w}; expected >= 0")
        if not size or w == 0:
            continue
        whole, frac = int(w), w - int(w)
        for _ in range(whole):
            parts.append(np.arange(size, dtype=index_dtype(size)))
            tasks.append(constant(t, size))
        if frac > 0:
            pick = rng.choice(size, size=int(round(frac * size)), replace=False)
            parts.append(np.sort(pick).astype(index_dtype(size)))
            tasks.append(constant(t, len(pick)))
    # one part (a single task, weight 1: a large log's usual epoch) is taken as it is
    index = parts[0] if len(parts) == 1 else \
        np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    task_of = tasks[0] if len(tasks) == 1 else \
        np.concatenate(tasks) if tasks else np.zeros(0, dtype=np.int8)
    del parts, tasks
    order = permutation(rng, len(index))
    return list(sizes), in_order(task_of, order), index[order]


def constant(value: int, n: int) -> np.ndarray:
    """``n`` copies of a task number that take one byte: a read-only broadcast view."""
    return np.broadcast_to(np.int8(value), (n,))


def in_order(a: np.ndarray, order: np.ndarray) -> np.ndarray:
    """``a[order]``; an array of one repeated value (:func:`constant`) stays as it is."""
    return a if a.ndim == 1 and a.strides == (0,) else a[order]


def mix(pools: dict[str, list], weights: dict[str, float], rng: np.random.Generator) -> list:
    """One epoch's examples (see :func:`mix_indices`), shuffled together."""
    names, task_of, index = mix_indices({t: len(p) for t, p in pools.items()}, weights, rng)
    return [pools[names[t]][i] for t, i in zip(task_of.tolist(), index.tolist())]
