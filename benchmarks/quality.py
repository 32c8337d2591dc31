#!/usr/bin/env python
"""Quality benchmark: `genrec-lite fit` against baselines run side by side.

    python benchmarks/quality.py                          # both data sets, seed 0, + ablations
    python benchmarks/quality.py --datasets amazon-industrial --seeds 0 1 2 --rl --no-ablations
    python benchmarks/quality.py --datasets my-category   # any folder in ../shared/data's format
    python benchmarks/quality.py --quick                  # smoke test: tiny budgets

For each data set (protocols in ../shared/data/README.md and benchmarks/baselines/run.py: a
folder with its own valid.jsonl / test.jsonl is split where they begin, any other leave-one-out):
  1. baselines in the same run: popularity, first-order Markov, SASRec (its configuration chosen
     on validation by benchmarks/baselines/run.py; a data set without a recorded choice gets the
     grid searched there);
  2. genrec-lite as a user gets it: `fit` (genrec_lite/fit.py) within --minutes for each seed,
     every choice made on the data's own validation split, the served bundle scored by the C++
     runtime (beam 20) on the test cases; with --rl also the same final model before RL (the
     ablation in the same run); the mean over the seeds;
  3. ablations (--ablations) of the recipe fit chose for the first seed, trained on the final
     split and scored with the reference decoder (beam 20): text-only SIDs, with the alignment
     tasks, SIDs with the extra level, and --views SID views (a K-view model, its beams fused).
Prints Markdown tables (also written to benchmarks/results/quality.md) and writes
benchmarks/results/quality.json. Artefacts go to runs/quality/ (git-ignored; --quick:
runs/quality-quick/).

COMPACT below keeps the hand-tuned recipes of the earlier runs (benchmarks/results/tuning.json):
the cold-start, frontier and probe scripts train them so that their figures stay comparable
with the recorded ones; nothing here uses them.
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

from benchmarks.baselines.run import PUBLISHED, machine_info, run_dataset  # noqa: E402
from genrec_lite.eval import metrics_table  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"

# SASRec: the configuration benchmarks/baselines/run.py chose by validation NDCG@10.
SASREC = {
    "amazon-industrial": dict(hidden=128, dropout=0.5, max_len=10, n_blocks=2, n_heads=1,
                              patience=10, max_epochs=200),
    "ml-100k": dict(hidden=64, dropout=0.2, max_len=50, n_blocks=2, n_heads=1, patience=10,
                    max_epochs=100),
}

# The compact backbone's configuration, chosen on validation runs: every run, with its split,
# cases and what it showed, is in benchmarks/results/tuning.json (rendered into docs/quality.md).
COMPACT = {
    # amazon: max_history 2 (tuning.json, amazon-compact-full-valid): the model mostly reads the
    # last items, and longer prompts cost it the top of the ranking.
    "amazon-industrial": dict(split="temporal:2000000", prompts="en-seq", epochs=10, warmup=0.12,
                              eval_cases=0, max_history=2, task_weights={"next_item": 1.0},
                              compact={"hidden_size": 256, "num_layers": 4, "num_heads": 4,
                                       "num_kv_heads": 4, "dropout": 0.1}),
    # ml-100k: chosen with split="leave-one-out" on all 943 validation cases (tuning.json); the
    # final model then trains on each user's valid item too, as the baselines do
    # (benchmarks/baselines/run.py), for the same fixed number of epochs.
    "ml-100k": dict(split="leave-one-out:final", prompts="en-seq", epochs=30, warmup=0.12,
                    lr=3e-3, eval_cases=0, max_history=50, task_weights={"next_item": 1.0},
                    compact={"hidden_size": 128, "num_layers": 4, "num_heads": 2,
                             "num_kv_heads": 2, "dropout": 0.1}),
}
# What of fit's final TrainConfig the ablations keep (the rest: budget, threads, evaluation).
COMPACT_KEYS = ("split", "prompts", "epochs", "warmup", "lr", "max_history", "task_weights",
                "compact", "seed", "batch_size", "use_profiles", "eval_cases")
# SID views of the main model (sid/views.py): one model trained on the histories written in K
# independent SID builds, the views' beams fused per request; chosen on all 4,532 amazon valid
# cases (tuning.json, amazon-views).
VIEWS = {"amazon-industrial": 3, "ml-100k": 1}
# Weight of the co-occurrence vector joined to each item's text vector before quantising (0: text
# only), chosen on validation (tuning.json, collab-weight).
COLLAB = {"amazon-industrial": 1.0, "ml-100k": 1.0}
# The alignment ablation adds SID -> title and title -> SID examples (10% each of the mix).
ALIGNMENT = {"next_item": 1.0, "sid_to_title": 0.1, "title_to_sid": 0.1}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def build_sids(dataset, work: Path, collisions: str, quick: bool, collab: float = 0.0,
               split: str | None = None, changes: dict | None = None):
    """SIDs (SidViews) from item text; with `collab` > 0 also from co-occurrence in the training
    part of `split` (never the validation or test interactions). `changes`: other SidConfig
    fields (views, probes), each cached in its own folder."""
    from genrec_lite import pipeline
    from genrec_lite.sid import SidViews
    from genrec_lite.sid.build import SidConfig

    changes = changes or {}
    out = work / (f"sids-{collisions}" + (f"-collab{collab:g}" if collab else "")
                  + "".join(f"-{k}={v}" for k, v in sorted(changes.items())))
    split = split if collab else None
    if (out / "build.json").is_file():
        info = json.loads((out / "build.json").read_text())
        if info.get("collab_split") == split:
            return SidViews.load(out), info
        log(f"{out} was built from another split ({info.get('collab_split')}); rebuilding")
    t = time.perf_counter()
    cfg = SidConfig(**{"levels": 3, "codebook_size": 256, "collisions": collisions,
                       "epochs": 20 if quick else None, "collab_weight": collab, **changes})
    sids = pipeline.build_sids(dataset.catalog, cfg, dataset=dataset, split=split, progress=False)
    info = {"seconds": round(time.perf_counter() - t, 1), "report": sids.primary.report(),
            "collab_split": split}
    if len(sids) > 1:
        info["view_reports"] = [v.report() for v in sids]
    sids.save(out, extra_files={"build.json": info})
    return sids, info


def train_compact(dataset, sids, work: Path, name: str, settings: dict, minutes: float,
                  quick: bool) -> dict:
    """Train (or reuse a finished run), then score the test cases and title search."""
    from genrec_lite import pipeline
    from genrec_lite.train.trainer import TrainConfig

    cfg = TrainConfig(**settings, max_minutes=minutes, num_threads=2)
    if quick:
        cfg.epochs, cfg.max_steps = 1, 20
        cfg.compact = {**cfg.compact, "hidden_size": 64, "num_layers": 2}
        cfg.eval_cases = min(cfg.eval_cases, 50)
    out = work / name
    done = out / "result.json"
    if done.is_file() and json.loads(done.read_text()).get("train") == asdict(cfg):
        log(f"{name}: reusing {out}")
        return json.loads(done.read_text())
    t = time.perf_counter()
    fit = pipeline.train(dataset, sids, out, cfg, progress=False, resume=False)
    train_minutes = (time.perf_counter() - t) / 60
    ckpt = pipeline.load_checkpoint(out, device="auto")
    cases = pipeline.test_cases(dataset, cfg.split, cfg.max_history, limit=100 if quick else None)
    test = pipeline.evaluate_checkpoint(ckpt, dataset, cases, beam=20)
    title = pipeline.title_search(ckpt, dataset.catalog, beam=20, limit=100 if quick else None)
    res = {"train": asdict(cfg), "train_minutes": round(train_minutes, 1), "fit": fit,
           "test": test, **title, "parameters": ckpt.meta["backbone"]["parameters"]}
    done.write_text(json.dumps(res, indent=1))
    log(f"{name}: test HR@10 {test['HR@10']:.4f} NDCG@10 {test['NDCG@10']:.4f}, title->SID "
        f"{title['title_to_sid_accuracy']:.3f}, trained {train_minutes:.1f} min")
    return res


def sasrec_mixture(name: str, params: dict, seeds) -> dict:
    """SASRec of the chosen configuration (`params`, as run_dataset records it) trained on the
    final split from each seed; the test ranking averages the seeds' softmax probabilities."""
    import numpy as np

    from benchmarks.baselines.run import load_protocol
    from benchmarks.baselines.sasrec import SASRec, SASRecConfig
    from genrec_lite.eval.metrics import rank_metrics

    P = load_protocol(name, DATA)
    items = P["dataset"].catalog.item_ids
    cfg = {k: v for k, v in params.items() if k != "epochs_final"}
    histories = [c.history for c in P["test"]]
    t = time.perf_counter()
    prob = None
    for seed in seeds:
        m = SASRec(SASRecConfig(**dict(cfg, seed=seed))).fit(P["final_train"], items,
                                                              epochs=params["epochs_final"])
        z = m.scores(histories).astype(np.float64)
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        prob = p if prob is None else prob + p
    top = np.argsort(-prob, axis=1, kind="stable")[:, :10]
    test = rank_metrics(m.index.ids[top], [c.target for c in P["test"]])
    log(f"SASRec, {len(list(seeds))} seeds averaged: test HR@10 {test['HR@10']:.4f} "
        f"NDCG@10 {test['NDCG@10']:.4f}")
    return {"test": test, "seeds": list(seeds), "params": params,
            "seconds": round(time.perf_counter() - t, 1)}


