"""Export -> bundle -> C++ runtime over llama.cpp: parity with the PyTorch reference decoder, live
catalog changes, filters, concurrency, and the errors a server can run into."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("llama_cpp")

from genrec_lite.cli import main  # noqa: E402
from genrec_lite.errors import (ArtifactError, FormatVersionError, InvalidArgumentError,  # noqa: E402
                                UnknownItemError)

@pytest.fixture(scope="module")
def trained(runtime_checkpoint):
    return runtime_checkpoint


@pytest.fixture(scope="module")
def bundle(runtime_bundle):
    return runtime_bundle


@pytest.fixture(scope="module")
def cases():
    from genrec_lite.data import leave_one_out, make_synthetic

    ds = make_synthetic()
    return leave_one_out(ds.interactions, max_len=10).test[:64], ds


def _reference(ckpt, cases, ds):
    from genrec_lite.prompts import PromptSet
    from genrec_lite.train.checkpoint import load_model
    from genrec_lite.train.decode import ReferenceDecoder
    from genrec_lite.train.evaluate import case_prompts

    model, tok, views, meta = load_model(ckpt)
    texts = case_prompts(cases, views.primary, PromptSet.load(meta["prompts"]), profiles=ds.profiles)
    return ReferenceDecoder(model, tok, views.primary).recommend(texts, k=10, beam=20)


def _requests(cases, ds, rec):
    from genrec_lite.prompts import profile_text

    return [{"history": list(c.history), "profile": profile_text(ds.profiles.get(c.user_id))}
            for c in cases]


def test_bundle_layout(bundle):
    m = json.loads((bundle / "manifest.json").read_text())
    assert m["format"] == "genrec-lite.bundle" and m["format_version"] == 1
    for name in ("model.gguf", "sids/arrays.npz", "text_encoder/model.onnx", "items.jsonl"):
        assert name in m["files"], name
        assert (bundle / name).stat().st_size == m["files"][name]["bytes"]
    # one SID encoder: the quantiser in sids/arrays.npz, no ONNX copy of it beside
    assert not [n for n in m["files"] if n.startswith("sid_encoder")]
    assert not [p for p in bundle.parent.iterdir() if p.name.startswith(".b32")]  # no temp left


def test_parity_with_reference_decoder(trained, rec, cases):
    cs, ds = cases
    ref = _reference(trained, cs, ds)
    got = rec.recommend_batch(_requests(cs, ds, rec))
    same = [r.items == [x.item_id for x in g] for r, g in zip(ref, got)]
    assert np.mean(same) >= 0.95, np.mean(same)
    for r, g in zip(ref, got):  # F32 weights: the scores and raw log-probabilities agree closely too
        if r.items == [x.item_id for x in g]:
            np.testing.assert_allclose(r.scores, [x.score for x in g], atol=2e-3)
            np.testing.assert_allclose(r.logprobs, [x.logprob for x in g], atol=2e-3)


def test_onnx_backend_equals_llama_backend(bundle, rec, cases):
    """The same C++ search core over onnxruntime logits (Python loops over SID levels only)."""
    from genrec_lite.runtime import Recommender

    cs, ds = cases
    onnx = Recommender.load(bundle, backend="onnx", n_threads=1)
    reqs = _requests(cs[:32], ds, rec)
    a = [[x.item_id for x in r] for r in onnx.recommend_batch(reqs)]
    b = [[x.item_id for x in r] for r in rec.recommend_batch(reqs)]
    assert np.mean([x == y for x, y in zip(a, b)]) >= 0.95
    h = list(cs[0].history)
    got = [x.item_id for x in onnx.recommend(h, k=5, deny=b[0][:2])]
    assert len(got) == 5 and not set(b[0][:2]) & set(got)


def test_batch_equals_single_requests(rec, cases):
    cs, ds = cases
    reqs = _requests(cs[:12], ds, rec)
    batch = rec.recommend_batch(reqs)
    for r, b in zip(reqs, batch):
        single = rec.recommend(r["history"], r["profile"])
        assert [x.item_id for x in single] == [x.item_id for x in b]


def test_prefix_cache_changes_no_result(bundle, rec, cases):
    """Reusing the shared prompt prefix across calls gives the results of decoding every prompt
    whole: a stream of single requests (with and without profiles: different prefixes), batches
    that span several groups, and the replay of a recorded schedule."""
    from genrec_lite.runtime import Recommender
    from genrec_lite.runtime.llama_backend import LlamaBackend, LlamaModel

    cs, ds = cases
    reqs = _requests(cs[:24], ds, rec)
    reqs[3]["profile"] = reqs[5]["profile"] = None
    reqs.append({"history": [], "profile": None})
    plain = Recommender.load(bundle, n_threads=1)
    try:
        plain.backend.close()
        plain._loaded.backend = LlamaBackend(LlamaModel(bundle / "model.gguf", n_threads=1,
                                                        prefix_cache=False))
        cached = Recommender.load(bundle, n_threads=1)
        model = cached.backend.model
        # n_seq_max 60: groups of 2 requests, so one call holds several groups
        small = Recommender.load(bundle, n_threads=1)
        small.backend.close()
        small._loaded.backend = LlamaBackend(LlamaModel(bundle / "model.gguf", n_threads=1, n_seq_max=60))
        want = [[x.item_id for x in plain.recommend(q["history"], q["profile"])] for q in reqs]
        got = [[x.item_id for x in cached.recommend(q["history"], q["profile"])] for q in reqs]
        assert got == want
        # (batches are compared with a batch: a batch's matrix shapes may flip near-ties)
        plain_batch = [[x.item_id for x in b] for b in plain.recommend_batch(reqs)]
        for r in (cached, small):
            assert [[x.item_id for x in b] for b in r.recommend_batch(reqs)] == plain_batch
        # the answer to a request does not depend on what the context ran before: the same bits
        # after a request of another kind of prompt, of the same kind, or none (a fresh context)
        probe = reqs[0]
        scores = []
        for before in (reqs[3], reqs[1], reqs[-1], reqs[5], reqs[2]):
            cached.recommend(before["history"], before["profile"])
            scores.append([(x.item_id, x.score, x.logprob)
                           for x in cached.recommend(probe["history"], probe["profile"])])
        fresh = Recommender.load(bundle, n_threads=1)
        try:
            scores.append([(x.item_id, x.score, x.logprob)
                           for x in fresh.recommend(probe["history"], probe["profile"])])
        finally:
            fresh.close()
        assert all(s == scores[0] for s in scores)
        state = cached.catalog.state
        same_kind = [q for q in reqs[:8] if q["profile"]][:6]  # prompts that share one stem
        prompts = [cached.backend.tokenize(cached._prompt(state, q["history"], q["profile"]))
                   for q in same_kind]
        res, stats, schedule = model.search(state.trie, cached.token_table, prompts,
                                            [{"k": 10, "beam": 20}] * 6, record=True)
        assert [r["items"].tolist() for r in res] == [want[reqs.index(q)] for q in same_kind]
        replay = model.replay(schedule)
        assert replay["decoded_tokens"] == stats["decoded_tokens"]
        # the shared stem was not decoded again: the same tokens less the stem's per request
        _, plain_stats, _ = plain.backend.model.search(state.trie, cached.token_table, prompts,
                                                       [{"k": 10, "beam": 20}] * 6)
        with model.context() as ctx:
            stem = len(ctx.prefix_tokens)
        assert stem > 0 and plain_stats["decoded_tokens"] - stats["decoded_tokens"] == 6 * stem
        assert [x.item_id for x in cached.recommend(reqs[0]["history"], reqs[0]["profile"])] == want[0]
        with pytest.raises(InvalidArgumentError, match="prefix cache"):
            LlamaModel(bundle / "model.gguf", n_threads=1, n_seq_max=1)
    finally:
        plain.close()
        cached.close()
        small.close()


def test_filters_and_active_mask(rec, cases):
    cs, ds = cases
    h = list(cs[0].history)
    base = [x.item_id for x in rec.recommend(h, k=10)]
    denied = base[:3]
    got = [x.item_id for x in rec.recommend(h, k=10, deny=denied)]
    assert len(got) == 10 and not set(denied) & set(got)
    allow = base[5:7] + [int(i) for i in rec.catalog.state.sids.item_ids[:5]]
    got = [x.item_id for x in rec.recommend(h, k=5, allow=allow)]
    assert set(got) <= set(allow) and len(got) == 5
    try:
        assert rec.set_active([base[0]], False) == 1
        got = [x.item_id for x in rec.recommend(h, k=10)]
        assert base[0] not in got and len(got) == 10
    finally:
        rec.set_active([base[0]], True)
    assert [x.item_id for x in rec.recommend(h, k=10)] == base


def test_exclude_history_denies_each_request_its_own_history(rec, bundle, cases, tmp_path):
    import shutil

    from genrec_lite.errors import InvalidArgumentError
    from genrec_lite.export.bundle import set_exclude_history
    from genrec_lite.runtime import Recommender
    from genrec_lite.runtime.manifest import Manifest

    cs, ds = cases
    reqs = [{"history": list(c.history), "k": 10} for c in cs[:16]]
    plain = [[x.item_id for x in r] for r in rec.recommend_batch(reqs)]
    # the same lists as denying each history by hand, and merged with a request's own deny
    by_hand = [[x.item_id for x in r] for r in rec.recommend_batch(
        [dict(q, deny=q["history"]) for q in reqs])]
    assert rec.exclude_history is False
    try:
        rec.set_exclude_history(True)
        got = [[x.item_id for x in r] for r in rec.recommend_batch(reqs)]
        assert got == by_hand
        assert all(len(g) == 10 and not set(g) & set(q["history"]) for g, q in zip(got, reqs))
        extra = plain[0][:2]
        got = [x.item_id for x in rec.recommend(reqs[0]["history"], k=10, deny=extra)]
        assert not set(got) & (set(extra) | set(reqs[0]["history"]))
        with pytest.raises(InvalidArgumentError, match="exclude_history 1"):
            rec.set_exclude_history(1)
    finally:
        rec.set_exclude_history(False)
    assert [[x.item_id for x in r] for r in rec.recommend_batch(reqs)] == plain
    # the setting travels in the manifest, and a loaded bundle serves it
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    assert set_exclude_history(copy, True).exclude_history is True
    assert Manifest.load(copy).to_dict()["exclude_history"] is True
    with Recommender.load(copy, n_threads=1) as r2:
        assert r2.exclude_history is True
        assert [[x.item_id for x in r] for r in r2.recommend_batch(reqs)] == by_hand
    assert "exclude_history" not in set_exclude_history(copy, False).to_dict()
    with pytest.raises(InvalidArgumentError, match="exclude_history 'yes'"):
        set_exclude_history(copy, "yes")


def test_pausing_a_sibling_moves_score_not_logprob(rec, cases):
    """score is renormalised over the codes a request can reach, so pausing the ads next to an
    item in the trie raises its score; logprob is the model's own probability and stays."""
    cs, ds = cases
    h = list(cs[0].history)
    base = rec.recommend(h, k=10)
    assert all(x.logprob < x.score <= 0 for x in base)
    assert {"score", "logprob"} <= set(base[0].to_dict())
    state = rec.catalog.state
    codes = {i: tuple(state.sids.codes_of(i)) for i in state.sids.item_ids.tolist()}
    top = codes[base[0].item_id]
    # the listed item nearest to the top one in the trie; pause its whole branch below the split
    other = max(base[1:], key=lambda x: sum(1 for _ in itertools.takewhile(
        lambda ab: ab[0] == ab[1], zip(top, codes[x.item_id]))))
    split = next(d for d, (a, b) in enumerate(zip(top, codes[other.item_id])) if a != b)
    branch = [i for i, c in codes.items() if c[:split + 1] == codes[other.item_id][:split + 1]]
    try:
        rec.set_active(branch, False)
        after = {x.item_id: x for x in rec.recommend(h, k=10)}
    finally:
        rec.set_active(branch, True)
    moved = after[base[0].item_id]
    assert moved.score > base[0].score + 1e-3
    assert moved.logprob == pytest.approx(base[0].logprob, abs=1e-4)


