"""The C++ residual-quantizer lookup gives exactly the codes of the reference rule."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from genrec_lite._core import ResidualQuantizer
from genrec_lite.errors import GenrecError, InvalidArgumentError
from genrec_lite.sid.quantize import encode, residual_decode, residual_encode_numpy

from _reference import residual_encode_reference


def _naive(codebooks: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The rule written out literally (slow; small inputs only)."""
    codes = np.empty((x.shape[0], codebooks.shape[0]), dtype=np.int32)
    for i, v in enumerate(x):
        r = v.astype(np.float32).copy()
        for lvl, cb in enumerate(codebooks):
            diff = r.astype(np.float64)[None, :] - cb.astype(np.float64)
            dist = np.cumsum(diff * diff, axis=1)[:, -1]
            codes[i, lvl] = int(np.argmin(dist))
            r = r - cb[codes[i, lvl]]
    return codes


def _random(rng, levels, k, dim, n, scale=1.0):
    cb = (rng.standard_normal((levels, k, dim)) * scale).astype(np.float32)
    # later levels see smaller residuals, like a trained quantizer
    cb *= (0.5 ** np.arange(levels, dtype=np.float32))[:, None, None]
    x = (rng.standard_normal((n, dim)) * scale).astype(np.float32)
    return cb, x


def _check(cb: np.ndarray, x: np.ndarray, n_single: int = 200) -> None:
    """Batched codes and one-vector-at-a-time codes (a separate kernel) both equal the reference."""
    q = ResidualQuantizer(cb)
    ref = residual_encode_reference(cb, x)
    assert np.array_equal(q.encode(x), ref)
    one = np.array([q.encode(v) for v in x[:n_single]]).reshape(-1, cb.shape[0])
    assert np.array_equal(one, ref[:n_single])


def test_reference_matches_the_literal_rule():
    rng = np.random.default_rng(1)
    cb = np.round(rng.standard_normal((3, 12, 6)) * 2).astype(np.float32)  # many exact ties
    x = np.round(rng.standard_normal((400, 6)) * 2).astype(np.float32)
    assert np.array_equal(residual_encode_reference(cb, x), _naive(cb, x))
    cb, x = _random(rng, 2, 40, 16, 300)
    assert np.array_equal(residual_encode_reference(cb, x), _naive(cb, x))


def test_100k_vectors_dim32_identical_to_reference():
    rng = np.random.default_rng(0)
    cb, x = _random(rng, 3, 256, 32, 100_000)
    codes = ResidualQuantizer(cb).encode(x)
    assert codes.dtype == np.int32 and codes.shape == (100_000, 3)
    assert np.array_equal(codes, residual_encode_reference(cb, x))


@pytest.mark.parametrize("levels", [3, 4])
@pytest.mark.parametrize("k", [256, 7])
def test_dim384_identical_to_reference(levels, k):
    rng = np.random.default_rng(levels * 1000 + k)
    cb, x = _random(rng, levels, k, 384, 2000)
    _check(cb, x, n_single=300)
    q = ResidualQuantizer(cb)
    # odd batch sizes go through partial micro-tiles and the single-item kernel
    for n in (1, 2, 5, 6, 7, 97):
        assert np.array_equal(q.encode(x[:n]), residual_encode_reference(cb, x[:n]))


def test_vectors_near_codeword_sums():
    rng = np.random.default_rng(14)
    for d, noise in ((384, 0.05), (32, 1e-3), (64, 0.0)):
        cb, _ = _random(rng, 3, 256, d, 1)
        picks = rng.integers(0, 256, size=(400, 3))
        x = sum(cb[lvl][picks[:, lvl]] for lvl in range(3))
        x = (x + noise * rng.standard_normal(x.shape)).astype(np.float32)
        _check(cb, x, n_single=400)


@pytest.mark.parametrize("dim", [1, 3, 17, 100, 1200])
def test_odd_dims_and_sizes(dim):
    rng = np.random.default_rng(dim)
    for k in (1, 2, 15, 16, 17, 33):
        cb, x = _random(rng, 2, k, dim, 50)
        _check(cb, x, n_single=50)


