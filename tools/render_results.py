#!/usr/bin/env python3
"""Render benchmarks/results/*.json into the docs' tables (and plots), so no figure is typed twice.

A doc marks each rendered block with two HTML comments; the text between them is replaced (a
space inside an argument is written %20):

    <!-- render: cold-start amazon-industrial natural -->
    ...generated Markdown...
    <!-- /render -->

Blocks (name, then arguments):
  cold-start DATASET SEGMENT [FILE]
                               test HR@10 / NDCG@10 of every model on one cold-start segment
                               (natural or launch) and on all test cases (FILE: a results file
                               of the benchmark, cold_start.json by default)
  cold-start-frontier DATASET SEGMENT
                               what each price (max_cost) buys on that segment's validation:
                               the setting chosen and its all-case and cold-case HR/NDCG@10
  cold-start-latency           cold_start_latency.json: batch-1 p50 with cold start off and
                               under each setting measured, and their ratio
  tuning STUDY                 one validation study of tuning.json: each run and its figures
  quality DATASET MODEL...     HR/NDCG@1,3,5,10 of the named models of quality.json's test run
                               (beam 20), the mean of the main model's seeds, and the published
                               rows (benchmarks/baselines/run.py)
  frontier                     view_frontier.json: p50 and HR/NDCG@1,3,5,10 of each serving point

  python tools/render_results.py            # rewrite the marked blocks of README.md and docs/*.md
  python tools/render_results.py --check    # exit 1 (listing them) when a block is stale
  python tools/render_results.py --plots    # also draw docs/img/*.png (needs matplotlib)

Exit status: 0 done / up to date, 1 stale blocks (--check), 2 a block names no result.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the benchmarks package (published figures) is at the repo root
    sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(<!-- render: (?P<args>[^>]*?) -->\n)(?P<body>.*?)(<!-- /render -->)", re.S)


class RenderError(Exception):
    pass


def _load(name: str) -> dict:
    path = RESULTS / name
    if not path.is_file():
        raise RenderError(f"{path.relative_to(ROOT)} is missing")
    return json.loads(path.read_text())


def _pair(m: dict, k: int = 10) -> str:
    hr, nd = m[f"HR@{k}"], m[f"NDCG@{k}"]
    return "0 / 0" if hr == 0 and nd == 0 else f"{hr:.4f} / {nd:.4f}"


def cold_start(dataset: str, segment: str, results: str = "cold_start.json") -> str:
    data = _load(results)["datasets"]
    if dataset not in data or segment not in data[dataset]:
        raise RenderError(f"{results} has no {segment} segment for {dataset!r}")
    res = data[dataset][segment]
    n_seg = res.get(f"n_{segment}_cases")
    head = (f"| test ({res['n_cases']:,} cases; {n_seg:,} {segment}), HR@10 / NDCG@10 | {segment} "
            "| all cases |")
    rows = [head, "|---|---|---|"]
    for model, segs in res["models"].items():
        rows.append(f"| {model} | {_pair(segs[segment]) if segment in segs else '-'} "
                    f"| {_pair(segs['all'])} |")
    settings = res.get("settings")
    chosen = ("none (the model alone)" if settings is None else
              ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                        for k, v in settings.items()))
    notes = []
    if settings and "repeat" in settings:
        notes.append("repeat: the counted rate, the mass a cold item of the history gets")
    if settings and settings.get("query") == "mean":
        notes.append("query mean: the cosine to the mean direction of the history items")
    if settings and "near_weight" in settings:
        notes.append("near: the second, narrow kernel, for near-duplicates of a history item")
    if notes:
        chosen += f" ({'; '.join(notes)})"
    proc = res.get("procedure")
    share = "" if not proc else (
        f" The price was paid at the cold share the served model was estimated to see "
        f"({proc['served_cold_share']:.1%}: {proc['served_cold_items']:,} cold items against the "
        f"tuning model's {proc['tuning_cold_items']:,}, whose validation share was "
        f"{proc['validation_cold_share']:.1%})"
        + (f"; on test it was {res['test_cold_share']:.1%}." if "test_cold_share" in res else "."))
    return "\n".join(rows) + f"\n\nCold-start settings chosen on validation: {chosen}.{share}\n"


def tuning(study: str) -> str:
    studies = {s["name"]: s for s in _load("tuning.json")["studies"]}
    if study not in studies:
        raise RenderError(f"tuning.json has no study {study!r} (it has {sorted(studies)})")
    s = studies[study]
    out = [f"{s['dataset']}, {s['model']}; split {s['split']}; {s['cases']}.", "",
           "| setting | HR@10 / NDCG@10 |", "|---|---|"]
    for run in s["runs"]:
        if "results" in run:
            cells = "; ".join((f"epoch {r['epoch']}: " if "epoch" in r else "") + _pair(r)
                              for r in run["results"])
        else:
            cells = _pair(run)
        out.append(f"| {run['setting']} | {cells} |")
    return "\n".join(out) + f"\n\n{s['note']}\n"


KS = (1, 3, 5, 10)
# the seeds' rows of a quality.json written before quality.py ran fit (and recorded seed_models)
SEEDS = ("genrec-lite compact", "compact, seed 1", "compact, seed 2")


def quality(dataset: str, *models: str) -> str:
    from benchmarks.baselines.run import PUBLISHED

    data = _load("quality.json")["datasets"]
    if dataset not in data:
        raise RenderError(f"quality.json has no {dataset!r}")
    runs = data[dataset]["models"]
    missing = [m for m in models if m not in runs]
    if missing:
        raise RenderError(f"quality.json has no model {missing[0]!r} for {dataset} (it has "
                          f"{sorted(runs)})")
    cols = [f"HR@{k}" for k in KS] + [f"NDCG@{k}" for k in KS]
    rows = [("| model | " + " | ".join(cols) + " |"), "|---" * (len(cols) + 1) + "|"]

    def row(name, m):
        rows.append(f"| {name} | " + " | ".join("-" if c not in m else f"{m[c]:.4f}" for c in cols)
                    + " |")

    for m in models:
        row(m, runs[m]["test"])
    # (quality.py now writes the mean as a row of its own, named in the block like any other)
    seeds = [] if "seed_models" in data[dataset] else [runs[s]["test"] for s in SEEDS if s in runs]
    if len(seeds) > 1:
        row(f"{SEEDS[0]}, mean of {len(seeds)} seeds",
            {c: sum(s[c] for s in seeds) / len(seeds) for c in cols})
    if dataset == "amazon-industrial":  # the published rows are of this data processing
        for name, m in PUBLISHED.items():
            row(name, m)
    n = next(iter(runs.values()))["test"].get("n_cases")
    return "\n".join(rows) + f"\n\nTest cases: {n:,}; beam 20 for genrec-lite; full ranking.\n"


def frontier() -> str:
    """view_frontier.json: each serving point's p50 and test metrics."""
    data = _load("view_frontier.json")
    cols = [f"HR@{k}" for k in KS] + [f"NDCG@{k}" for k in KS]
    rows = ["| point | p50 ms | vs one-view | " + " | ".join(cols) + " |",
            "|---" * (len(cols) + 3) + "|"]
    for p in data["points"]:
        name = (f"{data['views']}-view model, {p['views_decoded']} view"
                f"{'s' if p['views_decoded'] > 1 else ''} decoded" if p["model"] == "multi-view"
                else "one-view model" if p["model"] == "one-view" else p["model"])
        rows.append(f"| {name}, beam {p['beam']} | {p['p50_ms']:.2f} | "
                    f"{p['p50_ratio_to_one_view']:.2f}x | "
                    + " | ".join(f"{p['test'][c]:.4f}" for c in cols) + " |")
    return "\n".join(rows) + (f"\n\n{data['dataset']}, {data['n_test_cases']:,} test cases; p50 "
                              f"over {data['rounds']} alternating rounds of "
                              f"{data['calls_per_round']} requests (batch {data['batch']}, "
                              f"{data['threads']} threads).\n")