@pytest.mark.parametrize("fault", ["nan", "decode_fails"])
def test_a_poisoned_search_leaves_the_context_reusable(bundle, cases, fault):
    """llama_decode wrapped to write NaN into its logits (or to fail) at the second SID level:
    the request fails with a GenrecError (ModelOutputError for NaN: never an empty answer), and
    the next request on the same context, prefix cache included, gets the normal answer."""
    import ctypes

    import llama_cpp

    from genrec_lite.errors import GenrecError, ModelOutputError
    from genrec_lite.runtime import Recommender

    cs, ds = cases
    h = list(cs[0].history)
    r = Recommender.load(bundle, n_threads=1, n_contexts=1)
    try:
        model = r.backend.model
        want = [(x.item_id, x.score) for x in r.recommend(h)]
        calls, armed = [0], [True]
        word = r.backend.tokenize("the")[-1]  # a token no SID uses

        @ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, llama_cpp.llama_batch)
        def decode(ctx, batch):
            rc = llama_cpp.llama_decode(ctx, batch)
            calls[0] += 1
            if armed[0] and calls[0] == 3:  # prompts, level 1, then level 2's rows
                if fault == "decode_fails":
                    return 1
                out = llama_cpp.llama_get_logits(ctx)
                for row in range(sum(batch.logits[i] != 0 for i in range(batch.n_tokens))):
                    out[row * model.n_vocab + word] = float("nan")
            return rc

        real = model.api
        model.api = (ctypes.cast(decode, ctypes.c_void_p).value, *real.addresses[1:])
        err = ModelOutputError if fault == "nan" else GenrecError
        with pytest.raises(err, match="request 0, SID level 2" if fault == "nan" else "llama_decode"):
            r.recommend(h)
        armed[0] = False
        assert [(x.item_id, x.score) for x in r.recommend(h)] == want  # an empty cache, as at first
        again = r.recommend(h)  # from the refilled prefix cache: the same list, scores to rounding
        assert [x.item_id for x in again] == [i for i, _ in want]
        np.testing.assert_allclose([x.score for x in again], [s for _, s in want], atol=1e-4)
        model.api = real
    finally:
        r.close()


