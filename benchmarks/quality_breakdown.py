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
Prints HR@1 / HR@10 / NDCG@10 per segment and model, and a second table on the first place: how
often each model puts the newest history item there and how often that is right (against the
share of test and validation cases whose target is that item: a repeat-rate shift between the
two shows here). Writes HR/NDCG@1,3,5,10 per segment and model, and the first-place rows, to
benchmarks/results/<--out>.json. Bundles are served as shipped (their user profiles where they
were trained with them; `--beam 0`: each bundle's own serving beam).
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

from benchmarks._common import (FIRST_PLACE_HEAD, first_place_cells, machine_info,  # noqa: E402
                                table, write_json)

DATA = ROOT.parent / "shared" / "data"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", action="append", default=None,
                    help="[NAME=]PATH, repeatable (default runs/bundles/amazon-f16)")
    ap.add_argument("--sasrec", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--beam", type=int, default=20, help="0: each bundle's own serving beam")
    ap.add_argument("--out", default="quality_breakdown", help="name of the JSON in results/")
    args = ap.parse_args(argv)
    if not (DATA / "amazon-industrial").is_dir():
        print(f"{DATA / 'amazon-industrial'} not found: this benchmark needs the shared data",
              file=sys.stderr)
        return 1
    from benchmarks.baselines.markov import Markov
    from benchmarks.baselines.run import load_protocol
    from benchmarks.quality import SASREC
    from genrec_lite.eval.metrics import first_place, segment_metrics
    from genrec_lite.pipeline import bundle_profiles
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
        prof = bundle_profiles(rec, P["dataset"]) or {}
        out = rec.recommend_batch([{"history": h, "k": 10, "beam": args.beam or None,
                                    "profile": prof.get(c.user_id)}
                                   for h, c in zip(hist, cases)])
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
    # the first place: the newest history item there, and how often it is the target
    valid_repeat = float(np.mean([c.target == c.history[-1] for c in P["valid"] if c.history]))
    first_rows, first_res = [], {}
    for name, lst in lists.items():
        first_res[name] = first_place(lst, last, targets)
        first_rows.append([name, *first_place_cells(first_res[name])])
    print(f"\ntargets that are the newest history item: test {repeat.mean():.1%}, validation "
          f"{valid_repeat:.1%}")
    print(table(["model", *FIRST_PLACE_HEAD], first_rows))
    path = write_json(args.out, {
        "benchmark": "quality_breakdown", "machine": machine_info(), "bundles": bundles,
        "beam": args.beam or "bundle", "n_cases": len(cases), "segments": res,
        "repeat_share": {"test": float(repeat.mean()), "validation": valid_repeat},
        "first_place": first_res})
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
