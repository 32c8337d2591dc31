"""``genrec-lite fit``: the production recipe as one procedure, every choice made on validation.

Given a data set and a time budget:

1. **Splits.** The split (``auto`` or given) is resolved, and a *tuning* split is derived from
   it whose training part ends where its validation cases begin (:func:`tuning_split`), so that
   choices are scored on interactions no model being compared has seen. The *final* split trains
   on everything before the test period (validation included), as a deployed model would.
2. **SIDs** for each split's training part (text + co-occurrence, ``SID_CONFIG``).
3. **Search.** Each candidate recipe of the grid (``CANDIDATES``) trains on the tuning split
   within an equal share of the search budget, validated every epoch on up to
   ``VALID_CASES`` validation cases; the one with the best validation NDCG@10 (its best epoch)
   wins, ties going to the earlier candidate. The grid spans what the measured recipes differ in
   (prompt length, model width, schedule length), not any data set's name.
4. **Final model.** The winner's recipe trains on the final split (no validation there: its
   validation period is training data) with the rest of the budget, and is exported to
   ``OUT/bundle``.
5. **RL** (optional, ``rl``): GRPO after SFT (train/rl.py) on the winner's tuning model, early
   stopping on validation NDCG@10, chooses how many updates help (none: RL is skipped); the final
   model then gets that many updates.
6. **Cold start** is chosen on the validation cases with the winner's tuning model (after RL)
   served by the C++ runtime (eval/cold_start.py's procedure) and written into the bundle.
7. **Report.** ``OUT/report.json`` and ``OUT/report.md``: the splits, every candidate's
   validation curve, the choice, and, when the split has test cases, HR/NDCG@1,3,5,10 of the
   served bundle (beam 20) beside popularity on the same cases.

A stage that fails leaves the earlier ones on disk; the bundle is written atomically.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .errors import InvalidArgumentError

if TYPE_CHECKING:  # pragma: no cover
    from .data import Dataset, SplitPlan
    from .train.rl import RLConfig


@dataclass(frozen=True)
class Candidate:
    """One recipe of the search: TrainConfig fields over BASE_TRAIN."""

    name: str
    train: dict = field(default_factory=dict)


# What every candidate shares: next-item examples in the compact prompt set, warm-up 12% of the
# steps (3% never recovered from the first large updates in the amazon tuning runs).
BASE_TRAIN = dict(prompts="en-seq", warmup=0.12, task_weights={"next_item": 1.0})
# The grid: the prompt length moved validation NDCG@10 most in the measured tuning runs (2 items
# against 10 on amazon-industrial, 50 on ml-100k), then model width and schedule length.
CANDIDATES = (
    Candidate("h256x4-history2", dict(max_history=2, epochs=10, compact={
        "hidden_size": 256, "num_layers": 4, "num_heads": 4, "num_kv_heads": 4, "dropout": 0.1})),
    Candidate("h256x4-history10", dict(max_history=10, epochs=10, compact={
        "hidden_size": 256, "num_layers": 4, "num_heads": 4, "num_kv_heads": 4, "dropout": 0.1})),
    Candidate("h128x4-history50", dict(max_history=50, epochs=30, lr=3e-3, compact={
        "hidden_size": 128, "num_layers": 4, "num_heads": 2, "num_kv_heads": 2, "dropout": 0.1})),
)
SID_CONFIG = dict(levels=3, codebook_size=256, collisions="none", collab_weight=1.0)
VALID_CASES = 1000     # validation cases each candidate is scored on every epoch (a fixed sample)
SEARCH_SHARE = 0.45    # of the budget: the candidates' training
FINAL_SHARE = 0.40     # of the budget: the final model's training (the rest: SIDs, export, scoring)


def tuning_split(plan: "SplitPlan", dataset: "Dataset") -> tuple[str, str]:
    """(tuning spec, final spec) for a resolved split: the tuning split trains on what comes
    before its validation cases, the final split on everything before the test period.

    - leave-one-out (either form): ``leave-one-out`` / ``leave-one-out:final``;
    - temporal with a validation period [V, T): ``temporal:V,T`` / ``temporal:T,T``;
    - temporal with the folder's valid.jsonl: V is the first validation case's time in the log;
    - the folder's case files, none of them in the log: ``cases`` for both.
    InvalidArgumentError when the split has no validation cases to choose on."""
    from .data.split_spec import first_case_time
    from .data.timestamps import number_text

    if plan.kind.startswith("leave-one-out"):
        return "leave-one-out", "leave-one-out:final"
    if plan.kind == "cases":
        if not dataset.valid_cases:
            raise InvalidArgumentError(
                f"split {plan.spec!r} has no validation cases (the folder has no valid.jsonl); "
                "fit chooses its settings on validation: expected a split with validation")
        return "cases", "cases"
    valid_from = plan.valid_from
    if valid_from is None and plan.valid_file:
        valid_from = first_case_time(dataset.interactions, dataset.valid_cases)
    if valid_from is None or valid_from >= plan.test_from:
        raise InvalidArgumentError(
            f"split {plan.spec!r} has no validation period; fit chooses its settings on "
            "validation: expected temporal:VALID_FROM,TEST_FROM, a folder with valid.jsonl, or "
            "leave-one-out")
    t, v = number_text(plan.test_from), number_text(valid_from)
    return f"temporal:{v},{t}", f"temporal:{t},{t}"


def _train_config(cand: Candidate, split: str, **over):
    from .train.trainer import TrainConfig

    settings = dict(BASE_TRAIN, **cand.train)
    settings.update(split=split, **over)
    return TrainConfig(**settings)


def fit(dataset: "Dataset", out, *, minutes: float = 60.0, split: str = "auto",
        device: str = "auto", threads: int | None = None, seed: int = 0,
        candidates: tuple[Candidate, ...] | None = None, sid_config: dict | None = None,
        rl: "RLConfig | None" = None, log: Callable[[str], None] | None = None) -> dict:
    """Run the procedure of this module on ``dataset``; everything goes under ``out``. Returns
    the report (also written to out/report.json and out/report.md)."""
    from . import pipeline
    from .data import resolve_split
    from .eval.metrics import metrics_table
    from .export.bundle import set_cold_start
    from .runtime import Recommender
    from .sid.build import SidConfig
    from .train.rl import rl_finetune

    say = log or (lambda msg: None)
    if not minutes > 0:
        raise InvalidArgumentError(f"minutes={minutes!r}; expected a budget > 0")
    candidates = tuple(candidates or CANDIDATES)
    if not candidates:
        raise InvalidArgumentError("fit needs at least one candidate recipe")
    out = Path(out)
    t0 = time.perf_counter()
    left = lambda: minutes - (time.perf_counter() - t0) / 60  # noqa: E731
    plan = resolve_split(split, dataset)
    tune_spec, final_spec = tuning_split(plan, dataset)
    valid = resolve_split(tune_spec, dataset).apply(dataset, None).valid
    if not valid:
        raise InvalidArgumentError(f"the tuning split {tune_spec!r} gives no validation case; "
                                   "fit chooses its settings on validation")
    say(f"split: {plan.describe()}; tuning on {tune_spec} ({len(valid):,} validation cases), "
        f"final model on {final_spec}")
    report: dict = {"data": dataset.name, "minutes_budget": minutes, "seed": seed,
                    "split": {"given": split, "resolved": plan.spec, "tuning": tune_spec,
                              "final": final_spec, "n_valid_cases": len(valid)},
                    "procedure": {"search_share": SEARCH_SHARE, "final_share": FINAL_SHARE,
                                  "valid_cases_scored": min(VALID_CASES, len(valid)),
                                  "selection": "best validation NDCG@10 (best epoch)"},
                    "candidates": []}
    sid_cfg = dict(SID_CONFIG, **(sid_config or {}))
    report["sid_config"] = sid_cfg

    def sids_for(spec: str, where: str):
        return pipeline.build_sids(dataset.catalog, SidConfig(**sid_cfg, seed=seed),
                                   dataset=dataset, split=spec, out=out / where, progress=False)

    # --- search on the tuning split ---------------------------------------------------------
    say(f"SIDs for the tuning split ({len(dataset.catalog):,} items)")
    tune_sids = sids_for(tune_spec, "sids-tuning")
    share = minutes * SEARCH_SHARE / len(candidates)
    best = None
    for cand in candidates:
        cfg = _train_config(cand, tune_spec, eval_cases=min(VALID_CASES, len(valid)), seed=seed,
                            max_minutes=share, num_threads=threads)
        say(f"candidate {cand.name}: up to {share:.1f} min")
        res = pipeline.train(dataset, tune_sids, out / "search" / cand.name, cfg, progress=False,
                             resume=False, device=device)
        score = (res["best"] or {}).get("NDCG@10")
        epochs_run = len(res["history"])
        row = {"name": cand.name, "train": {k: v for k, v in asdict(cfg).items()
                                            if k in cand.train or k in ("warmup", "prompts")},
               "validation": {k: v for k, v in (res["best"] or {}).items()
                              if k.startswith(("HR@", "NDCG@")) or k == "epoch"},
               "curve": [{k: r[k] for k in ("epoch", "minutes", "HR@10", "NDCG@10") if k in r}
                         for r in res["history"]],
               "minutes": res["minutes"], "epochs_run": epochs_run,
               "stopped_by_budget": epochs_run < cfg.epochs}
        report["candidates"].append(row)
        say(f"  validation NDCG@10 {score if score is None else round(score, 4)} "
            f"after {epochs_run} of {cfg.epochs} epochs")
        if score is not None and (best is None or score > best[1]):
            best = (cand, score)
    if best is None:
        raise InvalidArgumentError("no candidate reached a validation score within the budget "
                                   f"({minutes:g} min); expected a larger --minutes")
    chosen = best[0]
    report["chosen"] = chosen.name
    say(f"chosen: {chosen.name} (validation NDCG@10 {best[1]:.4f})")

    # --- RL on the winner's tuning model: how many updates help ------------------------------
    tune_model = out / "search" / chosen.name
    rl_steps = 0
    if rl is not None:
        rl = replace(rl, seed=seed, threads=rl.threads or threads)
        say("RL on the chosen tuning model (early stopping on validation)")
        rep = rl_finetune(tune_model, dataset, out / "search" / f"{chosen.name}-rl", rl,
                          device=device, log=say)
        rl_steps = int(rep["best"]["step"])
        report["rl"] = {"tuning": {k: rep[k] for k in ("sft_validation", "best", "curve", "steps",
                                                       "stopped_by", "minutes")},
                        "steps_chosen": rl_steps}
        if rl_steps:
            tune_model = out / "search" / f"{chosen.name}-rl"

    # --- cold start, chosen on validation with the winner's tuning model --------------------
    tune_bundle = out / "search" / f"{chosen.name}-bundle"
    pipeline.export(tune_model, tune_bundle, quant="f16")
    with Recommender.load(tune_bundle, n_threads=threads) as rec:
        cold = pipeline.tune_cold_start(rec, tune_bundle, valid, pipeline.bundle_profiles(rec, dataset))
    report["cold_start"] = None if cold is None else cold.to_dict()

    # --- the final model --------------------------------------------------------------------
    # what is left, less the reserve for SIDs, export and scoring
    final_minutes = max(left() - minutes * (1 - SEARCH_SHARE - FINAL_SHARE), 0.5)
    say(f"SIDs for the final split; final model ({chosen.name}) for up to {final_minutes:.1f} min")
    final_sids = sids_for(final_spec, "sids")
    cfg = _train_config(chosen, final_spec, eval_cases=0, seed=seed, num_threads=threads,
                        max_minutes=final_minutes)
    res = pipeline.train(dataset, final_sids, out / "model", cfg, progress=False, resume=False,
                         device=device)
    report["final"] = {"train": asdict(cfg), "minutes": res["minutes"], "steps": res["steps"],
                       "epochs_run": len(res["history"])}
    final_model = out / "model"
    final_plan = resolve_split(final_spec, dataset)
    test = dataset.test_cases or final_plan.apply(dataset, None).test

    def score(bundle: Path) -> dict:
        with Recommender.load(bundle, n_threads=threads) as rec:
            return pipeline.evaluate_recommender(rec, dataset, test, beam=20)

    sft_test = None
    if rl_steps:
        if test:  # the ablation, same seed and run: the final model before RL, served alike
            say(f"scoring the final model before RL on {len(test):,} test cases")
            pipeline.export(final_model, out / "search" / "final-sft-bundle", quant="f16")
            set_cold_start(out / "search" / "final-sft-bundle", cold)
            sft_test = score(out / "search" / "final-sft-bundle")
        say(f"RL on the final model: {rl_steps} updates")
        rep = rl_finetune(final_model, dataset, out / "model-rl", replace(rl, steps=rl_steps),
                          device=device, keep="last", log=say)
        report["rl"]["final"] = {k: rep[k] for k in ("curve", "steps", "minutes")}
        final_model = out / "model-rl"
    pipeline.export(final_model, out / "bundle", quant="f16")
    set_cold_start(out / "bundle", cold)

    # --- test metrics of the served bundle --------------------------------------------------
    if test:
        say(f"scoring {len(test):,} test cases with the C++ runtime")
        ours = score(out / "bundle")
        pop = pipeline.popularity_baseline(dataset, final_plan, test)
        report["test"] = {"beam": 20, "n_cases": len(test), "genrec-lite": ours, "popularity": pop}
        if sft_test is not None:
            report["test"]["genrec-lite before RL"] = sft_test
    report["minutes"] = round((time.perf_counter() - t0) / 60, 2)
    _write_report(out, report, metrics_table)
    return report


def _write_report(out: Path, report: dict, metrics_table) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    lines = [f"# genrec-lite fit: {report['data']}", "",
             f"Split {report['split']['resolved']}; tuning on {report['split']['tuning']} "
             f"({report['split']['n_valid_cases']:,} validation cases), final model on "
             f"{report['split']['final']}. Budget {report['minutes_budget']:g} min, used "
             f"{report['minutes']:g}.", "",
             "| candidate | validation HR@10 | validation NDCG@10 | best epoch | epochs run | minutes |",
             "|---|---|---|---|---|---|"]
    for c in report["candidates"]:
        v = c["validation"]
        lines.append(f"| {c['name']}{' (chosen)' if c['name'] == report['chosen'] else ''} | "
                     f"{v.get('HR@10', float('nan')):.4f} | {v.get('NDCG@10', float('nan')):.4f} | "
                     f"{v.get('epoch', '-')} | {c['epochs_run']} | {c['minutes']:g} |")
    if "rl" in report:
        r = report["rl"]
        lines += ["", f"RL on the chosen tuning model: validation NDCG@10 "
                      f"{r['tuning']['sft_validation']['NDCG@10']:.4f} -> "
                      f"{r['tuning']['best']['NDCG@10']:.4f}; {r['steps_chosen']} updates "
                      "chosen for the final model" + (" (RL off)" if not r["steps_chosen"] else "")
                      + "."]
    cold = report.get("cold_start")
    lines += ["", "Cold start chosen on validation: " +
              ("off" if cold is None else ", ".join(f"{k} {v}" for k, v in cold.items())) + "."]
    if "test" in report:
        t = report["test"]
        lines += ["", f"Test ({t['n_cases']:,} cases, beam {t['beam']}, the served bundle):", "",
                  metrics_table({"genrec-lite (fit)": t["genrec-lite"],
                                 **({"genrec-lite before RL (same run)": t["genrec-lite before RL"]}
                                    if "genrec-lite before RL" in t else {}),
                                 "popularity": t["popularity"]})]
    (out / "report.md").write_text("\n".join(lines) + "\n")
