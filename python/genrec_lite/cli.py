"""The `genrec-lite` command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from . import __version__
from .errors import GenrecError

_DEBUG = False


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
@click.option("--quiet", is_flag=True, help="No progress bars.")
def sid_build(items, out, levels, codebook_size, collisions, method, seed, epochs, template, encoder,
              quiet) -> None:
    """Embed item text, train the quantiser and write the SemanticIds artefact plus report.json.

    \b
    Example:
      genrec-lite sid build --items ../shared/data/amazon-industrial --out runs/sids \\
          --levels 3 --codebook-size 256 --collisions extra_level
    """
    from .sid.build import SidConfig, build_semantic_ids

    catalog = _load_catalog(items)
    cfg = SidConfig(method=method, levels=levels, codebook_size=codebook_size, collisions=collisions,
                    seed=seed, epochs=epochs)
    if template:
        cfg.text_template = template
    if encoder:
        cfg.embedding_model = encoder
    cfg.validate()
    sids = build_semantic_ids(catalog, cfg, progress=not quiet)
    sids.config["items"] = str(items)
    sids.save(out)
    rep = sids.report()
    click.echo(f"wrote {out}: {rep['n_items']} items, {rep['n_sids']} distinct SIDs, "
               f"collision rate {rep['collision_rate']:.4f} (base {rep['base_collision_rate']:.4f}), "
               f"utilisation {', '.join(f'{u:.3f}' for u in rep['utilization'])}")


@sid.command("assign")
@click.option("--sids", "sids_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Directory written by `sid build`.")
@click.option("--items", "items", required=True, help="New items: a JSONL/CSV/Parquet catalog file.")
@click.option("--out", default=None, type=click.Path(dir_okay=False),
              help="Write item_id/sid as JSONL here instead of printing TSV.")
@click.option("--update", is_flag=True, help="Also add the new items to the SID directory (atomically).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def sid_assign(sids_dir, items, out, update, quiet) -> None:
    """Give new items SIDs with the trained quantiser (no retraining).

    \b
    Example:
      genrec-lite sid assign --sids runs/sids --items new_items.jsonl
    """
    from .sid import SemanticIds
    from .sid.embed import TextEncoder

    sids = SemanticIds.load(sids_dir)
    catalog = _load_catalog(items)
    for item in catalog.item_ids.tolist():
        if item in sids:
            raise GenrecError(f"item id {item} in {items} already has a SID in {sids_dir}; "
                              "expected new items only")
    texts = catalog.render(sids.config.get("text_template", "{title}"))
    vectors = TextEncoder(sids.config.get("embedding_model", "all-MiniLM-L6-v2")).encode(
        texts, progress=not quiet)
    grown = sids.with_items(catalog.item_ids, vectors)
    new_rows = grown.codes[len(sids):]
    lines = [{"item_id": int(i), "sid": grown.format(c)} for i, c in zip(catalog.item_ids, new_rows)]
    if out:
        with open(out, "w", encoding="utf-8") as f:
            for rec in lines:
                f.write(json.dumps(rec) + "\n")
    else:
        for rec in lines:
            click.echo(f"{rec['item_id']}\t{rec['sid']}")
    if update:
        grown.save(sids_dir)


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