def test_add_items_makes_a_new_item_recommendable(bundle, cases):
    from genrec_lite.runtime import Recommender

    cs, ds = cases
    r = Recommender.load(bundle, n_threads=1)
    try:
        h = list(cs[1].history)
        top = r.recommend(h, k=1)[0]
        twin = dict(r.catalog.state.records[top.item_id])
        new_id = 10_000_000
        sid = r.add_items([{**twin, "item_id": new_id}])[0]
        assert sid.startswith(top.sid.rsplit("<", 1)[0])  # same text -> same base codes
        got = r.recommend(h, k=1, allow=[new_id])
        assert [x.item_id for x in got] == [new_id] and np.isfinite(got[0].score)
        with pytest.raises(InvalidArgumentError, match=str(new_id)):
            r.add_items([{**twin, "item_id": new_id}])
        with pytest.raises(InvalidArgumentError, match="NaN"):
            r.add_items([{"item_id": new_id + 1}], vectors=np.full((1, 384), np.nan))
        with pytest.raises(InvalidArgumentError, match="shape"):
            r.add_items([{"item_id": new_id + 1}], vectors=np.zeros((1, 7)))
        assert r.remove_items([new_id]) == 1
        with pytest.raises(UnknownItemError):
            r.set_active([new_id], True)
    finally:
        r.close()