def _settings_words(d: dict | None) -> str:
    if d is None:
        return "off"
    words = [f"{d['weight']:g}", f"{d['temperature']:g}",
             ("mean of " if d.get("query") == "mean" else "") + str(d.get("history", 1))]
    if d.get("near_weight") is not None:
        words.append(f"near {d['near_weight']:g} / {d['near_temperature']:g}")
    if d.get("slots") is not None:
        words.append(f"cap {d['slots']}")
    return ", ".join(words)


def cold_start_frontier(dataset: str, segment: str) -> str:
    data = _load("cold_start.json")["datasets"]
    if dataset not in data or segment not in data[dataset]:
        raise RenderError(f"cold_start.json has no {segment} segment for {dataset!r}")
    val = (data[dataset][segment].get("validation") if segment == "launch"
           else data[dataset].get("validation", {}).get("chosen_on_all"))
    if not val or "frontier" not in val:
        raise RenderError(f"cold_start.json has no validation frontier for {dataset} {segment}")
    groups: list[list[dict]] = []   # consecutive prices that chose the same setting
    for row in val["frontier"]:
        if groups and groups[-1][0]["settings"] == row["settings"]:
            groups[-1].append(row)
        else:
            groups.append([row])
    n_cold = val.get("n_launch_cases")   # the natural validation records no such count
    rows = ["| price (max_cost) | chosen: weight, temperature, history"
            "[, near weight / temperature][, cap] | all cases | "
            f"cold targets{f' ({n_cold:,} cases)' if n_cold else ''} |",
            "|---|---|---|---|"]
    for g in groups:
        lo, hi = g[0]["max_cost"], g[-1]["max_cost"]
        first = "0 (best overall)" if lo == 0 else f"{lo:.0%}"
        price = first if lo == hi else f"{'0' if lo == 0 else f'{lo:.0%}'} to {hi:.0%}"
        r = g[0]
        cold = (f"{r['cold HR@10']:.4f} / {r['cold NDCG@10']:.4f}" if "cold HR@10" in r else "-")
        rows.append(f"| {price} | {_settings_words(r['settings'])} | "
                    f"{r['all HR@10']:.4f} / {r['all NDCG@10']:.4f} | {cold} |")
    off = val.get("best_by_family", {}).get("off")
    if off:
        m = off["metrics"]
        cold = _pair(m["cold"]) if "cold" in m else "-"
        rows.append(f"| off | - | {_pair(m['all'])} | {cold} |")
    return "\n".join(rows) + "\n"


