"""Commands are quiet by default: llama.cpp's load log goes to Python logging, not stderr."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import genrec_lite

LLAMA_PREFIXES = ("llama_", "ggml_", "load_tensors", "print_info", "load:")

LOAD = """
import logging, sys, threading
{setup}
from genrec_lite.runtime import Recommender

def serve():
    rec = Recommender.load({bundle!r}, n_threads=1, n_contexts=2)
    assert rec.recommend([1, 2, 3], k=5)
    rec.close()

threads = [threading.Thread(target=serve) for _ in range(2)]  # the log callback under threads
for t in threads:
    t.start()
for t in threads:
    t.join()
serve()
print("served")
"""


def run_load(bundle: Path, setup: str = "") -> subprocess.CompletedProcess:
    package_root = str(Path(genrec_lite.__file__).resolve().parents[1])
    proc = subprocess.run([sys.executable, "-c", LOAD.format(setup=setup, bundle=str(bundle))],
                          capture_output=True, text=True, timeout=300, cwd=package_root)
    assert proc.returncode == 0, proc.stderr
    assert "served" in proc.stdout
    return proc


def test_llama_log_stays_off_stderr(runtime_bundle):
    proc = run_load(runtime_bundle)
    noisy = [line for line in proc.stderr.splitlines() if line.startswith(LLAMA_PREFIXES)]
    assert noisy == []


def test_llama_log_goes_to_logging(runtime_bundle):
    setup = ('logging.basicConfig(level=logging.DEBUG, stream=sys.stdout, '
             'format="%(name)s|%(levelname)s|%(message)s")')
    proc = run_load(runtime_bundle, setup)
    records = [line.split("|", 2) for line in proc.stdout.splitlines()
               if line.startswith("genrec_lite.llama|")]
    assert any(msg.startswith("llama_model_loader:") for _, _, msg in records)
    # the context-size warning is expected (KV cells shared by the beams), so it is DEBUG
    ctx_warnings = [level for _, level, msg in records
                    if msg.startswith("llama_context: n_ctx_seq (")]
    assert ctx_warnings and set(ctx_warnings) == {"DEBUG"}
    assert not [line for line in proc.stderr.splitlines() if line.startswith(LLAMA_PREFIXES)]