def quick_fit_kwargs() -> dict:
    """`fit` arguments for a smoke test (--quick): two candidates, tiny and one epoch each."""
    from genrec_lite.fit import CANDIDATES, Candidate

    tiny = {"hidden_size": 64, "num_layers": 2, "num_heads": 2, "num_kv_heads": 2}
    return dict(candidates=tuple(Candidate(c.name, dict(c.train, epochs=1, max_steps=20,
                                                        compact=tiny)) for c in CANDIDATES[:2]),
                sid_config={"epochs": 20})


def finished_fit(out: Path, minutes: float, seed: int) -> dict | None:
    """The report of a finished `fit` run in `out` at this budget and seed (None: none there)."""
    done = out / "report.json"
    if not done.is_file():
        return None
    rep = json.loads(done.read_text())
    return rep if rep.get("minutes_budget") == minutes and rep.get("seed") == seed else None


def fit_seed(dataset, work: Path, seed: int, args) -> dict:
    """`genrec-lite fit` on the data set from one seed (reused when its report is there with the
    same budget and RL setting)."""
    from genrec_lite.fit import fit
    from genrec_lite.train.rl import RLConfig

    if args.fits:  # runs named on the command line: read, never retrained
        done = Path(args.fits[args.seeds.index(seed)]) / "report.json"
        if not done.is_file():
            raise SystemExit(f"--fits: {done} not found (expected a finished fit run)")
        rep = json.loads(done.read_text())
        if rep.get("seed") != seed or rep.get("minutes_budget") != args.minutes:
            raise SystemExit(f"--fits: {done} is seed {rep.get('seed')} at "
                             f"{rep.get('minutes_budget')} minutes; expected seed {seed} at "
                             f"{args.minutes} (give --seeds and --minutes in the runs' order)")
        log(f"fit, seed {seed}: reading {done.parent}")
        return rep
    out = work / (f"fit-rl-seed{seed}" if args.rl else f"fit-seed{seed}")
    rep = finished_fit(out, args.minutes, seed)
    if rep is not None:
        log(f"fit, seed {seed}: reusing {out}")
        return rep
    kw = quick_fit_kwargs() if args.quick else {}
    rl = RLConfig(max_minutes=0.1 * args.minutes, **({"steps": 4, "eval_every": 2, "eval_cases": 50}
                                                     if args.quick else {})) if args.rl else None
    t = time.perf_counter()
    rep = fit(dataset, out, minutes=args.minutes, threads=2, seed=seed, rl=rl, log=log, **kw)
    log(f"fit, seed {seed}: chose {rep['chosen']}, test HR@10 "
        f"{rep['test']['genrec-lite']['HR@10']:.4f} NDCG@10 "
        f"{rep['test']['genrec-lite']['NDCG@10']:.4f}, {(time.perf_counter() - t) / 60:.1f} min")
    return rep


