#!/usr/bin/env python
"""Cold-start benchmark: are items the model never trained on recommended?

    python benchmarks/cold_start.py                       # amazon-industrial, natural + launch
    python benchmarks/cold_start.py --datasets ml-100k
    python benchmarks/cold_start.py --no-launch           # the natural segment only
    python benchmarks/cold_start.py --no-natural          # the launch segment only
    python benchmarks/cold_start.py --no-natural --launch-recipe fit
                                                          # launch, served by fit's own bundle
    python benchmarks/cold_start.py --quick               # smoke test: tiny budgets

Segments (HR/NDCG@1,3,5,10 on each and on all test cases):
  natural  the test cases whose target never occurs in the training interactions (amazon:
           timestamp < 2,000,000; ml-100k: the leave-one-out final training part);
  launch   a seeded random 10% of the items hidden from training entirely (Dataset.without_items:
           every interaction with them removed), the model and baselines trained without them, the
           items then given to the live Recommender with add_items from their text only; its
           cold-start settings are chosen on validation shaped the same way (the tuning split's
           model trained without those items, which are then added from their text). With
           --launch-recipe fit, the model is what `genrec-lite fit` ships, run on the data
           without those items (cold start and re-ranker chosen by fit on its own validation).
Against, trained in the same run on the same data: content kNN (the cosine of all-MiniLM-L6-v2
embeddings of title + brand to the last history item, whole catalog ranked; with and without the
history's own items), popularity and SASRec (benchmarks/baselines, quality.py's configuration).

The generative model is the one-view compact recipe of quality.py (runs/cold-start/, reused when
finished), scored through the C++ runtime (Recommender) with and without cold start
(runtime/cold_start.py). The cold-start settings are chosen by eval/cold_start.py on the
validation cases with a model trained on the tuning split (amazon: < 1,000,000), on a seeded half
A and reported on half B, then chosen on all of them for the test runs (both segments), with the
price paid at the cold share the final model is estimated to see, as `fit` does
(eval/cold_start.served_cold_share; the choice at validation's own share is reported beside it).
Writes benchmarks/results/cold_start.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a script: find the benchmarks package from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from genrec_lite.eval import segment_metrics  # noqa: E402
from genrec_lite.eval.cold_start import trained_items  # noqa: E402

from benchmarks.quality import (COLLAB, COMPACT, DATA, RESULTS, SASREC, build_sids,  # noqa: E402
                                log)


def train_model(dataset, name: str, split: str, work: Path, quick: bool, seed: int = 0,
                minutes: float = 60.0, epochs: int | None = None) -> Path:
    """The one-view compact recipe of quality.py (COMPACT, collaborative SIDs from the same
    split's training part) trained on `split`; a finished run in `work` is reused. `epochs`
    shortens the schedule (same warm-up share) where a machine cannot afford the recipe's."""
    from genrec_lite import pipeline
    from genrec_lite.train.trainer import TrainConfig

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
    fit = pipeline.train(dataset, sids, out, cfg, progress=False, resume=False)
    done.write_text(json.dumps({"train": asdict(cfg), "fit": fit,
                                "minutes": round((time.perf_counter() - t) / 60, 1)}, indent=1))
    return out


# --- segments and scoring -----------------------------------------------------------------------
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
                   quick: bool, seed: int = 0) -> dict[str, np.ndarray]:
    """Top-10 lists of content kNN, popularity and SASRec trained on P[train_key] (SASRec for
    sasrec_epochs), cached in `work`."""
    from benchmarks.baselines import Popularity, SASRec, SASRecConfig
    from benchmarks.baselines.content import ContentKNN

    cache = work / (f"baselines-{train_key}-{len(cases)}" + (f"-seed{seed}" if seed else "")
                    + ".npz")
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
    model = SASRec(SASRecConfig(seed=seed, n_threads=2, **params)).fit(P[train_key], items,
                                                                    epochs=epochs)
    out["SASRec"] = model.recommend(hist, 10)
    log(f"SASRec: {epochs} epochs ({source}), {time.perf_counter() - t:.0f}s")
    np.savez(cache, **out)
    return out


