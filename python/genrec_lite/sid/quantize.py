"""Residual-quantizer code assignment (vectors -> L codes), numpy only.

The rule, for one float32 vector x and codebooks C of shape (L, K, D)::

    r = x                                            # float32
    for l in range(L):
        d_k = sum_i (float64(r_i) - float64(C[l, k, i]))**2   # summed in index order i = 0..D-1
        code[l] = argmin_k d_k                       # ties -> the lowest k
        r = r - C[l, code[l]]                        # float32, elementwise

- :func:`residual_encode_reference` implements it exactly; the PyTorch RQ-VAE / RQ-KMeans code
  calls it to assign the final codes, and the tests hold the C++ core to it.
- :func:`encode` is the fast path (the C++ ``ResidualQuantizer``), giving the same codes.
- :func:`residual_encode_numpy` is the plain vectorised float32 version (one matrix product per
  level); it can differ from the rule on near-ties and serves as the benchmark baseline.
"""

from __future__ import annotations

import numpy as np

from .._ext import core
from ..errors import InvalidArgumentError

__all__ = ["residual_encode_reference", "residual_encode_numpy", "residual_decode", "encode"]

_CHUNK = 4096  # items per step of the reference (bounds its temporary memory)


def _codebooks(codebooks) -> np.ndarray:
    cb = np.asarray(codebooks)
    if cb.ndim != 3 or min(cb.shape) == 0:
        raise InvalidArgumentError(
            f"codebooks must have shape (levels, codebook_size, dim) with every size >= 1; "
            f"got {cb.shape}")
    if not np.issubdtype(cb.dtype, np.number) or np.iscomplexobj(cb):
        raise InvalidArgumentError(f"codebooks must be a real numeric array; got dtype {cb.dtype}")
    cb = np.ascontiguousarray(cb, dtype=np.float32)
    if not np.isfinite(cb).all():
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(cb))[0])
        raise InvalidArgumentError(f"codebooks{list(bad)} is {cb[bad]}; expected finite values")
    return cb


def _vectors(x, dim: int) -> tuple[np.ndarray, bool]:
    a = np.asarray(x)
    single = a.ndim == 1
    if a.ndim not in (1, 2) or a.shape[-1] != dim:
        raise InvalidArgumentError(f"x has shape {a.shape}; expected (n, {dim}) or ({dim},)")
    if not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
        raise InvalidArgumentError(f"x must be a real numeric array; got dtype {a.dtype}")
    a = np.ascontiguousarray(a.reshape(-1, dim), dtype=np.float32)
    finite = np.isfinite(a)
    if not finite.all():
        row, col = (int(i) for i in np.argwhere(~finite)[0])
        raise InvalidArgumentError(
            f"x row {row} column {col} is {a[row, col]}; expected finite float32 values")
    return a, single


def residual_encode_reference(codebooks, x) -> np.ndarray:
    """Codes by the exact rule above: int32 (n, L), or (L,) for a single vector of shape (D,).

    Float64 distances from one matrix product select the candidates within a rigorous error
    bound of the best; those are re-scored with the defining sum, so the result is the rule's,
    ties included.
    """
    cb = _codebooks(codebooks)
    n_levels, _, dim = cb.shape
    xs, single = _vectors(x, dim)
    cb64 = cb.astype(np.float64)
    norms = np.einsum("lkd,lkd->lk", cb64, cb64)
    max_norm = norms.max(axis=1)
    # Error of the expanded float64 distance plus that of the defining sum, twice (two distances
    # compared), with a margin: 16 (D + 4) eps (|r|^2 + max|c|^2).
    tol_scale = 16.0 * (dim + 4) * np.finfo(np.float64).eps
    codes = np.empty((xs.shape[0], n_levels), dtype=np.int32)
    for start in range(0, xs.shape[0], _CHUNK):
        r = xs[start:start + _CHUNK].copy()
        out = codes[start:start + _CHUNK]
        for lvl in range(n_levels):
            r64 = r.astype(np.float64)
            r2 = np.einsum("nd,nd->n", r64, r64)
            dist = r2[:, None] + norms[lvl][None, :] - 2.0 * (r64 @ cb64[lvl].T)
            best = dist.min(axis=1)
            cand = dist <= (best + tol_scale * (r2 + max_norm[lvl]))[:, None]
            choice = dist.argmin(axis=1)
            multi = np.flatnonzero(cand.sum(axis=1) > 1)
            if multi.size:
                rows, cols = np.nonzero(cand[multi])
                diff = r64[multi[rows]] - cb64[lvl][cols]
                exact = np.cumsum(diff * diff, axis=1)[:, -1]  # sequential sum, index order
                order = np.lexsort((cols, exact, rows))        # by row, distance, then code
                first = np.ones(order.size, dtype=bool)
                first[1:] = rows[order][1:] != rows[order][:-1]
                choice[multi[rows[order][first]]] = cols[order][first]
            out[:, lvl] = choice
            r -= cb[lvl][choice]
    return codes[0] if single else codes


