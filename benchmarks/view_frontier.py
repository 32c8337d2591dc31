#!/usr/bin/env python
"""Quality per millisecond of a multi-view model: which serving point gives the most for its cost.

    python benchmarks/view_frontier.py                        # amazon-industrial, 3 views
    python benchmarks/view_frontier.py --dataset ml-100k --views 3 --rounds 5
    python benchmarks/view_frontier.py --quick                # smoke test: tiny budgets

A model trained on K SID views (sid/views.py) answers a request with one constrained search per
view (all in one C++ call, sharing the decode calls) and fuses the beams, so it decodes about K
times the tokens of a one-view request. This script measures, in one
run, the points between: the same K-view model decoding its first n views (Recommender's
search_views) with beam b, and a one-view model of the same backbone (the like-for-like cost
reference), each exported as an F16 GGUF bundle and served by the C++ runtime.

For each point: HR/NDCG@1,3,5,10 on every test case (beam b, the benchmarks' protocol, profiles
as serving passes them) and the latency of one request (batch 1, k 10, 2 threads) over the same
fixed sample of test histories; rounds alternate the points so all of them see the same machine,
and the p50 is the median over every call of every round. Prints a table, writes
benchmarks/results/view_frontier.json and docs/img/view_frontier.png (HR@10 and NDCG@10 against
p50, the one-view model's p50 x 1.5 marked).

The models: the compact recipe of benchmarks/quality.py (COMPACT, collaborative SIDs), trained
on the final split within --minutes each; runs/view-frontier/ keeps them (reused when finished).
--one-view-bundle takes the one-view model from elsewhere (fit's OUT/bundle of the same recipe),
checked to have the same backbone and prompt length.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a script: the benchmarks package is at the repo root
    sys.path.insert(0, str(ROOT))

from benchmarks._common import frontier_plot, machine_info, median, table, write_json  # noqa: E402
from benchmarks.quality import COLLAB, COMPACT, DATA, build_sids, log  # noqa: E402

PLOT = ROOT / "docs" / "img" / "view_frontier.png"


def train(dataset, name: str, sids, out: Path, minutes: float, quick: bool) -> Path:
    """The compact recipe of quality.py on `sids`, exported to out/bundle (reused when done)."""
    from genrec_lite import pipeline
    from genrec_lite.train.trainer import TrainConfig

    cfg = TrainConfig(**COMPACT[name], max_minutes=minutes, num_threads=2)
    if quick:
        cfg.epochs, cfg.max_steps = 1, 20
        cfg.compact = {**cfg.compact, "hidden_size": 64, "num_layers": 2}
    done = out / "fit.json"
    if not (done.is_file() and json.loads(done.read_text()).get("train") == asdict(cfg)):
        t = time.perf_counter()
        res = pipeline.train(dataset, sids, out / "model", cfg, progress=False, resume=False)
        pipeline.export(out / "model", out / "bundle", quant="f16")
        done.write_text(json.dumps({"train": asdict(cfg), "steps": res["steps"],
                                    "minutes": round((time.perf_counter() - t) / 60, 1)}))
    return out / "bundle"


def same_backbone(one: Path, multi: Path) -> Path:
    """`one`, checked to be a one-view bundle of `multi`'s backbone and prompt length."""
    from genrec_lite.runtime.manifest import Manifest

    a, b = Manifest.load(one), Manifest.load(multi)
    arch = ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size")
    shape = [{k: (m.backbone.get("config") or {}).get(k) for k in arch} for m in (a, b)]
    if a.sid.views != 1 or a.max_history != b.max_history or shape[0] != shape[1]:
        raise SystemExit(f"{one}: not a one-view bundle of the multi-view model's backbone "
                         f"({a.sid.views} views, max_history {a.max_history}, {shape[0]}; "
                         f"expected 1 view, max_history {b.max_history}, {shape[1]})")
    return one


def points(n_views: int) -> list[tuple[str, int, int]]:
    """(model, views decoded, beam) of every point: the one-view model at beam 20, the K-view
    model at every view count with beam 20, and fewer beams per view where several views share
    the work (a view's beam at least 10, the list's k)."""
    pts = [("one-view", 1, 20)]
    pts += [("multi-view", n, 20) for n in range(1, n_views + 1)]
    pts += [("multi-view", n, b) for n in range(2, n_views + 1) for b in (10,)]
    return pts


