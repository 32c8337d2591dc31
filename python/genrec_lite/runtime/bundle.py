"""The serving bundle: what `genrec-lite export` writes and the runtime loads (no torch).

BUNDLE/
  manifest.json        format name + version, model facts, prompts, SID facts, file checksums
                       (runtime/manifest.py: one typed Manifest, written and read by the same code)
  model.gguf           the LM for llama.cpp (LoRA merged, SID tokens in the vocabulary)
  model.onnx           optional: the LM with its KV cache for onnxruntime
  sids/                the SID table(s) (item id <-> codes) and the RQ codebooks: one SemanticIds
                       folder, or one per view for a multi-view model (genrec_lite.sid.views);
                       the tries are built from it at load (1M items take well under a second);
                       each table carries its quantiser (RQ-VAE encoder MLP + codebooks), which
                       gives cold-start items their codes (numpy + the C++ lookup, the code path
                       of `sid build`)
  text_encoder/        the item text encoder as ONNX + tokenizer.json
  items.jsonl          the catalog: item id, title and the text the SIDs were made from
  cold_items.npy       the catalog items the model was never trained to write (sorted int64 ids;
                       manifest "cold_start" names it, with the settings of runtime/cold_start.py)
  transitions.npz      the training sequences' successor counts (manifest "transitions" names it,
                       with the weight a served answer is re-ordered by: runtime/transitions.py)

Bundles exported before the quantiser was served from sids/ also hold sid_encoder.onnx (and
sid_encoder_view{v}.onnx): still listed and checked, no longer read.

Every file is listed in the manifest with its size and SHA-256; `Bundle.open` checks them (a
missing, truncated or altered file is an ArtifactError naming it) before anything is loaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .._io import sha256_file
from ..errors import ArtifactError
from .manifest import FORMAT_NAME, FORMAT_VERSION, MANIFEST, Manifest

__all__ = ["Bundle", "COLD_ITEMS", "FORMAT_NAME", "FORMAT_VERSION", "MANIFEST"]

COLD_ITEMS = "cold_items.npy"


@dataclass
class Bundle:
    path: Path
    manifest: Manifest

    @classmethod
    def open(cls, path: str | Path, *, verify: bool = True) -> "Bundle":
        path = Path(path)
        if not path.is_dir():
            raise ArtifactError(f"{path} is not a bundle directory (expected the --out folder of "
                                "`genrec-lite export`)")
        manifest = Manifest.load(path / MANIFEST)
        for name, facts in manifest.files.items():
            f = path / name
            if not f.is_file():
                raise ArtifactError(f"bundle file {f} is missing")
            size = f.stat().st_size
            if size != facts.bytes:
                raise ArtifactError(f"bundle file {f} has {size} bytes, the manifest says "
                                    f"{facts.bytes}; it is truncated or was replaced")
            if verify and sha256_file(f) != facts.sha256:
                raise ArtifactError(f"bundle file {f} does not match its checksum; it is corrupted")
        return cls(path, manifest)

    def file(self, name: str) -> Path:
        if name not in self.manifest.files:
            raise ArtifactError(f"the bundle {self.path} has no {name}")
        return self.path / name

    def has(self, name: str) -> bool:
        return name in self.manifest.files

    def items(self) -> list[dict]:
        """The catalog records (id, title, text) in file order."""
        out = []
        try:
            text = self.file("items.jsonl").read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ArtifactError(f"{self.file('items.jsonl')} is not UTF-8 text ({exc})") from exc
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                rec["item_id"] = int(rec["item_id"])
            except (json.JSONDecodeError, TypeError, KeyError, ValueError, IndexError) as exc:
                raise ArtifactError(f"{self.file('items.jsonl')} line {n} is not an item record "
                                    f"({exc!r})") from exc
            out.append(rec)
        return out