def test_exact_ties_go_to_the_lowest_code():
    dim = 8
    e = np.eye(dim, dtype=np.float32)
    # level 0: +e0, -e0, +e1, -e1 ... all at distance 2 from the zero vector
    cb0 = np.concatenate([e, -e])[[0, 8, 1, 9, 2, 10, 3, 11]]
    cb = np.stack([cb0, cb0[::-1].copy()])
    x = np.zeros((5, dim), dtype=np.float32)
    codes = ResidualQuantizer(cb).encode(x)
    assert codes[:, 0].tolist() == [0] * 5
    _check(cb, x)


def test_duplicated_codewords_and_integer_grids():
    rng = np.random.default_rng(3)
    cb = rng.integers(-2, 3, size=(3, 64, 24)).astype(np.float32)
    cb[:, 40:] = cb[:, :24]                      # every codeword from 40 on is a duplicate
    x = rng.integers(-3, 4, size=(3000, 24)).astype(np.float32)
    x[:200] = cb[0, 40:].repeat(9, axis=0)[:200]  # exactly on duplicated codewords
    _check(cb, x)
    assert (ResidualQuantizer(cb).encode(x[:200])[:, 0] < 40).all()  # the lower duplicate wins


def test_near_ties_one_ulp_apart():
    rng = np.random.default_rng(4)
    dim = 64
    base = rng.standard_normal(dim).astype(np.float32)
    cb = np.empty((2, 32, dim), dtype=np.float32)
    for lvl in range(2):
        for j in range(32):
            c = base.copy()
            idx = rng.integers(0, dim, size=3)
            c[idx] = np.nextafter(c[idx], np.float32(np.inf) if j % 2 else np.float32(-np.inf))
            cb[lvl, j] = c
    x = (base[None, :] + rng.standard_normal((500, dim)).astype(np.float32) * 1e-6).astype(np.float32)
    x[:50] = base
    _check(cb, x, n_single=500)


def test_zero_vectors_and_zero_codebooks():
    rng = np.random.default_rng(5)
    cb, x = _random(rng, 3, 16, 10, 20)
    x[:7] = 0.0
    cb[1, 3] = 0.0
    _check(cb, x)
    zero = np.zeros((2, 5, 10), dtype=np.float32)
    assert ResidualQuantizer(zero).encode(x).tolist() == [[0, 0]] * 20


@pytest.mark.parametrize("scale", [1e-30, 1e-20, 1e-8, 1e8, 1e15, 1e18])
def test_huge_and_tiny_scales(scale):
    rng = np.random.default_rng(6)
    cb, x = _random(rng, 3, 64, 32, 500, scale=scale)
    _check(cb, x)


def test_one_vector_and_empty_batch():
    rng = np.random.default_rng(7)
    cb, x = _random(rng, 3, 256, 48, 10)
    q = ResidualQuantizer(cb)
    one = q.encode(x[4])
    assert one.shape == (3,) and one.dtype == np.int32
    assert np.array_equal(one, q.encode(x)[4])
    assert q.encode(np.zeros((0, 48), dtype=np.float32)).shape == (0, 3)


def test_threads_give_the_same_codes():
    rng = np.random.default_rng(8)
    cb, x = _random(rng, 3, 256, 32, 5000)
    q = ResidualQuantizer(cb)
    single = q.encode(x)
    assert np.array_equal(q.encode(x, n_threads=2), single)
    assert np.array_equal(q.encode(x, n_threads=0), single)
    assert np.array_equal(q.encode(x[:150], n_threads=7), single[:150])


def test_input_conversion():
    rng = np.random.default_rng(9)
    cb, x = _random(rng, 2, 32, 16, 100)
    q = ResidualQuantizer(cb.astype(np.float64))  # converted to float32
    want = q.encode(x)
    assert np.array_equal(q.encode(x.astype(np.float64)), want)
    assert np.array_equal(q.encode(np.asfortranarray(x)), want)
    wide = np.zeros((100, 32), dtype=np.float32)
    wide[:, ::2] = x
    assert np.array_equal(q.encode(wide[:, ::2]), want)      # strided view
    assert np.array_equal(q.encode(x.tolist()), want)        # plain lists
    ints = rng.integers(-3, 3, size=(10, 16))
    assert np.array_equal(q.encode(ints), q.encode(ints.astype(np.float32)))
    assert np.array_equal(encode(cb, x.astype(np.float64)), want)
    assert np.array_equal(encode(q, x), want)


