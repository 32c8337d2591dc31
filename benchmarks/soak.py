"""Soak: many threads on one Recommender while another thread changes the catalog.

    python benchmarks/soak.py --bundle runs/bundles/amazon-f16 [--threads 8] [--requests 10000]

Reader threads send `--requests` requests each (random catalog histories of 1-10 items; every
fifth request has a deny-list, every seventh an allow-list). A writer thread changes the catalog
`--writes` times, spread evenly over the run: add_items (from text through the ONNX text encoder,
or from vectors), pausing and resuming items, removing added items. The writer brackets each change
with a sequence counter (odd while it runs), and each request reads the counter before and after.

Checks, after the concurrent phase, by replaying the writer's changes one by one on a fresh
Recommender and asking the same questions serially:
  * a request that no change overlapped must equal the serial answer on that catalog state
    (same items, same order);
  * a request that overlapped a change (set_active flips flags in place, so a request in flight
    may see part of it) must still be a valid answer: k distinct items, each in the catalog and
    active in one of the states the request overlapped, none denied, all allowed.
Also: resident memory sampled through the run (growth from the end of warm-up to the end) and
around each catalog change, throughput, errors, and at the end the allocator's own account (glibc:
arenas, bytes in use and free in them; then the resident memory after malloc_trim(0) hands the free
pages back). The allocator is the process's: run with MALLOC_ARENA_MAX=2, or with
LD_PRELOAD=libjemalloc.so.2, to compare (the report names it). --no-check skips the serial replay
(an allocator comparison needs only the concurrent phase). Writes benchmarks/results/soak.json
(--out another name). tests/test_runtime.py runs the same driver on a tiny bundle (marked slow).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import re
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: find the benchmarks package from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import machine_info, rss_bytes, table, write_json  # noqa: E402

NEW_ID_BASE = 900_000_000  # ids of the items the writer adds


@dataclass
class Plan:
    """Everything random, drawn up front from the seed, so the serial replay asks the same."""
    requests: list[dict]
    writes: list[tuple]              # ("add_text"|"add_vec"|"pause"|"resume"|"remove", payload)


class Outcome:
    """Answers in arrays allocated up front, so that keeping them does not show as memory growth."""

    def __init__(self, n: int, k: int):
        self.before = np.zeros(n, dtype=np.int64)   # writer sequence number before / after
        self.after = np.zeros(n, dtype=np.int64)
        self.items = np.full((n, k), -1, dtype=np.int64)
        self.errors: list = []
        self.rss: list = []                          # (seconds, requests done, bytes)
        self.writes: list = []                       # (kind, requests done, bytes before, after)

    def answer(self, i: int) -> list[int]:
        return [int(x) for x in self.items[i] if x >= 0]


def make_plan(rec, n_requests: int, n_writes: int, seed: int) -> Plan:
    rng = np.random.default_rng(seed)
    state = rec.catalog.state
    ids = state.sids.item_ids
    reqs = []
    for n in range(n_requests):
        h = rng.choice(ids, size=int(rng.integers(1, 11)), replace=True).tolist()
        r = {"history": h, "k": 10, "beam": 20}
        if n % 5 == 1:
            r["deny"] = rng.choice(ids, size=20, replace=False).tolist()
        if n % 7 == 3:
            r["allow"] = rng.choice(ids, size=min(len(ids), 200), replace=False).tolist()
        reqs.append(r)
    writes, added, paused, next_id = [], [], [], NEW_ID_BASE
    kinds = ["add_text", "add_vec", "pause", "pause", "resume", "remove"]
    for _ in range(n_writes):
        kind = kinds[int(rng.integers(len(kinds)))]
        if (kind == "resume" and not paused) or (kind == "remove" and not added):
            kind = "pause"
        if kind in ("add_text", "add_vec"):
            n = int(rng.integers(1, 4))
            twins = rng.choice(ids, size=n, replace=False).tolist()
            new = list(range(next_id, next_id + n))
            next_id += n
            writes.append((kind, list(zip(new, twins))))
            added += new
        elif kind == "pause":
            victims = rng.choice(ids, size=5, replace=False).tolist()
            writes.append((kind, victims))
            paused += victims
        elif kind == "resume":
            take = paused[: int(rng.integers(1, len(paused) + 1))]
            del paused[: len(take)]
            writes.append((kind, take))
        else:
            gone = [added.pop(int(rng.integers(len(added))))]
            writes.append((kind, gone))
    return Plan(reqs, writes)


def apply_write(rec, write, vectors: dict) -> None:
    kind, payload = write
    if kind in ("add_text", "add_vec"):
        records = [dict(rec.catalog.state.records.get(twin, {"item_id": twin}), item_id=new,
                        title=f"{rec.catalog.state.title(twin)} (v2)") for new, twin in payload]
        if kind == "add_text":
            rec.add_items(records)
        else:  # callers that embed items themselves pass vectors (random ones here)
            rec.add_items(records, vectors=np.stack([vectors[new] for new, _ in payload]))
    elif kind == "pause":
        rec.set_active(payload, False)
    elif kind == "resume":
        rec.set_active(payload, True)
    else:
        rec.remove_items(payload)


def plan_vectors(plan: Plan, dim: int, seed: int) -> dict:
    rng = np.random.default_rng(seed + 1)
    return {new: rng.standard_normal(dim).astype(np.float32)
            for kind, payload in plan.writes if kind == "add_vec" for new, _ in payload}


def run_concurrent(rec, plan: Plan, vectors: dict, threads: int, warmup: int) -> tuple[Outcome, float]:
    out = Outcome(len(plan.requests), max(r["k"] for r in plan.requests))
    seq = [0]                       # even: catalog quiet; odd: a change is being applied
    done = [0]
    done_lock = threading.Lock()
    n = len(plan.requests)
    stop = threading.Event()
    t0 = time.perf_counter()

    def reader(t: int) -> None:
        try:
            for i in range(t, n, threads):
                r = plan.requests[i]
                before = seq[0]
                got = rec.recommend_batch([r])[0]
                out.before[i], out.after[i] = before, seq[0]
                out.items[i, :len(got)] = [x.item_id for x in got]
                with done_lock:
                    done[0] += 1
        except Exception as exc:  # reported, and fails the run
            out.errors.append(f"reader {t}: {exc!r}")

    def writer() -> None:
        try:
            for w_n, w in enumerate(plan.writes):
                due = warmup + (n - warmup) * (w_n + 1) // (len(plan.writes) + 1)
                while done[0] < due and not stop.is_set():
                    time.sleep(0.002)
                if stop.is_set():
                    return
                seq[0] += 1
                rss = rss_bytes()
                apply_write(rec, w, vectors)
                seq[0] += 1
                out.writes.append((w[0], done[0], rss, rss_bytes()))
        except Exception as exc:
            out.errors.append(f"writer: {exc!r}")

    def sampler() -> None:
        while not stop.is_set():
            out.rss.append((time.perf_counter() - t0, done[0], rss_bytes()))
            stop.wait(0.25)

    ts = [threading.Thread(target=reader, args=(t,)) for t in range(threads)]
    ts += [threading.Thread(target=writer), threading.Thread(target=sampler)]
    for t in ts:
        t.start()
    for t in ts[:threads]:
        t.join()
    stop.set()
    for t in ts[threads:]:
        t.join()
    out.rss.append((time.perf_counter() - t0, done[0], rss_bytes()))
    return out, time.perf_counter() - t0


def check_serially(rec, plan: Plan, vectors: dict, out: Outcome) -> dict:
    """Replay the writes on a fresh Recommender; compare every answer with the serial one."""
    by_state: dict[int, list[int]] = {}     # catalog state (writes applied) -> quiet requests
    overlapped = []
    for i in range(len(plan.requests)):
        before, after = int(out.before[i]), int(out.after[i])
        if before == after and before % 2 == 0:
            by_state.setdefault(before // 2, []).append(i)
        else:
            overlapped.append(i)
    # the states an overlapping request may have seen: those from its start to its end
    span = {i: range(int(out.before[i]) // 2, (int(out.after[i]) + 1) // 2 + 1) for i in overlapped}
    watch: dict[int, list[int]] = {}
    for i, states in span.items():
        for s in states:
            watch.setdefault(s, []).append(i)
    seen_active: dict[int, set] = {i: set() for i in overlapped}
    mismatches, invalid = [], []
    for s in range(len(plan.writes) + 1):
        if s > 0:
            apply_write(rec, plan.writes[s - 1], vectors)
        state = rec.catalog.state
        for i in by_state.get(s, []):
            if [x.item_id for x in rec.recommend_batch([plan.requests[i]])[0]] != out.answer(i):
                mismatches.append(i)
        if s in watch:
            inactive = rec.catalog.inactive()
            live = {int(x) for x in state.sids.item_ids.tolist()} - inactive
            for i in watch[s]:
                seen_active[i] |= {x for x in out.answer(i) if x in live}
    for i in overlapped:
        r, got = plan.requests[i], out.answer(i)
        ok = (len(got) == len(set(got)) == r["k"] and set(got) <= seen_active[i]
              and not set(got) & set(r.get("deny", ()))
              and (r.get("allow") is None or set(got) <= set(r["allow"])))
        if not ok:
            invalid.append(i)
    return {"exact_checked": sum(len(v) for v in by_state.values()), "overlapped": len(overlapped),
            "mismatches": len(mismatches), "invalid_overlapped": len(invalid),
            "examples": {"mismatch": mismatches[:5], "invalid": invalid[:5]}}


def _maps() -> str:
    try:
        return Path("/proc/self/maps").read_text()
    except OSError:  # pragma: no cover - not Linux
        return ""


def _glibc_malloc():
    """glibc, where glibc's malloc serves the process; None otherwise (another C library, or
    jemalloc preloaded, where glibc's arenas stay empty and their statistics would mislead)."""
    if "jemalloc" in _maps():
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_info, libc.malloc_trim, libc.open_memstream  # noqa: B018 - absent: not glibc
    except (OSError, AttributeError):
        return None
    libc.open_memstream.restype = ctypes.c_void_p
    return libc


