"""examples/ad_server.py: the ASGI service and its micro-batcher, on the tiny runtime bundle."""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")
pytest.importorskip("llama_cpp")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server_module():
    spec = importlib.util.spec_from_file_location("ad_server", ROOT / "examples" / "ad_server.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _histories(rec, n):
    ids = rec.catalog.state.sids.item_ids.tolist()
    return [ids[i * 7 % len(ids): i * 7 % len(ids) + 1 + i % 5] for i in range(n)]


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
            b.close()

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
            b.close()

    ok0, bad, ok2, full = asyncio.run(go())
    assert [x.item_id for x in ok0] == [x.item_id for x in rec.recommend(hist[0], k=5)]
    assert isinstance(bad, InvalidArgumentError) and "beam=4 < k=9" in str(bad)
    assert len(ok2) == 5
    assert isinstance(full, asyncio.QueueFull)  # the fourth found the queue of 3 full


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

        threads = [threading.Thread(target=call, args=(i,)) for i in range(len(hist))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [got[i] for i in range(len(hist))] == [(200, w) for w in want]
        health = client.get("/health").json()
        assert health["ok"] and health["requests"] == len(hist) and health["mode"] == mode
        assert 1 <= health["batches"] <= len(hist) or mode == "direct"

        bad = client.post("/recommend", json={"history": hist[0], "k": 0})
        assert bad.status_code == 400 and "k=0" in bad.json()["error"]
        assert client.post("/recommend", json={"histroy": [1]}).status_code == 400
        assert client.post("/recommend", content=b"{not json").status_code == 400

        # a new ad, then paused: recommendable only while active
        twin = dict(rec.catalog.state.records[want[0][0]])
        r = client.post("/items", json={"items": [{**twin, "item_id": 555_000_001}]})
        assert r.status_code == 200 and r.json()["sids"][0].startswith("<")
        only_new = {"history": hist[0], "k": 1, "allow": [555_000_001]}
        assert client.post("/recommend", json=only_new).json()["items"][0]["item_id"] == 555_000_001
        assert client.post("/active", json={"item_ids": [555_000_001], "active": False}).json() == {"changed": 1}
        assert client.post("/recommend", json=only_new).json()["items"] == []  # nothing allowed is active
        assert client.post("/items", json={"items": [{**twin, "item_id": 555_000_001}]}).status_code == 400
