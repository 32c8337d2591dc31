"""The bundle manifest (runtime/manifest.py): one typed record that export writes and every
reader loads; old bundles keep loading, and a damaged field is named in the error. No model here:
these are plain JSON files."""

from __future__ import annotations

import copy
import json

import pytest

from genrec_lite.errors import ArtifactError, FormatVersionError
from genrec_lite.runtime.cold_start import ColdStartConfig
from genrec_lite.runtime.manifest import Manifest

# what export wrote before sid.views, data.split and cold_start existed
OLD = {
    "format": "genrec-lite.bundle", "format_version": 1, "created": "2024-01-01T00:00:00Z",
    "checkpoint": {"path": "/runs/ckpt", "weights": "best"},
    "backbone": {"kind": "compact", "config": {"hidden": 64}},
    "model": {"gguf": {"quant": "f16"}, "sid_encoder": {"input_dim": 384}},
    "tokenizer": {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": None, "vocab_size": 900},
    "data": {"name": "synthetic", "path": None},
    "prompts": {"name": "en-seq"}, "max_history": 20, "use_profiles": True,
    "profile_template": None,
    "sid": {"levels": 3, "level_sizes": [64, 64, 64, 8], "collisions": "extra_level",
            "n_items": 500, "text_template": "{title}", "embedding_model": None, "input_dim": 384},
    "files": {"model.gguf": {"bytes": 10, "sha256": "ab"}},
    "versions": {"python": "3.11"}, "export_seconds": 1.5,
}


def _write(tmp_path, d) -> object:
    (tmp_path / "manifest.json").write_text(json.dumps(d))
    return tmp_path


def test_an_old_bundle_loads_with_the_defaults_readers_assumed(tmp_path):
    m = Manifest.load(_write(tmp_path, OLD))
    assert m.sid.views == 1 and m.data.split is None and m.cold_start.items is None
    assert m.cold_start.settings is None and m.max_history == 20 and m.use_profiles
    assert m.files["model.gguf"].bytes == 10 and m.checkpoint.path == "/runs/ckpt"
    assert m.tokenizer.pad_token_id is None and m.model["gguf"]["quant"] == "f16"


def test_round_trip_keeps_every_field(tmp_path):
    d = copy.deepcopy(OLD)
    d["sid"]["views"] = 2
    d["data"].update(split="leave-one-out", time_unit="s", kcore=5)
    d["cold_start"] = {"items": "cold_items.npy", "n_items": 7,
                       "settings": {"weight": 0.3, "temperature": 0.05, "history": 4}}
    d["future_field"] = {"kept": True}  # a newer writer's key survives a rewrite
    m = Manifest.load(_write(tmp_path, d))
    assert m.cold_start.settings == ColdStartConfig(0.3, 0.05, 4)
    assert m.to_dict() == d
    m.save(tmp_path / "again.json")
    assert Manifest.load(tmp_path / "again.json") == m
    assert json.loads((tmp_path / "again.json").read_text()) == d
    order = list(OLD)  # the key order export has always written, cold_start after sid
    order.insert(order.index("sid") + 1, "cold_start")
    assert list(m.to_dict()) == order + ["future_field"]


@pytest.mark.parametrize("edit, key, expected", [
    (lambda d: d.pop("max_history"), "'max_history' is missing", "expected an integer"),
    (lambda d: d.update(max_history="20"), "'max_history' is '20'", "expected an integer"),
    (lambda d: d.update(max_history=0), "'max_history' is 0", "expected >= 1"),
    (lambda d: d.update(max_history=True), "'max_history' is True", "expected an integer"),
    (lambda d: d.pop("sid"), "'sid' is missing", "expected a JSON object"),
    (lambda d: d["sid"].pop("levels"), "'sid.levels' is missing", "expected an integer"),
    (lambda d: d["sid"].update(views="2"), "'sid.views' is '2'", "expected an integer"),
    (lambda d: d["sid"].update(level_sizes=[64, "x"]), "'sid.level_sizes'",
     "expected a list of integers"),
    (lambda d: d["tokenizer"].update(pad_token_id="0"), "'tokenizer.pad_token_id' is '0'",
     "expected an integer or null"),
    (lambda d: d.update(files={}), "'files' lists no files", "expected the bundle's files"),
    (lambda d: d["files"]["model.gguf"].pop("sha256"), "'files.model.gguf.sha256' is missing",
     "expected a string"),
    (lambda d: d["files"].update({"../x": {"bytes": 1, "sha256": "a"}}), "'../x'",
     "expected a path inside the bundle"),
    (lambda d: d.update(cold_start={"settings": {"weight": -1, "temperature": 1}}),
     "'cold_start.settings' is damaged", "expected a finite number > 0"),
    (lambda d: d.update(use_profiles="yes"), "'use_profiles' is 'yes'", "expected true or false"),
    (lambda d: d["data"].update(kcore="5"), "'data.kcore' is '5'", "expected an integer or null"),
])
def test_a_bad_field_is_named(tmp_path, edit, key, expected):
    d = copy.deepcopy(OLD)
    edit(d)
    with pytest.raises(ArtifactError) as err:
        Manifest.load(_write(tmp_path, d))
    msg = str(err.value)
    assert str(tmp_path / "manifest.json") in msg and key in msg and expected in msg, msg


def test_format_and_version_are_checked(tmp_path):
    with pytest.raises(FormatVersionError, match="format version 2"):
        Manifest.load(_write(tmp_path, dict(OLD, format_version=2)))
    with pytest.raises(ArtifactError, match="expected 'genrec-lite.bundle'"):
        Manifest.load(_write(tmp_path, dict(OLD, format="something else")))


def test_a_writer_cannot_save_what_readers_would_refuse(tmp_path):
    from dataclasses import replace

    m = replace(Manifest.load(_write(tmp_path, OLD)), max_history=0)
    with pytest.raises(ArtifactError, match="max_history"):
        m.save(tmp_path / "bad.json")
    assert not (tmp_path / "bad.json").exists()
