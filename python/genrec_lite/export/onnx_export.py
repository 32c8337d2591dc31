"""ONNX parts of a bundle: the item text encoder (cold start without torch) and the LM.

Text encoder: the sentence-transformers model (transformer -> mean pooling over the attention
mask -> L2 normalisation, as all-MiniLM-L6-v2 is configured) traced with torch.onnx's TorchScript
exporter, plus its `tokenizer.json` for the `tokenizers` library and the facts needed to use it
(maximum length, pooling). The RQ-VAE encoder needs no ONNX copy: the runtime runs the numpy
weights the SemanticIds artefact stores (genrec_lite.sid.encoder).
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path

from .._io import no_hf_progress, write_json
from ..errors import InvalidArgumentError, require

OPSET = 17


@contextmanager
def _quiet_torch_export(torch):
    """torch.onnx.export without the warnings a genrec-lite user cannot act on, for this export
    only: the tracer's TracerWarnings (Python booleans in transformers' mask and attention code,
    fixed for the traced shapes; the exported graphs are checked against PyTorch by the tests),
    opset 17 writing advanced indexing as several operators, and the TorchScript exporter's
    deprecation notices (dynamo=False is chosen on purpose)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=r"Exporting aten::index operator",
                                category=UserWarning)
        warnings.filterwarnings("ignore", message=r"You are using the legacy TorchScript-based",
                                category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r"The feature will be removed",
                                category=DeprecationWarning, module=r"torch\.onnx\.")
        yield


