#!/usr/bin/env python
"""Cold-start benchmark: can new items be recommended?

    python benchmarks/cold_start.py                       # amazon-industrial, natural segment
    python benchmarks/cold_start.py --model CKPT          # score this checkpoint (test split)
    python benchmarks/cold_start.py --launch              # + the launch segment (a training run)
    python benchmarks/cold_start.py --quick               # smoke test: tiny budgets

Segments (HR/NDCG@1,3,5,10 on each and on all test cases):
  natural  the test cases whose target never occurs in the training interactions (amazon:
           timestamp < 2,000,000; ml-100k: the leave-one-out final training part);
  launch   a seeded random 10% of the items hidden from training entirely (every interaction
           with them removed from the training sequences), the model and baselines trained
           without them, the items then given to a live Recommender with add_items from their
           text only, and the test cases whose target is one of them scored through the C++
           runtime.
Against, trained in the same run on the same data: content kNN (the cosine of all-MiniLM-L6-v2
embeddings of title + brand to the last history item, whole catalog ranked; with and without the
history's own items, issue 27's figures being the latter), popularity and SASRec (benchmarks/baselines, the configuration quality.py uses).

The generative model: --model names a trained checkpoint of the test split (amazon: trained on
< 2,000,000); otherwise the script trains the one-view compact recipe of quality.py itself
(runs/cold-start/, reused when finished). Writes benchmarks/results/cold_start.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT / "python", ROOT):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import numpy as np  # noqa: E402

from benchmarks.quality import (COLLAB, COMPACT, DATA, RESULTS, SASREC, build_sids,  # noqa: E402
                                log)


def train_model(dataset, name: str, split: str, work: Path, quick: bool, seed: int = 0,
                minutes: float = 60.0, epochs: int | None = None) -> Path:
    """The one-view compact recipe of quality.py (COMPACT, collaborative SIDs from the same
    split's training part) trained on `split`; a finished run in `work` is reused. `epochs`
    shortens the schedule (same warm-up share) where a machine cannot afford the recipe's."""
    from genrec_lite.train.trainer import TrainConfig, Trainer

    settings = dict(COMPACT[name], split=split, seed=seed, eval_cases=0,
                    **({"epochs": epochs} if epochs else {}))
    cfg = TrainConfig(**settings, max_minutes=minutes, num_threads=2)
    if quick:
        cfg.epochs, cfg.max_steps = 1, 20
        cfg.compact = {**cfg.compact, "hidden_size": 64, "num_layers": 2}
    out = work / (f"compact-{split.replace(':', '')}-seed{seed}"
                  + (f"-epochs{cfg.epochs}" if cfg.epochs != COMPACT[name]["epochs"] else ""))
    done = out / "fit.json"
    if done.is_file() and json.loads(done.read_text()).get("train") == asdict(cfg):
        log(f"{out}: reusing the finished run")
        return out
    # one SID build per split (build_sids caches one build per folder)
    sids, _ = build_sids(dataset, work / f"sids-{split.replace(':', '')}", "none", quick,
                         COLLAB[name], split)
    t = time.perf_counter()
    fit = Trainer(dataset, sids, out, cfg, progress=False, resume=False).fit()
    done.write_text(json.dumps({"train": asdict(cfg), "fit": fit,
                                "minutes": round((time.perf_counter() - t) / 60, 1)}, indent=1))
    return out



# --- segments and scoring -----------------------------------------------------------------------
def trained_items(train) -> set[int]:
    """Items that occur in the training sequences (user -> item ids)."""
    return {int(i) for seq in train.values() for i in np.asarray(seq).tolist()}


def segment_metrics(ranked, cases, segments: dict[str, np.ndarray]) -> dict:
    """rank_metrics of `ranked` (one list per case) over every case and over each segment mask."""
    from genrec_lite.eval import rank_metrics

    targets = np.array([c.target for c in cases], dtype=np.int64)
    rows = [list(r) for r in ranked]
    out = {"all": rank_metrics(rows, targets)}
    for name, mask in segments.items():
        idx = np.flatnonzero(mask)
        if idx.size:
            out[name] = rank_metrics([rows[i] for i in idx], targets[idx])
    return out


def content_vectors(dataset, template: str = "{title}[. Brand: {brand}]") -> np.ndarray:
    """all-MiniLM-L6-v2 vectors of each catalog item's text (title + brand by default: the content
    baseline of issue 27), unit length, in catalog order; cached on disk by sid/embed.py."""
    from genrec_lite.sid.embed import TextEncoder

    fields = set(dataset.catalog.fields)
    if "brand" not in fields:  # ml-100k: title (year) and genres
        template = "{title}[ ({year})][. Genres: {genres}]"
    v = TextEncoder().encode(dataset.catalog.render(template), progress=False).astype(np.float64)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def sasrec_epochs(name: str, P: dict, quick: bool) -> tuple[int, str]:
    """SASRec's training epochs: those early stopping on the validation cases chose in the quality
    benchmark's run of the same configuration (benchmarks/results/quality.json), or, where that
    run is absent or of another configuration, chosen here the same way."""
    from benchmarks.baselines import SASRec, SASRecConfig

    params = dict(SASREC[name], **({"max_epochs": 2, "patience": 1} if quick else {}))
    recorded = RESULTS / "quality.json"
    if recorded.is_file() and not quick:
        rec = json.loads(recorded.read_text())["datasets"].get(name, {}).get("models", {})
        got = rec.get("SASRec", {}).get("params", {})
        if got.get("epochs_final") and all(got.get(k) == v for k, v in SASREC[name].items()):
            return int(got["epochs_final"]), str(recorded)
    tune = SASRec(SASRecConfig(seed=0, n_threads=2, **params)).fit(
        P["tune_train"], P["dataset"].catalog.item_ids, P["valid"])
    return int(tune.best_epoch), "early stopping on the validation cases, this run"


def baseline_lists(name: str, P: dict, train_key: str, cases, vectors: np.ndarray, work: Path,
                   quick: bool) -> dict[str, np.ndarray]:
    """Top-10 lists of content kNN, popularity and SASRec trained on P[train_key] (SASRec for
    sasrec_epochs), cached in `work`."""
    from benchmarks.baselines import Popularity, SASRec, SASRecConfig
    from benchmarks.baselines.content import ContentKNN

    cache = work / f"baselines-{train_key}-{len(cases)}.npz"
    if cache.is_file() and not quick:
        with np.load(cache) as z:
            return {k: z[k] for k in z.files}
    items = P["dataset"].catalog.item_ids
    hist = [c.history for c in cases]
    out = {m.name: m.fit(P[train_key], items).recommend(hist, 10)
           for m in (ContentKNN(vectors), ContentKNN(vectors, exclude_history=True))}
    out["Popularity"] = Popularity().fit(P[train_key], items).recommend(hist, 10)
    params = dict(SASREC[name], **({"max_epochs": 2, "patience": 1} if quick else {}))
    t = time.perf_counter()
    epochs, source = sasrec_epochs(name, P, quick)
    model = SASRec(SASRecConfig(seed=0, n_threads=2, **params)).fit(P[train_key], items,
                                                                    epochs=epochs)
    out["SASRec"] = model.recommend(hist, 10)
    log(f"SASRec: {epochs} epochs ({source}), {time.perf_counter() - t:.0f}s")
    np.savez(cache, **out)
    return out


# --- the generative model -----------------------------------------------------------------------
def beam_answers(ckpt: Path, cases, work: Path, beam: int = 20):
    """The reference decoder's whole beam (items, scores) and first-level log-probabilities for
    every case, from a one-view checkpoint, and the model's SIDs (answers cached in `work`)."""
    import pickle

    from genrec_lite.prompts import PromptSet
    from genrec_lite.sid import SidViews
    from genrec_lite.train.checkpoint import load_model, weights_dir
    from genrec_lite.train.decode import ReferenceDecoder
    from genrec_lite.train.evaluate import case_prompts

    cache = work / f"beams-{ckpt.resolve().as_posix().strip('/').replace('/', '_')}-{len(cases)}.pkl"
    if cache.is_file() and cache.stat().st_mtime > weights_dir(ckpt).stat().st_mtime:
        return pickle.loads(cache.read_bytes()), SidViews.load(ckpt / "sids").primary
    model, tok, views, meta = load_model(ckpt, device="auto")
    if len(views) != 1:
        raise SystemExit(f"{ckpt}: a {len(views)}-view model; the back-off prototype scores "
                         "one-view models")
    sids = views.primary
    texts = case_prompts(cases, sids, PromptSet.load(meta["prompts"]),
                         max_history=meta["train"]["max_history"])
    dec = ReferenceDecoder(model, tok, sids)
    t = time.perf_counter()
    recs = dec.recommend(texts, k=beam, beam=beam, batch_size=32)
    log(f"{ckpt}: {len(cases)} cases decoded in {time.perf_counter() - t:.0f}s")
    cache.write_bytes(pickle.dumps(recs))
    return recs, sids


# --- the back-off mixture (genrec_lite.sid.backoff) --------------------------------------------
def last_item_affinity(cases, cold_ids, catalog, vectors: np.ndarray) -> np.ndarray:
    """(n_cases, n_cold) cosine of each cold item's text vector to each case's last history item."""
    last = catalog.indices_of([c.history[-1] for c in cases])
    return vectors[last] @ vectors[catalog.indices_of(cold_ids)].T


def backoff_lists(recs, sids, cold_ids: np.ndarray, affinity: np.ndarray, cfg, k: int = 10
                  ) -> list[list[int]]:
    """Each case's top k under the back-off mixture: the beam's items and the cold ones."""
    from genrec_lite.sid.backoff import backoff_scores, merge_backoff

    first = np.array([sids.codes_of(i)[0] for i in cold_ids.tolist()], dtype=np.int64)
    level0 = np.stack([r.level0 for r in recs])
    extra = backoff_scores(level0, first, affinity, cfg)
    return [merge_backoff(r.items, r.scores, cold_ids, row, k)[0] for r, row in zip(recs, extra)]


# Grid of the back-off settings; the one with the best validation NDCG@10 over all cases is kept
# (never the test cases, never one segment alone).
# The weight reaches past 1: with the prefix factor the mass is scaled by p_model(a | h), about
# 1 / codebook_size for an average code.
BACKOFF_GRID = [dict(prefix_power=pp, temperature=t, weight=w)
                for pp in (0.0, 0.5, 1.0) for t in (0.05, 0.1, 0.2, 0.4)
                for w in (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0,
                          100.0, 300.0)]


def tune_backoff(recs, sids, cases, cold_ids, affinity, segments) -> tuple[dict, list]:
    """(chosen settings, every trial's metrics) on validation cases."""
    from genrec_lite.sid.backoff import BackoffConfig

    trials = []
    for g in BACKOFF_GRID:
        lists = backoff_lists(recs, sids, cold_ids, affinity, BackoffConfig(**g))
        trials.append({"settings": g, "metrics": segment_metrics(lists, cases, segments)})
    best = max(trials, key=lambda t: t["metrics"]["all"]["NDCG@10"])
    return best["settings"], trials


# --- the run ------------------------------------------------------------------------------------
# The split each data set's back-off settings are chosen on (its validation cases), and the final
# split the test cases are scored on (quality.py's COMPACT).
TUNE_SPLIT = {"amazon-industrial": "temporal:1000000", "ml-100k": "leave-one-out"}


def cold_items(catalog, train) -> np.ndarray:
    """Catalog items that never occur in the training sequences, in catalog order."""
    seen = trained_items(train)
    return np.array([i for i in catalog.item_ids.tolist() if i not in seen], dtype=np.int64)


def validation_backoff(name: str, P: dict, work: Path, args, vectors: np.ndarray) -> dict:
    """The back-off settings on validation: the tuning split's model on the valid cases (targets
    after its training period, so its cold items are those without interactions before it).
    The settings are chosen on a seeded random half of the cases and measured on the other half
    against content kNN and the model alone, then chosen again on all of them for the test run."""
    from benchmarks.baselines.content import ContentKNN
    from genrec_lite.sid.backoff import BackoffConfig

    ds = P["dataset"]
    tune_ckpt = Path(args.tune_model) if args.tune_model else train_model(
        ds, name, TUNE_SPLIT[name], work, args.quick, minutes=args.minutes, epochs=args.epochs)
    valid = P["valid"][:200] if args.quick else P["valid"]
    v_cold = cold_items(ds.catalog, P["tune_train"])
    v_natural = np.isin([c.target for c in valid], v_cold)
    v_recs, v_sids = beam_answers(tune_ckpt, valid, work)
    v_aff = last_item_affinity(valid, v_cold, ds.catalog, vectors)
    half = np.random.default_rng(0).permutation(len(valid)) < len(valid) // 2
    val: dict = {"model": str(tune_ckpt), "n_cases": len(valid),
                 "n_natural_cases": int(v_natural.sum()), "n_cold_items": len(v_cold)}
    for part, rows in (("chosen_on_half_a", half), ("chosen_on_all", np.ones(len(valid), bool))):
        idx = np.flatnonzero(rows)
        cases = [valid[i] for i in idx]
        chosen, trials = tune_backoff([v_recs[i] for i in idx], v_sids, cases, v_cold,
                                      v_aff[idx], {"natural": v_natural[idx]})
        val[part] = {"chosen": chosen, "trials": trials}
    # the held-out half B: content kNN, the model, the model with half A's back-off
    idx_b = np.flatnonzero(~half)
    cases_b = [valid[i] for i in idx_b]
    seg_b = {"natural": v_natural[idx_b]}
    rows_b = {m.name: segment_metrics(m.fit(P["tune_train"], ds.catalog.item_ids)
                                      .recommend([c.history for c in cases_b], 10), cases_b, seg_b)
              for m in (ContentKNN(vectors), ContentKNN(vectors, exclude_history=True))}
    recs_b = [v_recs[i] for i in idx_b]
    rows_b["genrec-lite compact (one view)"] = segment_metrics(
        [r.items[:10] for r in recs_b], cases_b, seg_b)
    rows_b["genrec-lite compact (one view) + back-off"] = segment_metrics(
        backoff_lists(recs_b, v_sids, v_cold, v_aff[idx_b],
                      BackoffConfig(**val["chosen_on_half_a"]["chosen"])), cases_b, seg_b)
    val["half_b"] = {"n_cases": len(cases_b), "n_natural_cases": int(seg_b["natural"].sum()),
                     "models": rows_b}
    log(f"back-off chosen on validation half A: {val['chosen_on_half_a']['chosen']}; "
        f"on all: {val['chosen_on_all']['chosen']}")
    return val


def natural_segment(name: str, P: dict, work: Path, args) -> dict:
    """The natural segment: test cases whose target never occurs in training; the back-off
    settings chosen on the validation cases of a model trained on the tuning split."""
    from genrec_lite.sid.backoff import BackoffConfig

    ds, test = P["dataset"], P["test"]
    vectors = content_vectors(ds)
    cold = cold_items(ds.catalog, P["final_train"])
    natural = np.isin([c.target for c in test], cold)
    log(f"{name}: {len(cold)} catalog items never trained on; {int(natural.sum())} of {len(test)} "
        "test cases have one as target")
    out: dict = {"n_cold_items": int(len(cold)), "n_cases": len(test),
                 "n_natural_cases": int(natural.sum()), "models": {}}
    for label, lists in baseline_lists(name, P, "final_train", test, vectors, work,
                                       args.quick).items():
        out["models"][label] = segment_metrics(lists, test, {"natural": natural})

    val = validation_backoff(name, P, work, args, vectors)
    out["validation"] = val

    if args.model == "none":
        return out
    ckpt = Path(args.model) if args.model else train_model(
        ds, name, COMPACT[name]["split"], work, args.quick, minutes=args.minutes,
        epochs=args.epochs)
    recs, sids = beam_answers(ckpt, test, work)
    out["model"] = str(ckpt)
    out["models"]["genrec-lite compact (one view)"] = segment_metrics(
        [r.items[:10] for r in recs], test, {"natural": natural})
    lists = backoff_lists(recs, sids, cold, last_item_affinity(test, cold, ds.catalog, vectors),
                          BackoffConfig(**val["chosen_on_all"]["chosen"]))
    out["models"]["genrec-lite compact (one view) + back-off"] = segment_metrics(
        lists, test, {"natural": natural})
    return out


LAUNCH_SHARE = 0.10   # of the catalog hidden from training in the launch segment


def launch_dataset(name: str, P: dict, held: set[int]):
    """The final training sequences without the held-out items (every interaction with them
    removed), as a data set over the other items whose split 'temporal:inf' trains on all of it."""
    from genrec_lite.data import Dataset
    from genrec_lite.data.interactions import Interactions

    ds = P["dataset"]
    users, items = [], []
    for user, seq in P["final_train"].items():
        kept = [int(i) for i in np.asarray(seq).tolist() if int(i) not in held]
        users += [user] * len(kept)
        items += kept
    times = np.concatenate([np.arange(n) for n in np.unique(users, return_counts=True)[1]]) \
        if users else np.zeros(0, np.int64)
    order = np.argsort(np.array(users), kind="stable")   # timestamps follow each user's order
    inter = Interactions(np.array(users)[order], np.array(items, np.int64)[order], times)
    keep = [i for i in ds.catalog.item_ids.tolist() if i not in held]
    return Dataset(f"{name}-launch", ds.catalog.subset(keep), inter, ds.profiles, None, None)


def launch_segment(name: str, P: dict, work: Path, args) -> dict:
    """A seeded 10% of the items hidden from training, given to a live Recommender with add_items
    from their text, the test cases whose target is one of them scored through the C++ runtime."""
    from genrec_lite.export.bundle import export_bundle
    from genrec_lite.runtime import Recommender

    ds, test = P["dataset"], P["test"]
    ids = ds.catalog.item_ids
    rng = np.random.default_rng(0)
    held = {int(i) for i in rng.choice(ids, size=max(1, int(LAUNCH_SHARE * len(ids))),
                                       replace=False).tolist()}
    launch = np.isin([c.target for c in test], sorted(held))
    log(f"{name} launch: {len(held)} items hidden from training, {int(launch.sum())} test cases "
        "have one as target")
    sub = launch_dataset(name, P, held)
    lwork = work / "launch"
    lwork.mkdir(parents=True, exist_ok=True)
    P_l = dict(P, final_train={u: np.array([i for i in np.asarray(s).tolist() if i not in held])
                               for u, s in P["final_train"].items()},
               tune_train={u: np.array([i for i in np.asarray(s).tolist() if i not in held])
                           for u, s in P["tune_train"].items()})
    out: dict = {"n_held_items": len(held), "n_cases": len(test),
                 "n_launch_cases": int(launch.sum()), "models": {}}
    for label, lists in baseline_lists(name, P_l, "final_train", test, content_vectors(ds), lwork,
                                       args.quick).items():
        out["models"][label] = segment_metrics(lists, test, {"launch": launch})
    ckpt = train_model(sub, name, "temporal:inf", lwork, args.quick, minutes=args.minutes,
                       epochs=args.epochs)
    bundle = lwork / "bundle-f16"
    if not (bundle / "manifest.json").is_file() or \
            (bundle / "manifest.json").stat().st_mtime < (ckpt / "fit.json").stat().st_mtime:
        export_bundle(ckpt, bundle, quant="f16")
    rec = Recommender.load(bundle, n_threads=2)
    try:
        t = time.perf_counter()
        rec.add_items([ds.catalog.record(i) for i in sorted(held)])
        out["add_items_seconds"] = round(time.perf_counter() - t, 2)
        lists = []
        for s in range(0, len(test), 32):
            answers = rec.recommend_batch([{"history": list(c.history), "k": 10, "beam": 20}
                                           for c in test[s:s + 32]])
            lists += [[r.item_id for r in a] for a in answers]
    finally:
        rec.close()
    out["model"] = str(ckpt)
    out["models"]["genrec-lite compact (one view), C++ runtime"] = segment_metrics(
        lists, test, {"launch": launch})
    return out


def tables(name: str, res: dict) -> str:
    from genrec_lite.eval import metrics_table

    nat = res["natural"]
    text = [f"### {name}"]
    for where, models in (("test", nat["models"]),
                          ("validation half B", nat["validation"]["half_b"]["models"])):
        for seg, label in (("natural", "natural segment (target never trained on)"),
                           ("all", "all cases")):
            rows = {m: r[seg] for m, r in models.items() if seg in r}
            text.append(f"\n{where}, {label}\n\n" + metrics_table(rows))
    if "launch" in res:
        for seg, label in (("launch", "launch segment (target hidden from training, added from "
                                      "text)"), ("all", "all test cases, launch training")):
            rows = {m: r[seg] for m, r in res["launch"]["models"].items() if seg in r}
            text.append(f"\ntest, {label}\n\n" + metrics_table(rows))
    return "\n".join(text) + "\n"


def main(argv=None) -> int:
    from benchmarks.baselines.run import load_protocol, machine_info

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", nargs="+", default=["amazon-industrial"],
                    choices=sorted(TUNE_SPLIT))
    ap.add_argument("--model", default=None,
                    help="a one-view checkpoint trained on the final split (default: train one; "
                         "'none': validation only)")
    ap.add_argument("--tune-model", default=None,
                    help="a one-view checkpoint trained on the tuning split, to choose the "
                         "back-off settings with (default: train one)")
    ap.add_argument("--minutes", type=float, default=60.0, help="budget of each training run")
    ap.add_argument("--epochs", type=int, default=None,
                    help="shorten the recipe's schedule to this many epochs (a slow machine)")
    ap.add_argument("--launch", action="store_true",
                    help="also the launch segment (one more training run and its bundle)")
    ap.add_argument("--quick", action="store_true", help="tiny budgets, for a smoke test")
    ap.add_argument("--out", default=str(RESULTS / "cold_start.json"))
    args = ap.parse_args(argv)
    if not DATA.is_dir():
        log(f"{DATA} not found: the cold-start benchmark needs the shared data sets")
        return 1
    import torch

    torch.set_num_threads(2)
    report = {"benchmark": "cold_start", "machine": machine_info(), "quick": args.quick,
              "epochs": args.epochs or "the recipe's (quality.py COMPACT)", "model": args.model,
              "tune_model": args.tune_model, "backoff_grid": BACKOFF_GRID, "datasets": {}}
    md = []
    for name in args.datasets:
        work = ROOT / "runs" / ("cold-start-quick" if args.quick else "cold-start") / name
        work.mkdir(parents=True, exist_ok=True)
        P = load_protocol(name, DATA)
        report["datasets"][name] = {"natural": natural_segment(name, P, work, args)}
        if args.launch:
            report["datasets"][name]["launch"] = launch_segment(name, P, work, args)
        md.append(tables(name, report["datasets"][name]))
        print(md[-1], flush=True)
    if not args.quick:
        out = Path(args.out)
        if out.is_file():  # a run over some data sets keeps the others' results
            old = json.loads(out.read_text()).get("datasets", {})
            report["datasets"] = {**{k: v for k, v in old.items() if k not in report["datasets"]},
                                  **report["datasets"]}
        out.write_text(json.dumps(report, indent=1, default=str))
        log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
