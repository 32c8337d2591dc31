"""Item text -> vectors as a sharded, resumable job, in one process or many (`sid embed`).

DIR/
  manifest.json    the job: model (and a fingerprint of its files), item text template, catalog
                   fingerprint (the item ids in order and their texts), n_items, shard size, each
                   shard's row range; dim and "complete": true once every shard exists
  shard-00000.npy  float32 (rows, dim): the vectors of catalog rows [start, stop) of shard 0
  item_ids.npy     int64, the catalog's item ids in row order (written when the job completes)

Shard k holds rows [k * shard_size, min((k + 1) * shard_size, n_items)) and is embedded by the
process of rank k % WORLD_SIZE (torchrun sets RANK / WORLD_SIZE / LOCAL_RANK; a plain process is
rank 0 of 1 and does every shard). The shard files are the only coordination: no process group.

Resuming: every file is written under a temporary name and renamed (_io.atomic_file), so a shard
is whole or absent; a restarted job, with any number of processes, keeps the shards that exist and
embeds the rest. A restart whose model, template, catalog or shard size differs from the
manifest's is refused (ResumeMismatchError, naming what differs) rather than mixing vectors.

Completion: after its own shards, each process checks whether every shard exists and, if so,
writes item_ids.npy and the complete manifest (the same bytes whichever process writes them).
Each process checks only after its own renames, so the last to finish sees every shard. Rank 0
also waits (polling the folder) until every shard exists and completes the manifest itself, so
rank 0's exit means the job is done, also where the other ranks run on other nodes.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .._io import atomic_file, read_manifest, write_json
from ..errors import ArtifactError, DataError, InvalidArgumentError, ResumeMismatchError
from .embed import DEFAULT_MODEL, model_fingerprint, resolve_model

FORMAT_NAME = "genrec-lite.embeddings"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ITEM_IDS = "item_ids.npy"
# What makes two runs the same job; a resume must match all of them (dim follows the model).
IDENTITY = (("model", "model"), ("model_fingerprint", "model files"), ("template", "template"),
            ("n_items", "number of items"), ("catalog_fingerprint", "catalog (ids and texts)"),
            ("shard_size", "shard size"))


def shard_name(k: int) -> str:
    return f"shard-{k:05d}.npy"


def catalog_fingerprint(item_ids: np.ndarray, texts: list[str]) -> str:
    """Identity of what the vectors are made from: the item ids in row order and their texts."""
    h = hashlib.sha256(np.ascontiguousarray(item_ids, dtype="<i8").tobytes())
    for t in texts:
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))  # lengths keep ("ab", "c") apart from ("a", "bc")
        h.update(b)
    return h.hexdigest()[:32]


def is_embedding_folder(path) -> bool:
    return (Path(path) / MANIFEST).is_file()


@dataclass
class EmbedReport:
    """What one process did: its rank, device, the items and shards it encoded, the shards it
    found done, its model load and encoding times, and whether the job is complete."""
    rank: int
    world: int
    device: str
    items: int
    shards: int
    kept_shards: int
    load_seconds: float
    encode_seconds: float
    complete: bool
    manifest: dict

    @property
    def items_per_second(self) -> float:
        return self.items / self.encode_seconds if self.encode_seconds > 0 else float("nan")


def _plan(catalog, texts: list[str], model: str, model_path: str, template: str,
          shard_size: int) -> dict:
    n = len(catalog)
    return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
            # a named model is kept by name (it resolves anywhere); a folder by its full path
            "model": model if model == DEFAULT_MODEL else model_path,
            "model_fingerprint": model_fingerprint(model_path),
            "template": template, "n_items": n,
            "catalog_fingerprint": catalog_fingerprint(catalog.item_ids, texts),
            "shard_size": shard_size, "n_shards": -(-n // shard_size), "dim": None,
            "item_ids": ITEM_IDS, "complete": False,
            "shards": [{"file": shard_name(k), "start": a, "stop": min(a + shard_size, n)}
                       for k, a in enumerate(range(0, n, shard_size))]}


def _check_same_job(have: dict, want: dict, folder: Path) -> None:
    diffs = [f"{label}: {have.get(key)!r} there, {want[key]!r} now"
             for key, label in IDENTITY if have.get(key) != want[key]]
    if diffs:
        raise ResumeMismatchError(
            f"{folder} holds vectors of another embedding job ({'; '.join(diffs)}); expected the "
            "same catalog, model, template and shard size to resume it. Give a new --out folder, "
            "or delete this one to start over")


def _write_manifest(folder: Path, manifest: dict) -> None:
    with atomic_file(folder / MANIFEST) as tmp:
        write_json(tmp, manifest)


def _missing(folder: Path, manifest: dict) -> list[int]:
    return [k for k, s in enumerate(manifest["shards"]) if not (folder / s["file"]).is_file()]


def _shard_dim(folder: Path, shard: dict) -> int:
    """The dim of a written shard, after checking its shape against its row range."""
    path = folder / shard["file"]
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise ArtifactError(f"{path} is not a readable .npy array ({exc}); delete it and run "
                            "`sid embed` again to redo that shard") from None
    rows = shard["stop"] - shard["start"]
    if arr.ndim != 2 or arr.shape[0] != rows or arr.dtype != np.float32:
        raise ArtifactError(f"{path} holds a {arr.dtype} array of shape {arr.shape}; expected "
                            f"float32 ({rows}, dim) for rows {shard['start']}..{shard['stop']}; "
                            "delete it and run `sid embed` again to redo that shard")
    return int(arr.shape[1])


def _complete(folder: Path, manifest: dict, item_ids: np.ndarray) -> bool:
    """Write item_ids.npy and the complete manifest if every shard exists; whether it did."""
    if _missing(folder, manifest):
        return False
    dims = {s["file"]: _shard_dim(folder, s) for s in manifest["shards"]}
    if len(set(dims.values())) > 1:
        raise ArtifactError(f"the shards in {folder} have different dims "
                            f"({', '.join(f'{f}: {d}' for f, d in dims.items())}); expected one")
    with atomic_file(folder / ITEM_IDS) as tmp, open(tmp, "wb") as f:
        np.save(f, np.asarray(item_ids, dtype=np.int64))
    _write_manifest(folder, dict(manifest, dim=next(iter(dims.values())), complete=True))
    for stale in folder.glob(".shard-*.tmp"):  # left by a killed process; every shard is done now
        stale.unlink(missing_ok=True)
    return True


def embed_catalog(catalog, out, *, model: str = DEFAULT_MODEL, template: str | None = None,
                  batch_size: int = 64, shard_size: int = 1024, device: str = "auto",
                  use_cache: bool = False, cache_dir=None, poll_seconds: float = 1.0,
                  say: Callable[[str], None] | None = None) -> EmbedReport:
    """Embed this process's share of the catalog's shards into `out` (see the module doc).

    `use_cache` also reads and fills the embedding cache of sid/embed.py (off by default: the
    shards are this job's own store)."""
    from .build import default_template

    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise InvalidArgumentError(f"shard_size={shard_size!r}; expected an integer >= 1")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidArgumentError(f"batch_size={batch_size!r}; expected an integer >= 1")
    if len(catalog) == 0:
        raise InvalidArgumentError("the catalog has no items; expected at least one to embed")
    say = say or (lambda msg: None)
    template = template or default_template(catalog.fields)
    texts = catalog.render(template)
    plan = _plan(catalog, texts, model, resolve_model(model), template, shard_size)
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise InvalidArgumentError(f"--out {str(folder)!r} is a file; expected a folder")
    if is_embedding_folder(folder):
        _check_same_job(read_manifest(folder / MANIFEST, FORMAT_NAME, FORMAT_VERSION), plan, folder)
    elif any(folder.glob("shard-*.npy")):
        raise ResumeMismatchError(f"{folder} holds shard files but no {MANIFEST}, so which job "
                                  "wrote them is unknown; expected a new folder or one written by "
                                  "`sid embed`")
    # device after the cheap checks: a refused resume loads nothing
    from .._devices import rank_device

    rank, world, dev = rank_device(device)
    who = f"rank {rank}/{world}: " if world > 1 else ""
    folder.mkdir(parents=True, exist_ok=True)
    missing = _missing(folder, plan)
    if missing:  # (also when a finished job lost a shard: its manifest is no longer complete)
        _write_manifest(folder, plan)
    mine = [k for k in range(plan["n_shards"]) if k % world == rank]
    todo = [k for k in mine if k in set(missing)]
    load_s = encode_s = 0.0
    items = 0
    if todo:
        from .embed import TextEncoder

        t0 = time.perf_counter()
        encoder = TextEncoder(model, batch_size=batch_size, device=str(dev), use_cache=use_cache,
                              cache_dir=cache_dir)
        dim = encoder.dim  # loads the model, so that its time is not counted as encoding
        load_s = time.perf_counter() - t0
        say(f"{who}{len(todo)} of {len(mine)} shards to embed on {dev} "
            f"(model loaded in {load_s:.1f} s)")
        for k in todo:
            shard = plan["shards"][k]
            t0 = time.perf_counter()
            vecs = encoder.encode(texts[shard["start"]:shard["stop"]], progress=False)
            encode_s += time.perf_counter() - t0
            if vecs.shape != (shard["stop"] - shard["start"], dim):
                raise ArtifactError(f"the encoder returned shape {vecs.shape} for shard {k}; "
                                    f"expected ({shard['stop'] - shard['start']}, {dim})")
            with atomic_file(folder / shard["file"]) as tmp, open(tmp, "wb") as f:
                np.save(f, np.ascontiguousarray(vecs, dtype=np.float32))
            items += len(vecs)
            say(f"{who}shard {k} (rows {shard['start']}..{shard['stop']}) written")
    complete = _complete(folder, plan, catalog.item_ids)
    waited, last_note = 0.0, time.monotonic()
    while rank == 0 and not complete:
        time.sleep(poll_seconds)
        waited += poll_seconds
        complete = _complete(folder, plan, catalog.item_ids)
        if not complete and time.monotonic() - last_note >= 60:
            left = _missing(folder, plan)
            say(f"{who}waiting for {len(left)} shards of the other ranks (first: shard {left[0]}, "
                f"rank {left[0] % world}), {waited:.0f} s so far")
            last_note = time.monotonic()
    manifest = read_manifest(folder / MANIFEST, FORMAT_NAME, FORMAT_VERSION) if complete else plan
    return EmbedReport(rank=rank, world=world, device=str(dev), items=items, shards=len(todo),
                       kept_shards=len(mine) - len(todo), load_seconds=load_s,
                       encode_seconds=encode_s, complete=complete, manifest=manifest)


def read_embeddings(folder) -> tuple[np.ndarray, np.ndarray, dict]:
    """(item_ids, vectors (n, dim) float32, manifest) of a completed `sid embed` folder."""
    folder = Path(folder)
    manifest = read_manifest(folder / MANIFEST, FORMAT_NAME, FORMAT_VERSION)
    missing = _missing(folder, manifest)
    if not manifest.get("complete") or missing:
        done = manifest.get("n_shards", 0) - len(missing)
        raise DataError(f"an unfinished `sid embed` job ({done} of {manifest.get('n_shards')} "
                        "shards written); run the same `sid embed` command again to finish it",
                        path=folder)
    ids_path = folder / manifest["item_ids"]
    try:
        item_ids = np.load(ids_path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise ArtifactError(f"{ids_path} is not a readable .npy array ({exc})") from None
    if item_ids.shape != (manifest["n_items"],):
        raise ArtifactError(f"{ids_path} holds {item_ids.shape} ids; expected "
                            f"({manifest['n_items']},) as the manifest says")
    vectors = np.empty((manifest["n_items"], manifest["dim"]), dtype=np.float32)
    for s in manifest["shards"]:
        if _shard_dim(folder, s) != manifest["dim"]:
            raise ArtifactError(f"{folder / s['file']} does not have the manifest's dim "
                                f"{manifest['dim']}; delete it and run `sid embed` again")
        vectors[s["start"]:s["stop"]] = np.load(folder / s["file"], allow_pickle=False)
    return item_ids.astype(np.int64, copy=False), vectors, manifest


def embedded_with(path) -> dict | None:
    """{"model", "template"} of a `sid embed` folder (the vectors are then text vectors that a
    SID build may record, so that new items can be embedded the same way); None for a file."""
    if not is_embedding_folder(path):
        return None
    m = read_manifest(Path(path) / MANIFEST, FORMAT_NAME, FORMAT_VERSION)
    return {"model": m["model"], "template": m["template"]}
