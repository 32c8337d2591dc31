#!/usr/bin/env python
"""Serving latency and answers of two builds of genrec-lite on one bundle, in the same run.

    python benchmarks/ab_latency.py --bundle runs/.../bundle-f16 --dataset ml-100k \
        --checkout before=/path/to/old/checkout --checkout after=. [--rounds 5] [--calls 40]

A refactor of the serving path must change neither the answers nor the speed. Each checkout is
used as it stands (its python/ with its built _core), in its own child process, so two versions
of the package never meet in one interpreter. Rounds alternate the checkouts (A B, B A, ...), so
both see the same machine; each round loads the bundle, warms up, and times Recommender.recommend
calls at batch 1 and recommend_batch at batch 8 (beam 20, k 10, 2 threads) over the first test
histories of --dataset (its test cases under the benchmarks' protocol), then answers every test
case. Reports the median per-call latency
of each checkout over all rounds, the after / before ratio, HR@10 / NDCG@10 of each on the test
cases, and whether every answer (items and scores) is identical. Writes
benchmarks/results/ab_latency.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the benchmarks package is at the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import machine_info, median, table, write_json  # noqa: E402

BATCHES = (1, 8)
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def worker(spec: dict) -> dict:
    """One round in a child process: the checkout's own genrec_lite on the bundle."""
    from genrec_lite.runtime import Recommender

    rec = Recommender.load(spec["bundle"], n_threads=spec["threads"])
    try:
        rec.set_cold_start(None)  # the model's answers alone: the mixture has its own benchmark
        # a bundle trained with user profiles gets each user's record (the Recommender writes it
        # with the bundle's profile template)
        use = rec.bundle.manifest.use_profiles
        reqs = [{"history": h, "profile": p if use else None, "k": 10, "beam": 20}
                for h, _, p in spec["cases"][:spec["n_timed"]]]
        for r in reqs[-4:]:  # first touch of the mmap'd weights
            rec.recommend_batch([r])
        out: dict = {"ms": {}, "answers": None}
        for batch in BATCHES:
            chunks = [reqs[s:s + batch] for s in range(0, len(reqs), batch)][:spec["calls"]]
            ms = []
            for c in chunks:
                t = time.perf_counter()
                rec.recommend_batch(c)
                ms.append((time.perf_counter() - t) * 1e3)
            out["ms"][str(batch)] = ms
        cases = [{"history": h, "profile": p if use else None, "k": 10, "beam": 20}
                 for h, _, p in spec["cases"]]
        out["answers"] = [[[x.item_id, round(float(x.score), 5)] for x in a]
                          for s in range(0, len(cases), 32)
                          for a in rec.recommend_batch(cases[s:s + 32])]
        return out
    finally:
        rec.close()


def test_cases(name: str, max_len: int = 50) -> list[tuple[list[int], int, dict | None]]:
    """(the newest max_len history items, target, the user's profile record or None) of each
    test case of the data set under the benchmarks' protocol (benchmarks/baselines/run.py)."""
    from benchmarks.baselines.run import load_protocol

    P = load_protocol(name, DATA)
    profiles = P["dataset"].profiles
    return [([int(i) for i in c.history][-max_len:], int(c.target),
             profiles.get(c.user_id) if profiles is not None else None)
            for c in P["test"] if len(c.history)]


def metrics(answers, cases) -> dict:
    from genrec_lite.eval import rank_metrics

    m = rank_metrics([[i for i, _ in a] for a in answers], [t for _, t, _ in cases])
    return {k: m[k] for k in ("HR@10", "NDCG@10")}


def run_round(checkout: Path, spec_file: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(checkout / "python"), str(checkout)]),
               OMP_NUM_THREADS="2")
    res = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", str(spec_file)],
                         capture_output=True, text=True, env=env, cwd=checkout, timeout=1800)
    if res.returncode != 0:
        raise SystemExit(f"the round in {checkout} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle")
    ap.add_argument("--dataset", choices=["amazon-industrial", "ml-100k"])
    ap.add_argument("--checkout", action="append", default=[], metavar="NAME=DIR",
                    help="two checkouts, each with its _core built into python/genrec_lite")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=40, help="timed calls per batch size and round")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(Path(args.worker).read_text()))))
        return 0
    if not (args.bundle and args.dataset):
        ap.error("--bundle and --dataset are required")
    named = [c.partition("=") for c in args.checkout]
    if len(named) != 2 or any(not n or not p for n, _, p in named):
        ap.error("--checkout NAME=DIR, exactly twice")
    checkouts = {n: Path(p).resolve() for n, _, p in named}
    cases = test_cases(args.dataset)
    spec = {"bundle": str(Path(args.bundle).resolve()), "cases": cases,
            "n_timed": args.calls * max(BATCHES), "threads": args.threads, "calls": args.calls}
    names = list(checkouts)
    ms = {n: {str(b): [] for b in BATCHES} for n in names}
    answers: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        spec_file = Path(tmp) / "spec.json"
        spec_file.write_text(json.dumps(spec))
        for r in range(args.rounds):
            for n in (names if r % 2 == 0 else names[::-1]):
                got = run_round(checkouts[n], spec_file)
                for b, xs in got["ms"].items():
                    ms[n][b] += xs
                answers.setdefault(n, got["answers"])
                if got["answers"] != answers[n]:
                    raise SystemExit(f"{n} answered differently in round {r}: not deterministic")
                print(f"round {r} {n}: " + ", ".join(f"batch {b} {median(xs):.2f} ms"
                                                       for b, xs in got["ms"].items()),
                      file=sys.stderr, flush=True)
    a, b = names
    identical = answers[a] == answers[b]
    rows, result = [], {}
    for batch in map(str, BATCHES):
        ma, mb = median(ms[a][batch]), median(ms[b][batch])
        result[batch] = {a: ma, b: mb, "ratio": mb / ma, "calls": len(ms[a][batch])}
        rows.append([batch, f"{ma:.2f}", f"{mb:.2f}", f"{mb / ma:.3f}", len(ms[a][batch])])
    print(table(["batch", f"{a} p50 ms", f"{b} p50 ms", f"{b} / {a}", "calls each"], rows))
    quality = {n: metrics(answers[n], cases) for n in names}
    for n in names:
        print(f"{n}: HR@10 {quality[n]['HR@10']:.4f}, NDCG@10 {quality[n]['NDCG@10']:.4f} "
              f"on {len(cases)} test cases")
    print(f"answers to every test case identical (items and scores): {identical}")
    write_json("ab_latency", {"benchmark": "ab_latency", "machine": machine_info(),
                              "bundle": spec["bundle"], "dataset": args.dataset,
                              "checkouts": {n: str(p) for n, p in checkouts.items()},
                              "rounds": args.rounds, "threads": args.threads,
                              "p50_ms": result, "test": quality, "n_cases": len(cases),
                              "answers_identical": identical})
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
