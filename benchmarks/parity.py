"""Parity: a bundle served by the C++ runtime against the PyTorch reference decoder it came from.

For each bundle, on the amazon test cases (or the first --limit of them): the reference decoder
(genrec_lite.train.evaluate.recommend_cases, float32, beam 20) on the bundle's checkpoint and
Recommender.recommend_batch on the bundle (llama.cpp, the bundle's quantisation); reports the
share of cases whose top-10 lists are identical, and both models' HR@10 / NDCG@10. Multi-view
bundles are compared fused (both sides fuse the same way).

    python benchmarks/parity.py --bundle f16=runs/bundles/amazon-f16 --bundle q8=runs/bundles/amazon-q8

Prints a Markdown table and writes benchmarks/results/parity.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a script: find the benchmarks package from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import machine_info, table, write_json  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "amazon-industrial"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", action="append", required=True, help="NAME=BUNDLE_DIR (repeatable)")
    ap.add_argument("--limit", type=int, default=None, help="score only the first N test cases")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    if not DATA.is_dir():
        print(f"{DATA} not found: the parity benchmark needs the shared amazon data", file=sys.stderr)
        return 1
    import torch

    from genrec_lite.data import resolve_dataset
    from genrec_lite.eval.metrics import rank_metrics
    from genrec_lite.prompts import PromptSet
    from genrec_lite.runtime import Recommender
    from genrec_lite.runtime.bundle import Bundle
    from genrec_lite.train.checkpoint import load_model
    from genrec_lite.train.evaluate import recommend_cases

    torch.set_num_threads(args.threads)
    ds = resolve_dataset(DATA)
    cases = ds.test_cases[:args.limit] if args.limit else ds.test_cases
    targets = [c.target for c in cases]
    reference: dict = {}  # checkpoint -> (lists, metrics): several bundles of one checkpoint
    rows = []
    for spec in args.bundle:
        name, _, path = spec.partition("=")
        b = Bundle.open(path, verify=False)
        ckpt = b.manifest.checkpoint.path
        if ckpt not in reference:
            model, tok, views, meta = load_model(ckpt)
            t = time.perf_counter()
            ref, _ = recommend_cases(model, tok, views, cases, PromptSet.load(meta["prompts"]),
                                     max_history=int(meta["train"]["max_history"]), k=10, beam=20)
            lists = [items for items, _ in ref]
            reference[ckpt] = (lists, rank_metrics(lists, targets), time.perf_counter() - t)
        ref_lists, ref_m, ref_s = reference[ckpt]
        rec = Recommender.load(path, n_threads=args.threads)
        # the model against the model: a bundle's cold-start mixture is on top of both and has
        # its own parity test (tests/test_cold_start.py), so it is off here
        rec.set_cold_start(None)
        t = time.perf_counter()
        got = []
        for s in range(0, len(cases), 32):
            got += [[r.item_id for r in out] for out in rec.recommend_batch(
                [{"history": list(c.history), "k": 10, "beam": 20} for c in cases[s:s + 32]])]
        seconds = time.perf_counter() - t
        rec.close()
        m = rank_metrics(got, targets)
        same = sum(a == g for a, g in zip(ref_lists, got)) / len(cases)
        rows.append({"name": name, "path": str(path), "checkpoint": ckpt,
                     "quant": b.manifest.model["gguf"].get("quant"),
                     "views": b.manifest.sid.views, "n_cases": len(cases),
                     "identical_top10": same, "bundle": m, "reference": ref_m,
                     "bundle_seconds": round(seconds, 1), "reference_seconds": round(ref_s, 1),
                     "hr10_diff": m["HR@10"] - ref_m["HR@10"]})
        print(f"{name}: identical top-10 {same:.2%}, HR@10 {m['HR@10']:.4f} vs reference "
              f"{ref_m['HR@10']:.4f}", file=sys.stderr, flush=True)
    print(table(["bundle", "quant", "views", "cases", "identical top-10", "HR@10 bundle / ref",
                 "NDCG@10 bundle / ref", "seconds bundle / ref"],
                [[r["name"], r["quant"], r["views"], r["n_cases"], f"{r['identical_top10']:.2%}",
                  f"{r['bundle']['HR@10']:.4f} / {r['reference']['HR@10']:.4f}",
                  f"{r['bundle']['NDCG@10']:.4f} / {r['reference']['NDCG@10']:.4f}",
                  f"{r['bundle_seconds']:.0f} / {r['reference_seconds']:.0f}"] for r in rows]))
    write_json("parity", {"benchmark": "parity", "machine": machine_info(), "runs": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
