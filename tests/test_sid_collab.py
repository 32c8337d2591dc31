"""Collaborative SIDs: co-occurrence vectors joined to text vectors, cold start through the fold."""

from __future__ import annotations

import numpy as np
import pytest

from genrec_lite.errors import InvalidArgumentError

pytest.importorskip("torch", reason="training needs the [train] extra (torch)")
pytest.importorskip("scipy", reason="co-occurrence vectors need scipy (the [train] extra)")

from genrec_lite.data import Catalog  # noqa: E402
from genrec_lite.sid.build import SidConfig, build_semantic_ids  # noqa: E402
from genrec_lite.sid.collab import cooccurrence_vectors, fold_input_map, joined_vectors  # noqa: E402
from genrec_lite.sid.encoder import SidEncoder  # noqa: E402

N_ITEMS, N_GROUPS, N_COLD = 240, 12, 24


def _world(seed=0):
    """Text vectors in 10 loose clusters (as sentence embeddings are); users click within one of
    12 groups (item % 12) that have nothing to do with the text; the last 24 are never clicked."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(10, 24))
    text = centres[rng.integers(10, size=N_ITEMS)] + rng.normal(size=(N_ITEMS, 24))
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    warm = np.arange(N_ITEMS - N_COLD)
    seqs = []
    for u in range(600):
        members = warm[warm % N_GROUPS == u % N_GROUPS]
        seqs.append(rng.choice(members, size=8, replace=False).tolist())
    return text.astype(np.float32), seqs


def test_cooccurrence_vectors_group_items_clicked_together():
    _, seqs = _world()
    cf, has = cooccurrence_vectors(seqs, np.arange(N_ITEMS), dim=16)
    assert has[:N_ITEMS - N_COLD].all() and not has[N_ITEMS - N_COLD:].any()
    np.testing.assert_allclose(np.linalg.norm(cf[has], axis=1), 1, atol=1e-9)
    assert not cf[~has].any()
    sim = cf @ cf.T
    group = np.arange(N_ITEMS) % N_GROUPS
    same = (group[:, None] == group[None, :]) & has[:, None] & has[None, :]
    other = (group[:, None] != group[None, :]) & has[:, None] & has[None, :]
    np.fill_diagonal(same, False)
    assert sim[same].mean() > 0.5 > sim[other].mean() + 0.4


def test_cooccurrence_ignores_unknown_items_and_rejects_bad_sizes():
    cf, has = cooccurrence_vectors([[1, 2, 99, 1, 2], [2, 3]], [1, 2, 3, 4], dim=2)
    assert has.tolist() == [True, True, True, False]
    with pytest.raises(InvalidArgumentError, match="window=0"):
        cooccurrence_vectors([[1, 2]], [1, 2], window=0)


@pytest.mark.parametrize("hidden", [None, (32, 16)])
def test_folded_encoder_equals_map_then_encoder(hidden):
    rng = np.random.default_rng(1)
    text = rng.normal(size=(50, 24))
    cf = rng.normal(size=(50, 6))
    has = np.arange(50) < 30
    joined, input_map = joined_vectors(text, cf, has, weight=1.5)
    # items without interactions: joined vector = text @ map; the others keep their own CF part
    np.testing.assert_allclose(joined[30:], text[30:] @ input_map, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(joined[:30, 24:], 1.5 * cf[:30], rtol=1e-6)
    if hidden is None:       # RQ-KMeans: the codebooks live in the joined space
        layers, latent = [], 30
    else:
        dims = [30, *hidden]
        layers = [(rng.normal(size=(o, i)), rng.normal(size=o)) for i, o in zip(dims, dims[1:])]
        latent = dims[-1]
    books = rng.normal(size=(2, 8, latent))
    plain = SidEncoder(books, layers)
    folded = SidEncoder(books, fold_input_map(layers, input_map))
    assert folded.input_dim == 24
    np.testing.assert_allclose(folded.latent(text), plain.latent(text @ input_map), rtol=1e-4,
                               atol=1e-4)


@pytest.mark.parametrize("method", ["rqvae", "rqkmeans"])
def test_collab_sids_share_prefixes_within_groups_and_cold_items_keep_their_codes(method, tmp_path):
    text, seqs = _world()
    catalog = Catalog(np.arange(N_ITEMS), {"title": [f"item {i}" for i in range(N_ITEMS)]})
    kw = dict(method=method, levels=2, codebook_size=16, epochs=60, seed=0,
              rqvae={"hidden": (64, 32), "latent_dim": 16, "batch_size": 256})
    plain = build_semantic_ids(catalog, SidConfig(**kw), vectors=text, progress=False)
    collab = build_semantic_ids(catalog, SidConfig(**kw, collab_weight=1.0, collab_dim=16),
                                vectors=text, sequences=seqs, progress=False)
    assert collab.config["input_dim"] == 24 and collab.config["collab_items"] == N_ITEMS - N_COLD
    # a new item's path (text vector -> stored encoder) gives the never-clicked items their codes
    cold = np.arange(N_ITEMS - N_COLD, N_ITEMS)
    np.testing.assert_array_equal(collab.assign(text[cold]), collab.codes[cold])
    # and the bundle's copy of the folded encoder (saved with the SIDs; add_items runs it) agrees
    from genrec_lite.sid import SemanticIds

    collab.save(tmp_path / "sids")
    served = SemanticIds.load(tmp_path / "sids").encoder
    assert served.input_dim == 24
    np.testing.assert_array_equal(served.encode(text[cold]), collab.codes[cold][:, :collab.levels])

    def within_group_first_code(sids):
        group = np.arange(N_ITEMS - N_COLD) % N_GROUPS
        first = sids.codes[:N_ITEMS - N_COLD, 0]
        same = group[:, None] == group[None, :]
        np.fill_diagonal(same, False)
        return (first[:, None] == first[None, :])[same].mean()

    assert within_group_first_code(collab) > 1.4 * within_group_first_code(plain), (
        within_group_first_code(collab), within_group_first_code(plain))


def test_collab_weight_needs_sequences():
    text, _ = _world()
    catalog = Catalog(np.arange(N_ITEMS), {"title": ["x"] * N_ITEMS})
    with pytest.raises(InvalidArgumentError, match="collab_weight=1.0 needs user sequences"):
        build_semantic_ids(catalog, SidConfig(collab_weight=1.0), vectors=text, progress=False)
    with pytest.raises(InvalidArgumentError, match="collab_weight=-1"):
        SidConfig(collab_weight=-1).validate()


def test_input_map_of_the_wrong_shape_is_refused_before_training():
    from genrec_lite.sid.build import quantize_vectors

    x = np.random.default_rng(0).normal(size=(20, 6)).astype(np.float32)
    with pytest.raises(InvalidArgumentError, match=r"input map of shape \(4, 5\)"):
        quantize_vectors(np.arange(20), x, SidConfig(method="rqkmeans", codebook_size=4),
                         progress=False, input_map=np.zeros((4, 5)))
