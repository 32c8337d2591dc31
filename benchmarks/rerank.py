"""The re-ranker (runtime/rerank.py): what `fit`'s re-ranking stage gives on test, with and
without, for finished `fit` runs, and what it costs a request.

    python benchmarks/rerank.py --fits runs/quality/amazon-industrial/fit-seed{0,1,2}
        [--latency --requests 300] [--out rerank]
    python benchmarks/rerank.py --fits ... --latency-only [--out rerank_latency]

For each fit folder (its report.json, its tuning and final bundles) the stage is replayed with
the code `fit` runs (eval/rerank.py): the tuning model, served at the chosen point with the
chosen cold start, answers the validation cases; the re-ranker is cross-validated over the L2
penalties (and, for the joint kind, the cold offsets, priced at the run's served cold share
against the same stage with cold start off: eval/rerank.choose_served) and refitted on all of
them (or kept off). The final bundle then answers the test cases with it, without it, with
the best warm-only re-ranker where the joint kind (cold candidates ranked too) was chosen, and
with the transition weight the run's `fit` chose where it chose one (what `fit` shipped before
the re-ranker), cold start as the bundle serves it, on all cases and on the cases
whose target never occurs in the final model's training (report["test"]["new targets"]). A run
whose `fit` already fitted one is replayed the same way (same seed, same folds).

--latency: batch-1 p50 on the first fit's final bundle of the same histories at its serving
point with the re-ranker off and on (a joint one also with its warm features only, the cost of
the warm kind), and of the one-view request (the first view at beam 20, the reference of fit's
latency limit) without it, rotated request by request. --latency-only: the same for every
fit's final bundle with the re-ranker its `fit` chose (report.json), without the replay: what
each shipped bundle costs.
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

from benchmarks._common import (FIRST_PLACE_HEAD, first_place_cells, machine_info, pyplot,  # noqa: E402
                                request_histories, table, write_json)

PLOT = Path(__file__).resolve().parents[1] / "docs" / "img" / "rerank.png"

KS = ("HR@1", "HR@3", "HR@5", "HR@10", "NDCG@1", "NDCG@3", "NDCG@5", "NDCG@10")
LABELS = {"without": "model", "transitions": "transition weight (fit before)",
          "warm": "warm-only re-ranker", "with": "re-ranker"}
MINIONEREC = {"HR@3": 0.1143, "HR@5": 0.1321, "HR@10": 0.1586,
              "NDCG@3": 0.1011, "NDCG@5": 0.1084, "NDCG@10": 0.1167}


def tuning_bundle(fit_dir: Path, rep: dict) -> Path:
    """The bundle fit served validation with: the winner's tuning model (its multi-view model
    when the chosen point decodes several views; after RL when RL was kept)."""
    point = rep.get("serving_chosen", {"views": 1})
    name = rep["views_model"]["name"] if point["views"] > 1 else rep["chosen"]
    if (rep.get("rl") or {}).get("steps_chosen"):
        name = f"{rep['chosen']}-rl"
    return fit_dir / "search" / f"{name}-bundle"


def score_fit(fit_dir: Path, data_root: Path, threads: int) -> dict:
    from genrec_lite.data import Dataset, resolve_split
    from genrec_lite.eval.cold_start import trained_items
    from genrec_lite.eval.metrics import first_place, rank_metrics, segment_metrics
    from genrec_lite.eval.rerank import choose_served, fitted
    from genrec_lite.pipeline import bundle_profiles
    from genrec_lite.runtime import Recommender

    rep = json.loads((fit_dir / "report.json").read_text())
    ds = Dataset.load(data_root / rep["data"])
    point = rep.get("serving_chosen", {"views": 1})
    valid = resolve_split(rep["split"]["tuning"], ds).apply(ds, None).valid
    final_split = resolve_split(rep["split"]["final"], ds).apply(ds, None)
    test = ds.test_cases or final_split.test
    out = {"fit": str(fit_dir), "seed": rep["seed"], "views": point["views"],
           "beam": point.get("beam"), "side_beam": point.get("side_beam"),
           "cold_start": rep.get("cold_start")}
    share = (rep.get("cold_start_procedure") or {}).get("served_cold_share")
    t0 = time.perf_counter()
    with Recommender.load(tuning_bundle(fit_dir, rep), n_threads=threads) as rec:
        rec.set_cold_start(rep.get("cold_start"))
        rec.set_transition_weight(None)
        rec.set_reranker(None)
        choice = choose_served(rec, valid, profiles=bundle_profiles(rec, ds), seed=rep["seed"],
                               cold_share=share)
    inputs, reranker, rows = choice.inputs, choice.reranker, choice.rows
    warm = None   # the best warm kind too, where the joint one was chosen (what it replaced)
    if reranker is not None and reranker.cold:
        best = max((r for r in rows if r["lambda"] is not None and not r["cold"]),
                   key=lambda r: r["priced"]["NDCG@10"])
        warm = fitted(inputs, [c.target for c in valid], best["lambda"])
    out.update(valid_cases=len(valid), valid=rows,
               reranker=None if reranker is None else reranker.to_dict(),
               offset=next((r["offset"] for r in rows if r.get("chosen")), None),
               reference=choice.reference, stage_seconds=round(time.perf_counter() - t0, 1))
    targets = [c.target for c in test]
    newest = [c.history[-1] if len(c.history) else -1 for c in test]
    seen = trained_items(final_split.train)
    new = np.array([t not in seen for t in targets])
    from genrec_lite.eval.bundle import served_answers

    with Recommender.load(fit_dir / "bundle", n_threads=threads) as rec:
        weight = rec.transition_weight   # what a fit before the re-ranker shipped
        out["transition_weight"] = weight
        profiles = bundle_profiles(rec, ds)
        for key, w, r in (("transitions", weight, None), ("without", None, None),
                          ("warm", None, warm), ("with", None, reranker)):
            if (key == "transitions" and weight is None) or (key == "warm" and warm is None):
                continue
            rec.set_transition_weight(w)
            rec.set_reranker(r)

            lists = [a[0] for a in served_answers(rec, test, profiles=profiles)]
            out[f"test_{key}"] = {k: v for k, v in rank_metrics(lists, targets).items() if k in KS}
            out[f"first_place_{key}"] = first_place(lists, newest, targets)
            part = segment_metrics(lists, targets, {"new": new}).get("new")
            if part is not None:
                out[f"new_targets_{key}"] = {k: v for k, v in part.items() if k in KS}
    out["test_cases"], out["new_target_cases"] = len(test), int(new.sum())
    return out


def latency(fit_dir: Path, reranker: dict | None, n: int, threads: int) -> dict:
    """p50 (ms) at batch 1 of the served point with the re-ranker off and on, and of the
    one-view reference, rotated request by request."""
    from genrec_lite.runtime import Recommender
    from genrec_lite.runtime.rerank import WARM_FEATURES

    with Recommender.load(fit_dir / "bundle", n_threads=threads) as rec:
        served = (rec.search_views, rec.search_beam, rec.search_side_beam)
        hists = request_histories(rec.catalog.state.sids.item_ids, n)
        modes = {"one view": ((1, 20, None), None), "served, re-ranker off": (served, None),
                 "served, re-ranker on": (served, reranker)}
        if reranker is not None and reranker.get("cold"):
            # the warm kind's cost beside the joint one's: the same work without cold rows
            # (timing does not depend on the weights)
            keep = [n for n, f in enumerate(reranker["features"]) if f in WARM_FEATURES]
            warm = {k: [reranker[k][n] for n in keep] for k in ("weights", "mean", "scale")}
            modes["served, warm-only re-ranker"] = (served, dict(
                warm, features=[reranker["features"][n] for n in keep],
                successors=reranker["successors"]))
        names = list(modes)
        times: dict[str, list[float]] = {m: [] for m in names}
        for i, h in enumerate(hists[:5] + hists):
            for m in np.roll(np.arange(len(names)), i).tolist():
                (views, beam, side), rr = modes[names[m]]
                rec.set_search_views(views)
                rec.set_search_beam(beam)
                rec.set_search_side_beam(side)
                rec.set_reranker(rr)
                t = time.perf_counter()
                rec.recommend(h, k=10)
                if i >= 5:
                    times[names[m]].append(time.perf_counter() - t)
    p50 = {m: statistics.median(t) * 1e3 for m, t in times.items()}
    return {"bundle": str(fit_dir / "bundle"), "requests": n, "threads": threads,
            "point": {"views": served[0], "beam": served[1], "side_beam": served[2]},
            "p50_ms": {m: round(v, 3) for m, v in p50.items()},
            "on_vs_off": round(p50["served, re-ranker on"] / p50["served, re-ranker off"], 4),
            "on_vs_one_view": round(p50["served, re-ranker on"] / p50["one view"], 4)}


def print_latency(lat: dict, what: str) -> None:
    print(f"\nlatency of {what} (batch 1, {lat['requests']} requests, {lat['threads']} "
          "threads): " + ", ".join(f"{m} {v} ms" for m, v in lat["p50_ms"].items()) +
          f"; on/off {lat['on_vs_off']}, on/one view {lat['on_vs_one_view']}")


def plot(result: dict, path: Path = PLOT) -> None:
    """The mean test metrics of each order beside MiniOneRec's published row, one bar group per
    metric."""
    plt = pyplot()
    if plt is None:
        return
    metrics = list(MINIONEREC)
    rows = [(LABELS[key], [result["mean"][key][m] for m in metrics])
            for key in ("without", "transitions", "warm", "with") if key in result["mean"]]
    rows.append(("MiniOneRec (published)", [MINIONEREC[m] for m in metrics]))
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(rows)
    for n, (label, values) in enumerate(rows):
        ax.bar(np.arange(len(metrics)) + (n - (len(rows) - 1) / 2) * width, values, width,
               label=label)
    ax.set_xticks(np.arange(len(metrics)), metrics)
    ax.set_ylim(0.08, max(max(v) for _, v in rows) * 1.05)
    ax.set_ylabel(f"test, mean of {len(result['runs'])} fit runs")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title("amazon-industrial: fit's served bundle, by how its answer is ordered")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}", file=sys.stderr)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fits", nargs="+", required=True, help="fit OUT folders")
    ap.add_argument("--data-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--latency", action="store_true")
    ap.add_argument("--latency-only", action="store_true")
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--out", default="rerank")
    args = ap.parse_args(argv)
    if args.latency_only:
        lats = []
        for f in args.fits:
            rep = json.loads((Path(f) / "report.json").read_text())
            lats.append(lat := latency(Path(f), (rep.get("rerank") or {}).get("chosen"),
                                       args.requests, args.threads))
            print_latency(lat, f"seed {rep['seed']}, {lat['point']}")
        path = write_json(args.out, {"benchmark": "rerank_latency", "latency": lats,
                                     "machine": machine_info("llama_cpp_python")})
        print(f"wrote {path}")
        return 0
    runs = [score_fit(Path(f), Path(args.data_root), args.threads) for f in args.fits]
    head = ["seed", "order", *KS]
    body = []
    keys = [key for key in ("without", "transitions", "warm", "with")
            if all(f"test_{key}" in r for r in runs)]
    for r in runs:
        for key in keys:
            m = r[f"test_{key}"]
            body.append([r["seed"], LABELS[key], *(f"{m[k]:.4f}" for k in KS)])
    mean = {key: {k: float(np.mean([r[f"test_{key}"][k] for r in runs])) for k in KS}
            for key in keys}
    for key in keys:
        body.append(["mean", LABELS[key], *(f"{mean[key][k]:.4f}" for k in KS)])
    body.append(["MiniOneRec", "(published)", *(f"{MINIONEREC[k]:.4f}" if k in MINIONEREC
                                                else "-" for k in KS)])
    print(table(head, body))
    print("\nthe first place (the newest history item opening a list):")
    print(table(["seed", "order", *FIRST_PLACE_HEAD],
                [[r["seed"], LABELS[key], *first_place_cells(r[f"first_place_{key}"])]
                 for r in runs for key in keys]))
    new_rows = [[r["seed"], r["new_target_cases"], LABELS[key],
                 *(f"{r[f'new_targets_{key}'][k]:.4f}" for k in ("HR@10", "NDCG@10"))]
                for r in runs if r.get("new_targets_with") for key in keys]
    if new_rows:
        print("\ntest cases whose target never occurs in the final model's training:")
        print(table(["seed", "cases", "order", "HR@10", "NDCG@10"], new_rows))
    result = {"benchmark": "rerank", "runs": runs, "mean": mean, "minionerec": MINIONEREC,
              "machine": machine_info("llama_cpp_python")}
    if args.latency:
        result["latency"] = lat = latency(Path(args.fits[0]), runs[0]["reranker"],
                                          args.requests, args.threads)
        print_latency(lat, args.fits[0])
    print(f"wrote {write_json(args.out, result)}")
    plot(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
