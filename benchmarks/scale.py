"""Every serving cost against catalog size: load, memory per worker, latency (also under churn),
the price of one catalog change.

    python benchmarks/scale.py --sizes 10000 100000 1000000 [--out benchmarks/results/scale.json]

For each size a synthetic catalog is made (titles, 64-d clustered vectors, L=3 levels of 256 codes
plus the extra level that numbers collisions) and written as a bundle through the real export
path: one compact model (tiny, briefly trained on the built-in synthetic data with SIDs of the
same shape, so its vocabulary holds every <a_..>..<d_..> token) is exported once and reused; each
size gets its own SID table (with the items' content vectors, as exported bundles carry them),
quantiser (RQ k-means on the 64-d vectors), items.jsonl and manifest. This measures the system, not quality.

Each size is measured in a fresh worker process (one llama.cpp thread, batch 1):
  load_s        Recommender.load to the first answer
  worker_mb     PSS of that worker after warm-up (Linux /proc/self/smaps_rollup)
  p50_ms/p99_ms recommend, 600 requests
  p99_ms_churn  the same while a writer thread applies 1,000 new items (from vectors), 10,000
                pauses and 10,000 resumes a minute, spread evenly
  add_1k_s      one add_items call of 1,000 items from vectors
  add_1_ms      one add_items call of a single item (median of 20; add_1_ms_max the slowest)
  pause_10k_ms  one set_active call on 10,000 items
  save_s / reload_s  save_catalog, then Recommender.load(bundle, catalog=...) to the first answer
  worker_mb_4   the sum of the PSS of 4 workers serving the same bundle at once
                (benchmarks/worker_memory.py's workers; model_pss_mb_4: model.gguf's share)
  worker_mb_4_forked  the same for 4 workers forked from one process that loaded the bundle
                (the preload pattern: catalog and model pages shared; the loader counted too)
The largest size also runs `genrec-lite recommend` on its bundle (cli_recommend_s). Prints a
table, writes the JSON (top-level `rows`) and a log-log plot beside it (matplotlib, if present).
`--interleaved` serves the sizes side by side in one process instead, a request to each in turn
(scale-interleaved.json): on a shared machine the fair comparison of their latencies.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: find the benchmarks package from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import worker_memory  # noqa: E402
from benchmarks._common import RESULTS, child_env, machine_info, proc_mb, table  # noqa: E402

DIM, LEVELS, K, EXTRA = 64, 3, 256, 256
CLUSTERS = 2048
KEYS = ("n_items", "load_s", "worker_mb", "p50_ms", "p99_ms", "p99_ms_churn", "add_1k_s",
        "add_1_ms", "pause_10k_ms", "worker_mb_4", "worker_mb_4_forked")
REQUESTS = 600
CHURN_PER_MIN = {"add": 1_000, "pause": 10_000, "resume": 10_000}


def pss_mb() -> float:
    return proc_mb("Pss", "/proc/self/smaps_rollup")


# --- the bundles -------------------------------------------------------------------------------
def template_bundle(work: Path) -> Path:
    """A tiny compact model whose vocabulary holds L=3 x 256 codes + 256 extra-level tokens,
    exported once (no text encoder: every item here comes with its vector)."""
    out = work / "template"
    if (out / "manifest.json").is_file():
        return out
    from genrec_lite.cli import main
    from genrec_lite.export.bundle import export_bundle

    sids, ckpt = work / "tpl-sids", work / "tpl-ckpt"
    if not (sids / "semantic_ids.json").is_file():
        assert main(["sid", "build", "--out", str(sids), "--quiet", "--codebook-size", str(K),
                     "--collisions", "extra_level", "--method", "rqkmeans", "--epochs", "5"]) == 0
    if not ckpt.is_dir():
        assert main(["train", "--sids", str(sids), "--out", str(ckpt), "--batch-size", "32",
                     "--eval-cases", "0", "--max-steps", "30", "--quiet", "--hidden", "64",
                     "--layers", "2", "--heads", "4", "--prompts", "en-seq",
                     "--tasks", "next_item=1"]) == 0
    export_bundle(ckpt, out, quant="f16", text_encoder=False)
    return out


def synthetic_catalog(n: int, seed: int = 0, dim: int = DIM) -> tuple[np.ndarray, np.ndarray]:
    """Item ids and `dim`-d vectors drawn around CLUSTERS centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(CLUSTERS, dim)).astype(np.float32)
    which = rng.integers(0, CLUSTERS, size=n)
    vectors = np.empty((n, dim), dtype=np.float32)
    for s in range(0, n, 65_536):  # the same draws as one (n, dim) call, without its float64 copy
        e = min(s + 65_536, n)
        vectors[s:e] = centres[which[s:e]] + 1.0 * rng.normal(size=(e - s, dim)).astype(np.float32)
    ids = np.arange(1, n + 1, dtype=np.int64) * 7 + 1000  # not 0..n-1: ids are the ad system's
    return ids, vectors


