"""Load test of examples/ad_server.py on loopback: micro-batching against one call per request.

    python benchmarks/serve_load.py --bundle runs/bundles/amazon-f16 [--requests 400]
        [--concurrency 1 8 32] [--max-wait-ms 2] [--batchers 2]

For each mode (`batch`: the server's micro-batcher feeding recommend_batch; `direct`: the same
server calling recommend once per HTTP request, the baseline) a server process is started on a
free port; then, for each concurrency level, that many client coroutines send requests back to
back (real amazon test histories, or random catalog histories where the data is absent) until
--requests have been answered. Reports p50/p99 latency seen by the client, requests/s, and the
mean batch size the server formed. Writes benchmarks/results/serve_load.json.

The client runs on the same machine as the server; on a 2-core box it takes CPU from it, so
compare the two modes (same run, same client) rather than the absolute figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a script: find the benchmarks package from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import child_env, machine_info, request_histories, table, write_json  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(bundle: Path, mode: str, args) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, str(ROOT / "examples" / "ad_server.py"), "--bundle", str(bundle),
           "--port", str(port), "--mode", mode, "--max-batch", str(args.max_batch),
           "--max-wait-ms", str(args.max_wait_ms), "--batchers", str(args.batchers),
           "--n-threads", str(args.n_threads)]
    proc = subprocess.Popen(cmd, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    import httpx

    t0 = time.time()
    while time.time() - t0 < 120:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the server did not come up within 120 s")


async def drive(url: str, hist: list[list[int]], concurrency: int, n: int, k: int) -> dict:
    import httpx

    latencies: list[float] = []
    errors = []
    next_i = [0]
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        # warm-up: a few requests per connection, not timed
        await asyncio.gather(*[client.post("/recommend", json={"history": hist[i % len(hist)], "k": k})
                               for i in range(concurrency)])

        async def worker() -> None:
            while next_i[0] < n:
                i = next_i[0]
                next_i[0] += 1
                t = time.perf_counter()
                r = await client.post("/recommend", json={"history": hist[i % len(hist)], "k": k})
                latencies.append(time.perf_counter() - t)
                if r.status_code != 200 or len(r.json()["items"]) != k:
                    errors.append(f"{r.status_code}: {r.text[:200]}")

        before = (await client.get("/health")).json()
        t0 = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(concurrency)])
        seconds = time.perf_counter() - t0
        after = (await client.get("/health")).json()
    lat = np.asarray(latencies) * 1e3
    batches = after["batches"] - before["batches"]
    return {"concurrency": concurrency, "requests": len(latencies), "seconds": round(seconds, 2),
            "requests_per_s": round(len(latencies) / seconds, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 2),
            "p99_ms": round(float(np.percentile(lat, 99)), 2),
            "mean_batch": round((after["requests"] - before["requests"]) / batches, 2) if batches else None,
            "errors": len(errors), "error_examples": errors[:3]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--requests", type=int, default=400, help="requests per concurrency level")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--max-wait-ms", type=float, default=2.0)
    ap.add_argument("--batchers", type=int, default=2)
    ap.add_argument("--n-threads", type=int, default=1)
    ap.add_argument("--k", type=int, default=10)
    args = ap.parse_args(argv)
    bundle = Path(args.bundle)
    ids = [json.loads(line)["item_id"] for line in (bundle / "items.jsonl").read_text().splitlines()
           if line.strip()]
    hist = request_histories(ids, 2000)
    rows, results = [], {}
    for mode in ("direct", "batch"):
        proc, url = start_server(bundle, mode, args)
        try:
            for c in args.concurrency:
                res = asyncio.run(drive(url, hist, c, args.requests, args.k))
                results.setdefault(mode, []).append(res)
                print(f"{mode} c={c}: {res}", file=sys.stderr, flush=True)
        finally:
            proc.terminate()
            proc.wait(30)
    for d, b in zip(results["direct"], results["batch"]):
        rows.append([d["concurrency"], d["p50_ms"], d["p99_ms"], d["requests_per_s"], b["p50_ms"],
                     b["p99_ms"], b["requests_per_s"], b["mean_batch"],
                     round(b["requests_per_s"] / d["requests_per_s"], 2)])
    print(table(["concurrency", "direct p50 ms", "direct p99 ms", "direct req/s", "batched p50 ms",
                 "batched p99 ms", "batched req/s", "mean batch", "req/s ratio"], rows))
    out = write_json("serve_load", {"benchmark": "serve_load", "bundle": str(bundle),
                                    "settings": vars(args), "machine": machine_info("llama_cpp_python"),
                                    "results": results})
    print(f"wrote {out}")
    return 0 if all(r["errors"] == 0 for rs in results.values() for r in rs) else 1


if __name__ == "__main__":
    sys.exit(main())
