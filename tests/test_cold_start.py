"""Cold start (runtime/cold_start.py, eval/cold_start.py): items the model never trained on are
recommended through a content mass, in the C++ runtime and the reference path alike."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

from genrec_lite.errors import InvalidArgumentError
from genrec_lite.eval.cold_start import (ColdCandidates, choose_cold_start, pick, repeat_rate,
                                        served_cold_share)
from genrec_lite.runtime.cold_start import (ColdStartConfig, content_scores, directions,
                                           history_mass, history_rows, mix,
                                           query_directions, similarities)


# --- the mixing code -------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [dict(weight=0, temperature=0.1), dict(weight=0.1, temperature=-1),
                                 dict(weight=float("nan"), temperature=0.1),
                                 dict(weight=True, temperature=0.1), dict(weight="1", temperature=1)])
def test_settings_are_checked(bad):
    with pytest.raises(InvalidArgumentError, match="cold start"):
        ColdStartConfig(**bad)
    with pytest.raises(InvalidArgumentError, match="expected"):
        ColdStartConfig.from_dict({"rate": 0.1, "temperature": 0.1})
    with pytest.raises(InvalidArgumentError, match="expected"):
        ColdStartConfig.from_dict({"weight": 0.1, "temperature": 0.1, "extra": 1})


@pytest.mark.parametrize("bad", [dict(slots=0), dict(slots=True), dict(slots=2.0),
                                 dict(slots=5000)])
def test_slots_are_checked_and_round_trip(bad):
    with pytest.raises(InvalidArgumentError, match="cold start slots="):
        ColdStartConfig(0.1, 0.1, **bad)
    cfg = ColdStartConfig(0.3, 0.2, 3, slots=2)
    assert ColdStartConfig.from_dict(cfg.to_dict()) == cfg
    # settings written before slots existed read as uncapped, and uncapped ones write no slots
    old = {"weight": 0.1, "temperature": 0.2, "history": 3}
    assert ColdStartConfig.from_dict(old).slots is None
    assert ColdStartConfig.from_dict(old).to_dict() == old


def test_slots_cap_the_cold_items_from_outside_the_beam():
    items, scores, logprobs = [1, 2, 3], [-3.0, -4.0, -5.0], [-3.0, -4.0, -5.0]
    cold = np.array([3, 7, 8, 9])                          # 3 is in the beam too
    mass = np.log([0.5, 0.4, 0.3, 0.2])
    got, _, _ = mix(items, scores, logprobs, cold, mass, lambda i: True, k=5, slots=1)
    assert got == [3, 7, 1, 2]      # the beam's own cold item, one more, then the warm items
    got, _, _ = mix(items, scores, logprobs, cold, mass, lambda i: True, k=5, slots=None)
    assert got == [3, 7, 8, 9, 1]


@pytest.mark.parametrize("bad", [-0.1, 1.5, True, "0", float("nan"), float("inf")])
def test_repeat_is_checked(bad):
    with pytest.raises(InvalidArgumentError, match="cold start repeat="):
        ColdStartConfig(0.1, 0.1, repeat=bad)


def test_history_items_get_the_repeat_mass():
    cfg = ColdStartConfig(0.3, 0.2, 3, slots=2, repeat=0.04)
    assert ColdStartConfig.from_dict(cfg.to_dict()) == cfg and "mass 0.04" in cfg.describe()
    assert "repeat" not in ColdStartConfig(0.3, 0.2).to_dict()
    assert "excluded" in ColdStartConfig(0.3, 0.2, repeat=0).describe()
    # the flag of earlier bundles reads as repeat 0 or none; both at once is ambiguous
    old = {"weight": 0.3, "temperature": 0.2, "exclude_history": True}
    assert ColdStartConfig.from_dict(old).repeat == 0.0
    assert ColdStartConfig.from_dict({**old, "exclude_history": False}).repeat is None
    for bad in ({**old, "repeat": 0.0}, {**old, "exclude_history": "yes"}):
        with pytest.raises(InvalidArgumentError, match="expected"):
            ColdStartConfig.from_dict(bad)
    items, scores = [1, 2, 3], [-3.0, -4.0, -5.0]
    cold = np.array([3, 7, 8, 9])                          # 3 is in the beam too
    mass = np.log([0.5, 0.4, 0.3, 0.2])
    # 7 was just seen (the history's last item): first with its content mass, gone at 0;
    # 3, also seen, keeps the beam's own score; the others are untouched
    got, _, _ = mix(items, scores, scores, cold, mass, lambda i: True, k=5)
    assert got == [3, 7, 8, 9, 1]
    kept = history_mass(cold, mass, [5, 3, 7], 0.0)
    assert kept[1] == kept[0] == -math.inf and list(kept[2:]) == list(mass[2:])
    got, sc, _ = mix(items, scores, scores, cold, kept, lambda i: True, k=5)
    assert got == [8, 9, 1, 2, 3] and sc[-1] == -5.0
    # at the repeat rate: 0.04, below the unseen cold items and the first warm one
    rate = history_mass(cold, mass, [5, 7], 0.04)
    np.testing.assert_allclose(np.exp(rate), [0.5, 0.04, 0.3, 0.2])
    got, _, _ = mix(items, scores, scores, cold, rate, lambda i: True, k=5)
    assert got == [3, 8, 9, 1, 7]
    assert history_mass(cold, mass, [5, 6], 0.0) is mass    # nothing to change: no copy
    assert history_mass(cold, mass, [7], None) is mass


@pytest.mark.parametrize("bad", ["min", "", None, 1])
def test_the_query_is_checked_and_round_trips(bad):
    with pytest.raises(InvalidArgumentError, match="cold start query="):
        ColdStartConfig(0.1, 0.1, query=bad)
    cfg = ColdStartConfig(0.3, 0.2, 10, slots=3, repeat=0.0, query="mean")
    assert ColdStartConfig.from_dict(cfg.to_dict()) == cfg and "mean of 10" in cfg.describe()
    # "max" (the settings of earlier bundles) is not written, and reads back as the default
    assert "query" not in ColdStartConfig(0.3, 0.2, 3).to_dict()
    assert ColdStartConfig.from_dict({"weight": 0.3, "temperature": 0.2}).query == "max"


def test_the_mean_query_compares_with_the_history_s_mean_direction():
    recent = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=np.float32)
    assert query_directions(recent, "max") is recent
    np.testing.assert_allclose(query_directions(recent, "mean"), [[2 ** -0.5, 2 ** -0.5, 0]],
                               rtol=1e-6)
    assert query_directions(None, "mean") is None
    assert query_directions(np.array([[1.0, 0.0], [-1.0, 0.0]]), "mean") is None  # cancel out
    cold = np.array([[1.0, 0.0, 0.0], [2 ** -0.5, 2 ** -0.5, 0.0]], dtype=np.float32)
    # "max": the item like one just seen first; "mean": the item like both
    np.testing.assert_allclose(similarities(cold, query_directions(recent, "max")),
                               [1.0, 2 ** -0.5], rtol=1e-6)
    np.testing.assert_allclose(similarities(cold, query_directions(recent, "mean")),
                               [2 ** -0.5, 1.0], rtol=1e-6)


def test_the_repeat_rate_is_counted_on_the_cases():
    case = lambda h, t: SimpleNamespace(history=h, target=t)  # noqa: E731
    sids, cold = _table()                                    # cold: 100..104
    # pairs: (100), (100, 101), (102), (): 4; the second case's target 101 is one of its own
    cases = [case([1, 100], 2), case([100, 3, 101], 101), case([102], 100), case([1, 2], 103)]
    assert repeat_rate(cases, cold) == 0.25
    assert repeat_rate([case([1, 2], 100)], cold) is None     # no cold item seen: no evidence
    assert repeat_rate(cases[:1], cold) == 0.0
    # the procedure's grid carries it
    _, trials = choose_cold_start([([5, 6], [-1.0, -2.0], [-1.0, -2.0])] * 4, cases, sids, cold)
    assert {t["settings"].get("repeat") for t in trials[1:]} == {0.25}


def test_the_grid_adds_the_near_kernel_to_broad_settings_only():
    from genrec_lite.eval.cold_start import BROAD, NEAR, settings_grid

    grid = settings_grid(0.01)
    plain = [c for c in grid if c.near_weight is None]
    near = [c for c in grid if c.near_weight is not None]
    assert len(set(grid)) == len(grid) == len(plain) + len(near)
    # each broad setting once with each near kernel; the narrow settings without one
    assert len(near) == len(NEAR) * sum(c.temperature >= BROAD for c in plain)
    assert all(c.temperature >= BROAD > c.near_temperature for c in near)


def test_directions_are_unit_sums_of_codewords():
    cb = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2)
    codes = np.array([[0, 1, 7], [2, 2, 0]])  # an extra collision level is ignored
    d = directions(cb, codes)
    want = np.stack([cb[0, 0] + cb[1, 1], cb[0, 2] + cb[1, 2]])
    np.testing.assert_allclose(d, want / np.linalg.norm(want, axis=1, keepdims=True), rtol=1e-6)
    with pytest.raises(InvalidArgumentError, match="codes of shape"):
        directions(cb, codes[:, :1])


@pytest.mark.parametrize("bad", [dict(near_weight=0.3), dict(near_temperature=0.01),
                                 dict(near_weight=0, near_temperature=0.01),
                                 dict(near_weight=True, near_temperature=0.01),
                                 dict(near_weight=0.3, near_temperature=float("nan")),
                                 dict(near_weight=0.3, near_temperature=0.2)])
def test_the_near_kernel_is_checked_and_round_trips(bad):
    with pytest.raises(InvalidArgumentError, match="cold start near_"):
        ColdStartConfig(0.1, 0.2, **bad)    # one without the other, not > 0, not narrower
    cfg = ColdStartConfig(0.03, 0.5, 3, repeat=0.01, near_weight=0.3, near_temperature=0.02)
    assert ColdStartConfig.from_dict(cfg.to_dict()) == cfg
    assert "near-duplicates weight 0.3, temperature 0.02" in cfg.describe()
    # settings without it write no key, so they read the same in bundles of every version
    assert not {"near_weight", "near_temperature"} & set(ColdStartConfig(0.3, 0.2).to_dict())


def test_the_near_kernel_adds_its_mass():
    cos = np.array([1.0, 0.99, 0.9, 0.5])
    broad, near = ColdStartConfig(0.03, 0.5), ColdStartConfig(0.03, 0.5, near_weight=0.3,
                                                               near_temperature=0.02)
    want = np.log(0.03 * np.exp((cos - 1) / 0.5) + 0.3 * np.exp((cos - 1) / 0.02))
    np.testing.assert_allclose(content_scores(cos, near), want, rtol=1e-12)
    gain = content_scores(cos, near) - content_scores(cos, broad)
    # eleven times the mass of an identical item, under a tenth more at 0.9, nothing at 0.5
    assert gain[0] == pytest.approx(math.log(11)) and gain[2] < 0.1 and gain[3] < 1e-9
    assert (np.diff(content_scores(cos, near)) < 0).all()    # still falls with the cosine


def test_content_mass_is_weight_at_cosine_one_and_falls_with_temperature():
    dirs = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], dtype=np.float32)
    cfg = ColdStartConfig(weight=0.2, temperature=0.5)
    cos = similarities(dirs, np.array([[1.0, 0.0]]))
    np.testing.assert_allclose(content_scores(cos, cfg),
                               [math.log(0.2), math.log(0.2) - 2.0, math.log(0.2) - 0.8], rtol=1e-6)
    # several recent items: each cold item's closest one counts
    np.testing.assert_allclose(similarities(dirs, np.array([[1.0, 0.0], [0.0, 1.0]])), [1, 1, 0.8],
                               rtol=1e-6)
    np.testing.assert_allclose(similarities(dirs, None), [0, 0, 0])
    with pytest.raises(InvalidArgumentError, match="history"):
        ColdStartConfig(0.1, 0.1, history=0)
    assert ColdStartConfig.from_dict({"weight": 0.1, "temperature": 0.2}).history == 1


def test_mix_adds_cold_items_and_keeps_the_beams_values():
    items, scores = [1, 2, 3], [-1.0, -2.0, -3.0]
    logprobs = [-1.5, -2.5, -3.5]
    cold = np.array([3, 7, 8, 9])                          # 3 is in the beam too
    mass = np.log([0.5, 0.3, 0.01, 0.2])
    got, sc, lp = mix(items, scores, logprobs, cold, mass, lambda i: i != 9, k=4)
    assert got == [3, 1, 7, 2]                              # 9 is not eligible
    assert sc[0] == pytest.approx(np.logaddexp(-3.0, math.log(0.5)))
    assert lp[0] == pytest.approx(np.logaddexp(-3.5, math.log(0.5)))
    assert (sc[1], lp[1]) == (-1.0, -1.5)                   # a warm item keeps its values
    assert sc[2] == lp[2] == pytest.approx(math.log(0.3))
    # nothing cold: the beam as it was
    assert mix(items, scores, logprobs, np.zeros(0, np.int64), np.zeros(0), lambda i: True,
               k=2) == ([1, 2], [-1.0, -2.0], [-1.5, -2.5])


# --- choosing the settings -------------------------------------------------------------------
def _table():
    """A SID table whose cold items 100..104 are the twins of warm items 0..4 (same codes but the
    extra level): a cold twin's content equals its warm item's."""
    from genrec_lite.sid import SemanticIds

    warm, cold = np.arange(10), np.arange(100, 105)
    base = np.stack([warm, warm % 4, warm % 3], 1)
    codes = np.concatenate([np.c_[base, np.zeros(10)], np.c_[base[:5], np.ones(5)]]).astype(np.int32)
    # the table needs only the codebooks of its quantiser
    enc = SimpleNamespace(codebooks=np.random.default_rng(0).standard_normal((3, 16, 8)).astype(np.float32))
    return SemanticIds(np.r_[warm, cold], codes, levels=3, codebook_size=16, collisions="extra_level",
                       extra_level_size=4, encoder=enc), cold


def test_the_procedure_turns_cold_start_on_only_where_it_helps():
    sids, cold = _table()
    Case = SimpleNamespace
    answers = [([5, 6, 7], [-1.0, -2.0, -3.0], [-1.0, -2.0, -3.0])] * 5
    # next items are the cold twins of the last history items: cold start helps
    cases = [Case(user_id=str(n), history=[n], target=100 + n) for n in range(5)]
    chosen, trials = choose_cold_start(answers, cases, sids, cold)
    assert chosen is not None and trials[0]["settings"] is None
    assert max(t["metrics"]["all"]["NDCG@10"] for t in trials) == 1.0
    # next items are the beam's first: cold items in front would only hurt; off wins the tie
    cases = [Case(user_id=str(n), history=[n], target=5) for n in range(5)]
    chosen, _ = choose_cold_start(answers, cases, sids, cold)
    assert chosen is None
    lists = ColdCandidates(sids, cold, cases).lists(answers, ColdStartConfig(1.0, 0.1), k=3)
    assert all(lst[0] in cold for lst in lists)


def test_max_cost_buys_the_cold_cases_a_better_rank_within_its_price():
    sids, cold = _table()
    Case = SimpleNamespace
    p = list(np.log([0.5, 0.3, 0.1]))
    answers = [([5, 6, 7], p, p)] * 205
    # 200 cases no cold item comes near, 4 that want the beam's first item after a history whose
    # cold twin exists, and 1 that wants that twin: the twin first costs the 4 a rank
    cases = ([Case(user_id=f"w{n}", history=[5 + n % 5], target=5) for n in range(200)] +
             [Case(user_id=f"t{n}", history=[0], target=5) for n in range(4)] +
             [Case(user_id="c", history=[0], target=100)])
    strict, trials = choose_cold_start(answers, cases, sids, cold, max_cost=0)
    priced, _ = choose_cold_start(answers, cases, sids, cold)          # the default, 1%
    one = ColdCandidates(sids, cold, cases[-1:])
    rank = {name: one.lists(answers[-1:], cfg)[0].index(100)
            for name, cfg in (("strict", strict), ("priced", priced))}
    assert rank["priced"] == 0 < rank["strict"]
    ndcg = {json.dumps(t["settings"]): t["metrics"]["all"]["NDCG@10"] for t in trials}
    best, paid = max(ndcg.values()), ndcg[json.dumps(priced.to_dict())]
    assert ndcg[json.dumps(strict.to_dict())] == best and 0.99 * best <= paid < best
    with pytest.raises(InvalidArgumentError, match="max_cost"):
        choose_cold_start(answers, cases, sids, cold, max_cost=1.0)


def test_the_price_is_paid_at_the_served_cold_share():
    def trial(settings, cold, warm, share=0.2):
        return {"settings": settings, "metrics": {
            "cold": {"HR@10": cold[0], "NDCG@10": cold[1]},
            "warm": {"HR@10": warm[0], "NDCG@10": warm[1]},
            "all": {key: share * c + (1 - share) * w
                    for key, c, w in zip(("HR@10", "NDCG@10"), cold, warm)}}}

    on = {"weight": 0.1, "temperature": 0.1, "history": 1}
    # a fifth of the validation cases are cold: showing cold items costs the warm ones 2% and
    # pays for itself; where 1% of the served cases will be cold, it costs them 1.5% overall
    trials = [trial(None, (0.0, 0.0), (0.5, 0.4)), trial(on, (0.5, 0.4), (0.49, 0.39))]
    assert pick(trials) == ColdStartConfig.from_dict(on)
    assert pick(trials, cold_share=0.2) == ColdStartConfig.from_dict(on)
    assert pick(trials, cold_share=0.01) is None
    assert pick(trials, cold_share=0.01, max_cost=0.02) == ColdStartConfig.from_dict(on)
    with pytest.raises(InvalidArgumentError, match="cold_share"):
        pick(trials, cold_share=1.5)
    # the same traffic per cold item: the tuning model's 701 cold items drew 10% of the cases
    assert served_cold_share(0.10, 701, 383) == pytest.approx(0.10 * 383 / 701)
    assert served_cold_share(0.5, 10, 100) == 1.0 and served_cold_share(0.1, 0, 5) == 0.0


def test_the_warm_bound_can_keep_cold_start_off():
    sids, cold = _table()
    Case = SimpleNamespace
    answers = [([5, 6, 7], [-1.0, -2.0, -3.0], [-1.0, -2.0, -3.0])] * 6
    # three cases want the cold twin of their last item, three the beam's first (warm) item:
    # overall, cold start on gains more than it costs, so the default turns it on ...
    cases = [Case(user_id=str(n), history=[n], target=100 + n) for n in range(3)] + \
            [Case(user_id=str(n), history=[n], target=5) for n in range(3)]
    chosen, trials = choose_cold_start(answers, cases, sids, cold)
    assert chosen is not None
    best = max(t["metrics"]["all"]["NDCG@10"] for t in trials)
    assert best > trials[0]["metrics"]["all"]["NDCG@10"]
    # ... while a bound on the warm cases keeps only settings that leave their ranks alone
    bounded, _ = choose_cold_start(answers, cases, sids, cold, max_loss=0.0)
    warm = ColdCandidates(sids, cold, cases[3:])
    if bounded is not None:
        assert all(lst[0] == 5 for lst in warm.lists(answers[3:], bounded, k=3))
    with pytest.raises(InvalidArgumentError, match="max_loss"):
        choose_cold_start(answers, cases, sids, cold, max_loss=1.5)


# --- the serving SID encoder -----------------------------------------------------------------
def test_the_served_quantiser_equals_the_trained_rqvae(tmp_path, monkeypatch):
    """add_items gives a new item its codes with the quantiser stored in the SID table (numpy MLP
    + C++ lookup), the one SID encoder a bundle serves: after `sid build`'s save and a load it
    gives the trained PyTorch RQ-VAE's latent and codes."""
    torch = pytest.importorskip("torch")
    from genrec_lite.sid import SemanticIds, rqvae
    from genrec_lite.sid.build import SidConfig, quantize_vectors

    trained, train = [], rqvae.train_rqvae

    def keep(*args, **kwargs):  # the torch model `sid build` trains, kept for the comparison
        trained.append(train(*args, **kwargs))
        return trained[-1]

    monkeypatch.setattr(rqvae, "train_rqvae", keep)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 24)).astype(np.float32)
    sids = quantize_vectors(np.arange(400), x, SidConfig(levels=3, codebook_size=16,
                                                        method="rqvae", epochs=30), progress=False)
    sids.save(tmp_path / "sids")
    served = SemanticIds.load(tmp_path / "sids").encoder
    model = trained[0].eval()
    with torch.no_grad():
        z = model.encoder(model.normalize(torch.from_numpy(x)))
        _, codes, _ = model.quantize(z)
    np.testing.assert_allclose(served.latent(x), z.numpy(), atol=1e-5)
    assert (served.encode(x) == codes.numpy()).all()