# The split each data set's cold-start settings are chosen on (its validation cases), and the final
# split the test cases are scored on (quality.py's COMPACT).
TUNE_SPLIT = {"amazon-industrial": "temporal:1000000", "ml-100k": "leave-one-out"}


def cold_items(catalog, train) -> np.ndarray:
    """Catalog items that never occur in the training sequences, in catalog order."""
    seen = trained_items(train)
    return np.array([i for i in catalog.item_ids.tolist() if i not in seen], dtype=np.int64)


# --- the generative model -----------------------------------------------------------------------
def bundle_of(ckpt: Path, settings=None) -> Path:
    """The F16 bundle of a checkpoint (exported once, beside it), serving with `settings`."""
    from genrec_lite import pipeline
    from genrec_lite.export.bundle import set_cold_start
    from genrec_lite.train.checkpoint import weights_dir

    bundle = ckpt.parent / f"{ckpt.name}-bundle-f16"
    if not (bundle / "manifest.json").is_file() or \
            (bundle / "manifest.json").stat().st_mtime < weights_dir(ckpt).stat().st_mtime:
        pipeline.export(ckpt, bundle, quant="f16")
    set_cold_start(bundle, settings)
    return bundle


def served(bundle: Path, cases, profiles, launched=None, check: int = 200):
    """(the Recommender's model-only answers, its SID table and cold items, facts) for `cases`
    (after add_items of the `launched` catalog records, from their text). With the bundle's own
    cold-start settings, the first `check` cases are also answered with the mixture on, through
    the Recommender, and compared with the offline mixing of the model-only answers."""
    from genrec_lite.eval.cold_start import ColdCandidates, runtime_answers
    from genrec_lite.runtime import Recommender

    rec = Recommender.load(bundle, n_threads=2)
    try:
        extra = {}
        if launched:
            t = time.perf_counter()
            rec.add_items(launched)
            extra["add_items_seconds"] = round(time.perf_counter() - t, 2)
        use = profiles if rec.bundle.manifest.use_profiles else None
        t = time.perf_counter()
        answers = runtime_answers(rec, cases, profiles=use)
        extra["decode_seconds"] = round(time.perf_counter() - t, 1)
        state = rec.catalog.state
        if rec.cold_start is not None and check:
            part = cases[:check]
            reqs = [{"history": list(c.history), "k": 10, "beam": 20,
                     "profile": use.get(c.user_id) if use is not None else None} for c in part]
            live = [[r.item_id for r in a] for s in range(0, len(reqs), 32)  # runtime_answers' batches
                    for a in rec.recommend_batch(reqs[s:s + 32])]
            offline = ColdCandidates(state.sids, state.cold, part).lists(answers[:check], rec.cold_start)
            extra["runtime_check"] = {"cases": len(part),
                                      "equal": int(sum(a == b for a, b in zip(live, offline)))}
        return answers, state.sids, state.cold.copy(), extra
    finally:
        rec.close()


BEST_OVERALL = "genrec-lite compact (one view) + cold start, best overall (max_cost 0)"
VALID_SHARE = "genrec-lite compact (one view) + cold start, priced at validation's cold share"


