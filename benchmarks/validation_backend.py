#!/usr/bin/env python
"""What one validation costs during training: the reference decoder against the C++ runtime.

    python benchmarks/validation_backend.py --fit runs/quality/ml-100k/fit-seed0-v5
        [--data ../shared/data] [--rounds 3] [--threads 2] [--out validation_backend_ml-100k]

For each tuning model of a finished `fit` folder (OUT/search/*, the candidates and the
multi-view model) this scores the validation sample the trainer scores every epoch (its
eval_cases, seed and beam) both ways, rounds alternating:

- **reference**: `pipeline.evaluate_checkpoint`, the torch decoder (TrainConfig
  eval_backend="reference");
- **runtime**: `train.snapshot.RuntimeSnapshot.refresh` (write the f32 GGUF of the live
  weights, load it) plus `pipeline.evaluate_recommender`, the C++ search (eval_backend="runtime",
  what `fit` uses on a CPU). The bundle's one-off export, done once per run, is timed apart.

Prints the table (median seconds per validation, the ratio, and NDCG@10 both ways: they should
agree) and writes benchmarks/results/<out>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a script: the benchmarks package is at the repo root
    sys.path.insert(0, str(ROOT))

from benchmarks._common import machine_info, median, table, write_json  # noqa: E402

DATA = ROOT.parent / "shared" / "data"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fit", type=Path, required=True, help="a finished fit folder")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None, help="results name (default validation_backend_DATA)")
    args = ap.parse_args(argv)

    import torch

    from genrec_lite.data import Dataset
    from genrec_lite.data.split_spec import make_split
    from genrec_lite.pipeline import evaluate_checkpoint, evaluate_recommender, load_checkpoint
    from genrec_lite.train.evaluate import validation_sample
    from genrec_lite.train.snapshot import RuntimeSnapshot

    torch.set_num_threads(args.threads)
    rep = json.loads((args.fit / "report.json").read_text())
    dataset = Dataset.load(args.data / rep["data"])
    models = sorted(p for p in (args.fit / "search").iterdir()
                    if p.is_dir() and (p / "genrec.json").is_file())
    rows = []
    for ckpt in models:
        loaded = load_checkpoint(ckpt, device="cpu")
        loaded.model.eval()
        cfg = loaded.train_config
        split = make_split(dataset, cfg["split"], cfg["max_history"])
        cases = validation_sample(split.valid, cfg["eval_cases"], cfg["seed"])
        t0 = time.perf_counter()
        snap = RuntimeSnapshot(ckpt, args.threads)
        export_s = time.perf_counter() - t0
        ref_s, run_s = [], []
        with snap:
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                ref = evaluate_checkpoint(loaded, dataset, cases, beam=cfg["eval_beam"])
                ref_s.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                run = evaluate_recommender(snap.refresh(loaded.model, loaded.tokenizer), dataset,
                                           cases, beam=cfg["eval_beam"])
                run_s.append(time.perf_counter() - t0)
        row = {"model": ckpt.name, "views": len(loaded.sids), "max_history": cfg["max_history"],
               "cases": len(cases), "beam": cfg["eval_beam"], "reference_s": ref_s,
               "runtime_s": run_s, "export_once_s": round(export_s, 2),
               "reference_median_s": median(ref_s), "runtime_median_s": median(run_s),
               "speedup": median(ref_s) / median(run_s),
               "reference": {k: ref[k] for k in ("HR@10", "NDCG@10")},
               "runtime": {k: run[k] for k in ("HR@10", "NDCG@10")}}
        rows.append(row)
        print(f"{ckpt.name}: reference {row['reference_median_s']:.1f} s, runtime "
              f"{row['runtime_median_s']:.1f} s ({row['speedup']:.2f}x); NDCG@10 "
              f"{ref['NDCG@10']:.4f} / {run['NDCG@10']:.4f}", flush=True)
        del loaded

    print(f"\n{rep['data']}: one validation of each tuning model ({args.threads} threads, "
          f"median of {args.rounds} rounds)")
    print(table(["model", "views", "history", "cases", "reference s", "runtime s", "speedup",
                 "export once s", "NDCG@10 ref", "NDCG@10 runtime"],
                [[r["model"], r["views"], r["max_history"], r["cases"],
                  f"{r['reference_median_s']:.1f}", f"{r['runtime_median_s']:.1f}",
                  f"{r['speedup']:.2f}x", f"{r['export_once_s']:.1f}",
                  f"{r['reference']['NDCG@10']:.4f}", f"{r['runtime']['NDCG@10']:.4f}"]
                 for r in rows]))
    path = write_json(args.out or f"validation_backend_{rep['data']}",
                      {"benchmark": "validation_backend", "machine": machine_info("torch"),
                       "fit": str(args.fit), "data": rep["data"], "threads": args.threads,
                       "rounds": args.rounds, "rows": rows})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
