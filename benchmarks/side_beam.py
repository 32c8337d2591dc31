#!/usr/bin/env python
"""Narrower side beams: quality per millisecond of the serving points of a multi-view `fit` run.

    python benchmarks/side_beam.py --fit runs/quality/amazon-industrial/fit-seed0-v3
        [--points 1x20,2x10,2x10/5,3x10/5,3x10/7,3x10/10,3x20] [--rounds 5] [--out side_beam]

A K-view request decodes its views in one C++ search and fuses their beams. The first view's
beam holds the answer's k; the views after it only vote, so they can search a narrower beam
(the "side beam", VIEWSxBEAM/SIDE). This script measures, in one run, the points `fit`
compares and a few beyond its latency limit, for a finished `fit` folder:

- **validation** (the choice's own data): the fit's one-view tuning bundle serves the one-view
  reference, its multi-view tuning bundle every other point; HR/NDCG@1,3,5,10 on *all* the
  validation cases (fit scores a 1,000-case sample), and the p50 of one request (batch 1, k 10,
  2 threads) over 40 validation histories, rounds alternating the points (`fit.serving_points`,
  the code fit runs);
- **test**: the shipped bundle (OUT/bundle: the final model, its cold start and order as fit
  chose them) answers the test cases at each multi-view point (quality only: there is no final
  one-view model to time against).

Prints both tables, writes benchmarks/results/<out>.json and docs/img/<out>.png (validation
NDCG@10 and HR@10 against the p50 ratio, the 1.5x limit marked).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a script: the benchmarks package is at the repo root
    sys.path.insert(0, str(ROOT))

from benchmarks._common import frontier_plot, machine_info, table, write_json  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
KS = ("HR@1", "HR@3", "HR@5", "HR@10", "NDCG@1", "NDCG@3", "NDCG@5", "NDCG@10")
POINTS = "1x20,2x10,2x10/5,3x10/5,3x10/7,3x10/10,3x20"


def parse_points(text: str) -> tuple[tuple, ...]:
    """'1x20,3x10/5' -> ((1, 20), (3, 10, 5))."""
    try:
        return tuple(tuple(int(x) for x in p.strip().replace("/", "x").split("x"))
                     for p in text.split(","))
    except ValueError:
        raise SystemExit(f"--points {text!r}; expected VIEWSxBEAM[/SIDE] points") from None


def beams(p: dict) -> str:
    return f"{p['beam']}" if p.get("side_beam") is None else f"{p['beam']}/{p['side_beam']}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fit", type=Path, required=True, help="a finished multi-view fit folder")
    ap.add_argument("--points", default=POINTS)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", default="side_beam")
    args = ap.parse_args(argv)

    from genrec_lite.data import Dataset, resolve_split
    from genrec_lite.fit import serving_points
    from genrec_lite.pipeline import evaluate_recommender
    from genrec_lite.runtime import Recommender

    rep = json.loads((args.fit / "report.json").read_text())
    if "views_model" not in rep:
        raise SystemExit(f"{args.fit}: a fit without a multi-view model; nothing to compare")
    points = parse_points(args.points)
    dataset = Dataset.load(args.data / rep["data"])
    search = args.fit / "search"
    multi = int(rep["views_model"]["name"].rsplit("-views", 1)[1])
    bundles = {1: search / f"{rep['chosen']}-bundle", multi: search / f"{rep['views_model']['name']}-bundle"}
    valid = resolve_split(rep["split"]["tuning"], dataset).apply(dataset, None).valid
    print(f"validation: {len(valid):,} cases, points {args.points}", flush=True)
    rows = serving_points(bundles, points, valid, dataset, threads=2, rounds=args.rounds)

    test = dataset.test_cases or resolve_split(rep["split"]["final"], dataset).apply(dataset, None).test
    test_rows = []
    with Recommender.load(args.fit / "bundle", n_threads=2) as rec:
        for p in points:
            views, beam, side = (*p, None)[:3]
            if views > len(rec.catalog.state.views):
                continue
            rec.set_search_views(views)
            rec.set_search_side_beam(side)
            m = evaluate_recommender(rec, dataset, test, beam=beam)
            test_rows.append({"views": views, "beam": beam, "side_beam": side,
                              **{k: m[k] for k in KS}})
            print(f"test {views} views, beam {beam}/{side}: HR@10 {m['HR@10']:.4f} "
                  f"NDCG@10 {m['NDCG@10']:.4f}", flush=True)

    head = ["point", "p50 ms", "vs one view"] + list(KS)
    print(f"\nvalidation ({len(valid):,} cases; the one-view point is the one-view tuning "
          "model, the others its multi-view tuning model):")
    print(table(head, [[f"{r['views']}v b{beams(r)}", f"{r['p50_ms']:.2f}",
                        f"{r['vs_reference']:.2f}x"] + [f"{r[k]:.4f}" for k in KS] for r in rows]))
    print(f"\ntest ({len(test):,} cases; the shipped bundle, {multi} views trained):")
    print(table(["point"] + list(KS), [[f"{r['views']}v b{beams(r)}"] + [f"{r[k]:.4f}" for k in KS]
                                       for r in test_rows]))
    write_json(args.out, {"benchmark": "side_beam", "machine": machine_info(),
                          "fit": str(args.fit), "seed": rep["seed"], "data": rep["data"],
                          "model_views": multi, "chosen": rep.get("serving_chosen"),
                          "validation_cases": len(valid), "test_cases": len(test),
                          "rounds": args.rounds, "validation": rows, "test": test_rows})
    plot(rows, rep["data"], ROOT / "docs" / "img" / f"{args.out}.png")
    return 0


def plot(rows: list[dict], name: str, path: Path) -> None:
    """Validation HR@10 and NDCG@10 against the p50 ratio, the 1.5x limit marked."""
    frontier_plot(
        [{"x": r["vs_reference"], "HR@10": r["HR@10"], "NDCG@10": r["NDCG@10"],
          "label": f"{r['views']}v b{beams(r)}",
          "marker": "o" if r.get("side_beam") is not None else "s",
          "color": "tab:orange" if r.get("side_beam") is not None else "tab:blue"} for r in rows],
        path, xlabel="p50 / one-view p50 (batch 1, 2 threads)", ylabel="validation", limit=1.5,
        limit_label="fit's limit, 1.5x",
        title=f"{name}: serving points of one fit run (orange: side views at a narrower beam)")


if __name__ == "__main__":
    sys.exit(main())
