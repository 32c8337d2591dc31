"""Training: the compact backbone end to end on the synthetic data, exact resume after a kill,
and the same script under torchrun (DDP)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training needs the [train] extra (torch)")
pytest.importorskip("sentence_transformers", reason="item embeddings need sentence-transformers")

from genrec_lite.cli import main  # noqa: E402

TINY = ["--hidden", "48", "--layers", "2", "--heads", "4", "--threads", "1", "--quiet"]


@pytest.fixture(scope="module")
def synthetic_sids(tmp_path_factory):
    out = tmp_path_factory.mktemp("sids") / "sids"
    assert main(["sid", "build", "--out", str(out), "--codebook-size", "64", "--epochs", "150",
                 "--collisions", "extra_level", "--quiet"]) == 0
    return out


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    env["OMP_NUM_THREADS"] = "1"
    return env


def _weights(ckpt: Path, which="last"):
    from safetensors.numpy import load_file

    return load_file(str(ckpt / which / "model" / "model.safetensors"))


def test_train_eval_end_to_end(synthetic_sids, tmp_path, capsys):
    ckpt = tmp_path / "ckpt"
    assert main(["train", "--sids", str(synthetic_sids), "--out", str(ckpt), "--max-steps", "120",
                 "--batch-size", "32", "--eval-cases", "60", "--lr", "3e-3", *TINY]) == 0
    for name in ("genrec.json", "sids/semantic_ids.json", "tokenizer/tokenizer.json", "items.jsonl",
                 "best/model/model.safetensors", "last/trainer_state.pt"):
        assert (ckpt / name).exists(), name
    meta = json.loads((ckpt / "genrec.json").read_text())
    assert meta["backbone"]["kind"] == "compact" and meta["data"]["n_examples"]["next_item"] > 1000
    state = torch.load(ckpt / "last" / "trainer_state.pt", weights_only=True)
    losses = [h["loss"] for h in state["history"]]
    assert state["step"] == 120 and losses
    capsys.readouterr()
    out = tmp_path / "metrics.json"
    assert main(["eval", "--model", str(ckpt), "--out", str(out), "--limit", "80", "--title-search",
                 "--free", "--device", "cpu", "--quiet"]) == 0
    m = json.loads(out.read_text())
    assert {"HR@1", "HR@3", "HR@5", "HR@10", "NDCG@1", "NDCG@3", "NDCG@5", "NDCG@10",
            "n_cases"} <= set(m)
    assert m["n_cases"] == 80 and 0 <= m["NDCG@10"] <= m["HR@10"] <= 1
    assert 0 <= m["free"]["invalid_rate"] <= 1 and 0 <= m["title_to_sid_accuracy"] <= 1


def test_eval_device_choice():
    """`eval --device`: 'auto' takes the GPU only when torch sees one; a device that is not known
    or not there is refused with its name, before any work."""
    from genrec_lite.errors import InvalidArgumentError
    from genrec_lite.train.checkpoint import resolve_device

    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(InvalidArgumentError, match="'tpu'"):
        resolve_device("tpu")
    with pytest.raises(InvalidArgumentError, match="'meta'"):
        resolve_device("meta")
    if not torch.cuda.is_available():
        with pytest.raises(InvalidArgumentError, match="'cuda:0'.*no CUDA GPU"):
            resolve_device("cuda:0")
    else:
        n = torch.cuda.device_count()
        with pytest.raises(InvalidArgumentError, match=f"'cuda:{n}'.*{n} GPU"):
            resolve_device(f"cuda:{n}")


def test_train_device_choice(synthetic_sids, tmp_path, monkeypatch, capsys):
    """`train --device`: a device that is not there is refused, naming it, before anything is
    written; under torchrun a fixed GPU index is refused (every rank would share it)."""
    from genrec_lite.errors import InvalidArgumentError
    from genrec_lite.train.trainer import _init_distributed

    bad = "cuda:0" if not torch.cuda.is_available() else f"cuda:{torch.cuda.device_count()}"
    ckpt = tmp_path / "ckpt"
    assert main(["train", "--sids", str(synthetic_sids), "--out", str(ckpt), "--max-steps", "1",
                 "--device", bad, *TINY]) == 2
    assert f"'{bad}'" in capsys.readouterr().err and not ckpt.exists()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(InvalidArgumentError, match="'cuda:1' under 2 processes.*LOCAL_RANK"):
        _init_distributed("cuda:1")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert _init_distributed("cpu") == (0, 1, torch.device("cpu"))


def test_training_learns_beyond_popularity(synthetic_sids, tmp_path):
    """A few hundred steps of a small model already beat popularity on the synthetic data."""
    from genrec_lite.data import leave_one_out, make_synthetic
    from genrec_lite.eval.metrics import rank_metrics
    from genrec_lite.prompts import PromptSet
    from genrec_lite.train.checkpoint import load_model
    from genrec_lite.train.evaluate import evaluate_cases

    ckpt = tmp_path / "ckpt"
    assert main(["train", "--sids", str(synthetic_sids), "--out", str(ckpt), "--max-steps", "400",
                 "--batch-size", "64", "--eval-cases", "0", "--lr", "3e-3", "--tasks",
                 "next_item=1", "--hidden", "64", "--layers", "2", "--heads", "4", "--quiet"]) == 0
    ds = make_synthetic()
    split = leave_one_out(ds.interactions, max_len=10)
    cases = split.test[:300]
    model, tok, sids, meta = load_model(ckpt)
    m = evaluate_cases(model, tok, sids, cases, PromptSet.load(meta["prompts"]), profiles=ds.profiles)
    counts = np.bincount(np.concatenate(list(split.train.values())))
    top = np.argsort(-counts, kind="stable")[:10].tolist()
    pop = rank_metrics([top] * len(cases), [c.target for c in cases])
    assert m["HR@10"] > pop["HR@10"] + 0.03, (m["HR@10"], pop["HR@10"])


def test_resume_after_kill_is_exact(synthetic_sids, tmp_path):
    args = ["train", "--sids", str(synthetic_sids), "--max-steps", "40", "--save-every", "4",
            "--batch-size", "16", "--eval-cases", "10", "--seed", "3", *TINY]
    full = tmp_path / "full"
    assert main(args + ["--out", str(full)]) == 0

    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "genrec_lite.cli", *args, "--out", str(killed)],
                            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    info = killed / "last" / "info.json"
    while time.time() < deadline and proc.poll() is None:
        if info.exists() and json.loads(info.read_text()).get("step", 0) >= 8:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stopped_at = json.loads(info.read_text())["step"]
    assert 8 <= stopped_at < 40
    assert main(args + ["--out", str(killed)]) == 0  # resumes from last/
    a, b = _weights(full), _weights(killed)
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


class _Trap:
    """Unpickling it touches a file: proof that loading ran code from the pickle."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def test_resume_refuses_another_config_and_a_foreign_state(synthetic_sids, tmp_path, capsys):
    ckpt = tmp_path / "c"
    base = ["train", "--sids", str(synthetic_sids), "--out", str(ckpt), "--eval-cases", "0", *TINY]
    assert main(base + ["--max-steps", "3"]) == 0
    capsys.readouterr()
    assert main(base + ["--max-steps", "5"]) == 2
    assert "another configuration" in capsys.readouterr().err

    # the state this version writes resumes (it loads with weights_only=True), as does a run
    # written before a field existed (the field takes its default) ...
    assert main(base + ["--max-steps", "3"]) == 0
    meta = json.loads((ckpt / "genrec.json").read_text())
    del meta["train"]["eval_backend"]
    (ckpt / "genrec.json").write_text(json.dumps(meta))
    assert main(base + ["--max-steps", "3"]) == 0
    assert main(base + ["--max-steps", "3", "--eval-backend", "runtime"]) == 2
    # ... and one holding an arbitrary pickled object is refused before anything in it runs
    path = ckpt / "last" / "trainer_state.pt"
    state = torch.load(path, weights_only=True)
    marker = tmp_path / "ran"
    torch.save({**state, "config": _Trap(marker)}, path)
    capsys.readouterr()
    assert main(base + ["--max-steps", "3"]) == 2
    err = capsys.readouterr().err
    assert "trainer_state.pt is not a trainer state" in err and "--no-resume" in err
    assert not marker.exists()


