"""Build semantic IDs for a catalog: embed the item text, train the quantiser, assign codes.

Final codes always come from `SidEncoder` (numpy encoder + C++ residual lookup), the same path that
later gives cold-start items their SIDs, so an item re-assigned from its own text gets its own codes.
"""

from __future__ import annotations

import os
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from typing import Callable, ContextManager

import numpy as np

from ..errors import InvalidArgumentError
from .collisions import check_mode, extra_level
from .embed import DEFAULT_MODEL
from .encoder import SidEncoder, all_finite
from .semantic_ids import SemanticIds
from .views import SidViews

METHODS = ("rqvae", "rqkmeans")
# Items the quantiser trains on at most (a seeded sample of larger catalogs); every item is then
# assigned its codes by the trained encoder. The RQ-VAE's cost is epochs x sample / batch steps,
# so the sample, not the catalog, sets the training time: at this size the default 500 epochs
# are ~8,000 steps. Catalogs up to this size train on every item, exactly as before.
TRAIN_SAMPLE = 16_384
# Each known field's segment of the default item text; bracketed parts drop out when their field
# is empty (genrec_lite.templates). Fields the catalog lacks are left out of the template.
_DEFAULT_SEGMENTS = (("title", "{title}"), ("year", "[ ({year})]"), ("brand", "[. Brand: {brand}]"),
                     ("categories", "[. Category: {categories}]"), ("genres", "[. Genres: {genres}]"),
                     ("description", "[. {description}]"))


def default_template(fields) -> str:
    """The item-text template used when none is given, from the fields a catalog has."""
    present = [(name, seg) for name, seg in _DEFAULT_SEGMENTS if name in set(fields)]
    if not present:
        raise InvalidArgumentError(
            f"the catalog has none of the fields {[n for n, _ in _DEFAULT_SEGMENTS]}; "
            "give an item text template")
    first_name, first_seg = present[0]
    if first_seg.startswith("["):  # no title: the first field leads, plainly
        first_seg = "{" + first_name + "}"
    return first_seg + "".join(seg for _, seg in present[1:])


@dataclass
class SidConfig:
    method: str = "rqvae"
    levels: int = 3
    codebook_size: int = 256
    collisions: str = "none"
    extra_level_size: int | None = None   # capacity of the extra level; default codebook_size
    seed: int = 0
    text_template: str | None = None      # default: default_template(catalog.fields)
    embedding_model: str | None = DEFAULT_MODEL   # None: the vectors were given, not embedded
    epochs: int | None = None             # RQ-VAE epochs / RQ-KMeans Lloyd iterations
    rqvae: dict = field(default_factory=dict)  # any other RQVAEConfig field
    # Collaborative signal (sid/collab.py): weight of the co-occurrence vector joined to the text
    # vector (0: text only), its dimension, and the co-occurrence window in a user's sequence.
    collab_weight: float = 0.0
    collab_dim: int = 64
    collab_window: int = 3
    # Independent builds for a multi-view model (sid/views.py): view v trains its quantiser with
    # seed + v on the same item vectors.
    views: int = 1
    # Train the quantiser on at most this many items (a sample seeded by `seed`, never fewer than
    # codebook_size); None: on every item. See TRAIN_SAMPLE.
    train_sample: int | None = TRAIN_SAMPLE

    def validate(self) -> "SidConfig":
        if self.method not in METHODS:
            raise InvalidArgumentError(f"method {self.method!r} is not known; expected one of {METHODS}")
        check_mode(self.collisions)
        if not 1 <= self.levels <= 8:
            raise InvalidArgumentError(f"levels={self.levels}; expected 1..8")
        if not 2 <= self.codebook_size <= 65536:
            raise InvalidArgumentError(f"codebook_size={self.codebook_size}; expected 2..65536")
        if isinstance(self.views, bool) or not isinstance(self.views, int) or not 1 <= self.views <= 16:
            raise InvalidArgumentError(f"views={self.views!r}; expected an integer in 1..16")
        if self.collab_weight < 0 or self.collab_dim < 1 or self.collab_window < 1:
            raise InvalidArgumentError(
                f"collab_weight={self.collab_weight}, collab_dim={self.collab_dim}, collab_window="
                f"{self.collab_window}; expected weight >= 0, dim >= 1, window >= 1")
        if self.train_sample is not None and (isinstance(self.train_sample, bool) or not isinstance(
                self.train_sample, int) or self.train_sample < 1):
            raise InvalidArgumentError(f"train_sample={self.train_sample!r}; expected None (every "
                                       "item) or a positive integer")
        return self


