#!/usr/bin/env python
"""Quality of the pretrained backbone (SmolLM2-135M-Instruct + LoRA) on amazon-industrial, on a GPU.

    python benchmarks/pretrained_quality.py                   # the RUNS grid, all at once on one GPU
    python benchmarks/pretrained_quality.py --max-minutes 4.5 # what the H200 run used (10-min window)
    python benchmarks/pretrained_quality.py --collect         # tables from the run folder only
    python benchmarks/pretrained_quality.py --quick           # smoke test (CPU is fine): 2 steps

The protocol is benchmarks/quality.py's: collaborative SIDs built from train < 2,000,000 (quality.py
builds and caches them); each setting is trained on the tuning split (train < 1,000,000, scored on
all valid.jsonl cases) and on the final split (train < 2,000,000, scored on all 4,533 test.jsonl
cases); the setting with the best validation NDCG@10 is the result, and its title -> SID exact match
is measured. Training and scoring run as `genrec-lite train` / `genrec-lite eval` subprocesses, all
at once: one process of a 135M model leaves an H200 mostly idle. A run that the time limit stopped
before its last epoch is reported as stopped and not scored (its learning rate never decayed).
Writes benchmarks/results/pretrained_quality.json and .md; artefacts in runs/pretrained-quality/.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a script: find the benchmarks package from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.baselines.run import PUBLISHED, machine_info  # noqa: E402
from genrec_lite.eval import metrics_table  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "amazon-industrial"
RESULTS = ROOT / "benchmarks" / "results"
WORK = ROOT / "runs" / "pretrained-quality" / "amazon-industrial"
SIDS = ROOT / "runs" / "quality" / "amazon-industrial" / "sids-none-collab1"

SPLITS = {"tune": "temporal:1000000", "test": "temporal:2000000"}
NEXT = "next_item=1"
ALIGN = "next_item=1,sid_to_title=0.1,title_to_sid=0.1"
# (name, split, max_history, lr, tasks). The documented command (10 items, the LoRA default
# lr 3e-4), a higher lr, and the compact model's 2-item prompts; the alignment ablation.
RUNS = [
    ("tune-h10-lr3e-4", "tune", 10, 3e-4, NEXT),
    ("tune-h10-lr1e-3", "tune", 10, 1e-3, NEXT),
    ("tune-h2-lr1e-3", "tune", 2, 1e-3, NEXT),
    ("test-h10-lr3e-4", "test", 10, 3e-4, NEXT),
    ("test-h10-lr1e-3", "test", 10, 1e-3, NEXT),
    ("test-h2-lr1e-3", "test", 2, 1e-3, NEXT),
    ("test-h2-lr1e-3-align", "test", 2, 1e-3, ALIGN),
]
EPOCHS, BATCH, WARMUP = 10, 32, 0.12


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cli(*args) -> list:
    return [sys.executable, "-m", "genrec_lite.cli", *args]


def train_cmd(name, split, max_history, lr, tasks, args) -> list[str]:
    cmd = cli("train", "--backbone", args.backbone, "--data", args.data, "--sids", args.sids,
              "--split", SPLITS[split], "--prompts", "en-seq", "--tasks", tasks,
              "--max-history", max_history, "--lr", lr, "--epochs", planned_epochs(args),
              "--warmup", WARMUP, "--batch-size", BATCH, "--eval-cases", 0, "--threads", 2,
              "--no-resume", "--quiet", "--out", args.work / name)
    if args.max_minutes:
        cmd += ["--max-minutes", args.max_minutes]
    if args.quick:
        cmd += ["--max-steps", 2]
    return [str(c) for c in cmd]


def eval_cmd(name, split, args) -> list[str]:
    cmd = cli("eval", "--model", args.work / name, "--data", args.data, "--batch-size", 64,
              "--quiet", "--out", args.work / f"{name}.metrics.json")
    if split == "tune":
        cmd += ["--cases", Path(args.data) / "valid.jsonl"]
    if args.quick:
        cmd += ["--limit", 8]
    return [str(c) for c in cmd]


def run_all(cmds: dict[str, list[str]], suffix: str, args) -> None:
    """Run the commands, at most args.parallel at once (0: all), each logging to
    WORK/NAME.SUFFIX.log, whose last line is then its exit status."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", TORCH_ALLOW_TF32_CUBLAS_OVERRIDE="1",
               PYTHONPATH=os.pathsep.join([str(ROOT / "python"), os.environ.get("PYTHONPATH", "")]))
    todo, running = list(cmds.items()), {}
    limit = args.parallel or len(todo)
    while todo or running:
        while todo and len(running) < limit:
            name, cmd = todo.pop(0)
            f = open(args.work / f"{name}.{suffix}.log", "w", encoding="utf-8")
            f.write(" ".join(cmd) + "\n")
            f.flush()
            running[name] = (subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env), f)
        time.sleep(1)
        for name, (p, f) in list(running.items()):
            if p.poll() is not None:
                f.write(f"exit {p.returncode}\n")
                f.close()
                del running[name]
                log(f"{name} {suffix}: exit {p.returncode}")


