"""The pipeline's steps as plain functions: build SIDs, train, evaluate (a checkpoint or an
exported bundle), export, and the extra steps of the quickstart (items launched after training,
cold start chosen on validation, the popularity baseline).

The CLI's commands and benchmarks/quality.py call these, so each step is written once. Steps
print nothing (a step that reports progress takes a flag or a callback), and import the heavy
libraries only when they run: importing this module does not load torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from .errors import InvalidArgumentError

if TYPE_CHECKING:  # pragma: no cover
    from .data import Case, Catalog, Dataset, SplitPlan
    from .runtime import Recommender
    from .runtime.cold_start import ColdStartConfig
    from .runtime.manifest import Manifest
    from .runtime.rerank import Reranker
    from .sid import SidViews
    from .sid.build import SidConfig
    from .train.trainer import TrainConfig


# --- semantic IDs -------------------------------------------------------------------------------
def sid_config_for_vectors(cfg: "SidConfig", vectors_file, *, template: str | None = None,
                           encoder: str | None = None) -> "SidConfig":
    """``cfg`` for SIDs built from given vectors: they replace the text encoder, and vectors of
    `sid embed` record the model and template they came from, so new items can later be
    embedded from their text the same way."""
    from .sid.embed_job import embedded_with

    if encoder:
        raise InvalidArgumentError(f"--encoder {encoder!r} and --vectors {vectors_file!r}: "
                                   "expected one of them (given vectors replace the encoder)")
    origin = embedded_with(vectors_file)
    if origin and template and template != origin["template"]:
        raise InvalidArgumentError(f"--template {template!r}, but the vectors in {vectors_file} "
                                   f"were embedded from the template {origin['template']!r}; "
                                   "expected that one (or no --template)")
    cfg.embedding_model = origin["model"] if origin else None
    if origin:
        cfg.text_template = origin["template"]
    return cfg


def build_sids(catalog: "Catalog", cfg: "SidConfig", *, dataset: "Dataset | None" = None,
               split: "str | SplitPlan | None" = None, vectors: np.ndarray | None = None,
               notes: dict | None = None, out=None, progress: bool = True) -> "SidViews":
    """SID views of ``catalog`` (``cfg.views`` builds). With ``cfg.collab_weight > 0`` the
    co-occurrence vectors come from the training part of ``split`` on ``dataset`` only (never
    its validation or test interactions). ``notes`` are added to every view's config (where the
    items and vectors came from); with ``out`` the views are saved there."""
    from .sid.build import build_sid_views

    sequences = None
    if cfg.collab_weight > 0:
        if dataset is None or split is None:
            raise InvalidArgumentError(f"collab_weight={cfg.collab_weight} needs a data set and "
                                       "a split to take its training interactions from")
        sequences = split_of(dataset, split, None).train
    built = build_sid_views(catalog, cfg, progress=progress, sequences=sequences, vectors=vectors)
    for sids in built:
        sids.config.update(notes or {})
    if out is not None:
        built.save(out)
    return built


def split_of(dataset: "Dataset", split: "str | SplitPlan", max_history: int | None):
    """The Split of a spec, or of a plan resolved already (not resolved again)."""
    from .data import make_split

    if isinstance(split, str):
        return make_split(dataset, split, max_history)
    return split.apply(dataset, max_history)


# --- training -----------------------------------------------------------------------------------
def train(dataset: "Dataset", sids, out, cfg: "TrainConfig", *, progress: bool = True,
          resume: bool = True, device: str = "auto") -> dict:
    """Train a model on ``dataset`` written in ``sids``; the checkpoint goes to ``out``. Returns
    the trainer's summary (steps, minutes, best validation metrics)."""
    from .train.trainer import Trainer

    return Trainer(dataset, sids, out, cfg, progress=progress, resume=resume, device=device).fit()