def mean_row(rows: list[dict]) -> dict:
    """The mean of each metric over runs, with its min and max."""
    keys = [k for k in rows[0] if k.startswith(("HR@", "NDCG@"))]
    out = {k: sum(r[k] for r in rows) / len(rows) for k in keys}
    out["spread"] = {k: [min(r[k] for r in rows), max(r[k] for r in rows)] for k in keys}
    out["n_cases"] = rows[0].get("n_cases")
    return out


def run(name: str, args) -> dict:
    from genrec_lite.data import Dataset

    from benchmarks.baselines.run import DEFAULT_GRID, GRIDS, QUICK_GRID

    # --quick never touches the real run's artefacts
    work = ROOT / "runs" / ("quality-quick" if args.quick else "quality") / name
    work.mkdir(parents=True, exist_ok=True)
    dataset = Dataset.load(DATA / name)
    out: dict = {"sids": {}, "models": {}}
    grid = QUICK_GRID if args.quick else [SASREC[name]] if name in SASREC else \
        GRIDS.get(name, DEFAULT_GRID)
    base = run_dataset(name, DATA, grid, seed=0, threads=2, verbose=False)
    for label, rec in base["models"].items():
        out["models"][label] = {k: rec[k] for k in ("test", "test_tuning_model", "valid",
                                                    "test_history_excluded", "seconds",
                                                    "params") if k in rec}
    out["baselines_protocol"] = base["protocol"]
    reports = {seed: fit_seed(dataset, work, seed, args) for seed in args.seeds}
    seeds, before = [], []
    for seed, rep in reports.items():
        label = "genrec-lite fit" + (" + RL" if args.rl else "") + f", seed {seed}"
        out["models"][label] = {"test": rep["test"]["genrec-lite"], "chosen": rep["chosen"],
                                "minutes": rep["minutes"], "rl": rep.get("rl"),
                                "cold_start": rep.get("cold_start")}
        seeds.append(label)
        # the cases whose target never occurs in training (cold start's natural segment)
        natural = rep["test"].get("new targets", {}).get("genrec-lite")
        if natural:
            out["models"][f"{label}, new targets"] = {"test": natural}
        if "genrec-lite before RL" in rep["test"]:
            before.append(rep["test"]["genrec-lite before RL"])
            out["models"][f"genrec-lite fit, seed {seed}, before RL"] = {"test": before[-1]}
    out["seed_models"] = seeds
    if len(seeds) > 1:
        out["models"][f"genrec-lite fit{' + RL' if args.rl else ''}, mean of {len(seeds)} seeds"] = {
            "test": mean_row([out["models"][s]["test"] for s in seeds])}
        natural = [out["models"][f"{s}, new targets"]["test"] for s in seeds
                   if f"{s}, new targets" in out["models"]]
        if len(natural) == len(seeds):
            out["models"][f"genrec-lite fit, mean of {len(seeds)} seeds, new targets"] = {
                "test": mean_row(natural)}
        if len(before) == len(seeds):
            out["models"][f"genrec-lite fit before RL, mean of {len(seeds)} seeds"] = {
                "test": mean_row(before)}
    if args.ablations:
        first = reports[args.seeds[0]]
        settings = {k: v for k, v in first["final"]["train"].items() if k in COMPACT_KEYS}
        collab = float(first["sid_config"]["collab_weight"])
        sids_text, out["sids"]["none"] = build_sids(dataset, work, "none", args.quick)
        sids_collab, out["sids"][f"none-collab{collab:g}"] = build_sids(
            dataset, work, "none", args.quick, collab, settings["split"])
        tag = f"-collab{collab:g}"
        out["models"]["fit's recipe, text-only SIDs"] = train_compact(
            dataset, sids_text, work, "compact", settings, args.minutes, args.quick)
        out["models"]["fit's recipe + alignment tasks"] = train_compact(
            dataset, sids_collab, work, "compact-align" + tag,
            dict(settings, task_weights=ALIGNMENT), args.minutes, args.quick)
        sids_extra, out["sids"]["extra_level" + tag] = build_sids(
            dataset, work, "extra_level", args.quick, collab, settings["split"])
        out["models"]["fit's recipe, extra-level SIDs"] = train_compact(
            dataset, sids_extra, work, "compact-extra" + tag, settings, args.minutes, args.quick)
        if args.views > 1:
            sids_views, out["sids"][f"none{tag}-views{args.views}"] = build_sids(
                dataset, work, "none", args.quick, collab, settings["split"], {"views": args.views})
            out["models"][f"fit's recipe, {args.views} SID views"] = train_compact(
                dataset, sids_views, work, f"compact{tag}-views{args.views}", settings,
                args.minutes, args.quick)
            # a fused model's like-for-like reference: SASRec from as many seeds, averaged
            out["models"][f"SASRec, {args.views} seeds averaged"] = sasrec_mixture(
                name, base["models"]["SASRec"]["params"], range(args.views))
    return out


