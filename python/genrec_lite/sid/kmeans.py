"""k-means in numpy: the initialiser of the RQ-VAE codebooks and the whole of RQ-KMeans."""

from __future__ import annotations

import numpy as np

from ..errors import InvalidArgumentError


def _sq_dists(x: np.ndarray, centers: np.ndarray, x_sq: np.ndarray | None = None) -> np.ndarray:
    """Squared distances (n, k); float32 throughput matters more than the last bit here."""
    if x_sq is None:
        x_sq = np.einsum("ij,ij->i", x, x)
    c_sq = np.einsum("ij,ij->i", centers, centers)
    d = x_sq[:, None] - 2.0 * (x @ centers.T) + c_sq[None, :]
    np.maximum(d, 0.0, out=d)
    return d


def kmeans_plus_plus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++ seeding: of 2 + log(k) candidates drawn by D^2 sampling, keep the one that
    lowers the total cost most. With fewer distinct points than k the rest are jittered copies."""
    n = x.shape[0]
    trials = 2 + int(np.log(k))
    centers = np.empty((k, x.shape[1]), dtype=x.dtype)
    centers[0] = x[int(rng.integers(n))]
    x_sq = np.einsum("ij,ij->i", x, x)
    closest = _sq_dists(x, centers[:1], x_sq)[:, 0]
    for j in range(1, k):
        total = float(closest.sum())
        if total <= 0.0:
            # Every point already is a centre: fill with jittered copies so no two centres coincide.
            scale = float(np.std(x)) * 1e-3 + 1e-6
            picks = rng.integers(n, size=k - j)
            centers[j:] = x[picks] + rng.normal(0.0, scale, size=(k - j, x.shape[1])).astype(x.dtype)
            break
        cand = rng.choice(n, size=trials, p=closest / total)
        new = np.minimum(closest[None, :], _sq_dists(x, x[cand], x_sq).T)  # (trials, n)
        best = int(new.sum(axis=1).argmin())
        centers[j] = x[cand[best]]
        closest = new[best]
    return centers


def kmeans(x: np.ndarray, k: int, *, iters: int = 50, seed: int | np.random.Generator = 0,
           tol: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means with k-means++ seeding. Returns (centres (k, d) float32, labels (n,) int64).

    An empty cluster is re-seeded with the point currently farthest from its centre, so every code
    of a freshly initialised codebook is in use whenever there are at least k distinct points.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] == 0:
        raise InvalidArgumentError(f"kmeans needs a non-empty 2-D array; got shape {x.shape}")
    if k < 1:
        raise InvalidArgumentError(f"kmeans needs k >= 1; got k={k}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    centers = kmeans_plus_plus(x, k, rng)
    x_sq = np.einsum("ij,ij->i", x, x)
    labels = np.zeros(x.shape[0], dtype=np.int64)
    prev_inertia = np.inf
    for _ in range(max(iters, 1)):
        d = _sq_dists(x, centers, x_sq)
        labels = d.argmin(axis=1)
        point_cost = d[np.arange(x.shape[0]), labels]
        inertia = float(point_cost.sum())
        counts = np.bincount(labels, minlength=k)
        sums = np.zeros_like(centers, dtype=np.float64)
        np.add.at(sums, labels, x)
        nonempty = counts > 0
        centers[nonempty] = (sums[nonempty] / counts[nonempty, None]).astype(np.float32)
        empty = np.flatnonzero(~nonempty)
        if empty.size:
            # Points that sit exactly on their centre are never moved onto: with fewer distinct
            # points than k, the seeding's distinct jittered centres stay as they are.
            far = np.argsort(-point_cost)[:empty.size]
            far = far[point_cost[far] > 0.0]
            centers[empty[:far.size]] = x[far]
            point_cost[far] = 0.0
        if empty.size == 0 and prev_inertia - inertia <= tol * max(prev_inertia, 1e-12):
            break
        prev_inertia = inertia
    labels = _sq_dists(x, centers, x_sq).argmin(axis=1)
    return centers, labels
