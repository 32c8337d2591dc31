"""Multi-view SIDs: view tokens, the SidViews artefact, fusion of the views' answers, and a
2-view model trained, exported and served (the C++ runtime's fused answers equal the reference
decoder's; cold start and pausing act in every view)."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from genrec_lite.errors import ArtifactError, InvalidArgumentError
from genrec_lite.sid import SemanticIds, SidViews, fuse


def _table(seed=0, n=6, view=0):
    rng = np.random.default_rng(seed)
    return SemanticIds(np.arange(100, 100 + n), rng.integers(0, 4, size=(n, 2)), levels=2,
                       codebook_size=4, view=view)


def test_view_tokens_are_their_own():
    base = _table()
    v1 = base.as_view(1)
    assert base.token(0, 3) == "<a_3>" and v1.token(1, 2) == "<b1_2>"
    assert v1.sid(100) == base.sid(100).replace("<a_", "<a1_").replace("<b_", "<b1_")
    assert v1.parse(v1.sid(101)) == base.codes_of(101)
    with pytest.raises(InvalidArgumentError, match="<a1_k>"):
        v1.parse(base.sid(101))          # view 0's tokens are not view 1's
    with pytest.raises(InvalidArgumentError, match="<a_k>"):
        base.parse(v1.sid(101))
    assert set(base.vocabulary()).isdisjoint(v1.vocabulary())
    assert v1.with_rows(v1.item_ids[:3], v1.codes[:3]).view == 1
    with pytest.raises(InvalidArgumentError, match="view=-1"):
        base.as_view(-1)


def test_sid_views_save_and_load(tmp_path):
    one = SidViews(_table())
    one.save(tmp_path / "one")
    assert SemanticIds.load(tmp_path / "one").sid(100) == one.primary.sid(100)  # plain layout
    assert len(SidViews.load(tmp_path / "one")) == 1

    two = SidViews([_table(0), _table(1)])  # views are renumbered in order
    assert [v.view for v in two] == [0, 1] and two.vocabulary()[-1] == "<b1_3>"
    two.save(tmp_path / "two")
    back = SidViews.load(tmp_path / "two")
    assert [v.view for v in back] == [0, 1]
    assert all(np.array_equal(a.codes, b.codes) for a, b in zip(two, back))
    with pytest.raises(ArtifactError, match="SidViews.load"):
        SemanticIds.load(tmp_path / "two")
    meta = json.loads((tmp_path / "two" / "views.json").read_text())
    (tmp_path / "two" / "views.json").write_text(json.dumps(dict(meta, n_views=3)))
    with pytest.raises(ArtifactError, match="damaged"):
        SidViews.load(tmp_path / "two")
    with pytest.raises(InvalidArgumentError, match="same items"):
        SidViews([_table(0), _table(1, n=5)])


@pytest.mark.parametrize("name", ["../outside", "/abs/view1", "sub/view1", "..", ".", "", 1,
                                  "sub\\view1"])
def test_sid_views_refuse_view_names_outside_the_folder(tmp_path, name):
    # a bundle's checksums cover its own files; a view name must not reach past them
    outside = tmp_path / "outside"
    SidViews([_table(0), _table(1)]).save(tmp_path / "two")
    _table(1, view=1).save(outside)  # a valid table the escape would read
    meta = json.loads((tmp_path / "two" / "views.json").read_text())
    if name == "/abs/view1":
        name = str(outside)
    meta["views"][1] = name
    (tmp_path / "two" / "views.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match=re.escape(f"lists the view {name!r}")):
        SidViews.load(tmp_path / "two")


def test_fuse_is_a_mixture_of_the_views():
    a = ([1, 2, 3], [math.log(0.4), math.log(0.3), math.log(0.1)])
    assert fuse([a], 2) == ([1, 2], a[1][:2])  # one view: its answer, cut to k
    b = ([2, 4], [math.log(0.5), math.log(0.2)])
    items, scores = fuse([a, b], 10)
    # mean probability over the views, 0 where a view's beam did not reach the item
    want = {1: 0.2, 2: 0.4, 3: 0.05, 4: 0.1}
    assert items == [2, 1, 4, 3]
    np.testing.assert_allclose(scores, [math.log(want[i]) for i in items])
    # ties keep the order of first appearance; unreachable (-inf) items are dropped
    items, _ = fuse([([7, 8], [-1.0, -math.inf]), ([9], [-1.0])], 5)
    assert items == [7, 9]
    with pytest.raises(InvalidArgumentError, match="k=0"):
        fuse([a], 0)


def test_fuse_combines_raw_logprobs_by_the_same_rule():
    a = ([1, 2, 3], [math.log(0.4), math.log(0.3), math.log(0.1)], [math.log(0.04), math.log(0.03), math.log(0.01)])
    b = ([2, 4], [math.log(0.5), math.log(0.2)], [math.log(0.1), math.log(0.02)])
    items, scores, logprobs = fuse([a, b], 10)
    assert (items, scores) == fuse([a[:2], b[:2]], 10)  # the ranking is the scores' alone
    want = {1: 0.02, 2: 0.065, 3: 0.005, 4: 0.01}  # mean over views, 0 where a view lacks it
    np.testing.assert_allclose(logprobs, [math.log(want[i]) for i in items])
    assert fuse([a], 2) == ([1, 2], a[1][:2], a[2][:2])  # one view: cut to k
    with pytest.raises(InvalidArgumentError, match="all \\(items, scores\\)"):
        fuse([a, b[:2]], 3)


# --- a 2-view model on the synthetic data ------------------------------------------------------
pytest.importorskip("torch", reason="training needs the [train] extra (torch)")
TINY = ["--hidden", "48", "--layers", "2", "--heads", "4", "--prompts", "en-seq"]


def refused_at_load(bundle, match: str, **fields) -> None:
    """The bundle with `fields` written into its manifest is refused at load, by name (an
    ArtifactError matching `match`); the manifest is put back."""
    from genrec_lite.runtime import Recommender

    path = bundle / "manifest.json"
    text = path.read_text()
    path.write_text(json.dumps(dict(json.loads(text), **fields)))
    try:
        with pytest.raises(ArtifactError, match=match):
            Recommender.load(bundle, n_threads=1)
    finally:
        path.write_text(text)


@pytest.fixture(scope="module")
def two_views(tmp_path_factory):
    from conftest import train_tiny

    root = tmp_path_factory.mktemp("views")
    train_tiny(root, ["--codebook-size", "32", "--epochs", "100", "--views", "2"],
               ["--max-steps", "150", "--tasks", "next_item=1,title_to_sid=0.1", *TINY])
    return root


def test_sid_build_views(two_views):
    views = SidViews.load(two_views / "sids")
    assert len(views) == 2
    a, b = views
    assert a.config["seed"] == 0 and b.config["seed"] == 1
    assert (a.codes != b.codes).any(axis=1).mean() > 0.5  # independent builds: other codes


def test_training_writes_every_example_in_every_view(two_views, tmp_path):
    from genrec_lite.data import make_synthetic
    from genrec_lite.train.trainer import TrainConfig, Trainer

    views = SidViews.load(two_views / "sids")
    cfg = TrainConfig(prompts="en-seq", task_weights={"next_item": 1.0, "title_to_sid": 0.1},
                      eval_cases=0, compact={"hidden_size": 16, "num_layers": 1, "num_heads": 2,
                                             "num_kv_heads": 2})
    tr = Trainer(make_synthetic(), views, tmp_path / "c", cfg, progress=False)
    assert len(tr.pools["title_to_sid"]) == 2 * len(views.primary)
    n_targets = sum(len(s) - 1 for s in tr.split.train.values() if len(s) > 1)
    token_view = {tr.tok.convert_tokens_to_ids(t): v for v, view in enumerate(views)
                  for t in view.vocabulary()}
    per_view = [0, 0]
    for ids, labels in tr._sequence_pool(np.random.default_rng(0)):
        seen = {token_view[t] for t in ids if t in token_view}
        assert len(seen) == 1  # one example, one view
        per_view[seen.pop()] += sum(t != -100 for t in labels) // views.primary.n_levels
    assert per_view == [n_targets, n_targets]


def test_all_views_in_one_search_answer_as_one_search_per_view(two_views, tmp_path):
    """The runtime decodes every view of a batch in one C++ search (LlamaContext.search_spaces):
    each request's answer in each view is that of a search of its view alone (up to llama.cpp's
    rounding by batch shape), filters and beam widths included, and a bad space index is refused by name."""
    pytest.importorskip("llama_cpp")
    from genrec_lite.cli import main
    from genrec_lite.data import leave_one_out, make_synthetic
    from genrec_lite.errors import InvalidArgumentError
    from genrec_lite.runtime import Recommender

    bundle = tmp_path / "bundle"
    assert main(["export", "--model", str(two_views / "ckpt"), "--out", str(bundle), "--quant",
                 "f32", "--quiet"]) == 0
    cases = leave_one_out(make_synthetic().interactions, max_len=10).test[:12]
    rec = Recommender.load(bundle, n_threads=1)
    try:
        state, model = rec.catalog.state, rec.backend.model
        tok = rec.backend.tokenize
        reqs = [{"k": 5, "beam": 4 + 3 * (n % 3)} for n in range(len(cases))]
        reqs[1]["deny"] = [int(state.views[0].item_ids[0])]
        prompts = [[tok(rec._prompt(state, list(c.history), None, v)) for c in cases]
                   for v in range(2)]
        alone = [model.search(state.tries[v][0], rec.token_tables[v], prompts[v], reqs,
                              delta=state.tries[v][1])[0] for v in range(2)]
        spaces = [(state.tries[v][0], rec.token_tables[v], state.tries[v][1]) for v in range(2)]
        order = [(n, v) for n in range(len(cases)) for v in (1, 0)]  # views interleaved
        got, _, _ = model.search_spaces(spaces, [v for _, v in order],
                                            [prompts[v][n] for n, v in order],
                                            [reqs[n] for n, _ in order])
        assert len(got) == len(order)
        for (n, v), g in zip(order, got):
            assert g["items"].tolist() == alone[v][n]["items"].tolist()
            # llama.cpp rounds by batch shape: the same beams, scores within float noise
            np.testing.assert_allclose(g["scores"], alone[v][n]["scores"], atol=5e-4)
        # a request's views fit one group of the context: one pass over the levels for both
        _, stats, _ = model.search_spaces(spaces, [0, 1], [prompts[0][0], prompts[1][0]], reqs[:1] * 2)
        assert stats["groups"] == 1
        for bad in ([0, 2], [0, -1]):
            with pytest.raises(InvalidArgumentError, match=f"search space {bad[1]}"):
                model.search_spaces(spaces, bad, prompts[0][:2], reqs[:2])
        with pytest.raises(InvalidArgumentError, match="one each"):
            model.search_spaces(spaces, [0], prompts[0][:2], reqs[:2])
        with pytest.raises(InvalidArgumentError, match="expected a"):
            model.search_spaces([(state.tries[0][0], rec.token_tables[0])], [0], prompts[0][:1],
                                reqs[:1])
    finally:
        rec.close()


def test_bundle_fuses_views_like_the_reference(two_views):
    pytest.importorskip("llama_cpp")
    from genrec_lite.cli import main
    from genrec_lite.data import leave_one_out, make_synthetic
    from genrec_lite.prompts import PromptSet, profile_text
    from genrec_lite.runtime import Recommender
    from genrec_lite.train.checkpoint import load_model
    from genrec_lite.train.evaluate import recommend_cases

    bundle = two_views / "bundle"
    assert main(["export", "--model", str(two_views / "ckpt"), "--out", str(bundle), "--quant",
                 "f32", "--quiet"]) == 0
    m = json.loads((bundle / "manifest.json").read_text())
    assert m["sid"]["views"] == 2
    # each view's quantiser (what add_items runs) is in its SID table, with no ONNX copy beside
    assert {"sids/views.json", "sids/view0/arrays.npz", "sids/view1/arrays.npz"} <= set(m["files"])
    assert not [n for n in m["files"] if n.startswith("sid_encoder")]
    ds = make_synthetic()
    cases = leave_one_out(ds.interactions, max_len=10).test[:40]
    model, tok, views, meta = load_model(two_views / "ckpt")
    ref, _ = recommend_cases(model, tok, views, cases, PromptSet.load(meta["prompts"]),
                             profiles=ds.profiles, k=10, beam=20)
    rec = Recommender.load(bundle, n_threads=1)
    try:
        got = rec.recommend_batch([{"history": list(c.history),
                                    "profile": profile_text(ds.profiles.get(c.user_id))}
                                   for c in cases])
        same = [items == [x.item_id for x in g] for (items, _), g in zip(ref, got)]
        assert np.mean(same) >= 0.95, np.mean(same)
        for (items, scores), g in zip(ref, got):
            if items == [x.item_id for x in g]:
                np.testing.assert_allclose(scores, [x.score for x in g], atol=2e-3)
        # each view alone is a different ranking: the fusion is not one view's answer
        single = [rec.backend.search(*rec.catalog.state.tries[v], rec.token_tables[v],
                                     [rec._prompt(rec.catalog.state, list(c.history),
                                                  profile_text(ds.profiles.get(c.user_id)), v)
                                      for c in cases], [{"k": 10, "beam": 20}] * len(cases))
                  for v in range(2)]
        for v in range(2):
            assert np.mean([list(s["items"]) == [x.item_id for x in g]
                            for s, g in zip(single[v], got)]) < 0.9
        # search_views=1 decodes the primary view alone: its own answers, values unchanged
        assert rec.search_views == 2
        rec.set_search_views(1)
        first = rec.recommend_batch([{"history": list(c.history),
                                      "profile": profile_text(ds.profiles.get(c.user_id))}
                                     for c in cases])
        for s, g in zip(single[0], first):
            assert list(s["items"]) == [x.item_id for x in g]
            np.testing.assert_allclose(s["scores"], [x.score for x in g], rtol=1e-6)
        for bad in (0, 3, 1.5, True):
            with pytest.raises(InvalidArgumentError, match="search views"):
                rec.set_search_views(bad)
        rec.set_search_views(None)
        assert rec.search_views == 2

        # cold start and pausing act in every view
        h = list(cases[0].history)
        top = rec.recommend(h, k=1)[0]
        new_id = 10_000_000
        sid = rec.add_items([{**rec.catalog.state.records[top.item_id], "item_id": new_id}])[0]
        state = rec.catalog.state
        assert sid == state.views[0].sid(new_id) and state.views[1].sid(new_id).startswith("<a1_")
        assert [x.item_id for x in rec.recommend(h, k=1, allow=[new_id])] == [new_id]
        rec.set_active([new_id], False)
        for v in range(2):
            assert not state.views[v].is_active(new_id)
        assert rec.recommend(h, k=1, allow=[new_id, top.item_id])[0].item_id == top.item_id
        saved = rec.save_catalog(two_views / "catalog")
    finally:
        rec.close()
    again = Recommender.load(bundle, n_threads=1, catalog=saved)
    try:
        assert again.catalog.state.views[1].sid(new_id) == state.views[1].sid(new_id)
        assert not again.catalog.state.views[1].is_active(new_id)
    finally:
        again.close()
    # the setting travels in the manifest; a value beyond the views is refused there and here
    from genrec_lite.export.bundle import set_search_views

    assert set_search_views(bundle, 1).search_views == 1
    with Recommender.load(bundle, n_threads=1) as one:
        assert one.search_views == 1
    with pytest.raises(InvalidArgumentError, match="1..2"):
        set_search_views(bundle, 3)
    refused_at_load(bundle, "search_views is 3", search_views=3)


def test_bundle_search_beam_is_the_default_beam(two_views):
    """The bundle's search_beam (fit's serving point) is the beam of a request that names none,
    raised to its k; an explicit beam still wins. Bad values are refused by name, in the
    manifest and at the Recommender."""
    pytest.importorskip("llama_cpp")
    from genrec_lite.cli import main
    from genrec_lite.export.bundle import set_search_beam
    from genrec_lite.runtime import Recommender

    bundle = two_views / "beam-bundle"
    assert main(["export", "--model", str(two_views / "ckpt"), "--out", str(bundle), "--quiet"]) == 0
    assert set_search_beam(bundle, 10).search_beam == 10
    with Recommender.load(bundle, n_threads=1) as rec:
        ids = rec.catalog.state.views[0].item_ids.tolist()
        hists = [ids[i:i + 4] for i in range(0, 24, 4)]
        assert rec.search_beam == 10

        def items(**kw):
            return [[r.item_id for r in recs]
                    for recs in rec.recommend_batch([{"history": h, **kw} for h in hists])]

        assert items(k=5) == items(k=5, beam=10) != items(k=5, beam=20)
        assert items(k=12) == items(k=12, beam=12)  # raised to k
        rec.set_search_beam(None)
        assert rec.search_beam == 20 and items(k=5) == items(k=5, beam=20)
        for bad in (0, 1.5, True, "10"):
            with pytest.raises(InvalidArgumentError, match="search beam"):
                rec.set_search_beam(bad)
    with pytest.raises(InvalidArgumentError, match="search beam"):
        set_search_beam(bundle, 0)
    refused_at_load(bundle, "search_beam", search_beam=0)


def test_side_beam_searches_the_other_views_narrower(two_views):
    """With a side beam, the first view keeps the request's beam (its k items are all there)
    and the other views search at most the side beam: the runtime's answers are the reference
    decoder's with the same widths, they differ from the full-width fusion, and the setting
    travels in the manifest and is refused by name when bad."""
    pytest.importorskip("llama_cpp")
    from genrec_lite.cli import main
    from genrec_lite.data import leave_one_out, make_synthetic
    from genrec_lite.export.bundle import set_search_side_beam
    from genrec_lite.prompts import PromptSet, profile_text
    from genrec_lite.runtime import Recommender
    from genrec_lite.train.checkpoint import load_model
    from genrec_lite.train.evaluate import recommend_cases

    bundle = two_views / "side-bundle"
    assert main(["export", "--model", str(two_views / "ckpt"), "--out", str(bundle), "--quant",
                 "f32", "--quiet"]) == 0
    ds = make_synthetic()
    cases = leave_one_out(ds.interactions, max_len=10).test[:40]
    model, tok, views, meta = load_model(two_views / "ckpt")
    prompts = PromptSet.load(meta["prompts"])
    ref = {side: recommend_cases(model, tok, views, cases, prompts, profiles=ds.profiles, k=10,
                                 beam=10, side_beam=side)[0] for side in (None, 3)}
    reqs = [{"history": list(c.history), "profile": profile_text(ds.profiles.get(c.user_id)),
             "beam": 10} for c in cases]
    assert set_search_side_beam(bundle, 3).search_side_beam == 3
    with Recommender.load(bundle, n_threads=1) as rec:
        assert rec.search_side_beam == 3
        got = {3: rec.recommend_batch(reqs)}
        rec.set_search_side_beam(None)
        got[None] = rec.recommend_batch(reqs)
        for bad in (0, 1.5, True):
            with pytest.raises(InvalidArgumentError, match="search beam"):
                rec.set_search_side_beam(bad)
    for side in (None, 3):
        items = [[x.item_id for x in g] for g in got[side]]
        assert all(len(i) == 10 for i in items)  # the first view's beam holds k
        same = [r == i for (r, _), i in zip(ref[side], items)]
        assert np.mean(same) >= 0.95, (side, np.mean(same))
    assert [[x.item_id for x in g] for g in got[3]] != [[x.item_id for x in g] for g in got[None]]
    with pytest.raises(InvalidArgumentError, match="search beam"):
        set_search_side_beam(bundle, 0)
    refused_at_load(bundle, "search_side_beam", search_side_beam=0)
