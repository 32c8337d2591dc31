"""`genrec-lite export`: a trained checkpoint -> a self-contained serving bundle.

The bundle (layout in genrec_lite.runtime.bundle) is written into a temporary folder beside the
target and renamed into place only when every file is written and checksummed, so a failed
export leaves nothing behind and never damages an existing bundle.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from .._io import atomic_directory, sha256_file, versions
from ..errors import InvalidArgumentError
from ..runtime.bundle import COLD_ITEMS, MANIFEST
from ..runtime.manifest import (CheckpointFacts, ColdStartFacts, DataFacts, FileFacts, Manifest,
                                SidFacts, TokenizerFacts, TransitionFacts, checked_search_beam,
                                checked_search_views)
from ..runtime.cold_start import ColdStartConfig
from ..runtime.rerank import Reranker
from ..runtime.transitions import TRANSITIONS, Transitions, checked_weight

QUANTS = ("f32", "f16", "q8_0")


def export_bundle(ckpt: str | Path, out: str | Path, *, quant: str = "f16", onnx: bool = False,
                  which: str = "best", text_encoder: bool = True, cold_start=None,
                  transition_weight: float | None = None, progress=None) -> Manifest:
    """Write the bundle; returns its manifest. `progress(msg)` is told about each stage.
    cold_start: the ColdStartConfig (or its dict) the served bundle mixes cold items in with,
    chosen on validation (eval/cold_start.py); None leaves cold items to the model alone.
    transition_weight: the weight the served answer is re-ordered by its transition counts
    with (runtime/transitions.py, eval/transitions.py); None or 0: off; a weight needs a
    checkpoint that recorded the counts."""
    from ..sid.embed import DEFAULT_MODEL, resolve_model
    from ..train.checkpoint import UNTRAINED_ITEMS, load_model
    from .gguf_export import write_gguf
    from .onnx_export import export_lm, export_text_encoder

    if quant not in QUANTS:
        raise InvalidArgumentError(f"quant={quant!r}; expected one of {QUANTS}")
    if cold_start is not None and not isinstance(cold_start, ColdStartConfig):
        cold_start = ColdStartConfig.from_dict(cold_start)
    transition_weight = checked_weight(transition_weight)
    if transition_weight is not None and not (Path(ckpt) / TRANSITIONS).is_file():
        raise InvalidArgumentError(f"transition weight {transition_weight!r}, but {ckpt} has no "
                                   f"{TRANSITIONS} (trained before the counts were recorded); "
                                   "expected none")
    say = progress or (lambda msg: None)
    ckpt = Path(ckpt)
    t0 = time.perf_counter()
    model, tok, views, meta = load_model(ckpt, which)
    train = meta["train"]
    sids = views.primary
    sid_cfg = sids.config
    for v, view in enumerate(views):
        if view.encoder is None:
            raise InvalidArgumentError(f"the SIDs of {ckpt} (view {v}) carry no quantiser; cold "
                                       "start needs one")
    if sids.content is None:  # SIDs built before content vectors were kept: make them now
        say("computing the items' content vectors (cold start)")
        views = _with_content(views, ckpt / "items.jsonl", sid_cfg)
        sids = views.primary
    facts: dict = {}
    with atomic_directory(out) as tmp:
        say(f"writing model.gguf ({quant})")
        facts["gguf"] = write_gguf(model, tok, tmp / "model.gguf", quant=quant,
                                   name=f"genrec-lite {meta['backbone']['kind']}")
        if onnx:
            say("writing model.onnx")
            facts["onnx"] = export_lm(model, tmp / "model.onnx")
            tok.backend_tokenizer.save(str(tmp / "tokenizer.json"))
        views.save(tmp / "sids")  # with each view's quantiser, which cold start runs
        # SIDs quantised from given vectors have no text encoder whose vectors would fit them
        if text_encoder and (sid_cfg.get("embedding_model") or not sid_cfg.get("vectors")):
            say("writing text_encoder/")
            facts["text_encoder"] = export_text_encoder(
                resolve_model(sid_cfg.get("embedding_model") or DEFAULT_MODEL),
                tmp / "text_encoder")
        shutil.copyfile(ckpt / "items.jsonl", tmp / "items.jsonl")
        cold = ColdStartFacts(settings=cold_start)
        if (ckpt / UNTRAINED_ITEMS).is_file():  # older checkpoints did not record them
            shutil.copyfile(ckpt / UNTRAINED_ITEMS, tmp / COLD_ITEMS)
            cold = replace(cold, items=COLD_ITEMS, n_items=int(len(np.load(tmp / COLD_ITEMS))))
        transitions = TransitionFacts()
        if (ckpt / TRANSITIONS).is_file():  # older checkpoints did not record them
            shutil.copyfile(ckpt / TRANSITIONS, tmp / TRANSITIONS)
            transitions = TransitionFacts(file=TRANSITIONS,
                                          pairs=len(Transitions.load(tmp / TRANSITIONS)),
                                          weight=transition_weight)
        files = {}
        for f in sorted(p for p in tmp.rglob("*") if p.is_file()):
            files[f.relative_to(tmp).as_posix()] = FileFacts(f.stat().st_size, sha256_file(f))
        manifest = Manifest(
            created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            checkpoint=CheckpointFacts(path=str(ckpt.resolve()), weights=which),
            backbone={k: v for k, v in meta["backbone"].items() if k != "config"}
            | {"config": meta["backbone"].get("config")},
            model=facts,
            tokenizer=TokenizerFacts(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                     pad_token_id=tok.pad_token_id, vocab_size=len(tok)),
            data=DataFacts(**{k: meta.get("data", {}).get(k)
                              for k in ("name", "path", "split", "time_unit", "kcore")}),
            prompts=meta["prompts"],
            max_history=int(train["max_history"]),
            use_profiles=bool(train.get("use_profiles", True)),
            profile_template=train.get("profile_template"),
            sid=SidFacts(levels=sids.levels, level_sizes=list(sids.level_sizes),
                         collisions=sids.collisions, n_items=len(sids), views=len(views),
                         text_template=sid_cfg.get("text_template"),
                         embedding_model=sid_cfg.get("embedding_model"),
                         input_dim=int(sid_cfg.get("input_dim") or sids.encoder.input_dim)),
            cold_start=cold,
            transitions=transitions,
            files=files,
            versions=versions(),
            export_seconds=round(time.perf_counter() - t0, 1),
        )
        manifest.save(tmp / MANIFEST)
    return manifest


def _with_content(views, items: Path, sid_cfg: dict):
    """`views` with the primary table's content vectors made from the catalog's text, embedded
    as the SID build did (its template and model, through the embedding cache)."""
    from ..data.catalog import Catalog
    from ..sid.build import default_template
    from ..sid.embed import DEFAULT_MODEL, TextEncoder
    from ..sid.views import SidViews

    catalog = Catalog.load(items)
    primary = views.primary
    template = sid_cfg.get("text_template") or default_template(catalog.fields)
    vectors = TextEncoder(sid_cfg.get("embedding_model") or DEFAULT_MODEL).encode(
        catalog.render(template, ids=primary.item_ids), progress=False)
    return SidViews([primary.with_content(vectors), *list(views)[1:]])


def _edit_manifest(bundle: str | Path, change) -> Manifest:
    """Replace an exported bundle's manifest atomically by change(manifest); returns the new one."""
    path = Path(bundle) / MANIFEST
    manifest = change(Manifest.load(path))
    manifest.save(path)
    return manifest


