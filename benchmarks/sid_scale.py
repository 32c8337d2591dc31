"""Building semantic IDs from given vectors against catalog size: wall time, CPU time and peak
memory of each stage.

    python benchmarks/sid_scale.py --sizes 100000 1000000 --dims 64 384 [--method rqvae]
        [--cli 1000000:64] [--work /work/scratch/sid-scale] [--out benchmarks/results/sid_scale.json]

For each size and dimension a synthetic catalog (benchmarks/scale.py's generator: vectors drawn
around 2,048 centres; items.jsonl with an id and a title a row, the vectors as a .npy) is written
once under --work, then a fresh process runs what `genrec-lite sid build --items ITEMS --vectors
V.npy --collisions extra_level` runs, stage by stage (the library's own code: build_sid_views
reports its steps through its `stage` hook):

  catalog     Catalog.load of items.jsonl
  vectors     load_item_vectors of the .npy (checked, float32, catalog order)
  train       the quantiser on its sample (SidConfig.train_sample, default 16,384 items)
  assign      every item's codes: the encoder MLP in numpy, the C++ residual lookup
  collisions  the extra level that numbers items sharing codes
  content     the content vectors (PCA on a 100k sample, every item projected to int8)
  save        SemanticIds.save: arrays.npz, sids.tsv, report.json
  collab      (--collab) PPMI + SVD co-occurrence vectors from synthetic sequences (10 events a
              user, n/2 users) and the joined vectors; run separately from the build above

Per stage: wall_s, cpu_s (user + system of the process, all threads) and peak_mb, the stage's
own resident peak (VmHWM, reset before each stage through /proc/self/clear_refs); rss_mb is the
resident size when the stage ends. `--cli N:D` also runs the CLI command itself on that catalog
under /usr/bin/time -v (wall and maximum RSS). Prints a table and writes the JSON with the load
average before and after each run: on a shared machine wall times are pessimistic (CPU time is
the better guide to an idle machine).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: find the benchmarks package from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import RESULTS, ROOT, child_env, machine_info, proc_mb, table  # noqa: E402

STAGES = ("catalog", "vectors", "train", "assign", "collisions", "content", "save", "collab")


def inputs(work: Path, n: int, dim: int) -> tuple[Path, Path]:
    """items.jsonl and vectors.npy of an n-item catalog with dim-d vectors (written once)."""
    from benchmarks.scale import synthetic_catalog

    folder = work / f"n{n}"
    folder.mkdir(parents=True, exist_ok=True)
    items, vecs = folder / "items.jsonl", folder / f"vectors{dim}.npy"
    if not vecs.is_file() or not items.is_file():
        ids, vectors = synthetic_catalog(n, dim=dim)
        if not items.is_file():
            with open(items.with_suffix(".tmp"), "w", encoding="utf-8") as f:
                f.writelines(f'{{"item_id": {i}, "title": "item {i}"}}\n' for i in ids.tolist())
            os.replace(items.with_suffix(".tmp"), items)
        if not vecs.is_file():
            np.save(vecs.with_suffix(".tmp.npy"), vectors)
            os.replace(vecs.with_suffix(".tmp.npy"), vecs)
    return items, vecs


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Stages:
    """Context manager factory for build_sid_views' `stage` hook; records one row per stage."""

    def __init__(self):
        self.rows: dict[str, dict] = {}

    @contextmanager
    def __call__(self, name: str):
        try:  # reset the peak resident size, so VmHWM is this stage's own
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass
        wall, cpu = time.perf_counter(), _cpu_s()
        yield
        self.rows[name] = {"wall_s": round(time.perf_counter() - wall, 2),
                           "cpu_s": round(_cpu_s() - cpu, 2),
                           "peak_mb": round(proc_mb("VmHWM", default=0.0), 1),
                           "rss_mb": round(proc_mb("VmRSS", default=0.0), 1)}


