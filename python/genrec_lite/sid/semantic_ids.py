"""`SemanticIds`: the item id <-> codes <-> token-string table, with the quantiser that made it.

Saved as a directory (written atomically):
  semantic_ids.json  format name and version, shapes, the build config, versions, checksum
  arrays.npz         item_ids, codes, the quantiser (codebooks and encoder weights) and, where
                     the build kept them, the items' content vectors and their space
                     (sid/content.py)
  sids.tsv           item_id <TAB> SID string, for people and other tools
  report.json        collision and utilisation statistics
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .._ext import core
from .._sorted import find_sorted
from .._io import atomic_directory, read_manifest, sha256_file, versions, write_json
from ..errors import ArtifactError, InvalidArgumentError, UnknownItemError
from .collisions import check_mode, extra_level, sid_report
from .content import ContentSpace
from .encoder import SidEncoder

FORMAT_NAME = "genrec-lite.semantic-ids"
FORMAT_VERSION = 1
LEVEL_NAMES = "abcdefghij"
# <level letter><view number, none for view 0>_<code>
_TOKEN_RE = re.compile(r"<([a-j])(\d*)_(\d+)>")


def delta_limit(n: int) -> int:
    """How many items a table keeps in its small parts (the id index's tail, the delta trie)
    before folding them into the large ones: a fold copies the catalog once, so with this limit
    adding items costs O(limit) per call and O(n / limit) amortised."""
    return max(4096, n // 64)


class _Index:
    """id -> row through sorted ids and their rows (not a dict: at 10^6 items a dict costs ~100 MB
    per process), in two parts: the main one and a small tail holding the ids added since the
    main one was made, so adding ids merges them into the tail, not into the catalog's index.
    A table whose rows are in id order needs no index of its own: the main part is then its
    item_ids array itself, and rows is None (the row of the k-th id is k)."""

    __slots__ = ("ids", "rows", "tail_ids", "tail_rows")
    _EMPTY = np.zeros(0, np.int64)

    def __init__(self, ids: np.ndarray, rows: np.ndarray | None, tail_ids: np.ndarray = _EMPTY,
                 tail_rows: np.ndarray = _EMPTY):
        # rows in 4 bytes (a table holds fewer than 2^31 items: SemanticIds checks)
        self.ids = ids
        self.rows = None if rows is None else rows.astype(np.int32, copy=False)
        self.tail_ids, self.tail_rows = tail_ids, tail_rows.astype(np.int32, copy=False)

    @classmethod
    def of(cls, item_ids: np.ndarray) -> "_Index":
        if len(item_ids) < 2 or bool((item_ids[1:] > item_ids[:-1]).all()):
            return cls(item_ids, None)  # already in id order: the ids are their own index
        order = np.argsort(item_ids, kind="stable")
        return cls(item_ids[order], order)

    def main_rows(self) -> np.ndarray:
        return np.arange(len(self.ids), dtype=np.int32) if self.rows is None else self.rows

    def find(self, item_id: int) -> int:
        """The row of one id, or -1."""
        for ids, rows in ((self.ids, self.rows), (self.tail_ids, self.tail_rows)):
            k = int(np.searchsorted(ids, item_id))
            if k < len(ids) and ids[k] == item_id:
                return k if rows is None else int(rows[k])
        return -1

    def lookup(self, ids: np.ndarray) -> np.ndarray:
        """Rows of ids (int64), -1 where an id is not held."""
        out = np.full(len(ids), -1, np.int64)
        for sorted_ids, rows in ((self.ids, self.rows), (self.tail_ids, self.tail_rows)):
            if len(sorted_ids) and len(ids):
                k, hit = find_sorted(sorted_ids, ids)
                out[hit] = k[hit] if rows is None else rows[k[hit]]
        return out

    def added(self, ids: np.ndarray, rows: np.ndarray) -> "_Index":
        """This index plus new (id, row) pairs (ids not held): into the tail, or, once the tail
        would pass delta_limit, everything into one main part."""
        order = np.argsort(ids, kind="stable")
        ids, rows = ids[order], rows[order]
        n = len(self.ids) + len(self.tail_ids) + len(ids)
        if len(self.tail_ids) + len(ids) <= delta_limit(n):
            at = np.searchsorted(self.tail_ids, ids)
            return _Index(self.ids, self.rows, np.insert(self.tail_ids, at, ids),
                          np.insert(self.tail_rows, at, rows))
        at = np.searchsorted(self.tail_ids, ids)  # tail and new ones in one sorted run
        ids, rows = np.insert(self.tail_ids, at, ids), np.insert(self.tail_rows, at, rows)
        at = np.searchsorted(self.ids, ids)
        return _Index(np.insert(self.ids, at, ids), np.insert(self.main_rows(), at, rows))


class _Columns:
    """Append-only buffers behind the successive tables of a live catalog (SemanticIds.extended):
    table k views rows [:n_k]; extending the newest table writes the new rows past its end, where
    no other table looks, and views [:n_k + m]. The capacity doubles when full; capacity never
    written is never touched, so it costs address space, not memory."""

    def __init__(self, columns: dict[str, np.ndarray], rows: int):
        """Buffers holding `columns` with room for `rows` rows and as many again."""
        n = len(next(iter(columns.values())))
        capacity = max(2 * rows, rows + 4096)
        self.buffers = {}
        for name, a in columns.items():
            self.buffers[name] = np.empty((capacity,) + a.shape[1:], dtype=a.dtype)
            self.buffers[name][:n] = a
        self.filled = n
        self._lock = threading.Lock()

    def append(self, n_old: int, new: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
        """Views of rows [:n_old + m] with the new rows written at n_old, or None when a table
        other than the newest is extended or the buffers are full."""
        m = len(next(iter(new.values())))
        with self._lock:
            cap = len(next(iter(self.buffers.values())))
            if n_old != self.filled or n_old + m > cap or set(new) != set(self.buffers):
                return None
            for name, a in new.items():
                self.buffers[name][n_old:n_old + m] = a
            self.filled = n_old + m
        return {name: b[:n_old + m] for name, b in self.buffers.items()}


class SemanticIds:
    """Semantic IDs of a catalog.

    codes has shape (n_items, levels) with collisions `none`, or (n_items, levels + 1) with
    `extra_level`. Level l's codes are written `<{LEVEL_NAMES[l]}_{code}>`. A table that is view
    v > 0 of a multi-view model (sid/views.py) writes them `<{LEVEL_NAMES[l]}{v}_{code}>`, so that
    one vocabulary holds every view's tokens apart.
    """

    def __init__(self, item_ids: Sequence[int] | np.ndarray, codes: np.ndarray, *, levels: int,
                 codebook_size: int, collisions: str = "none", extra_level_size: int = 0,
                 encoder: SidEncoder | None = None, config: dict | None = None, view: int = 0,
                 content: np.ndarray | None = None, content_space: ContentSpace | None = None):
        self.item_ids = np.asarray(item_ids, dtype=np.int64)
        self.codes = np.ascontiguousarray(codes, dtype=np.int32)
        self.levels = int(levels)
        self.codebook_size = int(codebook_size)
        self.collisions = check_mode(collisions)
        self.extra_level_size = int(extra_level_size) if collisions == "extra_level" else 0
        self.encoder = encoder
        self.config = dict(config or {})
        if isinstance(view, bool) or not isinstance(view, (int, np.integer)) or not 0 <= view < 1000:
            raise InvalidArgumentError(f"view={view!r}; expected an integer in 0..999")
        self.view = int(view)
        n_levels = self.levels + (1 if self.collisions == "extra_level" else 0)
        if self.levels < 1 or self.levels > len(LEVEL_NAMES) - 1:
            raise InvalidArgumentError(f"levels={levels}; expected 1..{len(LEVEL_NAMES) - 1}")
        if self.codes.ndim != 2 or self.codes.shape != (len(self.item_ids), n_levels):
            raise InvalidArgumentError(
                f"codes must have shape ({len(self.item_ids)}, {n_levels}); got {self.codes.shape}")
        sizes = np.asarray(self.level_sizes)
        if len(self.codes) and ((self.codes < 0).any() or (self.codes >= sizes[None, :]).any()):
            r, c = np.argwhere((self.codes < 0) | (self.codes >= sizes[None, :]))[0]
            raise InvalidArgumentError(
                f"item {self.item_ids[r]} has code {self.codes[r, c]} at level {c}; "
                f"expected 0 <= code < {sizes[c]}")
        # content vectors (sid/content.py): one int8 row per item, in the rows' order, with the
        # projection that makes them for new items; both or neither
        if (content is None) != (content_space is None):
            raise InvalidArgumentError("content vectors need their content space and the other way "
                                       "round; got only one")
        if content is not None:
            content = np.asarray(content)
            if content.dtype != np.int8 or content.shape != (len(self.item_ids), content_space.dim):
                raise InvalidArgumentError(
                    f"content vectors of shape {content.shape} and type {content.dtype}; expected "
                    f"({len(self.item_ids)}, {content_space.dim}) int8, one row per item")
        self.content = content
        self.content_space = content_space
        if len(self.item_ids) >= 2**31:
            raise InvalidArgumentError(f"{len(self.item_ids)} items; a SID table holds fewer than 2^31")
        self._index = _Index.of(self.item_ids)
        same = np.flatnonzero(self._index.ids[1:] == self._index.ids[:-1])
        if len(same):
            raise InvalidArgumentError(f"item id {int(self._index.ids[same[0]])} appears more than once")
        self._by_sid: dict[bytes, list[int]] | None = None
        self._columns: _Columns | None = None
        # The C++ tries, once built: the base, and a small delta holding the rows from
        # _delta_from on (the items added since the base was made; see extended).
        self._trie = self._delta = self._merged = None
        self._delta_from = len(self.item_ids)

    # --- shape -------------------------------------------------------------------------------
    @property
    def n_levels(self) -> int:
        """Levels of a full SID, the extra level included."""
        return int(self.codes.shape[1])

    @property
    def level_sizes(self) -> list[int]:
        sizes = [self.codebook_size] * self.levels
        if self.collisions == "extra_level":
            sizes.append(self.extra_level_size)
        return sizes

    def __len__(self) -> int:
        return len(self.item_ids)

    def __contains__(self, item_id: int) -> bool:
        try:
            return self._find(int(item_id)) >= 0
        except OverflowError:  # outside int64: no item has it
            return False

    @property
    def sorted_ids(self) -> np.ndarray:
        """The item ids in increasing order (the id index's main part: the ids added since it
        was made are not in it); read-only."""
        return self._index.ids

    def _find(self, item_id: int) -> int:
        """The row of an item id, or -1."""
        return self._index.find(item_id)

    def contains_many(self, item_ids) -> np.ndarray:
        """Whether each of these ids has a SID (bool array)."""
        return self._index.lookup(np.asarray(item_ids, dtype=np.int64).reshape(-1)) >= 0

    def rows_of(self, item_ids) -> np.ndarray:
        """Rows of these ids (int64 array); UnknownItemError names the first one missing."""
        ids = np.asarray(item_ids, dtype=np.int64).reshape(-1)
        rows = self._index.lookup(ids)
        if (rows < 0).any():
            bad = int(ids[rows < 0][0])
            raise UnknownItemError(f"item id {bad} has no semantic ID", value=bad)
        return rows

    # --- tokens ------------------------------------------------------------------------------
    def token(self, level: int, code: int) -> str:
        return f"<{LEVEL_NAMES[level]}{self.view or ''}_{int(code)}>"

    def vocabulary(self) -> list[str]:
        """Every SID token, level by level: what a language model needs added to its vocabulary."""
        return [self.token(level, c) for level, size in enumerate(self.level_sizes) for c in range(size)]

    def format(self, codes: Iterable[int]) -> str:
        return "".join(self.token(level, c) for level, c in enumerate(codes))

    def parse(self, text: str) -> tuple[int, ...]:
        """'<a_1><b_2><c_3>' -> (1, 2, 3); checks level order and code ranges."""
        parts = _TOKEN_RE.findall(text)
        if "".join(f"<{a}{v}_{b}>" for a, v, b in parts) != text.strip() or len(parts) != self.n_levels:
            raise InvalidArgumentError(
                f"{text!r} is not a SID; expected {self.n_levels} tokens like "
                f"{self.format([0] * self.n_levels)!r}")
        codes = []
        for level, (name, view, code) in enumerate(parts):
            want = f"<{LEVEL_NAMES[level]}{self.view or ''}"  # '<a' or '<a1', up to the code
            if f"<{name}{view}" != want or not 0 <= int(code) < self.level_sizes[level]:
                raise InvalidArgumentError(
                    f"{text!r}: token {level} is <{name}{view}_{code}>; expected {want}_k> "
                    f"with 0 <= k < {self.level_sizes[level]}")
            codes.append(int(code))
        return tuple(codes)

    # --- lookups -----------------------------------------------------------------------------
    def row_of(self, item_id: int) -> int:
        row = self._find(int(item_id)) if item_id in self else -1
        if row < 0:
            raise UnknownItemError(f"item id {item_id} has no semantic ID", value=item_id)
        return row

    def codes_of(self, item_id: int) -> tuple[int, ...]:
        return tuple(int(c) for c in self.codes[self.row_of(item_id)])

    def sid(self, item_id: int) -> str:
        return self.format(self.codes[self.row_of(item_id)])

    def sid_strings(self) -> list[str]:
        # one token table per level, looked up by column: a format() per row takes seconds at 10^6
        cols = [np.array([self.token(level, c) for c in range(size)], dtype=object)[self.codes[:, level]]
                for level, size in enumerate(self.level_sizes)]
        return list(map("".join, zip(*cols)))

    def items_of(self, sid: str | Sequence[int]) -> list[int]:
        """Items named by a full SID (several with collisions `none`), in table order."""
        codes = self.parse(sid) if isinstance(sid, str) else tuple(int(c) for c in sid)
        if self._by_sid is None:
            by_sid: dict[bytes, list[int]] = {}
            for item, row in zip(self.item_ids.tolist(), self.codes):
                by_sid.setdefault(row.tobytes(), []).append(item)
            self._by_sid = by_sid
        return list(self._by_sid.get(np.asarray(codes, dtype=np.int32).tobytes(), []))

    def trie(self):
        """The C++ prefix trie over these SIDs (built once, cached). A table that keeps a delta
        trie (see tries) gives one trie holding both, made on first use and again after each
        set_active (flags changed on tries() directly are not seen); serving reads tries()."""
        base, delta = self.tries()
        if delta is None:
            return base
        if self._merged is None:
            self._merged = self._fold()
        return self._merged

    def tries(self) -> tuple:
        """(base, delta): the C++ tries a search walks together (BeamSearch's delta). delta is
        None or holds the rows from the base's end on, the items added since the base was made,
        so that adding items copies the delta, not the catalog (extended)."""
        if self._trie is None:
            self._trie = core().SidTrie(self.codes, self.item_ids, self.level_sizes)
            self._delta_from = len(self)
        return self._trie, self._delta

    def _fold(self):
        """One trie holding the base and every row from _delta_from on (the delta's, and any
        added after it), the delta's active flags kept."""
        rows = slice(self._delta_from, len(self))
        trie = self._trie.derive(self.codes[rows], self.item_ids[rows])
        if self._delta is not None:
            paused = [i for i in self.item_ids[self._delta_from:self._delta_from + len(self._delta)].tolist()
                      if not self._delta.is_active(i)]
            if paused:
                trie.set_active(np.asarray(paused, dtype=np.int64), False)
        return trie

    @property
    def n_active(self) -> int:
        """Items active in the tries (all of them before a trie is built)."""
        base, delta = self.tries()
        return int(base.n_active) + (0 if delta is None else int(delta.n_active))

    def is_active(self, item_id: int) -> bool:
        base, delta = self.tries()
        row = self.row_of(item_id)
        return bool((base if row < self._delta_from else delta).is_active(int(item_id)))

    def set_active(self, item_ids, active: bool) -> int:
        """Pause or resume items in the tries (all checked first: UnknownItemError names the
        first unknown id and changes nothing); returns how many changed state."""
        ids = np.asarray(item_ids, dtype=np.int64).reshape(-1)
        rows = self.rows_of(ids)
        base, delta = self.tries()
        in_delta = rows >= self._delta_from
        self._merged = None  # the folded trie's flags are those of when it was made
        changed = int(base.set_active(ids[~in_delta], bool(active)))
        if in_delta.any():
            changed += int(delta.set_active(ids[in_delta], bool(active)))
        return changed

    def report(self) -> dict:
        rep = sid_report(self.codes, levels=self.levels, codebook_size=self.codebook_size,
                         mode=self.collisions)
        if "train_items" in self.config:  # how many items the quantiser learned from (sid/build.py)
            rep["train_items"] = self.config["train_items"]
            rep["train_sample"] = self.config.get("train_sample")
        return rep

    # --- cold start --------------------------------------------------------------------------
    def assign(self, vectors: np.ndarray, n_threads: int = 1) -> np.ndarray:
        """Full codes for new item embeddings, without changing this table.

        Base codes come from the trained quantiser; with `extra_level`, rows continue the numbering
        of the group they join (and of each other, in the given order).
        """
        if self.encoder is None:
            raise ArtifactError("these semantic IDs carry no quantiser, so new items cannot be assigned")
        return self.complete(self.encoder.encode(vectors, n_threads=n_threads))

    def complete(self, base: np.ndarray) -> np.ndarray:
        """Full codes from new items' base (quantiser) codes: with `extra_level`, each row takes
        the next free number of the group it joins (and of each other, in the given order)."""
        if self.collisions == "none":
            return base
        base = np.asarray(base, dtype=np.int32).reshape(-1, self.levels)
        if self._trie is not None:  # the trie knows each group's largest number: no catalog scan
            start = self._trie.next_codes(base)
            if self._delta is not None:
                start = np.maximum(start, self._delta.next_codes(base))
            extra = extra_level(base, start=start)
        else:
            extra = extra_level(base, existing=self.codes)
        too_big = extra >= self.extra_level_size
        if too_big.any():
            r = int(np.flatnonzero(too_big)[0])
            raise InvalidArgumentError(
                f"new item at row {r} would be item number {int(extra[r])} under SID "
                f"{self.format(base[r])}, but the extra level holds {self.extra_level_size} codes; "
                "rebuild the SIDs with a larger extra level")
        return np.concatenate([base, extra[:, None]], axis=1)

    def with_rows(self, item_ids: Sequence[int] | np.ndarray, codes: np.ndarray, *,
                  view: int | None = None, content: np.ndarray | None = None,
                  content_space: ContentSpace | None = None) -> "SemanticIds":
        """A table over these rows with this one's settings and quantiser (and view and content
        space, unless given). A table with content vectors needs the new rows' `content` (e.g.
        `self.content[keep]`, or new rows from `self.content_space.project`)."""
        space = content_space or self.content_space
        if space is not None and content is None:
            raise InvalidArgumentError("this table keeps content vectors: give the new rows' "
                                       "content too")
        return SemanticIds(item_ids, codes, levels=self.levels, codebook_size=self.codebook_size,
                           collisions=self.collisions, extra_level_size=self.extra_level_size,
                           encoder=self.encoder, config=self.config,
                           view=self.view if view is None else view,
                           content=content if space is not None else None, content_space=space)

    def new_content(self, vectors: np.ndarray) -> np.ndarray | None:
        """Content rows for new items' embeddings (None where this table keeps none)."""
        return None if self.content_space is None else self.content_space.project(vectors)

    def with_content(self, vectors: np.ndarray, space: ContentSpace | None = None) -> "SemanticIds":
        """This table with its items' content vectors made from their embeddings `vectors` (in
        row order), in `space` (by default fitted on them)."""
        space = space or ContentSpace.fit(vectors)
        return self.with_rows(self.item_ids, self.codes, content=space.project(vectors),
                              content_space=space)

    def extended(self, item_ids, codes: np.ndarray,
                 content: np.ndarray | None = None) -> "SemanticIds":
        """This table plus new rows (full codes; ids new and different), as with_rows(old + new)
        would make it, but checking only the new rows: the rows are appended to the shared
        column buffers, the ids to the index's tail and, where this table's trie is built, to
        its delta trie (folded into a new base past delta_limit, flags carried over), so a change
        costs O(added + delta), not a copy of the catalog. A table with content vectors needs the
        new rows' `content`."""
        item_ids = np.asarray(item_ids, dtype=np.int64).reshape(-1)
        part = self.with_rows(item_ids, codes, content=content)  # checks the new rows
        known = self.contains_many(item_ids)
        if known.any():
            raise InvalidArgumentError(f"item id {int(item_ids[known][0])} already has a semantic ID")
        n, m = len(self), len(item_ids)
        new = {"item_ids": item_ids, "codes": part.codes}
        if self.content is not None:
            new["content"] = part.content
        got = None if self._columns is None else self._columns.append(n, new)
        columns = self._columns
        if got is None:  # a fresh buffer with room to grow (the one copy of the columns)
            columns = _Columns(self._column_arrays(), n + m)
            got = columns.append(n, new)
        out = self._bare(got["item_ids"], got["codes"], got.get("content"))
        out._columns = columns
        out._index = self._index.added(item_ids, np.arange(n, n + m, dtype=np.int64))
        if self._trie is not None:
            held = 0 if self._delta is None else len(self._delta)
            if held + m <= delta_limit(n + m):  # the new rows join the delta trie
                out._trie, out._delta_from = self._trie, self._delta_from
                out._delta = (self._delta.derive(part.codes, item_ids) if self._delta is not None
                              else core().SidTrie(part.codes, item_ids, self.level_sizes))
            else:  # fold the delta and the new rows into a new base (self's flags)
                out._trie, out._delta, out._delta_from = self._trie, self._delta, self._delta_from
                out._trie, out._delta, out._delta_from = out._fold(), None, n + m
        return out

    def _column_arrays(self) -> dict[str, np.ndarray]:
        cols = {"item_ids": self.item_ids, "codes": self.codes}
        if self.content is not None:
            cols["content"] = self.content
        return cols

    def growable(self) -> "SemanticIds":
        """This table with its columns moved into append-only buffers with room to grow (see
        extended), so that not even the first add copies the catalog; a live catalog does this
        at load. Everything else (trie, index) is shared."""
        if self._columns is not None:
            return self
        n = len(self)
        columns = _Columns(self._column_arrays(), n)
        out = object.__new__(type(self))
        out.__dict__.update(self.__dict__)
        views = {name: b[:n] for name, b in columns.buffers.items()}
        out.item_ids, out.codes, out.content = views["item_ids"], views["codes"], views.get("content")
        out._columns = columns
        index = self._index
        if index.rows is None and index.ids is self.item_ids:  # the ids index themselves: keep
            out._index = _Index(out.item_ids, None, index.tail_ids, index.tail_rows)  # one copy
        return out

    def without(self, item_ids) -> "SemanticIds":
        """This table less these items (all held), rows kept in order; like extended, the trie
        (if built) is derived and the index filtered, not rebuilt."""
        gone = np.unique(np.asarray(item_ids, dtype=np.int64).reshape(-1))
        rows = self.rows_of(gone)
        keep = np.ones(len(self), dtype=bool)
        keep[rows] = False
        out = self._bare(self.item_ids[keep], self.codes[keep],
                         None if self.content is None else self.content[keep])
        new_row = np.cumsum(keep) - 1  # old row -> row after the removal
        parts = []
        for ids, old_rows in ((self._index.ids, self._index.main_rows()),
                              (self._index.tail_ids, self._index.tail_rows)):
            kept = keep[old_rows]
            parts.append((ids[kept], new_row[old_rows[kept]]))
        out._index = _Index(parts[0][0], parts[0][1], parts[1][0], parts[1][1])
        if self._trie is not None:  # base and delta folded, less the removed items
            whole = self._fold() if self._delta is not None else self._trie
            out._trie = whole.derive(np.zeros((0, self.n_levels), np.int32),
                                     np.zeros(0, np.int64), gone)
            out._delta_from = len(out)
        return out

    def _bare(self, item_ids: np.ndarray, codes: np.ndarray,
              content: np.ndarray | None) -> "SemanticIds":
        """A table over rows already checked (the caller sets its index)."""
        out = object.__new__(type(self))
        out.__dict__.update(self.__dict__)
        out.item_ids, out.codes = item_ids, np.ascontiguousarray(codes, dtype=np.int32)
        out.content = content
        out._by_sid, out._columns = None, None
        out._trie = out._delta = out._merged = None
        out._delta_from = len(item_ids)
        return out

    def as_view(self, view: int) -> "SemanticIds":
        """The same table written with view `view`'s tokens (sid/views.py)."""
        return self if view == self.view else self.with_rows(self.item_ids, self.codes, view=view,
                                                             content=self.content)

    def with_items(self, item_ids: Sequence[int], vectors: np.ndarray, n_threads: int = 1) -> "SemanticIds":
        """A new table holding these items plus new ones (ids must be new)."""
        item_ids = np.asarray(item_ids, dtype=np.int64)
        if len(item_ids) != len(np.atleast_2d(vectors)):
            raise InvalidArgumentError(
                f"{len(item_ids)} item ids but {len(np.atleast_2d(vectors))} vectors; expected as many")
        return self.extended(item_ids, self.assign(vectors, n_threads=n_threads),
                             content=self.new_content(vectors))

    # --- persistence -------------------------------------------------------------------------
    def save(self, path: str | Path, *, extra_files: dict[str, object] | None = None) -> Path:
        """Write the artefact directory atomically; `extra_files` maps name -> JSON object."""
        path = Path(path)
        with atomic_directory(path) as tmp:
            arrays = {"item_ids": self.item_ids, "codes": self.codes}
            if self.encoder is not None:
                arrays.update({f"quantizer.{k}": v for k, v in self.encoder.state().items()})
            if self.content is not None:
                arrays["content.rows"] = self.content
                arrays.update({f"content.{k}": v for k, v in self.content_space.state().items()})
            np.savez(tmp / "arrays.npz", **arrays)
            with open(tmp / "sids.tsv", "w", encoding="utf-8") as f:
                f.write("item_id\tsid\n")
                for item, s in zip(self.item_ids.tolist(), self.sid_strings()):
                    f.write(f"{item}\t{s}\n")
            write_json(tmp / "report.json", self.report())
            for name, obj in (extra_files or {}).items():
                write_json(tmp / name, obj)
            write_json(tmp / "semantic_ids.json", {
                "format": FORMAT_NAME,
                "format_version": FORMAT_VERSION,
                "n_items": len(self),
                "levels": self.levels,
                "codebook_size": self.codebook_size,
                "collisions": self.collisions,
                "extra_level_size": self.extra_level_size,
                "has_quantizer": self.encoder is not None,
                "view": self.view,
                "config": self.config,
                "versions": versions(),
                "sha256": {"arrays.npz": sha256_file(tmp / "arrays.npz")},
            })
        return path

    @classmethod
    def load(cls, path: str | Path) -> "SemanticIds":
        path = Path(path)
        if not path.is_dir():
            raise ArtifactError(f"{path} is not a semantic-ID directory (expected the folder "
                                "written by `genrec-lite sid build`)")
        if (path / "views.json").is_file():
            raise ArtifactError(f"{path} holds several SID views; load it with SidViews.load")
        meta = read_manifest(path / "semantic_ids.json", FORMAT_NAME, FORMAT_VERSION)
        arrays_path = path / "arrays.npz"
        if not arrays_path.is_file():
            raise ArtifactError(f"{arrays_path} is missing")
        expected = meta.get("sha256", {}).get("arrays.npz")
        if expected and sha256_file(arrays_path) != expected:
            raise ArtifactError(f"{arrays_path} does not match its checksum; the file is corrupted")
        try:
            with np.load(arrays_path) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception as exc:  # zip/npy errors of every kind
            raise ArtifactError(f"{arrays_path} cannot be read ({exc})") from exc
        try:
            encoder = None
            q = {k[len("quantizer."):]: v for k, v in arrays.items() if k.startswith("quantizer.")}
            if q:
                encoder = SidEncoder.from_state(q)
            content = arrays.get("content.rows")
            space = None if content is None else ContentSpace.from_state(
                {k: arrays[f"content.{k}"] for k in ("mean", "components")})
            return cls(arrays["item_ids"], arrays["codes"], levels=meta["levels"],
                       codebook_size=meta["codebook_size"], collisions=meta["collisions"],
                       extra_level_size=meta.get("extra_level_size", 0), encoder=encoder,
                       config=meta.get("config", {}), view=meta.get("view", 0),
                       content=content, content_space=space)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, InvalidArgumentError):
                raise
            raise ArtifactError(f"{path} is damaged: {exc!r}") from exc
