"""Residual-quantizer code assignment (vectors -> L codes), numpy only.

The rule, for one float32 vector x and codebooks C of shape (L, K, D)::

    r = x                                            # float32
    for l in range(L):
        d_k = sum_i (float64(r_i) - float64(C[l, k, i]))**2   # summed in index order i = 0..D-1
        code[l] = argmin_k d_k                       # ties -> the lowest k
        r = r - C[l, code[l]]                        # float32, elementwise

- :func:`encode` is the fast path (the C++ ``ResidualQuantizer``), giving the rule's codes; the
  tests hold it to an exact implementation of the rule (tests/_reference.py, test-only code).
- :func:`residual_encode_numpy` is the plain vectorised float32 version (one matrix product per
  level); it can differ from the rule on near-ties and serves as the benchmark baseline.
"""

from __future__ import annotations

import numpy as np

from .._ext import core
from ..errors import InvalidArgumentError

__all__ = ["residual_encode_numpy", "residual_decode", "encode"]


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
    float32 first. The codes of the rule above.
    """
    ResidualQuantizer = core().ResidualQuantizer
    q = codebooks_or_quantizer
    if not isinstance(q, ResidualQuantizer):
        q = ResidualQuantizer(_codebooks(q))
    a = np.asarray(x)
    if not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
        raise InvalidArgumentError(f"x must be a real numeric array; got dtype {a.dtype}")
    return q.encode(np.ascontiguousarray(a, dtype=np.float32), n_threads=n_threads)
