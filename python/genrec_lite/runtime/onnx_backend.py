"""onnxruntime pieces of the runtime (no torch): the item text encoder, which gives a new item
its embedding in a serving process (text -> embedding; the SID quantiser then runs in numpy and
the C++ lookup, genrec_lite.sid.encoder), and the LM of the second backend."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .._ext import core
from ..errors import ArtifactError, InvalidArgumentError, MissingDependencyError

ONNX_MAX_BEAM = 256  # the ONNX backend copies every beam's KV cache per level: bound its memory


def _session(path: Path, n_threads: int | None):
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise MissingDependencyError("onnxruntime is required for cold start (pip install genrec-lite)") from exc
    if not Path(path).is_file():
        raise ArtifactError(f"ONNX model {path} is missing")
    opts = ort.SessionOptions()
    if n_threads:
        opts.intra_op_num_threads = int(n_threads)
    opts.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for a bad file
        raise ArtifactError(f"onnxruntime cannot load {path} ({exc})") from exc


def _shrinking_run():
    """Run options that hand the CPU arena's free memory back at the end of each run.

    onnxruntime keeps what its arena grew to: the text encoder's working memory scales with
    batch x tokens squared (attention), so a server's resident memory would step up to the largest
    add_items batch it ever encoded (+59 MB after one batch of 4 texts of 256 tokens) and stay
    there. Cold start is rare next to requests; returning the memory is worth the fresh pages."""
    import onnxruntime as ort

    opts = ort.RunOptions()
    opts.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    return opts


class OnnxTextEncoder:
    """Item text -> embedding, identical (to float rounding) to the sentence-transformers model."""

    def __init__(self, folder: str | Path, *, n_threads: int | None = None, batch_size: int = 64):
        from tokenizers import Tokenizer

        folder = Path(folder)
        try:
            self.facts = json.loads((folder / "encoder.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ArtifactError(f"{folder / 'encoder.json'} is missing or damaged ({exc})") from exc
        self.tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tok.enable_truncation(max_length=int(self.facts["max_seq_length"]))
        self.tok.enable_padding(pad_id=int(self.facts["pad_token_id"]), pad_token=self.facts["pad_token"])
        self.session = _session(folder / "model.onnx", n_threads)
        self.run_options = _shrinking_run()
        self.dim = int(self.facts["dim"])
        self.batch_size = batch_size

    def encode(self, texts) -> np.ndarray:
        if isinstance(texts, str):
            raise InvalidArgumentError("texts must be a list of strings, not one string")
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise InvalidArgumentError(f"text {i} is {type(t).__name__}; expected a string")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for s in range(0, len(texts), self.batch_size):
            enc = self.tok.encode_batch(texts[s:s + self.batch_size])
            ids = np.array([e.ids for e in enc], dtype=np.int64)
            mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
            out[s:s + len(enc)] = self.session.run(None, {"input_ids": ids, "attention_mask": mask},
                                                   self.run_options)[0]
        return out


class OnnxLM:
    """The LM exported by export_lm, driven one SID level at a time (the second backend).

    prefill() runs a left-padded batch of prompts; step() first reorders the cache rows by
    `parents` (beam search) and then feeds one token per row. The state is plain numpy.
    """

    def __init__(self, path: str | Path, *, n_threads: int | None = None, pad_id: int = 0):
        self.session = _session(Path(path), n_threads)
        shape = self.session.get_inputs()[3].shape  # past_key: (layers, batch, kv, past, head_dim)
        self.layers, self.kv_heads, self.head_dim = int(shape[0]), int(shape[2]), int(shape[4])
        self.pad_id = int(pad_id)

    def _run(self, ids, mask, pos, pk, pv):
        logits, k, v = self.session.run(None, {"input_ids": ids, "attention_mask": mask,
                                               "position_ids": pos, "past_key": pk, "past_value": pv})
        return logits, k, v

    def prefill(self, prompts: list[list[int]]):
        n = len(prompts)
        width = max(len(p) for p in prompts)
        ids = np.full((n, width), self.pad_id, dtype=np.int64)
        mask = np.zeros((n, width), dtype=np.int64)
        for r, p in enumerate(prompts):  # left padding: every prompt ends at the last column
            ids[r, width - len(p):] = p
            mask[r, width - len(p):] = 1
        pos = np.clip(mask.cumsum(1) - 1, 0, None)
        empty = np.zeros((self.layers, n, self.kv_heads, 0, self.head_dim), dtype=np.float32)
        logits, k, v = self._run(ids, mask, pos, empty, empty)
        return logits, {"k": k, "v": v, "mask": mask, "next": mask.sum(1)}

    def step(self, state: dict, parents, tokens):
        parents = np.asarray(parents, dtype=np.int64)
        if len(parents) == 0:
            return np.zeros((0, 1), dtype=np.float32), state
        k, v = state["k"][:, parents], state["v"][:, parents]
        mask = np.concatenate([state["mask"][parents], np.ones((len(parents), 1), np.int64)], axis=1)
        nxt = state["next"][parents]
        ids = np.asarray(tokens, dtype=np.int64)[:, None]
        logits, k, v = self._run(ids, mask, nxt[:, None], k, v)
        return logits, {"k": k, "v": v, "mask": mask, "next": nxt + 1}


class OnnxBackend:
    """The Recommender's second model backend: the same C++ search core over onnxruntime logits;
    Python loops over the SID levels only."""

    max_beam = ONNX_MAX_BEAM

    def __init__(self, lm: "OnnxLM", tokenizer: "Tokenizer"):
        self.lm = lm
        self.tok = tokenizer

    def search(self, trie, delta, table, texts, requests):
        search = core().BeamSearch(trie, table, requests, delta=delta)
        logits, state = self.lm.prefill([self.tok.encode(t) for t in texts])
        while True:
            search.step(logits)
            if search.done:
                return search.results()
            logits, state = self.lm.step(state, search.parents, search.tokens)

    def search_spaces(self, spaces, space_of, texts, requests):
        """Requests of several SID views: one search per view here (the answers are the same)."""
        out: list = [None] * len(texts)
        for s, (trie, delta, table) in enumerate(spaces):
            idx = [i for i, v in enumerate(space_of) if v == s]
            if idx:
                got = self.search(trie, delta, table, [texts[i] for i in idx],
                                  [requests[i] for i in idx])
                for i, r in zip(idx, got):
                    out[i] = r
        return out

    def close(self):
        pass


class Tokenizer:
    """The model's tokenizer through the `tokenizers` library (no transformers at serving time)."""

    def __init__(self, path: Path):
        from tokenizers import Tokenizer as _Tok

        self._tok = _Tok.from_file(str(path))

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=True).ids

    def token_id(self, piece: str) -> int:
        t = self._tok.token_to_id(piece)
        return -1 if t is None else int(t)