# --- evaluation ---------------------------------------------------------------------------------
def recorded_log(time_unit: str, kcore: int | None, data, recorded: dict | None) -> tuple:
    """(time unit, k-core) to read the evaluation data with: as given, except where left at
    their defaults and the model is scored on its own training data (``data`` None), as the
    model recorded them (the same log, so the same split)."""
    if data is None and recorded:
        if time_unit == "auto" and recorded.get("time_unit"):
            time_unit = recorded["time_unit"]
        if kcore is None and recorded.get("kcore"):
            kcore = recorded["kcore"]
    return time_unit, kcore


def test_cases(dataset: "Dataset", split: "str | SplitPlan", max_history: int | None, *,
               cases_file=None, limit: int | None = None) -> "list[Case]":
    """The cases to score: ``cases_file``, else the data's test cases, else the test cases of
    ``split`` (made only then); the first ``limit`` of them."""
    from .data import load_cases

    if cases_file:
        chosen = load_cases(cases_file)
    elif dataset.test_cases:
        chosen = dataset.test_cases
    else:
        chosen = split_of(dataset, split, max_history).test
    return chosen[:limit] if limit else chosen


@dataclass
class Checkpoint:
    """A trained model loaded for scoring, with what its run recorded."""

    path: Path
    model: object
    tokenizer: object
    sids: "SidViews"
    meta: dict

    @property
    def train_config(self) -> dict:
        return self.meta["train"]

    def prompts(self):
        from .prompts import PromptSet

        return PromptSet.load(self.meta["prompts"])


def load_checkpoint(path, device: str = "auto", which: str = "best") -> Checkpoint:
    """The checkpoint's best (by validation) or last weights, for scoring."""
    from .train.checkpoint import load_model

    model, tok, sids, meta = load_model(path, which, device=device)
    return Checkpoint(Path(path), model, tok, sids, meta)


def evaluate_checkpoint(ckpt: Checkpoint, dataset: "Dataset", cases, *, beam: int = 20,
                        batch_size: int = 32, free: bool = False,
                        progress: bool = False) -> dict:
    """HR@K / NDCG@K of the checkpoint over ``cases`` (the reference constrained beam search),
    prompts written as its training wrote them; with ``free`` also the unconstrained decode's
    metrics and invalid outputs under "free"."""
    from .train.evaluate import evaluate_cases

    tcfg = ckpt.train_config
    prompts = ckpt.prompts()
    profiles = dataset.profiles if tcfg.get("use_profiles") else None
    common = dict(profiles=profiles, profile_template=tcfg.get("profile_template"),
                  max_history=tcfg["max_history"], beam=beam, batch_size=batch_size)
    metrics = evaluate_cases(ckpt.model, ckpt.tokenizer, ckpt.sids, cases, prompts,
                             progress=progress, **common)
    if free:
        metrics["free"] = evaluate_cases(ckpt.model, ckpt.tokenizer, ckpt.sids, cases, prompts,
                                         constrained=False, **common)
    return metrics


def title_search(ckpt: Checkpoint, catalog: "Catalog", *, beam: int = 20, batch_size: int = 32,
                 limit: int | None = None) -> dict:
    """Title -> SID exact-match accuracy of the checkpoint over the catalog (a seeded sample of
    ``limit`` items)."""
    from .train.evaluate import title_to_sid_accuracy

    return title_to_sid_accuracy(ckpt.model, ckpt.tokenizer, ckpt.sids, catalog, ckpt.prompts(),
                                 beam=beam, batch_size=batch_size, limit=limit)


def bundle_profiles(rec: "Recommender", dataset: "Dataset"):
    """The data's user profiles where the served model was trained with them, else None."""
    return dataset.profiles if rec.bundle.manifest.use_profiles else None


