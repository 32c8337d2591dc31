"""The `genrec-lite` command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import numpy as np

from . import __version__
from .errors import GenrecError, InvalidArgumentError

_DEBUG = False
N_CTX_HELP = ("KV cells of each llama.cpp context (default 1024); raise it for prompts of "
              "several hundred tokens.")


SPLIT_HELP = ("'auto' (the folder's valid.jsonl / test.jsonl when it has them, else leave-one-out "
              "or a temporal split; printed), 'cases', 'leave-one-out', 'leave-one-out:final' "
              "(train on the validation item too), 'temporal:WHEN' or "
              "'temporal:VALID_FROM,TEST_FROM'; WHEN is a timestamp in the log's unit, an ISO "
              "date (2018-06-01), a period before the log's end (last-7d) or a fraction of its "
              "time span (0.9). See docs/data.md.")


def _log_options(f):
    """--time-unit and --kcore: how to read a data folder's interaction log."""
    from .data.timestamps import TIME_UNITS

    f = click.option("--kcore", default=None, type=click.IntRange(1), metavar="K",
                     help="Keep the log's K-core: drop users and items with fewer than K "
                          "interactions, repeatedly (the catalog and case files stay).")(f)
    return click.option("--time-unit", default="auto", show_default=True,
                        type=click.Choice(TIME_UNITS),
                        help="Unit of numeric timestamps; 'auto' detects unix s/ms/us/ns, else "
                             "'order' (positions, no calendar). ISO-8601 text is read as dates."
                        )(f)


def _load_data(spec: str, time_unit: str, kcore: int | None):
    """The data set of --data (or --items), read as the log options say; says what it holds."""
    from .data import resolve_dataset

    dataset = resolve_dataset(spec, time_unit=time_unit)
    if kcore:
        before = dataset.interactions
        dataset = dataset.kcore(kcore)
        click.echo(f"      {kcore}-core: kept {len(dataset.interactions):,} of {len(before):,} "
                   f"interactions", err=True)
    click.echo(f"      data: {dataset.name}: {dataset.interactions.describe()}", err=True)
    return dataset


def _load_catalog(spec: str):
    """'synthetic', a data folder, or a catalog file (JSONL / CSV / Parquet)."""
    from .data import Catalog, resolve_dataset

    path = Path(spec)
    if spec == "synthetic" or path.is_dir():
        return resolve_dataset(spec).catalog
    return Catalog.load(path)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.version_option(version=__version__, prog_name="genrec-lite")
def cli(debug: bool) -> None:
    """Generative recommendation with semantic IDs.

    \b
    Example:
      genrec-lite sid build --out runs/sids
    """
    global _DEBUG
    _DEBUG = debug


@cli.group()
def sid() -> None:
    """Build semantic IDs for a catalog and assign them to new items."""


@sid.command("build")
@click.option("--items", "items", default="synthetic", show_default=True,
              help="Catalog: 'synthetic' (built-in), a data folder, or a JSONL/CSV/Parquet file.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output directory.")
@click.option("--levels", default=3, show_default=True, type=click.IntRange(1, 8))
@click.option("--codebook-size", default=256, show_default=True, type=click.IntRange(2, 65536))
@click.option("--collisions", default="none", show_default=True,
              type=click.Choice(["none", "extra_level"]))
@click.option("--method", default="rqvae", show_default=True, type=click.Choice(["rqvae", "rqkmeans"]))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--epochs", default=None, type=click.IntRange(1),
              help="RQ-VAE epochs (default 500) or RQ-KMeans iterations (default 100).")
@click.option("--template", default=None,
              help="Item text template, e.g. '{title}[. Brand: {brand}]' (bracketed parts drop out "
                   "when their fields are empty).")
@click.option("--encoder", "encoder", default=None,
              help="Text encoder: all-MiniLM-L6-v2 (default) or a local sentence-transformers folder.")
@click.option("--collab-weight", default=0.0, show_default=True, type=click.FloatRange(0),
              help="Join a co-occurrence vector from the data folder's interactions to each item's "
                   "text vector with this weight (0: text only).")
@click.option("--collab-split", default="auto", show_default=True,
              help="Which interactions the co-occurrence vectors may see: the training part of "
                   "this split (as in `train --split`).")
@click.option("--views", default=1, show_default=True, type=click.IntRange(1, 16),
              help="Independent builds (seeds SEED, SEED+1, ...) for a multi-view model: it learns "
                   "the histories in every view and fuses the views' answers.")
@click.option("--vectors", "vectors_file", default=None, type=click.Path(),
              help="Item vectors you already have, used instead of embedding the item text (the "
                   "text encoder is not loaded): a .npy array whose row i is the catalog's i-th "
                   "item, a Parquet file with item_id and vector columns, or the --out folder of "
                   "`sid embed` (its model and template are recorded, so new items can later be "
                   "embedded from their text the same way).")
@click.option("--train-sample", default=None, type=click.IntRange(0),
              help="Train the quantiser on a seeded sample of at most this many items, then assign "
                   "every item its codes (default 16384; 0: train on every item).")