def residual_encode_numpy(codebooks, x, norms: np.ndarray | None = None) -> np.ndarray:
    """The plain vectorised float32 version: per level ``argmin(||c||^2 - 2 r C^T)``, subtract.

    int32 (n, L). ``norms`` (L, K) float32, the squared codeword norms, may be passed precomputed.
    Not exact on near-ties (float32 scores); a baseline, not a reference.
    """
    cb = np.asarray(codebooks, dtype=np.float32)
    r = np.array(x, dtype=np.float32, ndmin=2, copy=True)
    if norms is None:
        norms = np.einsum("lkd,lkd->lk", cb, cb)
    codes = np.empty((r.shape[0], cb.shape[0]), dtype=np.int32)
    for lvl in range(cb.shape[0]):
        scores = r @ cb[lvl].T
        scores *= -2.0
        scores += norms[lvl]
        choice = scores.argmin(axis=1)
        codes[:, lvl] = choice
        r -= cb[lvl][choice]
    return codes


def residual_decode(codebooks, codes) -> np.ndarray:
    """Sum of the chosen codewords, float32, added in level order: (n, L) -> (n, D), (L,) -> (D,).

    Bit-identical to ``ResidualQuantizer.decode``.
    """
    cb = _codebooks(codebooks)
    c = np.asarray(codes)
    n_levels, k, _ = cb.shape
    if c.ndim not in (1, 2) or c.shape[-1] != n_levels:
        raise InvalidArgumentError(f"codes has shape {c.shape}; expected (n, {n_levels}) or ({n_levels},)")
    if c.size and not np.issubdtype(c.dtype, np.integer):
        raise InvalidArgumentError(f"codes must be an integer array; got dtype {c.dtype}")
    c2 = c.reshape(-1, n_levels).astype(np.int64)
    bad = (c2 < 0) | (c2 >= k)
    if bad.any():
        row, lvl = (int(i) for i in np.argwhere(bad)[0])
        raise InvalidArgumentError(
            f"codes row {row} level {lvl} has code {c2[row, lvl]}; expected 0 <= code < {k}")
    out = cb[0][c2[:, 0]].copy()
    for lvl in range(1, n_levels):
        out += cb[lvl][c2[:, lvl]]
    return out[0] if c.ndim == 1 else out


def encode(codebooks_or_quantizer, x, n_threads: int = 1) -> np.ndarray:
    """Codes of x by the C++ core: int32 (n, L), or (L,) for one vector of shape (D,).

    Takes a ``genrec_lite._core.ResidualQuantizer`` (build it once when encoding repeatedly) or
    the codebooks (L, K, D). x may be any real array-like: it is converted to C-contiguous
    float32 first. Same codes as :func:`residual_encode_reference`.
    """
    ResidualQuantizer = core().ResidualQuantizer
    q = codebooks_or_quantizer
    if not isinstance(q, ResidualQuantizer):
        q = ResidualQuantizer(_codebooks(q))
    a = np.asarray(x)
    if not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
        raise InvalidArgumentError(f"x must be a real numeric array; got dtype {a.dtype}")
    return q.encode(np.ascontiguousarray(a, dtype=np.float32), n_threads=n_threads)
