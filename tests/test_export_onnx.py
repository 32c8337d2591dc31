"""The ONNX cold-start path (text encoder + RQ-VAE encoder) equals the training-time one."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("sentence_transformers")

TEXTS = ["Cordless drill 18V with two batteries", "a", "HATCHBOX ABS 3D printer filament, 1 kg, red",
         "工业用安全手套 防割", "Stainless steel hex bolts M8 x 40 mm, pack of 50 " * 30,  # truncated
         "  leading and trailing spaces  ", "Nitrile gloves", "PLA+ filament 1.75mm black"]


@pytest.fixture(scope="module")
def text_encoder_dir(tmp_path_factory):
    from genrec_lite.export.onnx_export import export_text_encoder
    from genrec_lite.sid.embed import resolve_model

    out = tmp_path_factory.mktemp("te")
    export_text_encoder(resolve_model("all-MiniLM-L6-v2"), out)
    return out


def test_text_encoder_matches_sentence_transformers(text_encoder_dir):
    from genrec_lite.runtime.onnx_backend import OnnxTextEncoder
    from genrec_lite.sid.embed import TextEncoder

    ref = TextEncoder(use_cache=False).encode(TEXTS, progress=False)
    enc = OnnxTextEncoder(text_encoder_dir, batch_size=3)  # batches mix lengths: padding matters
    got = enc.encode(TEXTS)
    assert got.shape == ref.shape
    cos = (got * ref).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() > 0.99999, cos
    np.testing.assert_allclose(got, ref, atol=2e-5)


def test_sid_encoder_matches_the_quantiser(tmp_path):
    from genrec_lite.export.onnx_export import export_sid_encoder
    from genrec_lite.runtime.onnx_backend import OnnxSidEncoder
    from genrec_lite.sid.build import SidConfig, quantize_vectors

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 24)).astype(np.float32)
    for method in ("rqvae", "rqkmeans"):
        sids = quantize_vectors(np.arange(400), x, SidConfig(levels=3, codebook_size=16,
                                                            method=method, epochs=30))
        export_sid_encoder(sids, tmp_path / f"{method}.onnx")
        enc = OnnxSidEncoder(tmp_path / f"{method}.onnx", sids.encoder.codebooks)
        np.testing.assert_allclose(enc.latent(x), sids.encoder.latent(x), atol=1e-5)
        assert (enc.encode(x) == sids.assign(x)).all()
