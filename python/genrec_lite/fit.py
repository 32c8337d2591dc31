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
4. **History policy**: the winner's one-view tuning model, served at the reference point,
   answers the validation sample with each request's own history allowed and denied
   (``history_policy``); the bundles deny it (manifest ``exclude_history``) only where that
   scores a higher NDCG@10. Where nothing is consumed twice the model re-offers what the user
   already has (its prompt shows only the newest items); where items repeat, denying them
   loses those hits. Everything after (the serving points, cold start, the re-ranker) is
   chosen with the policy in place, as it will be served.
5. **Serving point** (SID views x beam, ``SERVING_POINTS``). The winner's recipe also trains on
   the tuning split written in K SID views (sid/views.py; K the most views of any point, 3 by
   default), in ``MULTI_SLOTS`` candidates' minutes or what the candidates left of the search's
   share if more (it reads every history K times an epoch; at one candidate's minutes a
   two-view model ran 6-7 of its 10 epochs, and a seed whose short schedule fell behind lost
   the multi-view point). A point names the views a request decodes, the first view's beam
   (it holds the answer's k) and optionally a narrower beam for the other views, which only
   vote in the fusion (the side beam). Every point is served by the C++ runtime on the
   validation sample (quality) and timed at batch 1 (p50, rounds alternating the points, every
   point but the reference with a re-ranker, and all with cold start on where the catalog has
   cold items, as they will ship; a point within ``LATENCY_NEAR`` of
   the limit is timed again, longer, beside the reference); the
   point with the best validation NDCG@10 among those within ``LATENCY_LIMIT`` x the one-view
   point's p50 wins, ties going to the earlier one. Its views and beams are written into the
   bundle (search_views, search_beam, search_side_beam).
6. **Final model.** The winner's recipe trains on the final split (no validation there: its
   validation period is training data) with the rest of the budget, less the final split's SIDs
   (priced at what the tuning split's took), the RL updates chosen (priced at what they cost
   the tuning model) and ``REST_SHARE`` for what follows, and is exported to ``OUT/bundle``.
7. **RL** (optional, ``rl``; one-view points only): GRPO after SFT (train/rl.py) on the
   winner's tuning model, early stopping on validation NDCG@10, chooses how many updates help
   (none: RL is skipped); the final model then gets that many updates.