def cold_start_latency() -> str:
    data = _load("cold_start_latency.json")
    rows = ["| cold items | setting: weight, temperature, history"
            "[, near weight / temperature][, cap] | p50 off | p50 on | "
            "on / off |", "|---|---|---|---|---|"]
    for r in data["rows"]:
        words = _settings_words(r["settings"])
        rows.append(f"| {r['cold_items']:,} | {words} | {r['p50_ms_off']:.2f} ms | "
                    f"{r['p50_ms_on']:.2f} ms | {r['p50_ratio']:.2f} |")
    return "\n".join(rows) + (f"\n\n{data['rows'][0]['requests']} requests a setting, batch 1, "
                              f"{data['threads']} llama.cpp thread(s); modes rotated request by "
                              "request.\n")


RENDERERS = {"cold-start": cold_start, "cold-start-frontier": cold_start_frontier,
             "cold-start-latency": cold_start_latency, "tuning": tuning, "quality": quality,
             "frontier": frontier}


def render_block(args: str) -> str:
    """One block's Markdown; its arguments are split on spaces (%20 for a space inside one)."""
    name, *rest = [unquote(a) for a in args.split()]
    if name not in RENDERERS:
        raise RenderError(f"unknown block {name!r}; expected one of {sorted(RENDERERS)}")
    try:
        return RENDERERS[name](*rest)
    except TypeError as exc:
        raise RenderError(f"block {args!r}: {exc}") from exc


