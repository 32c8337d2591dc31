"""Batched constrained beam search: the search's own time per request, without a model.

Random logits (normal, sd 3) over a 50k vocabulary, L=3 levels of K=256 codes, two SID tables:
amazon-like (3,686 items, ~10% sharing a SID) and synthetic 100k items. Batch 1 / 8 / 32
requests, beam 20, k 10, without and with a deny list of 100 random items per request. The SID
tokens sit at the end of the vocabulary, one level after the other, as tokenizer.add_tokens
puts them; a last set of rows scatters them at random over the vocabulary instead (a stress
case: one cache line per logit read). Each search reads fresh logit rows from a 140 MB array,
as a model's output would be: not in cache.

"step" is the time inside the three step() calls (what a serving loop adds to the model's
time): the allowed-code softmax and selection, the NaN/+inf checks, and the raw log-probability,
one whole-row logsumexp over the 50k logits per row that keeps a candidate; "total" adds
building the search (filters included) and results(). Times are medians over repeats, divided
by the batch size.

    python benchmarks/beam_search.py [--quick]

Prints a Markdown table and writes benchmarks/results/beam_search.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: find the benchmarks package from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import machine_info, median, table, write_json  # noqa: E402

from genrec_lite._core import BeamSearch, SidTrie  # noqa: E402

LEVELS, K, VOCAB, BEAM, TOP_K, N_DENY = 3, 256, 50_000, 20, 10, 100


def make_table(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, K, size=(n, LEVELS), dtype=np.int32)
    dup = rng.choice(n, size=n // 10, replace=False)  # ~10% collisions, like amazon-industrial
    codes[dup] = codes[rng.integers(0, n, size=dup.size)]
    ids = np.arange(n, dtype=np.int64)
    return codes, ids


def bench(n_items: int, batch: int, deny: bool, logits: np.ndarray, token_table: np.ndarray,
          trie: SidTrie, repeats: int, layout: str) -> dict:
    rng = np.random.default_rng(batch * 7 + int(deny))
    step_s, total_s = [], []
    for rep in range(repeats + 2):  # the first two are warm-up
        reqs = [{"k": TOP_K, "beam": BEAM, "deny": rng.choice(n_items, N_DENY, replace=False) if deny else None}
                for _ in range(batch)]
        # rotate through the logit rows so consecutive repeats do not reuse the same ones
        off = (rep * 97) % (logits.shape[0] - batch * BEAM)
        t0 = time.perf_counter_ns()
        s = BeamSearch(trie, token_table, reqs)
        t_step = 0
        while not s.done:
            rows = logits[off:off + s.rows]
            a = time.perf_counter_ns()
            s.step(rows)
            t_step += time.perf_counter_ns() - a
        res = s.results()
        t_total = time.perf_counter_ns() - t0
        assert all(len(r["items"]) == TOP_K for r in res)
        if rep >= 2:
            step_s.append(t_step * 1e-9)
            total_s.append(t_total * 1e-9)
    return {"n_items": n_items, "batch": batch, "deny": N_DENY if deny else 0, "token_layout": layout,
            "step_us_per_request": median(step_s) / batch * 1e6,
            "total_us_per_request": median(total_s) / batch * 1e6,
            "step_ms_per_batch": median(step_s) * 1e3,
            "raw_step_s": step_s, "raw_total_s": total_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    args = ap.parse_args()
    repeats = 5 if args.quick else 21
    rng = np.random.default_rng(0)
    tables = {"end": (VOCAB - LEVELS * K + np.arange(LEVELS * K)).reshape(LEVELS, K).astype(np.int32),
              "scattered": rng.permutation(VOCAB)[: LEVELS * K].reshape(LEVELS, K).astype(np.int32)}
    logits = rng.normal(0, 3, size=(32 * BEAM + 200, VOCAB)).astype(np.float32)  # ~140 MB
    results = []
    for n_items in (3_686, 100_000):
        codes, ids = make_table(n_items)
        trie = SidTrie(codes, ids, codebook_sizes=K)
        for batch in (1, 8, 32):
            for deny in (False, True):
                results.append(bench(n_items, batch, deny, logits, tables["end"], trie, repeats, "end"))
        results.append(bench(n_items, 32, False, logits, tables["scattered"], trie, repeats, "scattered"))

    print(f"Beam search, L={LEVELS}, K={K}, vocab {VOCAB:,}, beam {BEAM}, k {TOP_K}, random logits; "
          f"median of {repeats}\n")
    print(table(["items", "batch", "deny list", "SID tokens", "step (us/request)", "total (us/request)",
                 "step (ms/batch)"],
                [[r["n_items"], r["batch"], r["deny"], r["token_layout"], r["step_us_per_request"],
                  r["total_us_per_request"], r["step_ms_per_batch"]] for r in results]))
    path = write_json("beam_search", {
        "benchmark": "beam_search", "machine": machine_info("nanobind"),
        "levels": LEVELS, "codebook_size": K, "vocab": VOCAB, "beam": BEAM, "k": TOP_K,
        "deny_items": N_DENY, "repeats": repeats, "quick": args.quick,
        "notes": ("step: time inside BeamSearch.step() over the 3 levels (through the Python binding, "
                  "float32 logits read in place; includes the raw log-probability's whole-row logsumexp "
                  "for each row that keeps a candidate); total: + construction (deny overlay) + results(); "
                  "per request = per batch / batch size; SID tokens 'end': consecutive at the end of "
                  "the vocabulary (as added tokens are), 'scattered': random ids (stress case)"),
        "results": results})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