def model_rows(answers, sids, cold, cases, settings, segments, best_overall=None,
               valid_share=None) -> dict:
    """The model alone and with cold start (one mixing code: the runtime's), per segment; with
    `best_overall`, also the settings the rule without an exposure price chose (max_cost 0);
    with `valid_share`, those it chose with the price paid at validation's cold share."""
    from genrec_lite.eval.cold_start import ColdCandidates

    cand = ColdCandidates(sids, cold, cases)
    targets = [c.target for c in cases]
    rows = {"genrec-lite compact (one view)": segment_metrics(cand.lists(answers, None), targets,
                                                              segments)}
    if settings is not None:
        rows["genrec-lite compact (one view) + cold start"] = segment_metrics(
            cand.lists(answers, settings), targets, segments)
    for label, other in ((BEST_OVERALL, best_overall), (VALID_SHARE, valid_share)):
        if other is not None and other != settings:
            rows[label] = segment_metrics(cand.lists(answers, other), targets, segments)
    return rows


def served_choice(trials: list[dict], valid_cases, valid_cold, ckpt: Path, added=()) -> dict:
    """The procedure's choice for the served bundle of `ckpt` (with `added` items) from the
    trials of the tuning model (its cold items `valid_cold`): the price paid at the cold share
    the served model will see, as `genrec-lite fit` does (pipeline.pick_cold_start)."""
    from genrec_lite import pipeline

    cfg, shares = pipeline.pick_cold_start(
        pipeline.cold_start_tuning(trials, valid_cases, valid_cold),
        served_cold=pipeline.served_cold_items(ckpt, added))
    return {"chosen": None if cfg is None else cfg.to_dict(), **shares}


def _settings(d):
    from genrec_lite.runtime.cold_start import ColdStartConfig

    return None if d is None else ColdStartConfig.from_dict(d)


def family_bests(trials: list[dict]) -> dict:
    """The best trial (validation NDCG@10 over all cases) of each family of the grid: each cap on
    the cold items a list (and off), to see what each one offers."""
    best: dict = {}
    for t in trials:
        s = t["settings"]
        fam = "off" if s is None else f"slots {s.get('slots')}"
        ndcg = t["metrics"]["all"]["NDCG@10"]
        if fam not in best or ndcg > best[fam]["metrics"]["all"]["NDCG@10"]:
            best[fam] = t
    return best


COSTS = (0.0, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2)   # the first: the best overall rule


def cost_frontier(trials: list[dict]) -> list[dict]:
    """What each price buys on validation: for each cost (the share of the best overall HR@10
    and NDCG@10 given up), the setting that ranks the cold cases best within it (the procedure
    with that max_cost) and its metrics."""
    from genrec_lite.eval.cold_start import pick

    rows = []
    for cost in COSTS:
        cfg = pick(trials, max_cost=cost)
        d = None if cfg is None else cfg.to_dict()
        t = next(t for t in trials if t["settings"] == d)
        rows.append({"max_cost": cost, "settings": d,
                     **{f"{part} {key}": t["metrics"][part][key] for part in ("all", "cold")
                        if part in t["metrics"] for key in ("HR@10", "NDCG@10")}})
    return rows


