"""A Recommender's life in a server: close under load, bundle swaps under load, the
llama-cpp-python version guard, and catalog writes racing each other. (A failed llama_decode
mid-search: tests/test_runtime.py, test_a_poisoned_search_leaves_the_context_reusable.)"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
llama_cpp = pytest.importorskip("llama_cpp")

from genrec_lite.errors import ClosedError, MissingDependencyError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict:
    """The child imports genrec_lite from where this process does (installed, or python/)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


def _ids(rec) -> list[int]:
    return [int(i) for i in rec.catalog.state.sids.item_ids]


def _ranked(rec, history, **kw) -> list[int]:
    return [x.item_id for x in rec.recommend(history, **kw)]


def test_close_while_another_thread_searches_does_not_abort(runtime_bundle):
    """The reproduction of the issue: a thread recommends in a loop while the main thread calls
    close(). The model used to be freed under the running search (std::out_of_range, exit 134).
    Run in a child process, since the failure kills the process."""
    code = textwrap.dedent(f"""
        import threading, time
        from genrec_lite.errors import ClosedError
        from genrec_lite.runtime import Recommender
        rec = Recommender.load({str(runtime_bundle)!r}, n_threads=1, n_contexts=2)
        ids = [int(i) for i in rec.catalog.state.sids.item_ids[:3]]
        done, errors, started = [0], [], threading.Event()
        def loop():
            while True:
                try:
                    out = rec.recommend(ids, k=5)
                    assert len(out) == 5
                    done[0] += 1
                    started.set()
                except ClosedError:
                    return
                except BaseException as exc:
                    errors.append(repr(exc))
                    return
        threads = [threading.Thread(target=loop) for _ in range(3)]
        for t in threads:
            t.start()
        started.wait(60)
        time.sleep(0.2)
        assert rec.close(timeout=60) is True
        for t in threads:
            t.join(60)
        assert not errors, errors
        try:
            rec.recommend(ids)
        except ClosedError as exc:
            print("refused:", exc)
        print("served", done[0])
    """)
    res = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "refused: this Recommender is closed" in res.stdout
    assert int(res.stdout.split("served")[-1]) > 0


def test_every_call_after_close_is_refused(runtime_bundle):
    from genrec_lite.runtime import Recommender

    rec = Recommender.load(runtime_bundle, n_threads=1)
    ids = _ids(rec)
    assert rec.close() is True and rec.closed
    assert rec.close() is True  # again: harmless
    for call in (lambda: rec.recommend(ids[:2]), lambda: rec.recommend_batch([{"history": []}]),
                 lambda: rec.add_items([{"item_id": 7_000_001, "title": "x"}]),
                 lambda: rec.set_active(ids[:1], False), lambda: rec.remove_items(ids[:1]),
                 lambda: rec.save_catalog("/nonexistent/never"), lambda: rec.preload(),
                 lambda: rec.reload(runtime_bundle)):
        with pytest.raises(ClosedError, match="closed"):
            call()
    assert rec.stats()["closed"] is True


def test_llama_model_close_waits_for_its_searches(runtime_bundle):
    """LlamaModel.close() (used directly by benchmarks) waits until every context is back."""
    from genrec_lite.runtime import Recommender

    rec = Recommender.load(runtime_bundle, n_threads=1)
    model = rec.backend.model
    closed = threading.Event()
    with model.context():
        t = threading.Thread(target=lambda: (model.close(), closed.set()))
        t.start()
        assert not closed.wait(0.5)  # still held by this search
        assert model._model is not None
    t.join(30)
    assert closed.is_set() and model._model is None
    with pytest.raises(ClosedError):
        with model.context():
            pass
    rec.close()


@pytest.fixture(scope="module")
def second_bundle(runtime_checkpoint, tmp_path_factory):
    """The same checkpoint exported again in F16: another model file, slightly other scores."""
    from genrec_lite.cli import main

    out = tmp_path_factory.mktemp("bundle2") / "b16"
    assert main(["export", "--model", str(runtime_checkpoint), "--out", str(out), "--quant", "f16",
                 "--quiet"]) == 0
    return out


