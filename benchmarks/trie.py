"""SID trie: build time, memory, and lookup throughput at 10k / 100k / 1M items.

Random SIDs with L=4 levels of K=256 codes, about 1% of the items sharing their SID with another
(collisions), random sparse int64 item ids (the 1M case also with dense ids 0..n-1).
Lookups are timed through the Python binding (one call per lookup; allowed_next_batch per prefix).

    python benchmarks/trie.py [--quick]

Prints a Markdown table and writes benchmarks/results/trie.json.
"""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: find the benchmarks package from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import machine_info, median, rss_bytes, table, timings, write_json  # noqa: E402

from genrec_lite._core import SidTrie  # noqa: E402

LEVELS, K = 4, 256
N_LOOKUPS = 20_000


def make_table(n: int, dense_ids: bool, seed: int = 0):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, K, size=(n, LEVELS), dtype=np.int32)
    dup = rng.choice(n, size=n // 100, replace=False)          # ~1% collisions
    codes[dup] = codes[rng.integers(0, n, size=dup.size)]
    ids = (np.arange(n, dtype=np.int64) if dense_ids
           else rng.choice(2**62, size=n, replace=False).astype(np.int64))
    return codes, ids


def bench(n: int, dense_ids: bool, build_reps: int) -> dict:
    codes, ids = make_table(n, dense_ids)
    gc.collect()
    rss0 = rss_bytes()
    trie = SidTrie(codes, ids, codebook_sizes=K)
    rss_delta = rss_bytes() - rss0
    build = timings(lambda: SidTrie(codes, ids, codebook_sizes=K), build_reps, warmup=0)

    rng = np.random.default_rng(1)
    rows = codes[rng.integers(0, n, size=N_LOOKUPS)]
    lookups: dict[str, float] = {}
    raw: dict[str, list[float]] = {"build_s": build}
    for p in range(LEVELS):
        prefixes = [r[:p].tolist() for r in rows]
        t = timings(lambda: [trie.allowed_next(q) for q in prefixes], 3, warmup=1)
        raw[f"allowed_next_len{p}_s"] = t
        lookups[f"allowed_next len {p}"] = N_LOOKUPS / median(t)
        arr = np.ascontiguousarray(rows[:, :p])
        tb = timings(lambda: trie.allowed_next_batch(arr), 3, warmup=1)
        raw[f"allowed_next_batch_len{p}_s"] = tb
        lookups[f"batch len {p}"] = N_LOOKUPS / median(tb)
    sids = [r.tolist() for r in rows]
    t = timings(lambda: [trie.items(s) for s in sids], 3, warmup=1)
    raw["items_s"] = t
    lookups["items"] = N_LOOKUPS / median(t)
    pick = [int(i) for i in ids[rng.integers(0, n, size=N_LOOKUPS)]]
    t = timings(lambda: [trie.codes_of(i) for i in pick], 3, warmup=1)
    raw["codes_of_s"] = t
    lookups["codes_of"] = N_LOOKUPS / median(t)
    batch = ids[rng.integers(0, n, size=min(n, 100_000))]
    t = timings(lambda: (trie.set_active(batch, False), trie.set_active(batch, True)), 3, warmup=0)
    raw["set_active_off_on_s"] = t
    lookups["set_active ids"] = 2 * batch.size / median(t)
    return {
        "n_items": n, "dense_ids": dense_ids, "n_sids": trie.n_sids,
        "build_s_median": median(build), "memory_bytes": trie.memory_bytes(),
        "bytes_per_item": trie.memory_bytes() / n, "rss_delta_bytes": rss_delta,
        "per_second": lookups, "raw_seconds": raw,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10k and 100k only")
    args = ap.parse_args()
    cases = [(10_000, False), (100_000, False)]
    if not args.quick:
        cases += [(1_000_000, False), (1_000_000, True)]
    results = [bench(n, dense, build_reps=3) for n, dense in cases]

    print(f"SID trie, L={LEVELS}, K={K}, ~1% collisions\n")
    print(table(["items", "ids", "SIDs", "build (s)", "memory_bytes (MB)", "bytes/item", "RSS delta (MB)"],
                [[r["n_items"], "dense" if r["dense_ids"] else "sparse", r["n_sids"], r["build_s_median"],
                  r["memory_bytes"] / 1e6, r["bytes_per_item"], r["rss_delta_bytes"] / 1e6]
                 for r in results]))
    print()
    keys = list(results[0]["per_second"])
    print(table(["items", "ids"] + [f"{k} (/s)" for k in keys],
                [[r["n_items"], "dense" if r["dense_ids"] else "sparse"]
                 + [r["per_second"][k] for k in keys] for r in results]))
    path = write_json("trie", {
        "benchmark": "trie", "machine": machine_info("nanobind"), "levels": LEVELS, "codebook_size": K,
        "notes": ("lookups through the Python binding, one call per lookup (batch: per prefix of a "
                  f"{N_LOOKUPS}-prefix allowed_next_batch call); set_active: ids per second, "
                  "100k ids off then on"),
        "quick": args.quick, "results": results})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
