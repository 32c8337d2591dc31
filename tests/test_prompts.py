"""Prompt templates are data: built-in English and Chinese sets, files, dicts, and their checks."""

from __future__ import annotations

import json

import pytest

from genrec_lite.errors import InvalidArgumentError
from genrec_lite.prompts import PromptSet, profile_text


def test_english_prompt_with_and_without_profile():
    p = PromptSet.load("en")
    with_profile = p.next_item_prompt(["<a_1><b_2><c_3>", "<a_4><b_5><c_6>"], "age 24, technician")
    assert with_profile == ("The user is age 24, technician. The user has clicked these items in order: "
                            "<a_1><b_2><c_3>, <a_4><b_5><c_6>. Which item will the user click next?")
    assert p.next_item_prompt(["<a_1><b_2><c_3>"]).startswith("The user has clicked")


def test_chinese_prompt_set():
    p = PromptSet.load("zh")
    assert p.next_item_prompt(["<a_1><b_2><c_3>", "<a_4><b_5><c_6>"], "男性") == (
        "该用户为男性。用户已按时间顺序点击了如下商品：<a_1><b_2><c_3>，<a_4><b_5><c_6>，"
        "你能预测用户下一个可能点击的商品吗？")
    assert p.sid_to_title_prompt("<a_1><b_2><c_3>") == "商品<a_1><b_2><c_3>的标题是什么？"
    assert p.title_to_sid_prompt("电钻") == "哪个商品的标题是\"电钻\"？"


def test_prompt_set_from_file_and_dict(tmp_path):
    data = {"next_item": "History: {history} ->", "sid_to_title": "{sid} =", "title_to_sid": "{title} ->",
            "history_separator": " "}
    path = tmp_path / "terse.json"
    path.write_text(json.dumps(data))
    p = PromptSet.load(path)
    assert p.name == "terse" and p.next_item_prompt(["<a_1>", "<a_2>"]) == "History: <a_1> <a_2> ->"
    assert PromptSet.load(data).to_dict()["history_separator"] == " "


def test_prompt_set_errors(tmp_path):
    with pytest.raises(InvalidArgumentError, match="lacks the field"):
        PromptSet.load({"next_item": "no history here", "sid_to_title": "{sid}", "title_to_sid": "{title}"})
    with pytest.raises(InvalidArgumentError, match="unknown keys"):
        PromptSet.load({**PromptSet.load("en").to_dict(), "extra": 1})
    with pytest.raises(InvalidArgumentError, match="neither one of"):
        PromptSet.load("fr")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(InvalidArgumentError, match="not a JSON prompt set"):
        PromptSet.load(bad)


def test_profile_text():
    rec = {"user_id": 3, "age": 23, "gender": "M", "occupation": "writer"}
    assert profile_text(rec) == "age 23, gender M, occupation writer"
    assert profile_text(rec, "a {age}-year-old {occupation}") == "a 23-year-old writer"
    assert profile_text(None) == ""