def read_training(path: Path, epochs: int) -> dict:
    """Epochs, steps and minutes from a train log (finished = every epoch ran), and the exit
    status run_all wrote as its last line (None: not there)."""
    if not path.is_file():
        return {"finished": False}
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.rstrip().splitlines()
    status = re.fullmatch(r"exit (-?\d+)", lines[-1]) if lines else None
    out = {"finished": False, "exit": int(status[1]) if status else None}
    ep = [(int(m[1]), int(m[2]), float(m[4]))
          for m in re.finditer(r"epoch (\d+): epoch=\d+, step=(\d+), loss=([\d.]+), minutes=([\d.]+)", text)]
    if ep:
        last = ep[-1]
        out.update(epochs_done=last[0] + 1, steps=last[1], minutes=last[2],
                   finished=last[0] + 1 == epochs)
    return out


def planned_epochs(args) -> int:
    return 1 if args.quick else EPOCHS


def collect(args) -> dict:
    epochs = planned_epochs(args)
    runs = {}
    for name, split, mh, lr, tasks in RUNS:
        train_log = args.work / f"{name}.train.log"
        r = {"split": SPLITS[split], "max_history": mh, "lr": lr, "tasks": tasks,
             "training": read_training(train_log, epochs)}
        m = args.work / f"{name}.metrics.json"
        if m.is_file():
            r["metrics"] = {k: v for k, v in json.loads(m.read_text()).items()
                            if k.startswith(("HR@", "NDCG@", "n_cases", "seconds"))}
        runs[name] = r
    tuned = {n[len("tune-"):]: r["metrics"]["NDCG@10"] for n, r in runs.items()
             if n.startswith("tune-") and "metrics" in r}
    chosen = max(tuned, key=tuned.get) if tuned else None
    title = args.work / f"test-{chosen}.title.json"
    meta = args.work / "run.json"
    return {"benchmark": "pretrained_quality", "backbone": args.backbone,
            "run": json.loads(meta.read_text()) if meta.is_file() else None,
            "epochs": epochs, "batch_size": BATCH, "warmup": WARMUP, "runs": runs,
            "chosen_by_valid_ndcg10": chosen,
            "title_to_sid": json.loads(title.read_text()) if title.is_file() else None}


def title_search(name: str, args) -> None:
    from genrec_lite.data import resolve_dataset
    from genrec_lite.prompts import PromptSet
    from genrec_lite.train.checkpoint import load_model
    from genrec_lite.train.evaluate import title_to_sid_accuracy

    model, tok, sids, meta = load_model(args.work / name, device="auto")
    dataset = resolve_dataset(args.data)
    res = title_to_sid_accuracy(model, tok, sids, dataset.catalog, PromptSet.load(meta["prompts"]),
                                beam=20, batch_size=128, limit=50 if args.quick else None)
    (args.work / f"{name}.title.json").write_text(json.dumps(res, indent=1))