def test_concurrent_requests_equal_serial(rec, cases):
    cs, ds = cases
    reqs = _requests(cs[:16], ds, rec)
    serial = [[x.item_id for x in rec.recommend(q["history"], q["profile"])] for q in reqs]
    out: dict = {}
    errors = []

    def worker(t):
        try:
            for n, q in enumerate(reqs):
                if n % 4 == t:
                    out[n] = [x.item_id for x in rec.recommend(q["history"], q["profile"])]
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert [out[n] for n in range(len(reqs))] == serial


def test_bad_requests(rec, cases):
    cs, ds = cases
    h = list(cs[0].history)
    with pytest.raises(InvalidArgumentError, match="beam=5 < k=10"):
        rec.recommend(h, k=10, beam=5)
    with pytest.raises(InvalidArgumentError, match=f"1 <= k <= {rec.max_beam}"):
        rec.recommend(h, k=100_000, beam=100_000)
    assert rec.max_beam == 255  # llama.cpp's 256 sequences, one kept for the prefix cache
    with pytest.raises(InvalidArgumentError, match=f"beam <= {rec.max_beam}"):
        rec.recommend(h, k=5, beam=rec.max_beam + 1)
    ids = [int(i) for i in rec.catalog.state.sids.item_ids]
    rec.set_active(ids[5:], False)
    try:
        with pytest.raises(InvalidArgumentError, match="active items"):
            rec.recommend(h, k=10)
    finally:
        rec.set_active(ids[5:], True)
    # values that escaped as OverflowError / TypeError: every one is an InvalidArgumentError,
    # checked before any search (one bad request of a batch fails that batch call alone)
    for bad, match in [({"history": [1e999]}, "history holds inf"),
                       ({"history": [1], "profile": 5}, "profile is a int"),
                       ({"history": [1], "profile": {"age": [3]}}, "profile field 'age'"),
                       ({"history": [1], "allow": [1e999]}, "allow holds inf"),
                       ({"history": [1], "deny": [float("nan")]}, "deny holds nan"),
                       ({"history": [2**70]}, "fit in int64"),
                       ({"history": "12"}, "history must be a list"),
                       ({"history": ["12"]}, "history holds '12'"),
                       ({"history": [1.5]}, "history holds 1.5"),
                       ({"history": [True]}, "history holds True"),
                       ({"history": [1], "k": True}, "k=True"),
                       ({"history": [1], "k": 2.0}, "k=2.0"),
                       ({"history": [1], "allow": {"a": 1}}, "allow must be a list")]:
        with pytest.raises(InvalidArgumentError, match=match):
            rec.recommend_batch([{"history": h}, bad])
    assert rec.check_request({"history": [np.int64(3), 4.0], "allow": np.array([1, 2])}) == {
        "history": [3, 4], "profile": "", "k": 10, "beam": 20, "allow": [1, 2], "deny": None}
    assert len(rec.recommend([])) == 10  # profile-only / empty history still answers
    long = [int(i) for i in rec.catalog.state.sids.item_ids[:50]]
    assert [x.item_id for x in rec.recommend(long)] == [x.item_id for x in rec.recommend(long[-10:])]


