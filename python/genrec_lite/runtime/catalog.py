"""The live catalog a Recommender serves: SID table + trie + item records, changed while serving.

Readers take the current `CatalogState` (one attribute read) and use it for a whole request, so a
request never sees half a change. Adding or removing items builds a new table and trie beside the
old one and swaps the reference (copy-on-write): requests in flight finish on the old state, the
next request sees the new one, nobody blocks. Pausing/resuming items flips the trie's atomic
active flags in place (no rebuild) and is remembered, so a later rebuild keeps paused items paused.
Writers are serialised by a lock.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from ..errors import InvalidArgumentError, UnknownItemError
from ..sid import SemanticIds


@dataclass(frozen=True)
class CatalogState:
    sids: SemanticIds
    trie: object                   # genrec_lite._core.SidTrie over sids
    records: dict                  # item id -> {"title": ..., "text": ...}
    version: int

    def title(self, item_id: int) -> str:
        rec = self.records.get(int(item_id))
        return (rec or {}).get("title", "") or ""


def _ids(ids: Iterable[int], what: str) -> np.ndarray:
    try:
        arr = np.asarray(list(ids), dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidArgumentError(f"{what} must be integer item ids ({exc})") from exc
    if arr.ndim != 1:
        raise InvalidArgumentError(f"{what} must be a flat list of item ids; got shape {arr.shape}")
    return arr


class LiveCatalog:
    def __init__(self, sids: SemanticIds, records: dict[int, dict]):
        self._lock = threading.Lock()
        self._inactive: set[int] = set()
        self._added: list[int] = []
        self._state = CatalogState(sids, sids.trie(), dict(records), 0)

    @property
    def state(self) -> CatalogState:
        return self._state

    @property
    def added_items(self) -> list[int]:
        """Ids added since load, in order (what save_catalog persists beyond the bundle)."""
        return list(self._added)

    def check_new(self, item_ids: np.ndarray, state: CatalogState | None = None) -> None:
        """InvalidArgumentError unless the ids are all different and none is in the catalog."""
        state = state or self._state
        dup = [int(i) for i in item_ids.tolist() if int(i) in state.sids]
        if dup:
            raise InvalidArgumentError(f"item id {dup[0]} is already in the catalog")
        if len(set(item_ids.tolist())) != len(item_ids):
            raise InvalidArgumentError("the new items repeat an item id")

    def add(self, item_ids: np.ndarray, codes: np.ndarray, records: dict[int, dict]) -> CatalogState:
        with self._lock:
            old = self._state
            self.check_new(item_ids, old)  # again under the lock: a writer may have added them
            sids = old.sids.with_rows(np.concatenate([old.sids.item_ids, item_ids]),
                                      np.concatenate([old.sids.codes, codes]))
            self._swap(sids, {**old.records, **records})
            self._added.extend(int(i) for i in item_ids.tolist())
            return self._state

    def remove(self, item_ids: Iterable[int]) -> int:
        ids = _ids(item_ids, "item ids to remove")
        with self._lock:
            old = self._state
            for i in ids.tolist():
                if i not in old.sids:
                    raise UnknownItemError(f"item id {i} is not in the catalog", value=i)
            gone = set(ids.tolist())
            keep = np.array([i not in gone for i in old.sids.item_ids.tolist()], dtype=bool)
            if not keep.any():
                raise InvalidArgumentError("removing these items would leave the catalog empty")
            sids = old.sids.with_rows(old.sids.item_ids[keep], old.sids.codes[keep])
            self._inactive -= gone
            self._added = [i for i in self._added if i not in gone]
            self._swap(sids, {k: v for k, v in old.records.items() if k not in gone})
            return len(gone)

    def set_active(self, item_ids: Iterable[int], active: bool) -> int:
        ids = _ids(item_ids, "item ids")
        with self._lock:
            changed = int(self._state.trie.set_active(ids, bool(active)))  # checks every id first
            if active:
                self._inactive -= set(ids.tolist())
            else:
                self._inactive |= set(ids.tolist())
            return changed

    def inactive(self) -> set[int]:
        return set(self._inactive)

    def _swap(self, sids: SemanticIds, records: dict) -> None:
        trie = sids.trie()
        if self._inactive:
            trie.set_active(np.fromiter(self._inactive, dtype=np.int64), False)
        self._state = CatalogState(sids, trie, records, self._state.version + 1)
