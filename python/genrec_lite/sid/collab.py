"""Collaborative signal for semantic IDs: item vectors from who-clicked-what-next, joined to text.

Text-only SIDs put items that read alike under one prefix; the language model must then learn every
item -> successor mapping across unrelated prefixes, and a first-order Markov table still beats it on
transitions seen in training. Adding a co-occurrence embedding to the quantiser's input puts items
that are clicked close together in users' sequences under shared prefixes as well.

- `cooccurrence_vectors`: PPMI of item pairs that occur within `window` positions of each other in a
  user's sequence (weight 1 / distance), factorised by truncated SVD (rows scaled by sqrt of the
  singular values) and normalised to unit length.
- `joined_vectors`: [text ; weight * CF]. Items without interactions (and every item added later) get
  the CF part predicted from their text by ridge regression fitted on the items that have one, so
  the map text -> quantiser input stays linear and `fold_input_map` can fold it into the stored
  encoder: cold start still needs only the text embedding.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np

from .._sorted import find_sorted
from ..errors import InvalidArgumentError

CHUNK = 65_536  # rows per step of the dense float64 work on item vectors


def cooccurrence_vectors(sequences: Iterable[Sequence[int]], item_ids: Sequence[int], *,
                         dim: int = 64, window: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(vectors (n, dim) float64, has (n,) bool): unit CF vectors for the items of `item_ids` that
    co-occur with another item, zero rows for the rest. `sequences`: item-id sequences, or a
    mapping user -> sequence (a split's `train`)."""
    import scipy.sparse as sp
    from scipy.sparse.linalg import svds

    if dim < 1 or window < 1:
        raise InvalidArgumentError(f"dim={dim}, window={window}; expected both >= 1")
    if isinstance(sequences, Mapping):
        sequences = sequences.values()
    item_ids = np.asarray(item_ids, dtype=np.int64)
    n = len(item_ids)
    rows, cols, vals = _window_pairs(sequences, item_ids, window)
    out = np.zeros((n, dim))
    if not len(rows):
        return out, np.zeros(n, bool)
    C = sp.coo_matrix((vals, (rows, cols)), shape=(n, n)).tocsr()   # sums the repeated pairs
    del rows, cols, vals
    deg = np.asarray(C.sum(axis=1)).ravel()
    has = deg > 0
    # PPMI: log(p(a, b) / (p(a) p(b))), negative values clipped to 0
    C = C.tocoo()
    pmi = np.log(C.data * deg.sum() / (deg[C.row] * deg[C.col]))
    keep = pmi > 0
    P = sp.csr_matrix((pmi[keep], (C.row[keep], C.col[keep])), shape=(n, n))
    k = min(dim, int(has.sum()) - 1)
    if k < 1:
        return out, np.zeros(n, bool)
    U, S, _ = svds(P, k=k, random_state=0)
    order = np.argsort(-S)
    U, S = U[:, order], S[order]
    U *= np.sign(U[np.abs(U).argmax(axis=0), np.arange(k)])   # a fixed sign per component
    E = U * np.sqrt(S)
    norms = np.linalg.norm(E, axis=1)
    has &= norms > 1e-12
    out[has, :k] = E[has] / norms[has, None]
    return out, has


def _window_pairs(sequences: Iterable[Sequence[int]], item_ids: np.ndarray, window: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, cols, weights): both directions of every pair of different items within `window`
    positions of each other in one sequence, weight 1 / distance, as catalog rows. Items outside
    the catalog are dropped from a sequence first (their neighbours become adjacent). All the
    sequences at once in flat arrays: a loop over 10^6 users' small arrays costs minutes and a
    Python object per pair list."""
    seqs = [np.asarray(s, dtype=np.int64).reshape(-1) for s in sequences]
    index_type = np.int32 if len(item_ids) < 2**31 else np.int64  # halves the pair lists
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    flat = np.concatenate(seqs) if seqs else np.zeros(0, np.int64)
    owner = np.repeat(np.arange(len(seqs), dtype=np.int64), lengths)
    del seqs
    order = np.argsort(item_ids, kind="stable")
    at, known = find_sorted(item_ids[order], flat)
    pos, owner = order[at[known]].astype(index_type), owner[known]
    parts = []
    for d in range(1, window + 1):
        a, b = pos[:-d], pos[d:]
        keep = (owner[:-d] == owner[d:]) & (a != b)
        a, b = a[keep], b[keep]
        parts.append((np.concatenate([a, b]), np.concatenate([b, a]), np.full(2 * len(a), 1.0 / d)))
    return tuple(np.concatenate(p) for p in zip(*parts))


def text_to_cf_map(text: np.ndarray, cf: np.ndarray, has: np.ndarray, ridge: float = 1.0) -> np.ndarray:
    """(text_dim, cf_dim): ridge regression from an item's text vector to its CF vector, fitted on
    the items that have one. The normal equations are summed over CHUNK rows at a time, so the
    float64 copy of the text vectors never exceeds one chunk."""
    rows = np.flatnonzero(has)
    if len(rows) == 0:
        raise InvalidArgumentError("no item has interactions to learn collaborative vectors from; "
                                   "expected interactions of the catalog's items")
    xtx = xty = 0.0
    for start in range(0, len(rows), CHUNK):
        X = text[rows[start:start + CHUNK]].astype(np.float64)
        xtx = xtx + X.T @ X
        xty = xty + X.T @ cf[rows[start:start + CHUNK]]
    return np.linalg.solve(xtx + ridge * np.eye(text.shape[1]), xty)


def joined_vectors(text: np.ndarray, cf: np.ndarray, has: np.ndarray, weight: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """([text ; weight * CF] float32 (n, text_dim + cf_dim), input map (text_dim, text_dim + cf_dim)
    that gives an item without interactions its joined vector from its text: x = text @ map).
    Computed in float64 CHUNK rows at a time: `text` may stay float32."""
    if weight <= 0:
        raise InvalidArgumentError(f"collaborative weight {weight}; expected > 0")
    W = text_to_cf_map(text, cf, has) * weight
    joined = np.empty((len(text), text.shape[1] + W.shape[1]), dtype=np.float32)
    for start in range(0, len(text), CHUNK):
        t = np.asarray(text[start:start + CHUNK], dtype=np.float64)
        part = np.where(has[start:start + CHUNK, None], cf[start:start + CHUNK] * weight, t @ W)
        joined[start:start + CHUNK] = np.concatenate([t, part], axis=1)
    input_map = np.concatenate([np.eye(text.shape[1]), W], axis=1).astype(np.float32)
    return joined, input_map


def fold_input_map(layers: list[tuple[np.ndarray, np.ndarray]], input_map: np.ndarray
                   ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Encoder layers that take the text vector: the linear input map folded into the first layer
    (or, with no layers, as the only one: RQ-KMeans quantises the joined vector itself)."""
    M = np.asarray(input_map, dtype=np.float64)
    if not layers:
        return [(M.T.astype(np.float32), np.zeros(M.shape[1], np.float32))]
    (w, b), rest = layers[0], list(layers[1:])
    return [((np.asarray(w, np.float64) @ M.T).astype(np.float32), b)] + rest
