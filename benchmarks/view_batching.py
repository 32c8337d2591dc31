#!/usr/bin/env python
"""What decoding K SID views in one C++ search costs, against one search per view.

    python benchmarks/view_batching.py --bundle runs/fit-amazon/bundle
    python benchmarks/view_batching.py --bundle B --multi-view-bundle B3 --rounds 5

A K-view model answers a request with K constrained searches, one per view, each over its own
trie; the runtime now runs them as one search (LlamaContext.search_spaces: the views of a request
share every decode call). The model's cost per request depends on the backbone, the prompt length
and the beams, not on the views' tries or weights, so this measures both ways on any bundle: K
copies of each sampled request, each copy in its own search space (the bundle's trie), served
   (a) one search per copy, one after the other (the runtime before search_spaces), and
   (b) all K copies in one search_spaces call,
with beam b per copy, against the reference: one request, one view, beam 20. Batch 1, k 10,
n_threads 2, the same fixed sample of test histories for every point; rounds alternate the
order of the points so all of them see the same machine, and each p50 is the median over every
call of every round. Prints a table and writes benchmarks/results/view_batching.json.

With --multi-view-bundle (a K-view bundle of the same backbone), also its real requests: served
by the Recommender with n = 1..K views decoded (all in one call) against the one-view bundle
served the same way, and its views searched one after the other (the previous runtime's path).
Its latency does not depend on its weights, so any bundle of the recipe measures it.

Quality is not measured here: (b) returns the beams (a) returns, up to llama.cpp's float rounding
by batch shape (tests/test_views.py), so a point's HR/NDCG is the one view_frontier.py measures
for the same views and beam.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a script: the benchmarks package is at the repo root
    sys.path.insert(0, str(ROOT))

from benchmarks._common import machine_info, median, table, write_json  # noqa: E402

DATA = ROOT.parent / "shared" / "data"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", type=Path, required=True, help="a one-view bundle (fit's OUT/bundle)")
    ap.add_argument("--dataset", default="amazon-industrial", help="test histories from ../shared/data")
    ap.add_argument("--views", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--beams", type=int, nargs="+", default=[20, 10, 7, 5])
    ap.add_argument("--multi-view-bundle", type=Path, default=None,
                    help="a K-view bundle of the same backbone: also time it served (all views in "
                         "one call) and as one search per view, at beams >= 10")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=40, help="sampled requests per point and round")
    args = ap.parse_args(argv)
    if not (DATA / args.dataset).is_dir():
        log(f"{DATA / args.dataset} not found: this benchmark needs the shared data sets")
        return 1
    if any(k < 1 for k in args.views) or any(b < 1 for b in args.beams):
        raise SystemExit(f"--views {args.views} / --beams {args.beams}: expected positive integers")
    from genrec_lite import pipeline
    from genrec_lite.data import Dataset
    from genrec_lite.runtime import Recommender

    dataset = Dataset.load(DATA / args.dataset)
    test = dataset.test_cases
    if not test:
        raise SystemExit(f"{DATA / args.dataset} has no test cases")
    rec = Recommender.load(args.bundle, n_threads=2)
    multi = Recommender.load(args.multi_view_bundle, n_threads=2) if args.multi_view_bundle else None
    try:
        if rec.search_views != 1:
            raise SystemExit(f"{args.bundle}: a {rec.search_views}-view bundle; expected one view")
        state, model = rec.catalog.state, rec.backend.model
        space = (state.tries[0][0], rec.token_tables[0], state.tries[0][1])
        profiles = pipeline.bundle_profiles(rec, dataset)
        sample = test[:: max(1, len(test) // args.calls)][:args.calls]
        users = [profiles.get(c.user_id) if profiles else None for c in sample]
        prompts = [rec.backend.tokenize(rec._prompt(state, list(c.history), u))
                   for c, u in zip(sample, users)]
        ref = ("one view", 1, 20)
        pts = [ref] + [("one view", 1, b) for b in args.beams if b != 20 and 1 in args.views]
        pts += [(mode, k, b) for k in args.views if k > 1 for b in args.beams
                for mode in ("per view", "one call")]
        served = ("one-view bundle, served", 1, 20)
        if multi is not None:
            rec.set_cold_start(None)
            pts.append(served)
            multi.set_cold_start(None)  # the model's search alone, like the rows above
            n_multi = len(multi.catalog.state.views)
            mstate = multi.catalog.state
            mprompts = [[multi.backend.tokenize(multi._prompt(mstate, list(c.history), u, v))
                         for c, u in zip(sample, users)] for v in range(n_multi)]
            pts += [(mode, k, b) for k in range(1, n_multi + 1) for b in args.beams if b >= 10
                    for mode in ("K-view bundle, per view", "K-view bundle, served")]

        def run(p, i):
            mode, k, beam = p
            req = {"k": 10, "beam": beam}
            served_req = [{"history": list(sample[i].history), "profile": users[i], **req}]
            if mode == "one call":  # views stand in as copies, each in its own space
                return model.search_spaces([space] * k, list(range(k)), [prompts[i]] * k, [req] * k)
            if mode == "one-view bundle, served":
                return rec.recommend_batch(served_req)
            if mode == "K-view bundle, served":  # the runtime's path: all k views in one call
                multi.set_search_views(k)
                return multi.recommend_batch(served_req)
            if mode == "K-view bundle, per view":  # the previous runtime: a search per view
                for v in range(k):
                    multi.backend.model.search(mstate.tries[v][0], multi.token_tables[v],
                                               [mprompts[v][i]], [dict(req, k=beam)],
                                               delta=mstate.tries[v][1])
                return None
            for _ in range(k):
                model.search(space[0], space[1], [prompts[i]], [req], delta=space[2])

        ms: dict = {p: [] for p in pts}
        for r in range(args.rounds):
            for p in (pts if r % 2 == 0 else pts[::-1]):
                for i in range(min(3, len(sample))):
                    run(p, i)  # warm-up
                for i in range(len(sample)):
                    t = time.perf_counter()
                    run(p, i)
                    ms[p].append((time.perf_counter() - t) * 1e3)
    finally:
        rec.close()
        if multi is not None:
            multi.close()
    # the search rows against one search of one view; the bundles' rows against the one-view
    # bundle served the same way (the runtime's own work on a request included)
    base = median(ms[ref])
    base_served = median(ms[served]) if served in ms else None
    rows, out = [], []
    for p in pts:
        mode, k, beam = p
        p50 = median(ms[p])
        b = base_served if mode.endswith("bundle, served") else base
        rows.append((k, beam, mode, round(p50, 2), round(p50 / b, 2)))
        out.append({"views": k, "beam": beam, "mode": mode, "p50_ms": round(p50, 3),
                    "ratio": round(p50 / b, 3),
                    "ratio_to": "one-view bundle, served" if b is not base else "one view",
                    "n_calls": len(ms[p])})
    print(table(["views", "beam", "mode", "p50 ms", "ratio"], rows))
    path = write_json("view_batching", {
        "benchmark": "view_batching", "machine": machine_info("llama-cpp-python"),
        "bundle": str(args.bundle),
        "multi_view_bundle": str(args.multi_view_bundle) if args.multi_view_bundle else None,
        "dataset": args.dataset, "rounds": args.rounds,
        "calls_per_round": len(sample), "threads": 2, "batch": 1, "points": out})
    log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