@pytest.mark.skipif(shutil.which("torchrun") is None and not Path(sys.executable).with_name(
    "torchrun").exists(), reason="torchrun not found")
def test_same_command_under_torchrun(synthetic_sids, tmp_path):
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    ckpt = tmp_path / "ddp"
    res = subprocess.run([torchrun, "--standalone", "--nproc-per-node", "2", "-m", "genrec_lite.cli",
                          "train", "--sids", str(synthetic_sids), "--out", str(ckpt), "--max-steps",
                          "6", "--batch-size", "8", "--eval-cases", "10", *TINY],
                         env=_env(), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (ckpt / "best" / "model" / "model.safetensors").exists()
    state = torch.load(ckpt / "last" / "trainer_state.pt", weights_only=True)
    assert state["step"] == 6
    # a time budget: the ranks stop at rank 0's step (a rank stopping alone would hang the other
    # in DDP's all-reduce until the timeout)
    res = subprocess.run([torchrun, "--standalone", "--nproc-per-node", "2", "-m", "genrec_lite.cli",
                          "train", "--sids", str(synthetic_sids), "--out", str(tmp_path / "budget"),
                          "--max-steps", "100000", "--epochs", "50", "--max-minutes", "0.003",
                          "--batch-size", "8", "--eval-cases", "10", *TINY],
                         env=_env(), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    state = torch.load(tmp_path / "budget" / "last" / "trainer_state.pt", weights_only=True)
    assert state["step"] > 0 and len(state["history"]) < 50  # stopped by the budget


def test_sequence_examples_cover_every_target_once(synthetic_sids, tmp_path):
    """With a continuation prompt set, one example holds a run of the user's items and every
    training target is labelled exactly once per epoch, with the tokens the prompt would have."""
    from genrec_lite.data import make_synthetic
    from genrec_lite.sid import SemanticIds
    from genrec_lite.train.trainer import TrainConfig, Trainer

    ds = make_synthetic()
    sids = SemanticIds.load(synthetic_sids)
    cfg = TrainConfig(prompts="en-seq", task_weights={"next_item": 1.0}, eval_cases=0,
                      compact={"hidden_size": 32, "num_layers": 1, "num_heads": 2, "num_kv_heads": 2})
    tr = Trainer(ds, sids, tmp_path / "c", cfg, progress=False)
    n_targets = sum(len(s) - 1 for s in tr.split.train.values() if len(s) > 1)
    item_tokens = tr._view_tokens[0]
    sid_of_tokens = {tuple(item_tokens[i]): i for i in item_tokens}
    for epoch in (0, 1):
        pool = tr._sequence_pool(np.random.default_rng([0, epoch]))
        labelled = []
        for ids, labels in pool:
            assert len(ids) == len(labels)
            toks = [t for t in labels if t != -100]
            assert len(toks) % sids.n_levels == 0
            labelled += [sid_of_tokens[tuple(toks[j:j + sids.n_levels])]
                         for j in range(0, len(toks), sids.n_levels)]
        assert len(labelled) == n_targets
        want = sorted(int(i) for s in tr.split.train.values() if len(s) > 1 for i in s[1:])
        assert sorted(labelled) == want
    # the tokens before a target are exactly the tokenised prompt used at inference
    from genrec_lite.prompts import profile_text

    user, seq = next((u, s) for u, s in tr.split.train.items() if len(s) > 4)
    prefix, items = next(p for p in tr._sequences if p[1] == [int(i) for i in seq])
    ids, labels = tr._join(prefix, items[:4], item_tokens, start=3)
    prompt = tr.prompts.next_item_prompt([sids.sid(i) for i in items[:3]],
                                         profile_text(ds.profiles.get(user)))
    first = next(j for j, t in enumerate(labels) if t != -100)
    assert ids[:first] == tr.tok(prompt)["input_ids"]
    assert ids[first:] == item_tokens[items[3]]


def test_split_specs():
    """'leave-one-out:final' trains on each user's validation item and validates on nothing; an
    unknown spec names the value and the choices."""
    from genrec_lite.data import make_split, make_synthetic
    from genrec_lite.errors import InvalidArgumentError
    from genrec_lite.train.trainer import TrainConfig

    ds = make_synthetic()
    tuning, final = (make_split(ds, s, 10) for s in ("leave-one-out", "leave-one-out:final"))
    assert final.valid == [] and final.test == tuning.test
    for c in tuning.valid:
        assert final.train[c.user_id][-1] == c.target
    for bad in ("leave-one-out:last", "temporal:soon", "random"):
        with pytest.raises(InvalidArgumentError, match=f"split '{bad}' is not known.*leave-one-out:final"):
            TrainConfig(split=bad).validate()


def test_compact_vocabulary_is_learnt_from_the_training_texts(synthetic_sids, tmp_path):
    """The compact tokenizer learns from the examples the model trains on: with next-item
    prompts only, title words are not in it (their rows would only widen the output head)."""
    from genrec_lite.data import make_synthetic
    from genrec_lite.sid import SemanticIds
    from genrec_lite.train.trainer import TrainConfig, Trainer

    ds = make_synthetic()
    sids = SemanticIds.load(synthetic_sids)
    small = {"hidden_size": 16, "num_layers": 1, "num_heads": 2, "num_kv_heads": 2}
    nxt = Trainer(ds, sids, tmp_path / "a", TrainConfig(task_weights={"next_item": 1.0},
                                                        compact=small), progress=False)
    both = Trainer(ds, sids, tmp_path / "b", TrainConfig(compact=small), progress=False)
    n_sid = len(sids.vocabulary())
    assert len(nxt.tok) - n_sid < 600 < len(both.tok) - n_sid
    assert nxt.model.get_output_embeddings().weight.shape[0] == len(nxt.tok)
    word = max((w for t in ds.catalog.titles for w in t.split() if w.isalpha()), key=len)
    assert len(both.tok.tokenize(" " + word)) < len(nxt.tok.tokenize(" " + word))


def test_train_states_the_split_it_chose(synthetic_sids, tmp_path, capsys):
    """A folder without case files: `train` resolves the split against the log, prints it in the
    log's terms and records the resolved spec; a split that leaves nothing to train on is refused
    before any work, naming the bound and where the log starts."""
    from genrec_lite.data import make_synthetic

    folder = make_synthetic().save(tmp_path / "data")
    base = ["train", "--data", str(folder), "--sids", str(synthetic_sids), "--max-steps", "2",
            "--eval-cases", "0", *TINY]
    assert main(base + ["--out", str(tmp_path / "a"), "--split", "temporal:last-60d"]) == 0
    err = capsys.readouterr().err
    assert "timestamps are unix seconds" in err
    assert "split: temporal:last-60d -> temporal:" in err and "validation from 2021-" in err
    meta = json.loads((tmp_path / "a" / "genrec.json").read_text())
    assert meta["data"]["split"].startswith("temporal:") and meta["train"]["split"] == \
        meta["data"]["split"]
    assert main(base + ["--out", str(tmp_path / "b"), "--split", "temporal:2000000"]) == 2
    err = capsys.readouterr().err
    assert "leaves no interaction to train on" in err and "2020-01-01" in err
    assert not (tmp_path / "b").exists()


def test_eval_reads_the_log_as_training_did(synthetic_sids, tmp_path, capsys):
    """--kcore and --time-unit are recorded with the model; `eval` without --data reads the
    training log the same way (so it scores the same split's test cases), and an explicit option
    still wins."""
    from genrec_lite.data import make_synthetic

    folder = make_synthetic().save(tmp_path / "data")
    ckpt = tmp_path / "m"
    assert main(["train", "--data", str(folder), "--sids", str(synthetic_sids), "--out", str(ckpt),
                 "--max-steps", "2", "--eval-cases", "0", "--split", "leave-one-out",
                 "--kcore", "4", "--time-unit", "ms", *TINY]) == 0
    data = json.loads((ckpt / "genrec.json").read_text())["data"]
    assert (data["kcore"], data["time_unit"]) == (4, "ms")
    capsys.readouterr()
    args = ["eval", "--model", str(ckpt), "--limit", "3", "--beam", "2", "--quiet"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "4-core: kept" in err and "unix milliseconds" in err
    assert main(args + ["--kcore", "1", "--time-unit", "s"]) == 0
    err = capsys.readouterr().err
    assert "4-core" not in err and "unix seconds" in err


def test_a_budget_shortens_the_schedule_to_end_where_it_ends():
    from genrec_lite.train.trainer import budget_span

    # 100 steps in 60 s of a 120 s budget: about 96 more fit, so a 1,000-step schedule ends at 196
    assert budget_span(100, 100, 60.0, 120.0, 1000, 10) == 196
    assert budget_span(100, 100, 60.0, 1e6, 1000, 10) == 1000  # a budget that fits changes nothing
    # a resumed run paces itself on its own steps: 50 done in 30 s from step 400
    assert budget_span(450, 50, 30.0, 120.0, 1000, 10) == 450 + int((117.6 - 30) / 0.6)
    # never before warm-up ends, never behind the step reached, and no pace yet: unchanged
    assert budget_span(5, 5, 100.0, 101.0, 1000, 50) == 51
    assert budget_span(100, 100, 200.0, 120.0, 1000, 10) == 101
    assert budget_span(0, 0, 0.0, 120.0, 1000, 10) == 1000


def test_runtime_validation_scores_what_the_reference_decoder_does(synthetic_sids, tmp_path,
                                                                   monkeypatch):
    """eval_backend='runtime' validates through the C++ search over an f32 snapshot of the live
    weights: the same metrics as the reference decoder, and nothing left behind."""
    pytest.importorskip("llama_cpp")
    import tempfile
    from dataclasses import replace

    from genrec_lite.data import make_synthetic
    from genrec_lite.errors import InvalidArgumentError
    from genrec_lite.sid import SidViews
    from genrec_lite.train.trainer import SNAPSHOT_WEIGHTS, TrainConfig, Trainer

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    cfg = TrainConfig(prompts="en-seq", task_weights={"next_item": 1.0}, epochs=2, max_steps=150,
                      batch_size=32, lr=3e-3, eval_cases=80, eval_backend="runtime",
                      num_threads=1, compact={"hidden_size": 48, "num_layers": 2,
                                              "num_heads": 4, "num_kv_heads": 4})
    tr = Trainer(make_synthetic(), SidViews.load(synthetic_sids), tmp_path / "ckpt", cfg,
                 progress=False, resume=False, device="cpu")
    res = tr.fit()
    assert res["best"] is not None and "NDCG@10" in res["best"]
    assert all("NDCG@10" in r for r in res["history"])
    assert not (tmp_path / "ckpt" / SNAPSHOT_WEIGHTS).exists() and not list(scratch.iterdir())
    served = tr.validate(tr.model)
    tr._snapshot.close()
    tr.cfg = replace(cfg, eval_backend="reference")
    reference = tr.validate(tr.model)
    assert served["HR@10"] > 0
    for k in ("HR@1", "HR@5", "HR@10", "NDCG@1", "NDCG@5", "NDCG@10"):
        assert served[k] == pytest.approx(reference[k], abs=1e-12), k
    with pytest.raises(InvalidArgumentError, match="eval_backend='torch'"):
        TrainConfig(eval_backend="torch").validate()