def table(report: dict) -> str:
    rows = {}
    quality = RESULTS / "quality.json"
    if quality.is_file():  # the CPU run's baselines and compact model, same split and cases
        models = json.loads(quality.read_text())["datasets"]["amazon-industrial"]["models"]
        rows.update({f"{k} (quality.py run)": models[k]["test"]
                     for k in ("Markov", "SASRec", "genrec-lite compact") if k in models})
    for name, r in report["runs"].items():
        if name.startswith("test-") and "metrics" in r:
            mark = " (chosen on valid)" if name == f"test-{report['chosen_by_valid_ndcg10']}" else ""
            rows[f"SmolLM2 LoRA {name[len('test-'):]}{mark}"] = r["metrics"]
    rows.update(PUBLISHED)
    text = "### amazon-industrial, SmolLM2-135M-Instruct + LoRA (test.jsonl cases)\n\n"
    text += metrics_table(rows) + "\n\nRuns (validation: all valid.jsonl cases):\n\n"
    text += "| run | epochs done | minutes | exit | HR@10 | NDCG@10 |\n|---|---|---|---|---|---|\n"
    for name, r in report["runs"].items():
        t, m = r["training"], r.get("metrics", {})
        fmt = lambda k: f"{m[k]:.4f}" if k in m else "not scored"  # noqa: E731
        text += (f"| {name} | {t.get('epochs_done', 0)} of {report['epochs']} | "
                 f"{t.get('minutes', '-')} | {'-' if t.get('exit') is None else t['exit']} | {fmt('HR@10')} | "
                 f"{fmt('NDCG@10')} |\n")
    if report["title_to_sid"]:
        text += (f"\nTitle -> SID exact match (chosen model, {report['title_to_sid']['n_items']} "
                 f"items): {report['title_to_sid']['title_to_sid_accuracy']:.4f}\n")
    return text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backbone", default="smollm2")
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--sids", default=str(SIDS), help="quality.py's collaborative SIDs")
    ap.add_argument("--work", type=Path, default=WORK)
    ap.add_argument("--max-minutes", type=float, default=None,
                    help="wall-clock limit of each training run (runs it stops are not scored)")
    ap.add_argument("--parallel", type=int, default=0,
                    help="runs at once (0: all; a GPU with room for them all is the intended case)")
    ap.add_argument("--collect", action="store_true", help="only read the run folder and report")
    ap.add_argument("--quick", action="store_true", help="smoke test: 1 epoch of 2 steps, 8 cases")
    ap.add_argument("--out", type=Path, default=RESULTS / "pretrained_quality.json")
    args = ap.parse_args(argv)
    if not Path(args.data).is_dir():
        log(f"{args.data} not found: this benchmark needs the shared amazon-industrial data")
        return 1
    if args.quick and args.work == WORK:
        args.work = WORK.parent.parent / "pretrained-quality-quick"
    args.work.mkdir(parents=True, exist_ok=True)
    if not args.collect:
        if not (Path(args.sids) / "semantic_ids.json").is_file():
            log(f"{args.sids} not found: run benchmarks/quality.py --datasets amazon-industrial "
                "first (it builds the collaborative SIDs)")
            return 1
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        (args.work / "run.json").write_text(json.dumps(
            {"machine": machine_info(), "gpu": gpu, "max_minutes": args.max_minutes,
             "tf32": True, "started": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=1))
        run_all({n: train_cmd(n, s, mh, lr, t, args) for n, s, mh, lr, t in RUNS}, "train", args)
        done = {n: s for n, s, *_ in RUNS
                if read_training(args.work / f"{n}.train.log", planned_epochs(args))["finished"]}
        run_all({n: eval_cmd(n, s, args) for n, s in done.items()}, "eval", args)
        chosen = collect(args)["chosen_by_valid_ndcg10"]
        if chosen and f"test-{chosen}" in done:
            title_search(f"test-{chosen}", args)
    report = collect(args)
    if not any("epochs_done" in r["training"] for r in report["runs"].values()):
        log(f"no training logs in {args.work}: nothing to report (the results file is left as is)")
        return 1
    md = table(report)
    print(md, flush=True)
    if not args.quick:
        args.out.write_text(json.dumps(report, indent=1))
        args.out.with_suffix(".md").write_text(md)
        log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
