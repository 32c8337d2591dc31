"""One validation probe of the compact amazon recipe (how quality.py's tuning record is made).

Trains the compact model of benchmarks/quality.py on the tuning split (interactions before
1,000,000) with the given changes, scores its last weights on every valid.jsonl case (4,532) and
appends a line to WORK/results.jsonl. SIDs are built for the tuning split (collaborative vectors
from its interactions only) and cached per configuration under WORK.

    python tools/compact_probe.py NAME [--train JSON] [--sid JSON] [--work DIR]

    python tools/compact_probe.py base
    python tools/compact_probe.py dim128 --sid '{"collab_dim": 128}'
    python tools/compact_probe.py dim128-seed1 --sid '{"collab_dim": 128, "seed": 1}'
    python tools/compact_probe.py layers8 --train '{"compact": {"num_layers": 8}}'
    python tools/compact_probe.py views3 --sid '{"views": 3}'    # + each view alone

--train: TrainConfig fields over quality.py's COMPACT recipe ("compact" merges into its model
config); --sid: SidConfig fields over quality.py's SIDs (RQ-VAE, 3 x 256 codes, no collision
level, collaborative weight 1). One SID build is one draw: the same configuration built again
moves every code (float noise in the embeddings and the SVD), so compare SID changes over
several seeds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a script: the benchmarks package is at the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.quality import COLLAB, COMPACT, DATA, build_sids  # noqa: E402

SPLIT = "temporal:1000000"
DATASET = "amazon-industrial"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("name", help="run folder under --work and the results line's name")
    ap.add_argument("--train", default="{}", help="TrainConfig changes, JSON")
    ap.add_argument("--sid", default="{}", help="SidConfig changes, JSON")
    ap.add_argument("--work", default=str(ROOT / "runs" / "probes"))
    args = ap.parse_args(argv)
    try:
        train_over, sid_over = json.loads(args.train), json.loads(args.sid)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"--train / --sid must be JSON objects: {exc}")
    if not (DATA / DATASET).is_dir():
        raise SystemExit(f"{DATA / DATASET} not found: the probe needs the shared amazon data")

    from dataclasses import replace

    from genrec_lite import pipeline
    from genrec_lite.data import resolve_dataset
    from genrec_lite.train.trainer import TrainConfig

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    dataset = resolve_dataset(DATA / DATASET)
    sids, _ = build_sids(dataset, work, "none", False, COLLAB[DATASET], SPLIT, changes=sid_over)
    settings = dict(COMPACT[DATASET], split=SPLIT)
    model_over = train_over.pop("compact", {})
    settings.update(train_over)
    settings["compact"] = {**COMPACT[DATASET]["compact"], **model_over}
    cfg = TrainConfig(**settings, num_threads=2)
    t = time.perf_counter()
    pipeline.train(dataset, sids, work / args.name, cfg, progress=False, resume=False)
    minutes = (time.perf_counter() - t) / 60
    ckpt = pipeline.load_checkpoint(work / args.name, which="last")
    m = pipeline.evaluate_checkpoint(ckpt, dataset, dataset.valid_cases, beam=20)
    row = {"name": args.name, "train": json.loads(args.train), "sid": sid_over,
           "train_minutes": round(minutes, 1), "HR@10": m["HR@10"], "NDCG@10": m["NDCG@10"],
           "n_cases": m["n_cases"]}
    if len(ckpt.sids) > 1:  # a multi-view model: each view alone too (the fused score is above)
        row["per_view"] = []
        for view in ckpt.sids:
            mv = pipeline.evaluate_checkpoint(replace(ckpt, sids=view), dataset,
                                              dataset.valid_cases, beam=20)
            row["per_view"].append({"HR@10": mv["HR@10"], "NDCG@10": mv["NDCG@10"]})
    print(json.dumps(row))
    with open(work / "results.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