# --- the runtime -------------------------------------------------------------------------------
pytest.importorskip("torch")
pytest.importorskip("llama_cpp")


@pytest.fixture(scope="module")
def synthetic():
    from genrec_lite.data import leave_one_out, make_synthetic

    ds = make_synthetic()
    return ds, leave_one_out(ds.interactions, max_len=10).test[:48]


def _twin(state, item, new_id):
    """A new item with the same text as `item` (so the same SID codes but the extra level)."""
    return dict(state.records[item], item_id=new_id)


def test_bundle_records_the_untrained_items(runtime_checkpoint, runtime_bundle):
    import json

    from genrec_lite.runtime import Recommender

    m = json.loads((runtime_bundle / "manifest.json").read_text())
    assert m["cold_start"]["settings"] is None and m["cold_start"]["items"] == "cold_items.npy"
    untrained = np.load(runtime_checkpoint / "untrained_items.npy")
    assert np.array_equal(np.load(runtime_bundle / "cold_items.npy"), untrained)
    assert len(untrained) == m["cold_start"]["n_items"]
    with Recommender.load(runtime_bundle, n_threads=1) as rec:
        assert np.array_equal(rec.catalog.state.cold, untrained)
        assert rec.cold_start is None


def test_a_new_item_is_recommended_only_with_cold_start(runtime_bundle, synthetic):
    from genrec_lite.runtime import Recommender

    ds, cases = synthetic
    with Recommender.load(runtime_bundle, n_threads=1) as rec:
        state = rec.catalog.state
        hist = [i for i in cases[0].history if i in state.sids]
        new = 900_001
        rec.add_items([_twin(state, hist[-1], new)])
        assert new in rec.catalog.state.cold
        assert new not in [r.item_id for r in rec.recommend(hist, k=10)]
        rec.set_cold_start({"weight": 0.5, "temperature": 0.1})
        got = {r.item_id: r for r in rec.recommend(hist, k=10)}
        # its content equals the last item's: the whole weight (like the last item's other
        # collision twins among the cold items), far above any warm item here
        assert got[new].score == got[new].logprob == pytest.approx(math.log(0.5), abs=1e-4)
        assert max(r.score for r in got.values()) == pytest.approx(math.log(0.5), abs=1e-4)
        assert new not in [r.item_id for r in rec.recommend(hist, k=10, deny=[new])]
        assert new not in [r.item_id for r in rec.recommend(hist, k=10, allow=hist)]
        rec.set_active([new], False)
        assert new not in [r.item_id for r in rec.recommend(hist, k=10)]
        rec.set_active([new], True)
        rec.remove_items([new])
        assert new not in rec.catalog.state.cold
        with pytest.raises(InvalidArgumentError, match="cold start"):
            rec.set_cold_start({"weight": -1, "temperature": 0.1})