def set_cold_start(bundle: str | Path, settings) -> Manifest:
    """Write cold-start settings (a ColdStartConfig, its dict, or None for off) into an exported
    bundle's manifest, e.g. once they were chosen on validation with the bundle itself
    (eval/cold_start.py). The manifest is replaced atomically; returns it."""
    if settings is not None and not isinstance(settings, ColdStartConfig):
        settings = ColdStartConfig.from_dict(settings)
    return _edit_manifest(bundle, lambda m: replace(
        m, cold_start=replace(m.cold_start, settings=settings)))


def set_transition_weight(bundle: str | Path, weight: float | None) -> Manifest:
    """Write the weight a served answer is re-ordered by its transition counts with
    (runtime/transitions.py; None or 0: off) into an exported bundle's manifest, e.g. once it was
    chosen on validation. The manifest is replaced atomically; returns it. InvalidArgumentError
    when a weight is given to a bundle without a transition table."""
    weight = checked_weight(weight)

    def change(m: Manifest) -> Manifest:
        if weight is not None and m.transitions.file is None:
            raise InvalidArgumentError(f"transition weight {weight!r} for {bundle}, which has no "
                                       "transition table (exported from a checkpoint without "
                                       f"{TRANSITIONS}); expected None")
        return replace(m, transitions=replace(m.transitions, weight=weight))
    return _edit_manifest(bundle, change)


def set_reranker(bundle: str | Path, reranker) -> Manifest:
    """Write the re-ranker (runtime/rerank.py: a Reranker, its dict, or None: off) into an
    exported bundle's manifest, e.g. once it was fitted on validation (eval/rerank.py). The
    manifest is replaced atomically; returns it. InvalidArgumentError for settings this version
    cannot serve, or a re-ranker for a bundle without a transition table (its count features)."""
    if reranker is not None and not isinstance(reranker, Reranker):
        reranker = Reranker.from_dict(reranker)

    def change(m: Manifest) -> Manifest:
        if reranker is not None and m.transitions.file is None:
            raise InvalidArgumentError(f"a re-ranker for {bundle}, which has no transition table "
                                       f"(exported from a checkpoint without {TRANSITIONS}); "
                                       "expected None")
        return replace(m, rerank=reranker)
    return _edit_manifest(bundle, change)


def set_search_views(bundle: str | Path, n: int | None) -> Manifest:
    """Write how many of a multi-view bundle's SID views each request decodes (the first n;
    None: all) into its manifest, e.g. the point chosen on the quality/latency frontier. The
    manifest is replaced atomically; returns it."""
    return _edit_manifest(bundle, lambda m: replace(
        m, search_views=checked_search_views(n, m.sid.views)))


def set_search_beam(bundle: str | Path, beam: int | None) -> Manifest:
    """Write the beam (per view) of a request that names none (None: DEFAULT_BEAM, 20) into an
    exported bundle's manifest: with set_search_views, the serving point chosen where serving
    cost matters. The manifest is replaced atomically; returns it."""
    beam = checked_search_beam(beam)
    return _edit_manifest(bundle, lambda m: replace(m, search_beam=beam))


def set_exclude_history(bundle: str | Path, on: bool) -> Manifest:
    """Write whether every request's own history is kept out of its answer into an exported
    bundle's manifest (fit chooses it on validation). The manifest is replaced atomically;
    returns it."""
    if not isinstance(on, bool):
        raise InvalidArgumentError(f"exclude_history {on!r}; expected True or False")
    return _edit_manifest(bundle, lambda m: replace(m, exclude_history=on))


def set_search_side_beam(bundle: str | Path, beam: int | None) -> Manifest:
    """Write the beam of every SID view after the first (None: the request's beam) into an
    exported bundle's manifest: the first view's beam holds the request's k, the others only
    vote in the fusion, so a narrower one there buys views at less cost (fit's serving points).
    The manifest is replaced atomically; returns it."""
    beam = checked_search_beam(beam)
    return _edit_manifest(bundle, lambda m: replace(m, search_side_beam=beam))
