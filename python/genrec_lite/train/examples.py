"""Next-item training examples made when their batch is, from the training sequences.

A log of 10^7 interactions gives 10^7 next-item examples; as prompt strings and token lists they
would take tens of GB. Here the sequences are one flat array; an example is an index (a user and
a position, or one epoch's piece of a sequence), its token length is computed from per-item
token counts without tokenising it, and its token ids are made when its batch is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..data._grouping import index_dtype
from ..data.sequences import UserSequences
from ..prompts import profile_text
from .tasks import Example, next_item_prompt

CHUNK = 1 << 18  # examples whose lengths are computed at once (a dozen temporaries of this)


class Sequences(UserSequences):
    """The training sequences (user -> items, oldest first) as ranges of one flat array; a
    split's :class:`UserSequences` is taken as it is (no copy), a dict is copied in once."""

    def __init__(self, train: Mapping[str, np.ndarray]):
        src = UserSequences.from_dict(train)
        super().__init__(src.users, None, src.flat, starts=src.starts, ends=src.ends)

    def seq(self, u: int) -> np.ndarray:
        return self.at(u)

    def token_sums(self, per_item: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Running totals of a per-item count over the flat array (index j: items before j);
        ``per_item[k]`` belongs to item ``ids[k]`` (sorted)."""
        total = int(per_item.max(initial=0)) * len(self.flat)  # a bound on the last sum
        out = np.zeros(len(self.flat) + 1, dtype=np.int32 if total < 2 ** 31 else np.int64)
        for lo in range(0, len(self.flat), CHUNK):
            part = self.flat[lo:lo + CHUNK]
            out[lo + 1:lo + 1 + len(part)] = per_item[np.searchsorted(ids, part)]
        np.cumsum(out, out=out, dtype=out.dtype)
        return out


def small_counts(counts: np.ndarray) -> np.ndarray:
    """``counts`` as uint16 when every one fits (token lengths of prompts: 2 bytes an example
    of a large log, not 4 or 8), else as they are."""
    if not len(counts) or (counts.min() >= 0 and counts.max() < 2 ** 16):
        return counts.astype(np.uint16)
    return counts


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
        total = int(per_user.sum())
        self.case_offsets = np.zeros(len(per_user) + 1, dtype=index_dtype(total + 1))
        np.cumsum(per_user, out=self.case_offsets[1:], dtype=self.case_offsets.dtype)
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
        return view, u, self.seqs.starts[u] + (case - self.case_offsets[u]) + 1

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        if k < 0:
            k += len(self)
        if not 0 <= k < len(self):
            raise IndexError(k)
        view, u, g = (int(x[0]) for x in self.locate(np.array([k])))
        lo = self.seqs.starts[u] if self.max_len is None else \
            max(int(self.seqs.starts[u]), g - self.max_len)
        hist = self.seqs.flat[lo:g].tolist()
        target = int(self.seqs.flat[g])
        sids = self.views[view]
        return Example("next_item", next_item_prompt(hist, sids, self.prompts, self._profile(u)),
                       sids.sid(target), target)

    def __iter__(self):
        for k in range(len(self)):
            yield self[k]

    def targets(self) -> np.ndarray:
        """The distinct target items (every item after a sequence's first)."""
        flat, starts, ends = self.seqs.flat, self.seqs.starts, self.seqs.ends
        found = [np.zeros(0, dtype=flat.dtype)]
        for lo in range(0, len(flat), CHUNK):  # a chunk at a time: no copy of the whole array
            part = flat[lo:lo + CHUNK]
            hi = lo + len(part)
            # the positions after a sequence's first, inside its range (ranges may leave gaps)
            mine = (starts + 1 < hi) & (ends > lo)
            size = len(part) + 1
            edge = np.bincount(np.clip(starts[mine] + 1 - lo, 0, len(part)), minlength=size) - \
                np.bincount(np.clip(ends[mine] - lo, 0, len(part)), minlength=size)
            found.append(np.unique(part[np.cumsum(edge[:-1]) > 0]))
        return np.unique(np.concatenate(found))

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
                n_hist = g - self.seqs.starts[u]
                if self.max_len is not None:
                    n_hist = np.minimum(n_hist, self.max_len)
                target = counts[np.searchsorted(ids, self.seqs.flat[g])]
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
        return small_counts(out)


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
        base = int(p.seqs.starts[int(p.users[j])])
        items = p.seqs.flat[base + int(self.start[k]):base + int(self.end[k])].tolist()
        return p.join(p.prefixes[int(p.prefix_of[j])], items, p.view_tokens[int(self.view[k])])

    def token_lengths(self) -> np.ndarray:
        """Tokens of every piece: prefix + its items' SID tokens + a separator between items."""
        p = self.p
        base = p.seqs.starts[p.users[self.owner]]
        out = p.prefix_len[self.owner] + (self.end - self.start - 1) * len(p.sep)
        for v, sums in enumerate(p.sums):
            mine = self.view == v
            out[mine] += sums[base[mine] + self.end[mine]] - sums[base[mine] + self.start[mine]]
        return out