def test_profile_records_are_written_as_training_wrote_them(bundle, synthetic_dataset):
    """A profile given as the user's record is written with the bundle's profile template (the
    one training used), so callers need not know it; a string is taken as written."""
    from genrec_lite.prompts import profile_text
    from genrec_lite.runtime import Recommender

    rec = Recommender.load(bundle, n_threads=2)
    record = synthetic_dataset.profiles.get(next(iter(synthetic_dataset.profiles)))
    state, h = rec.catalog.state, [int(i) for i in rec.catalog.state.sids.item_ids[:3]]
    template = rec._loaded.profile_template
    assert rec._prompt(state, h, record) == rec._prompt(state, h, profile_text(record, template))
    assert rec._prompt(state, h, record) != rec._prompt(state, h, None)
    assert ([x.item_id for x in rec.recommend(h, record)]
            == [x.item_id for x in rec.recommend(h, profile_text(record, template))])
    rec._loaded.profile_template = "{user_id} is {age_band}"  # a bundle trained with a template
    try:
        assert f"{record['user_id']} is {record['age_band']}" in rec._prompt(state, h, record)
    finally:
        rec._loaded.profile_template = template
    rec.close()


def test_unknown_history_items_are_counted_and_warned_about_once(bundle, cases):
    """Skipped unknown ids are counted; one warning (naming the first id), not one per id: a
    warning text per id grew Python's warning registry without bound under traffic."""
    import warnings

    from genrec_lite.runtime import Recommender

    h = list(cases[0][0].history)
    with Recommender.load(bundle, n_threads=1) as r:
        with pytest.warns(UserWarning, match="999999"):
            a = r.recommend(h + [999_999])
        assert [x.item_id for x in a] == [x.item_id for x in r.recommend(h)]
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            for n in range(50):
                r.recommend([1_000_000 + n, *h])
        stats = r.stats()
        assert stats["unknown_history_items"] == 51 and stats["requests"] == 52