def allocator() -> dict:
    """Which malloc serves the process, and the environment settings that tune it."""
    name = "jemalloc" if "jemalloc" in _maps() else "glibc" if _glibc_malloc() else "unknown"
    env = {k: v for k, v in os.environ.items()
           if k.startswith("MALLOC_") or k in ("GLIBC_TUNABLES", "LD_PRELOAD")}
    return {"name": name, "env": env}


def malloc_stats() -> dict:
    """The process's thread count and glibc's account of its arenas (malloc_info): how many, the
    bytes they hold, how much of that is free. glibc gives a thread that finds the arenas busy an
    arena of its own, up to MALLOC_ARENA_MAX (default 8 per core). Threads only where glibc's
    malloc is not the one in use."""
    out: dict = {}
    try:
        m = re.search(r"^Threads:\s+(\d+)", Path("/proc/self/status").read_text(), re.M)
        out["threads"] = int(m.group(1)) if m else None
    except OSError:  # pragma: no cover - not Linux
        pass
    libc = _glibc_malloc()
    if libc is None:
        return out
    buf, size = ctypes.c_char_p(), ctypes.c_size_t()
    stream = ctypes.c_void_p(libc.open_memstream(ctypes.byref(buf), ctypes.byref(size)))
    libc.malloc_info(0, stream)
    libc.fclose(stream)
    xml = ctypes.string_at(buf, size.value).decode()
    libc.free(buf)

    def mb(pattern: str, text: str) -> float:
        return round(sum(int(x) for x in re.findall(pattern, text)) / 2**20, 1)

    heaps = re.findall(r'<heap nr="\d+">(.*?)</heap>', xml, re.S)
    totals = xml.rsplit("</heap>", 1)[-1]            # over all arenas, after the last one
    held, free = r'<system type="current" size="(\d+)"/>', r'<total type="(?:fast|rest)" count="\d+" size="(\d+)"/>'
    out.update({"arenas": len(heaps), "arena_mb": mb(held, totals), "arena_free_mb": mb(free, totals),
                "mmapped_mb": mb(r'<total type="mmap" count="\d+" size="(\d+)"/>', totals),
                # [held, free] MB of each arena: the main one first
                "per_arena_mb": [[mb(held, h), mb(free, h)] for h in heaps]})
    return out


