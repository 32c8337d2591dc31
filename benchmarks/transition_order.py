"""Ordering the served answer by transition counts (runtime/transitions.py): what `fit`'s choice
gives on test, with and without, for finished `fit` runs, plus what it costs a request.

    python benchmarks/transition_order.py --fits runs/quality/amazon-industrial/fit-seed{0,1,2}
        [--latency-bundle OUT/bundle --requests 400] [--out transition_order]

For each fit folder (its report.json, its tuning and final bundles), the procedure `fit` runs
(eval/transitions.py): the tuning model, served at the chosen point with the chosen cold start,
answers the validation cases; each weight of the grid re-orders those answers by the counts of
the tuning split's training sequences; the best validation NDCG@10 gives the weight. The final
bundle then answers the test cases, re-ordered at that weight by the final split's counts. A
run made by a `fit` that already chose a weight is re-scored the same way (its bundle's own
weight is switched off for the "without" column). The tables are the ones the trainer records
(Transitions.from_sequences of the split's training sequences), so older runs, whose bundles
predate them, are scored as a new `fit` would serve them.

--latency-bundle: batch-1 p50 of the same requests with the re-ordering off and on, alternating
request by request (a bundle with a transition table).
Writes benchmarks/results/<out>.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: find the benchmarks package from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import machine_info, request_histories, table, write_json  # noqa: E402
from benchmarks.rerank import tuning_bundle  # noqa: E402

KS = ("HR@1", "HR@3", "HR@5", "HR@10", "NDCG@1", "NDCG@3", "NDCG@5", "NDCG@10")


def _table_of(dataset, spec: str, max_history: int):
    from genrec_lite.data import resolve_split
    from genrec_lite.runtime.transitions import Transitions

    return Transitions.from_sequences(resolve_split(spec, dataset).apply(dataset, max_history)
                                      .train.values())


def score_fit(fit_dir: Path, data_root: Path, threads: int) -> dict:
    from genrec_lite.data import Dataset, resolve_split
    from genrec_lite.eval.metrics import rank_metrics
    from genrec_lite.eval.transitions import (answers_unordered, last_known, reordered,
                                              weight_trials)
    from genrec_lite.pipeline import bundle_profiles
    from genrec_lite.runtime import Recommender

    rep = json.loads((fit_dir / "report.json").read_text())
    ds = Dataset.load(data_root / rep["data"])
    point = rep.get("serving_chosen", {"views": 1})
    tune_bundle = tuning_bundle(fit_dir, rep)
    hist = rep["final"]["train"]["max_history"]
    valid = resolve_split(rep["split"]["tuning"], ds).apply(ds, None).valid
    test = ds.test_cases or resolve_split(rep["split"]["final"], ds).apply(ds, None).test
    out = {"fit": str(fit_dir), "seed": rep["seed"], "views": point["views"],
           "beam": point.get("beam"), "cold_start": rep.get("cold_start")}

    with Recommender.load(tune_bundle, n_threads=threads) as rec:
        rec.set_cold_start(rep.get("cold_start"))
        table_ = rec.transitions or _table_of(ds, rep["split"]["tuning"], hist)
        answers = answers_unordered(rec, valid, profiles=bundle_profiles(rec, ds))
        last, cold = last_known(rec, valid), rec.catalog.state.cold
    weight, rows = weight_trials(answers, last, cold, [c.target for c in valid], table_)
    out.update(valid_cases=len(valid), valid=rows, weight=weight)

    with Recommender.load(fit_dir / "bundle", n_threads=threads) as rec:
        table_ = rec.transitions or _table_of(ds, rep["split"]["final"], hist)
        answers = answers_unordered(rec, test, profiles=bundle_profiles(rec, ds))
        last, cold = last_known(rec, test), rec.catalog.state.cold
    targets = [c.target for c in test]
    out["test_cases"] = len(test)
    out["test_without"] = {k: v for k, v in rank_metrics(
        reordered(answers, last, table_, None, cold), targets).items() if k in KS}
    out["test_with"] = {k: v for k, v in rank_metrics(
        reordered(answers, last, table_, weight, cold), targets).items() if k in KS}
    # the cases whose target is one of the bundle's cold items (never a next item in training):
    # the order must leave them where the cold-start mixture put them
    cold_t = np.isin(targets, cold)
    out["cold_target_cases"] = int(cold_t.sum())
    if cold_t.any():
        sub = [a for a, n in zip(answers, cold_t) if n]
        sub_last = [x for x, n in zip(last, cold_t) if n]
        sub_t = [t for t, n in zip(targets, cold_t) if n]
        for key, w in (("cold_target_without", None), ("cold_target_with", weight)):
            out[key] = {k: v for k, v in rank_metrics(
                reordered(sub, sub_last, table_, w, cold), sub_t).items() if k in KS}
    out["pairs"] = {"final": len(table_)}
    return out


def latency(bundle: Path, n: int, threads: int, weight: float) -> dict:
    from genrec_lite.runtime import Recommender

    with Recommender.load(bundle, n_threads=threads) as rec:
        if rec.transitions is None:
            raise SystemExit(f"{bundle} has no transition table; expected a bundle exported "
                             "with one")
        hists = request_histories(rec.catalog.state.sids.item_ids, n)
        modes = [None, weight]
        times: list[list[float]] = [[], []]
        for i, h in enumerate(hists + hists[:5]):
            for m in np.roll(np.arange(2), i).tolist():
                rec.set_transition_weight(modes[m])
                t = time.perf_counter()
                rec.recommend(h, k=10)
                if i >= 5:
                    times[m].append(time.perf_counter() - t)
    p50 = [statistics.median(t) * 1e3 for t in times]
    return {"bundle": str(bundle), "requests": n, "threads": threads, "weight": weight,
            "p50_ms_off": round(p50[0], 3), "p50_ms_on": round(p50[1], 3),
            "p50_ratio": round(p50[1] / p50[0], 4)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fits", nargs="+", required=True, help="fit OUT folders")
    ap.add_argument("--data-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--latency-bundle", default=None)
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--out", default="transition_order")
    args = ap.parse_args(argv)
    runs = [score_fit(Path(f), Path(args.data_root), args.threads) for f in args.fits]
    head = ["seed", "weight", "order", *KS]
    body = []
    for r in runs:
        for name, m in (("model", r["test_without"]), ("by transitions", r["test_with"])):
            body.append([r["seed"], r["weight"] or 0, name, *(f"{m[k]:.4f}" for k in KS)])
    for name, key in (("model", "test_without"), ("by transitions", "test_with")):
        body.append(["mean", "", name, *(f"{np.mean([r[key][k] for r in runs]):.4f}" for k in KS)])
    print(table(head, body))
    cold_rows = [[r["seed"], r["cold_target_cases"], name, *(f"{r[key][k]:.4f}" for k in KS)]
                 for r in runs if r.get("cold_target_cases")
                 for name, key in (("model", "cold_target_without"),
                                   ("by transitions", "cold_target_with"))]
    if cold_rows:
        print("\ntest cases whose target is a cold item of the bundle:")
        print(table(["seed", "cases", "order", *KS], cold_rows))
    result = {"benchmark": "transition_order", "runs": runs,
              "mean": {key: {k: float(np.mean([r[key][k] for r in runs])) for k in KS}
                       for key in ("test_without", "test_with")},
              "machine": machine_info("llama_cpp_python")}
    if args.latency_bundle:
        w = next((r["weight"] for r in runs if r["weight"]), 2.0)
        result["latency"] = latency(Path(args.latency_bundle), args.requests, args.threads, w)
        lat = result["latency"]
        print(f"latency (batch 1, {lat['requests']} requests, weight {w:g}): p50 off "
              f"{lat['p50_ms_off']} ms, on {lat['p50_ms_on']} ms, ratio {lat['p50_ratio']}")
    print(f"wrote {write_json(args.out, result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
