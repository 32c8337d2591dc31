"""A small ASGI ad server that embeds genrec-lite and micro-batches concurrent requests.

    pip install 'genrec-lite[serve]'
    GENREC_AD_TOKEN=secret python examples/ad_server.py --bundle runs/bundle --port 8000
    curl -s localhost:8000/recommend -d '{"history": [12, 7, 301], "k": 5}'
    curl -s localhost:8000/active -H 'Authorization: Bearer secret' -d '{"item_ids": [7], "active": false}'

Endpoints (JSON in, JSON out; an error is {"error": "..."} with a 4xx or 5xx status):
  POST /recommend  {"history": [...], "profile": "...", "k": 10, "beam": 20, "allow": [...], "deny": [...]}
                   -> {"items": [{"item_id", "score", "sid", "title"}, ...], "ms": ...}
  POST /items      {"items": [{"item_id": 90001, "title": "...", ...}]} -> {"sids": [...]}  (new ads)
  POST /active     {"item_ids": [...], "active": false} -> {"changed": n}          (pause / resume)
  POST /remove     {"item_ids": [...]} -> {"removed": n}
  POST /reload     {"bundle": "path", "catalog": "path"} (both optional; the bundle defaults to
                   --bundle) -> {"bundle", "seconds", "reloads"}; 409 while another reload runs
  GET  /health     -> {"ok", "items", "active", "queue", "batches", "requests", "reloads",
                       "bundle", "stats": Recommender.stats()}; 503 while shutting down

Micro-batching: each /recommend request is checked on its own first (Recommender.check_request
and the caps below: a bad one is answered 400 at once and never joins a batch), then put on a
bounded queue. A batcher task takes the first waiting request, then whatever else arrives within
--max-wait-ms (up to --max-batch), and runs the whole batch as one `recommend_batch` in a worker
thread (the C++ search releases the GIL, so the event loop keeps accepting requests). --batchers
batches may run at once, each on its own llama.cpp context. A full queue answers 503 at once
(shed load rather than let latency grow without bound). If a batch still fails (the catalog
changed after its requests were checked, or an unexpected error), each of its requests is run
alone, so that only the one at fault gets an error. `--mode direct` skips batching: every request
calls `recommend_batch` alone in a pool of --batchers threads, at most --queue at once (503
beyond); benchmarks/serve_load.py compares the two.

Caps (each refusal is a 4xx naming the value and the limit): --max-body-bytes (413), --max-history
items, --max-ids per allow/deny/item_ids list, --max-profile-chars, --max-beam for k and beam
(never above what the backend holds, Recommender.max_beam). A cap on beam below the bundle's default
beam (its search_beam, else 20) means clients must send a beam.

Catalog writes (/items, /active, /remove) and reloads run one at a time in a worker thread, never
on the event loop; a write waits while a reload loads. Model refresh: POST /reload or SIGHUP (which
reloads --bundle) loads the new bundle beside the old one (Recommender.reload): requests keep being
answered, new ones go to the new bundle, items added and pauses made carry over. Shutdown (SIGINT
/ SIGTERM): queued and new requests answer 503, batches in flight finish, then the Recommender
closes (it waits for its searches).

Security: reads (/recommend, /health) are open. With --token (or the environment variable
GENREC_AD_TOKEN, which keeps the secret out of the process list) the write endpoints need
`Authorization: Bearer <token>` (401 otherwise); without one anybody who reaches the port can
add, pause and remove ads and make the server load any bundle path it can read. Serve on a
loopback or private address, or set a token; there is no TLS here (put a proxy in front).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import hmac
import json
import logging
import os
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from genrec_lite.errors import ClosedError, GenrecError, ModelOutputError
from genrec_lite.runtime import Recommender

log = logging.getLogger("genrec_lite.ad_server")

REQUEST_KEYS = {"history", "profile", "k", "beam", "allow", "deny"}
TOKEN_ENV = "GENREC_AD_TOKEN"


class MicroBatcher:
    """Collects concurrent requests into recommend_batch calls (see the module doc)."""

    def __init__(self, rec: Recommender, *, max_batch: int, max_wait_ms: float, queue_size: int,
                 batchers: int):
        if max_batch < 1 or max_wait_ms < 0 or queue_size < 1 or batchers < 1:
            raise ValueError(f"max_batch={max_batch}, max_wait_ms={max_wait_ms}, queue_size="
                             f"{queue_size}, batchers={batchers}: expected positive values")
        self.rec = rec
        self.max_batch, self.max_wait, self.queue_size = max_batch, max_wait_ms / 1000, queue_size
        # unbounded so that close() can always post its stop marks; submit() keeps the bound
        self.queue: asyncio.Queue = asyncio.Queue()
        self.pool = ThreadPoolExecutor(batchers, thread_name_prefix="genrec-batch")
        self.tasks = [asyncio.create_task(self._run()) for _ in range(batchers)]
        self.batches = self.requests = 0
        self.closing = False

    def pending(self) -> int:
        return self.queue.qsize()

    async def submit(self, request: dict):
        if self.closing:
            raise ClosedError("the server is shutting down")
        if self.queue.qsize() >= self.queue_size:
            raise asyncio.QueueFull(f"{self.queue_size} requests are waiting")
        fut = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((request, fut))
        return await fut

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        stop = False
        while not stop:
            first = await self.queue.get()
            if first is _STOP:
                return
            batch = [first]
            deadline = loop.time() + self.max_wait
            while len(batch) < self.max_batch:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self.queue.get(), timeout)
                except asyncio.TimeoutError:
                    break
                if item is _STOP:  # answer what this batch holds, then end
                    stop = True
                    break
                batch.append(item)
            live = [(r, f) for r, f in batch if not f.cancelled()]  # client gone: skip it
            if live:
                self.batches += 1
                self.requests += len(live)
                await self._answer(live)

    async def _answer(self, live: list) -> None:
        loop = asyncio.get_running_loop()
        try:
            answers = await loop.run_in_executor(
                self.pool, self.rec.recommend_batch, [r for r, _ in live])
        except Exception as exc:
            if len(live) == 1 or isinstance(exc, ClosedError):
                for _, f in live:
                    _settle(f, error=exc)
                return
            # the requests were checked before they were queued, so this is one request the
            # catalog no longer accepts or an unexpected failure: answer each alone so that only
            # the one at fault gets an error, whatever its kind
            for r, f in live:
                try:
                    res = await loop.run_in_executor(self.pool, self.rec.recommend_batch, [r])
                    _settle(f, result=res[0])
                except Exception as one:
                    _settle(f, error=one)
            return
        for (_, f), res in zip(live, answers):
            _settle(f, result=res)

    async def close(self) -> None:
        """Queued requests get ClosedError; batches being formed or searched are answered."""
        self.closing = True
        while not self.queue.empty():
            _, fut = self.queue.get_nowait()
            _settle(fut, error=ClosedError("the server is shutting down"))
        for _ in self.tasks:
            self.queue.put_nowait(_STOP)
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.pool.shutdown(wait=True)  # idle by now: every batch has been answered


_STOP = object()  # MicroBatcher's stop mark, one per batcher task


def _settle(fut: asyncio.Future, *, result=None, error=None) -> None:
    if fut.done():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)


class Direct:
    """The baseline: one `recommend_batch` call per HTTP request in a thread pool, at most
    `queue_size` at once (asyncio.QueueFull beyond, like MicroBatcher's full queue)."""

    def __init__(self, rec: Recommender, *, workers: int, queue_size: int):
        if workers < 1 or queue_size < 1:
            raise ValueError(f"workers={workers}, queue_size={queue_size}: expected positive values")
        self.rec = rec
        self.queue_size = queue_size
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="genrec-direct")
        self.batches = self.requests = 0
        self.in_flight = 0
        self.closing = False
        self._idle = asyncio.Event()
        self._idle.set()

    def pending(self) -> int:
        return self.in_flight

    async def submit(self, request: dict):
        if self.closing:
            raise ClosedError("the server is shutting down")
        if self.in_flight >= self.queue_size:
            raise asyncio.QueueFull(f"{self.queue_size} requests are in flight")
        self.requests += 1
        fut = asyncio.get_running_loop().run_in_executor(self.pool, self.rec.recommend_batch, [request])
        # counted until the search itself ends, not until its client gives up waiting
        self.in_flight += 1
        self._idle.clear()
        fut.add_done_callback(self._done)
        return (await asyncio.shield(fut))[0]

    def _done(self, fut) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self._idle.set()
        if not fut.cancelled():
            fut.exception()  # retrieved: a caller that left does not leave an unheard error

    async def close(self) -> None:
        """New requests get ClosedError; the searches in flight end first."""
        self.closing = True
        await self._idle.wait()
        self.pool.shutdown(wait=True)


