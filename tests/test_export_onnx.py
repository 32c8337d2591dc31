"""The ONNX parts of a bundle (the cold-start text encoder, the LM) equal the training-time ones."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("sentence_transformers")

TEXTS = ["Cordless drill 18V with two batteries", "a", "HATCHBOX ABS 3D printer filament, 1 kg, red",
         "工业用安全手套 防割", "Stainless steel hex bolts M8 x 40 mm, pack of 50 " * 30,  # truncated
         "  leading and trailing spaces  ", "Nitrile gloves", "PLA+ filament 1.75mm black"]


@pytest.fixture(scope="module")
def text_encoder_export(tmp_path_factory):
    """(folder, the warnings the export let through)."""
    from genrec_lite.export.onnx_export import export_text_encoder
    from genrec_lite.sid.embed import resolve_model

    out = tmp_path_factory.mktemp("te")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export_text_encoder(resolve_model("all-MiniLM-L6-v2"), out)
    return out, caught


@pytest.fixture(scope="module")
def text_encoder_dir(text_encoder_export):
    return text_encoder_export[0]


def test_text_encoder_export_is_quiet(text_encoder_export):
    """torch.onnx's tracer warnings and notices are not shown to the user of the export."""
    import torch

    noisy = [f"{w.category.__name__}: {w.message}" for w in text_encoder_export[1]
             if issubclass(w.category, torch.jit.TracerWarning)
             or "torch/onnx" in w.filename.replace(os.sep, "/")
             or w.filename.endswith("onnx_export.py")]
    assert noisy == []


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


def _rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not Path("/proc/self/statm").is_file(), reason="reads Linux's /proc")
def test_text_encoder_returns_its_working_memory(text_encoder_dir):
    """A large add_items batch must not leave the process larger: onnxruntime's arena kept the
    batch's working memory (about 120 MB for 8 texts of 256 tokens) for the rest of the process."""
    from genrec_lite.runtime.onnx_backend import OnnxTextEncoder

    enc = OnnxTextEncoder(text_encoder_dir)
    enc.encode(["a short one"])  # the session's own first-run allocations
    before = _rss_mb()
    got = enc.encode([f"{i} " + TEXTS[4] for i in range(8)])  # each truncated to 256 tokens
    assert got.shape == (8, enc.dim)
    assert _rss_mb() - before < 40


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_lm_with_kv_cache_matches_pytorch(arch, tmp_path):
    """Prefill of a left-padded batch, then a step after a beam reorder: logits equal PyTorch's."""
    import torch
    import transformers

    from genrec_lite.export.onnx_export import export_lm
    from genrec_lite.runtime.onnx_backend import OnnxLM

    torch.manual_seed(0)
    common = dict(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    if arch == "llama":
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**common)).eval()
    else:
        model = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**common)).eval()
    export_lm(model, tmp_path / "lm.onnx")
    lm = OnnxLM(tmp_path / "lm.onnx", n_threads=1)
    prompts = [[5, 9, 11, 3], [7], [1, 2, 3, 4, 5, 6, 7]]
    logits, state = lm.prefill(prompts)
    parents, tokens = [2, 0, 0, 1], [13, 17, 19, 23]
    logits2, _ = lm.step(state, parents, tokens)
    with torch.no_grad():
        for r, p in enumerate(prompts):
            ref = model(input_ids=torch.tensor([p])).logits[0, -1].numpy()
            np.testing.assert_allclose(logits[r], ref, atol=1e-4)
        for j, (p, t) in enumerate(zip(parents, tokens)):
            ref = model(input_ids=torch.tensor([prompts[p] + [t]])).logits[0, -1].numpy()
            np.testing.assert_allclose(logits2[j], ref, atol=1e-4)


def test_loading_models_draws_no_progress_bar(capfd, runtime_checkpoint):
    """transformers draws a "Loading weights" bar per from_pretrained; an export loads two
    models (the checkpoint and the text encoder), and neither bar is shown."""
    from genrec_lite.sid.embed import TextEncoder
    from genrec_lite.train.checkpoint import load_model

    capfd.readouterr()
    TextEncoder(use_cache=False).encode(["a drill"], progress=False)
    load_model(runtime_checkpoint)
    err = capfd.readouterr().err
    assert "Loading weights" not in err and "it/s]" not in err
