"""Build semantic IDs for a catalog: embed the item text, train the quantiser, assign codes.

Final codes always come from `SidEncoder` (numpy encoder + C++ residual lookup), the same path that
later gives cold-start items their SIDs, so an item re-assigned from its own text gets its own codes.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import InvalidArgumentError
from .collisions import check_mode, extra_level
from .embed import DEFAULT_MODEL
from .encoder import SidEncoder
from .semantic_ids import SemanticIds

METHODS = ("rqvae", "rqkmeans")
# Each known field's segment of the default item text; bracketed parts drop out when their field
# is empty (genrec_lite.data.templates). Fields the catalog lacks are left out of the template.
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
    embedding_model: str = DEFAULT_MODEL
    epochs: int | None = None             # RQ-VAE epochs / RQ-KMeans Lloyd iterations
    rqvae: dict = field(default_factory=dict)  # any other RQVAEConfig field

    def validate(self) -> "SidConfig":
        if self.method not in METHODS:
            raise InvalidArgumentError(f"method {self.method!r} is not known; expected one of {METHODS}")
        check_mode(self.collisions)
        if not 1 <= self.levels <= 8:
            raise InvalidArgumentError(f"levels={self.levels}; expected 1..8")
        if not 2 <= self.codebook_size <= 65536:
            raise InvalidArgumentError(f"codebook_size={self.codebook_size}; expected 2..65536")
        return self


def quantize_vectors(item_ids, vectors: np.ndarray, cfg: SidConfig, *, progress: bool = True,
                     log: list | None = None) -> SemanticIds:
    """Train the quantiser on `vectors` (n, d) and return the SID table for `item_ids`."""
    cfg.validate()
    item_ids = np.asarray(item_ids, dtype=np.int64)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) != len(item_ids) or len(item_ids) == 0:
        raise InvalidArgumentError(
            f"{len(item_ids)} item ids and vectors of shape {vectors.shape}; expected one row per item")
    if not np.isfinite(vectors).all():
        raise InvalidArgumentError("item vectors contain NaN or inf; expected finite numbers")
    t0 = time.perf_counter()
    if cfg.method == "rqvae":
        from .rqvae import RQVAEConfig, config_dict, train_rqvae

        rcfg = RQVAEConfig(levels=cfg.levels, codebook_size=cfg.codebook_size, seed=cfg.seed,
                           **({"epochs": cfg.epochs} if cfg.epochs else {}), **cfg.rqvae)
        model = train_rqvae(vectors, rcfg, progress=progress, log=log)
        encoder = SidEncoder(model.codebooks.detach().numpy(), model.encoder_layers())
        method_cfg = config_dict(rcfg)
    else:
        from .rqkmeans import train_rqkmeans

        iters = cfg.epochs or 100
        books = train_rqkmeans(vectors, levels=cfg.levels, codebook_size=cfg.codebook_size,
                               iters=iters, seed=cfg.seed, progress=progress)
        encoder = SidEncoder(books)
        method_cfg = {"iters": iters}
    train_seconds = time.perf_counter() - t0
    codes = encoder.encode(vectors)
    extra_size = 0
    if cfg.collisions == "extra_level":
        extra = extra_level(codes)
        extra_size = max(int(cfg.extra_level_size or cfg.codebook_size), int(extra.max()) + 1)
        codes = np.concatenate([codes, extra[:, None]], axis=1)
    config = asdict(cfg)
    config.update({"method_config": method_cfg, "train_seconds": round(train_seconds, 2),
                   "input_dim": int(vectors.shape[1])})
    return SemanticIds(item_ids, codes, levels=cfg.levels, codebook_size=cfg.codebook_size,
                       collisions=cfg.collisions, extra_level_size=extra_size, encoder=encoder,
                       config=config)


def build_semantic_ids(catalog, cfg: SidConfig | None = None, *, progress: bool = True,
                       vectors: np.ndarray | None = None, cache_dir=None) -> SemanticIds:
    """Catalog -> text (template) -> embeddings (cached) -> quantiser -> SemanticIds."""
    from .embed import TextEncoder

    cfg = (cfg or SidConfig()).validate()
    if cfg.text_template is None:
        cfg.text_template = default_template(catalog.fields)
    if vectors is None:
        texts = catalog.render(cfg.text_template)
        vectors = TextEncoder(cfg.embedding_model, cache_dir=cache_dir).encode(texts, progress=progress)
    return quantize_vectors(catalog.item_ids, vectors, cfg, progress=progress)
