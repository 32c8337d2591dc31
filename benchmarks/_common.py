"""Small helpers shared by the benchmark scripts: timing, Markdown tables, JSON with machine info."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Callable, Iterable, Sequence

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
AMAZON = ROOT.parent / "shared" / "data" / "amazon-industrial"
ENV_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def timings(fn: Callable[[], object], repeats: int, warmup: int = 3) -> list[float]:
    """Seconds per call of fn, one entry per repeat (after `warmup` untimed calls)."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - t0) * 1e-9)
    return out


def median(xs: Iterable[float]) -> float:
    return statistics.median(list(xs))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover - not Linux
        pass
    return platform.processor() or "unknown"


def versions(*dists: str) -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": sys.version.split()[0]}
    for d in dists:
        try:
            out[d] = metadata.version(d)
        except metadata.PackageNotFoundError:
            out[d] = None
    return out


def machine_info(*dists: str) -> dict:
    return {
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "env": {k: os.environ.get(k) for k in ENV_VARS},
        "versions": versions("numpy", *dists),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def rss_bytes() -> int:
    """Resident set size of this process (Linux), 0 where unknown."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):  # pragma: no cover
        return 0


def proc_mb(key: str, path: str = "/proc/self/status", default: float = float("nan")) -> float:
    """A kB field of a /proc file of this process (``VmRSS``, ``VmHWM`` of status; ``Pss`` of
    smaps_rollup) in MB; ``default`` where the field is absent."""
    with open(path) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return default


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A Markdown table; floats get 3 significant digits or so."""
    def fmt(v: object) -> str:
        if isinstance(v, float):
            if v == 0 or 0.01 <= abs(v) < 1e6:
                return f"{v:,.3g}" if abs(v) < 100 else f"{v:,.0f}"
            return f"{v:.3g}"
        return "-" if v is None else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


FIRST_PLACE_HEAD = ["first = newest history item", "HR@1 there", "HR@1 elsewhere",
                    "HR@1 on repeat cases"]


def first_place_cells(f: dict) -> list[str]:
    """One row's cells of eval.metrics.first_place's result, under FIRST_PLACE_HEAD."""
    return [f"{f['share_first_is_last']:.1%}",
            *("-" if f[k] is None else f"{f[k]:.3f}"
              for k in ("HR@1_first_is_last", "HR@1_otherwise", "HR@1_repeat_cases"))]


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend, or None where matplotlib is not installed
    (plots are optional; the JSON and the printed table are the results)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is optional
        print("matplotlib not installed: no plot")
        return None
    return plt


def frontier_plot(points: Sequence[dict], path: Path, *, xlabel: str, ylabel: str, limit: float,
                  limit_label: str, title: str, metrics: Sequence[str] = ("HR@10", "NDCG@10")) -> None:
    """Quality against latency, one panel per metric, a vertical line at the latency limit.
    Each point: x, a value per metric, label, and marker / color (matplotlib's)."""
    plt = pyplot()
    if plt is None:
        return
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4))
    for ax, metric in zip(axes, metrics):
        for p in points:
            ax.scatter(p["x"], p[metric], marker=p["marker"], color=p["color"])
            ax.annotate(p["label"], (p["x"], p[metric]), textcoords="offset points",
                        xytext=(4, 4), fontsize=8)
        ax.axvline(limit, color="tab:red", ls="--", lw=1, label=limit_label)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"{ylabel} {metric}")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}", file=sys.stderr)


def write_json(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    return path


def request_histories(item_ids: Iterable[int], n: int, max_len: int = 10, seed: int = 0) -> list[list[int]]:
    """Request histories for serving benchmarks: the first n amazon test cases' histories, kept to
    the given catalog's items (newest max_len); random catalog histories where the data is absent."""
    ids = [int(i) for i in item_ids]
    known = set(ids)
    test = AMAZON / "test.jsonl"
    if test.is_file():
        out = []
        with open(test, encoding="utf-8") as f:
            for line in f:
                h = [i for i in json.loads(line)["history"] if i in known][-max_len:]
                if h:
                    out.append(h)
                    if len(out) == n:
                        break
        if out:
            return out
    import numpy as np

    rng = np.random.default_rng(seed)
    return [rng.choice(ids, size=int(rng.integers(1, max_len + 1))).tolist() for _ in range(n)]


def child_env() -> dict:
    """The environment for a child Python process that must import genrec_lite from this checkout
    when it is not installed."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [env.get("PYTHONPATH", ""), str(ROOT / "python")] if p)
    return env
