"""Residual-quantizer lookup: C++ core vs vectorised numpy (one BLAS thread) vs faiss.

Latency for 1 and 16 items (median over samples of 64 calls on different inputs, microseconds)
and throughput for 100k items (items/s), at D=32 and D=384 with L=3, K=256. The methods take
turns sample by sample. numpy gets the squared codeword norms precomputed
(its strongest form); faiss runs its ResidualQuantizer greedily (beam size 1) on one thread.

    python benchmarks/rq_lookup.py [--quick]

Prints a Markdown table and writes benchmarks/results/rq_lookup.json.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # fall back to the environment, before numpy is imported
    threadpool_limits = None
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    os.environ["OMP_NUM_THREADS"] = "1"

import numpy as np

if __package__ in (None, ""):  # run as a script: find the benchmarks package from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import machine_info, median, table, timings, write_json  # noqa: E402

from genrec_lite._core import ResidualQuantizer  # noqa: E402
from genrec_lite.sid.quantize import residual_encode_numpy  # noqa: E402


def _test_reference():
    """tests/_reference.py, loaded from its file: the exact rule is test-only code (tests/ is no
    package), and the agreement column is measured with it."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "tests" / "_reference.py"
    spec = importlib.util.spec_from_file_location("_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


residual_encode_reference = _test_reference().residual_encode_reference

try:
    import faiss
except ImportError:
    faiss = None

LEVELS, K = 3, 256


def make_data(dim: int, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    cb = rng.standard_normal((LEVELS, K, dim)).astype(np.float32)
    cb *= (0.5 ** np.arange(LEVELS, dtype=np.float32))[:, None, None]  # shrinking residuals
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return cb, x


def faiss_quantizer(cb: np.ndarray):
    rq = faiss.ResidualQuantizer(cb.shape[2], cb.shape[0], int(np.log2(cb.shape[1])))
    faiss.copy_array_to_vector(np.ascontiguousarray(cb).ravel(), rq.codebooks)
    rq.is_trained = True
    rq.max_beam_size = 1  # greedy, like ours
    return rq


def bench_config(dim: int, n_big: int, reps_small: int, reps_big: int) -> dict:
    cb, x = make_data(dim, n_big)
    q = ResidualQuantizer(cb)
    norms = np.einsum("lkd,lkd->lk", cb, cb)
    rq = faiss_quantizer(cb) if faiss is not None else None
    rows = [x[i:i + 1] for i in range(64)]
    vecs = [x[i] for i in range(64)]  # 1-D: the serving call
    batches = [x[16 * i:16 * i + 16] for i in range(64)]

    def per_call(fn, items):
        """One sample = a loop over 64 different inputs; the time per call is sample / 64."""
        def run():
            for a in items:
                fn(a)
        return run

    methods = {
        "cpp": lambda a: q.encode(a),
        "numpy": lambda a: residual_encode_numpy(cb, a, norms=norms),
    }
    if rq is not None:
        methods["faiss"] = lambda a: rq.compute_codes(a)

    # The methods take turns sample by sample, so that a change of machine load hits them alike.
    cases = {}
    for name, fn in methods.items():
        cases[(name, "1")] = (per_call(fn, vecs if name == "cpp" else rows), reps_small, 64)
        cases[(name, "16")] = (per_call(fn, batches), max(reps_small // 4, 5), 64)
        cases[(name, "100k")] = ((lambda f=fn: f(x)), reps_big, 1)
    cases[("cpp_2threads", "100k")] = (lambda: q.encode(x, n_threads=2), reps_big, 1)
    raw: dict[str, dict[str, list[float]]] = {}
    for size in ("1", "16", "100k"):
        todo = {key: val for key, val in cases.items() if key[1] == size}
        for (name, _), (fn, reps, div) in todo.items():
            timings(fn, 0, warmup=2 if size != "100k" else 1)
        reps = max(v[1] for v in todo.values())
        for _ in range(reps):
            for (name, _), (fn, _, div) in todo.items():
                raw.setdefault(name, {}).setdefault(size, []).append(timings(fn, 1, warmup=0)[0] / div)

    # agreement with the exact rule, on a subset
    sub = x[:5000]
    ref = residual_encode_reference(cb, sub)
    agree = {"cpp": float((q.encode(sub) == ref).all(axis=1).mean()),
             "numpy": float((residual_encode_numpy(cb, sub) == ref).all(axis=1).mean())}
    if rq is not None:
        agree["faiss"] = float((rq.compute_codes(sub).astype(np.int32) == ref).all(axis=1).mean())

    med = {m: {k: median(v) for k, v in d.items()} for m, d in raw.items()}
    summary = {
        "latency_1_us": {m: med[m]["1"] * 1e6 for m in methods},
        "latency_16_us": {m: med[m]["16"] * 1e6 for m in methods},
        "items_per_s_100k": {m: n_big / med[m]["100k"] for m in list(methods) + ["cpp_2threads"]},
    }
    ratios = {
        "numpy_over_cpp_1": med["numpy"]["1"] / med["cpp"]["1"],
        "numpy_over_cpp_16": med["numpy"]["16"] / med["cpp"]["16"],
        "numpy_over_cpp_100k": med["numpy"]["100k"] / med["cpp"]["100k"],
    }
    if rq is not None:
        ratios.update({
            "faiss_over_cpp_1": med["faiss"]["1"] / med["cpp"]["1"],
            "faiss_over_cpp_16": med["faiss"]["16"] / med["cpp"]["16"],
            "faiss_over_cpp_100k": med["faiss"]["100k"] / med["cpp"]["100k"],
        })
    return {"dim": dim, "levels": LEVELS, "codebook_size": K, "n_big": n_big,
            "raw_seconds": raw, "median_seconds": med, "summary": summary, "ratios": ratios,
            "agreement_with_reference": agree}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats, 20k items")
    args = ap.parse_args()
    n_big = 20_000 if args.quick else 100_000
    reps_small, reps_big = (20, 1) if args.quick else (100, 3)

    if faiss is not None:
        faiss.omp_set_num_threads(1)
    limits = threadpool_limits(limits=1, user_api="blas") if threadpool_limits else None
    try:
        results = [bench_config(d, n_big, reps_small, reps_big) for d in (32, 384)]
    finally:
        if limits is not None:
            limits.unregister()

    headers = ["D", "method", "1 item (µs)", "16 items (µs)", f"{n_big // 1000}k items (items/s)",
               "agrees with exact rule"]
    rows = []
    for r in results:
        s = r["summary"]
        for m in ("cpp", "numpy", "faiss", "cpp_2threads"):
            if m not in s["items_per_s_100k"]:
                continue
            rows.append([r["dim"], m, s["latency_1_us"].get(m), s["latency_16_us"].get(m),
                         s["items_per_s_100k"][m], r["agreement_with_reference"].get(m)])
    print(f"RQ lookup, L={LEVELS}, K={K}; numpy and faiss on one thread"
          + ("" if faiss is not None else " (faiss not installed: skipped)"))
    print()
    print(table(headers, rows))
    print()
    print(table(["D", "numpy/cpp 1 item", "numpy/cpp 16", "numpy/cpp 100k", "faiss/cpp 1 item",
                 "faiss/cpp 100k"],
                [[r["dim"], r["ratios"]["numpy_over_cpp_1"], r["ratios"]["numpy_over_cpp_16"],
                  r["ratios"]["numpy_over_cpp_100k"], r["ratios"].get("faiss_over_cpp_1"),
                  r["ratios"].get("faiss_over_cpp_100k")] for r in results]))
    info = machine_info("faiss-cpu", "threadpoolctl", "nanobind")
    info["blas_threads_limited_by"] = "threadpoolctl" if threadpool_limits else "environment"
    path = write_json("rq_lookup", {
        "benchmark": "rq_lookup", "machine": info,
        "notes": ("cpp 1-item latency is the 1-D serving call q.encode(x[i]); numpy gets precomputed "
                  "codeword norms; faiss ResidualQuantizer with max_beam_size=1, 1 OpenMP thread"
                  + ("" if faiss is not None else "; faiss missing, skipped")),
        "quick": args.quick, "results": results})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
