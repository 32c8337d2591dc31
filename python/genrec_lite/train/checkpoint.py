"""Checkpoint layout and loading.

CKPT/
  genrec.json      run config: backbone, prompts, tasks, split, seeds, versions (format versioned)
  sids/            the SID views the model writes (SidViews: one SemanticIds folder, or several)
  items.jsonl      the catalog (titles for display, text for cold start)
  untrained_items.npy  catalog item ids never a next-item target in training (sorted int64)
  transitions.npz  the training sequences' successor counts (runtime/transitions.py)
  tokenizer/       the tokenizer, SID tokens included
  best/            weights of the best validation score (what eval and export load)
  last/            weights + optimiser/scheduler/RNG state of the latest step (what resume loads)
Each of best/ and last/ is replaced atomically, so a killed run never leaves a torn checkpoint.
"""

from __future__ import annotations

from pathlib import Path

from .._devices import resolve_device
from .._io import read_manifest
from ..errors import ArtifactError, require

FORMAT_NAME = "genrec-lite.checkpoint"
UNTRAINED_ITEMS = "untrained_items.npy"
FORMAT_VERSION = 1

torch = require("torch")
transformers = require("transformers")


def read_run_config(ckpt: str | Path) -> dict:
    ckpt = Path(ckpt)
    if not ckpt.is_dir():
        raise ArtifactError(f"{ckpt} is not a checkpoint directory (expected the --out folder of "
                            "`genrec-lite train`)")
    meta = read_manifest(ckpt / "genrec.json", FORMAT_NAME, FORMAT_VERSION)
    return meta


def weights_dir(ckpt: str | Path, which: str = "best") -> Path:
    ckpt = Path(ckpt)
    for name in ((which, "last") if which == "best" else (which,)):
        if (ckpt / name / "model").is_dir():
            return ckpt / name
    raise ArtifactError(f"{ckpt} holds no trained weights ({which}/model or last/model missing)")


def load_model(ckpt: str | Path, which: str = "best", *, for_training: bool = False,
               device: str | None = None):
    """(model, tokenizer, SidViews, run config) from a checkpoint; the model on `device`
    (see resolve_device; None leaves it on the CPU)."""
    from ..sid import SidViews
    from .._io import no_hf_progress
    from .backbone import add_residual_dropout, init_new_rows, resolve_pretrained
    from .tokenizer import load_tokenizer

    dev = resolve_device(device) if device is not None else None  # refuse before loading
    ckpt = Path(ckpt)
    meta = read_run_config(ckpt)
    sids = SidViews.load(ckpt / "sids")
    tok = load_tokenizer(ckpt / "tokenizer")
    wdir = weights_dir(ckpt, which) / "model"
    with no_hf_progress():
        if meta["backbone"]["kind"] == "compact":
            model = transformers.LlamaForCausalLM.from_pretrained(str(wdir), dtype=torch.float32)
            if for_training:
                add_residual_dropout(model, meta["backbone"]["config"]["dropout"])
        else:
            peft = require("peft")
            folder, _ = resolve_pretrained(meta["backbone"]["spec"])
            base = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
            init_new_rows(base, meta["backbone"]["base_vocab_size"], len(tok))
            model = peft.PeftModel.from_pretrained(base, str(wdir), is_trainable=for_training)
    model.train(for_training)
    if dev is not None:
        model.to(dev)
    return model, tok, sids, meta
