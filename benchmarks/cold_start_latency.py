"""What cold start costs a request: batch-1 latency with the mixture on and off, side by side.

    python benchmarks/cold_start_latency.py --bundle runs/amazon-f16 [--cold 0 1000 10000]
        [--requests 200] [--threads 1] [--settings '{"weight": 0.1, ...}' ...]

For each number of extra cold items (added to the bundle's own untrained items with add_items
from random vectors, as a server adds new ads), the same request histories (amazon test cases,
or random catalog histories) are sent one at a time to one Recommender with cold start off and
on, alternating request by request so that both see the same machine (with several --settings,
each is one more mode of the rotation). Reports p50 / p95 per setting and the ratio of the
p50s. Writes benchmarks/results/cold_start_latency.json.
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

# where the bundle has none: the mass only changes ranks, not the work; three history items and
# a mass for the history's own cold items, a typical setting (the work grows with the history
# depth, 10 items at most; the mean query compares one direction instead of several)
SETTINGS = {"weight": 0.01, "temperature": 0.1, "history": 3, "repeat": 0.01}


def measure(bundle, cold_counts: list[int], n_requests: int, threads: int,
            settings_list: list[dict] | None = None) -> tuple[list[dict], list[dict]]:
    """(a row per cold item count and setting, the settings measured: `settings_list`, else the
    bundle's, else SETTINGS)."""
    from genrec_lite.runtime import Recommender
    from genrec_lite.runtime.cold_start import ColdStartConfig

    rows = []
    rec = Recommender.load(bundle, n_threads=threads)
    try:
        state = rec.catalog.state
        dim = int(state.sids.encoder.input_dim)
        hists = request_histories(state.sids.item_ids, n_requests)
        next_id, added = 10**12, 0
        rng = np.random.default_rng(0)
        configs = ([ColdStartConfig.from_dict(d) for d in settings_list] if settings_list
                   else [rec.cold_start or ColdStartConfig.from_dict(SETTINGS)])
        modes = [None, *configs]   # off, then each setting
        for count in sorted(cold_counts):
            if count > added:
                n = count - added
                rec.add_items([{"item_id": next_id + j, "title": f"new item {j}"} for j in range(n)],
                              vectors=rng.standard_normal((n, dim)).astype(np.float32))
                next_id, added = next_id + n, count
            times: list[list[float]] = [[] for _ in modes]
            for n, h in enumerate(hists + hists[:5]):             # the first five warm up
                for m in np.roll(np.arange(len(modes)), n).tolist():   # each mode first in turn
                    rec.set_cold_start(modes[m])
                    t = time.perf_counter()
                    rec.recommend(h, k=10, beam=20)
                    if n >= 5:
                        times[m].append(time.perf_counter() - t)
            p50 = [statistics.median(v) * 1e3 for v in times]
            p95 = [float(np.percentile(v, 95)) * 1e3 for v in times]
            for m, cfg in enumerate(configs, start=1):
                rows.append({"cold_items": int(len(rec.catalog.state.cold)), "added": count,
                             "settings": cfg.to_dict(), "requests": len(hists),
                             "p50_ms_off": round(p50[0], 3), "p50_ms_on": round(p50[m], 3),
                             "p95_ms_off": round(p95[0], 3), "p95_ms_on": round(p95[m], 3),
                             "p50_ratio": round(p50[m] / p50[0], 4)})
    finally:
        rec.close()
    return rows, [c.to_dict() for c in configs]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--cold", type=int, nargs="+", default=[0, 1000, 10000],
                    help="cold items to add beyond the bundle's own")
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1, help="llama.cpp threads")
    ap.add_argument("--settings", nargs="+", type=json.loads, default=None,
                    help="cold-start settings to measure (JSON objects; default: the bundle's)")
    ap.add_argument("--out", default="cold_start_latency")
    args = ap.parse_args(argv)
    from genrec_lite.runtime.cold_start import ColdStartConfig
    rows, settings = measure(args.bundle, args.cold, args.requests, args.threads, args.settings)
    print(table(["cold items", "settings", "p50 off ms", "p50 on ms", "p95 off ms", "p95 on ms",
                 "on / off"],
                [[r["cold_items"], ColdStartConfig.from_dict(r["settings"]).describe(),
                  r["p50_ms_off"], r["p50_ms_on"], r["p95_ms_off"], r["p95_ms_on"],
                  r["p50_ratio"]] for r in rows]))
    path = write_json(args.out, {"benchmark": "cold_start_latency", "bundle": str(args.bundle),
                                 "threads": args.threads, "settings": settings,
                                 "machine": machine_info("llama_cpp_python"), "rows": rows})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