def synthetic_sequences(ids: np.ndarray, seed: int = 0, length: int = 10) -> list[np.ndarray]:
    """n/2 users of `length` events each: runs within one id neighbourhood, so items co-occur."""
    rng = np.random.default_rng(seed)
    users = max(1, len(ids) // 2)
    start = rng.integers(0, len(ids), size=users)
    steps = rng.integers(-20, 21, size=(users, length)).cumsum(axis=1)
    return list(ids[(start[:, None] + steps) % len(ids)])


def child(n: int, dim: int, method: str, work: Path, collab: bool, epochs: int | None) -> dict:
    from genrec_lite.data import Catalog
    from genrec_lite.sid.build import SidConfig, build_sid_views
    from genrec_lite.sid.given_vectors import load_item_vectors

    items, vecs = inputs(work, n, dim)
    st = Stages()
    with st("catalog"):
        catalog = Catalog.load(items)
    with st("vectors"):
        vectors = load_item_vectors(vecs, catalog)
    cfg = SidConfig(method=method, collisions="extra_level", embedding_model=None, epochs=epochs)
    built = build_sid_views(catalog, cfg, progress=False, vectors=vectors, stage=st)
    with st("save"):
        built.save(work / f"n{n}" / f"sids-{dim}-{method}")
    report = built.primary.report()
    if collab:
        from genrec_lite.sid.collab import cooccurrence_vectors, joined_vectors

        del built
        seqs = synthetic_sequences(catalog.item_ids)
        with st("collab"):
            cf, has = cooccurrence_vectors(seqs, catalog.item_ids)
            joined_vectors(vectors, cf, has, 1.0)
    return {"n_items": n, "dim": dim, "method": method, "stages": st.rows,
            "train_items": report.get("train_items"), "collision_rate": report["collision_rate"],
            "base_collision_rate": report["base_collision_rate"],
            "max_items_per_sid": report["max_items_per_sid"],
            "peak_mb_process": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def run_cli(work: Path, n: int, dim: int, method: str, epochs: int | None) -> dict:
    """The done-when command itself under /usr/bin/time -v."""
    items, vecs = inputs(work, n, dim)
    out = work / f"n{n}" / f"cli-sids-{dim}-{method}"
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "genrec_lite.cli", "sid", "build",
           "--items", str(items), "--vectors", str(vecs), "--out", str(out), "--method", method,
           "--quiet"] + (["--epochs", str(epochs)] if epochs else [])
    load = list(os.getloadavg())
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=child_env(), cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"sid build failed:\n{proc.stderr[-3000:]}")
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    cpu = [float(m) for m in re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", proc.stderr)]
    report = json.loads((out / "report.json").read_text())
    return {"n_items": n, "dim": dim, "method": method, "command": " ".join(cmd[2:]),
            "wall_s": round(wall, 1), "cpu_s": round(sum(cpu), 1),
            "max_rss_mb": round(int(rss.group(1)) / 1024, 1) if rss else None,
            "report_n_items": report["n_items"], "train_items": report.get("train_items"),
            "load_average_before": load, "load_average_after": list(os.getloadavg())}


def write(a: argparse.Namespace, runs: list[dict], clis: list[dict]) -> None:
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"benchmark": "sid_scale", "machine": machine_info("torch"),
                                 "method": a.method, "epochs": a.epochs, "runs": runs, "cli": clis},
                                indent=1) + "\n")


def print_tables(runs: list[dict], clis: list[dict]) -> None:
    rows = [(r["n_items"], r["dim"], name, s["wall_s"], s["cpu_s"], s["peak_mb"])
            for r in runs for name in STAGES if (s := r["stages"].get(name))]
    print(table(("items", "dim", "stage", "wall s", "cpu s", "peak MB"), rows))
    if clis:
        print(table(("items", "dim", "CLI wall s", "cpu s", "max RSS MB", "load avg"),
                    [(c["n_items"], c["dim"], c["wall_s"], c["cpu_s"], c["max_rss_mb"],
                      c["load_average_before"][0]) for c in clis]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--dims", type=int, nargs="+", default=[64, 384])
    ap.add_argument("--method", default="rqvae", choices=["rqvae", "rqkmeans"])
    ap.add_argument("--epochs", type=int, default=None,
                    help="RQ-VAE epochs / RQ-KMeans iterations (default: the library's)")
    ap.add_argument("--collab", action="store_true", help="also time the co-occurrence vectors")
    ap.add_argument("--cli", nargs="*", default=[], metavar="N:D",
                    help="run the CLI command under /usr/bin/time -v on these catalogs")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "sid-scale")
    ap.add_argument("--out", type=Path, default=RESULTS / "sid_scale.json")
    ap.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(*a.child, a.method, a.work, a.collab, a.epochs)))
        return
    runs, clis = [], []
    for dim in a.dims:      # the first dimension at every size first
        for n in a.sizes:
            inputs(a.work, n, dim)
            load = list(os.getloadavg())
            cmd = [sys.executable, __file__, "--child", str(n), str(dim), "--method", a.method,
                   "--work", str(a.work)] + (["--collab"] if a.collab else []) + \
                (["--epochs", str(a.epochs)] if a.epochs else [])
            proc = subprocess.run(cmd, capture_output=True, text=True, env=child_env())
            if proc.returncode != 0:
                raise SystemExit(f"{n} x {dim} failed:\n{proc.stderr[-3000:]}")
            got = json.loads(proc.stdout.strip().splitlines()[-1])
            got.update({"load_average_before": load, "load_average_after": list(os.getloadavg())})
            runs.append(got)
            write(a, runs, clis)  # after every run: a long series interrupted keeps what it measured
            total = sum(s["wall_s"] for s in got["stages"].values())
            print(f"  {n:,} x {dim}: {total:.0f} s over the stages, process peak "
                  f"{got['peak_mb_process']:.0f} MB, load {load[0]:.1f}", flush=True)
    for spec in a.cli:
        n, dim = (int(x) for x in spec.split(":"))
        clis.append(run_cli(a.work, n, dim, a.method, a.epochs))
        write(a, runs, clis)
        print(f"  CLI {n:,} x {dim}: {clis[-1]['wall_s']} s, max RSS {clis[-1]['max_rss_mb']} MB",
              flush=True)
    print_tables(runs, clis)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
