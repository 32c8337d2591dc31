"""ONNX parts of a bundle: the item text encoder and the RQ-VAE encoder (cold start without torch).

Text encoder: the sentence-transformers model (transformer -> mean pooling over the attention
mask -> L2 normalisation, as all-MiniLM-L6-v2 is configured) traced with torch.onnx's TorchScript
exporter, plus its `tokenizer.json` for the `tokenizers` library and the facts needed to use it
(maximum length, pooling). RQ-VAE encoder: the MLP written directly with onnx.helper from the
numpy weights the SemanticIds artefact stores (no torch needed); the nearest-codeword search that
follows stays in the C++ core.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._io import write_json
from ..errors import InvalidArgumentError, require

OPSET = 17


def export_text_encoder(model_path: str, out_dir: str | Path) -> dict:
    torch = require("torch")
    st_mod = require("sentence_transformers")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
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
    with torch.no_grad():
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


def export_sid_encoder(sids, out_path: str | Path) -> dict:
    """embedding (n, D) float32 -> latent (n, d): the RQ-VAE encoder MLP (ReLU between layers);
    the identity for RQ-KMeans."""
    onnx = require("onnx")
    from onnx import TensorProto, helper, numpy_helper

    enc = sids.encoder
    if enc is None:
        raise InvalidArgumentError("these semantic IDs carry no quantiser to export")
    nodes, inits = [], []
    cur = "embedding"
    for i, (w, b) in enumerate(enc.layers):
        inits += [numpy_helper.from_array(np.ascontiguousarray(w.T, dtype=np.float32), f"w{i}"),
                  numpy_helper.from_array(np.asarray(b, dtype=np.float32), f"b{i}")]
        nodes.append(helper.make_node("Gemm", [cur, f"w{i}", f"b{i}"], [f"h{i}"]))
        cur = f"h{i}"
        if i + 1 < len(enc.layers):
            nodes.append(helper.make_node("Relu", [cur], [f"r{i}"]))
            cur = f"r{i}"
    nodes.append(helper.make_node("Identity", [cur], ["latent"]))
    latent = int(enc.codebooks.shape[2])
    graph = helper.make_graph(
        nodes, "sid_encoder",
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["n", enc.input_dim])],
        [helper.make_tensor_value_info("latent", TensorProto.FLOAT, ["n", latent])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="genrec-lite")
    onnx.checker.check_model(model)
    onnx.save(model, str(out_path))
    return {"input_dim": int(enc.input_dim), "latent_dim": latent, "layers": len(enc.layers)}
