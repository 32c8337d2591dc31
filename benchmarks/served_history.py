"""A finished `fit` run's served bundle on its test cases, each request's history allowed in the
answer or denied (the request's ``deny`` list), with its re-ranker on and off.

    python benchmarks/served_history.py --fit runs/quality/ml-100k/fit-seed0-v5 \
        --data ../shared/data/ml-100k [--out served_history_ml-100k_seed0]

Why: on a data set where nothing repeats (ml-100k: a film is rated once) a generative model
whose prompt shows only the newest items fills its list with items the user already has, and a
re-ranker with an ``in_history`` feature learns on validation to push them out. The baselines'
like-for-like rows ("history excluded", benchmarks/baselines) drop the history from their lists
the same way; this script gives the served bundle's rows beside them, and counts the history
items each list holds.

--replay: for a run whose bundle allows the history (fit before its history policy), replay
what `fit` did at 770d0ef after the serving point on the run's own models (fit now decides the
policy earlier, on the one-view tuning model, before the serving points): the history
policy on the validation sample (fit.history_policy), and, where it denies, the re-ranker
refitted on the tuning bundle's pools without the history (cold start as the run chose it),
then the final bundle on test with both. Not a fresh run: the models are the run's.
Prints a table; writes benchmarks/results/<out>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))
sys.path.insert(0, str(ROOT))

from benchmarks._common import machine_info, table, write_json  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fit", type=Path, required=True, help="a finished fit folder (report.json, bundle/)")
    ap.add_argument("--data", type=Path, required=True, help="the data set folder the fit ran on")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None, help="results name (default served_history_<data>)")
    ap.add_argument("--replay", action="store_true",
                    help="also replay fit's history policy and re-ranker stage on the run's models")
    args = ap.parse_args(argv)

    from genrec_lite.data import resolve_dataset, resolve_split
    from genrec_lite.runtime import Recommender

    report_path = args.fit / "report.json"
    if not report_path.is_file() or not (args.fit / "bundle").is_dir():
        raise SystemExit(f"--fit {args.fit}: expected a finished fit folder with report.json "
                         "and bundle/")
    report = json.loads(report_path.read_text())
    ds = resolve_dataset(args.data)
    if report.get("data") != ds.name:
        raise SystemExit(f"--fit {args.fit} ran on {report.get('data')!r}, --data is {ds.name!r}")
    test = ds.test_cases or resolve_split(report["split"]["final"], ds).apply(ds, None).test
    rows, out = [], {}
    with Recommender.load(args.fit / "bundle", n_threads=args.threads) as rec:
        for reranker in ("on", "off"):
            if reranker == "off":
                if rec.reranker is None:
                    break
                rec.set_reranker(None)
            elif rec.reranker is None:
                reranker = "none in the bundle"
            for deny in (False, True):
                t0 = time.perf_counter()
                rec.set_exclude_history(deny)  # the runtime's own policy: the history denied
                m = _scored(rec, ds, test)
                name = f"re-ranker {reranker}, history {'denied' if deny else 'allowed'}"
                out[name] = {**m, "seconds": round(time.perf_counter() - t0, 1)}
                rows.append([name, *(round(m[k], 4) for k in ("HR@1", "HR@5", "HR@10",
                                                                "NDCG@5", "NDCG@10")),
                             round(m["history_items_per_list"], 2)])
    replay = _replay(args, report, ds, test) if args.replay else None
    if replay is not None:
        m = replay["test"]
        rows.append(["replay: history policy + re-ranker refitted", *(
            round(m[k], 4) for k in ("HR@1", "HR@5", "HR@10", "NDCG@5", "NDCG@10")),
            round(m["history_items_per_list"], 2)])
    print(table(["served bundle", "HR@1", "HR@5", "HR@10", "NDCG@5", "NDCG@10",
                 "history items a list"], rows))
    path = write_json(args.out or f"served_history_{ds.name}", {
        "benchmark": "served_history", "fit": str(args.fit), "data": ds.name,
        "seed": report.get("seed"), "serving": report.get("serving_chosen"),
        "n_cases": len(test), "machine": machine_info(), "rows": out, "replay": replay})
    print(f"wrote {path}")
    return 0


def _scored(rec, ds, test) -> dict:
    """The Recommender's HR/NDCG@K on `test` as it stands (pipeline.evaluate_recommender), and
    how many of each list's items are in its case's history."""
    from genrec_lite import pipeline

    ranked: list = []
    m = pipeline.evaluate_recommender(rec, ds, test, ranked=ranked)
    m.pop("seconds", None)
    m["history_items_per_list"] = round(sum(len(set(r) & set(c.history)) for r, c in
                                            zip(ranked, test)) / max(len(test), 1), 3)
    return m


def _replay(args, report: dict, ds, test) -> dict:
    """fit's history policy and re-ranker stage on the run's own tuning and final bundles."""
    import shutil
    import tempfile

    from genrec_lite import pipeline
    from genrec_lite.data import resolve_split
    from genrec_lite.eval.rerank import choose_served
    from genrec_lite.export.bundle import set_exclude_history, set_reranker
    from genrec_lite.fit import VALID_CASES, history_policy
    from genrec_lite.runtime import Recommender
    from genrec_lite.runtime.cold_start import ColdStartConfig
    from genrec_lite.train.evaluate import validation_sample

    valid = resolve_split(report["split"]["tuning"], ds).apply(ds, None).valid
    sample = validation_sample(valid, min(VALID_CASES, len(valid)), report["seed"])
    point = report["serving_chosen"]
    views = report.get("views_model", {}).get("name")
    tuning = args.fit / "search" / (f"{report['chosen']}-bundle" if point["views"] == 1 or
                                    views is None else f"{views}-bundle")
    cold = report.get("cold_start")
    cold = None if cold is None else ColdStartConfig.from_dict(cold)
    with tempfile.TemporaryDirectory() as d:
        tune, final = Path(d) / "tune", Path(d) / "final"
        shutil.copytree(tuning, tune)
        shutil.copytree(args.fit / "bundle", final)
        exclude, policy = history_policy(tune, ds, sample, threads=args.threads)
        set_exclude_history(tune, exclude)
        share = (report.get("cold_start_procedure") or {}).get("served_cold_share")
        with Recommender.load(tune, n_threads=args.threads) as rec:
            rec.set_cold_start(cold)
            rec.set_transition_weight(None)
            choice = choose_served(rec, valid, profiles=pipeline.bundle_profiles(rec, ds),
                                   seed=report["seed"], cold_share=share)
        reranker, trials = choice.reranker, choice.rows
        set_exclude_history(final, exclude)
        set_reranker(final, reranker)
        with Recommender.load(final, n_threads=args.threads) as rec:
            m = _scored(rec, ds, test)
    return {"tuning_bundle": str(tuning), "history_policy": policy, "rerank_trials": trials,
            "rerank_kept": reranker is not None, "test": m}


if __name__ == "__main__":
    sys.exit(main())
