"""Peak memory of the data path against the number of interactions: loading, splitting, training.

    python benchmarks/data_scale.py --interactions 1000000 10000000 [--items 50000]
        [--per-user 10] [--steps 300] [--work runs/data_scale] [--name data_scale]

For each size a data set folder is written once (kept under --work): the catalog of the built-in
synthetic generator (``make_synthetic``, --items items), ``interactions.csv`` and
``interactions.parquet`` with N / --per-user users (string ids), sequences of geometric length
(at least 3 events, mean --per-user) that step through the catalog with a per-user stride and
random detours, unix-second timestamps, the log in time order; and a random SID table (3 levels
of 64 codes plus the extra level). Each stage then runs in a fresh process:

  load_csv / load_parquet  Interactions.load of that file
  split                    Dataset.load of the folder + its split (auto: leave-one-out here)
  train                    Dataset.load + the split + Trainer setup + --steps training steps of a
                           tiny compact model (next-item task only, batch 64, one thread)

peak_mb is the process's peak resident memory (ru_maxrss: imports and every earlier step of the
stage included); base_mb its resident memory after the imports, before any data is read; for
train, loaded_mb is its resident memory once the log is loaded and stage_peak_mb the peak from
Trainer setup on (the split included; the kernel's high-water mark reset via /proc/self/clear_refs
once the log is loaded) and tok_s the non-padding tokens per second of the
training steps (first to last step). Prints a table and writes benchmarks/results/NAME.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: find the benchmarks package from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import ROOT, child_env, machine_info, proc_mb, table, write_json  # noqa: E402

LEVELS, K, EXTRA = 3, 64, 64
STAGES = ("load_csv", "load_parquet", "split", "train")
T0 = 1_600_000_000  # unix seconds: the log starts in September 2020
SPAN = 365 * 86400
GEN_USERS = 200_000  # users generated at a time (bounds the generator's memory)


# --- the data ----------------------------------------------------------------------------------
def make_folder(folder: Path, n: int, n_items: int, per_user: float, seed: int = 0) -> Path:
    """The data set folder for n interactions (written once; a finished folder has done.json)."""
    if (folder / "done.json").is_file():
        return folder
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    from genrec_lite.data import make_synthetic
    from genrec_lite.sid import SemanticIds
    from genrec_lite.sid.collisions import extra_level

    folder.mkdir(parents=True, exist_ok=True)
    catalog = make_synthetic(n_items=n_items, n_users=1, seed=seed).catalog
    catalog.save(folder / "items.jsonl")
    rng = np.random.default_rng(seed)
    base = rng.integers(0, K, size=(n_items, LEVELS)).astype(np.int32)
    codes = np.concatenate([base, extra_level(base)[:, None]], axis=1)
    SemanticIds(catalog.item_ids, codes, levels=LEVELS, codebook_size=K, collisions="extra_level",
                extra_level_size=EXTRA).save(folder / "sids")

    # sequence lengths: 3 + geometric, cut so that they add up to exactly n
    lengths = []
    total = 0
    while total < n:
        part = 3 + rng.geometric(1.0 / max(1.0, per_user - 2), size=max(1000, int(n / per_user)))
        lengths.append(part)
        total += int(part.sum())
    lengths = np.concatenate(lengths)
    ends = np.cumsum(lengths)
    n_users = int(np.searchsorted(ends, n)) + 1
    lengths = lengths[:n_users]
    lengths[-1] -= int(ends[n_users - 1]) - n
    width = len(str(n_users))
    # events per user, made a slice of users at a time, then the whole log sorted by time
    users, items, times = [], [], []
    for lo in range(0, n_users, GEN_USERS):
        ln = lengths[lo:lo + GEN_USERS]
        m = len(ln)
        owner = np.repeat(np.arange(lo, lo + m), ln)
        pos = np.arange(int(ln.sum())) - np.repeat(np.cumsum(ln) - ln, ln)
        start = rng.integers(0, n_items, size=m)[owner - lo]
        stride = rng.integers(1, 6, size=m)[owner - lo]
        item = (start + pos * stride) % n_items
        detour = rng.random(len(item)) < 0.3
        item[detour] = rng.zipf(1.3, size=int(detour.sum())) % n_items
        t0 = rng.integers(0, SPAN, size=m)[owner - lo]
        gaps = rng.exponential(86400.0, size=len(item)).astype(np.int64) + 60
        gaps[pos == 0] = 0
        cum = np.cumsum(gaps)
        t = T0 + t0 + cum - np.repeat(cum[np.cumsum(ln) - ln], ln)
        users.append(owner.astype(np.int32))
        items.append(catalog.item_ids[item].astype(np.int64))
        times.append(t.astype(np.int64))
    users, items, times = (np.concatenate(a) for a in (users, items, times))
    order = np.argsort(times, kind="stable")
    users, items, times = users[order], items[order], times[order]
    names = np.char.add("U", np.char.zfill(np.arange(n_users).astype(str), width))

    schema = pa.schema([("user_id", pa.string()), ("item_id", pa.int64()),
                        ("timestamp", pa.int64())])
    chunk = 1_000_000
    with pcsv.CSVWriter(folder / "interactions.csv", schema,
                        write_options=pcsv.WriteOptions(quoting_style="none")) as csv_out, \
            pq.ParquetWriter(folder / "interactions.parquet.tmp", schema) as pq_out:
        for lo in range(0, n, chunk):
            sl = slice(lo, lo + chunk)
            batch = pa.record_batch([pa.array(names[users[sl]]), pa.array(items[sl]),
                                     pa.array(times[sl])], schema=schema)
            csv_out.write_batch(batch)
            pq_out.write_batch(batch)
    # kept aside: the folder itself may hold one interactions file only
    os.replace(folder / "interactions.parquet.tmp", folder.parent / f"{folder.name}.parquet")
    (folder / "done.json").write_text(json.dumps({"interactions": n, "users": n_users,
                                                  "items": n_items}) + "\n")
    return folder


# --- the stages (each in its own process) ------------------------------------------------------
def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_stage(stage: str, folder: Path, steps: int) -> dict:
    import torch  # noqa: F401  (every stage pays the same imports: base_mb is comparable)

    from genrec_lite.data import Dataset, Interactions
    from genrec_lite.data.split_spec import resolve_split

    base = proc_mb("VmRSS")
    t0 = time.perf_counter()
    out: dict = {"base_mb": round(base, 1)}
    if stage in ("load_csv", "load_parquet"):
        path = folder / "interactions.csv" if stage == "load_csv" else \
            folder.parent / f"{folder.name}.parquet"
        inter = Interactions.load(path)
        out["rows"] = len(inter)
    else:
        ds = Dataset.load(folder)
        if stage == "train":  # the Trainer makes the split itself (holding a second one would
            out.update(train_stage(ds, folder, steps))  # count it twice)
        else:
            plan = resolve_split("auto", ds)
            split = plan.apply(ds, 10)
            out.update(split=plan.spec, train_users=len(split.train),
                       test_cases=len(split.test))
    out["wall_s"] = round(time.perf_counter() - t0, 2)
    out["peak_mb"] = round(_peak_mb(), 1)
    return out


def train_stage(ds, folder: Path, steps: int) -> dict:
    import shutil

    import genrec_lite.train.trainer as trainer_mod
    from genrec_lite.sid import SemanticIds
    from genrec_lite.train.trainer import TrainConfig, Trainer

    try:  # the high-water mark from here on (Linux: 5 resets VmHWM)
        Path("/proc/self/clear_refs").write_text("5")
        reset = True
    except OSError:
        reset = False
    load_mb = proc_mb("VmRSS")
    counted = {"tokens": 0, "first": None, "last": None}
    pack = trainer_mod._pack

    def counting_pack(examples, pad, device):
        now = time.perf_counter()
        counted["first"] = counted["first"] or now
        counted["last"] = now
        packed = pack(examples, pad, device)
        counted["tokens"] += int(packed[1].sum())
        return packed

    trainer_mod._pack = counting_pack
    cfg = TrainConfig(compact={"hidden_size": 48, "num_layers": 2, "num_heads": 4,
                               "num_kv_heads": 4}, task_weights={"next_item": 1.0}, epochs=1,
                      batch_size=64, max_steps=steps, eval_cases=0, save_every=10 ** 9,
                      num_threads=1, split="leave-one-out")
    out_dir = folder.parent / f"{folder.name}-run"
    shutil.rmtree(out_dir, ignore_errors=True)
    t0 = time.perf_counter()
    tr = Trainer(ds, SemanticIds.load(folder / "sids"), out_dir, cfg, progress=False,
                 resume=False, device="cpu")
    setup_s = time.perf_counter() - t0
    res = tr.fit()
    # tokens of every step but the last, over the time from the first step to the last one
    last_tokens = counted["tokens"]
    span = (counted["last"] or 0) - (counted["first"] or 0)
    shutil.rmtree(out_dir, ignore_errors=True)
    return {"split": tr.split_plan.spec, "train_users": len(tr.split.train),
            "test_cases": len(tr.split.test), "loaded_mb": round(load_mb, 1),
            "setup_s": round(setup_s, 2), "steps": res["steps"],
            "tok_s": round(last_tokens * (res["steps"] - 1) / max(1, res["steps"]) / span, 1)
            if span > 0 else None,
            "stage_peak_mb": round(proc_mb("VmHWM"), 1) if reset else None}


# --- driver ------------------------------------------------------------------------------------
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--interactions", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--items", type=int, default=50_000)
    ap.add_argument("--per-user", type=float, default=10.0)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "data_scale")
    ap.add_argument("--name", default="data_scale")
    ap.add_argument("--stage", help=argparse.SUPPRESS)  # internal: run one stage, print JSON
    ap.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.stage:
        print("RESULT " + json.dumps(run_stage(args.stage, args.folder, args.steps)))
        return 0
    rows = []
    for n in args.interactions:
        t0 = time.perf_counter()
        folder = make_folder(args.work / f"n{n}", n, args.items, args.per_user)
        info = json.loads((folder / "done.json").read_text())
        print(f"{n:,} interactions, {info['users']:,} users, {info['items']:,} items "
              f"(data ready in {time.perf_counter() - t0:.0f} s)", flush=True)
        for stage in args.stages:
            cmd = [sys.executable, __file__, "--stage", stage, "--folder", str(folder),
                   "--steps", str(args.steps)]
            env = child_env()
            env.setdefault("OMP_NUM_THREADS", "1")
            res = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if res.returncode != 0:
                print(res.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"stage {stage} at {n:,} failed")
            got = json.loads(next(line for line in res.stdout.splitlines()
                                  if line.startswith("RESULT "))[len("RESULT "):])
            row = {"interactions": n, "users": info["users"], "items": info["items"],
                   "stage": stage, **got}
            rows.append(row)
            print(f"  {stage}: {json.dumps(got)}", flush=True)
            path = save(args, rows)  # after every stage: a long run stopped keeps what it measured
    keys = ("interactions", "stage", "wall_s", "base_mb", "peak_mb", "stage_peak_mb", "tok_s")
    print(table(keys, [[r.get(k) for k in keys] for r in rows]))
    print(f"wrote {path}")
    return 0


def save(args, rows: list[dict]) -> Path:
    return write_json(args.name, {"machine": machine_info("torch", "pyarrow"),
                                  "args": {k: (str(v) if isinstance(v, Path) else v)
                                           for k, v in vars(args).items()
                                           if k not in ("stage", "folder")},
                                  "rows": rows})


if __name__ == "__main__":
    raise SystemExit(main())