def test_bad_inputs_raise_genrec_errors():
    rng = np.random.default_rng(10)
    cb, x = _random(rng, 3, 16, 8, 20)
    q = ResidualQuantizer(cb)
    with pytest.raises(InvalidArgumentError, match=r"x has shape \(20, 7\); expected \(n, 8\)"):
        q.encode(x[:, :7])
    with pytest.raises(InvalidArgumentError, match="shape"):
        q.encode(x[None])
    bad = x.copy()
    bad[7, 3] = np.nan
    with pytest.raises(InvalidArgumentError, match="row 7 column 3 is nan"):
        q.encode(bad)
    bad[7, 3] = -np.inf
    with pytest.raises(InvalidArgumentError, match="row 7 column 3 is -inf"):
        q.encode(bad, n_threads=2)
    with pytest.raises(InvalidArgumentError, match="dtype"):
        q.encode(np.array([["a"] * 8]))
    with pytest.raises(InvalidArgumentError, match="dtype complex"):
        q.encode(x.astype(np.complex64))
    with pytest.raises(InvalidArgumentError, match="n_threads"):
        q.encode(x, n_threads=-1)
    with pytest.raises(InvalidArgumentError, match="not array-like|dtype"):
        q.encode([[1.0, 2.0], [3.0]])
    with pytest.raises(InvalidArgumentError, match="row 7 column 3"):
        residual_encode_reference(cb, bad)
    # codebooks
    with pytest.raises(InvalidArgumentError, match="expected \\(levels, codebook_size, dim\\)"):
        ResidualQuantizer(cb[0])
    with pytest.raises(InvalidArgumentError, match="every size >= 1"):
        ResidualQuantizer(np.zeros((3, 0, 8), dtype=np.float32))
    nan_cb = cb.copy()
    nan_cb[1, 2, 5] = np.nan
    with pytest.raises(InvalidArgumentError, match=r"codebooks\[1, 2, 5\]"):
        ResidualQuantizer(nan_cb)
    # every error is a GenrecError and a ValueError
    with pytest.raises(GenrecError):
        q.encode(bad)
    with pytest.raises(ValueError):
        q.encode(bad)


def test_residual_overflow_is_an_error():
    cb = np.full((2, 1, 4), -3e38, dtype=np.float32)
    x = np.full((3, 4), 3e38, dtype=np.float32)
    with pytest.raises(InvalidArgumentError, match="row 0: the residual after level 0 overflows"):
        ResidualQuantizer(cb).encode(x)


def test_decode_matches_numpy_bit_for_bit():
    rng = np.random.default_rng(11)
    cb, x = _random(rng, 4, 32, 20, 300)
    q = ResidualQuantizer(cb)
    codes = q.encode(x)
    out = q.decode(codes)
    assert out.dtype == np.float32 and out.shape == (300, 20)
    assert np.array_equal(out, residual_decode(cb, codes))
    assert np.array_equal(q.decode(codes[5]), out[5])
    assert np.array_equal(q.decode(codes.astype(np.int64)), out)
    bad = codes.copy()
    bad[17, 2] = 300
    with pytest.raises(InvalidArgumentError, match="codes row 17 level 2 has code 300; expected 0 <= code < 32"):
        q.decode(bad)
    with pytest.raises(InvalidArgumentError, match="codes row 17 level 2 has code 300"):
        residual_decode(cb, bad)
    with pytest.raises(InvalidArgumentError, match="int32"):
        q.decode(np.full((1, 4), 2**40))


def test_numpy_baseline_agrees_on_random_data():
    rng = np.random.default_rng(12)
    cb, x = _random(rng, 3, 64, 32, 2000)
    same = (residual_encode_numpy(cb, x) == residual_encode_reference(cb, x)).all(axis=1)
    assert same.mean() > 0.99  # float32 scores may differ on near-ties only


def test_accessors_and_pickle():
    rng = np.random.default_rng(13)
    cb, x = _random(rng, 3, 16, 12, 10)
    q = ResidualQuantizer(cb)
    assert (q.levels, q.codebook_size, q.dim) == (3, 16, 12)
    got = q.codebooks
    assert np.array_equal(got, cb) and got.dtype == np.float32
    got[0, 0, 0] = 99.0
    assert q.codebooks[0, 0, 0] == cb[0, 0, 0]  # a copy
    assert q.memory_bytes() >= cb.nbytes
    q2 = pickle.loads(pickle.dumps(q))
    assert np.array_equal(q2.encode(x), q.encode(x))
    assert "levels=3" in repr(q)