def test_context_size(bundle, rec, cases, capsys):
    """n_ctx bounds the KV cells of a context: a request that cannot fit is refused with its
    needs; a larger context serves it with the default's results; a size llama.cpp cannot take
    (fewer cells than sequences) is refused before it can abort the process."""
    from genrec_lite.runtime import Recommender

    cs, ds = cases
    h = list(cs[0].history)
    profile = " ".join(f"word{i}" for i in range(150))
    # a prompt of several hundred tokens: with the default 1024 cells it fits once, so a context
    # may not set cells aside for its prefix cache in the first group (they are the prompt's own)
    n = len(rec.backend.tokenize(rec._prompt(rec.catalog.state, h, profile)))
    assert 520 < n < 960
    want = [x.item_id for x in rec.recommend(h, profile)]
    tight = Recommender.load(bundle, n_threads=1, n_ctx=256)
    roomy = Recommender.load(bundle, n_threads=1, n_ctx=4096)
    try:
        with pytest.raises(InvalidArgumentError, match=r"needs \d+ KV cells.* has \d+ cells"):
            tight.recommend(h, profile)
        assert [x.item_id for x in tight.recommend(h)] == [x.item_id for x in rec.recommend(h)]
        assert [x.item_id for x in roomy.recommend(h, profile)] == want
    finally:
        tight.close()
        roomy.close()
    for bad in (0, 255, 1.5):
        with pytest.raises(InvalidArgumentError, match=f"n_ctx={bad}.*n_seq_max"):
            Recommender.load(bundle, n_threads=1, n_ctx=bad)
    # the command line passes --n-ctx through
    args = ["recommend", "--bundle", str(bundle), "--history", ",".join(map(str, h)),
            "--profile", profile, "--threads", "1", "--json"]
    capsys.readouterr()
    assert main(args + ["--n-ctx", "256"]) == 2
    assert "KV cells" in capsys.readouterr().err
    assert main(args + ["--n-ctx", "4096"]) == 0
    assert [r["item_id"] for r in json.loads(capsys.readouterr().out)["items"]] == want


def test_unknown_history_items_can_be_an_error(bundle, cases):
    from genrec_lite.runtime import Recommender

    r = Recommender.load(bundle, n_threads=1, unknown_items="error")
    try:
        with pytest.raises(UnknownItemError, match="999999"):
            r.recommend([999_999])
    finally:
        r.close()


