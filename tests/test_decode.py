"""The reference decoder: constrained beam search equals exhaustive scoring when the beam covers
every SID; free decoding reports invalid outputs."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the reference decoder needs torch ([train] extra)")

from genrec_lite.sid import SemanticIds  # noqa: E402
from genrec_lite.train.backbone import CompactConfig, compact_model  # noqa: E402
from genrec_lite.train.decode import ReferenceDecoder  # noqa: E402
from genrec_lite.train.tokenizer import train_bpe_tokenizer  # noqa: E402


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(0)
    n, levels, k = 40, 3, 4
    codes = rng.integers(k, size=(n, levels))
    codes[1] = codes[0]  # a collision: one SID, two items
    sids = SemanticIds(np.arange(100, 100 + n), codes, levels=levels, codebook_size=k)
    texts = ["the user clicked these items in order", "which item next", "drill bits and saws"] * 5
    tok = train_bpe_tokenizer(texts, sids.vocabulary(), vocab_size=300)
    torch.manual_seed(0)
    model = compact_model(CompactConfig(hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2,
                                        dropout=0.0), len(tok), eos_id=tok.eos_token_id,
                          pad_id=tok.pad_token_id).eval()
    return sids, tok, model


def exhaustive(model, tok, sids, prompt):
    """Each distinct SID's score: per-level log-softmax over the codes the trie allows."""
    trie = sids.trie()
    p_ids = tok(prompt)["input_ids"]
    scores = {}
    for row in np.unique(sids.codes, axis=0):
        sid_tok = tok.convert_tokens_to_ids([sids.token(lv, c) for lv, c in enumerate(row)])
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([p_ids + sid_tok])).logits[0]
        total = 0.0
        for lv in range(len(row)):
            allowed = trie.allowed_next(row[:lv])
            ids = tok.convert_tokens_to_ids([sids.token(lv, c) for c in allowed])
            lp = torch.log_softmax(logits[len(p_ids) - 1 + lv, ids], dim=-1)
            total += float(lp[list(allowed).index(row[lv])])
        scores[tuple(int(c) for c in row)] = total
    return scores


def test_beam_covering_all_sids_equals_exhaustive_ranking(setup):
    sids, tok, model = setup
    prompts = ["which item next <a_1><b_2><c_3>", "the user clicked", "drill <a_0><b_0><c_0> saws"]
    dec = ReferenceDecoder(model, tok, sids)
    n_sids = len(np.unique(sids.codes, axis=0))
    recs = dec.recommend(prompts, k=len(sids), beam=n_sids, batch_size=2)  # batching + padding too
    for prompt, rec in zip(prompts, recs):
        want = exhaustive(model, tok, sids, prompt)
        order = sorted(want, key=lambda s: -want[s])
        assert [tuple(s) for s in rec.sids] == order
        expected_items = [i for s in order for i in sids.items_of(s)]
        assert rec.items == expected_items
        got = {tuple(s): sc for s, sc in zip(rec.sids, [rec.scores[rec.items.index(sids.items_of(s)[0])]
                                                        for s in rec.sids])}
        for s in order:
            assert got[s] == pytest.approx(want[s], abs=1e-4)


def test_collided_items_come_together_and_k_is_respected(setup):
    sids, tok, model = setup
    rec = ReferenceDecoder(model, tok, sids).recommend(["which item next"], k=5, beam=8)[0]
    assert len(rec.items) == 5 and len(set(rec.items)) == 5
    if 100 in rec.items[:-1] or 101 in rec.items[:-1]:
        i = rec.items.index(100) if 100 in rec.items else rec.items.index(101)
        assert set(rec.items[i:i + 2]) == {100, 101}


def test_inactive_items_are_never_returned(setup):
    sids, tok, model = setup
    trie = sids.trie()
    dec = ReferenceDecoder(model, tok, sids, trie=trie)
    first = dec.recommend(["which item next"], k=10, beam=20)[0].items
    trie.set_active(first[:3], False)
    try:
        again = dec.recommend(["which item next"], k=10, beam=20)[0].items
        assert not set(first[:3]) & set(again) and len(again) == 10
    finally:
        trie.set_all_active(True)


def test_free_decoding_reports_validity(setup):
    sids, tok, model = setup
    recs = ReferenceDecoder(model, tok, sids).recommend(["which item next", "drill"], k=5, beam=5,
                                                        constrained=False)
    for r in recs:
        assert isinstance(r.valid, bool)
        for s, item in zip(r.sids, r.items):
            assert item in sids.items_of(s)


# --- raw log-probabilities and broken logits: the same rule as the C++ search ------------------
def raw_exhaustive(model, tok, sids, prompt):
    """Each distinct SID's raw log-probability: per level, log-softmax over the whole row."""
    p_ids = tok(prompt)["input_ids"]
    out = {}
    for row in np.unique(sids.codes, axis=0):
        sid_tok = tok.convert_tokens_to_ids([sids.token(lv, c) for lv, c in enumerate(row)])
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([p_ids + sid_tok])).logits[0].double()
        lp = torch.log_softmax(logits[len(p_ids) - 1:len(p_ids) - 1 + len(row)], dim=-1)
        out[tuple(int(c) for c in row)] = float(sum(lp[lv, t] for lv, t in enumerate(sid_tok)))
    return out