def test_runtime_equals_the_reference_decoder_with_the_same_mixing(runtime_checkpoint,
                                                                    runtime_bundle, synthetic):
    """The C++ search + mixing of the Recommender equals the PyTorch reference decoder's beam +
    eval/cold_start.py's mixing (one mixing code), with added cold items."""
    from genrec_lite.prompts import PromptSet
    from genrec_lite.runtime import Recommender
    from genrec_lite.train.checkpoint import load_model
    from genrec_lite.train.decode import ReferenceDecoder
    from genrec_lite.train.evaluate import case_prompts

    ds, cases = synthetic
    with Recommender.load(runtime_bundle, n_threads=1) as rec:
        state = rec.catalog.state
        last = sorted({c.history[-1] for c in cases})[:6]
        rec.add_items([_twin(state, i, 900_100 + n) for n, i in enumerate(last)])
        state = rec.catalog.state
        model, tok, views, meta = load_model(runtime_checkpoint)
        texts = case_prompts(cases, state.sids, PromptSet.load(meta["prompts"]),
                             max_history=meta["train"]["max_history"])
        ref = ReferenceDecoder(model, tok, state.sids).recommend(texts, k=10, beam=20)
        answers = [(r.items, r.scores, r.logprobs) for r in ref]
        cand = ColdCandidates(state.sids, state.cold, cases)
        reqs = [{"history": list(c.history), "profile": ""} for c in cases]
        added = set(range(900_100, 900_106))
        for cfg in (ColdStartConfig(weight=0.02, temperature=0.1, history=3),
                    ColdStartConfig(weight=0.5, temperature=0.1, history=3, slots=1),
                    ColdStartConfig(weight=0.5, temperature=0.1, history=3, repeat=0.0),
                    ColdStartConfig(weight=0.5, temperature=0.1, history=3, repeat=0.01),
                    ColdStartConfig(weight=0.5, temperature=0.1, history=3, query="mean"),
                    ColdStartConfig(weight=0.02, temperature=0.2, history=3, near_weight=1.0,
                                    near_temperature=0.02)):
            rec.set_cold_start(cfg)
            got = [[r.item_id for r in a] for a in rec.recommend_batch(reqs)]
            assert got == cand.lists(answers, cfg, k=10), cfg
            assert got != cand.lists(answers, None, k=10)  # the mixture did something
            assert any(set(g) & added for g in got) or cfg.slots is not None
            if cfg.slots is not None:
                beams = [set(a[0]) for a in answers]
                assert all(len((set(g) - b) & set(state.cold.tolist())) <= cfg.slots
                           for g, b in zip(got, beams))


