"""Large logs without loading them whole: CSV and Parquet read a chunk at a time give what the
whole-file reader gives (users split across chunks included), rows are grouped without a full
sort, and next-item examples made per batch are the ones the materialised path made."""

from __future__ import annotations

import numpy as np
import pytest

from genrec_lite.data import Interactions, _grouping, _readers
from genrec_lite.data.splits import leave_one_out

pytest.importorskip("pyarrow", reason="chunked reading uses pyarrow")


def _log(n=400, users=23, seed=0):
    """Interleaved users, times out of order, same-time events and repeated events."""
    rng = np.random.default_rng(seed)
    u = rng.integers(0, users, n)
    return ([f"u{x}" if x % 3 else str(100 + x) for x in u.tolist()],
            rng.integers(1, 8, n).tolist(), rng.integers(0, 30, n).tolist())


def _whole(path, **kw):
    """The exact reader, forced: every row through read_table."""
    def refuse(*a, **k):
        raise _readers.NotStreamable("test")
    mp = pytest.MonkeyPatch()
    mp.setattr(_readers, "read_chunks", refuse)
    try:
        return Interactions.load(path, **kw)
    finally:
        mp.undo()


def _streamed(path, monkeypatch, **kw):
    """Chunked, with chunks a few rows long; read_table must not be used."""
    monkeypatch.setattr(_readers, "CHUNK_BYTES", 256)
    monkeypatch.setattr(_readers, "CHUNK_ROWS", 7)

    def refuse(*a, **k):
        raise AssertionError("read whole")
    monkeypatch.setattr(_readers, "read_table", refuse)
    got = Interactions.load(path, **kw)
    monkeypatch.undo()
    return got


def _same(a: Interactions, b: Interactions):
    assert a == b and a.users.tolist() == b.users.tolist()
    assert a.duplicates_dropped == b.duplicates_dropped and a.time_unit == b.time_unit
    sa, sb = a.sequences(), b.sequences()
    assert list(sa) == list(sb) and all(sa[u].tolist() == sb[u].tolist() for u in sa)
    assert a.chronological_order().tolist() == b.chronological_order().tolist()


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_chunked_reading_equals_reading_whole(tmp_path, monkeypatch, suffix):
    users, items, times = _log()
    path = Interactions(users, items, times, ratings=[1.5] * len(items)).save(
        tmp_path / f"log.{suffix}")
    for dup in ("keep", "drop"):
        whole = _whole(path, duplicates=dup)
        streamed = _streamed(path, monkeypatch, duplicates=dup)
        _same(streamed, whole)
        assert streamed.ratings.tolist() == whole.ratings.tolist()
    assert whole.duplicates_dropped > 0  # the log has repeats, across chunk boundaries too
    assert whole.user_ids.dtype.kind == "U" and whole.item_ids.dtype == np.int64


def test_chunked_csv_text_times_and_errors(tmp_path, monkeypatch):
    """ISO dates and float times go through the text path chunk by chunk; a bad value in a late
    chunk names its line, as the whole-file reader does."""
    users, items, times = _log(n=120)
    rows = [f"{u},{i},2020-01-{1 + t % 28:02d}T00:00:{t % 60:02d}Z"
            for u, i, t in zip(users, items, times)]
    p = tmp_path / "iso.csv"
    p.write_text("user_id,item_id,timestamp\n" + "\n".join(rows) + "\n")
    _same(_streamed(p, monkeypatch), _whole(p))
    f = tmp_path / "float.csv"
    f.write_text("user_id,item_id,timestamp\n" + "\n".join(
        f"{u},{i},{t}.5" for u, i, t in zip(users, items, times)) + "\n")
    got = _streamed(f, monkeypatch)
    assert got.timestamps.dtype == np.float64
    _same(got, _whole(f))
    bad = tmp_path / "bad.csv"
    bad.write_text("user_id,item_id,timestamp\n" + "a,1,1\n" * 90 + "a,x1,2\n")
    from genrec_lite.errors import DataError

    with pytest.raises(DataError, match=r"bad.csv:92: item id must be an integer, got 'x1'"):
        Interactions.load(bad)