def test_reload_under_concurrent_clients_fails_no_request(runtime_bundle, second_bundle):
    """8 threads recommend while the bundle is swapped back and forth: no request fails, each
    answer comes whole from one of the two bundles, and afterwards answers are the new bundle's."""
    from genrec_lite.runtime import Recommender

    with Recommender.load(runtime_bundle, n_threads=1) as a, \
            Recommender.load(second_bundle, n_threads=1) as b:
        hist = [_ids(a)[i:i + 1 + i % 4] for i in range(0, 160, 20)]
        want_a, want_b = ([_ranked(r, h, k=5) for h in hist] for r in (a, b))

    rec = Recommender.load(runtime_bundle, n_threads=1, n_contexts=2)
    old_model = rec.backend.model
    errors, answers, stop = [], [], threading.Event()

    def client(c):
        n = 0
        while not stop.is_set() or n < 3:
            i = (c + n) % len(hist)
            try:
                got = _ranked(rec, hist[i], k=5)
            except BaseException as exc:  # noqa: BLE001 - every failure counts
                errors.append(repr(exc))
                return
            answers.append((i, got))
            n += 1

    threads = [threading.Thread(target=client, args=(c,)) for c in range(8)]
    for t in threads:
        t.start()
    try:
        for target in (second_bundle, runtime_bundle, second_bundle):
            rec.reload(target)
        stop.set()
        for t in threads:
            t.join(120)
        assert not errors, errors[:3]
        assert len(answers) >= 24
        for i, got in answers:
            assert got in (want_a[i], want_b[i])
        assert rec.bundle.path == second_bundle
        assert [_ranked(rec, h, k=5) for h in hist] == want_b
        assert old_model._model is None  # the first bundle's model was freed
        assert rec.stats()["reloads"] == 3
    finally:
        stop.set()
        rec.close()


@pytest.mark.parametrize("same_space", [True, False])
def test_reload_carries_live_catalog_changes_over(runtime_bundle, tmp_path, monkeypatch, same_space):
    """Items added (from text and from vectors), removed and paused since load are there after a
    reload; when the bundles quantise otherwise the items are encoded again (forced here)."""
    from genrec_lite.runtime import Recommender
    from genrec_lite.runtime.recommender import _Loaded

    copy = tmp_path / "copy"
    shutil.copytree(runtime_bundle, copy)
    if not same_space:
        monkeypatch.setattr(_Loaded, "same_sid_space", lambda self, other: False)
    with Recommender.load(runtime_bundle, n_threads=1) as rec:
        ids = _ids(rec)
        state = rec.catalog.state
        twin = dict(state.records[ids[3]])
        sids = rec.add_items([{**twin, "item_id": 8_000_001}])
        dim = state.sids.encoder.input_dim
        vec = np.random.default_rng(0).normal(size=(1, dim)).astype(np.float32)
        sids += rec.add_items([{"item_id": 8_000_002, "title": "only a vector"}], vectors=vec)
        rec.remove_items([ids[0]])
        rec.set_active([ids[1], 8_000_001], False)
        before = rec.catalog.snapshot()
        rec.reload(copy)
        after = rec.catalog.snapshot()
        assert rec.bundle.path == copy
        assert [after[0].sids.sid(i) for i in (8_000_001, 8_000_002)] == sids
        assert ids[0] not in after[0].sids
        assert after[1] == before[1] == {ids[1], 8_000_001}
        assert after[0].records[8_000_002]["title"] == "only a vector"
        assert sorted(after[0].sids.item_ids.tolist()) == sorted(before[0].sids.item_ids.tolist())


def test_failed_reload_changes_nothing(runtime_bundle, tmp_path):
    from genrec_lite.errors import ArtifactError
    from genrec_lite.runtime import Recommender

    broken = tmp_path / "broken"
    shutil.copytree(runtime_bundle, broken)
    (broken / "model.gguf").write_bytes(b"not a model")
    with Recommender.load(runtime_bundle, n_threads=1) as rec:
        h = _ids(rec)[:3]
        want = _ranked(rec, h)
        with pytest.raises(ArtifactError):
            rec.reload(broken)
        assert rec.bundle.path == runtime_bundle and _ranked(rec, h) == want


def test_other_llama_cpp_python_releases_are_refused(runtime_bundle, monkeypatch):
    """The C++ search calls libllama through the pinned release's ABI: another release (or a
    context-params layout without kv_unified) is refused before any context exists."""
    from genrec_lite.runtime import Recommender
    from genrec_lite.runtime.llama_backend import LLAMA_CPP_PYTHON_VERSION

    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}"' in pyproject  # one pin, two places
    monkeypatch.setattr(llama_cpp, "__version__", "0.3.99")
    with pytest.raises(MissingDependencyError, match=f"0.3.99 is installed.*{LLAMA_CPP_PYTHON_VERSION}"):
        Recommender.load(runtime_bundle, n_threads=1)
    monkeypatch.setattr(llama_cpp, "__version__", LLAMA_CPP_PYTHON_VERSION)

    class Params(ctypes.Structure):  # the real layout, less kv_unified
        _fields_ = [f for f in llama_cpp.llama_context_params._fields_ if f[0] != "kv_unified"]

    monkeypatch.setattr(llama_cpp, "llama_context_params", Params)
    with pytest.raises(MissingDependencyError, match="kv_unified"):
        Recommender.load(runtime_bundle, n_threads=1)


