"""Catalog: loading, lookup, fields, templates, derived catalogs and round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from genrec_lite.data import Catalog, Template
from genrec_lite.errors import DataError, InvalidArgumentError, UnknownItemError


@pytest.fixture()
def small() -> Catalog:
    return Catalog.from_records([
        {"item_id": 10, "title": "Cordless Drill", "brand": "Acme", "description": "A drill."},
        {"item_id": 3, "title": "Drill Bits", "brand": "", "description": None},
        {"item_id": 7, "title": "Safety Glasses", "brand": "SeeSafe",
         "tags": ["eye", "safety"]},
    ])


def test_real_amazon_catalog(amazon_industrial_dir):
    cat = Catalog.load(amazon_industrial_dir / "items.jsonl")
    assert len(cat) == 3686
    assert cat.fields == ("title", "description", "brand", "categories")
    assert cat.item_ids.dtype == np.int64
    assert cat.item_ids[0] == 0 and cat.index_of(0) == 0
    assert cat.titles[0].startswith("SUPCO SPP6 Relay/Capacitor Hard Start Kit")
    assert cat.record(1)["brand"]  # Stanley staples
    assert all(isinstance(v, str) for v in cat.field("categories"))


def test_real_ml100k_catalog_joins_lists(ml100k_dir):
    cat = Catalog.load(ml100k_dir / "items.jsonl")
    assert len(cat) == 1682
    assert cat.item_ids[0] == 1  # ids start at 1 here
    rec = cat.record(1)
    assert rec == {"item_id": 1, "title": "Toy Story", "year": "1995",
                   "genres": "Animation, Children's, Comedy"}
    assert cat.render("{title} ({year})", ids=[2]) == ["GoldenEye (1995)"]


def test_lookup(small):
    assert small.item_ids.tolist() == [10, 3, 7]
    assert small.index_of(3) == 1
    assert small.indices_of([7, 10, 10]).tolist() == [2, 0, 0]
    assert small.indices_of(np.array([[3], [7]])).tolist() == [[1], [2]]
    assert 10 in small and small.contains(7) and not small.contains(4)
    assert "10" not in small  # ids are ints, text is not looked up
    assert small.contains_all([3, 4]).tolist() == [True, False]
    with pytest.raises(UnknownItemError, match="item id 4 is not in the catalog") as exc:
        small.index_of(4)
    assert exc.value.value == 4
    with pytest.raises(UnknownItemError, match=r"item id 5 .*\(2 of 3 ids unknown\)"):
        small.indices_of([5, 3, 6])
    with pytest.raises(KeyError):  # UnknownItemError is a KeyError too
        small.index_of(99)


def test_fields_are_text(small):
    assert small.fields == ("title", "brand", "description", "tags")
    assert small.field("description") == ["A drill.", "", ""]
    assert small.field("tags") == ["", "", "eye, safety"]
    assert small.record(7) == {"item_id": 7, "title": "Safety Glasses", "brand": "SeeSafe",
                               "description": "", "tags": "eye, safety"}
    with pytest.raises(InvalidArgumentError, match="no field 'colour'.*'title'"):
        small.field("colour")
    cat = Catalog.from_records([{"item_id": 1, "year": 1995.0, "n": float("nan"), "ok": True}])
    assert cat.record(1) == {"item_id": 1, "year": "1995", "n": "", "ok": "true"}


def test_render_and_optional_segments(small):
    out = small.render("{title}.[ Brand: {brand}.] {description}")
    assert out == ["Cordless Drill. Brand: Acme. A drill.", "Drill Bits.",
                   "Safety Glasses. Brand: SeeSafe."]
    # a field that is empty renders as ""; whitespace collapses
    assert small.render("{title}   {brand}") == ["Cordless Drill Acme", "Drill Bits",
                                                 "Safety Glasses SeeSafe"]
    assert small.render("[[{item_id}]] {title:.5}") == ["[10] Cordl", "[3] Drill", "[7] Safet"]
    assert small.render("[Tags: {tags}; brand {brand}]") == [
        "Tags: ; brand Acme", "", "Tags: eye, safety; brand SeeSafe"]
    with pytest.raises(InvalidArgumentError, match="'colour'.*does not have"):
        small.render("{title} in {colour}")


@pytest.mark.parametrize("bad", ["{}", "{0}", "{a.b}", "[x [y]]", "x]", "[x", "{title"])
def test_bad_templates(bad):
    with pytest.raises(InvalidArgumentError):
        Template(bad)


def test_template_any_language_and_no_collapse():
    tpl = Template("用户画像：{age}岁[，职业：{job}]")
    assert tpl.fields == ("age", "job")
    assert tpl.render({"age": "24", "job": "工程师"}) == "用户画像：24岁，职业：工程师"
    assert tpl.render({"age": "24"}) == "用户画像：24岁"
    assert Template("a  {x}\n", collapse_whitespace=False).render({"x": "b"}) == "a  b\n"


def test_subset_concat_extend(small):
    sub = small.subset([7, 10])
    assert sub.item_ids.tolist() == [7, 10] and sub.titles == ["Safety Glasses",
                                                               "Cordless Drill"]
    more = small.extend([{"item_id": 11, "title": "Ear Muffs", "nrr": 31}])
    assert len(more) == 4 and more.record(11)["nrr"] == "31" and more.record(3)["nrr"] == ""
    assert more.index_of(11) == 3
    with pytest.raises(DataError, match="item id 3 is already in the catalog"):
        small.extend([{"item_id": 3, "title": "dup"}])
    with pytest.raises(DataError, match="duplicate item id 3"):
        Catalog.from_records([{"item_id": 3}, {"item_id": 3}])
    assert len(small) == 3  # unchanged


@pytest.mark.parametrize("suffix", ["jsonl", "csv", "parquet"])
def test_round_trip(small, tmp_path, suffix):
    if suffix == "parquet":
        pytest.importorskip("pyarrow", reason="pyarrow is not installed (Parquet is optional)")
    path = small.save(tmp_path / f"items.{suffix}")
    back = Catalog.load(path)
    assert back == small
    assert back.to_records() == small.to_records()


def test_load_options(tmp_path):
    p = tmp_path / "items.csv"
    p.write_text("asin,name,price\n5,Drill,99.5\n6,\"Bits, 20 pc\",\n", encoding="utf-8")
    cat = Catalog.load(p, id_field="asin", fields=["name"])
    assert cat.fields == ("name",) and cat.field("name") == ["Drill", "Bits, 20 pc"]
    assert cat.to_records()[0] == {"item_id": 5, "name": "Drill"}
    # format forced although the suffix says nothing
    q = tmp_path / "items.data"
    q.write_text(json.dumps({"item_id": 1, "title": "x"}) + "\n", encoding="utf-8")
    assert Catalog.load(q, format="jsonl").titles == ["x"]
    with pytest.raises(InvalidArgumentError, match="cannot tell the format"):
        Catalog.load(q)


def test_jsonl_items_with_missing_keys(tmp_path):
    p = tmp_path / "items.jsonl"
    p.write_text('{"item_id": 1, "title": "a"}\n\n{"item_id": 2, "brand": "b"}\n'
                 '{"item_id": 3, "title": "c", "brand": null}\n', encoding="utf-8")
    cat = Catalog.load(p)
    assert cat.fields == ("title", "brand")
    assert cat.field("title") == ["a", "", "c"] and cat.field("brand") == ["", "b", ""]


@given(st.text(alphabet=st.characters(blacklist_characters="{}[]"), max_size=40),
       st.text(max_size=10), st.booleans())
def test_template_property(literal, value, optional):
    """Text without template syntax renders as itself (whitespace collapsed); an optional
    segment appears exactly when its field is non-empty."""
    assert Template(literal).render({}) == " ".join(literal.split())
    seg = "[<{x}>]" if optional else "<{x}>"
    out = Template("a" + seg).render({"x": value})
    if optional and not value:
        assert out == "a"
    else:
        assert out == " ".join(("a<" + value + ">").split())