def validation_settings(name: str, P: dict, work: Path, args, vectors: np.ndarray
                        ) -> tuple[dict, tuple]:
    """The cold-start settings chosen on validation: the tuning split's model on the valid cases
    (targets after its training period, so its cold items are those it never trained on). Chosen
    on a seeded random half A and measured on the other half B against content kNN and the model
    alone; then chosen again on all the valid cases for the test runs. Returns (the report, the
    trials on all the valid cases with those cases and the model's cold items: `served_choice`'s
    first arguments)."""
    from benchmarks.baselines.content import ContentKNN
    from genrec_lite.eval import cold_start as grid
    from genrec_lite.eval.cold_start import choose_cold_start, repeat_rate

    ds = P["dataset"]
    ckpt = train_model(ds, name, TUNE_SPLIT[name], work, args.quick, seed=args.seed,
                       minutes=args.minutes, epochs=args.epochs)
    valid = P["valid"][:300] if args.quick else P["valid"]
    answers, sids, cold, extra = served(bundle_of(ckpt), valid, ds.profiles)
    natural = np.isin([c.target for c in valid], cold_items(ds.catalog, P["tune_train"]))
    half = np.random.default_rng(0).permutation(len(valid)) < len(valid) // 2
    rate = repeat_rate(valid, cold)
    axes = {"weight": grid.WEIGHTS, "temperature": grid.TEMPERATURES, "history": grid.HISTORY,
            "query": grid.QUERIES, "slots": grid.SLOTS, "repeat": rate,
            "near": grid.NEAR, "near_from_temperature": grid.BROAD,
            "n_settings": len(grid.settings_grid(rate))}
    val: dict = {"model": str(ckpt), "n_cases": len(valid), "n_natural_cases": int(natural.sum()),
                 "n_cold_items": int(len(cold)), "grid": axes, "repeat_rate": rate, **extra}
    chosen = {}
    for part, rows in (("chosen_on_half_a", half), ("chosen_on_all", np.ones(len(valid), bool))):
        idx = np.flatnonzero(rows)
        cfg, trials = choose_cold_start([answers[i] for i in idx], [valid[i] for i in idx], sids,
                                        cold)
        chosen[part] = cfg
        front = cost_frontier(trials)
        val[part] = {"chosen": None if cfg is None else cfg.to_dict(),
                     "best_overall": front[0]["settings"],
                     "best_by_family": family_bests(trials), "frontier": front}
    idx_b = np.flatnonzero(~half)
    cases_b = [valid[i] for i in idx_b]
    seg_b = {"natural": natural[idx_b]}
    rows_b = {m.name: segment_metrics(m.fit(P["tune_train"], ds.catalog.item_ids)
                                      .recommend([c.history for c in cases_b], 10),
                                      [c.target for c in cases_b], seg_b)
              for m in (ContentKNN(vectors), ContentKNN(vectors, exclude_history=True))}
    rows_b.update(model_rows([answers[i] for i in idx_b], sids, cold, cases_b,
                             chosen["chosen_on_half_a"], seg_b,
                             _settings(val["chosen_on_half_a"]["best_overall"])))
    val["half_b"] = {"n_cases": len(cases_b), "n_natural_cases": int(seg_b["natural"].sum()),
                     "models": rows_b}
    log(f"cold start chosen on validation half A: {val['chosen_on_half_a']['chosen']}; "
        f"on all: {val['chosen_on_all']['chosen']}")
    return val, (trials, valid, cold)   # the last trials: those on all the valid cases


def natural_segment(name: str, P: dict, work: Path, args, vectors: np.ndarray, val: dict,
                    tuning: tuple) -> dict:
    """The natural segment: test cases whose target never occurs in training."""
    ds, test = P["dataset"], P["test"]
    cold = cold_items(ds.catalog, P["final_train"])
    natural = np.isin([c.target for c in test], cold)
    log(f"{name}: {len(cold)} catalog items never trained on; {int(natural.sum())} of {len(test)} "
        "test cases have one as target")
    out: dict = {"n_cold_items": int(len(cold)), "n_cases": len(test),
                 "n_natural_cases": int(natural.sum()), "models": {}}
    for label, lists in baseline_lists(name, P, "final_train", test, vectors, work,
                                       args.quick, args.seed).items():
        out["models"][label] = segment_metrics(lists, [c.target for c in test], {"natural": natural})
    ckpt = train_model(ds, name, COMPACT[name]["split"], work, args.quick, seed=args.seed,
                       minutes=args.minutes, epochs=args.epochs)
    out["procedure"] = served_choice(*tuning, ckpt)
    chosen = out["procedure"]["chosen"]
    settings = _settings(chosen)
    answers, sids, served_cold, extra = served(bundle_of(ckpt, settings), test, ds.profiles)
    out.update(model=str(ckpt), settings=chosen, n_served_cold_items=int(len(served_cold)),
               test_cold_share=float(np.isin([c.target for c in test], served_cold).mean()),
               **extra)
    out["models"].update(model_rows(answers, sids, served_cold, test, settings,
                                    {"natural": natural},
                                    _settings(val["chosen_on_all"].get("best_overall")),
                                    _settings(val["chosen_on_all"]["chosen"])))
    return out