def trim() -> float | None:
    """malloc_trim(0) (glibc hands the free pages of every arena back to the kernel); the resident
    MB after it, None where glibc's malloc is not the one in use."""
    libc = _glibc_malloc()
    if libc is None:
        return None
    libc.malloc_trim(0)
    return round(rss_bytes() / 2**20, 1)


def catalog_content(rec) -> tuple:
    """What a catalog state is: its version, items with their SIDs, and the paused items."""
    state = rec.catalog.state
    return (state.version, state.sids.item_ids.tolist(), state.sids.codes.tolist(),
            sorted(rec.catalog.inactive()))


def soak(bundle, *, threads: int = 8, requests: int = 10_000, writes: int = 100, seed: int = 0,
         n_threads: int = 1, warmup_share: float = 0.1, check: bool = True) -> dict:
    """Run the soak on a bundle; `requests` per thread. Returns the report (see module doc);
    check=False skips the serial replay."""
    from genrec_lite.runtime import Recommender

    rec = Recommender.load(bundle, n_threads=n_threads, n_contexts=threads)
    rec.preload()
    try:
        total = threads * requests
        plan = make_plan(rec, total, writes, seed)
        dim = int(rec.catalog.state.sids.encoder.input_dim)
        vectors = plan_vectors(plan, dim, seed)
        warmup = int(total * warmup_share)
        rss_load = rss_bytes()
        out, seconds = run_concurrent(rec, plan, vectors, threads, warmup)
        final = catalog_content(rec)
        # before close, while the Recommender still holds all it holds: what the allocator keeps
        heap = {**allocator(), **malloc_stats(), "rss_mb_before_trim": round(rss_bytes() / 2**20, 1),
                "rss_mb_after_malloc_trim": trim()}
    finally:
        rec.close()
    if out.errors:
        return {"errors": out.errors[:10], "ok": False}
    after_warmup = [b for _, d, b in out.rss if d >= warmup] or [out.rss[-1][2]]
    result, same_final = None, True
    if check:
        replay = Recommender.load(bundle, n_threads=max(n_threads, 2), n_contexts=1)
        replay.preload()
        try:
            t = time.perf_counter()
            result = check_serially(replay, plan, vectors, out)
            result["seconds"] = round(time.perf_counter() - t, 1)
            same_final = catalog_content(replay) == final
        finally:
            replay.close()
    rss_mb = [b / 2**20 for _, _, b in out.rss]
    in_writes = [(kind, d, (a - b) / 2**20) for kind, d, b, a in out.writes if d >= warmup]
    return {
        "threads": threads, "requests_per_thread": requests, "requests": total,
        "writes": writes, "catalog_versions": final[0], "same_final_catalog": same_final,
        "seconds": round(seconds, 1), "requests_per_s": round(total / seconds, 1),
        "rss_mb": {"after_load": round(rss_load / 2**20, 1),
                   "after_warmup": round(after_warmup[0] / 2**20, 1),
                   "end": round(rss_mb[-1], 1), "max": round(max(rss_mb), 1),
                   "growth_after_warmup": round((out.rss[-1][2] - after_warmup[0]) / 2**20, 1),
                   # [requests done, MB], at most 40 points: flat after warm-up means no leak
                   "series": [[d, round(b / 2**20, 1)]
                              for _, d, b in out.rss[:: max(1, len(out.rss) // 40)]],
                   # growth after warm-up while a catalog change ran, by kind of change; the
                   # rest of growth_after_warmup happened between changes
                   "growth_in_writes": {kind: round(sum(g for k, _, g in in_writes if k == kind), 1)
                                        for kind in sorted({k for k, _, _ in in_writes})},
                   # [requests done, kind, MB] of each change after warm-up that grew it >= 1 MB
                   "write_steps": [[d, kind, round(g, 1)] for kind, d, g in in_writes if g >= 1]},
        "allocator": heap,
        "check": result, "errors": [],
        "ok": same_final and (result is None
                              or result["mismatches"] == 0 and result["invalid_overlapped"] == 0),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", required=True, help="bundle folder (genrec-lite export --out)")
    ap.add_argument("--threads", type=int, default=8, help="reader threads")
    ap.add_argument("--requests", type=int, default=10_000, help="requests per reader thread")
    ap.add_argument("--writes", type=int, default=100, help="catalog changes during the run")
    ap.add_argument("--n-threads", type=int, default=1, help="llama.cpp threads per search")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check", action=argparse.BooleanOptionalAction, default=True,
                    help="replay serially and compare every answer (--no-check: memory only)")
    ap.add_argument("--out", default="soak", help="result name under benchmarks/results/")
    args = ap.parse_args(argv)
    rep = soak(args.bundle, threads=args.threads, requests=args.requests, writes=args.writes,
               seed=args.seed, n_threads=args.n_threads, check=args.check)
    rep = {"benchmark": "soak", "bundle": str(args.bundle), "machine": machine_info("llama_cpp_python"),
           **rep}
    if rep.get("errors"):
        print("errors:", *rep["errors"], sep="\n  ")
    else:
        m, c, a = rep["rss_mb"], rep["check"] or {}, rep["allocator"]
        print(table(["threads x requests", "writes", "req/s", "exact-checked", "mismatches",
                     "overlapped", "invalid", "RSS after warm-up MB", "RSS end MB", "growth MB",
                     "malloc", "arenas", "arena free MB", "RSS after malloc_trim MB"],
                    [[f"{rep['threads']} x {rep['requests_per_thread']}", rep["writes"],
                      rep["requests_per_s"], c.get("exact_checked"), c.get("mismatches"),
                      c.get("overlapped"), c.get("invalid_overlapped"), m["after_warmup"], m["end"],
                      m["growth_after_warmup"],
                      " ".join([a["name"], *(f"{k}={v}" for k, v in a["env"].items())]),
                      a.get("arenas"), a.get("arena_free_mb"), a.get("rss_mb_after_malloc_trim")]]))
    print(f"wrote {write_json(args.out, rep)}")
    return 0 if rep["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