def export_text_encoder(model_path: str, out_dir: str | Path) -> dict:
    torch = require("torch")
    st_mod = require("sentence_transformers")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with no_hf_progress():
        st = st_mod.SentenceTransformer(str(model_path), device="cpu")
    names = [type(m).__name__ for m in st]
    pooling = st[1] if len(st) > 1 else None
    mode = getattr(pooling, "pooling_mode", None)
    if mode is None and getattr(pooling, "pooling_mode_mean_tokens", False):  # older releases
        mode = "mean"
    if names[0] != "Transformer" or pooling is None or type(pooling).__name__ != "Pooling" or \
            mode != "mean":
        raise InvalidArgumentError(f"text encoder {model_path} has modules {names}; the ONNX export "
                                   "supports Transformer -> mean Pooling [-> Normalize]")
    normalize = any(n == "Normalize" for n in names[2:])
    bert = st[0].auto_model.eval()

    class Encoder(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask):
            h = self.m(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            w = attention_mask.unsqueeze(-1).to(h.dtype)
            e = (h * w).sum(1) / w.sum(1).clamp_min(1e-9)
            return torch.nn.functional.normalize(e, dim=-1) if normalize else e

    ids = torch.ones(2, 8, dtype=torch.long)
    with torch.no_grad(), _quiet_torch_export(torch):
        torch.onnx.export(Encoder(bert), (ids, torch.ones_like(ids)), str(out_dir / "model.onnx"),
                          input_names=["input_ids", "attention_mask"], output_names=["embedding"],
                          dynamic_axes={"input_ids": {0: "batch", 1: "tokens"},
                                        "attention_mask": {0: "batch", 1: "tokens"},
                                        "embedding": {0: "batch"}},
                          opset_version=OPSET, dynamo=False)
    st.tokenizer.backend_tokenizer.save(str(out_dir / "tokenizer.json"))
    facts = {"max_seq_length": int(st.max_seq_length), "normalize": normalize, "pooling": "mean",
             "dim": int((getattr(st, "get_embedding_dimension", None)
                         or st.get_sentence_embedding_dimension)()),
             "pad_token_id": int(st.tokenizer.pad_token_id or 0),
             "pad_token": st.tokenizer.pad_token or "[PAD]", "source": Path(str(model_path)).name}
    write_json(out_dir / "encoder.json", facts)
    return facts


def export_lm(model, path: str | Path) -> dict:
    """The causal LM (Llama or Qwen2; LoRA merged) with an explicit KV cache, as ONNX.

    Inputs: input_ids (b, t), attention_mask (b, past + t), position_ids (b, t), past_key and
    past_value (layers, b, kv_heads, past, head_dim). Outputs: logits of the last position
    (b, vocab) — all a beam search needs — and present_key / present_value (past + t). The graph
    is written from the weights by a small explicit forward (no cache objects to trace), checked
    against the Hugging Face model by the tests.
    """
    torch = require("torch")
    from .gguf_export import ARCHS, _rope_theta, merged_copy

    m = merged_copy(model)
    if type(m).__name__ not in ARCHS:
        raise InvalidArgumentError(f"model class {type(m).__name__} cannot be exported to ONNX; "
                                   f"expected one of {sorted(ARCHS)}")
    cfg = m.config
    n_head, n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
    hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_head
    theta = _rope_theta(cfg)

    class ExplicitLM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = m.model
            self.head = m.lm_head
            self.register_buffer("inv_freq", 1.0 / theta ** (torch.arange(0, hd, 2).float() / hd))

        @staticmethod
        def _rms(norm, x):
            var = x.pow(2).mean(-1, keepdim=True)
            return norm.weight * (x * torch.rsqrt(var + norm.variance_epsilon))

        def forward(self, input_ids, attention_mask, position_ids, past_key, past_value):
            b, t = input_ids.shape
            x = self.m.embed_tokens(input_ids)
            freqs = position_ids.unsqueeze(-1).float() * self.inv_freq       # (b, t, hd/2)
            emb = torch.cat([freqs, freqs], dim=-1)
            cos, sin = emb.cos().unsqueeze(1), emb.sin().unsqueeze(1)         # (b, 1, t, hd)
            total = attention_mask.shape[1]
            past = total - t
            # query i (absolute index past + i) sees key j when j <= past + i and j is not padding
            qi = torch.arange(t).unsqueeze(1) + past
            kj = torch.arange(total).unsqueeze(0)
            allowed = (kj <= qi).unsqueeze(0) & (attention_mask.unsqueeze(1) > 0)   # (b, t, total)
            bias = torch.where(allowed, 0.0, -1e9).unsqueeze(1)                     # (b, 1, t, total)

            def rope(z):
                z1, z2 = z[..., : hd // 2], z[..., hd // 2:]
                return z * cos + torch.cat([-z2, z1], dim=-1) * sin

            keys, values = [], []
            for i, layer in enumerate(self.m.layers):
                att = layer.self_attn
                h = self._rms(layer.input_layernorm, x)
                q = att.q_proj(h).view(b, t, n_head, hd).transpose(1, 2)
                k = att.k_proj(h).view(b, t, n_kv, hd).transpose(1, 2)
                v = att.v_proj(h).view(b, t, n_kv, hd).transpose(1, 2)
                q, k = rope(q), rope(k)
                k = torch.cat([past_key[i], k], dim=2)
                v = torch.cat([past_value[i], v], dim=2)
                keys.append(k)
                values.append(v)
                rep = n_head // n_kv
                kk = k.repeat_interleave(rep, dim=1)
                vv = v.repeat_interleave(rep, dim=1)
                w = torch.softmax(q @ kk.transpose(-1, -2) / hd ** 0.5 + bias, dim=-1)
                o = (w @ vv).transpose(1, 2).reshape(b, t, n_head * hd)
                x = x + att.o_proj(o)
                h = self._rms(layer.post_attention_layernorm, x)
                mlp = layer.mlp
                x = x + mlp.down_proj(torch.nn.functional.silu(mlp.gate_proj(h)) * mlp.up_proj(h))
            x = self._rms(self.m.norm, x[:, -1])
            return self.head(x), torch.stack(keys), torch.stack(values)

    lm = ExplicitLM().eval()
    n_layers = cfg.num_hidden_layers
    ids = torch.ones(2, 3, dtype=torch.long)
    past = torch.zeros(n_layers, 2, n_kv, 2, hd)
    mask = torch.ones(2, 5, dtype=torch.long)
    pos = torch.arange(2, 5).repeat(2, 1)
    with torch.no_grad(), _quiet_torch_export(torch):
        torch.onnx.export(
            lm, (ids, mask, pos, past, past), str(path),
            input_names=["input_ids", "attention_mask", "position_ids", "past_key", "past_value"],
            output_names=["logits", "present_key", "present_value"],
            dynamic_axes={"input_ids": {0: "batch", 1: "tokens"},
                          "attention_mask": {0: "batch", 1: "total"},
                          "position_ids": {0: "batch", 1: "tokens"},
                          "past_key": {1: "batch", 3: "past"}, "past_value": {1: "batch", 3: "past"},
                          "logits": {0: "batch"}, "present_key": {1: "batch", 3: "total"},
                          "present_value": {1: "batch", 3: "total"}},
            opset_version=OPSET, dynamo=False)
    return {"arch": ARCHS[type(m).__name__], "layers": n_layers, "kv_heads": n_kv, "head_dim": hd,
            "vocab": int(m.lm_head.out_features), "bytes": Path(path).stat().st_size}
