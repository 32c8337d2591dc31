"""Write a trained model as GGUF for llama.cpp: merged LoRA, SID tokens, tokenizer metadata.

Llama and Qwen2 architectures. llama.cpp must tokenize prompts exactly as the Hugging Face
tokenizer did in training, so the tokenizer is written as llama.cpp's byte-level BPE ("gpt2")
with every token, its type (SID tokens are user-defined tokens: always matched whole, as the HF
tokenizer's added tokens are) and the merges; the pre-tokenizer is named from the HF tokenizer's
own pre-tokenizer, and an unsupported one is refused rather than silently mis-tokenized.

Weights: F32, F16, or Q8_0 (2-D matrices whose rows are a multiple of 32; norms and biases stay
F32, as llama.cpp expects). llama.cpp's Llama graph applies rotary embeddings to interleaved
pairs, HF's Llama to split halves, so Q and K rows are permuted for "llama" (Qwen2 uses the
split-halves form in both). The file is written beside the target and renamed into place.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from ..errors import InvalidArgumentError, require

QUANTS = ("f32", "f16", "q8_0")
ARCHS = {"LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2"}


def merged_copy(model):
    """A plain HF causal LM with any LoRA / trainable-token adapters merged; never mutates `model`."""
    m = copy.deepcopy(model)
    if hasattr(m, "merge_and_unload"):
        m = m.merge_and_unload()
    return m.float().eval()


def _rope_theta(cfg) -> float:
    params = getattr(cfg, "rope_parameters", None) or {}
    theta = params.get("rope_theta") if isinstance(params, dict) else None
    if theta is None:
        theta = getattr(cfg, "rope_theta", None)
    if params and isinstance(params, dict) and params.get("rope_type", "default") != "default":
        raise InvalidArgumentError(f"rope scaling {params.get('rope_type')!r} is not supported by the "
                                   "GGUF export; expected the default rotary embedding")
    return float(theta if theta is not None else 10000.0)


def _pre_tokenizer(tok_json: dict) -> str:
    pre = tok_json.get("pre_tokenizer") or {}
    if (pre.get("type") == "ByteLevel" and pre.get("use_regex", True)
            and not pre.get("add_prefix_space", False) and tok_json.get("normalizer") is None):
        return "gpt-2"
    raise InvalidArgumentError(
        f"tokenizer pre-tokenizer {json.dumps(pre)[:200]} has no llama.cpp equivalent that "
        "genrec-lite can verify; expected byte-level BPE with the GPT-2 rule")


def _tokenizer_fields(tokenizer, n_vocab: int) -> dict:
    tok_json = json.loads(tokenizer.backend_tokenizer.to_str())
    model = tok_json["model"]
    if model.get("type") != "BPE":
        raise InvalidArgumentError(f"tokenizer model {model.get('type')!r}; expected BPE")
    vocab = dict(model["vocab"])
    added = {t["id"]: t for t in tok_json.get("added_tokens", [])}
    for tid, t in added.items():
        vocab[t["content"]] = tid
    size = max(n_vocab, max(vocab.values()) + 1)
    if size > n_vocab:
        raise InvalidArgumentError(f"the tokenizer has {size} tokens but the model only {n_vocab} rows")
    tokens = [f"[PAD{i}]" for i in range(n_vocab)]
    types = [5] * n_vocab  # UNUSED: embedding rows no token maps to
    for text, tid in vocab.items():
        tokens[tid] = text
        if tid in added:
            types[tid] = 3 if added[tid].get("special") else 4  # CONTROL / USER_DEFINED
        else:
            types[tid] = 1  # NORMAL
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    enc = tokenizer("", add_special_tokens=True)["input_ids"]
    add_bos = bool(enc) and tokenizer.bos_token_id is not None and enc[0] == tokenizer.bos_token_id
    return {"tokens": tokens, "types": types, "merges": merges, "pre": _pre_tokenizer(tok_json),
            "bos": tokenizer.bos_token_id, "eos": tokenizer.eos_token_id,
            "pad": tokenizer.pad_token_id, "add_bos": add_bos}


def _permute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    # HF rotates (x[:d/2], x[d/2:]); llama.cpp's llama graph rotates adjacent pairs.
    rows = w.shape[0]
    return (w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape))


def write_gguf(model, tokenizer, path: str | Path, *, quant: str = "f16", name: str | None = None) -> dict:
    """Write `model` (HF Llama/Qwen2, or a peft model over one) with `tokenizer` as GGUF."""
    gguf = require("gguf")
    if quant not in QUANTS:
        raise InvalidArgumentError(f"quant={quant!r}; expected one of {QUANTS}")
    m = merged_copy(model)
    cls = type(m).__name__
    if cls not in ARCHS:
        raise InvalidArgumentError(f"model class {cls} cannot be exported to GGUF; expected one of "
                                   f"{sorted(ARCHS)}")
    arch = ARCHS[cls]
    cfg = m.config
    sd = {k: v.detach().cpu().float().numpy() for k, v in m.state_dict().items()}
    n_vocab = sd["model.embed_tokens.weight"].shape[0]
    tokf = _tokenizer_fields(tokenizer, n_vocab)
    n_head, n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_head
    qtype = {"f32": gguf.GGMLQuantizationType.F32, "f16": gguf.GGMLQuantizationType.F16,
             "q8_0": gguf.GGMLQuantizationType.Q8_0}[quant]
    ftype = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
             "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[quant]

    tensors: list[tuple[str, np.ndarray]] = [("token_embd.weight", sd["model.embed_tokens.weight"])]
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        q, k = sd[p + "self_attn.q_proj.weight"], sd[p + "self_attn.k_proj.weight"]
        if arch == "llama":
            q, k = _permute_qk(q, n_head), _permute_qk(k, n_kv)
        tensors += [(f"blk.{i}.attn_norm.weight", sd[p + "input_layernorm.weight"]),
                    (f"blk.{i}.attn_q.weight", q), (f"blk.{i}.attn_k.weight", k),
                    (f"blk.{i}.attn_v.weight", sd[p + "self_attn.v_proj.weight"]),
                    (f"blk.{i}.attn_output.weight", sd[p + "self_attn.o_proj.weight"]),
                    (f"blk.{i}.ffn_norm.weight", sd[p + "post_attention_layernorm.weight"]),
                    (f"blk.{i}.ffn_gate.weight", sd[p + "mlp.gate_proj.weight"]),
                    (f"blk.{i}.ffn_up.weight", sd[p + "mlp.up_proj.weight"]),
                    (f"blk.{i}.ffn_down.weight", sd[p + "mlp.down_proj.weight"])]
        for proj, short in (("q_proj", "attn_q"), ("k_proj", "attn_k"), ("v_proj", "attn_v")):
            bias = sd.get(p + f"self_attn.{proj}.bias")
            if bias is not None:
                if arch == "llama" and proj in ("q_proj", "k_proj"):
                    bias = _permute_qk(bias, n_head if proj == "q_proj" else n_kv)
                tensors.append((f"blk.{i}.{short}.bias", bias))
    tensors.append(("output_norm.weight", sd["model.norm.weight"]))
    # Always write the output head: after SID rows are trained it may differ from the embedding.
    tensors.append(("output.weight", sd.get("lm_head.weight", sd["model.embed_tokens.weight"])))

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        w = gguf.GGUFWriter(tmp, arch)
        w.add_name(name or f"genrec-lite {arch}")
        w.add_context_length(int(getattr(cfg, "max_position_embeddings", 2048)))
        w.add_embedding_length(cfg.hidden_size)
        w.add_block_count(cfg.num_hidden_layers)
        w.add_feed_forward_length(cfg.intermediate_size)
        w.add_head_count(n_head)
        w.add_head_count_kv(n_kv)
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
        w.add_rope_dimension_count(head_dim)
        w.add_rope_freq_base(_rope_theta(cfg))
        w.add_layer_norm_rms_eps(float(cfg.rms_norm_eps))
        w.add_vocab_size(n_vocab)
        w.add_file_type(ftype)
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre(tokf["pre"])
        w.add_token_list(tokf["tokens"])
        w.add_token_types(tokf["types"])
        w.add_token_merges(tokf["merges"])
        for setter, value in ((w.add_bos_token_id, tokf["bos"]), (w.add_eos_token_id, tokf["eos"]),
                              (w.add_pad_token_id, tokf["pad"])):
            if value is not None:
                setter(int(value))
        w.add_add_bos_token(tokf["add_bos"])
        w.add_add_eos_token(False)
        n_bytes = 0
        for tname, data in tensors:
            data = np.ascontiguousarray(data, dtype=np.float32)
            if data.ndim == 1 or qtype == gguf.GGMLQuantizationType.F32:
                w.add_tensor(tname, data)
            elif qtype == gguf.GGMLQuantizationType.Q8_0 and data.shape[-1] % 32 == 0:
                w.add_tensor(tname, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
            else:
                w.add_tensor(tname, data.astype(np.float16))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        n_bytes = os.path.getsize(tmp)
        os.chmod(tmp, 0o644)  # mkstemp made it private; worker processes of other users read it
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return {"arch": arch, "quant": quant, "n_vocab": int(n_vocab), "n_layers": cfg.num_hidden_layers,
            "n_ctx_train": int(getattr(cfg, "max_position_embeddings", 2048)),
            "tensors": len(tensors), "bytes": n_bytes, "pre_tokenizer": tokf["pre"],
            "bos_token_id": tokf["bos"], "eos_token_id": tokf["eos"], "add_bos": tokf["add_bos"]}
