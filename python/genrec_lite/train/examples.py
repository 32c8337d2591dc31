"""Next-item training examples made when their batch is, from the training sequences.

A log of 10^7 interactions gives 10^7 next-item examples; as prompt strings and token lists they
would take tens of GB. Here the sequences are one flat array; an example is an index (a user and
a position, or one epoch's piece of a sequence), its token length is computed from per-item
token counts without tokenising it, and its token ids are made when its batch is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..prompts import profile_text
from .tasks import Example, next_item_prompt

CHUNK = 1 << 20  # examples whose lengths are computed at once


class Sequences:
    """The training sequences (user -> items, oldest first) as one flat array and offsets."""

    def __init__(self, train: Mapping[str, np.ndarray]):
        self.users = list(train)
        lens = np.fromiter((len(s) for s in train.values()), dtype=np.int64, count=len(train))
        self.offsets = np.zeros(len(lens) + 1, dtype=np.int64)
        np.cumsum(lens, out=self.offsets[1:])
        self.items = np.empty(int(self.offsets[-1]), dtype=np.int64)
        for seq, a in zip(train.values(), self.offsets[:-1].tolist()):
            self.items[a:a + len(seq)] = seq

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return len(self.users)

    def seq(self, u: int) -> np.ndarray:
        return self.items[self.offsets[u]:self.offsets[u + 1]]

    def token_sums(self, per_item: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Running totals of a per-item count over the flat array (index j: items before j);
        ``per_item[k]`` belongs to item ``ids[k]`` (sorted)."""
        out = np.zeros(len(self.items) + 1, dtype=np.int64)
        for lo in range(0, len(self.items), CHUNK):
            part = self.items[lo:lo + CHUNK]
            out[lo + 1:lo + 1 + len(part)] = per_item[np.searchsorted(ids, part)]
        np.cumsum(out, out=out)
        return out


def item_token_counts(tok, view) -> tuple[np.ndarray, np.ndarray]:
    """(sorted item ids, tokens of each one's SID in ``view``)."""
    ids = np.sort(view.item_ids)
    enc = tok([view.sid(int(i)) for i in ids.tolist()], add_special_tokens=False)["input_ids"]
    return ids, np.fromiter((len(e) for e in enc), dtype=np.int64, count=len(ids))


