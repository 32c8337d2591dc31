"""Per-user sequences and evaluation cases kept as a few flat arrays.

A log of 10^7 interactions has about 10^6 users and as many test cases. As Python objects (a
dict of a million arrays, a million ``Case`` tuples of boxed ints) they cost several hundred
bytes each, more than the log itself; here they cost a few array entries each, and a ``Case``
object is made only when one is read.
"""

from __future__ import annotations

from collections.abc import ItemsView, Mapping, Sequence, ValuesView
from typing import Iterator

import numpy as np

from ..errors import InvalidArgumentError


def _positions(a) -> np.ndarray:
    """Positions as given when they are an integer array (int32 for a large log's ranges),
    else int64."""
    a = np.asarray(a)
    return a if a.dtype.kind in "iu" and a.size else a.astype(np.int64)


def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


class UserSequences(Mapping):
    """``user id -> items (oldest first)`` over one flat array: user ``k`` of :attr:`users` has
    ``flat[starts[k]:ends[k]]``. Reads like the dict it replaces (``seqs[user]``, ``.items()``,
    ``len``); values are read-only views into the flat array.

    Made from ``offsets`` (user ``k`` has ``flat[offsets[k]:offsets[k + 1]]``) or from
    ``starts`` and ``ends``: then the ranges may leave gaps, so that a split's training part
    (each sequence less its last items) and its cases share one array."""

    def __init__(self, users: np.ndarray, offsets: np.ndarray | None, flat: np.ndarray, *,
                 starts: np.ndarray | None = None, ends: np.ndarray | None = None):
        users, flat = np.asarray(users), np.asarray(flat)
        n = len(users)
        if offsets is not None:
            offsets = _positions(offsets)
            if offsets.shape != (n + 1,) or (len(offsets) and (
                    offsets[0] != 0 or offsets[-1] != len(flat) or (np.diff(offsets) < 0).any())):
                raise InvalidArgumentError(
                    f"offsets must be {n + 1} non-decreasing positions from 0 to {len(flat)}, "
                    f"got shape {offsets.shape}")
            starts, ends = offsets[:-1], offsets[1:]
        else:
            starts, ends = _positions(starts), _positions(ends)
            if starts.shape != (n,) or ends.shape != (n,) or (n and (
                    starts.min() < 0 or ends.max() > len(flat) or (ends < starts).any())):
                raise InvalidArgumentError(
                    f"starts and ends must be {n} ranges inside a flat array of {len(flat)}, got "
                    f"shapes {starts.shape} and {ends.shape}")
        self.users = _frozen(users)
        self.starts, self.ends = _frozen(starts), _frozen(ends)
        self.flat = _frozen(flat)
        self._index: dict[str, int] | None = None  # made on the first lookup by user id

    @classmethod
    def from_dict(cls, seqs: Mapping[str, "np.ndarray | Sequence[int]"]) -> "UserSequences":
        if isinstance(seqs, UserSequences):
            return seqs
        lens = np.fromiter((len(s) for s in seqs.values()), dtype=np.int64, count=len(seqs))
        offsets = np.zeros(len(lens) + 1, dtype=np.int64)
        np.cumsum(lens, out=offsets[1:])
        items = np.empty(int(offsets[-1]), dtype=np.int64)
        for s, a, b in zip(seqs.values(), offsets[:-1].tolist(), offsets[1:].tolist()):
            items[a:b] = s
        users = np.array([str(u) for u in seqs], dtype=str) if len(seqs) else \
            np.zeros(0, dtype="<U1")
        return cls(users, offsets, items)

    @property
    def lengths(self) -> np.ndarray:
        return self.ends - self.starts

    def at(self, k: int) -> np.ndarray:
        """The sequence of user ``k`` (a position in :attr:`users`)."""
        return self.flat[self.starts[k]:self.ends[k]]

    def __len__(self) -> int:
        return len(self.users)

    def __iter__(self) -> Iterator[str]:
        return iter(self.users.tolist())

    def __getitem__(self, user: str) -> np.ndarray:
        if self._index is None:
            self._index = {u: k for k, u in enumerate(self.users.tolist())}
        return self.at(self._index[user])

    def items(self) -> "ItemsView":  # type: ignore[override]
        return _Pairs(self)

    def values(self) -> "ValuesView":  # type: ignore[override]
        return _Values(self)

    def __repr__(self) -> str:
        return f"UserSequences({len(self)} users, {int(self.lengths.sum())} items)"


class _Pairs(ItemsView):
    """In order, without a lookup per user."""

    def __iter__(self):
        m = self._mapping
        return ((u, m.at(k)) for k, u in enumerate(m.users.tolist()))


class _Values(ValuesView):
    def __iter__(self):
        m = self._mapping
        return (m.at(k) for k in range(len(m)))


class CaseTable(Sequence):
    """Cases as arrays: case ``i`` is user ``users[user_of[i]]`` predicting ``pool[at[i]]`` from
    the items before it in the pool back to its user's first, ``pool[first[user_of[i]]]``, the
    last ``max_len`` of them. Indexing gives a :class:`~genrec_lite.data.splits.Case`; a slice
    gives a CaseTable; it equals any sequence of the same cases. Two int32 a case: the history
    and the target are where the case's user's sequence already is."""

    def __init__(self, users: np.ndarray, user_of: np.ndarray, pool: np.ndarray, at: np.ndarray,
                 first: np.ndarray, max_len: int | None):
        if len(user_of) != len(at):
            raise InvalidArgumentError(f"case arrays must share one length, got {len(user_of)} "
                                       f"and {len(at)}")
        self.users, self.user_of, self.pool, self.at = users, user_of, pool, at
        self.first, self.max_len = first, max_len

    @classmethod
    def empty(cls, users: np.ndarray, pool: np.ndarray) -> "CaseTable":
        none = np.zeros(0, dtype=np.int64)
        return cls(users, none, pool, none, none, None)

    def __len__(self) -> int:
        return len(self.at)

    def _lo(self, u: int, at: int) -> int:
        lo = int(self.first[u])
        return lo if self.max_len is None else max(lo, at - self.max_len)

    def __getitem__(self, i):
        from .splits import Case

        if isinstance(i, slice):
            return CaseTable(self.users, self.user_of[i], self.pool, self.at[i], self.first,
                             self.max_len)
        n = len(self)
        if isinstance(i, (int, np.integer)) and -n <= i < n:
            i = int(i) % n
            u, at = int(self.user_of[i]), int(self.at[i])
            return Case(str(self.users[u]), tuple(self.pool[self._lo(u, at):at].tolist()),
                        int(self.pool[at]))
        raise IndexError(f"case index {i!r} out of range for {n} cases")

    def __iter__(self):
        from .splits import Case

        users, pool = self.users, self.pool
        for u, at in zip(self.user_of.tolist(), self.at.tolist()):
            yield Case(str(users[u]), tuple(pool[self._lo(u, at):at].tolist()), int(pool[at]))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, (str, bytes)):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"CaseTable({len(self)} cases)"