@_log_options
@click.option("--quiet", is_flag=True, help="No progress bars.")
def sid_build(items, out, levels, codebook_size, collisions, method, seed, epochs, template, encoder,
              collab_weight, collab_split, views, vectors_file, train_sample, time_unit, kcore,
              quiet) -> None:
    """Embed item text, train the quantiser and write the SemanticIds artefact plus report.json.

    \b
    Example:
      genrec-lite sid build --items ../shared/data/amazon-industrial --out runs/sids \\
          --levels 3 --codebook-size 256 --collisions extra_level
    """
    from . import pipeline
    from .sid.build import SidConfig

    dataset = plan = None
    if collab_weight > 0:
        from .data import resolve_split

        if not (items == "synthetic" or Path(items).is_dir()):
            raise InvalidArgumentError(f"--collab-weight {collab_weight} needs interactions: "
                                       f"--items {items!r} is a catalog file; expected a data folder")
        dataset = _load_data(items, time_unit, kcore)   # loaded once: catalog and interactions
        plan = resolve_split(collab_split, dataset)
        click.echo(f"      split for the co-occurrence vectors: {plan.describe()}", err=True)
        catalog = dataset.catalog
    else:
        catalog = _load_catalog(items)
    given = None
    if vectors_file:
        from .sid.given_vectors import load_item_vectors

        given = load_item_vectors(vectors_file, catalog)
        click.echo(f"      vectors: {given.shape[0]:,} x {given.shape[1]} from {vectors_file}",
                   err=True)
    cfg = SidConfig(method=method, levels=levels, codebook_size=codebook_size, collisions=collisions,
                    seed=seed, epochs=epochs, collab_weight=collab_weight, views=views)
    if train_sample is not None:
        cfg.train_sample = train_sample or None
    if template:
        cfg.text_template = template
    if encoder:
        cfg.embedding_model = encoder
    if vectors_file:
        pipeline.sid_config_for_vectors(cfg, vectors_file, template=template, encoder=encoder)
    cfg.validate()
    notes = {"items": str(items)}
    if vectors_file:
        notes["vectors"] = str(vectors_file)
    if collab_weight > 0:
        notes["collab_split"] = plan.spec
    built = pipeline.build_sids(catalog, cfg, dataset=dataset, split=plan, vectors=given,
                                notes=notes, out=out, progress=not quiet)
    for v, sids in enumerate(built):
        rep = sids.report()
        click.echo(f"wrote {out}" + (f" view {v}" if len(built) > 1 else "") +
                   f": {rep['n_items']} items, {rep['n_sids']} distinct SIDs, collision rate "
                   f"{rep['collision_rate']:.4f} (base {rep['base_collision_rate']:.4f}), "
                   f"utilisation {', '.join(f'{u:.3f}' for u in rep['utilization'])}")


@sid.command("embed")
@click.option("--items", "items", required=True,
              help="Catalog: 'synthetic' (built-in), a data folder, or a JSONL/CSV/Parquet file.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder of the vector shards and manifest.json; an unfinished one is resumed.")
@click.option("--model", default="all-MiniLM-L6-v2", show_default=True,
              help="Text encoder: all-MiniLM-L6-v2 or a local sentence-transformers folder.")
@click.option("--template", default=None,
              help="Item text template (default: the one `sid build` uses for the catalog's "
                   "fields).")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(1),
              help="Texts per encoder call.")
@click.option("--shard-size", default=1024, show_default=True, type=click.IntRange(1),
              help="Items per shard file: the unit of resuming and of sharing work between "
                   "processes.")
@click.option("--device", default="auto", show_default=True,
              type=click.Choice(["auto", "cpu", "cuda"]),
              help="'auto': a GPU when torch sees one; under torchrun each process takes the GPU "
                   "of its LOCAL_RANK.")
@click.option("--cache/--no-cache", default=False, show_default=True,
              help="Also read and fill the embedding cache (GENREC_LITE_CACHE) that `sid build` "
                   "uses; the shards are the job's own store either way.")
@click.option("--quiet", is_flag=True, help="No per-shard messages.")
def sid_embed(items, out, model, template, batch_size, shard_size, device, cache, quiet) -> None:
    """Embed the item text into vector shards; resumable, and shared out under torchrun.

    Shard k (items k*SHARD_SIZE onwards) goes to OUT/shard-0000k.npy, written under a temporary
    name and renamed, so a killed job leaves whole shards only; running the same command again
    embeds just the missing ones. A different catalog, model, template or shard size in an
    existing OUT is refused. Under `torchrun --nproc-per-node N` the process of rank r embeds
    the shards k with k % N == r (no process group); OUT/manifest.json says "complete": true
    once every shard exists, which rank 0 waits for. `sid build --vectors OUT` reads the result.

    \b
    Examples:
      genrec-lite sid embed --items ../shared/data/amazon-industrial --out runs/vectors
      torchrun --nproc-per-node 4 -m genrec_lite.cli sid embed --items items.jsonl --out runs/vectors
      genrec-lite sid build --items items.jsonl --vectors runs/vectors --out runs/sids
    """
    from .sid.embed_job import embed_catalog

    catalog = _load_catalog(items)
    say = None if quiet else (lambda msg: click.echo(f"      {msg}", err=True))
    rep = embed_catalog(catalog, out, model=model, template=template, batch_size=batch_size,
                        shard_size=shard_size, device=device, use_cache=cache, say=say)
    who = f"rank {rep.rank}/{rep.world}" if rep.world > 1 else "embedded"
    rate = f", {rep.items_per_second:.1f} items/s" if rep.items else ""
    click.echo(f"{who} ({rep.device}): encoded {rep.items} items in {rep.encode_seconds:.1f} s"
               f"{rate} ({rep.shards} shards, {rep.kept_shards} kept from before; model load "
               f"{rep.load_seconds:.1f} s)", err=True)
    if rep.complete and rep.rank == 0:
        m = rep.manifest
        click.echo(f"wrote {out}: {m['n_items']} items x {m['dim']} in {m['n_shards']} shards "
                   f"({m['model']}, template {m['template']!r})")


