"""Several SID views of one catalog, and how a model's answers in them combine.

One RQ-VAE build is one draw: builds of the same configuration from different seeds give every
item different codes, and models trained on them make different mistakes. A *multi-view* model
is one language model trained on the same histories written in K independent SID builds (the
views), each view with tokens of its own (`<a_12>` in view 0, `<a1_12>` in view 1, ...). At
inference each view is searched with its own trie (the history written in that view) and the
views' answers are combined into one ranking by `fuse`: an item's probability is the mean over
the views of the probability each view's beam gave its SID (0 where the beam did not reach it),
i.e. the model is read as a uniform mixture of its views.

Saved as a directory: one view is a plain `SemanticIds` folder (the single-view layout, unchanged);
K > 1 views are `views.json` plus the folders `view0/ ... view{K-1}/`, written atomically.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .._io import atomic_directory, read_manifest, write_json
from ..errors import ArtifactError, InvalidArgumentError
from .semantic_ids import SemanticIds

FORMAT_NAME = "genrec-lite.sid-views"
FORMAT_VERSION = 1
MANIFEST = "views.json"


class SidViews:
    """K >= 1 SID tables over the same items (same ids, same row order), view v written with view
    v's tokens. views[0] is the primary view: the SID shown for an item."""

    def __init__(self, views: Sequence[SemanticIds] | SemanticIds):
        if isinstance(views, SemanticIds):
            views = [views]
        views = list(views)
        if not views:
            raise InvalidArgumentError("SidViews needs at least one SID table; got none")
        first = views[0]
        for v, s in enumerate(views[1:], 1):
            if not isinstance(s, SemanticIds):
                raise InvalidArgumentError(f"view {v} is a {type(s).__name__}; expected SemanticIds")
            if len(s) != len(first) or not np.array_equal(s.item_ids, first.item_ids):
                raise InvalidArgumentError(
                    f"view {v} holds {len(s)} items and view 0 {len(first)}, or in another order; "
                    "expected the same items in the same order in every view")
        self._views = tuple(s.as_view(v) for v, s in enumerate(views))

    @classmethod
    def of(cls, sids: "SidViews | SemanticIds | Sequence[SemanticIds]") -> "SidViews":
        return sids if isinstance(sids, SidViews) else cls(sids)

    def derived(self, views: Sequence[SemanticIds]) -> "SidViews":
        """Views made from this one's by the same change (the same items added or removed in
        each, e.g. SemanticIds.extended), so they still agree: not compared again, which would
        cost a pass over the catalog per change."""
        if len(views) != len(self._views):
            raise InvalidArgumentError(f"{len(views)} views derived from {len(self._views)}")
        out = object.__new__(type(self))
        out._views = tuple(views)
        return out

    # --- the sequence of views ---------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._views)

    def __iter__(self) -> Iterator[SemanticIds]:
        return iter(self._views)

    def __getitem__(self, v: int) -> SemanticIds:
        return self._views[v]

    @property
    def primary(self) -> SemanticIds:
        return self._views[0]

    @property
    def item_ids(self) -> np.ndarray:
        return self._views[0].item_ids

    @property
    def n_items(self) -> int:
        return len(self._views[0])

    def __contains__(self, item_id: int) -> bool:
        return item_id in self._views[0]

    def vocabulary(self) -> list[str]:
        """Every view's SID tokens, view by view (what the model's vocabulary needs)."""
        return [t for s in self._views for t in s.vocabulary()]

    # --- persistence -------------------------------------------------------------------------
    def save(self, path: str | Path, *, extra_files: dict[str, object] | None = None) -> Path:
        """Write the folder atomically; `extra_files` maps name -> JSON object (at its top)."""
        path = Path(path)
        if len(self) == 1:
            return self.primary.save(path, extra_files=extra_files)
        with atomic_directory(path) as tmp:
            for v, s in enumerate(self._views):
                s.save(tmp / f"view{v}")
            for name, obj in (extra_files or {}).items():
                write_json(tmp / name, obj)
            write_json(tmp / MANIFEST, {"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
                                        "n_views": len(self), "n_items": self.n_items,
                                        "views": [f"view{v}" for v in range(len(self))]})
        return path

    @classmethod
    def load(cls, path: str | Path) -> "SidViews":
        """A multi-view folder, or a plain SemanticIds folder (one view)."""
        path = Path(path)
        if not (path / MANIFEST).is_file():
            return cls([SemanticIds.load(path)])
        meta = read_manifest(path / MANIFEST, FORMAT_NAME, FORMAT_VERSION)
        names = meta.get("views")
        if not isinstance(names, list) or not names or len(names) != meta.get("n_views"):
            raise ArtifactError(f"{path / MANIFEST} lists views {names!r} for n_views="
                                f"{meta.get('n_views')!r}; the file is damaged")
        for n in names:
            # a name is a folder beside views.json: anything else (absolute, '..', a separator)
            # would read a table from outside the folder, past a bundle's checksums
            if not isinstance(n, str) or n in ("", ".", "..") or any(c in n for c in "/\\:\0"):
                raise ArtifactError(f"{path / MANIFEST} lists the view {n!r}; expected a folder "
                                    "name inside that folder (no '/', '\\', ':', not '.' or '..')")
        views = [SemanticIds.load(path / n) for n in names]
        for v, s in enumerate(views):
            if s.view != v:
                raise ArtifactError(f"{path / names[v]} is view {s.view}, listed as view {v}")
        return cls(views)


