"""The trainer: plain PyTorch, one process on CPU or many under torchrun / accelerate launch (DDP).

Seeded and deterministic on CPU; the data order of epoch e depends only on (seed, e), and the
`last/` checkpoint holds every piece of state (weights, optimiser, scheduler, RNGs, position in
the epoch), so a killed run resumes exactly where its last checkpoint was taken.
"""

from __future__ import annotations

import math
import pickle
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .._io import atomic_directory, read_json, versions, write_json
from ..errors import ArtifactError, InvalidArgumentError, require
from ..prompts import PromptSet
from ..runtime.transitions import TRANSITIONS, Transitions
from .checkpoint import FORMAT_NAME, FORMAT_VERSION, UNTRAINED_ITEMS
from .._memory import give_back_memory
from ..data._grouping import index_dtype, permutation
from .examples import NextItemPool, SequencePieces, Sequences, small_counts
from .tasks import TASKS, Example, alignment_examples, in_order, mix_indices

torch = require("torch")

# The compact tokenizer learns from at most this many texts a task: a next-item pool's texts
# repeat one template, so more only slow it down (at 10^6 texts learning took 5 minutes of a
# 10^7-interaction run's setup and 140 MB). Above the largest pool of the benchmark recipes
# (ml-100k, three views: 292k), which therefore keep their tokenizers.
TOKENIZER_TEXTS = 300_000


@dataclass
class TrainConfig:
    backbone: str = "compact"              # 'compact', 'smollm2', a model folder or a .gguf file
    compact: dict = field(default_factory=dict)    # CompactConfig fields
    lora: dict = field(default_factory=dict)       # LoraSettings fields
    vocab_size: int = 4096                 # compact: BPE vocabulary learnt from the catalog
    prompts: str | dict = "en"
    task_weights: dict = field(default_factory=lambda: {"next_item": 1.0, "sid_to_title": 0.5,
                                                        "title_to_sid": 0.5})
    split: str = "auto"                    # see genrec_lite.data.split_spec
    max_history: int = 10
    use_profiles: bool = True
    profile_template: str | None = None
    epochs: int = 30
    batch_size: int = 64
    lr: float | None = None                # default: 2e-3 compact, 3e-4 LoRA
    weight_decay: float = 0.01
    warmup: float = 0.03                   # fraction of all steps
    grad_clip: float = 1.0
    eval_every: int = 1                    # epochs between validations (0: never)
    eval_cases: int = 1000                 # validation sample size (0: no validation)
    eval_beam: int = 20
    eval_backend: str = "reference"        # 'reference' (the torch decoder) or 'runtime' (the C++
                                           # search over an f32 snapshot: several times faster
                                           # on a CPU; needs the serve extra)
    save_every: int = 500                  # steps between last/ checkpoints
    max_minutes: float | None = None       # wall-clock budget; training stops cleanly at it,
                                           # its LR schedule shortened to end there (budget_span)
    max_steps: int | None = None
    seed: int = 0
    num_threads: int | None = None

    def validate(self) -> "TrainConfig":
        for t in self.task_weights:
            if t not in TASKS:
                raise InvalidArgumentError(f"task {t!r} is not known; expected one of {TASKS}")
        if self.epochs < 1 or self.batch_size < 1:
            raise InvalidArgumentError(f"epochs={self.epochs}, batch_size={self.batch_size}; expected >= 1")
        if self.eval_backend not in EVAL_BACKENDS:
            raise InvalidArgumentError(f"eval_backend={self.eval_backend!r}; expected one of "
                                       f"{EVAL_BACKENDS}")
        parse_split(self.split)
        return self


EVAL_BACKENDS = ("reference", "runtime")
SNAPSHOT_WEIGHTS = "snapshot"  # the weights the runtime's validation bundle is first exported from