def label(model: str, n: int, beam: int) -> str:
    if model == "one-view":
        return "one-view model, beam 20"
    return f"{n} of {{K}} views, beam {beam}" if model == "multi-view" else f"{model}, beam {beam}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="amazon-industrial")
    ap.add_argument("--views", type=int, default=3, help="SID views of the multi-view model (K)")
    ap.add_argument("--minutes", type=float, default=60.0, help="training budget of each model")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=40, help="timed requests per point per round")
    ap.add_argument("--one-view-bundle", type=Path, default=None,
                    help="a one-view bundle of the same backbone and prompt length to compare "
                         "with (e.g. fit's OUT/bundle) instead of training one here")
    ap.add_argument("--extra", action="append", default=[], metavar="LABEL=BUNDLE",
                    help="another one-view bundle to place on the frontier (e.g. the same model "
                         "after RL); repeatable")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    if not (DATA / args.dataset).is_dir():
        log(f"{DATA / args.dataset} not found: this benchmark needs the shared data sets")
        return 1
    from genrec_lite import pipeline
    from genrec_lite.data import Dataset, resolve_split
    from genrec_lite.runtime import Recommender

    name = args.dataset
    work = ROOT / "runs" / ("view-frontier-quick" if args.quick else "view-frontier") / name
    dataset = Dataset.load(DATA / name)
    split = COMPACT[name]["split"]
    sids_multi, _ = build_sids(dataset, work, "none", args.quick, COLLAB[name], split,
                               {"views": args.views})
    bundles = {"multi-view": train(dataset, name, sids_multi, work / f"views{args.views}",
                                   args.minutes, args.quick)}
    if args.one_view_bundle:
        bundles["one-view"] = same_backbone(args.one_view_bundle, bundles["multi-view"])
    else:
        sids_one, _ = build_sids(dataset, work, "none", args.quick, COLLAB[name], split)
        bundles["one-view"] = train(dataset, name, sids_one, work / "one-view", args.minutes,
                                    args.quick)
    extras = []
    for spec in args.extra:
        lab, _, path = spec.partition("=")
        if not lab or not path or lab in bundles:
            raise SystemExit(f"--extra {spec!r}: expected LABEL=BUNDLE with a new label")
        bundles[lab] = same_backbone(Path(path), bundles["multi-view"])
        extras.append(lab)
    plan = resolve_split(split, dataset)
    test = dataset.test_cases or plan.apply(dataset, None).test
    if args.quick:
        test = test[:200]
    pts = points(args.views) + [(lab, 1, 20) for lab in extras]
    recs = {m: Recommender.load(b, n_threads=2) for m, b in bundles.items()}
    try:
        for rec in recs.values():
            rec.set_cold_start(None)  # the model's answers alone: cold start has its own benchmark
        profiles = pipeline.bundle_profiles(recs["one-view"], dataset)
        sample = test[:: max(1, len(test) // args.calls)][:args.calls]
        reqs = [{"history": list(c.history), "k": 10,
                 "profile": profiles.get(c.user_id) if profiles is not None else None}
                for c in sample]
        quality, ms = {}, {p: [] for p in pts}
        for p in pts:
            model, n, beam = p
            recs[model].set_search_views(n)
            quality[p] = pipeline.evaluate_recommender(recs[model], dataset, test, beam=beam)
            log(f"{label(*p).format(K=args.views)}: HR@10 {quality[p]['HR@10']:.4f} "
                f"NDCG@10 {quality[p]['NDCG@10']:.4f}")
        for r in range(args.rounds):  # alternate the points: each round sees the same machine
            for p in (pts if r % 2 == 0 else pts[::-1]):
                model, n, beam = p
                rec = recs[model]
                rec.set_search_views(n)
                for q in reqs[:3]:  # warm-up
                    rec.recommend_batch([dict(q, beam=beam)])
                for q in reqs:
                    t = time.perf_counter()
                    rec.recommend_batch([dict(q, beam=beam)])
                    ms[p].append((time.perf_counter() - t) * 1e3)
    finally:
        for rec in recs.values():
            rec.close()
    base = median(ms[pts[0]])
    rows, out = [], []
    for p in pts:
        model, n, beam = p
        q, p50 = quality[p], median(ms[p])
        rows.append([label(*p).format(K=args.views), f"{p50:.2f}", f"{p50 / base:.2f}x",
                     *(f"{q[m]:.4f}" for m in ("HR@1", "HR@3", "HR@5", "HR@10", "NDCG@1",
                                               "NDCG@3", "NDCG@5", "NDCG@10"))])
        out.append({"model": model, "views_decoded": n, "beam": beam, "p50_ms": round(p50, 3),
                    "p50_ratio_to_one_view": round(p50 / base, 3), "test": q,
                    "n_timed_calls": len(ms[p])})
    print(table(["point", "p50 ms", "vs one-view", "HR@1", "HR@3", "HR@5", "HR@10", "NDCG@1",
                 "NDCG@3", "NDCG@5", "NDCG@10"], rows))
    if not args.quick:
        write_json("view_frontier", {
            "benchmark": "view_frontier", "machine": machine_info("genrec-lite", "llama-cpp-python"),
            "dataset": name, "views": args.views, "n_test_cases": len(test),
            "rounds": args.rounds, "calls_per_round": len(reqs), "threads": 2, "batch": 1,
            "models": {m: (json.loads((b.parent / "fit.json").read_text())
                           if (b.parent / "fit.json").is_file() else {"bundle": str(b)})
                       for m, b in bundles.items()},
            "points": out})
        plot(out, args.views, name)
    return 0


def plot(points_: list[dict], n_views: int, name: str) -> None:
    """HR@10 and NDCG@10 against p50, the one-view model's p50 x 1.5 marked."""
    rows = []
    for p in points_:
        one = p["model"] != "multi-view"
        rows.append({"x": p["p50_ms"], **{m: p["test"][m] for m in ("HR@10", "NDCG@10")},
                     "label": p["model"] if one else f"{p['views_decoded']}v b{p['beam']}",
                     "marker": "s" if one else "o", "color": "tab:gray" if one else "tab:blue"})
    frontier_plot(rows, PLOT, xlabel="p50 ms, batch 1, 2 threads", ylabel="test",
                  limit=1.5 * points_[0]["p50_ms"], limit_label="1.5x one-view p50",
                  title=f"{name}: a {n_views}-view model decoding fewer views or beams, "
                        "and a one-view model of the same backbone")


if __name__ == "__main__":
    sys.exit(main())
