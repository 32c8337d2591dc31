"""RQ-KMeans: residual k-means straight on the item embeddings (no encoder, no training loop).

The fast alternative to the RQ-VAE: level l's codebook is k-means on what levels < l left over.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidArgumentError
from .kmeans import kmeans


def train_rqkmeans(vectors: np.ndarray, *, levels: int = 3, codebook_size: int = 256,
                   iters: int = 100, seed: int = 0, progress: bool = True) -> np.ndarray:
    """Codebooks (levels, codebook_size, dim) float32."""
    from tqdm.auto import tqdm

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise InvalidArgumentError(f"RQ-KMeans needs a non-empty (n, dim) array; got shape {x.shape}")
    rng = np.random.default_rng(seed)
    books = np.empty((levels, codebook_size, x.shape[1]), dtype=np.float32)
    residual = x.copy()
    for level in tqdm(range(levels), desc="RQ-KMeans", unit="level", disable=not progress):
        centers, labels = kmeans(residual, codebook_size, iters=iters, seed=rng)
        books[level] = centers
        residual -= centers[labels]
    return books
