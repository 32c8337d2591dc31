"""The live catalog a Recommender serves: SID tables + tries + item records, changed while serving.

A multi-view model has one SID table and trie per view (genrec_lite.sid.views); every change
applies to all of them at once, so the views always hold the same items in the same state.

Readers take the current `CatalogState` (one attribute read) and use it for a whole request, so a
request never sees half a change. Adding or removing items makes a new table and tries beside the
old ones and swaps the reference (copy-on-write): requests in flight finish on the old state, the
next request sees the new one, nobody blocks. The new ones are derived from the old, never
rebuilt (SemanticIds.extended / without): added rows are written past the end of the old table's
append-only column buffers, their ids join a small tail of the id index, and they join a small
delta trie that the search walks beside the large base trie (BeamSearch's delta), so adding items
costs O(added + delta), not a copy of the catalog; once the delta passes its limit it is folded
into a new base (one copy, amortised). A removal derives a whole new table and trie. The item
records (runtime/items.py) are a memory-mapped file plus the added ones, shared by the states.
Pausing/resuming items flips the tries' atomic active flags in place (no rebuild) and is
remembered. Writers are serialised by a lock.

The state also knows which items are cold (the model was never trained to write them: the
bundle's untrained items and every item added since), so that a request sees the cold set that
belongs to its items (runtime/cold_start.py).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from ..errors import InvalidArgumentError, UnknownItemError
from ..sid import SemanticIds, SidViews
from .cold_start import item_directions
from .items import ItemRecords


@dataclass(frozen=True)
class CatalogState:
    views: SidViews
    tries: tuple                   # (base, delta or None) SidTries of each view (SemanticIds.tries)
    records: ItemRecords           # item id -> {"title": ..., "text": ...}
    version: int
    cold: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # sorted ids

    @property
    def cold_dirs(self) -> np.ndarray:
        """The cold items' content directions (runtime/cold_start.item_directions), in `cold`
        order; computed once per state."""
        got = self.__dict__.get("_cold_dirs")
        if got is None:
            got = item_directions(self.sids, self.cold.tolist())
            object.__setattr__(self, "_cold_dirs", got)  # a cache: the state stays immutable
        return got

    @property
    def sids(self) -> SemanticIds:
        """The primary view: the SID an item is shown with (every view holds the same items)."""
        return self.views.primary

    @property
    def trie(self):
        """One trie holding the primary view's items, base and delta folded (made on first use:
        for inspection and the reference decoder; the search walks `tries`)."""
        return self.sids.trie()

    @property
    def n_active(self) -> int:
        """Active items (the same in every view)."""
        return self.sids.n_active

    def is_active(self, item_id: int) -> bool:
        return self.sids.is_active(item_id)

    def title(self, item_id: int) -> str:
        return self.records.title(item_id)


def _ids(ids: Iterable[int], what: str) -> np.ndarray:
    try:
        arr = np.asarray(list(ids), dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidArgumentError(f"{what} must be integer item ids ({exc})") from exc
    if arr.ndim != 1:
        raise InvalidArgumentError(f"{what} must be a flat list of item ids; got shape {arr.shape}")
    return arr


class LiveCatalog:
    def __init__(self, sids: SidViews | SemanticIds, records: ItemRecords | dict[int, dict],
                 cold: Iterable[int] = ()):
        self._lock = threading.Lock()
        self._inactive: set[int] = set()
        self._added: list[int] = []
        self._removed: list[int] = []  # load-time items removed since
        # append-only columns from the start: no add, not even the first, copies the catalog
        views = SidViews([v.growable() for v in SidViews.of(sids)])
        cold = _ids(cold, "cold item ids")
        cold = np.unique(cold[views.primary.contains_many(cold)])
        if not isinstance(records, ItemRecords):
            records = ItemRecords.from_dicts(records)
        records.share_ids(views.primary.sorted_ids)  # one copy of the id set, not two
        self._state = CatalogState(views, tuple(v.tries() for v in views), records, 0, cold)

    @property
    def state(self) -> CatalogState:
        return self._state

    @property
    def added_items(self) -> list[int]:
        """Ids added since load, in order (what save_catalog persists beyond the bundle)."""
        with self._lock:
            return list(self._added)

    @property
    def removed_items(self) -> list[int]:
        """Ids the catalog held at load and has removed since, in order."""
        with self._lock:
            return list(self._removed)

    def snapshot(self) -> tuple[CatalogState, frozenset[int]]:
        """The state and the paused ids as of one moment (a writer may run between two separate
        reads, e.g. add an item and pause it: the paused set would name an item the state lacks)."""
        with self._lock:
            return self._state, frozenset(self._inactive)

    def check_new(self, item_ids: np.ndarray, state: CatalogState | None = None) -> None:
        """InvalidArgumentError unless the ids are all different and none is in the catalog."""
        state = state or self._state
        dup = np.asarray(item_ids, dtype=np.int64)[state.sids.contains_many(item_ids)]
        if len(dup):
            raise InvalidArgumentError(f"item id {int(dup[0])} is already in the catalog")
        if len(set(item_ids.tolist())) != len(item_ids):
            raise InvalidArgumentError("the new items repeat an item id")

    def add(self, item_ids: np.ndarray, base_codes: list[np.ndarray], records: dict[int, dict],
            content: np.ndarray | None = None) -> CatalogState:
        """New items with their quantiser codes in every view (base_codes[v]: view v's rows,
        without the extra level) and, where the primary view keeps content vectors, their rows
        (`content`, sid/content.py). The extra level, which numbers items that share a SID, is
        assigned here under the lock against the items the catalog holds now: numbered from a
        snapshot taken earlier, two concurrent adds could give two items the same full SID."""
        with self._lock:
            old = self._state
            self.check_new(item_ids, old)  # again under the lock: a writer may have added them
            if len(base_codes) != len(old.views):
                raise InvalidArgumentError(f"codes for {len(base_codes)} SID views; the catalog has "
                                           f"{len(old.views)}")
            views = old.views.derived([v.extended(item_ids, v.complete(c),
                                                  content=None if v.content is None else content)
                                       for v, c in zip(old.views, base_codes)])
            self._swap(views, old.records.with_added(records),
                       np.union1d(old.cold, np.asarray(item_ids, dtype=np.int64)))
            self._added.extend(int(i) for i in item_ids.tolist())
            return self._state

    def remove(self, item_ids: Iterable[int]) -> int:
        ids = _ids(item_ids, "item ids to remove")
        with self._lock:
            old = self._state
            held = old.sids.contains_many(ids)
            if not held.all():
                i = int(ids[~held][0])
                raise UnknownItemError(f"item id {i} is not in the catalog", value=i)
            gone = set(ids.tolist())
            if len(gone) >= len(old.sids):
                raise InvalidArgumentError("removing these items would leave the catalog empty")
            views = old.views.derived([v.without(ids) for v in old.views])
            self._inactive -= gone
            added = set(self._added)
            self._removed.extend(i for i in ids.tolist() if i not in added)
            if gone & added:
                self._added = [i for i in self._added if i not in gone]
            # the records stay: no state holding these items any more asks for them
            self._swap(views, old.records, old.cold[~np.isin(old.cold, ids)])
            return len(gone)

    def set_active(self, item_ids: Iterable[int], active: bool) -> int:
        ids = _ids(item_ids, "item ids")
        with self._lock:
            views = self._state.views
            changed = views[0].set_active(ids, bool(active))  # checks every id first
            for v in views[1:]:  # the same items: cannot fail once the first has not
                v.set_active(ids, bool(active))
            if active:
                self._inactive -= set(ids.tolist())
            else:
                self._inactive |= set(ids.tolist())
            return changed

    def inactive(self) -> set[int]:
        return set(self._inactive)

    def _swap(self, views: SidViews, records: ItemRecords, cold: np.ndarray) -> None:
        tries = tuple(v.tries() for v in views)  # derived from the old ones: paused stay paused
        self._state = CatalogState(views, tries, records, self._state.version + 1, cold)