@dataclass(frozen=True)
class Limits:
    """The server's caps on one request (see the module doc); beam None: the backend's."""

    body_bytes: int = 1 << 20
    history: int = 1000
    ids: int = 10_000
    profile_chars: int = 4000
    beam: int | None = None

    def __post_init__(self):
        for name, value in vars(self).items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} limit {value!r}; expected an integer >= 1")


class _Refusal(Exception):
    """A request the server answers with `status` and this message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _short(value, width: int = 60) -> str:
    """A value for an error message, cut so that a huge one is not echoed back."""
    text = repr(value)
    return text if len(text) <= width else text[:width] + "..."


def _keys(data: dict, allowed: set[str]) -> None:
    extra = set(data) - allowed
    if extra:
        raise _Refusal(400, f"unknown keys {sorted(extra)}; expected some of {sorted(allowed)}")


def _id_list(data: dict, key: str, limits: Limits) -> list[int]:
    ids = data.get(key)
    # JSON integers only: a string "123" is not the ids 1, 2, 3, and true is not 1
    if not isinstance(ids, list) or not all(type(i) is int for i in ids):
        raise _Refusal(400, f"{key} must be a JSON list of integer item ids; got {_short(ids)}")
    if len(ids) > limits.ids:
        raise _Refusal(400, f"{key} holds {len(ids)} ids; the limit is {limits.ids} (--max-ids)")
    return ids


def check_recommend(rec: Recommender, data: dict, limits: Limits) -> dict:
    """One /recommend body, capped and normalised by Recommender.check_request: what joins a
    batch is a request recommend_batch accepts (as long as the catalog does not change)."""
    _keys(data, REQUEST_KEYS)
    for key, cap, flag in (("history", limits.history, "--max-history"),
                           ("allow", limits.ids, "--max-ids"), ("deny", limits.ids, "--max-ids")):
        value = data.get(key)
        if isinstance(value, list) and len(value) > cap:  # other types: check_request says why
            raise _Refusal(400, f"{key} holds {len(value)} items; the limit is {cap} ({flag})")
    profile = data.get("profile")
    if isinstance(profile, dict):  # a user record: its size as JSON
        profile = json.dumps(profile)
    if isinstance(profile, str) and len(profile) > limits.profile_chars:
        raise _Refusal(400, f"profile has {len(profile)} characters; the limit is "
                            f"{limits.profile_chars} (--max-profile-chars)")
    req = rec.check_request(data)  # InvalidArgumentError naming the value (400)
    if limits.beam is not None:
        for key in ("k", "beam"):
            if req[key] > limits.beam:
                raise _Refusal(400, f"{key}={req[key]}; the limit is {limits.beam} (--max-beam)")
    return req


async def read_json(request: Request, limit: int, *, empty=None) -> dict:
    """The request body as a JSON object, refused (413) past `limit` bytes, whether the client
    declared its length or not. `empty`: what an empty body stands for (None: an error)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            n = int(declared)
        except ValueError:
            raise _Refusal(400, f"Content-Length {_short(declared)} is not a number") from None
        if n > limit:
            raise _Refusal(413, f"the request body has {n} bytes; the limit is {limit} (--max-body-bytes)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _Refusal(413, f"the request body has over {limit} bytes; the limit is {limit} "
                                "(--max-body-bytes)")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw and empty is not None:
        return dict(empty)
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # ValueError: bad JSON, bad UTF-8, huge integers
        raise _Refusal(400, f"the request body is not JSON ({_short(str(exc), 120)})") from None
    if not isinstance(data, dict):
        raise _Refusal(400, f"the request body must be a JSON object; got {type(data).__name__}")
    return data


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class _Server:
    """What the endpoints share: the Recommender, its runner, the admin thread, the flags."""

    def __init__(self, bundle: str):
        self.start_bundle = self.bundle = bundle
        self.rec: Recommender | None = None
        self.runner: MicroBatcher | Direct | None = None
        # catalog writes and reloads: one at a time, off the event loop
        self.admin: ThreadPoolExecutor | None = None
        self.closing = False
        self.reloading: str | None = None
        self.reloads = 0
        self.background: set[asyncio.Task] = set()

    async def in_admin(self, fn, *args, **kwargs):
        try:
            fut = self.admin.submit(fn, *args, **kwargs)
        except RuntimeError as exc:  # the pool is shut down: the server is closing
            raise ClosedError("the server is shutting down") from exc
        return await asyncio.wrap_future(fut)

    async def reload(self, bundle: str, catalog: str | None) -> dict:
        if self.reloading is not None:
            raise _Refusal(409, f"a reload of {self.reloading} is in progress; try again when it ends")
        self.reloading = bundle  # set and tested on the event loop: no race between two reloads
        # a task of its own: a client that leaves does not cut the bookkeeping short
        return await asyncio.shield(self._spawn(self._reload(bundle, catalog)))

    async def _reload(self, bundle: str, catalog: str | None) -> dict:
        t0 = time.perf_counter()
        try:
            await self.in_admin(functools.partial(self.rec.reload, bundle, catalog=catalog))
        finally:
            self.reloading = None
        self.reloads += 1
        self.bundle = bundle
        seconds = round(time.perf_counter() - t0, 3)
        log.info("reloaded %s in %.2f s", bundle, seconds)
        return {"bundle": bundle, "seconds": seconds, "reloads": self.reloads}

    def on_sighup(self) -> None:
        if self.closing:
            return
        self._spawn(self._sighup_reload())

    def _spawn(self, coro) -> asyncio.Task:
        """A task that runs to its end even if nobody waits for it."""
        task = asyncio.get_running_loop().create_task(coro)
        self.background.add(task)  # the loop keeps only a weak reference
        task.add_done_callback(self._forget)
        return task

    def _forget(self, task: asyncio.Task) -> None:
        self.background.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: its waiter (if any) has its own copy

    async def _sighup_reload(self) -> None:
        try:
            await self.reload(self.start_bundle, None)
        except _Refusal as exc:
            log.warning("SIGHUP ignored: %s", exc)
        except Exception:
            log.exception("SIGHUP: the reload of %s failed; still serving %s", self.start_bundle,
                          self.bundle)


