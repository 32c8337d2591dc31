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
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .._ext import core
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
        # id -> row through the ids sorted (and their rows), not a dict: at 10^6 items a dict costs
        # ~100 MB per process and a copy per catalog change
        order = np.argsort(self.item_ids, kind="stable")
        self._set_index(self.item_ids[order], order)
        same = np.flatnonzero(self._sorted_ids[1:] == self._sorted_ids[:-1])
        if len(same):
            raise InvalidArgumentError(f"item id {int(self._sorted_ids[same[0]])} appears more than once")
        self._by_sid: dict[bytes, list[int]] | None = None
        self._trie = None

    def _set_index(self, sorted_ids: np.ndarray, rows: np.ndarray) -> None:
        self._sorted_ids = sorted_ids
        self._sorted_rows = rows.astype(np.int64, copy=False)

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

    def _find(self, item_id: int) -> int:
        """The row of an item id, or -1."""
        k = int(np.searchsorted(self._sorted_ids, item_id))
        if k < len(self._sorted_ids) and self._sorted_ids[k] == item_id:
            return int(self._sorted_rows[k])
        return -1

    def contains_many(self, item_ids) -> np.ndarray:
        """Whether each of these ids has a SID (bool array)."""
        ids = np.asarray(item_ids, dtype=np.int64).reshape(-1)
        k = np.minimum(np.searchsorted(self._sorted_ids, ids), max(len(self._sorted_ids) - 1, 0))
        if not len(self._sorted_ids):
            return np.zeros(len(ids), dtype=bool)
        return self._sorted_ids[k] == ids

    def rows_of(self, item_ids) -> np.ndarray:
        """Rows of these ids (int64 array); UnknownItemError names the first one missing."""
        ids = np.asarray(item_ids, dtype=np.int64).reshape(-1)
        found = self.contains_many(ids)
        if not found.all():
            bad = int(ids[~found][0])
            raise UnknownItemError(f"item id {bad} has no semantic ID", value=bad)
        return self._sorted_rows[np.searchsorted(self._sorted_ids, ids)]

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
        """The C++ prefix trie over these SIDs (built once, cached)."""
        if self._trie is None:
            self._trie = core().SidTrie(self.codes, self.item_ids, self.level_sizes)
        return self._trie

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
            extra = extra_level(base, start=self._trie.next_codes(base))
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
        would make it, but checking only the new rows, merging the id index instead of sorting
        it again and, where this table's trie is built, deriving the new trie from it (its active
        flags carried over) rather than building one: a change costs a copy of the columns. A
        table with content vectors needs the new rows' `content`."""
        item_ids = np.asarray(item_ids, dtype=np.int64).reshape(-1)
        part = self.with_rows(item_ids, codes, content=content)  # checks the new rows
        known = self.contains_many(item_ids)
        if known.any():
            raise InvalidArgumentError(f"item id {int(item_ids[known][0])} already has a semantic ID")
        out = self._bare(np.concatenate([self.item_ids, item_ids]),
                         np.concatenate([self.codes, part.codes]),
                         None if self.content is None else np.concatenate([self.content, part.content]))
        at = np.searchsorted(self._sorted_ids, part._sorted_ids)
        out._set_index(np.insert(self._sorted_ids, at, part._sorted_ids),
                       np.insert(self._sorted_rows, at, part._sorted_rows + len(self)))
        if self._trie is not None:
            out._trie = self._trie.derive(part.codes, item_ids)
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
        kept = keep[self._sorted_rows]
        out._set_index(self._sorted_ids[kept], new_row[self._sorted_rows[kept]])
        if self._trie is not None:
            out._trie = self._trie.derive(np.zeros((0, self.n_levels), np.int32),
                                          np.zeros(0, np.int64), gone)
        return out

    def _bare(self, item_ids: np.ndarray, codes: np.ndarray,
              content: np.ndarray | None) -> "SemanticIds":
        """A table over rows already checked (the caller sets its index)."""
        out = object.__new__(type(self))
        out.__dict__.update(self.__dict__)
        out.item_ids, out.codes = item_ids, np.ascontiguousarray(codes, dtype=np.int32)
        out.content = content
        out._by_sid, out._trie = None, None
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
