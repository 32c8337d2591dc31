"""Bad input: every problem is a GenrecError naming the file, the line and the value."""

from __future__ import annotations

import pytest

from genrec_lite.data import Catalog, Dataset, Interactions, UserProfiles, load_cases
from genrec_lite.errors import DataError, GenrecError, InvalidArgumentError, UnknownItemError


def _write(tmp_path, name, content):
    p = tmp_path / name
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_text(content, encoding="utf-8")
    return p


def test_missing_file(tmp_path):
    for load in (Catalog.load, Interactions.load, UserProfiles.load, load_cases):
        with pytest.raises(DataError, match="file not found") as exc:
            load(tmp_path / "nope.jsonl" if load is not Interactions.load
                 else tmp_path / "nope.csv")
        assert "nope." in str(exc.value) and exc.value.path.endswith(
            ("nope.jsonl", "nope.csv"))
    with pytest.raises(DataError, match="data set folder not found"):
        Dataset.load(tmp_path / "nothing")


def test_missing_columns_named_with_what_exists(tmp_path):
    p = _write(tmp_path, "i.csv", "user,item_id,time\nu,1,2\n")
    with pytest.raises(DataError) as exc:
        Interactions.load(p)
    msg = str(exc.value)
    assert str(p) in msg and "'user_id'" in msg and "'timestamp'" in msg
    assert "the file has: 'user', 'item_id', 'time'" in msg
    p = _write(tmp_path, "items.jsonl", '{"id": 1, "title": "x"}\n')
    with pytest.raises(DataError, match=r"missing id field 'item_id' \(the file has: 'id', "
                                        "'title'\\)"):
        Catalog.load(p)
    with pytest.raises(DataError, match="missing field 'brand'"):
        Catalog.load(p, id_field="id", fields=["title", "brand"])


def test_missing_data_set_files(tmp_path):
    _write(tmp_path, "items.jsonl", '{"item_id": 1}\n')
    with pytest.raises(DataError, match=r"no interactions file: expected one of "
                                        r"interactions.csv.*the folder has: items.jsonl"):
        Dataset.load(tmp_path)


def test_duplicate_item_ids(tmp_path):
    p = _write(tmp_path, "items.jsonl",
               '{"item_id": 1, "title": "a"}\n{"item_id": 2}\n{"item_id": 1, "title": "b"}\n')
    with pytest.raises(DataError, match=r"items.jsonl:3: duplicate item id 1 \(first seen on "
                                        r"line 1\)") as exc:
        Catalog.load(p)
    assert exc.value.line == 3 and exc.value.value == 1
    p = _write(tmp_path, "items.csv", "item_id,title\n5,a\n6,b\n6,c\n")
    with pytest.raises(DataError, match=r"items.csv:4: duplicate item id 6"):
        Catalog.load(p)
    p = _write(tmp_path, "users.jsonl", '{"user_id": 1}\n{"user_id": "1"}\n')
    with pytest.raises(DataError, match=r"users.jsonl:2: duplicate user id '1'"):
        UserProfiles.load(p)


def test_unknown_items(tmp_path):
    cat = Catalog.from_records([{"item_id": i, "title": str(i)} for i in range(5)])
    p = _write(tmp_path, "i.csv", "user_id,item_id,timestamp\nu,1,1\nu,9,2\nv,2,3\nv,12,4\n")
    with pytest.raises(UnknownItemError) as exc:
        Interactions.load(p, catalog=cat)
    e = exc.value
    assert e.line == 3 and e.value == 9 and e.path == str(p)
    assert str(e) == f"{p}:3: item id 9 is not in the catalog; 2 rows name items not in the " \
                     "catalog"
    assert isinstance(e, KeyError) and isinstance(e, DataError)
    c = _write(tmp_path, "test.jsonl", '{"user_id": "u", "history": [1, 2], "target": 3}\n'
               '{"user_id": "u", "history": [1, 77], "target": 3}\n')
    with pytest.raises(UnknownItemError, match=r"test.jsonl:2: item id 77 is not in the "
                                               r"catalog"):
        load_cases(c, catalog=cat)
    # a data set folder checks it all
    _write(tmp_path, "items.jsonl", "".join(f'{{"item_id": {i}}}\n' for i in range(5)))
    _write(tmp_path, "interactions.csv", "user_id,item_id,timestamp\nu,1,1\nu,4,2\n")
    with pytest.raises(UnknownItemError, match="item id 77"):
        Dataset.load(tmp_path)


@pytest.mark.parametrize("name", ["items.jsonl", "items.csv", "users.jsonl", "i.csv",
                                  "cases.jsonl"])
def test_empty_files(tmp_path, name):
    p = _write(tmp_path, name, "")
    load = {"items": Catalog.load, "users": UserProfiles.load, "i": Interactions.load,
            "cases": load_cases}[name.split(".")[0]]
    with pytest.raises(DataError, match="empty"):
        load(p)
    if name.endswith(".csv"):
        header = "item_id,title\n" if name.startswith("items") else "user_id,item_id,timestamp\n"
        p = _write(tmp_path, name, header)
        with pytest.raises(DataError, match=r"the file is empty \(no records\)"):
            load(p)


