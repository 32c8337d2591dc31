"""How the order of a timing moves fit's serving-point ratios: one-view model against the
multi-view points, with both bundles loaded (as fit times them) or one at a time.

    python benchmarks/point_timing.py --fit runs/quality/amazon-industrial/fit-seed0-v8 \
        [--data-root ../shared/data] [--rounds 15] [--runs 2]

For a finished `fit` run: its one-view tuning bundle (fit's latency reference) at beam 20, the
multi-view tuning bundle's first view at beam 20, and its two- and three-view points (10, and
10/5), every one with cold start on and the multi-view points with a re-ranker, as fit times
them (fit.timing_cold_start, fit.timing_reranker), over the first 40 histories of fit's
validation sample, batch 1, 2 threads. Three orders: "rotated" (both bundles loaded, the modes
in turn request by request), "blocks" (both loaded, each mode's 40 requests in a row: fit's
order) and "alone" (blocks, only the bundle of the mode being timed loaded, as a server runs
one). Prints p50 per mode and order and the ratios to the one-view model; writes
benchmarks/results/point_timing.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: find the benchmarks package from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import machine_info, table, write_json  # noqa: E402

N_HISTORIES = 40


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fit", required=True, help="a fit OUT folder")
    ap.add_argument("--data-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--runs", type=int, default=2, help="repeats of each order")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    from genrec_lite import fit as F
    from genrec_lite import pipeline
    from genrec_lite.data import Dataset, resolve_split
    from genrec_lite.runtime import Recommender
    from genrec_lite.train.evaluate import validation_sample

    fit_dir = Path(args.fit)
    rep = json.loads((fit_dir / "report.json").read_text())
    ds = Dataset.load(Path(args.data_root) / rep["data"])
    valid = resolve_split(rep["split"]["tuning"], ds).apply(ds, None).valid
    cases = validation_sample(valid, F.VALID_CASES, rep["seed"])[:N_HISTORIES]
    paths = {"one": fit_dir / "search" / f"{rep['chosen']}-bundle",
             "multi": fit_dir / "search" / f"{rep['views_model']['name']}-bundle"}
    reranker = F.timing_reranker()
    # (name, bundle, views, beam, side beam, with a re-ranker)
    modes = [("one-view model, beam 20", "one", 1, 20, None, False),
             ("multi-view model, first view, beam 20", "multi", 1, 20, None, False),
             ("2 views at 10", "multi", 2, 10, None, True),
             ("3 views at 10/5", "multi", 3, 10, 5, True)]

    def load(key):
        rec = Recommender.load(paths[key], n_threads=args.threads)
        if len(rec.catalog.state.cold):
            rec.set_cold_start(F.timing_cold_start())
        return rec

    def call(rec, mode, case, prof) -> float:
        _, _, views, beam, side, rr = mode
        rec.set_search_views(views)
        rec.set_search_side_beam(side)
        rec.set_reranker(reranker if rr and rec.transitions is not None else None)
        req = {"history": list(case.history), "k": 10, "beam": beam, "profile": prof.get(case.user_id)}
        t = time.perf_counter()
        rec.recommend_batch([req])
        return time.perf_counter() - t

    with Recommender.load(paths["one"]) as rec:
        prof = pipeline.bundle_profiles(rec, ds) or {}

    def run(order: str) -> list[float]:
        times: list[list[float]] = [[] for _ in modes]
        recs = {} if order == "alone" else {k: load(k) for k in paths}
        try:
            for r in range(args.rounds + 1):   # round 0 warms up, untimed
                if order == "rotated":
                    for c in cases:
                        for i, m in enumerate(modes):
                            t = call(recs[m[1]], m, c, prof)
                            if r:
                                times[i].append(t)
                    continue
                for i, m in enumerate(modes):
                    if order == "alone" and m[1] not in recs:
                        for rec in recs.values():
                            rec.close()
                        recs = {m[1]: load(m[1])}
                        for c in cases[:5]:   # the fresh context warms up, untimed
                            call(recs[m[1]], m, c, prof)
                    for c in cases:
                        t = call(recs[m[1]], m, c, prof)
                        if r:
                            times[i].append(t)
        finally:
            for rec in recs.values():
                rec.close()
        return [float(np.median(t)) * 1e3 for t in times]

    results = {order: [run(order) for _ in range(args.runs)] for order in ("rotated", "blocks", "alone")}
    rows = []
    for order, runs in results.items():
        for n, p50 in enumerate(runs):
            rows.append([order, n + 1, *[f"{p:.2f} ms ({p / p50[0]:.2f}x)" for p in p50]])
    print(table(["order", "run", *[m[0] for m in modes]], rows))
    path = write_json("point_timing", {
        "benchmark": "point_timing", "fit": str(fit_dir), "machine": machine_info(),
        "threads": args.threads, "rounds": args.rounds, "histories": N_HISTORIES,
        "modes": [m[0] for m in modes], "p50_ms": results})
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
