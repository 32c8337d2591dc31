"""Content vectors (sid/content.py): the projection, the table's rows through every change, and
the cold-start directions that read them."""

from __future__ import annotations

import numpy as np
import pytest

from genrec_lite.errors import InvalidArgumentError
from genrec_lite.runtime.cold_start import directions, item_directions
from genrec_lite.sid import SemanticIds
from genrec_lite.sid.content import SCALE, ContentSpace, unit_rows
from genrec_lite.sid.encoder import SidEncoder


def _vectors(n=200, d=24, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((5, d))
    return (centres[rng.integers(0, 5, n)] + 0.1 * rng.standard_normal((n, d))).astype(np.float32)


def test_projection_keeps_neighbours_and_is_deterministic():
    v = _vectors()
    space = ContentSpace.fit(v, dim=8)
    assert space.dim == 8 and space.input_dim == 24
    rows = space.project(v)
    assert rows.dtype == np.int8 and rows.shape == (200, 8)
    z = unit_rows(rows)
    assert np.allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-6)
    # a vector's nearest neighbour by content is one of its own cluster (cos of unit int8 rows)
    full = (v - v.mean(0)) / np.linalg.norm(v - v.mean(0), axis=1, keepdims=True)
    cos_full, cos_small = full @ full.T, z @ z.T
    np.fill_diagonal(cos_full, -2), np.fill_diagonal(cos_small, -2)
    agree = (cos_full.argmax(1) == cos_small.argmax(1)).mean()
    assert agree > 0.2  # within a tight cluster the exact neighbour may differ ...
    same_cluster = np.abs(cos_full[np.arange(200), cos_small.argmax(1)]) > 0.5
    assert same_cluster.all()  # ... but never the cluster
    # the same data give the same space, bit for bit; the mean projects to zeros
    again = ContentSpace.fit(v, dim=8)
    assert np.array_equal(again.components, space.components)
    assert not space.project(space.mean).any()
    assert np.abs(rows).max() <= SCALE


def test_projection_rejects_bad_vectors():
    space = ContentSpace.fit(_vectors(), dim=4)
    with pytest.raises(InvalidArgumentError, match=r"expected \(n, 24\)"):
        space.project(np.zeros((3, 5)))
    with pytest.raises(InvalidArgumentError, match="NaN"):
        space.project(np.full((1, 24), np.nan))
    with pytest.raises(InvalidArgumentError, match="at least 2"):
        ContentSpace.fit(np.zeros((1, 24)))


def _table(with_content=True):
    v = _vectors(n=12)
    ids = np.arange(10, 22)
    codes = np.stack([np.arange(12) % 4, np.arange(12) % 3, np.arange(12)], 1).astype(np.int32)
    enc = SidEncoder(np.random.default_rng(1).standard_normal((3, 16, 8)).astype(np.float32))
    t = SemanticIds(ids, codes, levels=3, codebook_size=16, encoder=enc)
    return (t.with_content(v) if with_content else t), v


def test_table_rows_follow_every_change():
    t, v = _table()
    assert t.content.shape == (12, t.content_space.dim)
    # rows are kept or given explicitly: a table with content never loses track of them
    with pytest.raises(InvalidArgumentError, match="content"):
        t.with_rows(t.item_ids[:3], t.codes[:3])
    kept = t.with_rows(t.item_ids[2:5], t.codes[2:5], content=t.content[2:5])
    assert np.array_equal(item_directions(kept, [13]), item_directions(t, [13]))
    with pytest.raises(InvalidArgumentError, match="one row per item"):
        t.with_rows(t.item_ids[:3], t.codes[:3], content=t.content[:2])
    # the view copy of a table keeps its content
    assert np.array_equal(t.as_view(1).content, t.content)


def test_table_content_survives_save_and_load(tmp_path):
    t, v = _table()
    back = SemanticIds.load(t.save(tmp_path / "sids"))
    assert np.array_equal(back.content, t.content)
    assert np.array_equal(back.content_space.components, t.content_space.components)


def test_directions_read_content_and_fall_back_to_codes():
    t, v = _table()
    plain, _ = _table(with_content=False)
    z = item_directions(t, [10, 11])
    assert np.allclose(z, unit_rows(t.content[:2]))
    assert np.allclose(item_directions(plain, [10, 11]),
                       directions(plain.encoder.codebooks, plain.codes[:2]))
    assert z.shape == (2, t.content_space.dim)


def test_derived_tables_keep_content_rows_aligned():
    """extended / without (the live catalog's changes) carry the content rows with their items."""
    t, v = _table()
    new = np.array([50, 51])
    rows = t.content_space.project(_vectors(n=2, seed=3))
    with pytest.raises(InvalidArgumentError, match="content"):
        t.extended(new, np.array([[1, 1, 12], [2, 2, 13]], dtype=np.int32))
    grown = t.extended(new, np.array([[1, 1, 12], [2, 2, 13]], dtype=np.int32), content=rows)
    assert np.array_equal(grown.content[grown.rows_of(new)], rows)
    shrunk = grown.without([10, 50, 15])
    for i in (11, 51, 21):
        assert np.array_equal(shrunk.content[shrunk.row_of(i)], grown.content[grown.row_of(i)])
    assert len(shrunk.content) == len(shrunk)