LAUNCH_SHARE = 0.10   # of the catalog hidden from training in the launch segment


def launched_items(ds, seed: int = 0) -> np.ndarray:
    ids = ds.catalog.item_ids
    size = max(1, int(LAUNCH_SHARE * len(ids)))
    return np.sort(np.random.default_rng(seed).choice(ids, size=size, replace=False))


def launch_start(name: str, P: dict, work: Path, args, vectors: np.ndarray) -> tuple:
    """What both launch recipes start from: (the launched items, the mask of the test cases
    whose target is one of them, the replicate's folder, the segment's counts with the
    baselines' rows, each trained on the final training split without those items and cached
    in that folder)."""
    test = P["test"]
    held = launched_items(P["dataset"], args.seed)
    hidden = set(held.tolist())
    launch = np.isin([c.target for c in test], held)
    log(f"{name} launch: {len(held)} items hidden from training, {int(launch.sum())} test cases "
        "have one as target")
    lwork = work / ("launch" if args.seed == 0 else f"launch-seed{args.seed}")
    lwork.mkdir(parents=True, exist_ok=True)

    def without(train):
        return {u: np.array([i for i in np.asarray(s).tolist() if i not in hidden])
                for u, s in train.items()}

    P_l = dict(P, final_train=without(P["final_train"]), tune_train=without(P["tune_train"]))
    out: dict = {"n_held_items": len(held), "n_cases": len(test),
                 "n_launch_cases": int(launch.sum()), "models": {}}
    for label, lists in baseline_lists(name, P_l, "final_train", test, vectors, lwork,
                                       args.quick, args.seed).items():
        out["models"][label] = segment_metrics(lists, [c.target for c in test], {"launch": launch})
    return held, launch, lwork, out


def launch_segment(name: str, P: dict, work: Path, args, vectors: np.ndarray,
                   val: dict | None) -> dict:
    """A seeded 10% of the items hidden from training, then given to the live Recommender with
    add_items from their text; the test cases whose target is one of them, and all test cases."""

    ds, test = P["dataset"], P["test"]
    held, launch, lwork, out = launch_start(name, P, work, args, vectors)
    # the settings are chosen on validation shaped like this segment: the tuning split's model
    # trained without the launched items, which are then added from their text
    from genrec_lite.eval.cold_start import choose_cold_start, repeat_rate

    records = [ds.catalog.record(i) for i in held.tolist()]
    valid = P["valid"][:300] if args.quick else P["valid"]
    tune = train_model(ds.without_items(held), name, TUNE_SPLIT[name], lwork, args.quick,
                       seed=args.seed, minutes=args.minutes, epochs=args.epochs)
    v_answers, v_sids, v_cold, _ = served(bundle_of(tune), valid, ds.profiles, launched=records,
                                          check=0)
    cfg, trials = choose_cold_start(v_answers, valid, v_sids, v_cold)
    chosen = None if cfg is None else cfg.to_dict()
    front = cost_frontier(trials)
    out["validation"] = {"model": str(tune), "n_cases": len(valid),
                         "n_launch_cases": int(np.isin([c.target for c in valid], held).sum()),
                         "repeat_rate": repeat_rate(valid, v_cold),
                         "chosen": chosen,
                         "best_overall": front[0]["settings"],
                         "best_by_family": family_bests(trials), "frontier": front,
                         "natural_validation_chose": val and val["chosen_on_all"]["chosen"]}
    ckpt = train_model(ds.without_items(held), name, COMPACT[name]["split"], lwork, args.quick,
                       seed=args.seed, minutes=args.minutes, epochs=args.epochs)
    out["procedure"] = served_choice(trials, valid, v_cold, ckpt, held)
    settings = _settings(out["procedure"]["chosen"])
    log(f"{name} launch: cold start chosen on the launch-shaped validation: "
        f"{out['procedure']['chosen']} (at validation's cold share: {chosen})")
    answers, sids, cold, extra = served(bundle_of(ckpt, settings), test, ds.profiles,
                                        launched=records)
    out.update(model=str(ckpt), settings=out["procedure"]["chosen"],
               n_served_cold_items=int(len(cold)),
               test_cold_share=float(np.isin([c.target for c in test], cold).mean()), **extra)
    out["models"].update(model_rows(answers, sids, cold, test, settings, {"launch": launch},
                                    _settings(front[0]["settings"]), cfg))
    return out