@sid.command("assign")
@click.option("--sids", "sids_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Directory written by `sid build`.")
@click.option("--items", "items", required=True, help="New items: a JSONL/CSV/Parquet catalog file.")
@click.option("--out", default=None, type=click.Path(dir_okay=False),
              help="Write item_id/sid as JSONL here instead of printing TSV.")
@click.option("--update", is_flag=True, help="Also add the new items to the SID directory (atomically).")
@click.option("--vectors", "vectors_file", default=None, type=click.Path(exists=True),
              help="The new items' vectors, in the space the SIDs were built from, instead of "
                   "embedding their text (needed when `sid build` was given --vectors from a file): "
                   "a .npy array whose row i is the i-th new item, a Parquet file with item_id and "
                   "vector columns, or a `sid embed` folder.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def sid_assign(sids_dir, items, out, update, vectors_file, quiet) -> None:
    """Give new items SIDs with the trained quantiser (no retraining), from their text or from
    their vectors (--vectors).

    \b
    Examples:
      genrec-lite sid assign --sids runs/sids --items new_items.jsonl
      genrec-lite sid assign --sids runs/sids --items new_items.jsonl --vectors new_vectors.npy
    """
    from .sid import SidViews

    views = SidViews.load(sids_dir)
    sids = views.primary
    from_text = sids.config.get("embedding_model") or not sids.config.get("vectors")
    if not (from_text or vectors_file):
        raise InvalidArgumentError(
            f"the SIDs in {sids_dir} were built from given vectors ({sids.config['vectors']}), "
            "not from text; new items need vectors in that space: expected --vectors (or "
            "Recommender.add_items(items, vectors=...))")
    catalog = _load_catalog(items)
    for item in catalog.item_ids.tolist():
        if item in sids:
            raise GenrecError(f"item id {item} in {items} already has a SID in {sids_dir}; "
                              "expected new items only")
    if vectors_file:
        vectors = _new_item_vectors(vectors_file, catalog, sids, sids_dir)
    else:
        from .sid.embed import TextEncoder

        texts = catalog.render(sids.config.get("text_template", "{title}"))
        vectors = TextEncoder(sids.config.get("embedding_model", "all-MiniLM-L6-v2")).encode(
            texts, progress=not quiet)
    grown = SidViews([s.with_items(catalog.item_ids, vectors) for s in views])
    lines = []
    for n, item in enumerate(catalog.item_ids.tolist()):
        rec = {"item_id": int(item), "sid": grown.primary.format(grown.primary.codes[len(sids) + n])}
        if len(grown) > 1:
            rec["view_sids"] = [g.format(g.codes[len(sids) + n]) for g in grown]
        lines.append(rec)
    if out:
        with open(out, "w", encoding="utf-8") as f:
            for rec in lines:
                f.write(json.dumps(rec) + "\n")
    else:
        for rec in lines:
            click.echo(f"{rec['item_id']}\t{rec['sid']}")
    if update:
        grown.save(sids_dir)


def _new_item_vectors(vectors_file, catalog, sids, sids_dir) -> np.ndarray:
    """`sid assign --vectors`: the new items' vectors, checked against the SIDs' input space."""
    from .sid.embed_job import embedded_with
    from .sid.given_vectors import load_item_vectors

    origin = embedded_with(vectors_file)
    if origin:  # text vectors of `sid embed`: they must come from the model and template the
        # SIDs were built from, or their codes mean nothing
        built = {"model": sids.config.get("embedding_model"),
                 "template": sids.config.get("text_template")}
        diffs = [f"{k} {origin[k]!r} (the SIDs: {built[k]!r})" for k in built
                 if origin[k] != built[k]]
        if diffs:
            raise InvalidArgumentError(f"--vectors {vectors_file} were embedded with "
                                       f"{', '.join(diffs)}; expected the SIDs' model and template")
    vectors = load_item_vectors(vectors_file, catalog)
    want = getattr(sids.encoder, "input_dim", None)
    if want is not None and vectors.shape[1] != want:
        raise InvalidArgumentError(f"--vectors {vectors_file} holds {vectors.shape[1]}-dimensional "
                                   f"vectors, but the SIDs in {sids_dir} take {want}; expected "
                                   "vectors in the space the SIDs were built from")
    return vectors


def _parse_tasks(text: str | None) -> dict | None:
    if not text:
        return None
    out = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        try:
            out[name.strip()] = float(weight)
        except ValueError:
            raise GenrecError(f"--tasks entry {part!r} is not NAME=WEIGHT (e.g. next_item=1)") from None
    return out


@cli.command("train")
@click.option("--data", default="synthetic", show_default=True,
              help="Data folder (../shared/data format) or 'synthetic'.")
@click.option("--sids", "sids_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Directory written by `sid build` for this catalog.")
@click.option("--backbone", default="compact", show_default=True,
              help="'compact' (from scratch), 'smollm2', a Hugging Face model folder or a .gguf file.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Checkpoint directory.")
@click.option("--split", default="auto", show_default=True, help=SPLIT_HELP)
@_log_options
@click.option("--epochs", default=None, type=click.IntRange(1))
@click.option("--batch-size", default=None, type=click.IntRange(1))
@click.option("--lr", default=None, type=float, help="Peak learning rate (default 2e-3 compact, 3e-4 LoRA).")
@click.option("--prompts", default="en", show_default=True, help="'en', 'zh' or a JSON prompt-set file.")
@click.option("--tasks", default=None,
              help="Task weights, e.g. 'next_item=1,sid_to_title=0.5,title_to_sid=0.5'.")
@click.option("--max-history", default=None, type=click.IntRange(1))
@click.option("--warmup", default=None, type=click.FloatRange(0, 0.5),
              help="Learning-rate warm-up, as a fraction of all steps (default 0.03).")
@click.option("--hidden", default=None, type=click.IntRange(16), help="compact: hidden size.")
@click.option("--layers", default=None, type=click.IntRange(1), help="compact: transformer layers.")
@click.option("--heads", default=None, type=click.IntRange(1), help="compact: attention heads.")
@click.option("--dropout", default=None, type=click.FloatRange(0, 0.9), help="compact: dropout.")
@click.option("--lora-r", default=None, type=click.IntRange(1), help="pretrained: LoRA rank.")
@click.option("--max-minutes", default=None, type=float, help="Stop cleanly after this wall time.")
@click.option("--max-steps", default=None, type=click.IntRange(1))
@click.option("--eval-cases", default=None, type=click.IntRange(0), help="Validation sample size.")
@click.option("--eval-backend", default=None, type=click.Choice(["reference", "runtime"]),
              help="Validate with the torch reference decoder (default) or the C++ runtime over "
                   "an f32 snapshot (same metrics, several times faster on a CPU; needs the "
                   "serve extra).")
@click.option("--save-every", default=None, type=click.IntRange(1), help="Steps between last/ saves.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--threads", default=None, type=click.IntRange(1), help="torch CPU threads.")
@click.option("--device", default="auto", show_default=True,
              help="'auto' (a GPU when torch sees one), 'cpu', 'cuda' or 'cuda:N'; under torchrun "
                   "each process takes the GPU of its LOCAL_RANK.")
@click.option("--resume/--no-resume", default=True, show_default=True,
              help="Continue from OUT/last if it exists.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def train_cmd(data, sids_dir, backbone, out, split, time_unit, kcore, epochs, batch_size, lr, prompts, tasks,
              max_history, warmup, hidden, layers, heads, dropout, lora_r, max_minutes, max_steps,
              eval_cases, eval_backend, save_every, seed, threads, device, resume, quiet) -> None:
    """Train a generative recommender on SID histories; keeps the best checkpoint.

    \b
    Example:
      genrec-lite train --data ../shared/data/amazon-industrial --sids runs/amazon-sids \\
          --split temporal:2000000 --out runs/amazon-model
    Multi-process (DDP), same command:
      torchrun --nproc-per-node 4 -m genrec_lite.cli train ...
    """
    from . import pipeline
    from .data import resolve_split
    from .sid import SidViews
    from .train.trainer import TrainConfig

    dataset = _load_data(data, time_unit, kcore)
    plan = resolve_split(split, dataset)
    click.echo(f"      split: {plan.describe()}", err=True)
    cfg = TrainConfig(backbone=backbone, split=plan.spec, prompts=prompts, seed=seed)
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("lr", lr),
                        ("max_history", max_history), ("warmup", warmup), ("max_minutes", max_minutes),
                        ("max_steps", max_steps), ("eval_cases", eval_cases),
                        ("eval_backend", eval_backend),
                        ("save_every", save_every), ("num_threads", threads)):
        if value is not None:
            setattr(cfg, name, value)
    weights = _parse_tasks(tasks)
    if weights is not None:
        cfg.task_weights = weights
    for name, value in (("hidden_size", hidden), ("num_layers", layers), ("num_heads", heads),
                        ("num_kv_heads", heads), ("dropout", dropout)):
        if value is not None:
            cfg.compact[name] = value
    if lora_r is not None:
        cfg.lora["r"] = lora_r
    sids = SidViews.load(sids_dir)
    result = pipeline.train(dataset, sids, out, cfg, progress=not quiet, resume=resume,
                            device=device)
    best = result["best"] or {}
    scores = ", ".join(f"{k}={best[k]:.4f}" for k in ("HR@10", "NDCG@10") if k in best)
    click.echo(f"trained {result['steps']} steps in {result['minutes']} min; "
               + (f"best {scores}" if scores else "no validation, best/ holds the last weights")
               + f"; checkpoint in {out}")


