"""Content vectors: a small, fixed-size picture of each item's embedding, kept beside its SID.

Cold start (runtime/cold_start.py) compares items the model never trained on with a request's
history by content. The quantiser's reconstruction (the sum of an item's codewords) is available
for every item at no cost, but it keeps only what the codes keep; measured on amazon-industrial's
launch segment the items' text embeddings rank the new items far better (docs/cold_start.md). A
text embedding is 384 floats an item, too much to hold for a million-item catalog in every
worker, so the table keeps the top `dim` principal components of the embeddings, unit length,
as int8 (64 bytes an item at the default 64: 64 MB per million items).

`ContentSpace` is the projection (the mean and the principal directions of the vectors the SIDs
were built from); new items, from text or from given vectors, are projected with the same one, so
they land in the space their neighbours are in. numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InvalidArgumentError
from .encoder import all_finite

DIM = 64          # principal components kept
SCALE = 127.0     # a unit vector's components lie in [-1, 1]: int8 holds them to ~0.004
FIT_SAMPLE = 100_000  # rows the principal directions are computed from (seeded sample)
PROJECT_BATCH = 65_536  # rows projected at a time: bounds the float temporaries at any catalog size


@dataclass(frozen=True)
class ContentSpace:
    mean: np.ndarray        # (d,) float32
    components: np.ndarray  # (k, d) float32, orthonormal rows

    def __post_init__(self):
        m, c = np.asarray(self.mean), np.asarray(self.components)
        if m.ndim != 1 or c.ndim != 2 or c.shape[1] != m.shape[0] or c.shape[0] < 1:
            raise InvalidArgumentError(f"content space of mean shape {m.shape} and components "
                                       f"shape {c.shape}; expected (d,) and (k, d), k >= 1")

    @property
    def input_dim(self) -> int:
        return int(self.mean.shape[0])

    @property
    def dim(self) -> int:
        return int(self.components.shape[0])

    @classmethod
    def fit(cls, vectors: np.ndarray, dim: int = DIM, seed: int = 0) -> "ContentSpace":
        """The mean and top `dim` principal directions of `vectors` (n, d), from a seeded sample
        of at most FIT_SAMPLE rows (the directions of a large catalog settle long before that)."""
        v = _matrix(vectors, None)
        if len(v) < 2:
            raise InvalidArgumentError(f"{len(v)} vectors; a content space needs at least 2")
        if len(v) > FIT_SAMPLE:
            v = v[np.sort(np.random.default_rng(seed).choice(len(v), FIT_SAMPLE, replace=False))]
        mean = v.mean(axis=0)
        k = max(1, min(int(dim), v.shape[1], len(v) - 1))
        # the right singular vectors of the centred sample are the principal directions
        _, _, vt = np.linalg.svd((v - mean).astype(np.float64), full_matrices=False)
        comps = vt[:k]
        # a deterministic sign per direction, so that two fits of the same data agree bit for bit
        flip = np.sign(comps[np.arange(k), np.abs(comps).argmax(axis=1)])
        return cls(mean.astype(np.float32), (comps * flip[:, None]).astype(np.float32))

    def project(self, vectors: np.ndarray) -> np.ndarray:
        """(n, dim) int8 rows: the unit-length projections of `vectors` (n, input_dim), times
        SCALE. A vector at the mean (no direction) projects to zeros."""
        v = _matrix(vectors, self.input_dim)
        out = np.empty((len(v), self.dim), dtype=np.int8)
        for start in range(0, len(v), PROJECT_BATCH):
            z = (v[start:start + PROJECT_BATCH] - self.mean) @ self.components.T
            norm = np.linalg.norm(z, axis=1, keepdims=True)
            z = z / np.where(norm > 0, norm, 1.0)
            out[start:start + PROJECT_BATCH] = np.clip(np.rint(z * SCALE), -127, 127)
        return out

    def state(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean, "components": self.components}

    @classmethod
    def from_state(cls, state: dict) -> "ContentSpace":
        return cls(np.asarray(state["mean"], dtype=np.float32),
                   np.asarray(state["components"], dtype=np.float32))


def unit_rows(rows: np.ndarray) -> np.ndarray:
    """float32 unit vectors of stored int8 rows (zeros stay zeros)."""
    z = np.asarray(rows, dtype=np.float32)
    norm = np.linalg.norm(z, axis=1, keepdims=True)
    return z / np.where(norm > 0, norm, 1.0)


def _matrix(vectors, dim: int | None) -> np.ndarray:
    v = np.asarray(vectors, dtype=np.float32)
    if v.ndim == 1:
        v = v[None, :]
    if v.ndim != 2 or (dim is not None and v.shape[1] != dim):
        want = f"(n, {dim})" if dim is not None else "(n, d)"
        raise InvalidArgumentError(f"vectors of shape {v.shape}; expected {want}")
    if not all_finite(v):
        raise InvalidArgumentError("vectors hold NaN or infinite values")
    return v
