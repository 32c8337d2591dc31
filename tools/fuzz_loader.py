"""Fuzz the bundle loader: random damage to bundle files, count what loading does.

    python tools/fuzz_loader.py --bundle runs/bundles/amazon-f16 [--trials 300] [--seed 0]

Each trial damages one file of a working copy of the bundle in place (random bytes spliced in,
or the file truncated), makes the manifest agree with the damaged file half of the time (so the
damaged file is parsed rather than refused by its checksum), calls Recommender.load (and, when it
loads, one recommend and preload() of the cold-start encoders), and restores the file. The
contract: every outcome is a successful load or a GenrecError; anything else is a failure. The
same property runs under hypothesis in tests/test_runtime.py. Writes benchmarks/results/fuzz_loader.json.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: the benchmarks package is at the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import machine_info, table, write_json  # noqa: E402

VICTIMS = ["manifest.json", "items.jsonl", "sids/semantic_ids.json", "sids/arrays.npz", "model.gguf"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--trials", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    from genrec_lite.errors import GenrecError
    from genrec_lite.runtime import Recommender

    rng = np.random.default_rng(args.seed)
    src = Path(args.bundle)
    outcomes: dict = collections.defaultdict(collections.Counter)
    failures = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "bundle"
        shutil.copytree(src, work)
        manifest = (src / "manifest.json").read_bytes()
        for trial in range(args.trials):
            name = VICTIMS[int(rng.integers(len(VICTIMS)))]
            original = (src / name).read_bytes()
            pos = int(rng.integers(len(original) + 1))
            if rng.random() < 0.3:
                data = original[:pos]
            else:
                junk = rng.integers(0, 256, size=int(rng.integers(1, 65)), dtype=np.uint8).tobytes()
                data = original[:pos] + junk + original[pos + len(junk):]
            resign = name != "manifest.json" and rng.random() < 0.5
            (work / name).write_bytes(data)
            if resign:
                m = json.loads(manifest)
                m["files"][name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                (work / "manifest.json").write_text(json.dumps(m))
            key = f"{name}{' (re-signed)' if resign else ''}"
            try:
                rec = Recommender.load(work, n_threads=1)
                try:
                    ids = rec.catalog.state.sids.item_ids[:3].tolist()
                    rec.recommend(ids, k=min(5, int(rec.catalog.state.trie.n_active)))
                    rec.preload()  # the cold-start encoders load lazily: load them too
                finally:
                    rec.close()
                outcomes[key]["loaded"] += 1
            except GenrecError as exc:
                outcomes[key][type(exc).__name__] += 1
            except Exception as exc:  # the contract is broken: report it
                outcomes[key]["OTHER " + type(exc).__name__] += 1
                failures.append({"trial": trial, "file": name, "error": repr(exc)[:300]})
            finally:
                (work / name).write_bytes(original)
                (work / "manifest.json").write_bytes(manifest)
    seconds = time.perf_counter() - t0
    rows = [[k, sum(c.values()), ", ".join(f"{n} {v}" for n, v in sorted(c.items()))]
            for k, c in sorted(outcomes.items())]
    print(table(["damaged file", "trials", "outcomes"], rows))
    print(f"{args.trials} trials in {seconds:.0f} s; exceptions other than GenrecError: {len(failures)}")
    out = write_json("fuzz_loader", {"benchmark": "fuzz_loader", "bundle": str(src),
                                     "trials": args.trials, "seed": args.seed,
                                     "seconds": round(seconds, 1), "machine": machine_info(),
                                     "outcomes": {k: dict(c) for k, c in outcomes.items()},
                                     "failures": failures})
    print(f"wrote {out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