# what fit() reads back from last/trainer_state.pt (written by Trainer._state)
RESUME_KEYS = frozenset({"optimizer", "scheduler", "epoch", "batch_in_epoch", "step", "best",
                         "history", "torch_rng", "python_rng"})


def budget_span(step: int, done: int, elapsed: float, budget: float, total: int,
                warm: int) -> int:
    """The step a time-limited run's cosine should end at: ``total`` when the budget (seconds)
    allows it at the pace so far (``elapsed`` seconds for the ``done`` steps of this run,
    validation included, ``step`` the step reached), else the step the budget runs out at (2%
    kept for the last save), never before warm-up ends or the step reached."""
    if done <= 0 or elapsed <= 0:
        return total
    more = int((budget * 0.98 - elapsed) / (elapsed / done))
    return max(min(total, step + more), warm + 1, step + 1)


def parse_split(spec: str) -> str:
    """The spec, checked (see genrec_lite.data.split_spec: auto, cases, leave-one-out,
    leave-one-out:final, temporal:WHEN or temporal:VALID_FROM,TEST_FROM)."""
    from ..data.split_spec import check_spec

    return check_spec(spec)


# --- distributed helpers ------------------------------------------------------------------------
def _init_distributed(device: str = "auto"):
    """(rank, world size, device) as _devices.rank_device chooses them; under torchrun the
    process group is started too (NCCL on GPUs, gloo on CPUs)."""
    from .._devices import rank_device

    rank, world, dev = rank_device(device)
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return rank, world, dev


class ResponseLoss(torch.nn.Module):
    """Cross-entropy over response tokens only; the output head runs only at those positions."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, labels):
        base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        hidden = base.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        target = labels[:, 1:]
        keep = target != -100
        h = hidden[:, :-1][keep]
        logits = base.lm_head(h).float()
        return torch.nn.functional.cross_entropy(logits, target[keep])


def _pack(examples: list[tuple[list[int], list[int]]], pad: int, device):
    """Right-padded tensors from (input ids, labels) pairs; -100 marks positions without loss."""
    width = max(len(ids) for ids, _ in examples)
    ids_t = torch.full((len(examples), width), pad, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels_t = torch.full((len(examples), width), -100, dtype=torch.long)
    for i, (ids, labels) in enumerate(examples):
        ids_t[i, :len(ids)] = torch.tensor(ids)
        mask[i, :len(ids)] = 1
        labels_t[i, :len(ids)] = torch.tensor(labels)
    return ids_t.to(device), mask.to(device), labels_t.to(device)


class Batches(Sequence):
    """An epoch's batches without an array object per batch: one index array in which every
    batch is a contiguous run, and each batch's run (in the epoch's order). A rank of ``world``
    reads every world-th example of each batch from ``rank`` on."""

    def __init__(self, order: np.ndarray | None, starts: np.ndarray, ends: np.ndarray,
                 rank: int = 0, world: int = 1):
        self.order, self.starts, self.ends, self.rank, self.world = order, starts, ends, rank, world

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, b: int) -> np.ndarray:
        a, e = int(self.starts[b]), int(self.ends[b])
        run = np.arange(a, e) if self.order is None else self.order[a:e]  # None: the identity
        return run[self.rank::self.world]

    def gather(self, *arrays: np.ndarray) -> tuple:
        """``arrays`` put in this epoch's order, and these batches over them (no order array
        kept: an example's place is then its position)."""
        same = Batches(None, self.starts, self.ends, self.rank, self.world)
        return (*(in_order(a, self.order) for a in arrays), same)

    def for_rank(self, rank: int, world: int) -> "Batches":
        """This rank's slice of every batch, leaving out the batches that give it none."""
        has = self.ends - self.starts > rank
        return Batches(self.order, self.starts[has], self.ends[has], rank, world)