def test_group_order_equals_a_full_sort(monkeypatch):
    monkeypatch.setattr(_grouping, "CHUNK", 5)
    rng = np.random.default_rng(3)
    for trial in range(100):
        n, g = int(rng.integers(0, 50)), int(rng.integers(1, 6))
        codes = rng.integers(0, g, n).astype(np.int32)
        times = rng.integers(0, 4, n) if trial % 2 else np.sort(rng.integers(0, 40, n))
        order, offsets = _grouping.group_order(codes, g, times)
        assert order.tolist() == np.lexsort((np.arange(n), times, codes)).tolist()
        assert offsets.tolist() == [0] + np.cumsum(np.bincount(codes, minlength=g)).tolist()


def _sids(catalog):
    from genrec_lite.sid import SemanticIds
    from genrec_lite.sid.collisions import extra_level

    base = np.random.default_rng(0).integers(0, 16, size=(len(catalog), 3)).astype(np.int32)
    return SemanticIds(catalog.item_ids, np.concatenate([base, extra_level(base)[:, None]], 1),
                       levels=3, codebook_size=16, collisions="extra_level", extra_level_size=64)


@pytest.mark.parametrize("prompts", ["en", "en-seq"])
def test_streamed_examples_equal_the_materialised_ones(tmp_path, prompts):
    """Per epoch, the batches made on the fly hold the examples (and token ids) the materialised
    path made: every next-item case tokenised whole, mixed with the catalog tasks."""
    pytest.importorskip("torch")
    from genrec_lite.data import make_synthetic
    from genrec_lite.train.tasks import mix, next_item_examples
    from genrec_lite.train.trainer import TrainConfig, Trainer

    ds = make_synthetic(n_users=120)
    cfg = TrainConfig(prompts=prompts, eval_cases=0, max_history=4, split="leave-one-out",
                      compact={"hidden_size": 16, "num_layers": 1, "num_heads": 2,
                               "num_kv_heads": 2})
    tr = Trainer(ds, _sids(ds.catalog), tmp_path / "run", cfg, progress=False)
    eos = tr.tok.eos_token_id
    cases = tr.split.train_cases(cfg.max_history)
    examples = next_item_examples(cases, tr.sids, tr.prompts, profiles=ds.profiles)
    assert list(tr.pools["next_item"]) == examples  # the same examples, in the same order

    def encode(pool):
        p = tr.tok([e.prompt for e in pool], add_special_tokens=True)["input_ids"]
        r = tr.tok([e.response for e in pool], add_special_tokens=False)["input_ids"]
        return [(a + b + [eos], [-100] * len(a) + b + [eos]) for a, b in zip(p, r)]

    pools = {t: encode(p) for t, p in tr.pools.items()}
    for epoch in (0, 1):
        streamed = [ex for batch in tr._epoch_batches(epoch) for ex in batch]
        if prompts == "en":
            want = mix(pools, cfg.task_weights, np.random.default_rng([cfg.seed, epoch]))
            assert len(streamed) == len(want)
            assert sorted(map(repr, streamed)) == sorted(map(repr, want))
            lengths = tr.lengths["next_item"]
            assert lengths.tolist() == [len(ids) for ids, _ in pools["next_item"]]
        else:  # every training target labelled once per epoch, catalog tasks as mixed
            targets = sum(len(s) - 1 for s in tr.split.train.values() if len(s) > 1)
            n_sid = tr.sids.n_levels
            labelled = sum(sum(t != -100 for t in lab) for ids, lab in streamed
                           if ids[-1] != eos)  # the pieces (catalog examples end with EOS)
            assert labelled == targets * n_sid


def test_leave_one_out_on_a_streamed_log(tmp_path, monkeypatch):
    users, items, times = _log(n=300, users=17, seed=2)
    path = Interactions(users, items, times).save(tmp_path / "log.parquet")
    a, b = leave_one_out(_streamed(path, monkeypatch), 3), leave_one_out(_whole(path), 3)
    assert a.test == b.test and a.valid == b.valid
    assert {u: s.tolist() for u, s in a.train.items()} == {u: s.tolist() for u, s in b.train.items()}
