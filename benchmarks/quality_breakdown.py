#!/usr/bin/env python
"""Where the generative model wins and loses against the baselines, case by case.

    python benchmarks/quality_breakdown.py --bundle runs/bundles/amazon-f16
    python benchmarks/quality_breakdown.py --bundle runs/bundles/amazon-f16 --no-sasrec
    python benchmarks/quality_breakdown.py --bundle collab=runs/bundles/amazon-collab-f16 \
        --bundle text-only=runs/bundles/amazon-f16 --no-sasrec

Scores one or more bundles (the C++ runtime, beam 20) and the baselines of benchmarks/quality.py (Markov, and
SASRec retrained with its chosen configuration) on the amazon-industrial test cases, then splits the
cases into segments:
  - repeat: the target is the last history item;
  - seen transition: (last item -> target) occurs in the training sequences (and is no repeat);
  - unseen transition: the rest;
  - target / last item whose SID names several items (collision mode `none`; the first bundle's SIDs).
Prints HR@1 / HR@10 / NDCG@10 per segment and model, and writes HR/NDCG@1,3,5,10 per segment and
model to benchmarks/results/quality_breakdown.json.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a script: find the benchmarks package from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import machine_info, table, write_json  # noqa: E402

DATA = ROOT.parent / "shared" / "data"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", action="append", default=None,
                    help="[NAME=]PATH, repeatable (default runs/bundles/amazon-f16)")
    ap.add_argument("--sasrec", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    if not (DATA / "amazon-industrial").is_dir():
        print(f"{DATA / 'amazon-industrial'} not found: this benchmark needs the shared data",
              file=sys.stderr)
        return 1
    from benchmarks.baselines.markov import Markov
    from benchmarks.baselines.run import load_protocol
    from benchmarks.quality import SASREC
    from genrec_lite.eval.metrics import segment_metrics
    from genrec_lite.runtime import Recommender

    P = load_protocol("amazon-industrial", DATA)
    cases, train = P["test"], P["final_train"]
    items = P["dataset"].catalog.item_ids
    hist = [c.history for c in cases]
    targets = np.array([c.target for c in cases])

    lists, bundles, first = {}, {}, None
    for spec in args.bundle or [str(ROOT / "runs" / "bundles" / "amazon-f16")]:
        name, _, path = spec.rpartition("=")
        name = name or ("bundle" if not args.bundle or len(args.bundle) == 1 else Path(path).name)
        rec = Recommender.load(path, n_threads=args.threads)
        first = first or rec
        out = rec.recommend_batch([{"history": h, "k": 10, "beam": 20} for h in hist])
        lists[name], bundles[name] = [[r.item_id for r in o] for o in out], path
    markov = Markov().fit(train, items)
    lists["Markov"] = markov.recommend(hist, 10).tolist()
    if args.sasrec:
        from benchmarks.baselines.sasrec import SASRec, SASRecConfig

        # as benchmarks/baselines/run.py does: epochs chosen on validation, then a retrain
        cfg = SASRecConfig(seed=0, n_threads=args.threads, **SASREC["amazon-industrial"])
        tuned = SASRec(cfg).fit(P["tune_train"], items, P["valid"])
        model = SASRec(cfg).fit(train, items, epochs=tuned.best_epoch)
        lists["SASRec"] = model.recommend(hist, 10).tolist()

    # segments
    sids = first.catalog.state.sids
    per_sid = Counter(map(bytes, np.asarray(sids.codes, dtype=np.int32)))
    shared = {int(i): per_sid[bytes(np.asarray(c, dtype=np.int32))] > 1
              for i, c in zip(sids.item_ids.tolist(), sids.codes)}
    last = np.array([h[-1] for h in hist])
    repeat = last == targets
    seen = np.array([markov.transition_counts(int(a)).get(int(t), 0) > 0
                     for a, t in zip(last, targets)]) & ~repeat
    segments = {
        "repeat (target = last item)": repeat,
        "seen transition (last -> target in training)": seen,
        "unseen transition": ~repeat & ~seen,
        "target's SID names several items": np.array([shared.get(int(t), False) for t in targets]),
        "last item's SID names several items": np.array([shared.get(int(a), False) for a in last]),
    }
    per_model = {name: segment_metrics(lst, targets, segments) for name, lst in lists.items()}
    res = {seg: {name: m.get(seg, {"n_cases": 0}) for name, m in per_model.items()}
           for seg in ["all", *segments]}
    rows = []
    for seg, by_model in res.items():
        n = next(iter(by_model.values()))["n_cases"]
        rows.append([seg, n, f"{n / len(cases):.1%}",
                     *[f"{by_model[m]['HR@1']:.3f} / {by_model[m]['HR@10']:.3f} / "
                       f"{by_model[m]['NDCG@10']:.3f}" if by_model[m]["n_cases"] else "-" for m in lists]])
    print(table(["segment", "cases", "share", *[f"{m}: HR@1 / HR@10 / NDCG@10" for m in lists]], rows))
    path = write_json("quality_breakdown", {
        "benchmark": "quality_breakdown", "machine": machine_info(), "bundles": bundles,
        "n_cases": len(cases), "segments": res})
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