@cli.command("eval")
@click.option("--model", "model_path", required=True, type=click.Path(exists=True, file_okay=False),
              help="A checkpoint written by `genrec-lite train`, or a bundle written by "
                   "`genrec-lite export` (scored through the C++ runtime).")
@click.option("--data", default=None, help="Data folder or 'synthetic' (default: the training data).")
@click.option("--cases", default=None, type=click.Path(exists=True, dir_okay=False),
              help="JSONL cases {user_id, history, target}; default: the data's test cases.")
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="Write metrics JSON here.")
@click.option("--beam", default=None, type=click.IntRange(1),
              help="Beam width; default: 20 for a checkpoint, a bundle's own (its search_beam, "
                   "else 20).")
@click.option("--limit", default=None, type=click.IntRange(1), help="Score only the first N cases.")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(1))
@click.option("--title-search", is_flag=True, help="Also report title -> SID exact-match accuracy.")
@click.option("--free", is_flag=True, help="Also decode without the trie and report invalid outputs.")
@click.option("--device", default="auto", show_default=True,
              help="Checkpoints: 'auto' (the GPU when torch sees one), 'cpu', 'cuda' or 'cuda:N'.")
@click.option("--n-ctx", default=None, type=click.IntRange(1), help="Bundles: " + N_CTX_HELP)
@click.option("--split", default=None,
              help="Without --cases and test.jsonl, score this split's test cases; default: the "
                   "split the model was trained with (as recorded), else auto. " + SPLIT_HELP)