FIT_LAUNCH = "genrec-lite fit (its bundle, launched items added)"


def launch_fit_segment(name: str, P: dict, work: Path, args, vectors: np.ndarray) -> dict:
    """The launch segment served by what `genrec-lite fit` ships: the whole procedure run on the
    data without the launched items (out of the catalog and the log; the split resolved on the
    whole data, so the launch cannot move its cut), its bundle then given them with add_items
    from their text. Cold start and the re-ranker are as fit chose them on its own validation,
    where the cold items are those its tuning model never trained on: nothing is tuned on the
    launched items. Every test case is scored through the C++ runtime, with the bundle's cold
    start on and off."""
    from genrec_lite import pipeline
    from genrec_lite.data import resolve_split
    from genrec_lite.fit import fit

    from benchmarks.quality import finished_fit, quick_fit_kwargs

    ds, test = P["dataset"], P["test"]
    held, launch, lwork, out = launch_start(name, P, work, args, vectors)
    fdir = lwork / "fit"
    rep = finished_fit(fdir, args.minutes, args.seed)
    if rep is None:
        rep = fit(ds.without_items(held), fdir, minutes=args.minutes, threads=2, seed=args.seed,
                  split=resolve_split("auto", ds).spec, log=log,
                  **(quick_fit_kwargs() if args.quick else {}))
    else:
        log(f"{fdir}: reusing the finished run")
    t = time.perf_counter()
    rec = pipeline.serve_with_launch(fdir / "bundle", ds.catalog, held, 2)
    out["add_items_seconds"] = round(time.perf_counter() - t, 2)
    targets = [c.target for c in test]
    try:
        out.update(fit=str(fdir), minutes=rep["minutes"], point=rep["serving_chosen"],
                   cold_start=rep["cold_start"], reranker=rec.reranker is not None,
                   n_served_cold_items=int(len(rec.catalog.state.cold)))
        settings = [(FIT_LAUNCH, rec.cold_start)]
        if rec.cold_start is not None:   # the same bundle without it
            settings.append((f"{FIT_LAUNCH}, cold start off", None))
        for label, cold in settings:
            rec.set_cold_start(cold)
            ranked: list = []
            pipeline.evaluate_recommender(rec, ds, test, ranked=ranked)
            out["models"][label] = segment_metrics(ranked, targets, {"launch": launch})
    finally:
        rec.close()
    return out


def tables(name: str, res: dict) -> str:
    from genrec_lite.eval import metrics_table

    text = [f"### {name}"]
    parts = []
    if "validation" in res:
        parts.append(("validation half B", res["validation"]["half_b"]["models"],
                      (("natural", "natural segment (target never trained on)"),
                       ("all", "all cases"))))
    if "natural" in res:
        parts.append(("test", res["natural"]["models"],
                      (("natural", "natural segment (target never trained on)"),
                       ("all", "all cases"))))
    if "launch" in res:
        parts.append(("test", res["launch"]["models"],
                      (("launch", "launch segment (target hidden from training, added from text)"),
                       ("all", "all cases, launch training"))))
    if "launch_fit" in res:
        parts.append(("test, fit's recipe", res["launch_fit"]["models"],
                      (("launch", "launch segment (target hidden from training, added from text)"),
                       ("all", "all cases, launch training"))))
    for where, models, segs in parts:
        for seg, label in segs:
            rows = {m: r[seg] for m, r in models.items() if seg in r}
            if not rows:  # a segment without cases (leave-one-out validation has no natural ones)
                continue
            text.append(f"\n{where}, {label}\n\n" + metrics_table(rows))
    return "\n".join(text) + "\n"


