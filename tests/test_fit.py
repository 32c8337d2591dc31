"""genrec_lite.fit: the tuning / final splits it derives, and the whole procedure on a small
synthetic data set with a grid of two tiny recipes (real training, export, serving)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from genrec_lite.errors import InvalidArgumentError


def _temporal_dataset(tmp_path, with_valid_file: bool):
    """A synthetic data folder (unix-second log); with valid.jsonl holding the events of the
    span's 60-80% (by time) when asked."""
    from genrec_lite.data import make_synthetic, resolve_dataset, resolve_split, temporal_split
    from genrec_lite.data.splits import save_cases

    ds = make_synthetic(n_items=60, n_users=40, seed=1)
    folder = tmp_path / ("with-valid" if with_valid_file else "plain")
    ds.save(folder)
    if with_valid_file:
        plan = resolve_split("temporal:0.6,0.8", ds)
        split = temporal_split(ds.interactions, at=plan.test_from, valid_at=plan.valid_from)
        save_cases(split.valid, folder / "valid.jsonl")
    return resolve_dataset(folder)


def test_tuning_split_trains_before_validation_and_the_final_split_before_test(tmp_path):
    from genrec_lite.data import make_synthetic, resolve_split
    from genrec_lite.data.timestamps import number_text
    from genrec_lite.fit import tuning_split

    ds = make_synthetic(n_items=60, n_users=40, seed=1)
    for given in ("leave-one-out", "leave-one-out:final", "auto"):
        assert tuning_split(resolve_split(given, ds), ds) == ("leave-one-out", "leave-one-out:final")
    plain = _temporal_dataset(tmp_path, with_valid_file=False)
    plan = resolve_split("temporal:0.6,0.8", plain)
    t = number_text(plan.test_from)
    assert tuning_split(plan, plain) == (plan.spec, f"temporal:{t},{t}")
    # one bound and no valid.jsonl: the validation period is a window of the test period's length
    tune, final = tuning_split(resolve_split(f"temporal:{t}", plain), plain)
    assert final == f"temporal:{t},{t}" and tune.endswith(f",{t}") and tune != final
    # one bound and valid.jsonl: validation starts at the first valid case's event
    with_valid = _temporal_dataset(tmp_path, with_valid_file=True)
    tune, final = tuning_split(resolve_split(f"temporal:{t}", with_valid), with_valid)
    v = float(tune[len("temporal:"):].split(",")[0])
    assert plan.valid_from <= v < plan.test_from and final == f"temporal:{t},{t}"
    # the tuning split's validation cases come after its training part; the final split trains
    # on them too
    t_split = resolve_split(tune, with_valid).apply(with_valid, None)
    f_split = resolve_split(final, with_valid).apply(with_valid, None)
    assert t_split.valid and not f_split.valid
    n_tune = sum(len(s) for s in t_split.train.values())
    n_final = sum(len(s) for s in f_split.train.values())
    ts = with_valid.interactions.timestamps
    assert n_tune == int((ts < v).sum()) and n_final == int((ts < plan.test_from).sum())
    assert n_final >= n_tune + len(t_split.valid)


def test_tuning_split_refuses_a_split_without_validation(tmp_path):
    from genrec_lite.data import resolve_split
    from genrec_lite.fit import tuning_split

    plain = _temporal_dataset(tmp_path, with_valid_file=False)
    with pytest.raises(InvalidArgumentError, match="no validation period"):
        tuning_split(resolve_split("temporal:0.8,0.8", plain), plain)


