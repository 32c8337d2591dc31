"""Throughput of `genrec-lite sid embed` per process, one process against N under torchrun.

    nice -n 10 python benchmarks/embed_throughput.py [--items ITEMS] [--procs 1 2]
        [--shard-size 256] [--batch-size 64] [--limit N] [--name embed_throughput]

For each process count the same command embeds the whole catalog (amazon-industrial's items by
default, with the default item text template: title, brand, categories, description) into a fresh
folder with a fresh, unused embedding cache (`sid embed` does not read the cache by default), so
the encoder does all the work. One process runs plainly, N > 1 under
`python -m torch.distributed.run --standalone --nproc-per-node N`. Each run's torch threads per
process are the machine's cores divided by the process count (OMP_NUM_THREADS), so every setting
may use the whole machine. Each process reports its items and encoding seconds (model loading not
included); the table shows items/s per process, the job's items/s (items over the slowest
process's encoding time) and the command's wall time, and checks that the N-process vectors equal
the one-process ones. Writes benchmarks/results/NAME.json (default embed_throughput).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: find the benchmarks package from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import AMAZON, child_env, machine_info, table, write_json  # noqa: E402

# the per-process line `sid embed` prints: "rank 1/2 (cpu): encoded 1843 items in 60.2 s, ..."
# (one process: "embedded (cpu): ...")
LINE = re.compile(r"(?:rank (\d+)/\d+|embedded) \((\S+)\): encoded (\d+) items in ([\d.]+) s.*?"
                  r"model load ([\d.]+) s")


def run(items: Path, procs: int, out: Path, cache: Path, shard_size: int, batch_size: int
        ) -> dict:
    threads = max(1, (os.cpu_count() or 1) // procs)
    env = child_env() | {"OMP_NUM_THREADS": str(threads), "GENREC_LITE_CACHE": str(cache),
                         "HF_HUB_OFFLINE": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(name, None)
    launcher = ([sys.executable, "-m", "genrec_lite.cli"] if procs == 1 else
                [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                 str(procs), "-m", "genrec_lite.cli"])
    cmd = launcher + ["sid", "embed", "--items", str(items), "--out", str(out), "--shard-size",
                      str(shard_size), "--batch-size", str(batch_size), "--device", "cpu"]
    load_before = list(os.getloadavg())
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    per = []
    for m in LINE.finditer(proc.stderr):
        rank = int(m.group(1) or 0)
        n, secs = int(m.group(3)), float(m.group(4))
        per.append({"rank": rank, "device": m.group(2), "items": n, "encode_seconds": secs,
                    "items_per_second": n / secs if secs else None,
                    "load_seconds": float(m.group(5))})
    if len(per) != procs:
        raise SystemExit(f"expected {procs} per-process lines, found {len(per)}:\n{proc.stderr}")
    per.sort(key=lambda r: r["rank"])
    n_items = sum(r["items"] for r in per)
    slowest = max(r["encode_seconds"] for r in per)
    return {"procs": procs, "threads_per_process": threads,
            "command": " ".join([f"OMP_NUM_THREADS={threads}", "python"] + cmd[1:]),
            "items": n_items, "processes": per, "job_items_per_second": n_items / slowest,
            "wall_seconds": wall, "load_average_before": load_before,
            "load_average_after": list(os.getloadavg())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=Path, default=AMAZON / "items.jsonl")
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--shard-size", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--limit", type=int, default=None, help="Embed only the first N items.")
    ap.add_argument("--name", default="embed_throughput",
                    help="Results file name (benchmarks/results/NAME.json).")
    args = ap.parse_args()
    from genrec_lite.data import Catalog
    from genrec_lite.sid.embed_job import read_embeddings

    work = Path(tempfile.mkdtemp(prefix="embed_throughput-"))
    try:
        items = args.items
        if args.limit:
            cat = Catalog.load(items)
            items = cat.subset(cat.item_ids[:args.limit]).save(work / "items.jsonl")
        rows, results, ref = [], [], None
        for procs in args.procs:
            out = work / f"vectors-{procs}"
            r = run(items, procs, out, work / f"cache-{procs}", args.shard_size, args.batch_size)
            vectors = read_embeddings(out)[1]
            ref = vectors if ref is None else ref
            r["max_abs_diff_vs_first"] = float(np.abs(vectors - ref).max())
            results.append(r)
            for p in r["processes"]:
                rows.append([procs, r["threads_per_process"], p["rank"], p["items"],
                             round(p["encode_seconds"], 1), round(p["items_per_second"], 1),
                             round(r["job_items_per_second"], 1), round(r["wall_seconds"], 1)])
            print(f"{procs} process(es) done: {r['job_items_per_second']:.1f} items/s",
                  file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(table(["procs", "threads/proc", "rank", "items", "encode s", "items/s (process)",
                 "items/s (job)", "wall s"], rows))
    for r in results[1:]:
        print(f"{r['procs']} processes: max |vector - 1-process vector| = "
              f"{r['max_abs_diff_vs_first']:.2e}")
    path = write_json(args.name, {
        "items": str(args.items), "limit": args.limit, "shard_size": args.shard_size,
        "batch_size": args.batch_size, "runs": results,
        "note": "the machine's cores are shared with other jobs while this runs (see "
                "load_average); per-process numbers are what each process got, not an idle "
                "machine's",
        "machine": machine_info("torch", "sentence-transformers", "transformers")})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