def training_rows(n: int, cfg: SidConfig) -> np.ndarray | None:
    """Rows (sorted) of the training sample of n items, seeded by cfg.seed, or None when all n
    train. Never fewer rows than codes in a codebook: k-means needs k points to fill k codes."""
    if cfg.train_sample is None:
        return None
    size = max(int(cfg.train_sample), cfg.codebook_size)
    if n <= size:
        return None
    return np.sort(np.random.default_rng(cfg.seed).choice(n, size=size, replace=False))


def train_quantizer(vectors: np.ndarray, cfg: SidConfig, *, progress: bool = True,
                    log: list | None = None) -> tuple[SidEncoder, dict]:
    """(encoder, method config) trained on `vectors` (the training rows only)."""
    if cfg.method == "rqvae":
        from .rqvae import RQVAEConfig, config_dict, train_rqvae

        rcfg = RQVAEConfig(levels=cfg.levels, codebook_size=cfg.codebook_size, seed=cfg.seed,
                           **({"epochs": cfg.epochs} if cfg.epochs else {}), **cfg.rqvae)
        model = train_rqvae(vectors, rcfg, progress=progress, log=log)
        return SidEncoder(model.codebooks.detach().numpy(), model.encoder_layers()), config_dict(rcfg)
    from .rqkmeans import train_rqkmeans

    iters = cfg.epochs or 100
    books = train_rqkmeans(vectors, levels=cfg.levels, codebook_size=cfg.codebook_size,
                           iters=iters, seed=cfg.seed, progress=progress)
    return SidEncoder(books), {"iters": iters}


def encode_threads() -> int:
    """Threads for assigning a whole catalog's codes (the C++ lookup; codes do not depend on it)."""
    try:
        return max(1, min(len(os.sched_getaffinity(0)), 8))
    except AttributeError:  # not Linux
        return max(1, min(os.cpu_count() or 1, 8))


def _no_stage(name: str):
    return nullcontext()


def quantize_vectors(item_ids, vectors: np.ndarray, cfg: SidConfig, *, progress: bool = True,
                     log: list | None = None, input_map: np.ndarray | None = None,
                     stage: Callable[[str], ContextManager] = _no_stage) -> SemanticIds:
    """Train the quantiser on `vectors` (n, d) (on a sample of them: cfg.train_sample) and
    return the SID table for `item_ids`, every item's codes from the trained encoder.

    With `input_map` (e, d), the vectors were made from e-dimensional embeddings (x = emb @ map for
    items without their own extra part, see sid/collab.py): the stored encoder then takes the
    e-dimensional embedding, the map folded into it, so new items need only that. `stage(name)`
    wraps each step (train, assign, collisions) for a caller that measures them."""
    cfg.validate()
    item_ids = np.asarray(item_ids, dtype=np.int64)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) != len(item_ids) or len(item_ids) == 0:
        raise InvalidArgumentError(
            f"{len(item_ids)} item ids and vectors of shape {vectors.shape}; expected one row per item")
    if not all_finite(vectors):
        raise InvalidArgumentError("item vectors contain NaN or inf; expected finite numbers")
    if input_map is not None:
        input_map = np.asarray(input_map, dtype=np.float32)
        if input_map.ndim != 2 or input_map.shape[1] != vectors.shape[1]:
            raise InvalidArgumentError(f"input map of shape {input_map.shape}; expected "
                                       f"(embedding_dim, {vectors.shape[1]})")
    rows = training_rows(len(vectors), cfg)
    t0 = time.perf_counter()
    with stage("train"):
        encoder, method_cfg = train_quantizer(vectors if rows is None else vectors[rows], cfg,
                                              progress=progress, log=log)
    train_seconds = time.perf_counter() - t0
    with stage("assign"):
        codes = encoder.encode(vectors, n_threads=encode_threads())
    input_dim = int(vectors.shape[1])
    if input_map is not None:
        from .collab import fold_input_map

        encoder = SidEncoder(encoder.codebooks, fold_input_map(encoder.layers, input_map))
        input_dim = int(input_map.shape[0])
    extra_size = 0
    if cfg.collisions == "extra_level":
        with stage("collisions"):
            extra = extra_level(codes)
            extra_size = max(int(cfg.extra_level_size or cfg.codebook_size), int(extra.max()) + 1)
            codes = np.concatenate([codes, extra[:, None]], axis=1)
    config = asdict(cfg)
    config.update({"method_config": method_cfg, "train_seconds": round(train_seconds, 2),
                   "input_dim": input_dim, "train_items": len(vectors) if rows is None else len(rows)})
    return SemanticIds(item_ids, codes, levels=cfg.levels, codebook_size=cfg.codebook_size,
                       collisions=cfg.collisions, extra_level_size=extra_size, encoder=encoder,
                       config=config)