def new_vectors(n: int, seed: int) -> np.ndarray:
    return synthetic_catalog(n, seed)[1]


def size_bundle(work: Path, n: int) -> Path:
    from genrec_lite._io import sha256_file
    from genrec_lite.runtime.manifest import ColdStartFacts, FileFacts, Manifest
    from genrec_lite.sid import SemanticIds
    from genrec_lite.sid.collisions import extra_level
    from genrec_lite.sid.encoder import SidEncoder
    from genrec_lite.sid.rqkmeans import train_rqkmeans

    out = work / f"bundle-{n}-content"
    if (out / "manifest.json").is_file():
        return out
    tpl = template_bundle(work)
    t0 = time.perf_counter()
    ids, vectors = synthetic_catalog(n)
    sample = vectors[np.random.default_rng(1).permutation(n)[:50_000]]
    enc = SidEncoder(train_rqkmeans(sample, levels=LEVELS, codebook_size=K, iters=10, seed=0,
                                    progress=False))
    base = enc.encode(vectors)
    extra = extra_level(base)
    if int(extra.max()) >= EXTRA:
        raise SystemExit(f"{n} items: {int(extra.max()) + 1} items share one SID; the model's extra "
                         f"level holds {EXTRA}")
    sids = SemanticIds(ids, np.concatenate([base, extra[:, None]], axis=1), levels=LEVELS,
                       codebook_size=K, collisions="extra_level", extra_level_size=EXTRA,
                       encoder=enc, config={"method": "rqkmeans", "text_template": "{title}",
                                            "input_dim": DIM})
    # the items' content vectors, as an exported bundle carries them (cold start; 64 bytes an item)
    sids = sids.with_content(vectors)
    tmp = work / f"bundle-{n}-content.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    os.link(tpl / "model.gguf", tmp / "model.gguf")
    sids.save(tmp / "sids")
    words = np.array(["drill", "cordless", "torque", "wrench", "socket", "set", "steel", "18V",
                      "kit", "pro", "compact", "heavy", "duty", "blade", "saw", "bit"])
    pick = np.random.default_rng(2).integers(0, len(words), size=(n, 4))
    with open(tmp / "items.jsonl", "w", encoding="utf-8") as f:
        for i, w in zip(ids.tolist(), words[pick].tolist()):
            f.write(json.dumps({"item_id": i, "title": f"{' '.join(w)} #{i}"}) + "\n")
    m = Manifest.load(tpl)
    files = sorted(p for p in tmp.rglob("*") if p.is_file())
    m = replace(m, sid=replace(m.sid, n_items=n, input_dim=DIM, text_template="{title}"),
                cold_start=ColdStartFacts(),
                files={p.relative_to(tmp).as_posix(): FileFacts(p.stat().st_size, sha256_file(p))
                       for p in files})
    m.save(tmp / "manifest.json")
    os.replace(tmp, out)
    print(f"  bundle of {n:,} items in {time.perf_counter() - t0:.1f} s", flush=True)
    return out


# --- one worker --------------------------------------------------------------------------------
def histories(ids: np.ndarray, n: int, seed: int) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [ids[rng.integers(0, len(ids), size=int(rng.integers(3, 9)))].tolist() for _ in range(n)]


def latencies(rec, hist: list[list[int]]) -> list[float]:
    out = []
    for h in hist:
        t0 = time.perf_counter()
        rec.recommend(h, k=10)
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


