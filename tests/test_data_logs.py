"""Real logs: timestamp units and ISO dates, repeated and same-second events, the k-core, split
specs stated in the user's terms and the split `auto` chooses."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest

from genrec_lite.data import (Case, Catalog, Dataset, Interactions, choose_split, leave_one_out,
                              resolve_split, temporal_split)
from genrec_lite.data.split_spec import check_spec, first_case_time
from genrec_lite.data.timestamps import detect_unit, format_time
from genrec_lite.errors import DataError, InvalidArgumentError

DAY = 86400
T0 = 1527811200  # 2018-06-01T00:00:00Z


def _write(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


# ---------------------------------------------------------------- timestamps


@pytest.mark.parametrize("values, unit", [
    ([T0, T0 + 5], "s"), ([T0 * 1000, T0 * 1000 + 7], "ms"), ([T0 * 10**6], "us"),
    ([T0 * 10**9], "ns"), ([0, 1, 2_000_000], "order"), ([5, 6], "order"),
])
def test_unit_is_detected_from_the_values(values, unit):
    assert detect_unit(np.array(values)) == unit
    inter = Interactions(["u"] * len(values), [1] * len(values), values)
    assert inter.time_unit == unit


def test_units_are_read_from_files_and_kept_as_written(tmp_path):
    s = Interactions.load(_write(tmp_path / "s.csv", ["user_id", "item_id", "timestamp"],
                                 [["a", 1, T0], ["a", 2, T0 + 60]]))
    ms = Interactions.load(_write(tmp_path / "ms.csv", ["user_id", "item_id", "timestamp"],
                                  [["a", 1, T0 * 1000], ["a", 2, T0 * 1000 + 60_000]]))
    assert (s.time_unit, ms.time_unit) == ("s", "ms")
    assert ms.timestamps.tolist() == [T0 * 1000, T0 * 1000 + 60_000]  # no lossy conversion
    assert format_time(ms.timestamps[1], "ms") == "2018-06-01 00:01:00 UTC"
    # an override wins over the detection (e.g. seconds that happen to be small)
    forced = Interactions.load(tmp_path / "s.csv", time_unit="ms")
    assert forced.time_unit == "ms" and forced.timestamps.tolist() == [T0, T0 + 60]
    with pytest.raises(InvalidArgumentError, match="time unit 'hours' is not known.*auto, s, ms"):
        Interactions.load(tmp_path / "s.csv", time_unit="hours")


def test_iso_dates_become_unix_seconds(tmp_path):
    path = _write(tmp_path / "iso.csv", ["user_id", "item_id", "timestamp"], [
        ["a", 1, "2018-06-01"], ["a", 2, "2018-06-01T00:00:30Z"],
        ["b", 3, "2018-06-01T02:00:00+02:00"], ["b", 4, "2018-06-01 00:01:00.5"]])
    inter = Interactions.load(path)
    assert inter.time_unit == "s"
    assert inter.timestamps.tolist() == [T0, T0 + 30, T0, T0 + 60.5]  # +02:00 is UTC midnight
    jsonl = tmp_path / "iso.jsonl"
    jsonl.write_text('{"user_id": "a", "item_id": 1, "timestamp": "2018-06-02T00:00:00Z"}\n')
    assert Interactions.load(jsonl).timestamps.tolist() == [T0 + DAY]


def test_bad_timestamps_name_the_line_and_value(tmp_path):
    path = _write(tmp_path / "bad.csv", ["user_id", "item_id", "timestamp"],
                  [["a", 1, "2018-06-01"], ["a", 2, "yesterday"]])
    with pytest.raises(DataError, match=r"bad.csv:3: timestamp 'yesterday' is not an ISO-8601 "
                                        "date.*expected e.g. 2018-06-01"):
        Interactions.load(path)
    with pytest.raises(DataError, match="ISO-8601 dates.*time unit 'ms' was given"):
        Interactions.load(_write(tmp_path / "ok.csv", ["user_id", "item_id", "timestamp"],
                                 [["a", 1, "2018-06-01"]]), time_unit="ms")
    with pytest.raises(DataError, match=r"num.csv:3: timestamp must be a number, got 'soon'"):
        Interactions.load(_write(tmp_path / "num.csv", ["user_id", "item_id", "timestamp"],
                                 [["a", 1, "5"], ["a", 2, "soon"]]))


# ---------------------------------------------------------------- duplicates, ties, k-core


def test_repeated_events_are_dropped_keeping_the_first(tmp_path):
    path = _write(tmp_path / "dup.csv", ["user_id", "item_id", "timestamp"], [
        ["a", 1, 10], ["a", 2, 11], ["a", 1, 10], ["b", 1, 10], ["a", 1, 12], ["a", 2, 11]])
    inter = Interactions.load(path)
    assert inter.duplicates_dropped == 2
    assert list(zip(inter.user_ids.tolist(), inter.item_ids.tolist(), inter.timestamps.tolist())
                ) == [("a", 1, 10), ("a", 2, 11), ("b", 1, 10), ("a", 1, 12)]  # file order kept
    assert "2 repeated events" in inter.describe()
    kept = Interactions.load(path, duplicates="keep")
    assert len(kept) == 6 and kept.duplicates_dropped == 0
    with pytest.raises(InvalidArgumentError, match="duplicates='first'; expected 'drop' or 'keep'"):
        Interactions.load(path, duplicates="first")


def test_same_second_events_keep_file_order_in_every_split():
    # user a clicks 3 then 1 then 2 in one second, then 9 later; reading order is the tie-break
    inter = Interactions(["a", "a", "b", "a", "a", "b", "b"], [3, 1, 7, 2, 9, 8, 6],
                         [T0, T0, T0, T0, T0 + 5, T0 + 5, T0 + 5])
    assert inter.sequences()["a"].tolist() == [3, 1, 2, 9]
    assert inter.sequences()["b"].tolist() == [7, 8, 6]
    loo = leave_one_out(inter)
    assert loo.test == [Case("a", (3, 1, 2), 9), Case("b", (7, 8), 6)]
    assert loo.valid == [Case("a", (3, 1), 2), Case("b", (7,), 8)]
    # the cut never splits a second; the test period's ties keep file order
    split = temporal_split(inter, at=T0 + 5)
    assert split.train["a"].tolist() == [3, 1, 2]
    assert split.test == [Case("a", (3, 1, 2), 9), Case("b", (7,), 8), Case("b", (7, 8), 6)]
    # the same log read again gives the same split (nothing depends on hashing or sorting luck)
    again = Interactions(inter.user_ids, inter.item_ids, inter.timestamps)
    assert temporal_split(again, at=T0 + 5).test == split.test


def test_kcore_drops_users_and_items_until_stable():
    # item 9 has one event; dropping it leaves user c with one event, which drops item 3 to 2...
    users = ["a", "a", "a", "b", "b", "b", "c", "c", "d"]
    items = [1, 2, 3, 1, 2, 3, 3, 9, 1]
    inter = Interactions(users, items, list(range(9)))
    core = inter.kcore(2)
    assert list(zip(core.user_ids.tolist(), core.item_ids.tolist())) == [
        ("a", 1), ("a", 2), ("a", 3), ("b", 1), ("b", 2), ("b", 3)]
    k3 = inter.kcore(3)
    assert len(k3) == 0  # items 2 and 3 fall to 2 users each, then everything goes
    assert len(inter.kcore(1)) == len(inter)
    for bad in (0, 1.5, True):
        with pytest.raises(InvalidArgumentError, match="k-core k=.*expected an integer >= 1"):
            inter.kcore(bad)


def test_dataset_kcore_keeps_the_catalog_and_cases():
    cat = Catalog([1, 2, 3, 9], {"title": list("abcd")})
    inter = Interactions(["a", "a", "b", "b", "c"], [1, 2, 1, 2, 9], [1, 2, 3, 4, 5])
    ds = Dataset("toy", cat, inter, test_cases=[Case("c", (9,), 1)])
    core = ds.kcore(2)
    assert len(core.catalog) == 4 and core.test_cases == ds.test_cases
    assert set(core.interactions.user_ids.tolist()) == {"a", "b"}


# ---------------------------------------------------------------- split specs


def _daily_log() -> Dataset:
    """Ten days; user u<k> clicks items k, k+1, ... once a day from day k%3 on."""
    users, items, times = [], [], []
    for day in range(10):
        for k in range(6):
            if day >= k % 3:
                users.append(f"u{k}")
                items.append(10 * k + day)
                times.append(T0 + day * DAY + k)
    cat = Catalog(sorted(set(items)), {"title": [str(i) for i in sorted(set(items))]})
    return Dataset("daily", cat, Interactions(users, items, times))


def test_temporal_at_a_date_with_a_validation_period_as_long_as_the_test():
    ds = _daily_log()
    plan = resolve_split("temporal:2018-06-08", ds)
    assert plan.test_from == T0 + 7 * DAY
    # the log ends at day 9: the test period is ~2 days, validation the ~2 days before
    assert plan.valid_from == T0 + 7 * DAY - (T0 + 9 * DAY + 5 - (T0 + 7 * DAY))
    assert plan.spec == f"temporal:{int(plan.valid_from)},{T0 + 7 * DAY}"
    assert "test from 2018-06-08 00:00:00 UTC" in plan.describe()
    split = plan.apply(ds, 3)
    assert all(c.target % 10 >= 7 for c in split.test)
    assert split.valid and all(5 <= c.target % 10 < 7 for c in split.valid)
    assert max(int(s.max()) % 10 for s in split.train.values()) < 5
    # the spec states the same split again, exactly
    again = resolve_split(plan.spec, ds).apply(ds, 3)
    assert (again.valid, again.test) == (split.valid, split.test)


def test_temporal_last_days_and_fraction_and_two_bounds():
    ds = _daily_log()
    end = T0 + 9 * DAY + 5
    last = resolve_split("temporal:last-2d", ds)
    assert (last.test_from, last.valid_from) == (end - 2 * DAY, end - 4 * DAY)
    assert resolve_split("temporal:last-48h", ds).test_from == last.test_from
    frac = resolve_split("temporal:0.9", ds)
    assert frac.test_from == np.ceil(T0 + 0.9 * (end - T0))
    assert frac.valid_from == np.ceil(frac.test_from - (end - frac.test_from))
    both = resolve_split("temporal:2018-06-05,2018-06-08T00:00:00Z", ds)
    assert (both.valid_from, both.test_from) == (T0 + 4 * DAY, T0 + 7 * DAY)
    assert both.describe().startswith("temporal:2018-06-05,2018-06-08T00:00:00Z -> temporal:")


def test_temporal_validation_comes_from_valid_jsonl_when_the_folder_has_it():
    ds = _daily_log()
    ds.valid_cases = [Case("u0", (0,), 1)]
    plan = resolve_split("temporal:2018-06-08", ds)
    assert plan.valid_from is None and plan.valid_file and "validation on valid.jsonl" in \
        plan.describe()
    assert plan.apply(ds, 3).valid == ds.valid_cases


def test_split_spec_errors_name_the_value_and_what_was_expected():
    ds = _daily_log()
    for bad in ("temporal:soon", "temporal:", "temporal:1,2,3", "temporal:last-7y", "random",
                "temporal:nan"):
        with pytest.raises(InvalidArgumentError, match=f"split '{bad}' is not known.*auto, cases, "
                                                       "leave-one-out.*last-7d"):
            check_spec(bad)
    with pytest.raises(InvalidArgumentError, match="leaves no interaction to train on.*log starts "
                                                   "at 1527811200 \\(2018-06-01.*temporal:2018-06-01"):
        resolve_split("temporal:2000000", ds)
    with pytest.raises(InvalidArgumentError, match="validation period starts at .*after the test"):
        resolve_split("temporal:2018-06-08,2018-06-05", ds)
    positions = Dataset("p", ds.catalog, Interactions(["a", "a", "a"], [0, 10, 20], [0, 1, 2]))
    with pytest.raises(InvalidArgumentError, match="'2018-06-01' is a calendar time, but this "
                                                   "log's timestamps are positions.*--time-unit"):
        resolve_split("temporal:2018-06-01", positions)
    with pytest.raises(InvalidArgumentError, match="last-7d.*calendar time"):
        resolve_split("temporal:last-7d", positions)
    with pytest.raises(InvalidArgumentError, match="split 'cases' needs test.jsonl"):
        resolve_split("cases", ds)


def test_a_plain_number_keeps_its_old_meaning():
    """temporal:TIMESTAMP with valid.jsonl: train before it, validate on the file (as before)."""
    ds = _daily_log()
    ds.valid_cases = [Case("u0", (0,), 1)]
    plan = resolve_split(f"temporal:{T0 + 5 * DAY}", ds)
    assert plan.spec == f"temporal:{T0 + 5 * DAY}"
    got = plan.apply(ds, 10)
    want = temporal_split(ds.interactions, at=T0 + 5 * DAY, max_len=10)
    assert got.test == want.test and got.valid == ds.valid_cases
    assert {u: s.tolist() for u, s in got.train.items()} == \
        {u: s.tolist() for u, s in want.train.items()}


# ---------------------------------------------------------------- auto


def test_auto_is_leave_one_out_when_users_have_three_events():
    ds = _daily_log()
    plan = choose_split(ds)
    assert plan.kind == "leave-one-out" and plan.spec == "leave-one-out"
    assert "6 of 6 users have 3+ events" in plan.describe()
    assert resolve_split("auto", ds) == plan


def test_auto_is_temporal_when_most_users_are_short():
    users = [f"u{k}" for k in range(100)] * 2 + ["heavy"] * 20
    items = list(range(220))
    times = [T0 + DAY * k for k in range(220)]
    ds = Dataset("short", Catalog(items, {"title": ["x"] * 220}),
                 Interactions(users, items, times))
    plan = choose_split(ds)
    assert plan.kind == "temporal"
    assert (plan.test_from, plan.valid_from) == (times[198], times[176])
    assert "only 1 of 101 users have 3+ events" in plan.reason
    split = plan.apply(ds, 10)
    assert split.test and split.valid


def test_auto_takes_the_case_files_and_cuts_at_the_first_test_case():
    ds = _daily_log()
    seq = ds.interactions.sequences()["u1"].tolist()
    # u1's last two items are the test cases; u2's last item the validation case
    ds.test_cases = [Case("u1", tuple(seq[-4:-2]), seq[-2]), Case("u1", tuple(seq[-3:-1]), seq[-1])]
    ds.valid_cases = [Case("u2", (28,), 29)]
    plan = choose_split(ds)
    assert plan.kind == "temporal" and plan.valid_file
    assert plan.test_from == T0 + 8 * DAY + 1  # u1's second-last event
    assert "the folder has valid.jsonl and test.jsonl" in plan.reason
    split = plan.apply(ds, 10)
    assert split.valid == ds.valid_cases
    assert first_case_time(ds.interactions, [Case("zz", (), 1)]) is None
    # cases that are not in the log: the whole log is training data
    ds.test_cases = [Case("u9", (1,), 2)]
    plan = choose_split(ds)
    assert plan.kind == "cases" and plan.spec == "cases" and "whole log" in plan.reason
    split = plan.apply(ds, 10)
    assert split.test == ds.test_cases and sum(map(len, split.train.values())) == len(ds.interactions)


def test_auto_on_amazon_is_the_old_temporal_split(amazon_industrial_dir):
    ds = Dataset.load(amazon_industrial_dir)
    plan = resolve_split("auto", ds)
    assert plan.spec == "temporal:2000000" and plan.time_unit == "order"
    got, want = plan.apply(ds, 10), temporal_split(ds.interactions, 2_000_000, 10)
    assert got.test == ds.test_cases and got.valid == ds.valid_cases
    assert {u: s.tolist() for u, s in got.train.items()} == \
        {u: s.tolist() for u, s in want.train.items()}


def test_amazon_with_unix_seconds_cuts_at_the_same_events(amazon_industrial_dir, tmp_path):
    """The issue's check: t -> 1514764800 + 60 t; the old constant selects nothing, auto works."""
    shutil.copy(amazon_industrial_dir / "items.jsonl", tmp_path)
    for name in ("valid.jsonl", "test.jsonl"):
        shutil.copy(amazon_industrial_dir / name, tmp_path)
    with open(amazon_industrial_dir / "interactions.csv") as f:
        rows = [[r["user_id"], r["item_id"], 1514764800 + 60 * int(r["timestamp"])]
                for r in csv.DictReader(f)]
    _write(tmp_path / "interactions.csv", ["user_id", "item_id", "timestamp"], rows)
    ds = Dataset.load(tmp_path)
    assert ds.interactions.time_unit == "s"
    with pytest.raises(InvalidArgumentError, match="leaves no interaction to train on"):
        resolve_split("temporal:2000000", ds)
    plan = resolve_split("auto", ds)
    assert plan.spec == f"temporal:{1514764800 + 60 * 2_000_000}"
    assert plan.apply(ds, 10).test == ds.test_cases
    (tmp_path / "valid.jsonl").unlink()
    (tmp_path / "test.jsonl").unlink()
    assert resolve_split("auto", Dataset.load(tmp_path)).kind == "leave-one-out"