@pytest.mark.parametrize("minutes", [0, -1.0, float("nan")])
def test_fit_refuses_a_budget_it_cannot_use(tmp_path, minutes):
    from genrec_lite.data import make_synthetic
    from genrec_lite.fit import fit

    with pytest.raises(InvalidArgumentError, match="minutes"):
        fit(make_synthetic(n_items=60, n_users=40), tmp_path / "out", minutes=minutes)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kw, match", [
    (dict(points=((2, 10), (1, 20))), "one-view point first"),
    (dict(points=((1, 20), (2, 5))), "beam in 10..256"),
    (dict(points=((1, 20), (1, 20))), "repeats"),
    (dict(points=((1, 20, 3),)), "side beam"),
    (dict(points=((1, 20), (2, 10, 12))), "side beam"),
    (dict(points=((1, 20), (2, 10, 0))), "side beam"),
    (dict(points=((1, 20), (2, 10, 5, 1))), "triples"),
    (dict(points=((1, 20), 3)), "triples"),
    (dict(points=((1.5, 20),)), "views in 1..16"),
    (dict(sid_config={"views": 2}), "views=2"),
])
def test_fit_refuses_bad_serving_points(tmp_path, kw, match):
    from genrec_lite.data import make_synthetic
    from genrec_lite.fit import fit

    with pytest.raises(InvalidArgumentError, match=match):
        fit(make_synthetic(n_items=60, n_users=40), tmp_path / "out", **kw)
    assert not (tmp_path / "out").exists()


def test_choose_point_takes_the_best_within_the_latency_limit():
    from genrec_lite.fit import choose_point

    def row(views, beam, ndcg, ratio, side=None):
        return {"views": views, "beam": beam, "side_beam": side, "NDCG@10": ndcg,
                "vs_reference": ratio}

    rows = [row(1, 20, 0.10, 1.0), row(2, 10, 0.11, 1.4), row(2, 20, 0.12, 2.1)]
    assert choose_point(rows) == (2, 10, None)            # the best one is over the limit
    assert choose_point(rows, limit=2.5) == (2, 20, None)
    assert choose_point(rows, limit=1.2) == (1, 20, None)  # the reference always qualifies
    rows.append(row(3, 10, 0.115, 1.45, side=5))
    assert choose_point(rows) == (3, 10, 5)
    rows[1]["NDCG@10"] = 0.10
    rows.pop()
    assert choose_point(rows) == (1, 20, None)            # a tie goes to the earlier point
    rows[0]["vs_reference"] = float("nan")
    assert choose_point(rows[:1]) == (1, 20, None)


def test_points_after_the_reference_are_timed_with_a_reranker(runtime_bundle, monkeypatch):
    """The shipped bundle carries the re-ranker fit learns later, so the latency limit must
    price it: every timed call of a point but the reference has one, the reference none."""
    from genrec_lite import fit as fit_mod
    from genrec_lite.data import make_synthetic
    from genrec_lite.data.splits import Case
    from genrec_lite.runtime import Recommender

    seen = []
    real = Recommender.recommend_batch

    def spy(self, reqs):
        seen.append((self.search_views, reqs[0]["beam"], self.reranker is not None))
        return real(self, reqs)

    monkeypatch.setattr(Recommender, "recommend_batch", spy)
    ds = make_synthetic()
    cases = [Case("u", (1, 2, 3), 4), Case("v", (5, 6), 7)]
    rows = fit_mod.serving_points({1: runtime_bundle}, ((1, 20), (1, 10)), cases, ds, threads=1,
                                  rounds=1, n_timed=2, more_rounds=0)
    assert [r["timed_calls"] for r in rows] == [2, 2]
    timed = seen[-8:]   # the timing calls come last: 2 rounds (one untimed) x 2 points x 2 cases
    assert {(b, rr) for _, b, rr in timed} == {(20, False), (10, True)}
    assert not any(rr for _, _, rr in seen[:-8])   # the quality rows are the model's alone


def test_near_limit_picks_the_points_a_noisy_timing_could_misplace():
    from genrec_lite.fit import near_limit

    ratios = [1.0, 1.42, 1.44, 1.504, 1.57, 1.58, 2.1]
    assert near_limit(ratios, 1.5, 0.05) == [2, 3, 4]   # within 1.425..1.575
    assert near_limit(ratios, 1.5, 0.0) == []
    assert near_limit([1.0], 1.0, 0.05) == []           # the reference is never re-timed