@_log_options
@click.option("--quiet", is_flag=True, help="No progress bars.")
def eval_cmd(model_path, data, cases, out, beam, limit, batch_size, title_search, free, device,
             n_ctx, split, time_unit, kcore, quiet) -> None:
    """HR@K and NDCG@K (K = 1, 3, 5, 10), beam search over real SIDs only.

    \b
    Examples:
      genrec-lite eval --model runs/amazon-model --data ../shared/data/amazon-industrial \\
          --out runs/amazon-metrics.json
      genrec-lite eval --model runs/amazon-bundle --data ../shared/data/amazon-industrial
    """
    if (Path(model_path) / "manifest.json").is_file():
        return _eval_bundle(model_path, data, cases, out, beam, limit, batch_size, n_ctx, quiet,
                            split, time_unit, kcore)
    from . import pipeline

    ckpt = pipeline.load_checkpoint(model_path, device=device)
    tcfg = ckpt.train_config
    log = pipeline.recorded_log(time_unit, kcore, data, ckpt.meta["data"])
    data = data or ckpt.meta["data"].get("path") or "synthetic"
    dataset = _load_data(data, *log)
    chosen = pipeline.test_cases(dataset, split or tcfg["split"], tcfg["max_history"],
                                 cases_file=cases, limit=limit)
    beam = beam or 20
    metrics = pipeline.evaluate_checkpoint(ckpt, dataset, chosen, beam=beam,
                                           batch_size=batch_size, free=free, progress=not quiet)
    if title_search:
        metrics.update(pipeline.title_search(ckpt, dataset.catalog, beam=beam,
                                             batch_size=batch_size, limit=limit))
    _write_metrics(metrics, model_path, data, out)


def _write_metrics(metrics: dict, model_path, data, out) -> None:
    metrics["model"] = str(model_path)
    metrics["data"] = str(data)
    text = json.dumps(metrics, indent=2)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n", encoding="utf-8")
    click.echo(text)


def _eval_bundle(bundle, data, cases, out, beam, limit, batch_size, n_ctx, quiet, split,
                 time_unit, kcore) -> None:
    from . import pipeline
    from .runtime import Recommender

    rec = Recommender.load(bundle, n_ctx=n_ctx)
    m = rec.bundle.manifest
    log = pipeline.recorded_log(time_unit, kcore, data, m.data.to_dict())
    data = data or m.data.path or "synthetic"
    dataset = _load_data(data, *log)
    chosen = pipeline.test_cases(dataset, split or m.data.split or "auto", m.max_history,
                                 cases_file=cases, limit=limit)
    metrics = pipeline.evaluate_recommender(rec, dataset, chosen, beam=beam,
                                            batch_size=batch_size, progress=not quiet)
    _write_metrics(metrics, bundle, data, out)


@cli.command("export")
@click.option("--model", "model_path", required=True, type=click.Path(exists=True, file_okay=False),
              help="A checkpoint written by `genrec-lite train`.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Bundle directory.")
@click.option("--quant", default="f16", show_default=True, type=click.Choice(["f32", "f16", "q8_0"]),
              help="Weight type of model.gguf.")
@click.option("--onnx", "with_onnx", is_flag=True,
              help="Also write model.onnx (the onnxruntime backend, float32).")
@click.option("--weights", default="best", show_default=True, type=click.Choice(["best", "last"]))
@click.option("--cold-start", "cold_start", default=None, metavar="WEIGHT,TEMPERATURE[,HISTORY]",
              help="Cold-start settings chosen on validation (runtime/cold_start.py), or their "
                   "JSON object (with slots, repeat, query); default: off.")
@click.option("--transition-weight", "transition_weight", default=None, type=float,
              metavar="W", help="Re-order each answer by the training log's transition counts "
                                "with this weight (runtime/transitions.py; `fit` chooses it on "
                                "validation); default: off.")