def main(argv=None) -> int:
    from benchmarks.baselines.run import load_protocol, machine_info

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", nargs="+", default=["amazon-industrial"],
                    choices=sorted(TUNE_SPLIT))
    ap.add_argument("--minutes", type=float, default=60.0, help="budget of each training run")
    ap.add_argument("--epochs", type=int, default=None,
                    help="shorten the recipe's schedule to this many epochs (a slow machine)")
    ap.add_argument("--launch", action=argparse.BooleanOptionalAction, default=True,
                    help="the launch segment (two more training runs and their bundles)")
    ap.add_argument("--launch-recipe", choices=("compact", "fit"), default="compact",
                    help="the model of the launch segment: the one-view compact recipe with its "
                         "settings chosen on launch-shaped validation (two training runs), or "
                         "what `genrec-lite fit` ships, run on the data without the launched "
                         "items (--minutes is its budget)")
    ap.add_argument("--natural", action=argparse.BooleanOptionalAction, default=True,
                    help="the natural segment and its validation (two training runs)")
    ap.add_argument("--seed", type=int, default=0,
                    help="a replicate: the models' and SASRec's seed, and which 10%% of the items "
                         "the launch segment holds out")
    ap.add_argument("--quick", action="store_true", help="tiny budgets, for a smoke test")
    ap.add_argument("--out", default=str(RESULTS / "cold_start.json"))
    args = ap.parse_args(argv)
    if not DATA.is_dir():
        log(f"{DATA} not found: the cold-start benchmark needs the shared data sets")
        return 1
    import torch

    torch.set_num_threads(2)
    report = {"benchmark": "cold_start", "machine": machine_info(), "quick": args.quick,
              "datasets": {}}
    md = []
    for name in args.datasets:
        work = ROOT / "runs" / ("cold-start-quick" if args.quick else "cold-start") / name
        work.mkdir(parents=True, exist_ok=True)
        P = load_protocol(name, DATA)
        vectors = content_vectors(P["dataset"])
        res = report["datasets"][name] = {
            "epochs": args.epochs or "the recipe's (quality.py COMPACT)", "seed": args.seed,
            "machine": report["machine"]}  # a run over some data sets keeps the others' results
        val = None
        if args.natural:
            val, tuning = validation_settings(name, P, work, args, vectors)
            res["validation"] = val
            res["natural"] = natural_segment(name, P, work, args, vectors, val, tuning)
        if args.launch and args.launch_recipe == "fit":
            res["launch_fit"] = launch_fit_segment(name, P, work, args, vectors)
        elif args.launch:
            res["launch"] = launch_segment(name, P, work, args, vectors, val)
        md.append(tables(name, res))
        print(md[-1], flush=True)
    if not args.quick:
        out = Path(args.out)
        if out.is_file():  # a run over some data sets or segments keeps the others' results
            old_report = json.loads(out.read_text())
            old = old_report.get("datasets", {})
            for name, prev in old.items():
                # an entry without its own run's facts was written by the run of that file
                prev.setdefault("machine", old_report.get("machine"))
                new = report["datasets"].setdefault(name, prev)
                if new is prev:
                    continue
                for seg in ("validation", "natural", "launch", "launch_fit"):
                    if seg in prev and seg not in new:  # kept, with the run that measured it
                        new[seg] = {"machine": prev["machine"], "epochs": prev.get("epochs"),
                                    **prev[seg]}
        out.write_text(json.dumps(report, indent=1, default=str))
        log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
