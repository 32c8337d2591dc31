"""Decode latency: the C++ constrained beam search over llama.cpp against Hugging Face generate.

For each bundle (and the checkpoint it came from), on real request histories (amazon test cases):
  * genrec-lite: Recommender.recommend_batch at batch 1, 8, 32, beam 20, k 10, 1 and 2 threads;
    p50/p95 latency per call and requests/s;
  * batch 1 with and without the prompt-prefix cache (every prompt decoded whole), calls
    interleaved so that both see the same machine: the baseline of that optimisation;
  * the C++ search on contexts of 4096 KV cells and of the runtime's default, interleaved, at
    batch 1 and the largest batch: the baseline of the smaller default (own time);
  * floor: the same llama.cpp decode calls and KV operations replayed without the search (what
    the model alone costs on that token schedule); "search share" = (search - floor) / search;
  * Hugging Face: model.generate(num_beams=20, num_return_sequences=10, max_new_tokens=levels,
    prefix_allowed_tokens_fn=<the trie>) on the same weights in float32, batch 1.

    python benchmarks/decode_latency.py --bundle compact-f16=runs/amazon-f16 \
        --bundle compact-q8=runs/amazon-q8 [--requests 64] [--hf-requests 16]

Prints a Markdown table and writes benchmarks/results/decode_latency.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: find the benchmarks package from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import machine_info, request_histories, table, write_json  # noqa: E402

DECODER = "genrec-lite C++ / llama.cpp"
NO_PREFIX = "genrec-lite C++ / llama.cpp, no prefix cache"
CELLS = "genrec-lite C++ / llama.cpp, 4096 KV cells"


def percentile(xs, q):
    return float(np.percentile(np.asarray(xs), q))


def run_runtime(bundle: Path, histories, threads: int, batch: int, repeats_min: int,
                budget_s: float) -> dict:
    from genrec_lite.runtime import Recommender
    from genrec_lite.runtime.llama_backend import LlamaModel

    rec = Recommender.load(bundle, n_threads=threads)
    be = rec.backend
    # The per-call breakdown (C++ time, decode time, replayed floor) comes from a second model
    # that sees the same request stream, so its prefix cache is in the state the timed call saw
    # (a second search of the same prompt on `rec` would find that whole prompt cached).
    probe = LlamaModel(Path(bundle) / "model.gguf", n_threads=threads)
    reqs = [{"history": h, "k": 10, "beam": 20} for h in histories]
    chunks = [reqs[s:s + batch] for s in range(0, len(reqs), batch)]
    chunks = [c for c in chunks if len(c) == batch] or chunks[:1]
    # warm-up (first touch of the mmap'd weights) on the last chunk: the first timed call must
    # not find its own prompt cached
    rec.recommend_batch(chunks[-1])
    state = rec.catalog.state
    n_views = len(state.views)
    # a multi-view bundle searches every view (each keeps its whole beam for the fusion)
    view_k = 10 if n_views == 1 else 20

    def probe_call(c, record: bool):
        """The C++ searches one recommend_batch(c) makes, summed over the views."""
        total = {"total_s": 0.0, "decode_s": 0.0, "decoded_tokens": 0, "floor_s": 0.0}
        for v in range(n_views):
            prompts = [be.tokenize(rec._prompt(state, q["history"], None, v)) for q in c]
            base, delta = state.tries[v]
            out = probe.search(base, rec.token_tables[v], prompts,
                               [{"k": view_k, "beam": 20}] * len(c), record=record, delta=delta)
            for key in ("total_s", "decode_s", "decoded_tokens"):
                total[key] += out[1][key]
            if record:
                total["floor_s"] += probe.replay(out[2])["total_s"]
        return total

    probe_call(chunks[-1], record=False)
    lat, search_s, decode_s, floors, tok_rate, tokens = [], [], [], [], [], []
    t_start = time.perf_counter()

    def enough():  # at least 3 calls; then min-calls, or the time budget, whichever comes first
        return len(lat) >= 3 and (len(lat) >= repeats_min or time.perf_counter() - t_start > budget_s)

    while not enough():
        for c in chunks:
            state = rec.catalog.state
            t0 = time.perf_counter()
            rec.recommend_batch(c)
            lat.append(time.perf_counter() - t0)
            # the C++ call alone, its model time, and the replayed floor of the same schedule
            stats = probe_call(c, record=True)
            search_s.append(stats["total_s"])
            decode_s.append(stats["decode_s"])
            tok_rate.append(stats["decoded_tokens"] / stats["decode_s"])
            tokens.append(stats["decoded_tokens"] / len(c))
            floors.append(stats["floor_s"])
            if enough():
                break
    rec.close()
    probe.close()
    p50 = statistics.median(lat)
    s50, f50 = statistics.median(search_s), statistics.median(floors)
    return {"batch": batch, "threads": threads, "views": n_views, "calls": len(lat),
            "p50_ms": p50 * 1e3,
            "p95_ms": percentile(lat, 95) * 1e3, "req_per_s": batch / p50,
            "cpp_search_p50_ms": s50 * 1e3, "llama_decode_p50_ms": statistics.median(decode_s) * 1e3,
            "floor_p50_ms": f50 * 1e3, "search_share": (s50 - f50) / s50,
            # the C++ call's own work: everything but llama_decode (trie, scoring, KV bookkeeping)
            "search_own_share": (s50 - statistics.median(decode_s)) / s50,
            # tokens llama_decode processes per second: flat across batch sizes means the model
            # is compute-bound already at batch 1 (its 20 beams are one batched decode)
            "decode_tokens_per_s": statistics.median(tok_rate),
            "tokens_per_request": statistics.median(tokens)}


def run_prefix_ab(bundle: Path, histories, threads: int, n: int) -> dict:
    """Batch-1 latency with and without the prefix cache, calls interleaved (A, B, A, B, ...) so
    that both see the same machine state; the cache-off figures form the row."""
    from genrec_lite.runtime import Recommender

    recs = {on: Recommender.load(bundle, n_threads=threads, prefix_cache=on) for on in (True, False)}
    lat: dict = {True: [], False: []}
    for on in (True, False):
        recs[on].recommend(histories[-1], k=10, beam=20)  # warm-up on a request not timed
    for i in range(n):
        h = histories[i % len(histories)]
        for on in ((True, False) if i % 2 == 0 else (False, True)):
            t0 = time.perf_counter()
            recs[on].recommend(h, k=10, beam=20)
            lat[on].append(time.perf_counter() - t0)
    for r in recs.values():
        r.close()
    on50, off50 = statistics.median(lat[True]), statistics.median(lat[False])
    return {"batch": 1, "threads": threads, "calls": n, "p50_ms": off50 * 1e3,
            "p95_ms": percentile(lat[False], 95) * 1e3, "req_per_s": 1 / off50,
            "interleaved_cached_p50_ms": on50 * 1e3, "prefix_cache_gain": off50 / on50}


def run_cells_ab(bundle: Path, histories, threads: int, batch: int, n: int,
                 cells: int = 4096) -> dict:
    """The C++ search on a context of `cells` KV cells against the runtime's default, calls
    interleaved: llama.cpp's sequence copy/removal walks every cell, so the unused ones show in
    the search's own time. The `cells` figures form the row."""
    from genrec_lite.runtime import Recommender
    from genrec_lite.runtime.llama_backend import DEFAULT_N_CTX, LlamaModel

    rec = Recommender.load(bundle, n_threads=threads)
    models = {DEFAULT_N_CTX: rec.backend.model,
              cells: LlamaModel(Path(bundle) / "model.gguf", n_threads=threads, n_ctx=cells)}
    state = rec.catalog.state
    prompts = [rec.backend.tokenize(rec._prompt(state, h, None)) for h in histories]
    chunks = [prompts[s:s + batch] for s in range(0, len(prompts), batch)]
    chunks = [c for c in chunks if len(c) == batch] or chunks[:1]
    total: dict = {c: [] for c in models}
    own: dict = {c: [] for c in models}
    for m in models.values():  # warm-up on a chunk not timed first
        m.search(state.trie, rec.token_table, chunks[-1], [{"k": 10, "beam": 20}] * len(chunks[-1]))
    for i in range(n):
        c = chunks[i % len(chunks)]
        order = list(models) if i % 2 == 0 else list(models)[::-1]
        for key in order:
            _, stats = models[key].search(state.trie, rec.token_table, c,
                                          [{"k": 10, "beam": 20}] * len(c))[:2]
            total[key].append(stats["total_s"])
            own[key].append(stats["total_s"] - stats["decode_s"])
    models[cells].close()
    rec.close()
    med = {k: statistics.median(v) for k, v in total.items()}
    own50 = {k: statistics.median(v) for k, v in own.items()}
    return {"batch": batch, "threads": threads, "calls": n, "n_ctx": cells,
            "p50_ms": med[cells] * 1e3, "p95_ms": percentile(total[cells], 95) * 1e3,
            "req_per_s": batch / med[cells], "cpp_search_p50_ms": med[cells] * 1e3,
            "own_p50_ms": own50[cells] * 1e3,
            "search_own_share": own50[cells] / med[cells], "default_n_ctx": DEFAULT_N_CTX,
            "interleaved_default_search_p50_ms": med[DEFAULT_N_CTX] * 1e3,
            "interleaved_default_own_p50_ms": own50[DEFAULT_N_CTX] * 1e3,
            "cells_gain": med[cells] / med[DEFAULT_N_CTX]}


