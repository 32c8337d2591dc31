"""Building SIDs for large catalogs: the quantiser trains on a sample, every item is assigned in
batches; content and collaborative vectors are computed in bounded chunks with the same results."""

from __future__ import annotations

import json

import numpy as np
import pytest

from genrec_lite.errors import InvalidArgumentError
from genrec_lite.sid import content as content_mod
from genrec_lite.sid import encoder as encoder_mod
from genrec_lite.sid.content import ContentSpace
from genrec_lite.sid.encoder import SidEncoder

torch = pytest.importorskip("torch", reason="training needs the [train] extra (torch)")

from genrec_lite.sid import collab as collab_mod  # noqa: E402
from genrec_lite.sid.build import SidConfig, quantize_vectors, training_rows  # noqa: E402


def _clusters(n=600, d=12, centres=30, seed=0):
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centres, d)) * 3
    return (c[rng.integers(centres, size=n)] + rng.normal(size=(n, d)) * 0.3).astype(np.float32)


@pytest.mark.parametrize("method", ["rqkmeans", "rqvae"])
def test_sampled_training_gives_every_item_a_unique_sid(method, tmp_path):
    x = _clusters()
    cfg = SidConfig(method=method, levels=2, codebook_size=8, collisions="extra_level", epochs=8,
                    seed=1, train_sample=150, rqvae={"hidden": (32,), "latent_dim": 6})
    sids = quantize_vectors(np.arange(600) + 5, x, cfg, progress=False)
    assert sids.codes.shape == (600, 3)
    assert len(np.unique(sids.codes, axis=0)) == 600          # unique with the extra level
    np.testing.assert_array_equal(sids.encoder.encode(x), sids.codes[:, :2])  # the encoder's codes
    # the quantiser is the one trained on exactly the sampled rows
    rows = training_rows(600, cfg)
    assert len(rows) == 150 and np.all(np.diff(rows) > 0)
    alone = quantize_vectors(np.arange(150), x[rows],
                             SidConfig(**{**cfg.__dict__, "train_sample": None}), progress=False)
    np.testing.assert_array_equal(alone.encoder.codebooks, sids.encoder.codebooks)
    sids.save(tmp_path / "sids")
    report = json.loads((tmp_path / "sids" / "report.json").read_text())
    assert report["n_items"] == 600 and report["train_items"] == 150
    assert report["train_sample"] == 150


def test_catalog_within_the_sample_trains_on_every_item():
    x = _clusters(n=300)
    base = dict(method="rqkmeans", levels=2, codebook_size=8, epochs=5)
    a = quantize_vectors(np.arange(300), x, SidConfig(**base, train_sample=300), progress=False)
    b = quantize_vectors(np.arange(300), x, SidConfig(**base, train_sample=None), progress=False)
    np.testing.assert_array_equal(a.codes, b.codes)
    assert a.report()["train_items"] == 300


def test_sample_never_smaller_than_the_codebook():
    cfg = SidConfig(codebook_size=64, train_sample=10)
    assert len(training_rows(1000, cfg)) == 64
    assert training_rows(50, cfg) is None


@pytest.mark.parametrize("bad", [0, -5, 2.5, True])
def test_bad_train_sample(bad):
    with pytest.raises(InvalidArgumentError, match="train_sample"):
        SidConfig(train_sample=bad).validate()


def test_batched_encode_equals_one_call_and_names_the_row(monkeypatch):
    rng = np.random.default_rng(0)
    enc = SidEncoder(rng.normal(size=(3, 16, 4)).astype(np.float32),
                     [(rng.normal(size=(8, 10)), rng.normal(size=8)),
                      (rng.normal(size=(4, 8)), rng.normal(size=4))])
    x = rng.normal(size=(1000, 10)).astype(np.float32)
    whole = enc.encode(x)
    monkeypatch.setattr(encoder_mod, "ENCODE_BATCH", 64)
    np.testing.assert_array_equal(enc.encode(x), whole)
    x[700, 3] = np.nan
    with pytest.raises(InvalidArgumentError, match="row 700 "):
        enc.encode(x)
    with pytest.raises(InvalidArgumentError, match=r"\(1000, 9\)"):
        enc.encode(x[:, :9])


def test_batched_content_projection_equals_one_step(monkeypatch):
    x = _clusters(n=500, d=20)
    space = ContentSpace.fit(x, dim=8)
    whole = space.project(x)
    monkeypatch.setattr(content_mod, "PROJECT_BATCH", 37)
    np.testing.assert_array_equal(space.project(x), whole)


def test_chunked_collab_vectors_match_one_chunk(monkeypatch):
    rng = np.random.default_rng(2)
    seqs = [rng.integers(0, 300, size=rng.integers(1, 15)).tolist() for _ in range(400)]
    cf, has = collab_mod.cooccurrence_vectors(seqs, np.arange(320), dim=8)
    text = rng.normal(size=(320, 6)).astype(np.float32)
    joined, input_map = collab_mod.joined_vectors(text, cf, has, 0.5)
    monkeypatch.setattr(collab_mod, "CHUNK", 50)
    joined2, input_map2 = collab_mod.joined_vectors(text, cf, has, 0.5)
    np.testing.assert_allclose(joined2, joined, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(input_map2, input_map, rtol=1e-5, atol=1e-6)


def test_window_pairs_skip_unknown_items_and_other_users():
    rows, cols, w = collab_mod._window_pairs([[10, 99, 20, 10], [30]], np.array([30, 20, 10]), 2)
    got = sorted(zip(rows.tolist(), cols.tolist(), w.tolist()))
    # 99 is dropped, so the sequence is rows [2, 1, 2]: pairs (2,1) and (1,2) at distance 1;
    # (2, 2) at distance 2 pairs an item with itself and is left out; user 2 has one event
    assert got == [(1, 2, 1.0), (1, 2, 1.0), (2, 1, 1.0), (2, 1, 1.0)]