def test_cold_items_survive_save_catalog_and_reload(runtime_bundle, synthetic, tmp_path):
    from genrec_lite.export.bundle import set_cold_start
    from genrec_lite.runtime import Recommender

    ds, cases = synthetic
    with Recommender.load(runtime_bundle, n_threads=1) as rec:
        state = rec.catalog.state
        first = int(state.sids.item_ids[0])
        rec.add_items([_twin(state, first, 900_200)])
        vec = np.random.default_rng(0).standard_normal((1, state.sids.content_space.input_dim))
        rec.add_items([{"item_id": 900_201, "title": "from a vector"}], vectors=vec)
        cold = rec.catalog.state.cold.copy()

        def content(r, item):
            sids = r.catalog.state.sids
            return sids.content[sids.row_of(item)]

        # the twin has its item's text, so its content; the other is its vector's projection
        assert np.array_equal(content(rec, 900_200), content(rec, first))
        assert np.array_equal(content(rec, 900_201), state.sids.content_space.project(vec)[0])
        rows = content(rec, 900_200), content(rec, 900_201)
        rec.save_catalog(tmp_path / "cat")
        rec.reload(runtime_bundle)                             # carries the added items over
        assert np.array_equal(rec.catalog.state.cold, cold)
        assert all(np.array_equal(content(rec, i), r) for i, r in zip((900_200, 900_201), rows))
    with Recommender.load(runtime_bundle, n_threads=1, catalog=tmp_path / "cat") as rec:
        assert np.array_equal(rec.catalog.state.cold, cold)
        assert all(np.array_equal(content(rec, i), r) for i, r in zip((900_200, 900_201), rows))
    copy = tmp_path / "bundle"
    import shutil

    shutil.copytree(runtime_bundle, copy)
    set_cold_start(copy, ColdStartConfig(0.01, 0.2))
    with Recommender.load(copy, n_threads=1) as rec:
        assert rec.cold_start == ColdStartConfig(0.01, 0.2)