def _batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> Batches:
    """Shuffled batches of similar length (less padding), the order a function of rng alone."""
    order = permutation(rng, len(lengths))  # int32 while it fits: half an epoch's memory
    chunk = batch_size * 50
    for s in range(0, len(order), chunk):  # within each chunk, by length
        part = order[s:s + chunk]
        part[:] = part[np.argsort(lengths[part], kind="stable")]
    n = len(order)
    starts = np.concatenate([np.zeros(0, np.int64)] + [
        np.arange(s, min(s + chunk, n), batch_size, dtype=np.int64) for s in range(0, n, chunk)])
    # a batch ends batch_size on, or where its chunk (or the epoch) does
    ends = np.minimum(np.minimum(starts + batch_size, (starts // chunk + 1) * chunk), n)
    shuffled = rng.permutation(len(starts))
    pos = index_dtype(n + 1)
    return Batches(order, starts[shuffled].astype(pos), ends[shuffled].astype(pos))


class EpochBatches(Sequence):
    """One epoch's batches of (input ids, labels), each made when read: the chosen examples are
    (task, index) pairs into the task's pool."""

    def __init__(self, pools: list, task_of: np.ndarray, index: np.ndarray,
                 batches: "Batches | list[np.ndarray]", tok):
        self.pools, self.task_of, self.index, self.batches, self.tok = (pools, task_of, index,
                                                                        batches, tok)

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, b: int) -> list[tuple[list[int], list[int]]]:
        chosen = self.batches[b]
        tasks, idx = self.task_of[chosen].tolist(), self.index[chosen].tolist()
        out: list = [None] * len(chosen)
        for t in set(tasks):
            at = [j for j, tt in enumerate(tasks) if tt == t]
            pool = self.pools[t]
            if isinstance(pool, NextItemPool):  # tokenised here, a batch at a time
                made = pool.encode(self.tok, [idx[j] for j in at])
            else:
                made = [pool[idx[j]] for j in at]
            for j, ex in zip(at, made):
                out[j] = ex
        return out


class Trainer:
    """Prepare (tokenizer, model, examples) once, then `fit()`."""

    def __init__(self, dataset, sids, out: str | Path, cfg: TrainConfig | None = None, *,
                 progress: bool = True, resume: bool = True, device: str = "auto"):
        """`sids`: a SemanticIds, or SidViews for a multi-view model (every example is then
        written in every view)."""
        from ..sid import SidViews

        self.cfg = (cfg or TrainConfig()).validate()
        self.views = SidViews.of(sids)
        self.dataset, self.sids, self.out = dataset, self.views.primary, Path(out)
        self.progress, self.resume = progress, resume
        self._snapshot = None  # eval_backend='runtime': the validation bundle (RuntimeSnapshot)
        self.rank, self.world, self.device = _init_distributed(device)
        if self.cfg.num_threads:
            torch.set_num_threads(self.cfg.num_threads)
        self.prompts = PromptSet.load(self.cfg.prompts)
        from ..data.split_spec import resolve_split

        self.split_plan = resolve_split(self.cfg.split, dataset)
        self.split = self.split_plan.apply(dataset, self.cfg.max_history)
        give_back_memory()  # the split's temporaries (10^7-row arrays for a large log)
        missing = [i for i in np.unique(dataset.interactions.item_ids).tolist() if i not in self.sids]
        if missing:
            raise InvalidArgumentError(f"item {missing[0]} (and {len(missing) - 1} more) of the "
                                       "interactions has no SID; build the SIDs for this catalog")
        self._build()

    # --- setup ---------------------------------------------------------------------------------
    def _pools(self) -> dict[str, "list[Example] | NextItemPool"]:
        cfg = self.cfg
        profiles = self.dataset.profiles if cfg.use_profiles else None
        # next-item examples are made when read (a large log has tens of millions of them)
        self._seqs = Sequences(self.split.train)
        pools: dict = {"next_item": NextItemPool(self._seqs, self.views, self.prompts,
                                                 cfg.max_history, profiles=profiles,
                                                 profile_template=cfg.profile_template)}
        for view in self.views:  # every task in every view
            if any(cfg.task_weights.get(t, 0) > 0 for t in ("sid_to_title", "title_to_sid")):
                for task, pool in alignment_examples(self.dataset.catalog, view, self.prompts).items():
                    pools.setdefault(task, []).extend(pool)
        return pools

    def _build(self):
        from .backbone import (CompactConfig, LoraSettings, compact_model, count_parameters,
                               load_pretrained)
        from .tokenizer import train_bpe_tokenizer

        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        self.pools = self._pools()
        vocab = self.views.vocabulary()
        if cfg.backbone == "compact":
            ccfg = CompactConfig(**{"vocab_size": cfg.vocab_size, **cfg.compact}).validate()
            # Learnt from the texts the model trains on (titles only when a title task is in the
            # mix): rows for tokens no example uses would only widen the output head, which the
            # decoder computes for every beam at every SID level.
            self.tok = train_bpe_tokenizer(self._tokenizer_texts(), vocab,
                                           vocab_size=ccfg.vocab_size)
            self.model = compact_model(ccfg, len(self.tok), eos_id=self.tok.eos_token_id,
                                       pad_id=self.tok.pad_token_id)
            self.backbone_meta = {"kind": "compact", "config": asdict(ccfg)}
            self.lr = cfg.lr or 2e-3
        else:
            self.model, self.tok, info = load_pretrained(cfg.backbone, vocab,
                                                         LoraSettings(**cfg.lora))
            self.backbone_meta = {"kind": "pretrained", "spec": cfg.backbone,
                                  "base_vocab_size": len(self.tok) - info["n_new_tokens"], **info}
            self.lr = cfg.lr or 3e-4
        self.model.to(self.device)
        self.backbone_meta["parameters"] = count_parameters(self.model)
        self._encode()
        give_back_memory()  # the tokenizer's training and the length computation's temporaries

    def _tokenizer_texts(self):
        """The texts the compact tokenizer learns from: every example's, or, from a pool larger
        than TOKENIZER_TEXTS, that many spread evenly over it (the texts of a huge pool repeat
        one template; all of them would only make the tokenizer slow to learn)."""
        for pool in self.pools.values():
            n = len(pool)
            picks = range(n) if n <= TOKENIZER_TEXTS else \
                np.linspace(0, n - 1, TOKENIZER_TEXTS).round().astype(np.int64).tolist()
            for k in picks:
                e = pool[k]
                yield e.prompt + " " + e.response

    def _encode(self) -> None:
        """Token ids of every fixed (catalog) example, once, and the token length of every
        next-item example (the epoch mixes pick from these; next-item token ids are made per
        batch)."""
        eos = self.tok.eos_token_id
        self.encoded = {}
        self.lengths = {}
        for task, pool in self.pools.items():
            if task == "next_item":
                if not self.prompts.continues_history:  # else cut per epoch (_sequence_pool)
                    self.encoded[task] = pool
                    self.lengths[task] = pool.token_lengths(self.tok)
                continue
            prompts = self.tok([e.prompt for e in pool], add_special_tokens=True)["input_ids"]
            resp = self.tok([e.response for e in pool], add_special_tokens=False)["input_ids"]
            self.encoded[task] = [(p + r + [eos], [-100] * len(p) + r + [eos])
                                  for p, r in zip(prompts, resp)]
            self.lengths[task] = small_counts(np.array([len(ids) for ids, _ in self.encoded[task]],
                                                       dtype=np.int64))
        if self.prompts.continues_history:
            self._encode_sequences()

    def _encode_sequences(self) -> None:
        """Per user: the prompt up to the history; per view, each item's SID token ids; so that
        an epoch can cut the sequences anew (see _sequence_pool)."""
        from ..prompts import profile_text

        cfg = self.cfg
        profiles = self.dataset.profiles if cfg.use_profiles else None
        self._view_tokens = []
        for view in self.views:
            sid_ids = self.tok.convert_tokens_to_ids(view.vocabulary())
            offsets = np.cumsum([0] + view.level_sizes[:-1])
            self._view_tokens.append({int(i): [sid_ids[o + c] for o, c in zip(offsets, row)]
                                      for i, row in zip(view.item_ids.tolist(), view.codes)})
        self._sep = self.tok(self.prompts.history_separator, add_special_tokens=False)["input_ids"]
        seqs = self._seqs
        users = [seqs.users[u] for u in np.flatnonzero(seqs.lengths > 1).tolist()]
        profile = [profile_text(profiles.get(u), cfg.profile_template) if profiles is not None
                   else "" for u in users]
        # one prompt prefix per distinct profile text (without profiles: one for everybody)
        texts = sorted(set(profile))
        code = {t: k for k, t in enumerate(texts)}
        prefixes = self.tok([self.prompts.next_item_prompt([], t) for t in texts],
                            add_special_tokens=True)["input_ids"]
        self._sequences = SequencePieces(seqs, cfg.max_history, prefixes,
                                         np.array([code[t] for t in profile], dtype=np.int64),
                                         self._view_tokens, self._sep, self._join)
        # The cut-and-join token ids must equal tokenising the rendered prompt: check a few.
        rng = np.random.default_rng(0)
        for k in rng.choice(len(self._sequences), size=min(20, len(self._sequences)), replace=False):
            prefix, items = self._sequences[k]
            hist = items[:min(len(items) - 1, cfg.max_history)]
            v = int(k) % len(self.views)
            ids, _ = self._join(prefix, hist + [items[len(hist)]], self._view_tokens[v],
                                start=len(hist))
            text = self.prompts.next_item_prompt([self.views[v].sid(i) for i in hist],
                                                 profile[int(k)])
            want = self.tok(text, add_special_tokens=True)["input_ids"]
            if ids[:len(want)] != want:
                raise InvalidArgumentError(
                    f"prompt set {self.prompts.name!r} does not tokenise piecewise the way it does "
                    "whole with this tokenizer; use a question-style prompt set (e.g. 'en')")

    def _join(self, prefix: list[int], items: list[int], item_tokens: dict, start: int = 1):
        """prefix + item0 + sep + item1 + ... (items written with `item_tokens`, one view's);
        labels on the SID tokens of items[start:]."""
        ids, labels = list(prefix), [-100] * len(prefix)
        for j, item in enumerate(items):
            if j:
                ids += self._sep
                labels += [-100] * len(self._sep)
            toks = item_tokens[item]
            ids += toks
            labels += toks if j >= start else [-100] * len(toks)
        return ids, labels

    def _sequence_pool(self, rng: np.random.Generator):
        """Each user's sequence cut into pieces of max_history + 1 items (the first piece at a
        random offset each epoch); every item after a piece's first is a target once, in every
        view (each view cut anew). The pieces' (input ids, labels) are made when read."""
        return self._sequences.epoch(rng)

    def run_config(self) -> dict:
        return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
                "backbone": self.backbone_meta, "train": asdict(self.cfg),
                "prompts": self.prompts.to_dict(), "sid_views": len(self.views), "data": {
                    "name": self.dataset.name,
                    "path": str(self.dataset.path) if self.dataset.path else None,
                    "split": self.split_plan.spec, "split_note": self.split_plan.describe(),
                    # how the log was read: evaluating the model again reads it the same way
                    "time_unit": self.dataset.interactions.time_unit,
                    "kcore": self.dataset.kcore_applied,
                    "n_train_users": len(self.split.train),
                    "n_examples": {t: len(p) for t, p in self.pools.items()},
                    "sequence_examples": bool(self.prompts.continues_history),
                    "n_valid": len(self.split.valid), "n_test": len(self.split.test)},
                "versions": versions()}

    def _write_static(self) -> None:
        """Everything but the weights, written once when a run starts."""
        self.out.mkdir(parents=True, exist_ok=True)
        for name in ("sids", "tokenizer"):
            if (self.out / name).exists():
                shutil.rmtree(self.out / name)
        self.views.save(self.out / "sids")
        self.tok.save_pretrained(str(self.out / "tokenizer"))
        self.dataset.catalog.save(self.out / "items.jsonl")
        np.save(self.out / UNTRAINED_ITEMS, self.untrained_items())
        # the training split's successor counts: the served answer's order may use them
        # (runtime/transitions.py)
        Transitions.from_sequences(self.split.train.values()).save(self.out / TRANSITIONS)
        write_json(self.out / "genrec.json", self.run_config())

    def untrained_items(self) -> np.ndarray:
        """Catalog items the model is never trained to write as a next item (sorted ids): the
        served bundle treats them as cold (runtime/cold_start.py)."""
        targets = self.pools["next_item"].targets()
        ids = self.dataset.catalog.item_ids
        return np.sort(ids[~np.isin(ids, targets)]).astype(np.int64)

    # --- epoch data ----------------------------------------------------------------------------
    def _epoch_batches(self, epoch: int) -> "EpochBatches":
        rng = np.random.default_rng([self.cfg.seed, epoch])
        pools, lengths = dict(self.encoded), dict(self.lengths)
        if self.prompts.continues_history:
            pools["next_item"] = self._sequence_pool(rng)
            lengths["next_item"] = pools["next_item"].token_lengths()
        names, task_of, index = mix_indices({t: len(p) for t, p in pools.items()},
                                            self.cfg.task_weights, rng)
        # tokens per example, in the narrowest type that holds every pool's lengths
        length = np.zeros(len(index), dtype=np.result_type(*(lengths[n] for n in names)))
        for t, name in enumerate(names):
            mine = task_of == t
            length[mine] = lengths[name][index[mine]]
        batches = _batches(length, self.cfg.batch_size * self.world, rng)
        del length
        task_of, index, batches = batches.gather(task_of, index)
        # each rank takes its slice of every global batch
        mine = batches.for_rank(self.rank, self.world)
        return EpochBatches([pools[n] for n in names], task_of, index, mine, self.tok)

    def _from_rank0(self, value: float) -> float:
        """Rank 0's value on every rank. Decisions read from a clock (the time budget's stop and
        its schedule) must agree across ranks: a rank that leaves the loop alone leaves the
        others waiting in DDP's all-reduce."""
        if self.world == 1:
            return value
        t = torch.tensor([float(value)], dtype=torch.float64, device=self.device)
        torch.distributed.broadcast(t, src=0)
        return float(t.item())

    # --- validation ----------------------------------------------------------------------------
    def validate(self, model) -> dict:
        """HR@K / NDCG@K on a seeded sample of the validation cases: the reference decoder, or
        with eval_backend='runtime' the C++ search over a snapshot of the current weights."""
        from .evaluate import evaluate_cases, validation_sample

        cases = self.split.valid
        if not cases or self.cfg.eval_cases == 0:
            return {}
        cases = validation_sample(cases, self.cfg.eval_cases, self.cfg.seed)
        if self.cfg.eval_backend == "runtime":
            from ..eval.bundle import evaluate_bundle

            snap = self._runtime_snapshot()
            try:
                return evaluate_bundle(snap.refresh(model, self.tok), cases,
                                       beam=self.cfg.eval_beam, profiles=(
                                           self.dataset.profiles if self.cfg.use_profiles else None))
            finally:
                snap.release()
        was = model.training
        metrics = evaluate_cases(model, self.tok, self.views, cases, self.prompts,
                                 profiles=self.dataset.profiles if self.cfg.use_profiles else None,
                                 profile_template=self.cfg.profile_template,
                                 max_history=self.cfg.max_history, beam=self.cfg.eval_beam)
        model.train(was)
        return metrics

    def _runtime_snapshot(self):
        """The validation bundle, exported on first use from a save of the current weights
        (every later validation rewrites only its model.gguf)."""
        if self._snapshot is None:
            from .snapshot import RuntimeSnapshot

            self._save_weights(SNAPSHOT_WEIGHTS)
            try:
                self._snapshot = RuntimeSnapshot(self.out, self.cfg.num_threads,
                                                 which=SNAPSHOT_WEIGHTS)
            finally:
                shutil.rmtree(self.out / SNAPSHOT_WEIGHTS, ignore_errors=True)
        return self._snapshot

    # --- checkpoints ---------------------------------------------------------------------------
    def _save_weights(self, which: str, extra: dict | None = None, state: dict | None = None):
        from .._io import no_hf_progress

        with atomic_directory(self.out / which) as tmp, no_hf_progress():
            if hasattr(self.model, "peft_config"):
                # SID rows live in the adapter's trainable-token deltas; the resized base
                # embedding is rebuilt deterministically on load, so it is not saved again.
                self.model.save_pretrained(str(tmp / "model"), save_embedding_layers=False)
            else:
                self.model.save_pretrained(str(tmp / "model"))
            if state is not None:
                torch.save(state, tmp / "trainer_state.pt")
            write_json(tmp / "info.json", extra or {})

    def _state(self, opt, sched, epoch, batch_in_epoch, step, best, history) -> dict:
        return {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "epoch": epoch,
                "batch_in_epoch": batch_in_epoch, "step": step, "best": best, "history": history,
                "torch_rng": torch.get_rng_state(), "python_rng": random.getstate(),
                "config": asdict(self.cfg)}

    def _load_resume_state(self):
        from .checkpoint import load_model

        path = self.out / "last" / "trainer_state.pt"
        if not (self.resume and path.is_file()):
            return None
        saved = read_json(self.out / "genrec.json").get("train")
        # a field added since the run was written takes its default (eval_backend, for one)
        if saved is None or {**asdict(TrainConfig()), **saved} != asdict(self.cfg):
            raise InvalidArgumentError(
                f"{self.out} holds a run with another configuration; use a new --out folder or "
                "--no-resume to start over")
        try:
            # weights_only: the state is tensors and plain containers (see _state); a resume must
            # not run code that someone pickled into the run folder
            state = torch.load(path, weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
            raise ArtifactError(f"{path} is not a trainer state this version wrote ({exc}); delete "
                                "it or use --no-resume to start over") from exc
        if not isinstance(state, dict) or not RESUME_KEYS <= set(state):
            raise ArtifactError(f"{path} holds no trainer state (expected a dict with the keys "
                                f"{sorted(RESUME_KEYS)}); delete it or use --no-resume to start over")
        model, tok, _, _ = load_model(self.out, "last", for_training=True)
        self.model, self.tok = model.to(self.device), tok
        self._encode()
        return state

    # --- the loop ------------------------------------------------------------------------------
    def fit(self) -> dict:
        try:
            return self._fit()
        finally:
            if self._snapshot is not None:
                self._snapshot.close()
                self._snapshot = None

    def _fit(self) -> dict:
        from tqdm.auto import tqdm

        cfg = self.cfg
        state = self._load_resume_state()
        if state is None and self.rank == 0:
            self._write_static()
        if (self.rank == 0 and cfg.eval_backend == "runtime" and cfg.eval_every
                and cfg.eval_cases and self.split.valid):
            self._runtime_snapshot()  # a model the runtime cannot serve fails here, not an epoch in
        model = self.model
        model.train()
        wrapped = ResponseLoss(model)
        if self.world > 1:
            wrapped = torch.nn.parallel.DistributedDataParallel(
                wrapped, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        params = [p for p in model.parameters() if p.requires_grad]
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=self.lr,
                                betas=(0.9, 0.98))
        steps_per_epoch = len(self._epoch_batches(0))
        total = steps_per_epoch * cfg.epochs
        if cfg.max_steps:
            total = min(total, cfg.max_steps)
        warm = max(1, int(cfg.warmup * total))
        span = [total]  # the step the cosine reaches 0 at; a budget can only bring it closer

        def schedule(step):
            if step < warm:
                return (step + 1) / warm
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, span[0] - warm))))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        start_epoch, skip, step, best, history = 0, 0, 0, None, []
        if state is not None:
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            start_epoch, skip, step = state["epoch"], state["batch_in_epoch"], state["step"]
            best, history = state["best"], state["history"]
            torch.set_rng_state(state["torch_rng"])
            random.setstate(state["python_rng"])
        t_start, first_step = time.time(), step  # the budget counts from this (re)start
        pad = self.tok.pad_token_id
        stop = False
        bar = tqdm(total=total, initial=step, desc="train", unit="step",
                   disable=not self.progress or self.rank != 0, mininterval=1.0)
        tokens_seen, t_last = 0, time.time()
        for epoch in range(start_epoch, cfg.epochs):
            batches = self._epoch_batches(epoch)
            for b_idx in range(skip, len(batches)):
                ids, mask, labels = _pack(batches[b_idx], pad, self.device)
                loss = wrapped(ids, mask, labels)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                opt.step()
                sched.step()
                step += 1
                tokens_seen += int(mask.sum())
                if step % 10 == 0:
                    now = time.time()
                    bar.set_postfix(epoch=epoch, loss=f"{loss.item():.3f}",
                                    tok_s=f"{tokens_seen / max(now - t_last, 1e-9):.0f}")
                    tokens_seen, t_last = 0, now
                bar.update(1)
                out_of_time = bool(cfg.max_minutes) and self._from_rank0(
                    float((time.time() - t_start) > cfg.max_minutes * 60)) > 0
                if (cfg.max_steps and step >= cfg.max_steps) or out_of_time:
                    stop = True
                if self.rank == 0 and (step % cfg.save_every == 0 or stop):
                    self._save_weights("last", {"epoch": epoch, "step": step},
                                       self._state(opt, sched, epoch, b_idx + 1, step, best, history))
                if stop:
                    break
            skip = 0
            last_epoch = stop or epoch + 1 == cfg.epochs
            if self.rank == 0:
                record = {"epoch": epoch, "step": step, "loss": float(loss.item()),
                          "minutes": round((time.time() - t_start) / 60, 2)}
                if cfg.eval_every and ((epoch + 1) % cfg.eval_every == 0 or last_epoch):
                    metrics = self.validate(model)
                    record.update({k: metrics[k] for k in ("HR@10", "NDCG@10") if k in metrics})
                    score = metrics.get("NDCG@10")
                    if score is not None and (best is None or score > best["NDCG@10"]):
                        best = {"epoch": epoch, "step": step, **metrics}
                        self._save_weights("best", best)
                history.append(record)
                bar.write(f"epoch {epoch}: " + ", ".join(
                    f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
                self._save_weights("last", {"epoch": epoch + 1, "step": step},
                                   self._state(opt, sched, epoch + 1, 0, step, best, history))
            if stop:
                break
            if cfg.max_minutes and step:
                # a budget the schedule will not fit in: end the cosine where the budget ends
                # (a model stopped at a high learning rate is worse than a shorter schedule)
                span[0] = int(self._from_rank0(budget_span(
                    step, step - first_step, time.time() - t_start, cfg.max_minutes * 60,
                    span[0], warm)))
        bar.close()
        if self.rank == 0 and best is None:  # no validation data: the last weights are the best
            self._save_weights("best", {"step": step, "note": "no validation cases; last weights"})
        if self.world > 1:
            torch.distributed.barrier()
        return {"best": best, "history": history, "steps": step,
                "minutes": round((time.time() - t_start) / 60, 2)}
