"""SASRec (Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018), in PyTorch.

The architecture follows the paper and its reference implementation:

- input: item embedding (scaled by sqrt(hidden)) + learned absolute positional embedding over
  ``max_len`` slots; sequences are left-padded (the most recent item is always in the last slot);
  dropout on the sum; padded slots zeroed;
- ``n_blocks`` blocks, each: ``q = LayerNorm(x)``; ``x = q + MultiHeadAttention(q, x, x)`` with a
  causal mask (a slot sees itself and earlier real items) and dropout on the attention weights;
  then ``x = LayerNorm(x)``; ``x = x + FFN(x)`` with the point-wise FFN
  ``Linear(h, h) -> ReLU -> Dropout -> Linear(h, h) -> Dropout``; padded slots zeroed again;
- a final LayerNorm; the score of item ``i`` after slot ``t`` is ``<F_t, E_i>`` with the *shared*
  item embedding table ``E`` (no separate output layer).

Training uses every position of the training sequences (each slot predicts the next item). A
user sequence longer than ``max_len + 1`` is cut, from its end, into consecutive windows of
``max_len`` targets, so every training interaction is a target exactly once (the paper keeps
only the most recent ``max_len`` items of each user). Loss: full-softmax cross-entropy over the
whole catalog (``loss="ce"``, RecBole's default, usually stronger) or the paper's binary
cross-entropy with one random negative per position (``loss="bce"``; the negative is drawn
uniformly from the catalog minus the target, whereas the paper also avoids the user's other
items). Adam (betas 0.9/0.98 as in the paper). With validation cases: evaluate NDCG@10 after
every epoch, stop after ``patience`` epochs without improvement, restore the best epoch.

Inference ranks the full catalog after the last slot of the (left-padded, last ``max_len``
items) history; history items are not filtered out (see ``benchmarks/baselines/__init__.py``).
Deterministic given ``seed`` (on CPU, with a fixed number of threads).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genrec_lite.errors import GenrecError, InvalidArgumentError
from genrec_lite.eval import rank_metrics, top_k_from_scores

if TYPE_CHECKING:  # pragma: no cover
    from genrec_lite.data import Case


@dataclass
class SASRecConfig:
    hidden: int = 64
    n_blocks: int = 2
    n_heads: int = 1
    dropout: float = 0.2
    max_len: int = 50
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 128
    loss: str = "ce"            # "ce" (full softmax) or "bce" (one negative per position)
    max_epochs: int = 200
    patience: int = 10          # epochs without a better validation NDCG@10
    seed: int = 0
    n_threads: int = 2
    eval_batch_size: int = 512

    def __post_init__(self) -> None:
        if self.hidden % self.n_heads:
            raise InvalidArgumentError(
                f"hidden ({self.hidden}) must be divisible by n_heads ({self.n_heads})")
        if self.loss not in ("ce", "bce"):
            raise InvalidArgumentError(f"loss must be 'ce' or 'bce', got {self.loss!r}")
        for name in ("hidden", "n_blocks", "n_heads", "max_len", "batch_size", "max_epochs"):
            if getattr(self, name) < 1:
                raise InvalidArgumentError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise InvalidArgumentError(f"dropout must be in [0, 1), got {self.dropout}")


class _Attention(nn.Module):
    def __init__(self, hidden: int, n_heads: int, dropout: float):
        super().__init__()
        self.h, self.d = n_heads, hidden // n_heads
        self.q = nn.Linear(hidden, hidden)
        self.k = nn.Linear(hidden, hidden)
        self.v = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, hidden)
        self.drop = nn.Dropout(dropout)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, allowed: torch.Tensor
                ) -> torch.Tensor:
        b, n, _ = query.shape

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.view(b, n, self.h, self.d).transpose(1, 2)      # (b, h, n, d)

        q, k, v = split(self.q(query)), split(self.k(keys)), split(self.v(keys))
        att = (q @ k.transpose(-1, -2)) / math.sqrt(self.d)
        att = att.masked_fill(~allowed, float("-inf")).softmax(dim=-1)
        out = (self.drop(att) @ v).transpose(1, 2).reshape(b, n, self.h * self.d)
        return self.out(out)


class _Block(nn.Module):
    def __init__(self, hidden: int, n_heads: int, dropout: float):
        super().__init__()
        self.ln_att = nn.LayerNorm(hidden, eps=1e-8)
        self.att = _Attention(hidden, n_heads, dropout)
        self.ln_ffn = nn.LayerNorm(hidden, eps=1e-8)
        self.ffn = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, hidden), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, allowed: torch.Tensor, keep: torch.Tensor
                ) -> torch.Tensor:
        q = self.ln_att(x)
        x = q + self.att(q, x, allowed)
        x = self.ln_ffn(x)
        x = x + self.ffn(x)
        return x * keep


class SASRecNet(nn.Module):
    """The network: (batch, max_len) left-padded item indices (0 = padding, items 1..n) ->
    (batch, max_len, hidden) sequence representations."""

    def __init__(self, n_items: int, cfg: SASRecConfig):
        super().__init__()
        self.n_items, self.hidden, self.max_len = n_items, cfg.hidden, cfg.max_len
        self.item_emb = nn.Embedding(n_items + 1, cfg.hidden, padding_idx=0)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.hidden)
        self.emb_drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(_Block(cfg.hidden, cfg.n_heads, cfg.dropout)
                                    for _ in range(cfg.n_blocks))
        self.ln_final = nn.LayerNorm(cfg.hidden, eps=1e-8)
        for name, p in self.named_parameters():   # Xavier, as the reference implementation
            if p.dim() > 1:
                nn.init.xavier_normal_(p)
            elif name.endswith("bias"):
                nn.init.zeros_(p)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        n = seq.shape[1]
        real = seq > 0                                                   # (b, n)
        keep = real.unsqueeze(-1).to(self.item_emb.weight.dtype)
        pos = torch.arange(self.max_len - n, self.max_len, device=seq.device)
        x = self.item_emb(seq) * math.sqrt(self.hidden) + self.pos_emb(pos)
        x = self.emb_drop(x) * keep
        causal = torch.ones(n, n, dtype=torch.bool, device=seq.device).tril()
        eye = torch.eye(n, dtype=torch.bool, device=seq.device)
        # a slot attends to itself and to the real items at or before it
        allowed = (causal & (real.unsqueeze(1) | eye)).unsqueeze(1)      # (b, 1, n, n)
        for block in self.blocks:
            x = block(x, allowed, keep)
        return self.ln_final(x)

    def item_logits(self, states: torch.Tensor) -> torch.Tensor:
        """Scores of every catalog item (column j = item index j+1) for each state."""
        return states @ self.item_emb.weight[1:].T


def _left_pad(rows: Sequence[np.ndarray], width: int) -> np.ndarray:
    out = np.zeros((len(rows), width), dtype=np.int64)
    for i, r in enumerate(rows):
        r = r[-width:]
        if len(r):
            out[i, width - len(r):] = r
    return out


def training_windows(seqs: Sequence[np.ndarray], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and targets (both (n_windows, max_len), left-padded with 0) from 1-based item
    index sequences: each sequence is cut from its end into windows of ``max_len`` targets;
    every item but a sequence's first is a target exactly once."""
    inputs, targets = [], []
    for s in seqs:
        end = len(s)
        while end >= 2:
            start = max(0, end - max_len - 1)
            inputs.append(s[start:end - 1])
            targets.append(s[start + 1:end])
            end -= max_len
    return _left_pad(inputs, max_len), _left_pad(targets, max_len)


