"""examples/ad_server.py: the ASGI service and its micro-batcher, on the tiny runtime bundle."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("starlette")
httpx = pytest.importorskip("httpx")
pytest.importorskip("llama_cpp")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server_module():
    spec = importlib.util.spec_from_file_location("ad_server", ROOT / "examples" / "ad_server.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def _histories(rec, n):
    ids = rec.catalog.state.sids.item_ids.tolist()
    return [ids[i * 7 % len(ids): i * 7 % len(ids) + 1 + i % 5] for i in range(n)]


def _in_threads(fn, n):
    """fn(i) in n threads at once; the exceptions they raised."""
    errors = []

    def run(i):
        try:
            fn(i)
        except Exception as exc:  # reported by the test, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_batcher_forms_batches_and_answers_like_recommend(server_module, rec):
    hist = _histories(rec, 6)
    want = [[x.item_id for x in rec.recommend(h, k=5)] for h in hist]

    async def go():
        b = server_module.MicroBatcher(rec, max_batch=32, max_wait_ms=20, queue_size=64, batchers=1)
        try:
            # all six are queued before the batcher runs: one batch
            got = await asyncio.gather(*[b.submit({"history": h, "k": 5}) for h in hist])
            return got, b.batches, b.requests
        finally:
            await b.close()

    got, batches, requests = asyncio.run(go())
    assert [[x.item_id for x in g] for g in got] == want
    assert (batches, requests) == (1, 6)


def test_batcher_isolates_a_bad_request_and_sheds_load(server_module, rec):
    from genrec_lite.errors import InvalidArgumentError

    hist = _histories(rec, 3)

    async def go():
        b = server_module.MicroBatcher(rec, max_batch=32, max_wait_ms=5, queue_size=3, batchers=1)
        try:
            reqs = [{"history": hist[0], "k": 5}, {"history": hist[1], "k": 9, "beam": 4},
                    {"history": hist[2], "k": 5}, {"history": hist[2], "k": 5}]
            return await asyncio.gather(*[b.submit(r) for r in reqs], return_exceptions=True)
        finally:
            await b.close()

    ok0, bad, ok2, full = asyncio.run(go())
    assert [x.item_id for x in ok0] == [x.item_id for x in rec.recommend(hist[0], k=5)]
    assert isinstance(bad, InvalidArgumentError) and "beam=4 < k=9" in str(bad)
    assert len(ok2) == 5
    assert isinstance(full, asyncio.QueueFull)  # the fourth found the queue of 3 full


def test_direct_mode_sheds_load(server_module, rec):
    hist = _histories(rec, 3)

    async def go():
        d = server_module.Direct(rec, workers=1, queue_size=2)
        try:
            return await asyncio.gather(*[d.submit({"history": h, "k": 3}) for h in hist],
                                        return_exceptions=True)
        finally:
            await d.close()

    first, second, third = asyncio.run(go())
    assert len(first) == 3 and len(second) == 3
    assert isinstance(third, asyncio.QueueFull)  # two in flight: the bound of 2


@pytest.mark.parametrize("mode", ["batch", "direct"])
def test_http_endpoints(server_module, rec, runtime_bundle, mode):
    from starlette.testclient import TestClient

    app = server_module.create_app(str(runtime_bundle), mode=mode, max_wait_ms=10, batchers=2)
    hist = _histories(rec, 8)
    want = [[x.item_id for x in rec.recommend(h, k=4)] for h in hist]
    with TestClient(app) as client:
        got: dict = {}

        def call(i):
            r = client.post("/recommend", json={"history": hist[i], "k": 4})
            got[i] = (r.status_code, [x["item_id"] for x in r.json()["items"]])

        assert _in_threads(call, len(hist)) == []
        assert [got[i] for i in range(len(hist))] == [(200, w) for w in want]
        health = client.get("/health").json()
        assert health["ok"] and health["requests"] == len(hist) and health["mode"] == mode
        assert 1 <= health["batches"] <= len(hist) or mode == "direct"
        assert health["bundle"] == str(runtime_bundle) and isinstance(health["stats"], dict)

        bad = client.post("/recommend", json={"history": hist[0], "k": 0})
        assert bad.status_code == 400 and "k=0" in bad.json()["error"]
        assert client.post("/recommend", json={"histroy": [1]}).status_code == 400
        assert client.post("/recommend", content=b"{not json").status_code == 400

        # a new ad, then paused: recommendable only while active; then removed
        twin = dict(rec.catalog.state.records[want[0][0]])
        r = client.post("/items", json={"items": [{**twin, "item_id": 555_000_001}]})
        assert r.status_code == 200 and r.json()["sids"][0].startswith("<")
        only_new = {"history": hist[0], "k": 1, "allow": [555_000_001]}
        assert client.post("/recommend", json=only_new).json()["items"][0]["item_id"] == 555_000_001
        assert client.post("/active", json={"item_ids": [555_000_001], "active": False}).json() == {"changed": 1}
        assert client.post("/recommend", json=only_new).json()["items"] == []  # nothing allowed is active
        assert client.post("/items", json={"items": [{**twin, "item_id": 555_000_001}]}).status_code == 400
        assert client.post("/remove", json={"item_ids": [555_000_001]}).json() == {"removed": 1}
        assert client.get("/health").json()["items"] == health["items"]


def test_a_bad_request_fails_alone_in_its_batch(server_module, rec, runtime_bundle, monkeypatch):
    """Values recommend_batch would choke on are refused (400) before they join a batch, and an
    unexpected error of one request (500) does not fail its batch-mates."""
    from starlette.testclient import TestClient

    from genrec_lite.runtime import Recommender

    from genrec_lite.errors import ModelOutputError

    # history ids this test makes recommend_batch fail on: a bug, and a broken model output
    poison, nan = 987_654_321, 987_654_322
    real = Recommender.recommend_batch

    def flaky(self, requests):
        if any(poison in r["history"] for r in requests):
            raise TypeError("a bug that only this request reaches")
        if any(nan in r["history"] for r in requests):
            raise ModelOutputError.at(0, 1, 9, 3, float("nan"))
        return real(self, requests)

    monkeypatch.setattr(Recommender, "recommend_batch", flaky)
    hist = _histories(rec, 6)
    want = [[x.item_id for x in rec.recommend(h, k=3)] for h in hist]
    bad = ['{"history": [1e999], "k": 3}', '{"history": [1], "profile": 5, "k": 3}',
           '{"history": [1], "allow": [1e999], "k": 3}', '{"history": ["7"], "k": 3}',
           '{"history": [1], "k": true}', '{"history": [1], "k": 3, "beam": 1e999}',
           '{"history": [NaN], "k": 3}']
    app = server_module.create_app(str(runtime_bundle), max_wait_ms=200, max_batch=32, batchers=1)
    with TestClient(app) as client:
        got: dict = {}

        def call(i):
            if i < len(hist):
                r = client.post("/recommend", json={"history": hist[i], "k": 3})
            elif i < len(hist) + len(bad):
                r = client.post("/recommend", content=bad[i - len(hist)].encode())
            else:
                first = poison if i == len(hist) + len(bad) else nan
                r = client.post("/recommend", json={"history": [first, *hist[0]], "k": 3})
            got[i] = (r.status_code, r.json())

        # 200 ms of waiting per batch: the good, the bad and the poisoned arrive together
        assert _in_threads(call, len(hist) + len(bad) + 2) == []
        batches = client.get("/health").json()["batches"]
    for i, w in enumerate(want):
        assert got[i][0] == 200 and [x["item_id"] for x in got[i][1]["items"]] == w
    for i, text in enumerate(bad, len(hist)):
        assert got[i][0] == 400, (text, got[i])
    status, answer = got[len(hist) + len(bad)]
    assert status == 500 and "TypeError" in answer["error"]
    status, answer = got[len(hist) + len(bad) + 1]
    assert status == 500 and "logit of token 9 (SID code 3, allowed) is nan" in answer["error"]
    assert batches < len(hist) + 1  # the good and the poisoned shared batches


def test_request_caps(server_module, rec, runtime_bundle):
    from starlette.testclient import TestClient

    app = server_module.create_app(str(runtime_bundle), max_body_bytes=2000, max_history=5,
                                   max_ids=3, max_profile_chars=10, max_beam=8)
    h = _histories(rec, 1)[0][:2]
    with TestClient(app) as client:
        def refused(body, status=400, **kw):
            r = client.post("/recommend", json=body, **kw) if body is not None else client.post("/recommend", **kw)
            assert r.status_code == status, (body, r.status_code, r.text)
            return r.json()["error"]

        assert "5000 bytes; the limit is 2000" in refused(None, 413, content=b" " * 5000)

        def chunks():  # no Content-Length: the bytes read are counted
            for _ in range(10):
                yield b" " * 300

        assert "over 2000 bytes" in refused(None, 413, content=chunks())
        assert "history holds 6 items; the limit is 5 (--max-history)" in refused({"history": [1] * 6})
        assert "deny holds 4 items; the limit is 3 (--max-ids)" in refused({"history": h, "deny": [1] * 4})
        assert "allow holds 4" in refused({"history": h, "allow": [1] * 4})
        assert "profile has 11 characters; the limit is 10" in refused({"history": h, "profile": "x" * 11})
        assert "k=9; the limit is 8 (--max-beam)" in refused({"history": h, "k": 9, "beam": 9})
        assert "beam=20; the limit is 8" in refused({"history": h, "k": 2})  # the default beam
        assert "not JSON" in refused(None, content=b"[" * 1500)  # too deep for the parser: 400, not 500
        assert "JSON object" in refused([1, 2])
        r = client.post("/recommend", json={"history": h, "k": 2, "beam": 8, "profile": "x" * 10})
        assert r.status_code == 200 and len(r.json()["items"]) == 2

    app = server_module.create_app(str(runtime_bundle))  # no --max-beam: the backend's bound
    with TestClient(app) as client:
        r = client.post("/recommend", json={"history": h, "k": 5, "beam": rec.max_beam + 1})
        assert r.status_code == 400 and str(rec.max_beam) in r.json()["error"]
    with pytest.raises(ValueError, match="history limit 0"):
        server_module.create_app(str(runtime_bundle), max_history=0)


def test_write_endpoints_check_types_token_and_run_off_the_event_loop(server_module, rec, runtime_bundle,
                                                                      monkeypatch):
    from starlette.testclient import TestClient

    from genrec_lite.runtime import Recommender

    threads = []
    real = Recommender.set_active

    def spy(self, ids, active=True):
        threads.append(threading.current_thread().name)
        return real(self, ids, active)

    monkeypatch.setattr(Recommender, "set_active", spy)
    ids = rec.catalog.state.sids.item_ids.tolist()
    app = server_module.create_app(str(runtime_bundle), token="s3cret")
    auth = {"Authorization": "Bearer s3cret"}
    with TestClient(app) as client:
        for path, body in (("/active", {"item_ids": [ids[0]], "active": False}),
                           ("/items", {"items": [{"item_id": 1}]}), ("/remove", {"item_ids": [ids[0]]}),
                           ("/reload", {})):
            assert client.post(path, json=body).status_code == 401, path
            assert client.post(path, json=body, headers={"Authorization": "Bearer s3cre"}).status_code == 401
            assert client.post(path, json=body, headers={"Authorization": "s3cret"}).status_code == 401
        assert client.get("/health").status_code == 200  # reads stay open
        assert client.post("/recommend", json={"history": ids[:2], "k": 2}).status_code == 200

        def refused(path, body):
            r = client.post(path, json=body, headers=auth)
            assert r.status_code == 400, (path, body, r.text)
            return r.json()["error"]

        assert "active must be true or false; got 'false'" in refused("/active", {"item_ids": [ids[0]], "active": "false"})
        assert "active must be true or false" in refused("/active", {"item_ids": [ids[0]]})
        assert "item_ids must be a JSON list of integer" in refused("/active", {"item_ids": "123", "active": False})
        assert "item_ids must be" in refused("/active", {"item_ids": [True], "active": False})
        assert "item_ids must be" in refused("/remove", {"item_ids": [1.5]})
        assert "unknown keys ['actve']" in refused("/active", {"item_ids": [ids[0]], "actve": False})
        assert "items must be a non-empty JSON list of objects" in refused("/items", {"items": {"item_id": 5}})
        assert "items must be" in refused("/items", {"items": [5]})
        assert "items[0] has item_id '5'" in refused("/items", {"items": [{"item_id": "5", "title": "x"}]})
        assert client.get("/health").json()["active"] == len(ids)  # nothing paused so far

        r = client.post("/active", json={"item_ids": [ids[0]], "active": False}, headers=auth)
        assert r.json() == {"changed": 1} and client.get("/health").json()["active"] == len(ids) - 1
        client.post("/active", json={"item_ids": [ids[0]], "active": True}, headers=auth)
    assert threads and all(name.startswith("genrec-admin") for name in threads), threads


def test_token_from_the_environment(server_module, monkeypatch):
    monkeypatch.delenv(server_module.TOKEN_ENV, raising=False)
    assert server_module.token_from(None) is None
    monkeypatch.setenv(server_module.TOKEN_ENV, "from-env")
    assert server_module.token_from(None) == "from-env"
    assert server_module.token_from("given") == "given"
    monkeypatch.setenv(server_module.TOKEN_ENV, "")
    assert server_module.token_from(None) is None


def test_reload_swaps_bundles_under_load(server_module, rec, runtime_bundle, tmp_path):
    """8 clients keep asking while the server swaps to another bundle and back: every request is
    answered, and correctly."""
    from starlette.testclient import TestClient

    other = tmp_path / "other"
    shutil.copytree(runtime_bundle, other)
    hist = _histories(rec, 8)
    want = [[x.item_id for x in rec.recommend(h, k=4)] for h in hist]
    app = server_module.create_app(str(runtime_bundle), max_wait_ms=2, batchers=2)
    stop = threading.Event()
    answers: list[list] = [[] for _ in hist]
    with TestClient(app) as client:
        def call(i):
            while not stop.is_set():
                r = client.post("/recommend", json={"history": hist[i], "k": 4})
                answers[i].append((r.status_code, [x["item_id"] for x in r.json().get("items", [])]))

        errors: list = []
        clients = threading.Thread(target=lambda: errors.extend(_in_threads(call, len(hist))))
        clients.start()
        try:
            time.sleep(0.3)
            r = client.post("/reload", json={"bundle": str(other)})
            assert r.status_code == 200, r.text
            assert r.json()["bundle"] == str(other) and r.json()["reloads"] == 1
            assert client.get("/health").json()["bundle"] == str(other)
            time.sleep(0.3)
            r = client.post("/reload")  # no body: the bundle it started with
            assert r.status_code == 200 and r.json()["bundle"] == str(runtime_bundle)
            time.sleep(0.3)
            bad = client.post("/reload", json={"bundle": str(tmp_path / "missing")})
            assert bad.status_code == 400 and "missing" in bad.json()["error"]
            time.sleep(0.1)
        finally:
            stop.set()
            clients.join()
        health = client.get("/health").json()
    assert errors == []
    assert health["reloads"] == 2 and health["bundle"] == str(runtime_bundle)
    assert all(len(a) >= 3 for a in answers), [len(a) for a in answers]
    for i, a in enumerate(answers):
        assert set(s for s, _ in a) == {200}, [s for s, _ in a if s != 200][:5]
        assert all(items == want[i] for _, items in a)


def test_one_reload_at_a_time(server_module, runtime_bundle, monkeypatch):
    from starlette.testclient import TestClient

    from genrec_lite.runtime import Recommender

    entered, release = threading.Event(), threading.Event()
    real = Recommender.reload

    def slow(self, *args, **kwargs):
        entered.set()
        assert release.wait(60)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Recommender, "reload", slow)
    app = server_module.create_app(str(runtime_bundle))
    with TestClient(app) as client:
        first: list = []
        t = threading.Thread(target=lambda: first.append(client.post("/reload")))
        t.start()
        try:
            assert entered.wait(60)
            assert client.get("/health").json()["reloading"] is True
            second = client.post("/reload", json={"bundle": str(runtime_bundle)})
            assert second.status_code == 409 and "in progress" in second.json()["error"]
        finally:
            release.set()
            t.join()
        assert first[0].status_code == 200
        assert client.get("/health").json()["reloads"] == 1


@pytest.mark.parametrize("mode", ["batch", "direct"])
def test_shutdown_under_load(server_module, rec, runtime_bundle, mode):
    """The app stops while requests are queued and searching: nothing crashes, every request gets
    its answer or a 503, and the ones that arrive during the shutdown get 503."""
    app = server_module.create_app(str(runtime_bundle), mode=mode, max_wait_ms=1, max_batch=4,
                                   batchers=2)
    hist = _histories(rec, 8)
    want = [[x.item_id for x in rec.recommend(h, k=4)] for h in hist]

    async def go():
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as client:
            async def one(i):
                return i, await client.post("/recommend", json={"history": hist[i % 8], "k": 4})

            sent = [asyncio.create_task(one(i)) for i in range(48)]
            await asyncio.wait(sent, return_when=asyncio.FIRST_COMPLETED)
            closing = asyncio.create_task(lifespan.__aexit__(None, None, None))
            await asyncio.sleep(0)  # the shutdown has begun
            late = await client.post("/recommend", json={"history": hist[0], "k": 4})
            health = await client.get("/health")
            await asyncio.wait_for(closing, 120)
            done = await asyncio.wait_for(asyncio.gather(*sent), 120)
        return done, late, health

    done, late, health = asyncio.run(go())
    assert late.status_code == 503 and "shutting down" in late.json()["error"]
    assert health.status_code == 503
    statuses = [r.status_code for _, r in done]
    assert set(statuses) <= {200, 503}, statuses
    assert statuses.count(200) >= 1
    if mode == "batch":  # queued requests are not searched once the shutdown begins
        assert statuses.count(503) >= 1, statuses
    for i, r in done:
        if r.status_code == 200:
            assert [x["item_id"] for x in r.json()["items"]] == want[i % 8]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_server_process_reloads_on_sighup_and_stops_on_sigterm(rec, runtime_bundle):
    pytest.importorskip("uvicorn")
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p), "GENREC_AD_TOKEN": "t0k"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "examples" / "ad_server.py"), "--bundle",
                             str(runtime_bundle), "--port", str(port), "--batchers", "1"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.time() < deadline, "the server did not come up"
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        h = _histories(rec, 1)[0]
        assert httpx.post(url + "/active", json={"item_ids": h, "active": False}).status_code == 401
        proc.send_signal(signal.SIGHUP)
        while httpx.get(url + "/health", timeout=5).json()["reloads"] < 1:
            assert time.time() < deadline, "SIGHUP did not reload"
            time.sleep(0.1)
        r = httpx.post(url + "/recommend", json={"history": h, "k": 3}, timeout=30)
        assert r.status_code == 200 and len(r.json()["items"]) == 3
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal: the exit status is -SIGTERM
        assert proc.wait(60) in (0, -signal.SIGTERM)
        err = proc.stderr.read().decode()
        assert "reloaded" in err and "stopped after" in err and "Traceback" not in err, err[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
