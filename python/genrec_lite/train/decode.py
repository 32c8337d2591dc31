"""The PyTorch reference decoder: beam search restricted to real SIDs by the prefix trie.

For each prompt: one forward pass over the prompt, then one step per SID level for all beams of
all prompts in the batch. At each level the logits of that level's SID tokens are masked to the
codes the trie allows after the beam's prefix and log-softmaxed over those alone; beams are
ranked by summed log-probabilities (`scores`). Each beam also carries the model's raw
log-probability of its SID (`logprobs`): the sum over levels of logit[token] - logsumexp(the whole
logits row), not renormalised over the allowed codes. A NaN or +inf among a live beam's allowed
logits, or anywhere in the row of a beam that continues, raises ModelOutputError (the first in
request order; within a request the allowed logits first, by beam rank and code, then the rows
of the kept beams, best first); -inf is a mask. It is the evaluation decoder and the parity
reference for the C++ runtime (genrec/beam_search.h: the same rule, the same error).
`constrained=False` decodes freely over the whole vocabulary instead, to measure how often an
unconstrained model writes something that is not an item (its scores are then raw
log-probabilities already, and logprobs equal them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InvalidArgumentError, ModelOutputError, require

torch = require("torch")


@dataclass
class Recommendation:
    items: list[int]
    scores: list[float]             # log-probability renormalised over the allowed codes per level
    logprobs: list[float]           # the model's raw log-probability of the item's SID
    sids: list[tuple[int, ...]]     # the beams' SIDs, best first (several items may share one)
    valid: bool = True              # free decoding: whether the best beam is a real item


class ReferenceDecoder:
    def __init__(self, model, tokenizer, sids, *, trie=None):
        self.model = model
        self.tok = tokenizer
        self.sids = sids
        self.trie = trie if trie is not None else sids.trie()
        sizes = sids.level_sizes
        self.level_sizes = sizes
        table = np.full((len(sizes), max(sizes)), -1, dtype=np.int64)
        for level, size in enumerate(sizes):
            ids = tokenizer.convert_tokens_to_ids([sids.token(level, c) for c in range(size)])
            if any(i is None or i == tokenizer.unk_token_id for i in ids):
                raise InvalidArgumentError(f"the tokenizer lacks SID tokens of level {level}")
            table[level, :size] = ids
        self.token_table = torch.from_numpy(table)
        # token id -> (level, code), for reading freely decoded output
        self._code_of = {int(t): (lv, c) for lv in range(len(sizes)) for c, t in enumerate(table[lv])
                         if t >= 0}

    def _encode_prompts(self, prompts: list[str]):
        ids = [self.tok(p, add_special_tokens=True)["input_ids"] for p in prompts]
        width = max(len(x) for x in ids)
        pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else 0
        input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for r, x in enumerate(ids):  # left padding: the next token follows every prompt directly
            input_ids[r, width - len(x):] = torch.tensor(x)
            mask[r, width - len(x):] = 1
        return input_ids, mask

    @torch.no_grad()
    def recommend(self, prompts: list[str], *, k: int = 10, beam: int = 20, batch_size: int = 16,
                  constrained: bool = True) -> list[Recommendation]:
        if k < 1 or beam < 1:
            raise InvalidArgumentError(f"k={k}, beam={beam}; expected both >= 1")
        self.model.eval()
        out: list[Recommendation] = []
        for s in range(0, len(prompts), batch_size):
            out.extend(self._batch(prompts[s:s + batch_size], k, beam, constrained))
        return out

    def _batch(self, prompts, k, beam, constrained):
        model = self.model
        n = len(prompts)
        dev = next(model.parameters()).device
        input_ids, mask = self._encode_prompts(prompts)
        input_ids, mask = input_ids.to(dev), mask.to(dev)
        pos = (mask.cumsum(-1) - 1).clamp_min(0)
        res = model(input_ids=input_ids, attention_mask=mask, position_ids=pos, use_cache=True,
                    logits_to_keep=1)
        cache = res.cache
        logits = res.logits[:, -1, :]                                # (n, V), on the model's device
        next_pos = mask.sum(-1, keepdim=True)                        # (n, 1)
        n_levels = len(self.level_sizes)
        scores = torch.zeros(n, 1)                                   # (n, beams)
        raws = torch.zeros(n, 1, dtype=torch.float64)                # raw log-probabilities
        prefixes = np.zeros((n, 1, 0), dtype=np.int32)               # (n, beams, level)
        for level in range(n_levels):
            b_now = scores.shape[1]
            flat = logits.reshape(n * b_now, -1)
            if constrained:
                size = self.level_sizes[level]
                # only this level's columns leave the device; the search runs on CPU
                lvl = flat[:, self.token_table[level, :size].to(dev)].float().cpu()  # (n*b, size)
                allowed = torch.zeros_like(lvl, dtype=torch.bool)
                offsets, codes = self.trie.allowed_next_batch(prefixes.reshape(n * b_now, level))
                rows = np.repeat(np.arange(n * b_now), np.diff(offsets))
                allowed[torch.from_numpy(rows), torch.from_numpy(codes.astype(np.int64))] = True
                lp = torch.log_softmax(lvl.masked_fill(~allowed, float("-inf")), dim=-1)
                # a dead beam (prefix with nothing below) has no allowed code: -inf, not NaN
                lp = torch.nan_to_num(lp, nan=float("-inf"))
                # the raw log-probability: the whole row's softmax (float32 logsumexp on the device)
                raw_lp = lvl.double() - torch.logsumexp(flat.float(), dim=-1).double().cpu()[:, None]
            else:
                lp = torch.log_softmax(flat.float().cpu(), dim=-1)
                raw_lp = lp.double()
            cand = (scores.view(-1, 1) + lp).view(n, -1)             # (n, b*width)
            width = lp.shape[1]
            top = torch.topk(cand, min(beam, cand.shape[1]), dim=1)
            parent = (top.indices // width).numpy()
            choice = (top.indices % width).numpy()
            if constrained:
                self._check_logits(level, flat, lvl, allowed, scores, top.values, parent)
            raws = (raws.view(-1, 1) + raw_lp).view(n, -1).gather(1, top.indices)
            scores = top.values
            prefixes = np.concatenate(
                [np.take_along_axis(prefixes, parent[:, :, None], axis=1), choice[:, :, None]],
                axis=2).astype(np.int32)
            if level + 1 == n_levels:
                break
            b_new = scores.shape[1]
            # one sequence per beam: pick the parents' caches, feed the chosen tokens
            if level == 0:  # every first-level beam descends from its prompt
                cache.batch_repeat_interleave(b_new)
                mask = mask.repeat_interleave(b_new, dim=0)
                next_pos = next_pos.repeat_interleave(b_new, dim=0)
            else:
                gather = (torch.arange(n)[:, None] * b_now + torch.from_numpy(parent)).reshape(-1).to(dev)
                cache.reorder_cache(gather)
                mask, next_pos = mask[gather], next_pos[gather]
            if constrained:
                tokens = self.token_table[level][torch.from_numpy(choice.reshape(-1).astype(np.int64))]
            else:
                tokens = torch.from_numpy(choice.reshape(-1).astype(np.int64))
            mask = torch.cat([mask, torch.ones(n * b_new, 1, dtype=mask.dtype, device=dev)], dim=1)
            res = model(input_ids=tokens[:, None].to(dev), attention_mask=mask, position_ids=next_pos,
                        cache=cache, use_cache=True, logits_to_keep=1)
            cache = res.cache
            next_pos = next_pos + 1
            logits = res.logits[:, -1, :]
        return [self._finish(prefixes[i], scores[i].numpy(), raws[i].numpy(), k, constrained)
                for i in range(n)]

    def _check_logits(self, level, flat, lvl, allowed, scores, new_scores, parent) -> None:
        """The C++ search's rule for broken logits (genrec/beam_search.h): raise ModelOutputError
        for the first NaN or +inf, by request, among the allowed logits of the live beams (rank,
        then code order), then in the whole rows of the beams that keep a continuation."""
        n, b_now = scores.shape
        inf = float("inf")
        live = torch.isfinite(scores.reshape(-1))
        bad_allowed = (~(lvl < inf) & allowed & live[:, None]).view(n, b_now, -1)
        bad_row = (~(flat < inf)).any(dim=-1).cpu().view(n, b_now)
        if not bad_allowed.any() and not bad_row.any():
            return
        kept = torch.isfinite(new_scores)                            # (n, beam)
        for r in range(n):
            hit = bad_allowed[r].nonzero()
            if len(hit):
                j, code = (int(x) for x in hit[0])
                raise ModelOutputError.at(r, level, int(self.token_table[level, code]), code,
                                          float(lvl[r * b_now + j, code]))
            for p in parent[r][kept[r].numpy()]:
                if bad_row[r, p]:
                    row = flat[r * b_now + int(p)]
                    t = int((~(row < inf)).nonzero()[0])
                    raise ModelOutputError.at(r, level, t, None, float(row[t]))

    def _finish(self, beams: np.ndarray, scores: np.ndarray, raws: np.ndarray, k: int,
                constrained: bool) -> Recommendation:
        items, item_scores, item_raws, sids, seen = [], [], [], [], set()
        valid_first = True
        for r, (row, sc, raw) in enumerate(zip(beams, scores, raws)):
            if not np.isfinite(sc):
                continue
            if constrained:
                codes = tuple(int(c) for c in row)
            else:
                decoded = [self._code_of.get(int(t)) for t in row]
                ok = all(d is not None and d[0] == lv for lv, d in enumerate(decoded))
                codes = tuple(d[1] for d in decoded) if ok else None
                members = self.sids.items_of(codes) if codes is not None else []
                if r == 0:
                    valid_first = bool(members)
                if not members:
                    continue
            sids.append(codes)
            for item in self.trie.items(np.asarray(codes, dtype=np.int32)).tolist():
                if item not in seen and len(items) < k:
                    seen.add(item)
                    items.append(int(item))
                    item_scores.append(float(sc))
                    item_raws.append(float(raw))
        return Recommendation(items, item_scores, item_raws, sids, valid_first)
