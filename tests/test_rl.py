"""RL after SFT (genrec_lite.train.rl): rewards, group-relative advantages, the teacher-forced
SID log-probabilities against the reference decoder's, and a short run end to end on the tiny
synthetic checkpoint (rollouts through the C++ runtime)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")

from genrec_lite.errors import InvalidArgumentError  # noqa: E402


def test_rewards_rank_the_wrong_items_by_the_ndcg_weight_of_their_place():
    from genrec_lite.train.rl import advantages, rewards

    assert rewards([5, 7, 9], 7, "hit").tolist() == [0.0, 1.0, 0.0]
    r = rewards([5, 7, 9, 11], 7, "ndcg")
    assert r[1] == 1.0
    wrong = -r[[0, 2, 3]]
    assert wrong.sum() == pytest.approx(1.0) and wrong[0] > wrong[1] > wrong[2] > 0
    assert wrong[0] / wrong[1] == pytest.approx(np.log2(4) / np.log2(2))
    # no hit: the group still ranks its members (the top wrong item loses most)
    r = rewards([1, 2, 3], 99, "ndcg")
    assert r.sum() == pytest.approx(-1.0) and r[0] < r[1] < r[2] < 0
    a = advantages(r)
    assert a.mean() == pytest.approx(0.0, abs=1e-9) and a.std() == pytest.approx(1.0, abs=1e-4)
    assert advantages(rewards([1, 2, 3], 99, "hit")).tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("change, why", [
    (dict(reward="mrr"), "reward"), (dict(group=1), "group"), (dict(group=8, beam=4), "group"),
    (dict(steps=0), "steps"), (dict(lr=0.0), "lr"), (dict(kl=-1.0), "kl"),
    (dict(eval_every=True), "eval_every")])
def test_rl_config_names_a_bad_setting(change, why):
    from genrec_lite.train.rl import RLConfig

    with pytest.raises(InvalidArgumentError, match=why):
        RLConfig(**change).validate()


def test_sid_logprobs_equal_the_reference_decoders_raw_logprobs(runtime_checkpoint, synthetic_dataset):
    import torch

    from genrec_lite.data import make_split
    from genrec_lite.prompts import PromptSet
    from genrec_lite.train.checkpoint import load_model
    from genrec_lite.train.decode import ReferenceDecoder
    from genrec_lite.train.evaluate import case_prompts
    from genrec_lite.train.rl import sid_logprobs

    model, tok, views, meta = load_model(runtime_checkpoint)
    model.eval()
    sids = views.primary
    cases = make_split(synthetic_dataset, "leave-one-out", 10).valid[:3]
    texts = case_prompts(cases, sids, PromptSet.load(meta["prompts"]), max_history=10)
    recs = ReferenceDecoder(model, tok, sids).recommend(texts, k=5, beam=8)
    pairs = [(t, sids.codes_of(i)) for t, r in zip(texts, recs) for i in r.items]
    toks = [[tok.convert_tokens_to_ids(sids.token(lv, c)) for lv, c in enumerate(s)] for _, s in pairs]
    with torch.no_grad():
        got = sid_logprobs(model, tok, [t for t, _ in pairs], toks, torch.device("cpu")).numpy()
    want = [lp for r in recs for lp in r.logprobs]
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_rl_finetune_keeps_the_best_weights_by_validation(runtime_checkpoint, synthetic_dataset,
                                                          tmp_path):
    pytest.importorskip("llama_cpp")
    from genrec_lite.runtime import Recommender
    from genrec_lite.train.checkpoint import load_model
    from genrec_lite.train.rl import RLConfig, rl_finetune

    cfg = RLConfig(steps=4, cases_per_step=4, group=4, beam=6, snapshot_every=2, eval_every=2,
                   eval_cases=40, patience=5, lr=1e-3, threads=1)
    said = []
    rep = rl_finetune(runtime_checkpoint, synthetic_dataset, tmp_path / "rl", cfg, device="cpu",
                      log=said.append)
    assert [p["step"] for p in rep["curve"]] == [0, 2, 4]
    assert rep["best"]["NDCG@10"] == max(p["NDCG@10"] for p in rep["curve"])
    assert rep["best"]["NDCG@10"] >= rep["sft_validation"]["NDCG@10"]
    assert json.loads((tmp_path / "rl" / "rl.json").read_text())["steps"] == 4
    # lr 1e-3 moves the weights; the saved ones are those of the best validation
    model, _, _, _ = load_model(tmp_path / "rl")
    sft, _, _, _ = load_model(runtime_checkpoint)
    same = all(np.array_equal(a.detach().numpy(), b.detach().numpy())
               for a, b in zip(model.state_dict().values(), sft.state_dict().values()))
    assert same == (rep["best"]["step"] == 0)
    # the RL checkpoint exports and serves like any other
    from genrec_lite.export.bundle import export_bundle

    export_bundle(tmp_path / "rl", tmp_path / "bundle", quant="f16", text_encoder=False)
    with Recommender.load(tmp_path / "bundle", n_threads=1) as rec:
        assert len(rec.recommend([1, 2, 3], k=5)) == 5
    assert len(said) == 3


def test_rl_finetune_keep_last_runs_the_given_updates_without_validation(runtime_checkpoint,
                                                                        synthetic_dataset, tmp_path):
    pytest.importorskip("llama_cpp")
    from genrec_lite.train.checkpoint import load_model
    from genrec_lite.train.rl import RLConfig, rl_finetune

    cfg = RLConfig(steps=3, cases_per_step=4, group=4, beam=4, snapshot_every=3, eval_every=10,
                   lr=1e-3, threads=1)
    rep = rl_finetune(runtime_checkpoint, synthetic_dataset, tmp_path / "rl", cfg, device="cpu",
                      keep="last")
    assert rep["steps"] == 3 and rep["best"] == {"step": 3} and rep["sft_validation"] is None
    assert [p["step"] for p in rep["curve"]] == [0, 3] and "NDCG@10" not in rep["curve"][-1]
    model, _, _, _ = load_model(tmp_path / "rl")
    sft, _, _, _ = load_model(runtime_checkpoint)
    assert not all(np.array_equal(a.detach().numpy(), b.detach().numpy())
                   for a, b in zip(model.state_dict().values(), sft.state_dict().values()))
    with pytest.raises(InvalidArgumentError, match="keep"):
        rl_finetune(runtime_checkpoint, synthetic_dataset, tmp_path / "x", cfg, keep="first")