def evaluate_recommender(rec: "Recommender", dataset: "Dataset", cases, *, beam: int | None = None,
                         batch_size: int = 32, progress: bool = False,
                         ranked: list | None = None) -> dict:
    """HR@K / NDCG@K of a served bundle over ``cases``, through the C++ runtime; the same cases
    and metric code as a checkpoint; ``beam`` None: the bundle's own (its search_beam).
    ``ranked`` receives each case's ranked item ids."""
    from .eval.bundle import evaluate_bundle

    return evaluate_bundle(rec, cases, profiles=bundle_profiles(rec, dataset), beam=beam,
                           batch_size=batch_size, progress=progress, ranked=ranked)


# --- export -------------------------------------------------------------------------------------
def export(model_path, out, *, quant: str = "f16", onnx: bool = False, which: str = "best",
           cold_start=None, transition_weight: float | None = None,
           progress: Callable[[str], None] | None = None) -> "Manifest":
    """Write the serving bundle of a checkpoint (atomically); returns its manifest."""
    from .export.bundle import export_bundle

    return export_bundle(model_path, out, quant=quant, onnx=onnx, which=which,
                         cold_start=cold_start, transition_weight=transition_weight,
                         progress=progress)


# --- the quickstart's own steps -----------------------------------------------------------------
def quickstart_configs(split: str, minutes: float, threads: int | None, *, synthetic: bool,
                       collab_weight: float, views: int) -> tuple["SidConfig", "TrainConfig"]:
    """The quickstart's recipe: small SIDs (64 codes a level on the synthetic catalog), a small
    compact backbone on next-item examples, within the time budget."""
    from .sid.build import SidConfig
    from .train.trainer import TrainConfig

    sid_cfg = SidConfig(levels=3, codebook_size=64 if synthetic else 256,
                        collisions="extra_level", epochs=150 if synthetic else None,
                        collab_weight=collab_weight, views=views)
    cfg = TrainConfig(prompts="en-seq", split=split, epochs=30, warmup=0.12, lr=3e-3,
                      task_weights={"next_item": 1.0}, eval_cases=200, max_minutes=minutes,
                      num_threads=threads, compact={"hidden_size": 128, "num_layers": 2,
                                                    "num_heads": 4, "num_kv_heads": 4})
    return sid_cfg, cfg


def held_out_cases(dataset: "Dataset", plan: "SplitPlan", max_history: int) -> tuple[list, list]:
    """(validation cases, test cases) of the plan (the folder's test cases when it has them);
    a split with no test case is refused before any work."""
    held = plan.apply(dataset, max_history)
    valid, cases = held.valid, (dataset.test_cases or held.test)
    if not cases:
        raise InvalidArgumentError(f"split {plan.spec!r} gives no test case to score; expected "
                                   "a split whose test period holds events of known users")
    return valid, cases