def test_fit_chooses_on_validation_and_ships_a_served_bundle(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("llama_cpp")
    from genrec_lite.data import make_synthetic
    from genrec_lite.fit import Candidate, fit
    from genrec_lite.runtime import Recommender
    from genrec_lite.train.rl import RLConfig

    ds = make_synthetic(n_items=100, n_users=120, seed=0)
    tiny = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "num_kv_heads": 2}
    grid = (Candidate("history2", dict(max_history=2, epochs=2, batch_size=32, compact=tiny)),
            Candidate("history8", dict(max_history=8, epochs=2, batch_size=32, compact=tiny)))
    said = []
    rl = RLConfig(steps=2, cases_per_step=4, group=4, beam=4, snapshot_every=1, eval_every=1,
                  eval_cases=30, lr=1e-3)
    report = fit(ds, tmp_path / "fit", minutes=30, threads=2, candidates=grid,
                 sid_config={"codebook_size": 16, "epochs": 30}, rl=rl,
                 points=((1, 20), (2, 10), (2, 20), (2, 10, 4)), log=said.append)
    assert report["split"]["tuning"] == "leave-one-out"
    assert report["split"]["final"] == "leave-one-out:final"
    scores = {c["name"]: c["validation"]["NDCG@10"] for c in report["candidates"]}
    assert set(scores) == {"history2", "history8"}
    assert report["chosen"] == max(scores, key=lambda n: (scores[n], n == "history2"))
    assert all(len(c["curve"]) == 2 and not c["stopped_by_budget"] for c in report["candidates"])
    # on a CPU the candidates were validated through the C++ search over snapshots, which leave
    # nothing in their folders
    from genrec_lite.train.trainer import SNAPSHOT_WEIGHTS

    assert report["procedure"]["validation_backend"] == "runtime"
    assert not list((tmp_path / "fit" / "search").glob(f"*/{SNAPSHOT_WEIGHTS}"))
    # the final model is the chosen recipe on the final split, served from OUT/bundle
    final = report["final"]["train"]
    chosen = next(c for c in grid if c.name == report["chosen"])
    assert final["split"] == "leave-one-out:final" and final["eval_cases"] == 0
    assert final["max_history"] == chosen.train["max_history"]
    test = report["test"]
    assert test["n_cases"] == 120 and 0 <= test["genrec-lite"]["HR@10"] <= 1
    assert {"HR@1", "HR@3", "HR@5", "HR@10", "NDCG@1", "NDCG@3", "NDCG@5", "NDCG@10"} <= set(
        test["genrec-lite"])
    # cold start's own account: the same bundle with it off, and the cases whose target is new
    from genrec_lite.data import resolve_split

    final_split = resolve_split("leave-one-out:final", ds).apply(ds, None)
    seen = {int(i) for seq in final_split.train.values() for i in seq}
    new = test["new targets"]
    assert new["n_cases"] == sum(c.target not in seen for c in final_split.test)
    assert ("genrec-lite, cold start off" in test) == (report["cold_start"] is not None)
    if new["n_cases"]:
        assert set(new) - {"n_cases"} == {k for k in ("genrec-lite", "genrec-lite, cold start off",
                                                      "genrec-lite, re-ranker off") if k in test}
    # the re-ranker: cross-validated on validation against the model's order, the bundle serves
    # what was kept, and a kept one is scored without it too
    from genrec_lite.eval.cold_start import MAX_COST
    from genrec_lite.eval.rerank import LAMBDAS, OFFSETS

    rr = report["rerank"]
    kinds = sorted({r["cold"] for r in rr["trials"][1:]})   # warm-only, and joint with cold
    assert kinds[0] == 0 and len(kinds) <= 2
    # the joint kind also tries each cold offset where validation has cold and warm targets
    # (whether it does turns on the cold-start settings chosen, so on the machine's numbers)
    priced = "cold_cases" in rr["trials"][0]
    tried = sorted(OFFSETS) if priced else [0.0]
    assert [(r["lambda"], r["cold"], r["offset"]) for r in rr["trials"]] == [(None, 0, 0.0)] + [
        (lam, c, b) for c in kinds for lam in LAMBDAS for b in (tried if c else [0.0])]
    best = max(rr["trials"][1:], key=lambda r: (r["priced"]["NDCG@10"], r["priced"]["HR@10"]))
    marked = [r for r in rr["trials"] if r.get("chosen")]
    assert (rr["chosen"] is None) == (best["priced"]["NDCG@10"] <=
                                      rr["trials"][0]["priced"]["NDCG@10"]) == (not marked)
    if marked:
        assert len(marked) == 1 and rr["offset"] == marked[0]["offset"]
        assert rr["chosen"].get("cold", 0) == marked[0]["cold"]
        if not priced:   # without cold targets the best trial is kept
            assert marked[0] == best
    # with cold start on, the price is stated against the same stage with it off: a kept trial
    # is within MAX_COST of that reference, or the best trial where none is
    ref = rr["reference"]
    assert (ref is None) == (not priced or report["cold_start"] is None)
    if marked and ref is not None:
        off = rr["trials"][0]["priced"]["NDCG@10"]
        ok = [r for r in rr["trials"][1:] if r["priced"]["NDCG@10"] > off and all(
            r["priced"][k] >= (1 - MAX_COST) * ref[k] for k in ("HR@10", "NDCG@10"))]
        assert marked[0] in ok if ok else marked[0] == best
    assert ("genrec-lite, re-ranker off" in test) == (rr["chosen"] is not None)
    with Recommender.load(tmp_path / "fit" / "bundle", n_threads=1) as rec:
        assert (rec.reranker is None) == (rr["chosen"] is None)
        if rec.reranker is not None:
            assert rec.reranker.to_dict() == rr["chosen"]
        # the history policy: denied only where it scored higher on validation, and served
        hp = report["history_policy"]
        assert hp["exclude_history"] == (hp["denied"]["NDCG@10"] > hp["allowed"]["NDCG@10"])
        assert rec.exclude_history == hp["exclude_history"]
    # the policy was measured on the one-view tuning bundle at the reference point, before the
    # serving points: measured again it is the same, and the reference's serving row is the
    # side it kept (the serving points were scored with the policy in place)
    from genrec_lite.fit import history_policy
    from genrec_lite.train.evaluate import validation_sample

    valid = resolve_split("leave-one-out", ds).apply(ds, None).valid
    sample = validation_sample(valid, report["procedure"]["valid_cases_scored"], 0)
    _, again = history_policy(tmp_path / "fit" / "search" / f"{report['chosen']}-bundle", ds,
                              sample, threads=1)
    assert again == hp
    views_bundle = tmp_path / "fit" / "search" / f"{report['chosen']}-views2-bundle"
    with Recommender.load(views_bundle, n_threads=1) as rec:
        assert rec.exclude_history == hp["exclude_history"]
    ref = report["serving"][0]
    assert {k: ref[k] for k in hp["allowed"]} == hp["denied" if hp["exclude_history"] else "allowed"]
    # a bundle that serves cold start is also scored with it off, on the same cases
    import shutil

    from genrec_lite.export.bundle import set_cold_start
    from genrec_lite.fit import _scored_parts
    from genrec_lite.runtime.cold_start import ColdStartConfig

    shutil.copytree(tmp_path / "fit" / "bundle", tmp_path / "cold-bundle")
    set_cold_start(tmp_path / "cold-bundle", ColdStartConfig(weight=1.0, temperature=0.1))
    mask = np.array([c.target not in seen for c in final_split.test])
    parts = _scored_parts(tmp_path / "cold-bundle", ds, final_split.test, mask, 1)
    assert {"all", "genrec-lite, cold start off", "new targets"} | (
        set() if rr["chosen"] is None else {"genrec-lite, re-ranker off"}) == set(parts)
    if report["cold_start"] is None:  # off is what the fit's own bundle served
        off = parts["genrec-lite, cold start off"]
        assert off["NDCG@10"] == pytest.approx(test["genrec-lite"]["NDCG@10"])
    assert json.loads((tmp_path / "fit" / "report.json").read_text())["chosen"] == report["chosen"]
    assert "(chosen)" in (tmp_path / "fit" / "report.md").read_text()
    with Recommender.load(tmp_path / "fit" / "bundle", n_threads=1) as rec:
        assert rec.bundle.manifest.max_history == chosen.train["max_history"]
        history = next(iter(ds.interactions.sequences().values()))
        assert len(rec.recommend([int(i) for i in history[-3:]])) == 10
    assert any("chosen" in line for line in said)
    # cold start, priced at the final model's cold share, is what the bundle serves with
    from genrec_lite.runtime.cold_start import ColdStartConfig

    proc = report["cold_start_procedure"]
    assert proc["served_cold_items"] == len(np.load(tmp_path / "fit" / "model" /
                                                    "untrained_items.npy"))
    assert 0 <= proc["served_cold_share"] <= 1
    with Recommender.load(tmp_path / "fit" / "bundle", n_threads=1) as rec:
        cold = report["cold_start"]
        assert rec.cold_start == (None if cold is None else ColdStartConfig.from_dict(cold))
    # the serving point: every point scored and timed on validation, the chosen one by the rule,
    # written into the bundle and used for the test metrics
    from genrec_lite.fit import choose_point

    rows = report["serving"]
    assert [(r["views"], r["beam"], r["side_beam"]) for r in rows] == [
        (1, 20, None), (2, 10, None), (2, 20, None), (2, 10, 4)]
    assert rows[0]["vs_reference"] == 1.0 and all(r["p50_ms"] > 0 for r in rows)
    # every point had its rounds; one near the limit had more, and the reference with it
    timing = report["procedure"]["serving"]["timing"]
    base = timing["rounds"] * min(timing["histories"], report["procedure"]["valid_cases_scored"])
    more = timing["more_rounds"] * base // timing["rounds"]
    assert all(r["timed_calls"] in (base, base + more) for r in rows)
    assert (rows[0]["timed_calls"] == base + more) == any(
        r["timed_calls"] > base for r in rows[1:])
    views, beam, side = choose_point(rows)
    assert report["serving_chosen"] == {"views": views, "beam": beam, "side_beam": side}
    assert report["views_model"]["name"] == f"{report['chosen']}-views2"
    # the budget: a candidate's slot each, and for the two-view model (it reads every history
    # twice an epoch) two, or what is left of the search's share where the candidates gave some
    # back
    slot = report["procedure"]["slot_minutes"]
    search = 30 * report["procedure"]["search_share"]
    assert slot == pytest.approx(search / (len(grid) + 2), abs=0.01)
    assert all(c["budget_minutes"] == pytest.approx(slot, abs=0.01) for c in report["candidates"])
    # the final model's budget keeps back its SIDs (priced at the tuning split's) and the rest
    kept = report["final"]["reserved_minutes"]
    assert kept["rest"] == pytest.approx(30 * report["procedure"]["rest_share"], abs=0.01)
    assert kept["sids"] > 0 and (kept["rl"] == 0 or report["rl"]["steps_chosen"] > 0)
    spent = sum(c["minutes"] for c in report["candidates"])
    assert 2 * slot - 0.02 <= report["views_model"]["budget_minutes"] <= search - spent + 0.02
    assert (test["views"], test["beam"], test["side_beam"]) == (views, beam, side)
    assert report["final"]["sid_views"] == views
    with Recommender.load(tmp_path / "fit" / "bundle", n_threads=1) as rec:
        assert (rec.search_views, rec.search_beam, rec.search_side_beam) == (views, beam, side)
    assert "| SID views |" in (tmp_path / "fit" / "report.md").read_text()
    # the timeline: every progress message, in order, with the minutes elapsed
    assert [msg for _, msg in report["timeline"]] == said
    minutes = [m for m, _ in report["timeline"]]
    assert minutes == sorted(minutes) and 0 <= minutes[0] and minutes[-1] <= report["minutes"]
    assert "Timeline" in (tmp_path / "fit" / "report.md").read_text()
    if views > 1:  # RL takes one-view models: skipped, and said so
        assert "skipped" in report["rl"] and report["rl"]["steps_chosen"] == 0
        return
    # RL counted its helpful updates on the tuning model; the final model got that many
    steps = report["rl"]["steps_chosen"]
    assert steps == report["rl"]["tuning"]["best"]["step"] and 0 <= steps <= 2
    assert ("final" in report["rl"]) == (steps > 0)
    if steps:
        assert report["rl"]["final"]["steps"] == steps
    # the ablation: the final model before RL, scored in the same run, only when RL ran
    assert ("genrec-lite before RL" in test) == (steps > 0)