def render_text(text: str) -> str:
    return BLOCK.sub(lambda m: m.group(1) + render_block(m.group("args")) + m.group(4), text)


def plots(out: Path) -> list[Path]:
    """docs/img/cold_start.png: HR@10 of each model on each data set's cold-start segments."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = _load("cold_start.json")["datasets"]
    panels = [(d, seg) for d in data for seg in ("natural", "launch") if seg in data[d]]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    for ax, (d, seg) in zip(axes[0], panels):
        models = data[d][seg]["models"]
        names = [m for m in models if seg in models[m]]
        ax.barh(range(len(names)), [models[m][seg]["HR@10"] for m in names], color="#4c72b0")
        ax.set_yticks(range(len(names)), [n.replace("genrec-lite compact (one view)", "genrec-lite")
                                          for n in names], fontsize=7)
        ax.invert_yaxis()
        ax.set_title(f"{d}: {seg} segment", fontsize=9)
        ax.set_xlabel("HR@10 (test)", fontsize=8)
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    path = out / "cold_start.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path] + _price_plot(data, out, plt)


def _price_plot(data: dict, out: Path, plt) -> list[Path]:
    """docs/img/cold_start_price.png: what each exposure price (max_cost) buys on validation:
    the cold cases' NDCG@10 (what the rule maximises) and all cases' NDCG@10 (what it pays) of
    the setting chosen at that price."""
    curves = []
    for d, res in data.items():
        # each segment's settings are chosen on its own validation
        for seg, v in (("natural", res.get("validation", {}).get("chosen_on_all", {})),
                       ("launch", res.get("launch", {}).get("validation", {}))):
            if v.get("frontier"):
                curves.append((f"{d} ({seg})", v["frontier"]))
    if not curves:
        return []
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.4))
    for label, rows in curves:
        x = [100 * r["max_cost"] for r in rows]
        axes[0].plot(x, [r.get("cold NDCG@10", 0) for r in rows], marker="o", label=label)
        axes[1].plot(x, [r["all NDCG@10"] / rows[0]["all NDCG@10"] for r in rows], marker="o",
                     label=label)
    axes[0].set_ylabel("cold cases' NDCG@10 (validation)", fontsize=8)
    axes[1].set_ylabel("all cases' NDCG@10 / the best overall's", fontsize=8)
    for ax in axes:
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xticks([0, 1, 2, 5, 10, 20], ["0", "1", "2", "5", "10", "20"])
        ax.set_xlabel("price: max_cost (%)", fontsize=8)
        ax.axvline(1, color="grey", lw=0.8, ls=":")
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / "cold_start_price.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="report stale blocks, change nothing")
    ap.add_argument("--plots", action="store_true", help="also draw docs/img/*.png")
    args = ap.parse_args(argv)
    stale = {}
    try:  # every block first: a bad one leaves every doc as it was
        for doc in DOCS:
            text = doc.read_text()
            new = render_text(text)
            if new != text:
                stale[doc] = new
    except RenderError as exc:
        print(f"render_results: {exc}", file=sys.stderr)
        return 2
    if not args.check:
        for doc, new in stale.items():
            doc.write_text(new)
    stale = [doc.relative_to(ROOT) for doc in stale]
    if args.check:
        for doc in stale:
            print(f"{doc}: rendered blocks are stale (python tools/render_results.py)")
        return 1 if stale else 0
    for doc in stale:
        print(f"rewrote {doc}")
    if args.plots:
        for path in plots(ROOT / "docs" / "img"):
            print(f"drew {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