def hold_out_launch(dataset: "Dataset", seed: int = 0) -> tuple["Dataset", np.ndarray]:
    """A seeded tenth of the items held out of training entirely, as items launched after the
    model was trained: (the data set without them, their ids, sorted)."""
    ids = dataset.catalog.item_ids
    launched = np.sort(np.random.default_rng(seed).choice(ids, size=max(1, len(ids) // 10),
                                                          replace=False))
    return dataset.without_items(launched), launched


def serve_with_launch(bundle, catalog: "Catalog", launched: np.ndarray,
                      threads: int | None) -> "Recommender":
    """The bundle loaded for serving, the launched items added from their records (their text
    gives them SIDs; no retraining)."""
    from .runtime import Recommender

    rec = Recommender.load(bundle, n_threads=threads)
    rec.add_items([catalog.record(i) for i in launched.tolist()])
    return rec


def tune_cold_start(rec: "Recommender", bundle, valid, profiles) -> "ColdStartConfig | None":
    """Cold-start settings chosen on the validation cases (None: off, also without validation
    cases), set on ``rec`` and written into the bundle, which serves with them from then on
    (``rec`` is the model that will serve: the validation cold share is the served one)."""
    from .export.bundle import set_cold_start

    chosen, _ = pick_cold_start(cold_start_trials(rec, valid, profiles))
    rec.set_cold_start(chosen)
    set_cold_start(bundle, chosen)
    return chosen


def tune_reranker(rec: "Recommender", bundle, valid, profiles, seed: int = 0
                  ) -> tuple["Reranker | None", list[dict]]:
    """The re-ranker fitted on the validation cases (eval/rerank.choose_served; None: off, also
    without validation cases or a transition table) with its cross-validation rows, set on
    ``rec`` and written into the bundle (``rec`` serves as the bundle will: cold start already
    chosen; the bundle serves as it was tuned, so its cold items are those of validation, at
    their share)."""
    from .eval.rerank import choose_served
    from .export.bundle import set_reranker

    if not valid or rec.transitions is None:
        return None, []
    rec.set_transition_weight(None)
    choice = choose_served(rec, valid, profiles=profiles, seed=seed)
    rec.set_reranker(choice.reranker)
    set_reranker(bundle, choice.reranker)
    return choice.reranker, choice.rows


def cold_start_trials(rec: "Recommender", valid, profiles) -> dict | None:
    """The cold-start procedure's trials (eval/cold_start.py) of ``rec`` on the validation
    cases, as `cold_start_tuning` (None without validation cases): for `pick_cold_start`, now or
    once the served model is known."""
    from .eval.cold_start import choose_cold_start, runtime_answers

    if not valid:
        return None
    state = rec.catalog.state
    _, trials = choose_cold_start(runtime_answers(rec, valid, profiles=profiles), valid,
                                  state.sids, state.cold)
    return cold_start_tuning(trials, valid, state.cold)


def cold_start_tuning(trials: list[dict], valid, cold) -> dict:
    """The trials of a tuning model on the validation cases with what the served choice needs:
    its cold item count and the share of the cases whose target is one of them."""
    return {"trials": trials, "n_cold": int(len(cold)),
            "cold_share": float(np.isin([c.target for c in valid], cold).mean())}


def pick_cold_start(tuned: dict | None, served_cold: int | None = None
                    ) -> "tuple[ColdStartConfig | None, dict | None]":
    """(the settings `cold_start_tuning`'s trials lead to (None: off), the shares it used (None
    where the served model is the tuning one)). For a served model with ``served_cold`` cold
    items the price is paid at the cold share that model will serve
    (eval/cold_start.served_cold_share)."""
    from .eval.cold_start import pick, served_cold_share

    if tuned is None:
        return None, None
    if served_cold is None:
        return pick(tuned["trials"]), None
    share = served_cold_share(tuned["cold_share"], tuned["n_cold"], served_cold)
    return pick(tuned["trials"], cold_share=share), {
        "validation_cold_share": tuned["cold_share"], "tuning_cold_items": tuned["n_cold"],
        "served_cold_items": int(served_cold), "served_cold_share": share}


def served_cold_items(model, added=()) -> int:
    """How many items a bundle of the checkpoint ``model`` serves as cold: those it was never
    trained to write (its untrained_items.npy) and ``added`` (ids given to add_items)."""
    from .train.checkpoint import UNTRAINED_ITEMS

    return int(len(np.union1d(np.load(Path(model) / UNTRAINED_ITEMS),
                              np.asarray(list(added), dtype=np.int64))))


def popularity_baseline(dataset: "Dataset", plan: "SplitPlan", cases, k: int = 10) -> dict:
    """The popularity baseline's metrics on ``cases``, counting what a model could have seen:
    the log before the test period (all of it for a per-user split)."""
    from .eval.popularity import popularity_metrics

    inter = dataset.interactions
    if plan.kind == "temporal":
        inter = inter.between(before=plan.test_from)
    return popularity_metrics(inter, cases, k=k)


def hit_rate_where(ranked, cases, mask, k: int = 10) -> float:
    """HR@k over the cases where ``mask`` holds (NaN when it holds nowhere)."""
    hit = [c.target in lst[:k] for lst, c, m in zip(ranked, cases, mask) if m]
    return float(np.mean(hit)) if hit else float("nan")