def test_without_items_hides_items_everywhere(synthetic):
    ds, _ = synthetic
    gone = ds.catalog.item_ids[:5]
    sub = ds.without_items(gone)
    assert not sub.catalog.contains_all(gone).any() and len(sub.catalog) == len(ds.catalog) - 5
    assert not np.isin(sub.interactions.item_ids, gone).any()
    with pytest.raises(InvalidArgumentError, match="not in the catalog"):
        ds.without_items([10**9])


def test_the_shortlist_gives_the_lists_of_the_whole_cold_set():
    """ColdCandidates.lists scores only each case's best cold items, all cases at once (the grid's
    speed); the lists equal those of mixing in every cold item one case at a time (`mix`, the
    runtime's code), with and without a cap, at every share for the history's own."""
    rng = np.random.default_rng(3)
    cand = ColdCandidates.__new__(ColdCandidates)
    cand.cold = np.sort(rng.choice(500, 120, replace=False))
    d = rng.standard_normal((120, 8)).astype(np.float32)
    cand.dirs = d / np.linalg.norm(d, axis=1, keepdims=True)
    q = rng.standard_normal((40, 3, 8)).astype(np.float32)
    cand.queries = list(q / np.linalg.norm(q, axis=2, keepdims=True)) + [None]
    cand._cos, cand._short, cand._pack = {}, (), ()
    answers = []
    for n in range(41):
        size = 10 if n % 5 else 4     # a beam shorter than k too
        items = rng.choice(500, size, replace=False).tolist()   # some of them cold
        s = np.sort(np.log(rng.dirichlet(np.ones(30))[:size]))[::-1].tolist()
        answers.append((items, s, s))
    # the cases' histories hold some cold items (`repeat` sets their mass)
    cand.known = [rng.choice(cand.cold, 4).tolist() for _ in range(40)] + [[]]
    cand.seen = [history_rows(cand.cold, h) for h in cand.known]
    for cfg in (ColdStartConfig(0.01, 0.05), ColdStartConfig(0.3, 0.5, 3),
                ColdStartConfig(2.0, 0.1, 3, slots=3), ColdStartConfig(1.0, 0.2, slots=1),
                ColdStartConfig(2.0, 0.3, 3, repeat=0.0),
                ColdStartConfig(1.0, 0.2, slots=1, repeat=0.0),
                ColdStartConfig(2.0, 0.1, 3, repeat=0.01), ColdStartConfig(0.3, 0.2, repeat=0.9),
                ColdStartConfig(0.3, 0.1, 3, query="mean"),
                ColdStartConfig(1.0, 0.05, 3, slots=1, repeat=0.01, query="mean"),
                ColdStartConfig(0.01, 0.2, 3, repeat=0.01, near_weight=1.0, near_temperature=0.02),
                ColdStartConfig(0.03, 0.5, 10, slots=3, query="mean", near_weight=0.3,
                                near_temperature=0.03)):
        assert cand.lists(answers, cfg) == cand.lists(answers, cfg, eligible=lambda i: True), cfg
        # the grid's table: the same lists, padded where shorter than k
        items, valid = cand.table(answers, cfg)
        assert (items[~valid] < 0).all() and ((~valid).any() or cfg.slots is None)
        assert [r[ok].tolist() for r, ok in zip(items, valid)] == cand.lists(answers, cfg)