def child_measure(bundle: str, work: str) -> None:
    from genrec_lite.runtime import Recommender

    row: dict = {}
    t0 = time.perf_counter()
    rec = Recommender.load(bundle, n_threads=1)
    ids = rec.catalog.state.sids.item_ids.copy()
    rec.recommend(ids[:5].tolist(), k=10)
    row["load_s"] = time.perf_counter() - t0
    row["n_items"] = len(ids)
    latencies(rec, histories(ids, 50, 1))  # warm-up
    row["worker_mb"] = pss_mb()
    lat = latencies(rec, histories(ids, REQUESTS, 2))
    row["p50_ms"], row["p99_ms"] = pct(lat, 50), pct(lat, 99)

    next_id = [int(ids.max()) + 1_000_000]

    def fresh(n: int) -> tuple[list[dict], np.ndarray]:
        first = next_id[0]
        next_id[0] += n
        items = [{"item_id": i, "title": f"new item {i}"} for i in range(first, first + n)]
        return items, new_vectors(n, seed=first % (2**31))

    # churn: spread a minute's changes over ticks of 0.1 s; a writer that falls behind catches up
    stop = threading.Event()
    applied = {"add": 0, "pause": 0, "resume": 0, "behind_s": 0.0}
    rng = np.random.default_rng(3)

    def writer() -> None:
        start = time.perf_counter()
        paused: list[np.ndarray] = []
        while not stop.is_set():
            due = (time.perf_counter() - start) / 60.0
            n_add = int(due * CHURN_PER_MIN["add"]) - applied["add"]
            n_pause = int(due * CHURN_PER_MIN["pause"]) - applied["pause"]
            n_resume = int(due * CHURN_PER_MIN["resume"]) - applied["resume"]
            if n_add > 0:
                rec.add_items(*fresh(n_add))
                applied["add"] += n_add
            if n_pause > 0:
                pick = ids[rng.integers(0, len(ids), size=n_pause)]
                rec.set_active(pick, False)
                paused.append(pick)
                applied["pause"] += n_pause
            if n_resume > 0 and paused:
                got = np.concatenate(paused)
                rec.set_active(got[:n_resume], True)
                rest = got[n_resume:]
                paused = [rest] if len(rest) else []
                applied["resume"] += min(n_resume, len(got))
            time.sleep(0.1)
        applied["seconds"] = time.perf_counter() - start

    w = threading.Thread(target=writer)
    w.start()
    try:
        lat_c = latencies(rec, histories(ids, REQUESTS, 4))
    finally:
        stop.set()
        w.join()
    row["p50_ms_churn"], row["p99_ms_churn"] = pct(lat_c, 50), pct(lat_c, 99)
    row["churn_applied"] = applied

    items, vec = fresh(1000)
    t0 = time.perf_counter()
    rec.add_items(items, vectors=vec)
    row["add_1k_s"] = time.perf_counter() - t0
    one = []
    for _ in range(20):
        items, vec = fresh(1)
        t0 = time.perf_counter()
        rec.add_items(items, vectors=vec)
        one.append((time.perf_counter() - t0) * 1e3)
    row["add_1_ms"], row["add_1_ms_max"] = statistics.median(one), max(one)
    pick = np.random.default_rng(6).choice(ids, size=10_000, replace=False)
    rec.set_active(pick, True)
    t0 = time.perf_counter()
    rec.set_active(pick, False)
    row["pause_10k_ms"] = (time.perf_counter() - t0) * 1e3
    t0 = time.perf_counter()
    rec.set_active(pick, True)
    row["resume_10k_ms"] = (time.perf_counter() - t0) * 1e3
    t0 = time.perf_counter()
    rec.remove_items(pick[:1000])
    row["remove_1k_s"] = time.perf_counter() - t0
    cat = Path(work) / f"catalog-{len(ids)}"
    t0 = time.perf_counter()
    rec.save_catalog(cat)
    row["save_s"] = time.perf_counter() - t0
    before = rec.recommend(ids[10:15].tolist(), k=10)
    n_items = rec.stats()["items"]
    rec.close()
    t0 = time.perf_counter()
    again = Recommender.load(bundle, n_threads=1, catalog=cat)
    after = again.recommend(ids[10:15].tolist(), k=10)
    row["reload_s"] = time.perf_counter() - t0
    row["reload_same"] = (again.stats()["items"] == n_items
                          and [r.item_id for r in before] == [r.item_id for r in after])
    again.close()
    shutil.rmtree(cat, ignore_errors=True)
    print(json.dumps(row), flush=True)