def test_concurrent_adds_never_share_a_full_sid(runtime_bundle, monkeypatch):
    """Two add_items calls whose items quantise to the same codes, racing: the extra level must
    number them apart. The codes used to be completed from a snapshot before the catalog lock, so
    two calls that both got past their encoding first gave both items the same full SID."""
    from genrec_lite.runtime import Recommender
    from genrec_lite.runtime.catalog import LiveCatalog

    with Recommender.load(runtime_bundle, n_threads=1) as rec:
        state = rec.catalog.state
        assert state.sids.collisions == "extra_level"
        vec = np.random.default_rng(1).normal(size=(1, state.sids.encoder.input_dim)).astype(np.float32)
        barrier = threading.Barrier(2)
        real_add = LiveCatalog.add

        def add(self, *args, **kwargs):
            try:  # let both callers reach the catalog together, unless add_items serialises them
                barrier.wait(timeout=2)
            except threading.BrokenBarrierError:
                pass
            return real_add(self, *args, **kwargs)

        monkeypatch.setattr(LiveCatalog, "add", add)
        got = {}

        def writer(i):
            got[i] = rec.add_items([{"item_id": 9_000_000 + i, "title": f"twin {i}"}], vectors=vec)[0]

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(got) == 2 and got[0] != got[1], got
        assert got[0].rsplit("<", 1)[0] == got[1].rsplit("<", 1)[0]  # same codes but the last
        trie = rec.catalog.state.trie
        assert trie.items(trie.codes_of(9_000_000)).tolist() == [9_000_000]


def test_save_catalog_reads_items_and_pauses_as_one_snapshot(runtime_bundle, tmp_path, monkeypatch):
    """An item added and paused while save_catalog writes: the saved catalog must still load
    (the paused set used to be read after the items and could name an item they lack)."""
    from genrec_lite.runtime import Recommender
    from genrec_lite.sid import SidViews

    with Recommender.load(runtime_bundle, n_threads=1) as rec:
        twin = dict(rec.catalog.state.records[_ids(rec)[0]])
        real_save = SidViews.save
        fired = []

        def save(self, path, **kw):
            out = real_save(self, path, **kw)
            if not fired:  # a writer slips in between the reads of the catalog
                fired.append(1)
                rec.add_items([{**twin, "item_id": 8_100_001}])
                rec.set_active([8_100_001], False)
            return out

        monkeypatch.setattr(SidViews, "save", save)
        saved = rec.save_catalog(tmp_path / "cat")
        assert fired
    monkeypatch.setattr(SidViews, "save", real_save)
    with Recommender.load(runtime_bundle, n_threads=1, catalog=saved) as back:
        assert 8_100_001 not in back.catalog.state.sids



@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_workers_forked_after_load_serve_and_a_fork_after_threaded_decoding_is_refused(runtime_bundle):
    """The preload pattern: load once, fork the workers (they share the loaded pages), serve.
    A worker forked before the first search answers as the parent does, and makes its own
    encoders for add_items; one forked after the parent decoded with several threads gets a
    ForkError naming the cause, not a hang (llama.cpp's OpenMP threads stay in the parent).
    Run in a fresh interpreter: this test process has run torch's own OpenMP threads."""
    code = textwrap.dedent(f"""
        import json, os, pickle, select, signal
        from genrec_lite.runtime import Recommender

        def in_child(fn, timeout=120.0):
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                try:
                    out = ("ok", fn())
                except BaseException as exc:
                    out = ("err", f"{{type(exc).__name__}}: {{exc}}")
                os.write(w, pickle.dumps(out))
                os._exit(0)
            os.close(w)
            data = b""
            while True:
                if not select.select([r], [], [], timeout)[0]:
                    os.kill(pid, signal.SIGKILL)
                    return ("hung", "")
                part = os.read(r, 1 << 16)
                if not part:
                    break
                data += part
            os.waitpid(pid, 0)
            return pickle.loads(data)

        rec = Recommender.load({str(runtime_bundle)!r}, n_threads=2)
        h = [int(i) for i in rec.catalog.state.sids.item_ids[:4]]
        rec.preload()  # the parent's onnxruntime sessions, with their threads
        new = {{"item_id": 10**9, "title": "a forked worker's new item"}}
        ranked = lambda: [x.item_id for x in rec.recommend(h)]

        def child_work():
            rec.add_items([new])
            return ranked(), new["item_id"] in rec.catalog.state.sids

        first = in_child(child_work)
        out = {{"first": first, "parent": ranked(),  # the parent now decodes (2 threads)
                "parent_has_new": new["item_id"] in rec.catalog.state.sids,
                "second": in_child(ranked)}}
        rec.close()
        print(json.dumps(out))
    """)
    p = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["first"] == ["ok", [out["parent"], True]]
    assert out["parent_has_new"] is False  # the child's catalog is its own
    kind, msg = out["second"]
    assert kind == "err" and msg.startswith("ForkError") and "n_threads=2" in msg, out["second"]