class Poisoned(torch.nn.Module):
    """The model, with poison(level, rows, ranks) applied to the logits of each decoder step
    (rows: (requests x beams, vocab) at the last position; ranks: (request, beam rank) per row)."""

    def __init__(self, model, n_requests, poison):
        super().__init__()
        self.model, self.n, self.poison, self.level = model, n_requests, poison, 0

    def forward(self, **kw):
        res = self.model(**kw)
        rows = res.logits[:, -1, :]
        b = rows.shape[0] // self.n
        self.poison(self.level, rows, [(i // b, i % b) for i in range(rows.shape[0])])
        self.level += 1
        return res


def cpp_search(model, tok, sids, prompts, k, beam, poison=lambda *a: None):
    """The C++ BeamSearch driven with this model's logits (one full forward per row)."""
    from genrec_lite._core import BeamSearch

    table = ReferenceDecoder(model, tok, sids).token_table.numpy().astype(np.int32)
    search = BeamSearch(sids.trie(), table, [{"k": k, "beam": beam}] * len(prompts))
    ids = [tok(p)["input_ids"] for p in prompts]
    fed = [[] for _ in prompts]
    level = 0
    while True:
        req = search.row_request.tolist()
        with torch.no_grad():
            rows = np.stack([model(input_ids=torch.tensor([ids[r] + f])).logits[0, -1].numpy()
                             for r, f in zip(req, fed)])
        ranks = [(r, req[:i].count(r)) for i, r in enumerate(req)]
        poison(level, rows, ranks)
        search.step(rows)
        if search.done:
            return search.results()
        fed = [fed[p] + [t] for p, t in zip(search.parents.tolist(), search.tokens.tolist())]
        level += 1


def test_raw_logprobs_equal_whole_row_softmax_and_the_cpp_search(setup):
    sids, tok, model = setup
    prompts = ["which item next <a_1><b_2><c_3>", "the user clicked"]
    recs = ReferenceDecoder(model, tok, sids).recommend(prompts, k=8, beam=6)
    cpp = cpp_search(model, tok, sids, prompts, k=8, beam=6)
    for prompt, rec, c in zip(prompts, recs, cpp):
        want = raw_exhaustive(model, tok, sids, prompt)
        of_item = {i: s for s in rec.sids for i in sids.items_of(s)}
        for item, lp, sc in zip(rec.items, rec.logprobs, rec.scores):
            assert lp == pytest.approx(want[of_item[item]], abs=1e-4)
            assert lp < sc  # the allowed codes carry only part of the probability
        assert rec.items == c["items"].tolist()
        np.testing.assert_allclose(rec.scores, c["scores"], atol=1e-4)
        np.testing.assert_allclose(rec.logprobs, c["logprobs"], atol=1e-4)


def _poison_at(level, request, rank, token, value):
    def poison(lv, rows, ranks):
        if lv == level:
            rows[ranks.index((request, rank)), token] = value
    return poison


@pytest.mark.parametrize("case", ["allowed_nan", "allowed_inf", "outside_nan", "masked"])
def test_broken_logits_raise_the_same_error_as_the_cpp_search(setup, case):
    from genrec_lite.errors import ModelOutputError

    sids, tok, model = setup
    prompts = ["the user clicked", "which item next"]
    ref = ReferenceDecoder(model, tok, sids).recommend(prompts, k=4, beam=4)[1]
    # request 1's best beam at level 1: one of its allowed codes, or a token that is no SID's
    level1 = ref.sids[0][0]
    code = sids.trie().allowed_next([level1])[0]
    sid_token = tok.convert_tokens_to_ids(sids.token(1, int(code)))
    word = tok.eos_token_id  # not a SID token
    token, value = {"allowed_nan": (sid_token, np.nan), "allowed_inf": (sid_token, np.inf),
                    "outside_nan": (word, np.nan), "masked": (sid_token, -np.inf)}[case]
    poison = _poison_at(1, 1, 0, token, value)

    def run_ref():
        dec = ReferenceDecoder(Poisoned(model, len(prompts), poison), tok, sids)
        return dec.recommend(prompts, k=4, beam=4)

    if case == "masked":  # -inf is a mask, not an error: both drop that code alike
        got, want = run_ref(), cpp_search(model, tok, sids, prompts, 4, 4, poison)
        for g, w in zip(got, want):
            assert g.items == w["items"].tolist()
            np.testing.assert_allclose(g.logprobs, w["logprobs"], atol=1e-4)
        assert all(s[:2] != (level1, int(code)) for s in got[1].sids)
        return
    with pytest.raises(ModelOutputError) as ref_err:
        run_ref()
    with pytest.raises(ModelOutputError) as cpp_err:
        cpp_search(model, tok, sids, prompts, 4, 4, poison)
    assert str(ref_err.value) == str(cpp_err.value)
    e = ref_err.value
    assert (e.request, e.level, e.token) == (1, 1, token)
    assert e.code == (None if case == "outside_nan" else int(code))