def build_semantic_ids(catalog, cfg: SidConfig | None = None, *, progress: bool = True,
                       vectors: np.ndarray | None = None, cache_dir=None,
                       sequences=None) -> SemanticIds:
    """Catalog -> text (template) -> embeddings (cached) -> quantiser -> SemanticIds.

    With `cfg.collab_weight > 0`, `sequences` (each user's items in time order, or a mapping
    user -> sequence; training data only) add a co-occurrence vector to each item's embedding
    (sid/collab.py). One view; `build_sid_views` makes several."""
    cfg = (cfg or SidConfig()).validate()
    if cfg.views != 1:
        raise InvalidArgumentError(f"views={cfg.views}: build_semantic_ids makes one table; use "
                                   "build_sid_views")
    return build_sid_views(catalog, cfg, progress=progress, vectors=vectors, cache_dir=cache_dir,
                           sequences=sequences).primary


def build_sid_views(catalog, cfg: SidConfig | None = None, *, progress: bool = True,
                    vectors: np.ndarray | None = None, cache_dir=None, sequences=None,
                    stage: Callable[[str], ContextManager] = _no_stage) -> SidViews:
    """`cfg.views` SID tables of the catalog (see build_semantic_ids): the item vectors are made
    once, then view v's quantiser trains with seed cfg.seed + v. `stage(name)` wraps each step
    (embed, collab, train, assign, collisions, content) for a caller that measures them."""
    from dataclasses import replace

    from .embed import TextEncoder

    cfg = (cfg or SidConfig()).validate()
    if cfg.text_template is None:
        try:
            cfg.text_template = default_template(catalog.fields)
        except InvalidArgumentError:
            if vectors is None:  # given vectors need no text; a template is only for new items
                raise
    if vectors is None:
        with stage("embed"):
            texts = catalog.render(cfg.text_template)
            vectors = TextEncoder(cfg.embedding_model, cache_dir=cache_dir).encode(
                texts, progress=progress)
    # the items' content vectors come from these vectors, before any collaborative part: new
    # items bring their text (or a vector of the same kind), never their co-occurrences
    text_vectors = np.asarray(vectors, dtype=np.float32)
    input_map, collab_items = None, None
    if cfg.collab_weight > 0:
        from .collab import cooccurrence_vectors, joined_vectors

        if sequences is None:
            raise InvalidArgumentError(f"collab_weight={cfg.collab_weight} needs user sequences "
                                       "(interactions) to learn co-occurrence vectors from; got none")
        with stage("collab"):
            cf, has = cooccurrence_vectors(sequences, catalog.item_ids, dim=cfg.collab_dim,
                                           window=cfg.collab_window)
            vectors, input_map = joined_vectors(np.asarray(vectors), cf, has, cfg.collab_weight)
        collab_items = int(has.sum())
    views = []
    for v in range(cfg.views):
        sids = quantize_vectors(catalog.item_ids, vectors, replace(cfg, seed=cfg.seed + v),
                                progress=progress, input_map=input_map, stage=stage)
        if collab_items is not None:
            sids.config["collab_items"] = collab_items
        if v == 0:  # cold start reads the primary view's (runtime/cold_start.py)
            with stage("content"):
                sids = sids.with_content(text_vectors)
        views.append(sids)
    return SidViews(views)