def test_parquet_date_time_columns_become_unix_seconds(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    ms = pa.array([T0 * 1000, T0 * 1000 + 1500], pa.timestamp("ms"))
    pq.write_table(pa.table({"user_id": ["a", "a"], "item_id": [1, 2], "timestamp": ms}),
                   tmp_path / "log.parquet")
    inter = Interactions.load(tmp_path / "log.parquet")
    assert inter.time_unit == "s" and inter.timestamps.tolist() == [T0, T0 + 1.5]
    days = pa.array([17683, 17684], pa.date32())  # 2018-06-01, 2018-06-02
    pq.write_table(pa.table({"user_id": ["a", "a"], "item_id": [1, 2], "timestamp": days}),
                   tmp_path / "days.parquet")
    assert Interactions.load(tmp_path / "days.parquet").timestamps.tolist() == [T0, T0 + DAY]


def test_dates_and_periods_follow_the_logs_unit():
    """The same split stated on a millisecond log cuts at the same events, in milliseconds."""
    s = _daily_log()
    inter = s.interactions
    ms = Dataset("ms", s.catalog, Interactions(inter.user_ids, inter.item_ids,
                                               inter.timestamps * 1000))
    assert ms.interactions.time_unit == "ms"
    for spec in ("temporal:2018-06-08", "temporal:last-2d", "temporal:0.9"):
        a, b = resolve_split(spec, s), resolve_split(spec, ms)
        if spec != "temporal:0.9":  # a fraction rounds up to a whole unit: 1 s vs 1 ms
            assert b.test_from == a.test_from * 1000 and b.valid_from == a.valid_from * 1000
        sa, sb = a.apply(s, 5), b.apply(ms, 5)
        assert (sa.valid, sa.test) == (sb.valid, sb.test) and sa.test, spec