def test_bad_encoding(tmp_path):
    p = _write(tmp_path, "items.jsonl", b'{"item_id": 1, "title": "ok"}\n'
               b'{"item_id": 2, "title": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"items.jsonl:2: the file is not valid UTF-8") as exc:
        Catalog.load(p)
    assert exc.value.line == 2 and exc.value.value == b"\xe9"
    p = _write(tmp_path, "i.csv", b"user_id,item_id,timestamp\nu,1,1\nu,1,1\n\xff\xfe,2,3\n")
    with pytest.raises(DataError, match=r"i.csv:4: the file is not valid UTF-8"):
        Interactions.load(p)
    # a UTF-8 byte-order mark is fine
    p = _write(tmp_path, "bom.csv", b"\xef\xbb\xbfuser_id,item_id,timestamp\nu,1,1\n")
    assert Interactions.load(p).item_ids.tolist() == [1]


def test_malformed_json(tmp_path):
    p = _write(tmp_path, "items.jsonl", '{"item_id": 1}\n\n{"item_id": 2,, }\n')
    with pytest.raises(DataError, match=r"items.jsonl:3: malformed JSON") as exc:
        Catalog.load(p)
    assert exc.value.line == 3
    p = _write(tmp_path, "items2.jsonl", '[1, 2]\n')
    with pytest.raises(DataError, match=r"items2.jsonl:1: expected a JSON object"):
        Catalog.load(p)
    c = _write(tmp_path, "cases.jsonl", '{"user_id": "u", "history": [1], "target": 2}\n'
               '{"user_id": "u", "target": 2}\n')
    with pytest.raises(DataError, match=r"cases.jsonl:2: a case needs .* missing 'history'"):
        load_cases(c)
    c = _write(tmp_path, "cases2.jsonl", '{"user_id": "u", "history": "1 2", "target": 2}\n')
    with pytest.raises(DataError, match=r"cases2.jsonl:1: history must be a list"):
        load_cases(c)


@pytest.mark.parametrize("value", ['"abc"', "1.5", "true", "[1]"])
def test_non_integer_item_ids_jsonl(tmp_path, value):
    p = _write(tmp_path, "items.jsonl", '{"item_id": 1}\n{"item_id": ' + value + "}\n")
    with pytest.raises(DataError, match=r"items.jsonl:2: item id must be an integer, got") \
            as exc:
        Catalog.load(p)
    assert exc.value.line == 2


@pytest.mark.parametrize("record", ['{"item_id": null}', '{"item_id": ""}', '{"title": "x"}'])
def test_missing_item_id_on_one_line(tmp_path, record):
    p = _write(tmp_path, "items.jsonl", '{"item_id": 1}\n' + record + "\n")
    with pytest.raises(DataError, match=r"items.jsonl:2: item id is missing \(column "
                                        r"'item_id'\)"):
        Catalog.load(p)


def test_non_integer_ids_csv_and_cases(tmp_path):
    p = _write(tmp_path, "i.csv", "user_id,item_id,timestamp\nu,1,1\nu,B00X,2\n")
    with pytest.raises(DataError, match=r"i.csv:3: item id must be an integer, got 'B00X'") \
            as exc:
        Interactions.load(p)
    assert exc.value.value == "B00X"
    p = _write(tmp_path, "t.csv", "user_id,item_id,timestamp\nu,1,1\nu,2,yesterday\n")
    with pytest.raises(DataError, match=r"t.csv:3: timestamp must be a number, got "
                                        r"'yesterday'"):
        Interactions.load(p)
    p = _write(tmp_path, "u.csv", "user_id,item_id,timestamp\nu,1,1\n,2,2\n")
    with pytest.raises(DataError, match=r"u.csv:3: user id is empty"):
        Interactions.load(p)
    c = _write(tmp_path, "c.jsonl", '{"user_id": "u", "history": [1, "x"], "target": 2}\n')
    with pytest.raises(DataError, match=r"c.jsonl:1: item id in history must be an integer, "
                                        r"got 'x'"):
        load_cases(c)
    c = _write(tmp_path, "d.jsonl", '{"user_id": "u", "history": [1], "target": 2.5}\n')
    with pytest.raises(DataError, match=r"d.jsonl:1: target must be an integer"):
        load_cases(c)


def test_ragged_csv(tmp_path):
    p = _write(tmp_path, "i.csv", "user_id,item_id,timestamp\nu,1,1\n\nu,2\n")
    with pytest.raises(DataError, match=r"i.csv:4: expected 3 fields .*found 2"):
        Interactions.load(p)
    p = _write(tmp_path, "q.csv", 'item_id,title\n1,"two\nlines"\n2,ok\n2,dup\n')
    with pytest.raises(DataError, match=r"q.csv:5: duplicate item id 2"):
        Catalog.load(p)  # line numbers stay right across a quoted newline


def test_bad_arguments(tmp_path):
    with pytest.raises(InvalidArgumentError, match="unknown format 'xml'"):
        Catalog.load(tmp_path / "x.jsonl", format="xml")
    with pytest.raises(InvalidArgumentError):
        Interactions(["u"], [1.5], [1])
    with pytest.raises(InvalidArgumentError):
        Interactions(["u", "v"], [1], [1])
    # everything above belongs to one family
    assert issubclass(DataError, GenrecError) and issubclass(InvalidArgumentError, GenrecError)