def interleaved(bundles: list[Path], n: int = 400) -> dict:
    """p50/p99 of several bundles served side by side in one process, one request to each in
    turn, so that every size sees the same machine load (a shared machine's noise is larger than
    the differences between sizes measured one after another)."""
    from genrec_lite.runtime import Recommender

    recs = [Recommender.load(b, n_threads=1) for b in bundles]
    hist = [histories(r.catalog.state.sids.item_ids, n, 2) for r in recs]
    for r, h in zip(recs, hist):
        latencies(r, h[:30])
    lat: list[list[float]] = [[] for _ in recs]
    for i in range(n):
        for r, h, out in zip(recs, hist, lat):
            out += latencies(r, [h[i]])
    rows = [{"n_items": int(r.stats()["items"]), "p50_ms": pct(v, 50), "p99_ms": pct(v, 99)}
            for r, v in zip(recs, lat)]
    for r in recs:
        r.close()
    return {"requests_each": n, "rows": rows}


def run_child(*args: str, timeout: float = 3600) -> dict:
    p = subprocess.run([sys.executable, __file__, *args], env=child_env(), capture_output=True,
                       text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def cli_recommend(bundle: Path, ids: list[int]) -> float:
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "genrec_lite.cli", "recommend", "--bundle", str(bundle),
                        "--history", ",".join(map(str, ids)), "--threads", "1", "--json"],
                       env=child_env(), capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        raise RuntimeError(f"genrec-lite recommend failed:\n{p.stderr[-2000:]}")
    return time.perf_counter() - t0


def plot(rows: list[dict], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    n = [r["n_items"] for r in rows]
    panels = [("latency (ms)", ["p50_ms", "p99_ms", "p99_ms_churn"]),
              ("catalog change", ["add_1_ms", "pause_10k_ms", "add_1k_s"]),
              ("memory (MB)", ["worker_mb", "worker_mb_4", "worker_mb_4_forked"]),
              ("load (s)", ["load_s", "save_s", "reload_s"])]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6))
    for ax, (title, keys) in zip(axes, panels):
        for key in keys:
            if all(key in r for r in rows):
                unit = " (s)" if key.endswith("_s") else ""
                ax.plot(n, [max(r[key], 1e-4) for r in rows], marker="o", label=key + unit)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("catalog items")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--out", type=Path, default=RESULTS / "scale.json")
    ap.add_argument("--work", type=Path, default=Path("/tmp/genrec-scale"),
                    help="Where the bundles are built (kept and reused between runs).")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--interleaved", action="store_true",
                    help="Only the side-by-side latency of the sizes' bundles (built before) into "
                         "OUT's folder as scale-interleaved.json.")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return child_measure(*a.child)
    a.work.mkdir(parents=True, exist_ok=True)
    if a.interleaved:
        got = interleaved([size_bundle(a.work, n) for n in a.sizes])
        got["machine"] = machine_info("llama_cpp_python")
        out = a.out.with_name("scale-interleaved.json")
        out.write_text(json.dumps(got, indent=1) + "\n")
        print(table(["n_items", "p50_ms", "p99_ms"], [[r[k] for k in ("n_items", "p50_ms", "p99_ms")]
                                                      for r in got["rows"]]))
        return print(f"wrote {out}")
    rows = []
    for n in a.sizes:
        print(f"{n:,} items", flush=True)
        bundle = size_bundle(a.work, n)
        row = run_child("--child", str(bundle), str(a.work))
        four = worker_memory.measure(bundle, a.workers)  # its workers report their PSS
        row["worker_mb_4"] = four["pss_sum_mb"]
        row["model_pss_mb_4"] = four["model_pss_sum_mb"]
        # the same workers forked from one loaded process (a pre-forking server)
        row["worker_mb_4_forked"] = worker_memory.measure_forked(bundle, a.workers)["pss_sum_mb"]
        if n == max(a.sizes):
            row["cli_recommend_s"] = cli_recommend(bundle, [1007, 1014, 1021])
        rows.append(row)
        print("  " + json.dumps({k: (round(v, 4) if isinstance(v, float) else v)
                                 for k, v in row.items()}), flush=True)
    print(table(KEYS, [[r[k] for k in KEYS] for r in rows]))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"benchmark": "scale", "machine": machine_info("llama_cpp_python"),
                       "requests": REQUESTS, "churn_per_minute": CHURN_PER_MIN,
                       "rows": rows}, indent=1) + "\n")
    png = a.out.with_suffix(".png")
    if plot(rows, png):
        print(f"wrote {a.out} and {png}")
    else:
        print(f"wrote {a.out} (no matplotlib: no plot)")


if __name__ == "__main__":
    main()
