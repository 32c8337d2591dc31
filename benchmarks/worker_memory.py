"""Resident memory of 1 and N worker processes serving the same bundle (the model file is mmap'd).

    python benchmarks/worker_memory.py --bundle smollm2-q8_0=runs/bundles/smollm2-q8 \
        --bundle compact-f16=runs/bundles/amazon-f16 [--workers 1 4]

Each worker is a separate Python process that loads a Recommender (llama.cpp maps model.gguf
read-only, so the page cache holds one copy) and answers 20 requests; when all are ready, each
reads its own /proc/self/smaps: RSS (counts shared pages in every process), PSS (shared pages
divided among the processes that map them: the sum over workers is the real memory), and the
RSS/PSS of the model.gguf mapping. Linux only. Writes benchmarks/results/worker_memory.json.

`measure_forked` is the preload pattern instead: one process loads the Recommender and forks the
workers before any request (as a pre-forking server does), so the loaded catalog and model pages
are shared copy-on-write; its sum of PSS counts the loader too.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: find the benchmarks package from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import child_env, machine_info, table, write_json  # noqa: E402


def smaps(model: str) -> dict:
    """kB totals of this process, and of the mapping of `model`."""
    tot = {"Rss": 0, "Pss": 0}
    mod = {"Rss": 0, "Pss": 0}
    cur = None
    with open("/proc/self/smaps") as f:
        for line in f:
            parts = line.split()
            if not parts:
                continue
            if not parts[0].endswith(":") or len(parts) > 3:  # a mapping header line
                cur = mod if line.rstrip().endswith(model) else None
                continue
            key = parts[0][:-1]
            if key in tot:
                tot[key] += int(parts[1])
                if cur is not None:
                    cur[key] += int(parts[1])
    return {"rss_mb": tot["Rss"] / 1024, "pss_mb": tot["Pss"] / 1024,
            "model_rss_mb": mod["Rss"] / 1024, "model_pss_mb": mod["Pss"] / 1024}


def child(bundle: str) -> None:
    from genrec_lite.runtime import Recommender

    rec = Recommender.load(bundle, n_threads=1)
    ids = rec.catalog.state.sids.item_ids.tolist()
    for n in range(20):
        rec.recommend(ids[n * 3:n * 3 + 5])
    print("ready", flush=True)
    sys.stdin.readline()             # the parent says: everyone is loaded, measure now
    print(json.dumps(smaps(str((Path(bundle) / "model.gguf").resolve()))), flush=True)
    sys.stdin.readline()             # stay alive until every worker has measured
    rec.close()


def forked(bundle: str, workers: int) -> None:
    """Load once, fork `workers` workers that answer 20 requests each, print everyone's smaps."""
    import os

    from genrec_lite.runtime import Recommender

    rec = Recommender.load(bundle, n_threads=1)
    ids = rec.catalog.state.sids.item_ids.tolist()
    model = str((Path(bundle) / "model.gguf").resolve())
    kids = []
    for _ in range(workers):
        ready_r, ready_w = os.pipe()
        go_r, go_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # a worker: serve, then measure when everyone is ready
            for n in range(20):
                rec.recommend(ids[n * 3:n * 3 + 5])
            os.write(ready_w, b"r")
            os.read(go_r, 1)
            os.write(ready_w, (json.dumps(smaps(model)) + "\n").encode())
            os.read(go_r, 1)
            os._exit(0)
        kids.append((pid, ready_r, go_w))
    for _, r, _ in kids:
        if os.read(r, 1) != b"r":
            raise RuntimeError("a forked worker failed")
    for _, _, g in kids:
        os.write(g, b"m")
    per = []
    for _, r, _ in kids:
        buf = b""
        while not buf.endswith(b"\n"):
            buf += os.read(r, 1 << 16)
        per.append(json.loads(buf))
    loader = smaps(model)
    for pid, _, g in kids:
        os.write(g, b"x")
        os.waitpid(pid, 0)
    print(json.dumps({"per_worker": per, "loader": loader}), flush=True)


def measure_forked(bundle: Path, workers: int) -> dict:
    p = subprocess.run([sys.executable, __file__, "--forked", str(bundle), str(workers)],
                       env=child_env(), capture_output=True, text=True, timeout=1800)
    if p.returncode != 0:
        raise RuntimeError(f"the forked workers failed on {bundle}:\n{p.stderr[-2000:]}")
    got = json.loads(p.stdout.strip().splitlines()[-1])
    per, loader = got["per_worker"], got["loader"]
    return {"workers": workers, "per_worker": per, "loader": loader,
            "pss_sum_mb": round(sum(w["pss_mb"] for w in per) + loader["pss_mb"], 1),
            "model_pss_sum_mb": round(sum(w["model_pss_mb"] for w in per)
                                      + loader["model_pss_mb"], 1)}


def measure(bundle: Path, workers: int) -> dict:
    procs = [subprocess.Popen([sys.executable, __file__, "--child", str(bundle)], env=child_env(),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True) for _ in range(workers)]
    try:
        for p in procs:
            if p.stdout.readline().strip() != "ready":
                raise RuntimeError(f"a worker failed to load {bundle}")
        for p in procs:
            p.stdin.write("measure\n")
            p.stdin.flush()
        per = [json.loads(p.stdout.readline()) for p in procs]
    finally:
        for p in procs:
            try:
                p.stdin.write("exit\n")
                p.stdin.flush()
            except OSError:
                pass
            p.wait(60)
    return {"workers": workers, "per_worker": per,
            "model_file_mb": round((bundle / "model.gguf").stat().st_size / 2**20, 1),
            "rss_sum_mb": round(sum(w["rss_mb"] for w in per), 1),
            "pss_sum_mb": round(sum(w["pss_mb"] for w in per), 1),
            "model_pss_sum_mb": round(sum(w["model_pss_mb"] for w in per), 1),
            "model_rss_per_worker_mb": round(per[0]["model_rss_mb"], 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", action="append", default=[], metavar="NAME=PATH")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--forked", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child)
        return 0
    if args.forked:
        forked(args.forked[0], int(args.forked[1]))
        return 0
    if not args.bundle:
        ap.error("give at least one --bundle NAME=PATH")
    rows, results = [], {}
    for spec in args.bundle:
        name, _, path = spec.partition("=")
        for w in args.workers:
            r = measure(Path(path), w)
            results.setdefault(name, []).append(r)
            rows.append([name, w, r["model_file_mb"], r["rss_sum_mb"], r["pss_sum_mb"],
                         r["model_rss_per_worker_mb"], r["model_pss_sum_mb"]])
            print(rows[-1], file=sys.stderr, flush=True)
    print(table(["bundle", "workers", "model.gguf MB", "sum of RSS MB", "sum of PSS MB",
                 "model RSS per worker MB", "model PSS sum MB"], rows))
    print(f"wrote {write_json('worker_memory', {'benchmark': 'worker_memory', 'machine': machine_info('llama_cpp_python'), 'results': results})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