@click.option("--quiet", is_flag=True, help="No progress messages.")
def export_cmd(model_path, out, quant, with_onnx, weights, cold_start, transition_weight,
               quiet) -> None:
    """Write a self-contained serving bundle (atomically: nothing half-written on failure).

    \b
    Example:
      genrec-lite export --model runs/amazon-model --out runs/amazon-bundle --quant q8_0
    """
    from . import pipeline

    say = None if quiet else (lambda msg: click.echo(msg, err=True))
    settings = None
    if cold_start is not None and cold_start.lstrip().startswith("{"):
        try:
            settings = json.loads(cold_start)
        except ValueError as e:
            raise InvalidArgumentError(f"--cold-start {cold_start!r}: not a JSON object ({e})") \
                from None
    elif cold_start is not None:
        parts = cold_start.split(",")
        try:
            if len(parts) not in (2, 3):
                raise ValueError
            settings = {"weight": float(parts[0]), "temperature": float(parts[1]),
                        "history": int(parts[2]) if len(parts) == 3 else 1}
        except ValueError:
            raise InvalidArgumentError(f"--cold-start {cold_start!r}; expected WEIGHT,TEMPERATURE"
                                       "[,HISTORY] (e.g. 0.3,0.03,10)") from None
    m = pipeline.export(model_path, out, quant=quant, onnx=with_onnx, which=weights,
                        cold_start=settings, transition_weight=transition_weight, progress=say)
    click.echo(f"bundle written to {out}: {len(m.files)} files, {m.total_bytes / 2**20:.1f} MiB, "
               f"{m.export_seconds} s")


@cli.command("recommend")
@click.option("--bundle", required=True, type=click.Path(exists=True, file_okay=False),
              help="A bundle written by `genrec-lite export`.")
@click.option("--history", default="", help="Comma-separated item ids, oldest first (may be empty).")
@click.option("--profile", default=None, help="Optional user-profile text.")
@click.option("--k", default=10, show_default=True, type=click.IntRange(1))
@click.option("--beam", default=None, type=click.IntRange(1),
              help="Beam width (per SID view); default: the bundle's (its search_beam, else 20).")