def test_damaged_bundles_are_refused(bundle, tmp_path):
    import shutil

    from genrec_lite.runtime import Recommender

    def copy(name):
        dst = tmp_path / name
        shutil.copytree(bundle, dst)
        return dst

    b = copy("missing")
    (b / "sids/arrays.npz").unlink()
    with pytest.raises(ArtifactError, match="missing"):
        Recommender.load(b)
    b = copy("truncated")
    with open(b / "model.gguf", "r+b") as f:
        f.truncate(1000)
    with pytest.raises(ArtifactError, match="truncated"):
        Recommender.load(b)
    b = copy("flipped")
    data = bytearray((b / "model.gguf").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (b / "model.gguf").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="checksum"):
        Recommender.load(b)
    b = copy("version")
    m = json.loads((b / "manifest.json").read_text())
    m["format_version"] = 99
    (b / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(FormatVersionError):
        Recommender.load(b)


def test_failed_export_leaves_nothing(trained, tmp_path, bundle):
    from genrec_lite.export.bundle import export_bundle

    out = tmp_path / "never"
    with pytest.raises(InvalidArgumentError, match="q3"):
        export_bundle(trained, out, quant="q3")
    assert not out.exists() and not list(tmp_path.iterdir())


def test_cli_recommend_and_eval(bundle, tmp_path, capsys):
    capsys.readouterr()
    assert main(["recommend", "--bundle", str(bundle), "--history", "1,2,3", "--k", "3",
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["items"]) == 3 and {"item_id", "score", "sid", "title"} <= set(data["items"][0])
    out = tmp_path / "m.json"
    assert main(["eval", "--model", str(bundle), "--limit", "40", "--out", str(out), "--quiet"]) == 0
    m = json.loads(out.read_text())
    assert m["n_cases"] == 40 and 0 <= m["NDCG@10"] <= m["HR@10"] <= 1


def test_serving_never_imports_torch(bundle):
    code = (f"import sys; from genrec_lite.runtime import Recommender; "
            f"r = Recommender.load({str(bundle)!r}, n_threads=1); "
            f"assert len(r.recommend([1, 2, 3], k=5)) == 5; "
            f"r.add_items([{{'item_id': 77777, 'title': 'a new drill'}}]); "
            f"assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'torch imported'")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]


def _resign(bundle_dir, name):
    """Make the manifest agree with a file edited on purpose (size + checksum)."""
    import hashlib

    m = json.loads((bundle_dir / "manifest.json").read_text())
    data = (bundle_dir / name).read_bytes()
    m["files"][name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (bundle_dir / "manifest.json").write_text(json.dumps(m))


def test_bundle_loader_fuzz_raises_only_genrec_errors(bundle, tmp_path):
    """Random damage to the manifest or to a file: loading fails with a GenrecError or succeeds."""
    import shutil

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from genrec_lite.errors import GenrecError
    from genrec_lite.runtime import Recommender

    work = tmp_path / "fuzz"
    shutil.copytree(bundle, work)
    manifest = (bundle / "manifest.json").read_bytes()
    victims = ["manifest.json", "items.jsonl", "sids/semantic_ids.json", "sids/arrays.npz"]

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(victims), st.integers(0, 10**9), st.binary(min_size=0, max_size=64),
           st.booleans())
    def damage(name, where, junk, truncate):
        target = work / name
        original = (bundle / name).read_bytes()
        pos = where % (len(original) + 1)
        data = original[:pos] if truncate else original[:pos] + junk + original[pos + len(junk):]
        target.write_bytes(data)
        if name != "manifest.json":  # also make the manifest agree, so the damaged file is parsed
            _resign(work, name)
        try:
            Recommender.load(work, n_threads=1).close()
        except GenrecError:
            pass
        finally:
            target.write_bytes(original)
            (work / "manifest.json").write_bytes(manifest)

    damage()


def test_gguf_vocabulary_must_hold_every_sid_token(bundle, tmp_path):
    """A SID table with codes the GGUF has no token for (e.g. a model exported from another
    SID build) is refused at load, naming the missing token, and nothing on disk changes."""
    import shutil

    from genrec_lite.runtime import Recommender

    b = tmp_path / "mismatch"
    shutil.copytree(bundle, b)
    table = json.loads((b / "sids/semantic_ids.json").read_text())
    assert table["extra_level_size"] > 0
    table["extra_level_size"] += 1000  # codes the model never learnt a token for
    (b / "sids/semantic_ids.json").write_text(json.dumps(table))
    _resign(b, "sids/semantic_ids.json")
    before = {p: p.read_bytes() for p in b.rglob("*") if p.is_file()}
    with pytest.raises(ArtifactError, match=r"model.gguf has no single token for the SID token <d_"):
        Recommender.load(b, n_threads=1)
    with pytest.raises(ArtifactError, match=r"tokenizer.json has no single token"):
        Recommender.load(b, n_threads=1, backend="onnx")
    assert {p: p.read_bytes() for p in b.rglob("*") if p.is_file()} == before


@pytest.mark.slow
def test_soak_8_threads_with_catalog_changes(bundle):
    """8 threads x 10,000 requests while a writer adds, pauses, resumes and removes items: every
    answer no change overlapped equals the serial answer on that catalog state, the others are
    valid answers, no error, resident memory flat (benchmarks/soak.py is the driver)."""
    from benchmarks.soak import soak

    rep = soak(bundle, threads=8, requests=10_000, writes=100)
    assert not rep["errors"]
    assert rep["check"]["mismatches"] == 0 and rep["check"]["invalid_overlapped"] == 0
    assert rep["check"]["exact_checked"] > rep["requests"] // 2
    assert rep["same_final_catalog"]
    assert rep["rss_mb"]["growth_after_warmup"] < 64, rep["rss_mb"]  # a leak would grow with requests