def table(name: str, res: dict) -> str:
    # a mean row's spread (min and max over its seeds) goes under the table, not in a cell
    rows = {k: {m: x for m, x in v["test"].items() if m != "spread"}
            for k, v in res["models"].items()}
    spreads = {k: v["test"]["spread"] for k, v in res["models"].items() if "spread" in v["test"]}
    # ml-100k: the tuning model's test figures too (RecBole's protocol: never trained on the
    # valid item)
    rows.update({f"{k}, not retrained": v["test_tuning_model"] for k, v in res["models"].items()
                 if "test_tuning_model" in v})
    # the baselines with each case's history items dropped from their lists (a re-ranker can
    # learn that on validation where nothing repeats, as on ml-100k): the like-for-like rows
    rows.update({f"{k}, history excluded": v["test_history_excluded"]
                 for k, v in res["models"].items() if "test_history_excluded" in v})
    if name == "amazon-industrial":
        rows.update(PUBLISHED)
    text = f"### {name}\n\n" + metrics_table(rows) + "\n"
    for k, spread in spreads.items():
        text += f"\n{k}, min to max over the seeds: " + ", ".join(
            f"{m} {lo:.4f} to {hi:.4f}" for m, (lo, hi) in spread.items()
            if m in ("HR@10", "NDCG@10", "NDCG@3")) + "\n"
    titles = {k: v["title_to_sid_accuracy"] for k, v in res["models"].items()
              if "title_to_sid_accuracy" in v}
    if titles:
        text += "\nTitle -> SID exact match over the catalog: " + ", ".join(
            f"{k} {v:.3f}" for k, v in titles.items()) + "\n"
    return text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", nargs="+", default=["amazon-industrial", "ml-100k"])
    ap.add_argument("--minutes", type=float, default=60.0,
                    help="wall-clock budget of each fit run (and of each ablation's training)")
    ap.add_argument("--ablations", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0],
                    help="run fit from each of these seeds; the mean is reported too")
    ap.add_argument("--fits", nargs="+", default=None,
                    help="finished fit run folders to read instead of running fit, one per seed "
                         "of --seeds in the same order (one data set only)")
    ap.add_argument("--rl", action="store_true", help="fit --rl (and the same model before RL)")
    ap.add_argument("--views", type=int, default=3,
                    help="SID views of the multi-view ablation (1: none)")
    ap.add_argument("--quick", action="store_true", help="tiny budgets, for a smoke test")
    ap.add_argument("--out", default=str(RESULTS / "quality.json"))
    args = ap.parse_args(argv)
    if args.fits and (len(args.fits) != len(args.seeds) or len(args.datasets) != 1):
        ap.error(f"--fits names {len(args.fits)} run(s) for seeds {args.seeds} over data sets "
                 f"{args.datasets}: give one run per seed, and one data set")
    if not DATA.is_dir():
        log(f"{DATA} not found: the quality benchmark needs the shared data sets")
        return 1
    report = {"benchmark": "quality", "machine": machine_info(), "quick": args.quick,
              "tuning": "benchmarks/results/tuning.json", "rl": args.rl, "seeds": args.seeds,
              "minutes_budget": args.minutes, "datasets": {}}
    md = []
    for name in args.datasets:
        report["datasets"][name] = run(name, args)
        md.append(table(name, report["datasets"][name]))
        print(md[-1], flush=True)
    if not args.quick:
        # A run over some data sets keeps the others' earlier results in the same files.
        out = Path(args.out)
        if out.is_file():
            old = json.loads(out.read_text()).get("datasets", {})
            report["datasets"] = {**{k: v for k, v in old.items() if k not in report["datasets"]},
                                  **report["datasets"]}
            md = [table(k, v) for k, v in report["datasets"].items()]
        out.write_text(json.dumps(report, indent=1, default=str))
        out.with_suffix(".md").write_text("\n".join(md))
        log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