def run_hf(ckpt: Path, histories, threads: int, n: int, budget_s: float, ours=None) -> dict:
    """HF generate at batch 1; with `ours` (a function of a history), each HF call is followed
    by one runtime call on the same history, so that the speed-up compares calls made side by
    side rather than minutes apart on a noisy machine."""
    import torch

    from genrec_lite.prompts import PromptSet
    from genrec_lite.train.checkpoint import load_model

    torch.set_num_threads(threads)
    model, tok, views, meta = load_model(ckpt)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.eval()
    prompts = PromptSet.load(meta["prompts"])
    eos = [tok.eos_token_id]
    # generate() searches one SID table: a multi-view model is searched once per view (the
    # fusion of the views' lists costs microseconds and is left out)
    per_view = []
    for sids in views:
        levels = len(sids.level_sizes)
        table_ids = [tok.convert_tokens_to_ids([sids.token(lv, c) for c in range(size)])
                     for lv, size in enumerate(sids.level_sizes)]
        code_of = {t: c for lv in range(levels) for c, t in enumerate(table_ids[lv])}
        per_view.append((sids, sids.trie(), levels, table_ids, code_of))

    def make_fn(width, trie, levels, table_ids, code_of):
        def allowed(_batch_id, ids):
            gen = ids[width:].tolist()
            if len(gen) >= levels:
                return eos
            prefix = np.array([code_of[t] for t in gen], dtype=np.int32)
            return [table_ids[len(gen)][c] for c in trie.allowed_next(prefix).tolist()]
        return allowed

    def call(h) -> float:
        spent = 0.0
        for sids, trie, levels, table_ids, code_of in per_view:
            text = prompts.next_item_prompt([sids.sid(i) for i in h])
            enc = tok(text, return_tensors="pt")
            width = enc["input_ids"].shape[1]
            fn = make_fn(width, trie, levels, table_ids, code_of)
            t0 = time.perf_counter()
            with torch.no_grad():
                model.generate(**enc, num_beams=20, num_return_sequences=10 if len(views) == 1
                               else 20, max_new_tokens=levels, do_sample=False,
                               prefix_allowed_tokens_fn=fn,
                               pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else eos[0],
                               early_stopping=True)
            spent += time.perf_counter() - t0
        return spent

    call(histories[0])  # warm-up, as the runtime gets one (lazy initialisation is not decoding)
    if ours is not None:
        ours(histories[-1])
    lat, ours_lat = [], []
    t_start = time.perf_counter()
    for h in histories[:n]:
        if len(lat) >= 3 and time.perf_counter() - t_start > budget_s:
            break
        lat.append(call(h))
        if ours is not None:
            t0 = time.perf_counter()
            ours(h)
            ours_lat.append(time.perf_counter() - t0)
    p50 = statistics.median(lat)
    out = {"batch": 1, "threads": threads, "calls": len(lat), "p50_ms": p50 * 1e3,
           "p95_ms": percentile(lat, 95) * 1e3, "req_per_s": 1 / p50}
    if ours_lat:
        out["interleaved_genrec_p50_ms"] = statistics.median(ours_lat) * 1e3
        out["speedup"] = out["p50_ms"] / out["interleaved_genrec_p50_ms"]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", action="append", required=True,
                    help="NAME=BUNDLE_DIR (repeatable); the bundle's checkpoint feeds the HF row")
    ap.add_argument("--requests", type=int, default=64, help="distinct request histories")
    ap.add_argument("--min-calls", type=int, default=8, help="timed calls per configuration")
    ap.add_argument("--budget", type=float, default=60.0,
                    help="seconds per configuration after which fewer calls (>= 3) will do")
    ap.add_argument("--hf-requests", type=int, default=32)
    ap.add_argument("--ab-calls", type=int, default=64,
                    help="interleaved batch-1 calls with and without the prefix cache")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--no-hf", action="store_true")
    ap.add_argument("--merge", action="store_true",
                    help="replace only these models' rows in the existing results JSON")
    ap.add_argument("--drop", nargs="+", default=[], metavar="MODEL",
                    help="with --merge: also remove these models' earlier rows (a bundle measured "
                         "again under another name)")
    args = ap.parse_args(argv)
    if args.drop and not args.merge:
        raise SystemExit("--drop only makes sense with --merge")
    earlier = []  # the rows --merge keeps, read (and --drop checked) before the long measurement
    if args.merge:
        from _common import RESULTS
        import json

        earlier = json.loads((RESULTS / "decode_latency.json").read_text())["runs"]
        there = {r["model"] for r in earlier}
        if set(args.drop) - there:
            raise SystemExit(f"--drop {sorted(set(args.drop) - there)}: no such rows in "
                             f"decode_latency.json (models there: {sorted(there)})")

    from genrec_lite.runtime import Bundle
    from genrec_lite.sid import SidViews

    results = {"benchmark": "decode_latency", "machine": machine_info("llama-cpp-python", "torch",
                                                                    "transformers"), "runs": []}

    def record(row: dict, message: str, **labels) -> None:
        row.update(labels)
        results["runs"].append(row)
        print(message, file=sys.stderr, flush=True)

    for spec in args.bundle:
        name, _, path = spec.partition("=")
        path = Path(path)
        b = Bundle.open(path, verify=False)
        sids = SidViews.load(path / "sids").primary
        hist = request_histories(sids.item_ids.tolist(), args.requests)
        quant = b.manifest.model["gguf"].get("quant")
        ckpt = Path(b.manifest.checkpoint.path)
        for threads in args.threads:
            for batch in args.batches:
                r = run_runtime(path, hist, threads, batch, args.min_calls, args.budget)
                record(r, f"{name} t{threads} b{batch}: p50 {r['p50_ms']:.1f} ms, "
                          f"{r['req_per_s']:.1f} req/s, search share {r['search_share']:.3%}",
                       model=name, quant=quant, decoder=DECODER)
                if batch == 1:
                    ab = run_prefix_ab(path, hist, threads, args.ab_calls)
                    record(ab, f"{name} t{threads} b1 prefix cache off/on (interleaved): "
                               f"{ab['p50_ms']:.1f} / {ab['interleaved_cached_p50_ms']:.1f} ms",
                           model=name, quant=quant, decoder=NO_PREFIX)
                if batch in (1, max(args.batches)):
                    n = args.ab_calls if batch == 1 else max(3, args.min_calls)
                    cab = run_cells_ab(path, hist, threads, batch, n)
                    record(cab, f"{name} t{threads} b{batch} own time with {cab['n_ctx']} / "
                                f"{cab['default_n_ctx']} KV cells (interleaved): "
                                f"{cab['own_p50_ms']:.2f} / "
                                f"{cab['interleaved_default_own_p50_ms']:.2f} ms",
                           model=name, quant=quant, decoder=CELLS)
            if not args.no_hf and ckpt.is_dir():
                from genrec_lite.runtime import Recommender

                ours = Recommender.load(path, n_threads=threads)
                try:
                    h = run_hf(ckpt, hist, threads, args.hf_requests, args.budget,
                               ours=lambda x: ours.recommend(x, k=10, beam=20))
                finally:
                    ours.close()
                record(h, f"{name} HF t{threads}: p50 {h['p50_ms']:.1f} ms, interleaved "
                          f"genrec-lite {h['interleaved_genrec_p50_ms']:.1f} ms",
                       model=name, quant="f32 (torch)", decoder="HF generate + prefix_allowed_tokens_fn")
    # speed-ups at batch 1 against HF on the same weights and threads, from the interleaved calls
    for r in results["runs"]:
        if r["decoder"] == DECODER and r["batch"] == 1:
            for h in results["runs"]:
                if (h["decoder"].startswith("HF") and h["model"] == r["model"] and
                        h["threads"] == r["threads"] and "speedup" in h):
                    r["speedup_vs_hf"] = h["speedup"]
    for r in results["runs"]:
        if r["decoder"] == DECODER and r["batch"] > 1:
            one = [x for x in results["runs"] if x["decoder"] == DECODER and
                   x["model"] == r["model"] and x["threads"] == r["threads"] and x["batch"] == 1]
            if one:
                r["throughput_gain_vs_batch1"] = r["req_per_s"] / one[0]["req_per_s"]
    print(table(["model", "quant", "decoder", "threads", "batch", "p50 ms", "p95 ms", "req/s",
                 "floor p50 ms", "search share", "own share", "decode tok/s", "vs HF", "vs batch 1",
                 "prefix cache gain", "own ms, 4096 / default cells"],
                [[r["model"], r["quant"], r["decoder"], r["threads"], r["batch"],
                  f"{r['p50_ms']:.1f}", f"{r['p95_ms']:.1f}", f"{r['req_per_s']:.1f}",
                  f"{r['floor_p50_ms']:.1f}" if "floor_p50_ms" in r else "",
                  f"{r['search_share']:.2%}" if "search_share" in r else "",
                  f"{r['search_own_share']:.2%}" if "search_own_share" in r else "",
                  f"{r['decode_tokens_per_s']:.0f}" if "decode_tokens_per_s" in r else "",
                  f"{r['speedup_vs_hf']:.1f}x" if "speedup_vs_hf" in r else "",
                  f"{r['throughput_gain_vs_batch1']:.2f}x" if "throughput_gain_vs_batch1" in r else "",
                  f"{r['prefix_cache_gain']:.2f}x" if "prefix_cache_gain" in r else "",
                  f"{r['own_p50_ms']:.2f} / {r['interleaved_default_own_p50_ms']:.2f}"
                  if "own_p50_ms" in r else ""]
                 for r in results["runs"]]))
    if args.merge:
        ours = {r["model"] for r in results["runs"]} | set(args.drop)
        results["runs"] = [r for r in earlier if r["model"] not in ours] + results["runs"]
    write_json("decode_latency", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