class NextItemPool(Sequence):
    """Every training case (a user's item at position >= 1, after up to ``max_len`` items) as
    a next-item :class:`Example`, in every view: the examples, and their order, that
    ``next_item_examples(split.train_cases(max_len), view, ...)`` gives view after view, each
    one written when it is read."""

    def __init__(self, seqs: Sequences, views, prompts, max_len: int | None, *, profiles=None,
                 profile_template: str | None = None):
        self.seqs, self.views, self.prompts, self.max_len = seqs, list(views), prompts, max_len
        self.profiles, self.profile_template = profiles, profile_template
        per_user = np.maximum(seqs.lengths - 1, 0)
        self.case_offsets = np.zeros(len(per_user) + 1, dtype=np.int64)
        np.cumsum(per_user, out=self.case_offsets[1:])
        self.n_cases = int(self.case_offsets[-1])

    def __len__(self) -> int:
        return self.n_cases * len(self.views)

    def _profile(self, u: int) -> str:
        if self.profiles is None:
            return ""
        return profile_text(self.profiles.get(self.seqs.users[u]), self.profile_template)

    def locate(self, k: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(view, user, flat position of the target) of examples ``k``."""
        view, case = np.divmod(k, self.n_cases)
        u = np.searchsorted(self.case_offsets, case, side="right") - 1
        return view, u, self.seqs.offsets[u] + (case - self.case_offsets[u]) + 1

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        if k < 0:
            k += len(self)
        if not 0 <= k < len(self):
            raise IndexError(k)
        view, u, g = (int(x[0]) for x in self.locate(np.array([k])))
        lo = self.seqs.offsets[u] if self.max_len is None else \
            max(int(self.seqs.offsets[u]), g - self.max_len)
        hist = self.seqs.items[lo:g].tolist()
        target = int(self.seqs.items[g])
        sids = self.views[view]
        return Example("next_item", next_item_prompt(hist, sids, self.prompts, self._profile(u)),
                       sids.sid(target), target)

    def __iter__(self):
        for k in range(len(self)):
            yield self[k]

    def targets(self) -> np.ndarray:
        """The distinct target items (every item after a sequence's first)."""
        first = np.zeros(len(self.seqs.items), dtype=bool)
        first[self.seqs.offsets[:-1][self.seqs.lengths > 0]] = True
        return np.unique(self.seqs.items[~first])

    def encode(self, tok, ks) -> list[tuple[list[int], list[int]]]:
        """(input ids, labels) of examples ``ks``: the prompt, then the response and EOS."""
        examples = [self[int(k)] for k in ks]
        eos = tok.eos_token_id
        prompts = tok([e.prompt for e in examples], add_special_tokens=True)["input_ids"]
        resp = tok([e.response for e in examples], add_special_tokens=False)["input_ids"]
        return [(p + r + [eos], [-100] * len(p) + r + [eos]) for p, r in zip(prompts, resp)]

    def token_lengths(self, tok, check: int = 64) -> np.ndarray:
        """Tokens of every example (what ``encode`` gives), without tokenising them: a prompt
        is its template's tokens plus its SIDs' plus the separators', since every SID token is
        an added token that the tokenizer never merges with the text around it. Checked
        against ``encode`` on a sample; where a tokenizer breaks that rule, every example is
        tokenised (a chunk at a time)."""
        out = np.empty(len(self), dtype=np.int32)
        sep = len(tok(self.prompts.history_separator, add_special_tokens=False)["input_ids"])
        profiles = [self._profile(u) for u in range(len(self.seqs))] if self.profiles is not None \
            else None
        for v, view in enumerate(self.views):
            ids, counts = item_token_counts(tok, view)
            sums = self.seqs.token_sums(counts, ids)
            # the template's tokens per profile text: a one-item prompt less that item's SID
            probe = int(ids[0])
            texts = sorted(set(profiles)) if profiles is not None else [""]
            enc = tok([next_item_prompt([probe], view, self.prompts, t) for t in texts],
                      add_special_tokens=True)["input_ids"]
            base_of = {t: len(e) - int(counts[0]) for t, e in zip(texts, enc)}
            base = np.array([base_of[p] for p in profiles], dtype=np.int64) \
                if profiles is not None else None
            for lo in range(0, self.n_cases, CHUNK):
                k = np.arange(lo, min(self.n_cases, lo + CHUNK)) + v * self.n_cases
                _, u, g = self.locate(k)
                n_hist = g - self.seqs.offsets[u]
                if self.max_len is not None:
                    n_hist = np.minimum(n_hist, self.max_len)
                target = counts[np.searchsorted(ids, self.seqs.items[g])]
                out[k] = ((base[u] if base is not None else base_of[""]) + sums[g] - sums[g - n_hist]
                          + (n_hist - 1) * sep + target + 1)
        if len(out):
            rng = np.random.default_rng(0)
            sample = np.unique(np.r_[0, len(out) - 1, rng.integers(0, len(out), check)])
            got = [len(ids) for ids, _ in self.encode(tok, sample)]
            if got != out[sample].tolist():
                for lo in range(0, len(out), 4096):
                    ks = range(lo, min(len(out), lo + 4096))
                    out[lo:lo + len(ks)] = [len(ids) for ids, _ in self.encode(tok, ks)]
        return out


class SequencePieces:
    """Continuation prompts: each user's sequence cut into pieces of ``span + 1`` items, the
    first piece at a random offset each epoch, every item after a piece's first a target once,
    in every view (each view cut anew). An epoch's pieces are arrays; a piece's token ids are
    made by ``join`` when its batch is."""

    def __init__(self, seqs: Sequences, span: int, prefixes: list[list[int]],
                 prefix_of: np.ndarray, view_tokens: list[dict], sep: list[int], join):
        self.seqs, self.span, self.sep = seqs, span, sep
        self.users = np.flatnonzero(seqs.lengths > 1)  # the users with a target
        self.prefixes, self.prefix_of = prefixes, prefix_of  # per entry of self.users
        self.view_tokens, self.join = view_tokens, join
        self.prefix_len = np.array([len(prefixes[i]) for i in prefix_of.tolist()], dtype=np.int64)
        self.sums = []
        for tokens in view_tokens:
            ids = np.array(sorted(tokens), dtype=np.int64)
            counts = np.array([len(tokens[i]) for i in ids.tolist()], dtype=np.int64)
            self.sums.append(seqs.token_sums(counts, ids))

    def __len__(self) -> int:
        return len(self.users)

    def __getitem__(self, j: int) -> tuple[list[int], list[int]]:
        """(prompt prefix ids, items) of the j-th user with a target."""
        return self.prefixes[int(self.prefix_of[j])], self.seqs.seq(int(self.users[j])).tolist()

    def __iter__(self):
        return (self[j] for j in range(len(self)))

    def epoch(self, rng: np.random.Generator) -> "EpochPieces":
        span = self.span
        lens = self.seqs.lengths[self.users]
        views, owners, starts, ends = [], [], [], []
        for v in range(len(self.view_tokens)):
            # one draw per long sequence, in order: the same stream as cutting them one by one
            first = np.fromiter((int(rng.integers(0, span)) if n > span + 1 else 0
                                 for n in lens.tolist()), dtype=np.int64, count=len(lens))
            n_range = np.maximum(0, -(-(lens - 1 - first) // span))
            lead = (first > 0).astype(np.int64)
            count = lead + n_range
            owner = np.repeat(np.arange(len(lens)), count)
            j = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count) \
                - lead[owner]
            a = np.where(j < 0, 0, first[owner] + j * span)
            end = np.minimum(np.where(j < 0, first[owner], a + span) + 1, lens[owner])
            views.append(np.full(len(a), v, dtype=np.int8))
            owners.append(owner)
            starts.append(a)
            ends.append(end)
        return EpochPieces(self, np.concatenate(views), np.concatenate(owners),
                           np.concatenate(starts), np.concatenate(ends))


class EpochPieces(Sequence):
    """One epoch's sequence pieces: (input ids, labels) each, made when read."""

    def __init__(self, pieces: SequencePieces, view, owner, start, end):
        self.p, self.view, self.owner, self.start, self.end = pieces, view, owner, start, end

    def __len__(self) -> int:
        return len(self.start)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        p, j = self.p, int(self.owner[k])
        base = int(p.seqs.offsets[int(p.users[j])])
        items = p.seqs.items[base + int(self.start[k]):base + int(self.end[k])].tolist()
        return p.join(p.prefixes[int(p.prefix_of[j])], items, p.view_tokens[int(self.view[k])])

    def token_lengths(self) -> np.ndarray:
        """Tokens of every piece: prefix + its items' SID tokens + a separator between items."""
        p = self.p
        base = p.seqs.offsets[p.users[self.owner]]
        out = p.prefix_len[self.owner] + (self.end - self.start - 1) * len(p.sep)
        for v, sums in enumerate(p.sums):
            mine = self.view == v
            out[mine] += sums[base[mine] + self.end[mine]] - sums[base[mine] + self.start[mine]]
        return out
