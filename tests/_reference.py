"""Test-only reference code: the exact residual-quantizer rule of genrec_lite.sid.quantize
(float64 distances summed in index order, ties to the lowest code), which the tests hold the C++
core to. It ships in no package: serving and training assign codes with the C++ core.
"""

from __future__ import annotations

import numpy as np

from genrec_lite.errors import InvalidArgumentError
from genrec_lite.sid.quantize import _codebooks  # the same codebook checks as the package's encode

_CHUNK = 4096  # items per step of the reference (bounds its temporary memory)


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
    """Codes by the exact rule (genrec_lite.sid.quantize): int32 (n, L), or (L,) for one (D,) vector.

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