@click.option("--deny", default=None, help="Comma-separated item ids never to recommend.")
@click.option("--threads", default=None, type=click.IntRange(1), help="llama.cpp threads.")
@click.option("--n-ctx", default=None, type=click.IntRange(1), help=N_CTX_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def recommend_cmd(bundle, history, profile, k, beam, deny, threads, n_ctx, as_json) -> None:
    """Recommend the next items for one history, with titles and scores.

    \b
    Example:
      genrec-lite recommend --bundle runs/amazon-bundle --history 12,7,301 --k 5
    """
    from .runtime import Recommender

    def ids(text, what):
        try:
            return [int(x) for x in text.split(",") if x.strip()] if text else []
        except ValueError:
            raise click.BadParameter(f"{text!r}; expected comma-separated item ids", param_hint=what)

    rec = Recommender.load(bundle, n_threads=threads, n_ctx=n_ctx)
    hist = ids(history, "--history")
    recs = rec.recommend(hist, profile, k=k, beam=beam, deny=ids(deny, "--deny") or None)
    if as_json:
        click.echo(json.dumps({"history": hist, "items": [r.to_dict() for r in recs]}, indent=2,
                              ensure_ascii=False))
        return
    state = rec.catalog.state
    for i in hist:
        if i in state.sids:
            click.echo(f"  seen  {i:>8}  {state.sids.sid(i)}  {state.title(i)[:70]}")
    for n, r in enumerate(recs, 1):
        click.echo(f"{n:>4}. {r.item_id:>8}  {r.sid}  {r.score:8.3f}  {r.title[:70]}")


@cli.command("rl")
@click.option("--model", "model_path", required=True, type=click.Path(exists=True, file_okay=False),
              help="The SFT checkpoint (a `train` --out folder, one SID view).")
@click.option("--data", default="synthetic", show_default=True,
              help="The data it was trained on ('synthetic' or a data folder).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="The RL checkpoint.")
@click.option("--steps", default=300, show_default=True, type=click.IntRange(1))
@click.option("--reward", default="ndcg", show_default=True, type=click.Choice(["ndcg", "hit"]))
@click.option("--group", default=16, show_default=True, type=click.IntRange(2),
              help="Candidates per case: the top of the constrained beam (beam 20).")
@click.option("--lr", default=2e-5, show_default=True, type=click.FloatRange(min=0, min_open=True))
@click.option("--kl", default=0.05, show_default=True, type=click.FloatRange(0),
              help="Weight of the KL anchor to the SFT model.")
@click.option("--minutes", default=None, type=click.FloatRange(0.1), help="Wall-clock budget.")
@click.option("--threads", default=None, type=click.IntRange(1), help="CPU threads.")
@click.option("--device", default="auto", show_default=True,
              help="'auto' (a GPU when torch sees one), 'cpu', 'cuda' or 'cuda:N'.")
@click.option("--seed", default=0, show_default=True, type=int)
@_log_options
def rl_cmd(model_path, data, out, steps, reward, group, lr, kl, minutes, threads, device, seed,
           time_unit, kcore) -> None:
    """Group-relative RL after SFT, rollouts from the C++ constrained beam search.

    Keeps the weights of the best validation NDCG@10 (the SFT weights when nothing beats them);
    OUT is a checkpoint to export like any other, OUT/rl.json its curve.

    \b
    Example:
      genrec-lite rl --model runs/amazon-model --data ../shared/data/amazon-industrial \\
          --out runs/amazon-rl --minutes 20
    """
    from .train.rl import RLConfig, rl_finetune

    dataset = _load_data(data, time_unit, kcore)
    cfg = RLConfig(steps=steps, reward=reward, group=group, beam=max(20, group), lr=lr, kl=kl,
                   max_minutes=minutes, threads=threads, seed=seed)
    rep = rl_finetune(model_path, dataset, out, cfg, device=device,
                      log=lambda msg: click.echo(f"      {msg}", err=True))
    click.echo(f"validation NDCG@10 {rep['sft_validation']['NDCG@10']:.4f} (SFT) -> "
               f"{rep['best']['NDCG@10']:.4f} (step {rep['best']['step']} of {rep['steps']}, "
               f"stopped by {rep['stopped_by']}); checkpoint in {out}")


@cli.command("fit")
@click.option("--data", default="synthetic", show_default=True,
              help="'synthetic' (built-in) or a data folder in the ../shared/data format.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Where the SIDs, the candidates, the final model, DIR/bundle and the report go.")
@click.option("--minutes", default=60.0, show_default=True, type=click.FloatRange(0.5),
              help="Budget of the whole procedure (wall clock, roughly).")
@click.option("--split", default="auto", show_default=True, help=SPLIT_HELP)
@click.option("--device", default="auto", show_default=True,
              help="'auto' (a GPU when torch sees one), 'cpu', 'cuda' or 'cuda:N'.")
@click.option("--threads", default=None, type=click.IntRange(1), help="CPU threads.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--rl", "with_rl", is_flag=True,
              help="Also RL after SFT: the updates that help are counted on the tuning model's "
                   "validation (10% of the budget), then given to the final model.")
@click.option("--points", default=None,
              help="Serving points compared on validation, VIEWSxBEAM or VIEWSxBEAM/SIDE (the "
                   "views after the first at beam SIDE), the one-view reference first; the best "
                   "NDCG@10 within 1.5x its p50 is shipped. Default: fit.SERVING_POINTS. '1x20' "
                   "alone trains no multi-view model.")
@_log_options
def fit_cmd(data, out, minutes, split, device, threads, seed, with_rl, points, time_unit,
            kcore) -> None:
    """The production recipe in one command, every choice made on validation.

    Derives a tuning split (training ends where validation begins) from the split, trains each
    candidate recipe of a small grid on it within the budget, keeps the one with the best
    validation NDCG@10, chooses the serving point (SID views x beam: the best validation NDCG@10
    within 1.5x the one-view latency, measured here), chooses cold start on validation, trains
    that recipe on the final split,
    and exports it to OUT/bundle. OUT/report.md and OUT/report.json give the candidates'
    validation curves, the choice and, when the data has test cases, the test metrics of the
    served bundle. The procedure: docs/training.md (genrec_lite.fit).

    \b
    Examples:
      genrec-lite fit --data ../shared/data/amazon-industrial --out runs/fit --minutes 60
    """
    from .fit import fit

    try:
        pairs = None if points is None else tuple(
            tuple(int(x) for x in p.strip().lower().replace("/", "x").split("x"))
            for p in points.split(","))
    except ValueError:
        raise click.BadParameter(f"{points!r}; expected VIEWSxBEAM or VIEWSxBEAM/SIDE points "
                                 "such as 1x20,2x10,3x10/5", param_hint="--points") from None
    dataset = _load_data(data, time_unit, kcore)
    rl = None
    if with_rl:
        from .train.rl import RLConfig

        rl = RLConfig(max_minutes=0.1 * minutes)
    report = fit(dataset, out, minutes=minutes, split=split, device=device, threads=threads,
                 seed=seed, rl=rl, points=pairs,
                 log=lambda msg: click.echo(f"      {msg}", err=True))
    click.echo((Path(out) / "report.md").read_text())
    click.echo(f"bundle in {Path(out) / 'bundle'}; {report['minutes']:g} min")


@cli.command("quickstart")
@click.option("--data", default="synthetic", show_default=True,
              help="'synthetic' (built-in) or a data folder in the ../shared/data format.")
@click.option("--out", default="runs/quickstart", show_default=True, type=click.Path(file_okay=False),
              help="Where the SIDs, checkpoint and bundle go.")
@click.option("--minutes", default=5.0, show_default=True, type=click.FloatRange(0.2),
              help="Training budget (wall clock).")
@click.option("--threads", default=None, type=click.IntRange(1), help="CPU threads.")
@click.option("--collab-weight", default=1.0, show_default=True, type=click.FloatRange(0),
              help="Weight of the co-occurrence vector joined to the text vector before "
                   "quantising (training interactions only); 0: SIDs from text alone.")
@click.option("--views", default=1, show_default=True, type=click.IntRange(1, 16),
              help="SID views (independent builds) the model learns and fuses; each view adds "
                   "the training examples of one.")
@click.option("--split", default="auto", show_default=True, help=SPLIT_HELP)
@_log_options
def quickstart_cmd(data, out, minutes, threads, collab_weight, views, split, time_unit,
                   kcore) -> None:
    """The whole loop in a few minutes: SIDs, training, export, cold start, evaluation.

    A seeded 10% of the items are held out of training entirely, as ads launched after the model
    was trained: after export they are added to the served bundle from their text (add_items),
    the cold-start settings are chosen on the validation cases, and the test cases are scored
    overall and on those whose next item is one of the launched items.

    \b
    Examples:
      genrec-lite quickstart
      genrec-lite quickstart --data ../shared/data/amazon-industrial --minutes 20
    """
    import time

    from . import pipeline
    from .data import resolve_split
    from .eval.metrics import metrics_table

    out = Path(out)
    t0 = time.perf_counter()
    full = _load_data(data, time_unit, kcore)
    step = lambda n, text: click.secho(f"[{n}/5] {text}", bold=True, err=True)  # noqa: E731
    # Resolved on the whole data set, so that the launch below cannot move a cut taken from it.
    plan = resolve_split(split, full)
    click.echo(f"      split: {plan.describe()}", err=True)
    split = plan.spec
    sid_cfg, cfg = pipeline.quickstart_configs(split, minutes, threads,
                                               synthetic=data == "synthetic",
                                               collab_weight=collab_weight, views=views)
    valid, cases = pipeline.held_out_cases(full, plan, cfg.max_history)  # checked before any work
    dataset, launched = pipeline.hold_out_launch(full)
    step(1, f"semantic IDs for {len(dataset.catalog)} items ({full.name}; {len(launched)} more "
            "are held out as items launched after training)")
    sids = pipeline.build_sids(dataset.catalog, sid_cfg, dataset=dataset, split=split,
                               out=out / "sids")
    rep = sids.primary.report()
    click.echo(f"      {sids.n_items} items" + (f", {len(sids)} views" if len(sids) > 1 else "") +
               f", collision rate before the extra level "
               f"{rep.get('base_collision_rate', rep['collision_rate']):.3f}", err=True)
    step(2, f"training the compact backbone for up to {minutes:g} min ({split})")
    pipeline.train(dataset, sids, out / "model", cfg, progress=True, resume=False)
    step(3, "exporting the serving bundle (GGUF + ONNX text encoder)")
    pipeline.export(out / "model", out / "bundle", quant="f16",
                    progress=lambda msg: click.echo(f"      {msg}", err=True))
    step(4, f"launching {len(launched)} new items from their text, choosing cold start and "
            "the re-ranker on validation, evaluating with the C++ runtime")
    rec = pipeline.serve_with_launch(out / "bundle", full.catalog, launched, threads)
    chosen = pipeline.tune_cold_start(rec, out / "bundle", valid,
                                      pipeline.bundle_profiles(rec, full))
    click.echo("      cold start: " + (chosen.describe() if chosen
                                       else "off (on validation no setting ranked the new items "
                                       "better within 1% of the best overall ranking)"
                                       if valid
                                       else "off (the split has no validation cases to choose it on)"),
               err=True)
    reranker, trials = pipeline.tune_reranker(rec, out / "bundle", valid,
                                              pipeline.bundle_profiles(rec, full))
    click.echo("      re-ranker: " + (
        f"kept (validation NDCG@10, cross-validated: {trials[0]['NDCG@10']:.4f} -> "
        f"{next(r for r in trials if r.get('chosen'))['NDCG@10']:.4f})" if reranker is not None
        else "off (it did not rank the validation cases better)" if trials
        else "off (no validation cases or no transition table)"), err=True)
    new = np.isin([c.target for c in cases], launched)
    ours = pipeline.evaluate_recommender(rec, full, cases, progress=True, ranked=(ranked := []))
    rec.set_cold_start(None)
    alone = pipeline.evaluate_recommender(rec, full, cases, ranked=(alone_ranked := []))
    rec.set_cold_start(chosen)
    pop = pipeline.popularity_baseline(dataset, plan, cases)
    click.echo("\n" + metrics_table({"genrec-lite (this run)": ours,
                                     "genrec-lite without cold start": alone, "popularity": pop}))
    click.echo(f"\nlaunched items ({int(new.sum())} of {len(cases)} test cases have one as next "
               f"item): HR@10 {pipeline.hit_rate_where(ranked, cases, new):.4f} (without cold "
               f"start {pipeline.hit_rate_where(alone_ranked, cases, new):.4f}); "
               f"all test cases: HR@10 {ours['HR@10']:.4f}")
    step(5, "a few recommendations")
    state = rec.catalog.state
    for c in cases[:3]:
        click.echo(f"\nuser {c.user_id}:")
        for i in c.history[-5:]:
            click.echo(f"   saw   {state.title(i)[:80]}")
        recs = rec.recommend(c.history, k=5)
        for n, r in enumerate(recs, 1):
            mark = "  <- next item" if r.item_id == c.target else ""
            launch = "  (launched after training)" if r.item_id in set(launched.tolist()) else ""
            click.echo(f"   {n}. {r.title[:80]}  ({r.score:.2f}){mark}{launch}")
    click.echo(f"\ndone in {(time.perf_counter() - t0) / 60:.1f} min; bundle in {out / 'bundle'}; try\n"
               f"  genrec-lite recommend --bundle {out / 'bundle'} --history "
               f"{','.join(str(i) for i in cases[0].history[-3:])}")


def main(argv: list[str] | None = None) -> int:
    """Entry point: GenrecErrors print one clear line (a traceback only with --debug)."""
    try:
        cli.main(args=argv, prog_name="genrec-lite", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code or 0)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except GenrecError as exc:
        if _DEBUG:
            raise
        click.echo(f"error: {exc}", err=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