8. **Cold start** is chosen on the validation cases with the winner's tuning model (after RL)
   served by the C++ runtime at the chosen point (eval/cold_start.py's procedure), its price
   paid at the cold share the final model will serve (fewer of its items are cold:
   ``served_cold_share``), and written into the bundle.
9. **Re-ranking**: a linear re-ranker over the pool (every item the views' beams reached and the
   newest history item's most frequent successors; runtime/rerank.py) is fitted on the
   validation cases with the same tuning model served at that point and cold start
   (eval/rerank.py: a conditional logit, its L2 penalty chosen by two-fold cross-validation on
   NDCG@10 over ``rerank.LAMBDAS``, kept only when it beats the model's own order there) and
   written into the bundle. Two kinds are cross-validated side by side: one that re-orders the
   warm items only (cold ones keep the mixture's places) and a joint one that also ranks the
   ``rerank.COLD`` cold items nearest in content to the history by their own features; the
   better wins. Where some validation cases have a cold next item, the joint kind is also
   tried with offsets on the cold candidates' scores and the cold-start price chooses
   (eval/rerank.choose_served): among the trials whose validation HR@10 and NDCG@10 (at the
   served cold share) are within ``cold_start.MAX_COST`` of what the same model and stage
   score with cold start off, the one that ranks the cold cases best. It replaces the
   transition weight (runtime/transitions.py) of earlier versions: the transition counts are
   among its features.
10. **Report.** ``OUT/report.json`` and ``OUT/report.md``: the splits, every candidate's
   validation curve, the choice, and, when the split has test cases, HR/NDCG@1,3,5,10 of the
   served bundle (at its serving point) beside popularity on the same cases, the same bundle
   with cold start off, and both on the test cases whose target never occurs in the final
   model's training (new items: what cold start is for); and the timeline, every progress
   message with the minutes elapsed (where the budget went).

A stage that fails leaves the earlier ones on disk; the bundle is written atomically.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

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
# The serving points compared, (SID views, beam[, side beam]); the first is the one-view
# reference the latency limit is taken against. A K-view request decodes its views in one C++
# call and fuses their beams; the first view's beam holds the answer's k, so the others (the
# side beam) can search narrower and only vote. On amazon-industrial validation, three views at
# beams 10/5/5 gave +4.7% NDCG@10 over two at 10/10 for 1.40x against 1.28x one view's p50
# (docs/quality.md); the data and this machine's timing decide.
SERVING_POINTS = ((1, 20), (2, 10), (2, 10, 5), (3, 10, 5), (3, 10, 10))
LATENCY_LIMIT = 1.5    # a point's p50 (batch 1, k 10) at most this x the reference point's
LATENCY_ROUNDS = 5     # rounds alternating the points, each one call per history per point
# A point whose ratio lies within this fraction of the limit is timed again, alternating with the
# reference only, for LATENCY_MORE_ROUNDS more rounds before the choice: seed 1 of the
# amazon-industrial fits timed its best point at 1.504x and shipped the next one, on a ratio
# within the noise of five rounds (docs/training.md).
LATENCY_NEAR = 0.05
LATENCY_MORE_ROUNDS = 15
LATENCY_HISTORIES = 40
VALID_CASES = 1000     # validation cases each candidate is scored on every epoch (a fixed sample)
SEARCH_SHARE = 0.55    # of the budget: the search's training (candidates, the multi-view model)
# the multi-view model's slots at least (it reads every history K times an epoch); it also gets
# what the candidates leave of theirs, and a schedule that still does not fit is shortened
MULTI_SLOTS = 2
# Kept back from the final model's training for what follows it (cold start's choice, the
# re-ranker's stage, export, test scoring with its ablations): 2.3-3.0 of 60 min in the
# amazon-industrial fits, and the re-ranker's reference pass with cold start off adds about 0.6.
# The final split's SIDs are kept back too, priced at what the tuning split's took (the same
# catalog, as many views or fewer). A fixed 15% for both left 4-5 minutes of every 60 unused
# while the final model ran 8-9 of its 10 epochs.
REST_SHARE = 0.065


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


def _checked_points(points) -> tuple[tuple[int, int, int | None], ...]:
    """Serving points as (views, beam, side beam) triples (a pair: no side beam, every view at
    the beam); the first, the reference, has one view. Every beam holds the k of 10 the points
    are scored and timed at; a side beam (the views after the first) is at most the beam."""
    try:
        out = tuple(_point(*p) for p in points)
    except TypeError:
        raise InvalidArgumentError(f"points={points!r}; expected (views, beam) pairs or "
                                   "(views, beam, side beam) triples") from None
    for v, b, side in out:
        whole = all(isinstance(x, int) and not isinstance(x, bool)
                    for x in (v, b, 1 if side is None else side))
        if not whole or not (1 <= v <= 16 and 10 <= b <= 256) or (
                side is not None and (v == 1 or not 1 <= side <= b)):
            raise InvalidArgumentError(
                f"serving point {(v, b, side)!r}; expected (views in 1..16, beam in 10..256, "
                "side beam None or, with several views, in 1..beam)")
    if not out or out[0][0] != 1:
        raise InvalidArgumentError(f"points={points!r}; expected a one-view point first (the "
                                   "reference the latency limit is taken against)")
    if len(set(out)) != len(out):
        raise InvalidArgumentError(f"points={points!r} repeats a point")
    return out


def _point(views, beam, side=None) -> tuple:
    return views, beam, side


def near_limit(ratios, limit: float = LATENCY_LIMIT, band: float = LATENCY_NEAR) -> list[int]:
    """Indices of the points after the first (the reference) whose p50 ratio lies within
    `band` (a fraction) of `limit`: the ones a noisy timing could put on the wrong side."""
    return [i for i, r in enumerate(ratios) if i and abs(r / limit - 1) <= band]


def serving_points(bundles: dict, points, cases, dataset, *, threads: int | None = None,
                   rounds: int = LATENCY_ROUNDS, n_timed: int = LATENCY_HISTORIES,
                   limit: float = LATENCY_LIMIT, more_rounds: int = LATENCY_MORE_ROUNDS,
                   scored: dict | None = None) -> list[dict]:
    """Each point (views, beam): HR/NDCG@1,3,5,10 on `cases` (k 10) and the p50 of one request
    at batch 1 over the first `n_timed` of them, served by the C++ runtime. A one-view point is
    served by bundles[1], a K-view one by the multi-view bundle decoding its first `views` views.
    The timed rounds alternate the points, so all of them see the same machine; the p50 is the
    median over every call, and `vs_reference` its ratio to the first point's. Points whose
    ratio comes out within LATENCY_NEAR of `limit` get `more_rounds` rounds more, alternating
    with the reference (whose calls are pooled too); `timed_calls` says how many each had.
    `scored`: {(views, beam, side beam): metrics} already measured on `cases` with the same
    bundle as it stands (fit's history policy scored the reference point), not decoded again."""
    from . import pipeline
    from .runtime import Recommender

    multi = max(bundles)
    points = _checked_points(points)
    recs: dict = {}
    try:
        for key, path in bundles.items():
            recs[key] = Recommender.load(path, n_threads=threads)
        served = []  # (recommender, profiles) of each point
        for views, beam, side in points:
            rec = recs[1 if views == 1 else multi]
            if views > len(rec.catalog.state.views):
                raise InvalidArgumentError(f"serving point ({views}, {beam}): the multi-view "
                                           f"bundle holds {len(rec.catalog.state.views)} views")
            served.append((rec, pipeline.bundle_profiles(rec, dataset)))

        def use(rec, views: int, side: int | None) -> None:
            rec.set_search_views(views)
            rec.set_search_side_beam(side)

        rows = []
        for (views, beam, side), (rec, _) in zip(points, served):
            use(rec, views, side)
            m = (scored or {}).get((views, beam, side))
            if m is None:
                m = pipeline.evaluate_recommender(rec, dataset, cases, beam=beam)
            rows.append({"views": views, "beam": beam, "side_beam": side,
                         **{k: v for k, v in m.items() if k.startswith(("HR@", "NDCG@"))}})
        times: list[list[float]] = [[] for _ in points]

        placeholder = timing_reranker()
        for rec in recs.values():   # every point, the reference too, pays for cold start
            if len(rec.catalog.state.cold):
                rec.set_cold_start(timing_cold_start())

        def timed(which: list[int], n_rounds: int) -> None:
            for r in range(n_rounds + 1):  # round 0 warms the contexts up, untimed
                for i in which:
                    (views, beam, side), (rec, prof) = points[i], served[i]
                    use(rec, views, side)
                    # a point is timed as it will ship, with a re-ranker (step 9; its cost does
                    # not depend on its weights); the reference is the plain one-view request
                    rec.set_reranker(placeholder if i and rec.transitions is not None
                                     else None)
                    for c in cases[:n_timed]:
                        req = {"history": list(c.history), "k": 10, "beam": beam,
                               "profile": None if prof is None else prof.get(c.user_id)}
                        t = time.perf_counter()
                        rec.recommend_batch([req])
                        if r:
                            times[i].append(time.perf_counter() - t)

        def p50s() -> list[float]:
            return [float(np.median(ts)) for ts in times]

        timed(list(range(len(points))), rounds)
        p50 = p50s()
        near = near_limit([p / p50[0] for p in p50], limit) if more_rounds > 0 else []
        if near:
            timed([0, *near], more_rounds)
            p50 = p50s()
        for row, ts, p in zip(rows, times, p50):
            row.update(p50_ms=round(p * 1e3, 3), vs_reference=round(p / p50[0], 3),
                       timed_calls=len(ts))
        return rows
    finally:
        for rec in recs.values():
            rec.close()


def timing_reranker():
    """A re-ranker that costs what any fitted one does (the features and the wider pool are the
    work; the weights are not), the dearer kind, with cold candidates: serving points are timed
    with it."""
    from .runtime.rerank import COLD, FEATURES, Reranker

    n = len(FEATURES)
    return Reranker(np.ones(n), np.zeros(n), np.ones(n), features=FEATURES, cold=COLD)


def timing_cold_start():
    """Cold-start settings that cost what the dearest of the grid does (the most history
    items, the near kernel; eval/cold_start.py): serving points are timed with cold start on,
    as they will ship (the settings are chosen after the point; their cost barely depends on
    the values)."""
    from .eval.cold_start import HISTORY, NEAR
    from .runtime.cold_start import ColdStartConfig

    return ColdStartConfig(0.1, 0.5, max(HISTORY), None, None, "max", *NEAR[0])


def choose_point(rows: list[dict], limit: float = LATENCY_LIMIT) -> tuple[int, int, int | None]:
    """(views, beam, side beam) of the row with the best NDCG@10 among those within `limit` x
    the reference's p50 (the reference always qualifies); ties go to the earlier point (the
    grid lists the cheaper first)."""
    ok = [(i, r) for i, r in enumerate(rows) if i == 0 or r["vs_reference"] <= limit]
    _, best = max(ok, key=lambda ir: (ir[1]["NDCG@10"], -ir[0]))
    return best["views"], best["beam"], best.get("side_beam")


def history_policy(bundle: Path, dataset, cases, *,
                   threads: int | None = None) -> tuple[bool, dict]:
    """Whether the bundle (at its serving point, as it stands) should deny each request its own
    history: its HR/NDCG@K on `cases` with the history allowed and denied, and True only where
    denying scores a higher NDCG@10 (ties: allowed, the model's own answer). Where nothing is
    consumed twice (ml-100k: a film is rated once) the model, whose prompt shows only the
    newest items, re-offers older ones; where items repeat (amazon: 2.8% of the test targets
    are in their history) denying them loses those hits."""
    from . import pipeline
    from .runtime import Recommender

    rows = {}
    with Recommender.load(bundle, n_threads=threads) as rec:
        for name, on in (("allowed", False), ("denied", True)):
            rec.set_exclude_history(on)
            m = pipeline.evaluate_recommender(rec, dataset, cases)
            rows[name] = {k: v for k, v in m.items() if k.startswith(("HR@", "NDCG@"))}
    exclude = bool(rows["denied"]["NDCG@10"] > rows["allowed"]["NDCG@10"])
    return exclude, {**rows, "exclude_history": exclude,
                     "selection": "denied only where its validation NDCG@10 is higher"}


def _set_point(bundle: Path, views: int, beam: int, side: int | None, model_views: int) -> None:
    """Write the chosen serving point into a bundle of a `model_views`-view model."""
    from .export.bundle import set_search_beam, set_search_side_beam, set_search_views

    set_search_views(bundle, None if views == model_views else views)
    set_search_beam(bundle, beam)
    set_search_side_beam(bundle, side)


def fit(dataset: "Dataset", out, *, minutes: float = 60.0, split: str = "auto",
        device: str = "auto", threads: int | None = None, seed: int = 0,
        candidates: tuple[Candidate, ...] | None = None, sid_config: dict | None = None,
        points: tuple[tuple, ...] | None = None, rl: "RLConfig | None" = None,
        log: Callable[[str], None] | None = None) -> dict:
    """Run the procedure of this module on ``dataset``; everything goes under ``out``. Returns
    the report (also written to out/report.json and out/report.md). ``points``: the serving
    points compared (default SERVING_POINTS; ``((1, 20),)`` trains no multi-view model)."""
    from . import pipeline
    from ._devices import resolve_device
    from .data import resolve_split
    from .eval.cold_start import trained_items
    from .eval.metrics import metrics_table
    from .eval.rerank import choose_served
    from .export.bundle import set_cold_start, set_exclude_history, set_reranker
    from .runtime import Recommender
    from .sid.build import SidConfig
    from .train.evaluate import validation_sample
    from .train.rl import rl_finetune

    if not minutes > 0:
        raise InvalidArgumentError(f"minutes={minutes!r}; expected a budget > 0")
    candidates = tuple(candidates or CANDIDATES)
    if not candidates:
        raise InvalidArgumentError("fit needs at least one candidate recipe")
    points = _checked_points(SERVING_POINTS if points is None else points)
    if "views" in (sid_config or {}):
        raise InvalidArgumentError(f"sid_config views={sid_config['views']!r}: fit chooses the "
                                   "SID views itself (points); expected no views in sid_config")
    out = Path(out)
    t0 = time.perf_counter()
    left = lambda: minutes - (time.perf_counter() - t0) / 60  # noqa: E731
    # every progress message, with the minutes elapsed when it was said: where the budget went
    timeline: list = []

    def say(msg: str) -> None:
        timeline.append([round((time.perf_counter() - t0) / 60, 2), msg])
        if log is not None:
            log(msg)

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
                    "procedure": {"search_share": SEARCH_SHARE, "rest_share": REST_SHARE,
                                  "valid_cases_scored": min(VALID_CASES, len(valid)),
                                  "selection": "best validation NDCG@10 (best epoch)"},
                    "candidates": []}
    sid_cfg = dict(SID_CONFIG, **(sid_config or {}))
    report["sid_config"] = sid_cfg
    # on a CPU the C++ search validates the candidates several times faster than the reference
    # decoder (a validation took half of the 50-item candidate's epochs on ml-100k), which
    # leaves their slots more epochs; on an accelerator the reference decoder runs there
    eval_backend = "runtime" if resolve_device(device).type == "cpu" else "reference"
    report["procedure"]["validation_backend"] = eval_backend
    report["procedure"]["serving"] = {"points": [list(p) for p in points],
                                      "latency_limit": LATENCY_LIMIT,
                                      "timing": {"rounds": LATENCY_ROUNDS,
                                                 "histories": LATENCY_HISTORIES,
                                                 "near_limit": LATENCY_NEAR,
                                                 "more_rounds": LATENCY_MORE_ROUNDS},
                                      "selection": "best validation NDCG@10 within the limit"}
    multi = max(p[0] for p in points)  # the multi-view model's views (1: no such model)

    def sids_for(spec: str, where: str, views: int = 1):
        return pipeline.build_sids(dataset.catalog, SidConfig(**sid_cfg, seed=seed, views=views),
                                   dataset=dataset, split=spec, out=out / where, progress=False)

    def train_row(name: str, cand: Candidate, cfg, res) -> dict:
        epochs_run = len(res["history"])
        return {"name": name, "train": {k: v for k, v in asdict(cfg).items()
                                        if k in cand.train or k in ("warmup", "prompts")},
                "validation": {k: v for k, v in (res["best"] or {}).items()
                               if k.startswith(("HR@", "NDCG@")) or k == "epoch"},
                "curve": [{k: r[k] for k in ("epoch", "minutes", "HR@10", "NDCG@10") if k in r}
                          for r in res["history"]],
                "minutes": res["minutes"], "budget_minutes": round(cfg.max_minutes, 2),
                "epochs_run": epochs_run,
                "stopped_by_budget": epochs_run < cfg.epochs}

    # --- search on the tuning split ---------------------------------------------------------
    # one SID build serves both: view 0 of a K-view build is the one-view build of the same seed
    say(f"SIDs for the tuning split ({len(dataset.catalog):,} items, {multi} view(s))")
    started = time.perf_counter()
    tune_views = sids_for(tune_spec, "sids-tuning", multi)
    sid_minutes_per_view = (time.perf_counter() - started) / 60 / multi
    # a candidate's slot; the K-view model gets K of them (it reads every history K times)
    share = minutes * SEARCH_SHARE / (len(candidates) + (MULTI_SLOTS if multi > 1 else 0))
    report["procedure"]["slot_minutes"] = round(share, 2)
    search_end = time.perf_counter() + minutes * SEARCH_SHARE * 60
    n_scored = min(VALID_CASES, len(valid))
    best = None
    for cand in candidates:
        cfg = _train_config(cand, tune_spec, eval_cases=n_scored, seed=seed,
                            max_minutes=share, num_threads=threads, eval_backend=eval_backend)
        say(f"candidate {cand.name}: up to {share:.1f} min")
        res = pipeline.train(dataset, tune_views.primary, out / "search" / cand.name, cfg,
                             progress=False, resume=False, device=device)
        score = (res["best"] or {}).get("NDCG@10")
        report["candidates"].append(train_row(cand.name, cand, cfg, res))
        say(f"  validation NDCG@10 {score if score is None else round(score, 4)} "
            f"after {len(res['history'])} of {cfg.epochs} epochs")
        if score is not None and (best is None or score > best[1]):
            best = (cand, score)
    if best is None:
        raise InvalidArgumentError("no candidate reached a validation score within the budget "
                                   f"({minutes:g} min); expected a larger --minutes")
    chosen = best[0]
    report["chosen"] = chosen.name
    say(f"chosen: {chosen.name} (validation NDCG@10 {best[1]:.4f})")

    # --- the serving point: SID views x beam, on validation within the latency limit ---------
    tune_model = out / "search" / chosen.name
    tune_bundle = out / "search" / f"{chosen.name}-bundle"
    pipeline.export(tune_model, tune_bundle, quant="f16")
    bundles = {1: tune_bundle}
    if multi > 1:
        # MULTI_SLOTS slots, or what the candidates left of the search's share if more
        views_minutes = max(share * MULTI_SLOTS, (search_end - time.perf_counter()) / 60)
        name = f"{chosen.name}-views{multi}"
        cfg = _train_config(chosen, tune_spec, eval_cases=n_scored, seed=seed,
                            max_minutes=views_minutes, num_threads=threads,
                            eval_backend=eval_backend)
        say(f"{name}: the chosen recipe in {multi} SID views, up to {views_minutes:.1f} min")
        res = pipeline.train(dataset, tune_views, out / "search" / name, cfg, progress=False,
                             resume=False, device=device)
        report["views_model"] = train_row(name, chosen, cfg, res)
        bundles[multi] = out / "search" / f"{name}-bundle"
        pipeline.export(out / "search" / name, bundles[multi], quant="f16")
    sample = validation_sample(valid, n_scored, seed)  # the one the candidates were scored on

    # --- the history policy: each request's own history denied in its answer, or not -------
    # decided on the one-view tuning bundle at the reference point, before the serving points,
    # so that they are scored and timed as they will be served
    ref_views, ref_beam, _ = points[0]
    _set_point(tune_bundle, ref_views, ref_beam, None, 1)
    exclude, policy = history_policy(tune_bundle, dataset, sample, threads=threads)
    report["history_policy"] = policy
    say(f"history policy (validation NDCG@10, one view at beam {ref_beam}): allowed "
        f"{policy['allowed']['NDCG@10']:.4f}, denied {policy['denied']['NDCG@10']:.4f}; "
        f"{'denied' if exclude else 'allowed'}")
    for path in bundles.values():
        set_exclude_history(path, exclude)
    kept_row = policy["denied" if exclude else "allowed"]
    rows = serving_points(bundles, points, sample, dataset, threads=threads,
                          scored={points[0]: kept_row})
    report["serving"] = rows
    views, beam, side = choose_point(rows)
    report["serving_chosen"] = {"views": views, "beam": beam, "side_beam": side}
    say("serving points (validation NDCG@10, p50 vs one view): " + "; ".join(
        f"{r['views']}v b{_beams(r)} {r['NDCG@10']:.4f} {r['vs_reference']:.2f}x" for r in rows)
        + f"; chosen {views} view(s) at beam {_beams(report['serving_chosen'])}")
    # a point that decodes fewer views than the multi-view model holds was validated on that
    # model (trained on all its views), so the final model is trained the same way
    model_views = 1 if views == 1 else multi

    # --- RL on the winner's tuning model: how many updates help ------------------------------
    rl_steps, rl_minutes = 0, 0.0   # updates for the final model, and what they cost the tuning one
    if rl is not None and model_views > 1:
        report["rl"] = {"skipped": f"the chosen serving point decodes {views} SID views; RL "
                                   "(train/rl.py) takes one-view models", "steps_chosen": 0}
        say(report["rl"]["skipped"])
    elif rl is not None:
        rl = replace(rl, seed=seed, threads=rl.threads or threads)
        say("RL on the chosen tuning model (early stopping on validation)")
        rep = rl_finetune(tune_model, dataset, out / "search" / f"{chosen.name}-rl", rl,
                          device=device, log=say)
        rl_steps = int(rep["best"]["step"])
        rl_minutes = rep["minutes"] * rl_steps / max(int(rep["steps"]), 1)
        report["rl"] = {"tuning": {k: rep[k] for k in ("sft_validation", "best", "curve", "steps",
                                                       "stopped_by", "minutes")},
                        "steps_chosen": rl_steps}
        if rl_steps:
            tune_model = out / "search" / f"{chosen.name}-rl"
            bundles[1] = out / "search" / f"{chosen.name}-rl-bundle"
            pipeline.export(tune_model, bundles[1], quant="f16")
            set_exclude_history(bundles[1], exclude)
    tune_bundle = bundles[model_views]
    _set_point(tune_bundle, views, beam, side, model_views)

    # --- cold start, chosen on validation with the winner's tuning model --------------------
    with Recommender.load(tune_bundle, n_threads=threads) as rec:
        cold_trials = pipeline.cold_start_trials(rec, valid,
                                                 pipeline.bundle_profiles(rec, dataset))

    # --- the final model --------------------------------------------------------------------
    # what is left, less the final split's SIDs (priced at the tuning split's) and the rest
    # (and the RL updates chosen, priced at what they cost the tuning model)
    reserved = {"sids": round(sid_minutes_per_view * model_views, 2),
                "rl": round(rl_minutes, 2), "rest": round(minutes * REST_SHARE, 2)}
    final_minutes = max(left() - sum(reserved.values()), 0.5)
    say(f"SIDs for the final split; final model ({chosen.name}, {model_views} view(s)) for up "
        f"to {final_minutes:.1f} min")
    final_sids = sids_for(final_spec, "sids", model_views)
    cfg = _train_config(chosen, final_spec, eval_cases=0, seed=seed, num_threads=threads,
                        max_minutes=final_minutes)
    res = pipeline.train(dataset, final_sids, out / "model", cfg, progress=False, resume=False,
                         device=device)
    report["final"] = {"train": asdict(cfg), "sid_views": model_views, "minutes": res["minutes"],
                       "steps": res["steps"], "epochs_run": len(res["history"]),
                       "reserved_minutes": reserved}
    final_model = out / "model"
    # the settings, priced at the cold share the final model will serve: it trains on more of
    # the log than the tuning model, so fewer of its items are cold
    cold, shares = pipeline.pick_cold_start(cold_trials,
                                            served_cold=pipeline.served_cold_items(final_model))
    report["cold_start"] = None if cold is None else cold.to_dict()
    if shares is not None:
        report["cold_start_procedure"] = {key: round(v, 4) if isinstance(v, float) else v
                                          for key, v in shares.items()}
    # --- the re-ranker, fitted on validation with the winner's tuning model served as the
    # final bundle will be (its point, the cold start chosen)
    with Recommender.load(tune_bundle, n_threads=threads) as rec:
        rec.set_cold_start(cold)
        rec.set_transition_weight(None)
        # cold items get exposure at the price the cold-start settings were chosen at, stated
        # against the same recipe with cold start off and paid at the cold share the final
        # model will serve
        choice = choose_served(rec, valid, profiles=pipeline.bundle_profiles(rec, dataset),
                               seed=seed,
                               cold_share=None if shares is None else shares["served_cold_share"])
    reranker, rows = choice.reranker, choice.rows
    chosen_row = next((r for r in rows if r.get("chosen")), None)
    report["rerank"] = {"chosen": None if reranker is None else reranker.to_dict(),
                        "offset": None if chosen_row is None else chosen_row["offset"],
                        "reference": choice.reference, "trials": rows}
    if reranker is None:
        kept = "off"
    elif reranker.cold and "cold_cases" in chosen_row:
        kept = (f"kept (+cold, offset {chosen_row['offset']:g}: cold cases' NDCG@10 "
                f"{chosen_row['cold_cases']['NDCG@10']:.4f}, all cases' "
                f"{chosen_row['priced']['NDCG@10']:.4f}"
                + ("" if choice.reference is None else
                   f" against {choice.reference['NDCG@10']:.4f} with cold start off") + ")")
    else:
        kept = "kept (+cold)" if reranker.cold else "kept"
    say("re-ranker (cross-validated NDCG@10 by L2 penalty; +cold: ranking cold candidates "
        "too): " + "; ".join(
            f"{'off' if r['lambda'] is None else format(r['lambda'], 'g')}"
            f"{'+cold' if r.get('cold') else ''} {r['NDCG@10']:.4f}" for r in rows
            if not r.get("offset")) + "; " + kept)
    final_plan = resolve_split(final_spec, dataset)
    final_split = final_plan.apply(dataset, None)
    test = dataset.test_cases or final_split.test

    def score(bundle: Path) -> dict:
        with Recommender.load(bundle, n_threads=threads) as rec:
            return pipeline.evaluate_recommender(rec, dataset, test)  # at the bundle's point

    def export_final(model: Path, bundle: Path) -> None:
        pipeline.export(model, bundle, quant="f16")
        set_cold_start(bundle, cold)
        set_reranker(bundle, reranker)
        set_exclude_history(bundle, exclude)
        _set_point(bundle, views, beam, side, model_views)

    sft_test = None
    if rl_steps:
        if test:  # the ablation, same seed and run: the final model before RL, served alike
            say(f"scoring the final model before RL on {len(test):,} test cases")
            export_final(final_model, out / "search" / "final-sft-bundle")
            sft_test = score(out / "search" / "final-sft-bundle")
        say(f"RL on the final model: {rl_steps} updates")
        rep = rl_finetune(final_model, dataset, out / "model-rl", replace(rl, steps=rl_steps),
                          device=device, keep="last", log=say)
        report["rl"]["final"] = {k: rep[k] for k in ("curve", "steps", "minutes")}
        final_model = out / "model-rl"
    export_final(final_model, out / "bundle")

    # --- test metrics of the served bundle --------------------------------------------------
    if test:
        say(f"scoring {len(test):,} test cases with the C++ runtime")
        # the cases whose target never occurs in the final model's training sequences (new
        # items: only cold start reaches them), and the same bundle with cold start off and
        # with the re-ranker off
        seen = trained_items(final_split.train)
        new_target = np.array([c.target not in seen for c in test])
        parts = _scored_parts(out / "bundle", dataset, test, new_target, threads)
        ours = parts.pop("all")
        pop = pipeline.popularity_baseline(dataset, final_plan, test)
        report["test"] = {"views": views, "beam": beam, "side_beam": side, "n_cases": len(test),
                          "genrec-lite": ours, "popularity": pop, **parts}
        if sft_test is not None:
            report["test"]["genrec-lite before RL"] = sft_test
    report["minutes"] = round((time.perf_counter() - t0) / 60, 2)
    report["timeline"] = timeline
    _write_report(out, report, metrics_table)
    return report


def _scored_parts(bundle: Path, dataset, cases, new_target: np.ndarray,
                  threads: int | None) -> dict:
    """The served bundle's test metrics ("all"); where it serves cold start, the same bundle
    with it off ("genrec-lite, cold start off"); where it serves a re-ranker, the same bundle
    without it ("genrec-lite, re-ranker off"); and each on the cases whose target is new to
    the final model ("new targets": n_cases and each one's metrics)."""
    from . import pipeline
    from .eval.metrics import segment_metrics
    from .runtime import Recommender

    targets = [c.target for c in cases]
    runs: dict = {}
    with Recommender.load(bundle, n_threads=threads) as rec:
        served = (rec.cold_start, rec.reranker)
        settings = [("genrec-lite", served)]
        if rec.cold_start is not None:
            settings.append(("genrec-lite, cold start off", (None, served[1])))
        if rec.reranker is not None:
            settings.append(("genrec-lite, re-ranker off", (served[0], None)))
        for name, (cold, reranker) in settings:
            rec.set_cold_start(cold)
            rec.set_reranker(reranker)
            ranked: list = []
            runs[name] = (pipeline.evaluate_recommender(rec, dataset, cases, ranked=ranked),
                          ranked)
    out: dict = {"all": runs["genrec-lite"][0]}
    for name in ("genrec-lite, cold start off", "genrec-lite, re-ranker off"):
        if name in runs:
            out[name] = runs[name][0]
    out["new targets"] = {"n_cases": int(new_target.sum())}
    for name, (_, ranked) in runs.items():
        part = segment_metrics(ranked, targets, {"new": new_target}).get("new")
        if part is not None:
            out["new targets"][name] = part
    return out


def _beams(point: dict) -> str:
    """A point's beam as the report writes it: '10', or '10/5' with a side beam."""
    side = point.get("side_beam")
    return f"{point['beam']}" if side is None else f"{point['beam']}/{side}"


def _write_report(out: Path, report: dict, metrics_table) -> None:
    from .runtime.cold_start import ColdStartConfig

    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    lines = [f"# genrec-lite fit: {report['data']}", "",
             f"Split {report['split']['resolved']}; tuning on {report['split']['tuning']} "
             f"({report['split']['n_valid_cases']:,} validation cases), final model on "
             f"{report['split']['final']}. Budget {report['minutes_budget']:g} min, used "
             f"{report['minutes']:g}.", "",
             "| candidate | validation HR@10 | validation NDCG@10 | best epoch | epochs run | "
             "minutes (of its slot) |",
             "|---|---|---|---|---|---|"]
    for c in report["candidates"]:
        v = c["validation"]
        lines.append(f"| {c['name']}{' (chosen)' if c['name'] == report['chosen'] else ''} | "
                     f"{v.get('HR@10', float('nan')):.4f} | {v.get('NDCG@10', float('nan')):.4f} | "
                     f"{v.get('epoch', '-')} | {c['epochs_run']} | {c['minutes']:g} "
                     f"({c['budget_minutes']:g}) |")
    if "rl" in report:
        r = report["rl"]
        lines += ["", f"RL: skipped; {r['skipped']}."] if "skipped" in r else [
                  "", f"RL on the chosen tuning model: validation NDCG@10 "
                      f"{r['tuning']['sft_validation']['NDCG@10']:.4f} -> "
                      f"{r['tuning']['best']['NDCG@10']:.4f}; {r['steps_chosen']} updates "
                      "chosen for the final model" + (" (RL off)" if not r["steps_chosen"] else "")
                      + "."]
    if "serving" in report:
        c = report["serving_chosen"]
        lines += ["", f"Serving points on the {report['procedure']['valid_cases_scored']:,} "
                      "validation cases (C++ runtime, k 10; p50 of one request at batch 1, "
                      f"limit {report['procedure']['serving']['latency_limit']:g}x the first "
                      "point's):", "",
                  "| SID views | beam (first/other views) | HR@1 | HR@10 | NDCG@1 | NDCG@10 | p50 ms | vs one view |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in report["serving"]:
            same = all(r.get(key) == c.get(key) for key in ("views", "beam", "side_beam"))
            mark = " (chosen)" if same else ""
            lines.append(f"| {r['views']}{mark} | {_beams(r)} | {r['HR@1']:.4f} | "
                         f"{r['HR@10']:.4f} | {r['NDCG@1']:.4f} | {r['NDCG@10']:.4f} | "
                         f"{r['p50_ms']:g} | {r['vs_reference']:.2f}x |")
        if "views_model" in report:
            v = report["views_model"]
            lines += ["", f"The multi-view model ({v['name']}): best epoch "
                          f"{v['validation'].get('epoch', '-')} of {v['epochs_run']} run, "
                          f"{v['minutes']:g} of its {v['budget_minutes']:g} min."]
    hp = report.get("history_policy")
    if hp is not None:
        lines += ["", "Each request's own history in its answer, on the validation sample with "
                      f"the one-view tuning model (HR@10 / NDCG@10): allowed {hp['allowed']['HR@10']:.4f} / "
                      f"{hp['allowed']['NDCG@10']:.4f}, denied {hp['denied']['HR@10']:.4f} / "
                      f"{hp['denied']['NDCG@10']:.4f}; "
                      f"{'denied' if hp['exclude_history'] else 'allowed'}."]
    rr = report.get("rerank")
    if rr is not None and rr["trials"]:
        lines += ["", "Re-ranker, cross-validated on validation (NDCG@10 by L2 penalty): " +
                  "; ".join(f"{'off' if r['lambda'] is None else format(r['lambda'], 'g')}: "
                            f"{r['NDCG@10']:.4f}" for r in rr["trials"]) +
                  ("; kept off." if rr["chosen"] is None else "; kept, refitted on all cases.")]
    cold = report.get("cold_start")
    lines += ["", "Cold start chosen on validation: " +
              ("off" if cold is None else ColdStartConfig.from_dict(cold).describe()) + "."]
    if "test" in report:
        t = report["test"]
        lines += ["", f"Test ({t['n_cases']:,} cases, the served bundle: {t.get('views', 1)} "
                      f"SID view(s), beam {_beams(t)}):", "",
                  metrics_table({"genrec-lite (fit)": t["genrec-lite"],
                                 **({"genrec-lite before RL (same run)": t["genrec-lite before RL"]}
                                    if "genrec-lite before RL" in t else {}),
                                 **({"genrec-lite, cold start off (same bundle)":
                                     t["genrec-lite, cold start off"]}
                                    if "genrec-lite, cold start off" in t else {}),
                                 **({"genrec-lite, re-ranker off (same bundle)":
                                     t["genrec-lite, re-ranker off"]}
                                    if "genrec-lite, re-ranker off" in t else {}),
                                 "popularity": t["popularity"]})]
        new = t.get("new targets") or {}
        if new.get("n_cases"):
            lines += ["", f"Test cases whose target never occurs in the final model's training "
                          f"({new['n_cases']:,}; new items, reached only by cold start):", "",
                      metrics_table({name: m for name, m in new.items() if name != "n_cases"})]
    if report.get("timeline"):
        lines += ["", "Timeline (minutes elapsed when each stage began):", ""]
        lines += [f"- {m:.2f}: {msg}" for m, msg in report["timeline"]]
    (out / "report.md").write_text("\n".join(lines) + "\n")