def view_beam(view: int, beam: int, side_beam: int | None) -> int:
    """The beam SID view `view` of a multi-view request searches: the request's `beam` in the
    first view (it holds the answer's k), at most `side_beam` in the others (they only vote in
    the fusion; None: the request's beam)."""
    return beam if view == 0 or side_beam is None else min(side_beam, beam)


def fuse(answers: Sequence[tuple[Sequence[int], Sequence[float]]
                   | tuple[Sequence[int], Sequence[float], Sequence[float]]], k: int
         ) -> tuple[list[int], list[float]] | tuple[list[int], list[float], list[float]]:
    """One ranking from the views' answers to one request.

    answers[v] = (items, scores) of view v, best first, scores the log-probabilities of the items'
    SIDs under the model, or (items, scores, logprobs) with the items' raw log-probabilities too.
    An item's fused score is log(mean over views of exp(score)), an item missing from a view
    counting as probability 0; the k best are returned, best first, ties in the order the items
    first appear (view 0's order, then view 1's, ...). Raw log-probabilities are fused by the same
    rule (log of the mean over views, 0 where a view lacks the item) and returned third, in the
    same order, when every answer has them. With one view this is that view's answer cut to k,
    values unchanged."""
    if k < 1:
        raise InvalidArgumentError(f"k={k}; expected >= 1")
    n = len(answers)
    widths = {len(a) for a in answers}
    if len(widths) != 1 or not widths <= {2, 3}:
        raise InvalidArgumentError(f"answers of {n} views hold {sorted(widths)} values each; expected "
                                   "all (items, scores) or all (items, scores, logprobs)")
    if n == 1:
        items, *values = answers[0]
        return ([int(i) for i in items[:k]], *([float(x) for x in v[:k]] for v in values))
    per_item: dict[int, list[list[float]]] = {}  # item -> per value kind, its values over the views
    for items, *values in answers:
        seen = set()
        for item, *vals in zip(items, *values):
            item = int(item)
            if item in seen:  # a view names an item once (its best beam); be safe
                continue
            seen.add(item)
            for slot, v in zip(per_item.setdefault(item, [[] for _ in vals]), vals):
                slot.append(float(v))
    log_n = math.log(n)
    fused = []
    for order, (item, (scores, *rest)) in enumerate(per_item.items()):
        score = _log_mean_exp(scores, log_n)
        if math.isfinite(score):
            fused.append((-score, order, item, [_log_mean_exp(v, log_n) for v in rest]))
    fused.sort(key=lambda t: t[:2])
    best = fused[:k]
    out = ([item for _, _, item, _ in best], [-neg for neg, _, _, _ in best])
    if widths == {2}:
        return out
    return (*out, [rest[0] for _, _, _, rest in best])


def _log_mean_exp(values: list[float], log_n: float) -> float:
    """log(sum(exp(values)) / n): the log of the mean probability over n views (missing ones 0)."""
    top = max(values)
    if not math.isfinite(top):
        return top
    return top + math.log(sum(math.exp(v - top) for v in values)) - log_n
