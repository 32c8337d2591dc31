#!/usr/bin/env python
"""Baselines benchmark: popularity, first-order Markov and SASRec on the real data sets.

    python benchmarks/baselines/run.py                       # both data sets, full budget
    python benchmarks/baselines/run.py --quick               # smoke test (seconds)
    python benchmarks/baselines/run.py --datasets ml-100k

Protocols (see ../shared/data/README.md):

- amazon-industrial. Tuning: train on interactions with timestamp < 1,000,000, validate on the
  official ``valid.jsonl`` cases (the model never trains on the valid targets it is tuned on).
  Final: retrain with the chosen hyper-parameters on everything < 2,000,000 (SASRec for the
  number of epochs early stopping chose) and score exactly the 4,533 ``test.jsonl`` cases, each
  from its own history (at most 10 items). The published MiniOneRec rows are printed beside.
- ml-100k. Leave-one-out by time: per user, last item = test, second last = valid, the rest =
  train. Tuning: train on ``train``, tune / early-stop on ``valid``. Final: as for amazon, retrain
  with the chosen hyper-parameters (SASRec: the chosen number of epochs) on ``train`` plus each
  user's valid item, and score ``test`` (whose history ends with the valid item). The tuning
  model's test figures, RecBole's protocol (the model never trains on the valid item), are
  kept beside as ``test_tuning_model``.

Full ranking of the whole catalog, one target, history items not filtered, HR@K and NDCG@K for
K = 1, 3, 5, 10. Prints Markdown tables and writes ``benchmarks/results/baselines.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if __package__ in (None, ""):  # run as a script: find the benchmarks package from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402

from benchmarks.baselines import Markov, Popularity, evaluate  # noqa: E402
from genrec_lite.data import Dataset, leave_one_out, temporal_split  # noqa: E402
from genrec_lite.eval import metrics_table  # noqa: E402

DATASETS = ("amazon-industrial", "ml-100k")

# MiniOneRec report, full ranking, on the 4,533 test.jsonl cases (../shared/data/README.md)
PUBLISHED = {
    "SASRec (published)": {"HR@3": 0.0790, "NDCG@3": 0.0700, "HR@5": 0.0909, "NDCG@5": 0.0748,
                           "HR@10": 0.1088, "NDCG@10": 0.0806},
    "TIGER (published)": {"HR@3": 0.0852, "NDCG@3": 0.0742, "HR@5": 0.1010, "NDCG@5": 0.0807,
                          "HR@10": 0.1321, "NDCG@10": 0.0908},
    "LC-Rec (published)": {"HR@3": 0.0915, "NDCG@3": 0.0805, "HR@5": 0.1057, "NDCG@5": 0.0862,
                           "HR@10": 0.1332, "NDCG@10": 0.0952},
    "MiniOneRec (published)": {"HR@3": 0.1143, "NDCG@3": 0.1011, "HR@5": 0.1321,
                               "NDCG@5": 0.1084, "HR@10": 0.1586, "NDCG@10": 0.1167},
}

# SASRec grids (everything else: SASRecConfig defaults = 2 blocks, lr 1e-3, Adam, batch 128,
# full-softmax CE, early stopping on valid NDCG@10).
# amazon: max_len 10 = the protocol's history window (training sequences before 1,000,000 have
# at most 10 items, so 50 would only add padding); sparse data, so dropout 0.2 and 0.5 (0.5 is
# the paper's choice for Amazon). ml-100k: max_len 50 (RecBole's default), dropout 0.2 (the
# paper's choice for the dense MovieLens), hidden 64 / 128. One head (the paper's default).
GRIDS = {
    "amazon-industrial": [dict(hidden=h, dropout=p, max_len=10, n_blocks=2, n_heads=1,
                               patience=10, max_epochs=200)
                          for h in (64, 128) for p in (0.2, 0.5)],
    "ml-100k": [dict(hidden=h, dropout=0.2, max_len=50, n_blocks=2, n_heads=1, patience=10,
                     max_epochs=100)
                for h in (64, 128)],
}
# A data set without a grid of its own: both widths and dropouts at the longer window.
DEFAULT_GRID = [dict(hidden=h, dropout=p, max_len=50, n_blocks=2, n_heads=1, patience=10,
                     max_epochs=200) for h in (64, 128) for p in (0.2, 0.5)]
QUICK_GRID = [dict(hidden=32, dropout=0.2, max_len=10, n_blocks=2, n_heads=1, patience=1,
                   max_epochs=2)]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def machine_info() -> dict:
    import torch

    try:
        r = subprocess.run(["git", "rev-parse", "--verify", "-q", "HEAD"], cwd=ROOT,
                           capture_output=True, text=True, timeout=10)
        commit = r.stdout.strip() if r.returncode == 0 and r.stdout.strip() else None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"platform": platform.platform(), "processor": platform.processor(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "numpy": np.__version__,
            "torch": torch.__version__, "git_commit": commit}


def load_protocol(name: str, data_root: Path) -> dict:
    """The train / valid / test data of one data set under its protocol: a folder with its own
    valid.jsonl and test.jsonl (the Amazon categories) is split in time where its validation and
    test cases begin, and the splits must reproduce those files exactly; any other folder is
    split leave-one-out by time."""
    from genrec_lite.data.split_spec import first_case_time
    from genrec_lite.data.timestamps import number_text

    ds = Dataset.load(data_root / name)
    if ds.valid_cases and ds.test_cases:
        valid_at = first_case_time(ds.interactions, ds.valid_cases)
        test_at = first_case_time(ds.interactions, ds.test_cases)
        if valid_at is None or test_at is None or not valid_at < test_at:
            raise ValueError(f"{name}: the case files are not in the log in time order "
                             f"(validation from {valid_at}, test from {test_at})")
        max_len = max(len(c.history) for c in [*ds.valid_cases, *ds.test_cases])
        tune = temporal_split(ds.interactions, test_at, max_len, valid_at=valid_at)
        final = temporal_split(ds.interactions, test_at, max_len)
        # the splits must reproduce the official case files exactly
        assert tune.valid == ds.valid_cases, "valid split != valid.jsonl"
        assert final.test == ds.test_cases, "test split != test.jsonl"
        return dict(dataset=ds, tune_train=tune.train, valid=ds.valid_cases,
                    final_train=final.train, test=ds.test_cases,
                    protocol=f"train ts<{number_text(valid_at)} / valid valid.jsonl for "
                             f"tuning; retrain ts<{number_text(test_at)}; test test.jsonl (history <= {max_len})")
    split = leave_one_out(ds.interactions, max_len=None)
    final = leave_one_out(ds.interactions, max_len=None, train_on_valid=True)
    assert final.test == split.test
    return dict(dataset=ds, tune_train=split.train, valid=split.valid, final_train=final.train,
                test=split.test, score_tuning_model=True,
                protocol="leave-one-out by time: last item test, second last valid; tuned on "
                         "the rest, then retrained with the valid item too (chosen epochs)")


def n_inter(train: dict) -> int:
    return int(sum(len(s) for s in train.values()))


def run_dataset(name: str, data_root: Path, grid: list[dict], seed: int, threads: int,
                verbose: bool) -> dict:
    from benchmarks.baselines.sasrec import SASRec, SASRecConfig

    P = load_protocol(name, data_root)
    items = P["dataset"].catalog.item_ids
    out: dict = {"protocol": P["protocol"], "n_items": int(len(items)),
                 "n_train_interactions_tuning": n_inter(P["tune_train"]),
                 "n_train_interactions_final": n_inter(P["final_train"]),
                 "n_valid_cases": len(P["valid"]), "n_test_cases": len(P["test"]),
                 "models": {}}
    log(f"== {name}: {out['n_items']} items, train {out['n_train_interactions_tuning']} "
        f"(tuning) / {out['n_train_interactions_final']} (final) interactions, "
        f"{len(P['valid'])} valid, {len(P['test'])} test cases")

    def classic(model_factory, label: str, params: dict) -> dict:
        t = time.perf_counter()
        m = model_factory().fit(P["tune_train"], items)
        valid = evaluate(m, P["valid"])
        rec = {"params": params, "valid": valid}
        if P.get("score_tuning_model"):
            rec["test_tuning_model"] = evaluate(m, P["test"])
        m = model_factory().fit(P["final_train"], items)
        test = evaluate(m, P["test"])
        rec.update(test=test, test_history_excluded=evaluate(m, P["test"], exclude_history=True),
                   seconds=time.perf_counter() - t)
        log(f"{label}: valid NDCG@10 {valid['NDCG@10']:.4f}  test HR@10 {test['HR@10']:.4f}")
        return rec

    out["models"]["Popularity"] = classic(Popularity, "Popularity", {})
    for self_tr in (True, False):
        label = Markov(self_tr).name
        out["models"][label] = classic(lambda s=self_tr: Markov(s), label,
                                       {"self_transitions": self_tr})
    mk = {k: v for k, v in out["models"].items() if k.startswith("Markov")}
    out["markov_chosen"] = max(mk, key=lambda k: (mk[k]["valid"]["NDCG@10"],
                                                  k == "Markov"))

    # SASRec: grid on validation, then retrain with the chosen epochs
    trials = []
    for i, params in enumerate(grid, 1):
        cfg = SASRecConfig(seed=seed, n_threads=threads, **params)
        m = SASRec(cfg).fit(P["tune_train"], items, P["valid"],
                            progress=(lambda s: log("   " + s)) if verbose else None)
        trials.append({"params": params, "best_epoch": m.best_epoch,
                       "epochs_run": len(m.history), "valid": m.best_valid,
                       "train_seconds": m.train_seconds, "history": m.history,
                       "_model": m})
        log(f"SASRec {i}/{len(grid)} {params}: best epoch {m.best_epoch}/{len(m.history)}, "
            f"valid NDCG@10 {m.best_valid['NDCG@10']:.4f} HR@10 {m.best_valid['HR@10']:.4f} "
            f"({m.train_seconds:.0f}s)")
    best = max(trials, key=lambda t: t["valid"]["NDCG@10"])
    model = best["_model"]
    t = time.perf_counter()
    tuning_test = model.evaluate(P["test"]) if P.get("score_tuning_model") else None
    cfg = SASRecConfig(seed=seed, n_threads=threads, **best["params"])
    model = SASRec(cfg).fit(P["final_train"], items, epochs=best["best_epoch"])
    test = model.evaluate(P["test"])
    final_seconds = time.perf_counter() - t
    test_excluded = evaluate(model, P["test"], exclude_history=True)
    log(f"SASRec chosen {best['params']}: test HR@10 {test['HR@10']:.4f} "
        f"NDCG@10 {test['NDCG@10']:.4f}")
    for tr in trials:
        tr.pop("_model")
    out["models"]["SASRec"] = {
        "params": {**asdict(SASRecConfig(seed=seed, n_threads=threads, **best["params"])),
                   "epochs_final": best["best_epoch"]},
        "chosen_by": "best validation NDCG@10 over the grid",
        "valid": best["valid"], "test": test, "test_history_excluded": test_excluded,
        **({"test_tuning_model": tuning_test} if tuning_test else {}),
        "seconds": sum(tr["train_seconds"] for tr in trials) + final_seconds,
        "final_train_seconds": model.train_seconds,
        "grid": trials,
    }
    return out


def tables(name: str, res: dict) -> str:
    models = res["models"]
    sas = models["SASRec"]["params"]
    sas_label = (f"SASRec (h={sas['hidden']}, b={sas['n_blocks']}, heads={sas['n_heads']}, "
                 f"drop={sas['dropout']}, len={sas['max_len']})")
    order = [("Popularity", "Popularity"), ("Markov", "Markov (first-order)"),
             ("Markov (no self-transitions)", "Markov (no self-transitions)"),
             ("SASRec", sas_label)]
    test_rows = {label: models[k]["test"] for k, label in order}
    valid_rows = {label: models[k]["valid"] for k, label in order}
    if name == "amazon-industrial":
        test_rows.update(PUBLISHED)
    return (f"### {name}: test\n\n{metrics_table(test_rows)}\n\n"
            f"### {name}: validation (tuning runs)\n\n{metrics_table(valid_rows)}\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data",
                    help="folder holding the data set folders (default ../shared/data)")
    ap.add_argument("--quick", action="store_true", help="tiny SASRec budget (smoke test)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None,
                    help="JSON output (default benchmarks/results/baselines.json, "
                         "baselines_quick.json with --quick)")
    ap.add_argument("--verbose", action="store_true", help="log every SASRec epoch")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    out_path = args.out or (ROOT / "benchmarks" / "results" /
                            ("baselines_quick.json" if args.quick else "baselines.json"))
    report = {"benchmark": "baselines", "quick": args.quick, "seed": args.seed,
              "threads": args.threads, "ks": [1, 3, 5, 10],
              "ranking": "full catalog, one target, history items not filtered "
                         "(test_history_excluded: each list without its case's history)",
              "machine": machine_info(), "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "datasets": {}}
    t0 = time.perf_counter()
    text = []
    for name in args.datasets:
        if not (args.data / name).is_dir():
            log(f"skipping {name}: {args.data / name} not found")
            continue
        grid = QUICK_GRID if args.quick else GRIDS.get(name, DEFAULT_GRID)
        res = run_dataset(name, args.data, grid, args.seed, args.threads, args.verbose)
        report["datasets"][name] = res
        text.append(tables(name, res))
    report["total_seconds"] = time.perf_counter() - t0
    if "amazon-industrial" in report["datasets"]:
        report["published"] = {"source": "MiniOneRec report via ../shared/data/README.md",
                               "dataset": "amazon-industrial", "rows": PUBLISHED}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=1, default=float) + "\n")
    tmp.replace(out_path)
    print("\n".join(text))
    print(f"total {report['total_seconds']:.0f}s; wrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
