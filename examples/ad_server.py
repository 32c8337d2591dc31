"""A small ASGI ad server that embeds genrec-lite and micro-batches concurrent requests.

    pip install 'genrec-lite[serve]'
    python examples/ad_server.py --bundle runs/bundle --port 8000 [--max-batch 32] [--max-wait-ms 2]
    curl -s localhost:8000/recommend -d '{"history": [12, 7, 301], "k": 5}'

Endpoints (JSON in, JSON out):
  POST /recommend  {"history": [...], "profile": "...", "k": 10, "beam": 20, "allow": [...], "deny": [...]}
                   -> {"items": [{"item_id", "score", "sid", "title"}, ...]}
  POST /items      {"items": [{"item_id": 90001, "title": "...", ...}]} -> {"sids": [...]}  (new ads)
  POST /active     {"item_ids": [...], "active": false} -> {"changed": n}          (pause / resume)
  GET  /health     -> {"ok": true, "items": n, "active": n, "queue": n}

Micro-batching: each /recommend call puts its request on a bounded queue and awaits a future. A
batcher task takes the first waiting request, then whatever else arrives within --max-wait-ms (up
to --max-batch), and runs the whole batch as one `recommend_batch` in a worker thread (the C++
search releases the GIL, so the event loop keeps accepting requests). --batchers batches may run at
once, each on its own llama.cpp context. A full queue answers 503 at once (shed load rather than
let latency grow without bound). `--mode direct` skips batching: every request calls `recommend`
in a thread pool of --batchers threads; benchmarks/serve_load.py compares the two.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from concurrent.futures import ThreadPoolExecutor

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from genrec_lite.errors import GenrecError
from genrec_lite.runtime import Recommender


class MicroBatcher:
    """Collects concurrent requests into recommend_batch calls (see the module doc)."""

    def __init__(self, rec: Recommender, *, max_batch: int, max_wait_ms: float, queue_size: int,
                 batchers: int):
        if max_batch < 1 or max_wait_ms < 0 or queue_size < 1 or batchers < 1:
            raise ValueError(f"max_batch={max_batch}, max_wait_ms={max_wait_ms}, queue_size="
                             f"{queue_size}, batchers={batchers}: expected positive values")
        self.rec = rec
        self.max_batch, self.max_wait = max_batch, max_wait_ms / 1000
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=queue_size)
        self.pool = ThreadPoolExecutor(batchers, thread_name_prefix="genrec-batch")
        self.tasks = [asyncio.create_task(self._run()) for _ in range(batchers)]
        self.batches = self.requests = 0

    async def submit(self, request: dict):
        fut = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((request, fut))  # asyncio.QueueFull when overloaded -> 503
        return await fut

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            deadline = loop.time() + self.max_wait
            while len(batch) < self.max_batch:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), timeout))
                except asyncio.TimeoutError:
                    break
            live = [(r, f) for r, f in batch if not f.cancelled()]  # client gone: skip it
            if not live:
                continue
            self.batches += 1
            self.requests += len(live)
            try:
                answers = await loop.run_in_executor(
                    self.pool, self.rec.recommend_batch, [r for r, _ in live])
            except GenrecError:
                # one bad request fails its whole batch: answer each on its own to isolate it
                for r, f in live:
                    try:
                        res = await loop.run_in_executor(self.pool, self.rec.recommend_batch, [r])
                        _settle(f, result=res[0])
                    except Exception as exc:
                        _settle(f, error=exc)
                continue
            except Exception as exc:  # an unexpected failure reaches every caller
                for _, f in live:
                    _settle(f, error=exc)
                continue
            for (_, f), res in zip(live, answers):
                _settle(f, result=res)

    def close(self) -> None:
        for t in self.tasks:
            t.cancel()
        self.pool.shutdown(wait=False, cancel_futures=True)


def _settle(fut: asyncio.Future, *, result=None, error=None) -> None:
    if fut.done():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)


class Direct:
    """The baseline: one `recommend` call per HTTP request in a thread pool."""

    def __init__(self, rec: Recommender, *, workers: int):
        self.rec = rec
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="genrec-direct")
        self.queue = None
        self.batches = self.requests = 0

    async def submit(self, request: dict):
        self.requests += 1
        res = await asyncio.get_running_loop().run_in_executor(
            self.pool, self.rec.recommend_batch, [request])
        return res[0]

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


REQUEST_KEYS = {"history", "profile", "k", "beam", "allow", "deny"}


def create_app(bundle: str, *, mode: str = "batch", n_threads: int = 1, max_batch: int = 32,
               max_wait_ms: float = 2.0, queue_size: int = 1024, batchers: int = 2,
               n_ctx: int | None = None) -> Starlette:
    """The ASGI app; the bundle is loaded once at start-up (a process serves one bundle)."""
    state: dict = {}

    @contextlib.asynccontextmanager
    async def lifespan(app):
        rec = Recommender.load(bundle, n_threads=n_threads, n_contexts=batchers, n_ctx=n_ctx)
        rec.preload()  # the first new ad should not pay for loading the encoders
        state["rec"] = rec
        state["runner"] = (MicroBatcher(rec, max_batch=max_batch, max_wait_ms=max_wait_ms,
                                        queue_size=queue_size, batchers=batchers)
                           if mode == "batch" else Direct(rec, workers=batchers))
        try:
            yield
        finally:
            state["runner"].close()
            rec.close()

    async def body(request: Request) -> dict:
        try:
            data = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise GenrecError(f"the request body is not JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise GenrecError(f"the request body must be a JSON object; got {type(data).__name__}")
        return data

    async def recommend(request: Request) -> JSONResponse:
        t0 = time.perf_counter()
        try:
            data = await body(request)
            extra = set(data) - REQUEST_KEYS
            if extra:
                raise GenrecError(f"unknown keys {sorted(extra)}; expected some of {sorted(REQUEST_KEYS)}")
            items = await state["runner"].submit(data)
        except asyncio.QueueFull:
            return JSONResponse({"error": "overloaded: the request queue is full"}, status_code=503)
        except GenrecError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"items": [x.to_dict() for x in items],
                             "ms": round((time.perf_counter() - t0) * 1e3, 3)})

    async def add_items(request: Request) -> JSONResponse:
        try:
            data = await body(request)
            sids = await asyncio.get_running_loop().run_in_executor(
                None, state["rec"].add_items, data.get("items"))
        except GenrecError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"sids": sids})

    async def set_active(request: Request) -> JSONResponse:
        try:
            data = await body(request)
            changed = state["rec"].set_active(data.get("item_ids") or [], bool(data.get("active", True)))
        except GenrecError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"changed": changed})

    async def health(request: Request) -> JSONResponse:
        rec, runner = state["rec"], state["runner"]
        trie = rec.catalog.state.trie
        return JSONResponse({"ok": True, "mode": mode, "items": int(trie.n_items),
                             "active": int(trie.n_active),
                             "queue": runner.queue.qsize() if runner.queue is not None else 0,
                             "batches": runner.batches, "requests": runner.requests})

    routes = [Route("/recommend", recommend, methods=["POST"]),
              Route("/items", add_items, methods=["POST"]),
              Route("/active", set_active, methods=["POST"]),
              Route("/health", health, methods=["GET"])]
    return Starlette(routes=routes, lifespan=lifespan)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", required=True, help="bundle folder (genrec-lite export --out)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--mode", choices=["batch", "direct"], default="batch")
    ap.add_argument("--max-batch", type=int, default=32, help="requests per recommend_batch call")
    ap.add_argument("--max-wait-ms", type=float, default=2.0,
                    help="how long a batch waits for more requests after its first")
    ap.add_argument("--queue", type=int, default=1024, help="waiting requests before 503")
    ap.add_argument("--batchers", type=int, default=2, help="batches (or direct calls) at once")
    ap.add_argument("--n-threads", type=int, default=1, help="llama.cpp threads per batch")
    ap.add_argument("--n-ctx", type=int, default=None,
                    help="KV cells per llama.cpp context (default 1024; more for long prompts)")
    args = ap.parse_args(argv)
    import uvicorn

    app = create_app(args.bundle, mode=args.mode, n_threads=args.n_threads,
                     max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                     queue_size=args.queue, batchers=args.batchers, n_ctx=args.n_ctx)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