def create_app(bundle: str, *, mode: str = "batch", n_threads: int = 1, max_batch: int = 32,
               max_wait_ms: float = 2.0, queue_size: int = 1024, batchers: int = 2,
               n_ctx: int | None = None, token: str | None = None,
               max_body_bytes: int = Limits.body_bytes, max_history: int = Limits.history,
               max_ids: int = Limits.ids, max_profile_chars: int = Limits.profile_chars,
               max_beam: int | None = None, reload_on_sighup: bool = False) -> Starlette:
    """The ASGI app; the bundle is loaded at start-up and can be swapped by POST /reload (and
    SIGHUP with reload_on_sighup, which needs the event loop in the main thread). token: the
    bearer token the write endpoints require (None: no check)."""
    if mode not in ("batch", "direct"):
        raise ValueError(f"mode={mode!r}; expected 'batch' or 'direct'")
    if token is not None and not token:
        raise ValueError("token is empty; give a non-empty token or None")
    limits = Limits(body_bytes=max_body_bytes, history=max_history, ids=max_ids,
                    profile_chars=max_profile_chars, beam=max_beam)
    srv = _Server(str(bundle))

    @contextlib.asynccontextmanager
    async def lifespan(app):
        loop = asyncio.get_running_loop()
        rec = Recommender.load(bundle, n_threads=n_threads, n_contexts=batchers, n_ctx=n_ctx)
        rec.preload()  # the first new ad should not pay for loading the encoders
        srv.rec = rec
        srv.admin = ThreadPoolExecutor(1, thread_name_prefix="genrec-admin")
        srv.runner = (MicroBatcher(rec, max_batch=max_batch, max_wait_ms=max_wait_ms,
                                   queue_size=queue_size, batchers=batchers)
                      if mode == "batch" else Direct(rec, workers=batchers, queue_size=queue_size))
        if reload_on_sighup:
            loop.add_signal_handler(signal.SIGHUP, srv.on_sighup)
        try:
            yield
        finally:
            # stop taking work, let what runs end, and only then free the model
            srv.closing = True
            if reload_on_sighup:
                loop.remove_signal_handler(signal.SIGHUP)
            await srv.runner.close()
            await asyncio.to_thread(srv.admin.shutdown, True)  # a write or reload in flight
            await asyncio.to_thread(rec.close)
            log.info("stopped after %d requests", srv.runner.requests)

    def endpoint(handler, *, write: bool = False):
        """Wraps a handler (request -> JSON-able dict): the token, shutdown, errors to statuses."""

        async def handle(request: Request) -> JSONResponse:
            if write and token is not None and not _authorised(request, token):
                return _error(401, "this endpoint needs the header 'Authorization: Bearer <token>'",
                              {"WWW-Authenticate": "Bearer"})
            if srv.closing:
                return _error(503, "the server is shutting down")
            try:
                return JSONResponse(await handler(request))
            except _Refusal as exc:
                return _error(exc.status, str(exc))
            except ClosedError:
                return _error(503, "the server is shutting down")
            except asyncio.QueueFull:
                return _error(503, "overloaded: too many requests are waiting")
            except ModelOutputError as exc:  # the model's fault, not the request's
                log.error("%s %s: %s", request.method, request.url.path, exc)
                return _error(500, str(exc))
            except GenrecError as exc:
                return _error(400, str(exc))
            except ClientDisconnect:  # nobody reads this answer
                return _error(400, "the client disconnected")
            except Exception as exc:  # a bug, not the client's fault: logged, and only this request
                log.exception("%s %s failed", request.method, request.url.path)
                return _error(500, f"internal error ({type(exc).__name__}); see the server log")

        return handle

    async def recommend(request: Request) -> dict:
        t0 = time.perf_counter()
        req = check_recommend(srv.rec, await read_json(request, limits.body_bytes), limits)
        items = await srv.runner.submit(req)
        return {"items": [x.to_dict() for x in items], "ms": round((time.perf_counter() - t0) * 1e3, 3)}

    async def add_items(request: Request) -> dict:
        data = await read_json(request, limits.body_bytes)
        _keys(data, {"items"})
        items = data.get("items")
        if not isinstance(items, list) or not items or not all(isinstance(r, dict) for r in items):
            raise _Refusal(400, f"items must be a non-empty JSON list of objects; got {_short(items)}")
        if len(items) > limits.ids:
            raise _Refusal(400, f"items holds {len(items)} items; the limit is {limits.ids} (--max-ids)")
        for n, r in enumerate(items):
            if type(r.get("item_id")) is not int:
                raise _Refusal(400, f"items[{n}] has item_id {_short(r.get('item_id'))}; expected "
                                    "a JSON integer")
        return {"sids": await srv.in_admin(srv.rec.add_items, items)}

    async def set_active(request: Request) -> dict:
        data = await read_json(request, limits.body_bytes)
        _keys(data, {"item_ids", "active"})
        ids = _id_list(data, "item_ids", limits)
        active = data.get("active")
        if not isinstance(active, bool):  # "false" would be truthy
            raise _Refusal(400, f"active must be true or false; got {_short(active)}")
        return {"changed": await srv.in_admin(srv.rec.set_active, ids, active)}

    async def remove(request: Request) -> dict:
        data = await read_json(request, limits.body_bytes)
        _keys(data, {"item_ids"})
        ids = _id_list(data, "item_ids", limits)
        return {"removed": await srv.in_admin(srv.rec.remove_items, ids)}

    async def reload(request: Request) -> dict:
        data = await read_json(request, limits.body_bytes, empty={})
        _keys(data, {"bundle", "catalog"})
        path, catalog = data.get("bundle", srv.start_bundle), data.get("catalog")
        for key, value in (("bundle", path), ("catalog", catalog)):
            if value is not None and (not isinstance(value, str) or not value):
                raise _Refusal(400, f"{key} must be a path (a non-empty string); got {_short(value)}")
        return await srv.reload(path, catalog)

    async def health(request: Request) -> dict:
        rec, runner = srv.rec, srv.runner
        trie = rec.catalog.state.trie
        return {"ok": True, "mode": mode, "items": int(trie.n_items), "active": int(trie.n_active),
                "queue": runner.pending(), "batches": runner.batches, "requests": runner.requests,
                "reloads": srv.reloads, "reloading": srv.reloading is not None,
                "bundle": srv.bundle, "stats": rec.stats()}

    routes = [Route("/recommend", endpoint(recommend), methods=["POST"]),
              Route("/items", endpoint(add_items, write=True), methods=["POST"]),
              Route("/active", endpoint(set_active, write=True), methods=["POST"]),
              Route("/remove", endpoint(remove, write=True), methods=["POST"]),
              Route("/reload", endpoint(reload, write=True), methods=["POST"]),
              Route("/health", endpoint(health), methods=["GET"])]
    return Starlette(routes=routes, lifespan=lifespan)