class SASRec:
    """Fit / recommend wrapper (the interface shared by the baselines)."""

    name = "SASRec"

    def __init__(self, config: SASRecConfig | None = None, **overrides):
        cfg = config or SASRecConfig()
        self.config = SASRecConfig(**{**asdict(cfg), **overrides})
        self.net: SASRecNet | None = None
        self.history: list[dict] = []
        self.best_epoch = 0
        self.best_valid: dict | None = None
        self.train_seconds = 0.0

    # ------------------------------------------------------------------ training
    def fit(self, train: Mapping[str, np.ndarray], item_ids: Sequence[int] | np.ndarray,
            valid: Sequence["Case"] | None = None, *, epochs: int | None = None,
            progress: Callable[[str], None] | None = None) -> "SASRec":
        """Train on ``train`` (user -> item ids, oldest first).

        With ``valid`` cases: up to ``max_epochs`` epochs, early stopping on NDCG@10 (patience
        ``patience``), the best epoch's weights kept. Without: exactly ``epochs`` (default
        ``max_epochs``) epochs.
        """
        from . import ItemIndex, sequences_as_indices

        cfg = self.config
        torch.set_num_threads(cfg.n_threads)
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        self.index = ItemIndex(item_ids)
        n_items = len(self.index)
        seqs = [s + 1 for s in sequences_as_indices(train, self.index)]
        # items of no training sequence have embeddings nothing trained (only pushed down as
        # negatives): as inputs they are noise, so a history is read without them
        self.trained = np.zeros(n_items + 1, dtype=bool)
        for s in seqs:
            self.trained[s] = True
        inputs, targets = training_windows(seqs, cfg.max_len)
        if len(inputs) == 0:
            raise InvalidArgumentError("no training sequence has 2 or more items")
        inputs_t, targets_t = torch.from_numpy(inputs), torch.from_numpy(targets)
        self.net = SASRecNet(n_items, cfg)
        opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr, betas=(0.9, 0.98),
                               weight_decay=cfg.weight_decay)
        n_epochs = cfg.max_epochs if (valid is not None or epochs is None) else int(epochs)
        best_score, best_state, since_best = -1.0, None, 0
        self.history = []
        t0 = time.perf_counter()
        for epoch in range(1, n_epochs + 1):
            te = time.perf_counter()
            self.net.train()
            order = torch.from_numpy(rng.permutation(len(inputs)))
            total, count = 0.0, 0
            for s in range(0, len(order), cfg.batch_size):
                idx = order[s:s + cfg.batch_size]
                x, y = inputs_t[idx], targets_t[idx]
                states = self.net(x)
                mask = y > 0
                h, tgt = states[mask], y[mask]
                if cfg.loss == "ce":
                    loss = F.cross_entropy(self.net.item_logits(h), tgt - 1)
                else:
                    neg = (tgt - 1 + torch.randint(1, n_items, tgt.shape)) % n_items + 1
                    pos_l = (h * self.net.item_emb(tgt)).sum(-1)
                    neg_l = (h * self.net.item_emb(neg)).sum(-1)
                    loss = (F.binary_cross_entropy_with_logits(pos_l, torch.ones_like(pos_l))
                            + F.binary_cross_entropy_with_logits(neg_l, torch.zeros_like(neg_l)))
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(tgt)
                count += len(tgt)
            rec = {"epoch": epoch, "loss": total / max(count, 1),
                   "seconds": time.perf_counter() - te}
            if valid is not None:
                m = self.evaluate(valid)
                rec["valid_NDCG@10"], rec["valid_HR@10"] = m["NDCG@10"], m["HR@10"]
                if m["NDCG@10"] > best_score:
                    best_score, since_best = m["NDCG@10"], 0
                    best_state = copy.deepcopy(self.net.state_dict())
                    self.best_epoch, self.best_valid = epoch, m
                else:
                    since_best += 1
            self.history.append(rec)
            if progress is not None:
                progress(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                                  for k, v in rec.items()))
            if valid is not None and since_best >= cfg.patience:
                break
        if best_state is not None:
            self.net.load_state_dict(best_state)
        else:
            self.best_epoch = n_epochs
        self.net.eval()
        self.train_seconds = time.perf_counter() - t0
        return self

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def scores(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        """(n, n_items) scores of the full catalog (columns in ``item_ids`` order), each from
        its history's items that occur in the training sequences."""
        if self.net is None:
            raise GenrecError("SASRec: call fit() before scores() or recommend()")
        self.net.eval()
        width = self.config.max_len
        rows = [r[self.trained[r]][-width:] for r in
                (self.index.index(list(h)) + 1 for h in histories)]
        x = torch.from_numpy(_left_pad(rows, width))
        out = []
        for s in range(0, len(x), self.config.eval_batch_size):
            states = self.net(x[s:s + self.config.eval_batch_size])[:, -1]
            out.append(self.net.item_logits(states))
        if not out:
            return np.zeros((0, len(self.index)), dtype=np.float32)
        return torch.cat(out).numpy()

    def recommend(self, histories: Sequence[Sequence[int]], k: int = 10) -> np.ndarray:
        """(len(histories), k) item ids, best first (full catalog, history not filtered)."""
        parts = []
        bs = self.config.eval_batch_size
        for s in range(0, len(histories), bs):
            parts.append(self.index.ids[top_k_from_scores(self.scores(histories[s:s + bs]), k)])
        if not parts:
            return np.zeros((0, min(k, len(self.index))), dtype=np.int64)
        return np.concatenate(parts)

    def evaluate(self, cases: Sequence["Case"], ks=(1, 3, 5, 10)) -> dict:
        ranked = self.recommend([c.history for c in cases], k=max(ks))
        return rank_metrics(ranked, [c.target for c in cases], ks)