def _authorised(request: Request, token: str) -> bool:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    # compare_digest: the time taken does not tell how much of a guess was right
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def token_from(given: str | None) -> str | None:
    """--token, else $GENREC_AD_TOKEN, else None (no check); empty counts as unset."""
    return given or os.environ.get(TOKEN_ENV) or None


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", required=True, help="bundle folder (genrec-lite export --out)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--mode", choices=["batch", "direct"], default="batch")
    ap.add_argument("--max-batch", type=int, default=32, help="requests per recommend_batch call")
    ap.add_argument("--max-wait-ms", type=float, default=2.0,
                    help="how long a batch waits for more requests after its first")
    ap.add_argument("--queue", type=int, default=1024,
                    help="waiting (batch) or running (direct) requests before 503")
    ap.add_argument("--batchers", type=int, default=2, help="batches (or direct calls) at once")
    ap.add_argument("--n-threads", type=int, default=1, help="llama.cpp threads per batch")
    ap.add_argument("--n-ctx", type=int, default=None,
                    help="KV cells per llama.cpp context (default 1024; more for long prompts)")
    ap.add_argument("--token", default=None,
                    help=f"bearer token for the write endpoints (default: ${TOKEN_ENV}; none: open)")
    ap.add_argument("--max-body-bytes", type=int, default=Limits.body_bytes)
    ap.add_argument("--max-history", type=int, default=Limits.history, help="history items per request")
    ap.add_argument("--max-ids", type=int, default=Limits.ids,
                    help="ids per allow / deny / item_ids list, items per /items call")
    ap.add_argument("--max-profile-chars", type=int, default=Limits.profile_chars)
    ap.add_argument("--max-beam", type=int, default=None,
                    help="largest k and beam (default and upper bound: what the backend holds)")
    args = ap.parse_args(argv)
    import uvicorn

    handler = logging.StreamHandler()  # reloads, shutdown and failures, on stderr
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)

    token = token_from(args.token)
    if token is None and args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: serving on {args.host} without a token: anybody who reaches the port can "
              f"change the catalog and reload the model (set {TOKEN_ENV})", file=sys.stderr)
    app = create_app(args.bundle, mode=args.mode, n_threads=args.n_threads,
                     max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                     queue_size=args.queue, batchers=args.batchers, n_ctx=args.n_ctx, token=token,
                     max_body_bytes=args.max_body_bytes, max_history=args.max_history,
                     max_ids=args.max_ids, max_profile_chars=args.max_profile_chars,
                     max_beam=args.max_beam, reload_on_sighup=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
